//! Preemption end to end through the scheduler and the state machine: who is preempted,
//! claims, the victim's way back to pending, checkpoint rounds.

use super::*;
use crate::checkpoint::{
    CheckpointMode, CheckpointOutcome, CheckpointReport, CheckpointSpec, CheckpointTrigger,
};
use crate::scheduler::{schedule, REASON_PREEMPTING};

fn job(nodes: u32, priority: u8) -> AllocationSpec {
    AllocationSpec {
        priority,
        ..spec(nodes)
    }
}

fn cycle(s: &mut ClusterState, now: Timestamp) -> (Plan, PlanOutcome) {
    let plan = schedule(s, now);
    let out = apply_plan(s, now, plan.clone());
    assert!(
        out.rejected.is_empty() && out.preemptions_rejected.is_empty(),
        "{out:?}"
    );
    (plan, out)
}

fn gone(id: AllocId, node: &str, run: u32, outcome: ExitOutcome) -> ExitReport {
    ExitReport {
        outcome,
        exit_code: None,
        signal: Some(15),
        run,
        ..exited(id, node, 0)
    }
}

/// Fills `nodes` with one single-node job each of the given priorities (in order).
fn fill(s: &mut ClusterState, priorities: &[(u8, bool)]) -> Vec<AllocId> {
    let ids: Vec<AllocId> = priorities
        .iter()
        .map(|&(p, preemptible)| {
            submit(
                s,
                at(0),
                AllocationSpec {
                    preemptible,
                    ..job(1, p)
                },
            )
        })
        .collect();
    let (_, out) = cycle(s, at(1));
    let mut placed = out.placed;
    placed.sort_unstable();
    assert_eq!(placed, ids);
    ids
}

#[test]
fn the_lowest_priority_victim_is_preempted_and_requeued_with_the_same_id() {
    let mut s = cluster(&["n1", "n2", "n3"]);
    let low = fill(&mut s, &[(3, true), (1, true), (4, true)]);
    let n = s.allocations()[&low[1]].assigned_nodes[0].clone();
    let high = submit(&mut s, at(5), job(1, 8));
    let (plan, out) = cycle(&mut s, at(10));
    assert_eq!(out.preempted, vec![low[1]]);
    assert_eq!(plan.preemptions[0].nodes, vec![n.clone()]);
    let victim = &s.allocations()[&low[1]];
    assert_eq!(victim.state, AllocState::Preempting);
    assert_eq!(victim.preemption.as_ref().map(|p| p.by), Some(high));
    let h = &s.allocations()[&high];
    assert_eq!(h.reason.as_deref(), Some(REASON_PREEMPTING));
    assert_eq!(h.claimed_nodes, vec![n.clone()]);
    // The agent is told to preempt it; nothing else moves while it checkpoints.
    let work = s.work_for(std::slice::from_ref(&n));
    assert_eq!(work.assignments[0].desired, Desired::Preempt);
    let (again, _) = cycle(&mut s, at(11));
    assert!(again.placements.is_empty() && again.preemptions.is_empty());

    // The rank is gone: the victim is pending again, same ID, next run.
    report(
        &mut s,
        at(12),
        vec![gone(low[1], &n, 0, ExitOutcome::Preempted)],
    );
    let v = &s.allocations()[&low[1]];
    assert_eq!(v.state, AllocState::Pending);
    assert_eq!(v.preempt_count, 1);
    assert!(v.assigned_nodes.is_empty() && v.started_at.is_none() && v.preemption.is_none());
    assert_eq!(v.reason.as_deref(), Some("preempted"));
    // The freed node goes to the preemptor, not to the requeued victim.
    let (_, out) = cycle(&mut s, at(13));
    assert_eq!(out.placed, vec![high]);
    assert_eq!(s.allocations()[&high].assigned_nodes, vec![n.clone()]);
    assert!(s.claims().is_empty());
    // A report of the old run never touches the new one.
    let (_, out) = cycle(&mut s, at(14));
    assert!(out.placed.is_empty());
    assert_eq!(
        report(
            &mut s,
            at(15),
            vec![gone(low[1], &n, 0, ExitOutcome::Exited)]
        ),
        (0, 1)
    );
}

#[test]
fn least_lost_work_breaks_ties_and_checkpoints_count() {
    let mut s = cluster(&["n1", "n2"]);
    let checkpointed = AllocationSpec {
        checkpoint: CheckpointSpec {
            mode: CheckpointMode::Signal,
            ..CheckpointSpec::default()
        },
        ..job(1, 2)
    };
    let a = submit(&mut s, at(0), job(1, 2));
    let b = submit(&mut s, at(0), checkpointed);
    cycle(&mut s, at(1));
    // b checkpointed successfully at 50 s: it would lose less work than a.
    ok(
        &mut s,
        Command::RequestCheckpoint {
            now: at(49),
            id: b,
            by: "u".into(),
        },
    );
    let node = s.allocations()[&b].assigned_nodes[0].clone();
    let out = ok(
        &mut s,
        Command::ReportCheckpoints {
            now: at(50),
            reports: vec![CheckpointReport {
                allocation_id: b,
                node_id: node,
                run: 0,
                trigger: CheckpointTrigger::Request(1),
                outcome: CheckpointOutcome::Success,
                duration_ms: 700,
                message: None,
            }],
        },
    );
    let CommandOutcome::Reports { checkpoints, .. } = out else {
        panic!("{out:?}");
    };
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(s.allocations()[&b].checkpoint_count, 1);
    assert_eq!(s.allocations()[&b].last_checkpoint_at, Some(at(50)));
    submit(&mut s, at(55), job(1, 5));
    let (_, out) = cycle(&mut s, at(60));
    assert_eq!(out.preempted, vec![b]);
    assert_eq!(s.allocations()[&a].state, AllocState::Running);
}

#[test]
fn never_preempts_equal_higher_or_non_preemptible_work() {
    let mut s = cluster(&["n1", "n2", "n3"]);
    fill(&mut s, &[(5, true), (9, true), (1, false)]);
    let p = submit(&mut s, at(5), job(1, 5));
    let (plan, _) = cycle(&mut s, at(10));
    assert!(plan.preemptions.is_empty(), "{plan:?}");
    assert_eq!(s.allocations()[&p].reason.as_deref(), Some("resources"));
}

#[test]
fn frees_enough_nodes_or_preempts_nothing() {
    let mut s = cluster(&["n1", "n2", "n3"]);
    fill(&mut s, &[(1, true), (1, true), (7, true)]);
    // Needs 3 nodes; only 2 are held by lower priorities.
    let big = submit(&mut s, at(5), job(3, 5));
    let (plan, _) = cycle(&mut s, at(10));
    assert!(plan.preemptions.is_empty(), "{plan:?}");
    assert_ne!(s.allocations()[&big].state, AllocState::Preempting);
    // Needs 2: both low ones go, the priority-7 one stays.
    let two = submit(&mut s, at(11), job(2, 6));
    let (plan, out) = cycle(&mut s, at(12));
    assert_eq!(plan.preemptions.len(), 1);
    assert_eq!(plan.preemptions[0].preemptor, two);
    assert_eq!(out.preempted.len(), 2);
}

#[test]
fn a_vcluster_can_turn_preemption_off() {
    let mut s = cluster(&["n1"]);
    fill(&mut s, &[(1, true)]);
    ok(
        &mut s,
        Command::PutVCluster {
            now: at(2),
            name: "default".into(),
            change: crate::vcluster::VClusterChange {
                preemption: Some(false),
                ..Default::default()
            },
            create: false,
        },
    );
    submit(&mut s, at(5), job(1, 9));
    let (plan, _) = cycle(&mut s, at(10));
    assert!(plan.preemptions.is_empty());
}

#[test]
fn a_cancelled_preemptor_releases_its_claim() {
    let mut s = cluster(&["n1", "n2"]);
    let low = fill(&mut s, &[(1, true), (1, true)]);
    let high = submit(&mut s, at(5), job(1, 9));
    cycle(&mut s, at(10));
    assert_eq!(s.claims().len(), 1);
    ok(
        &mut s,
        Command::CancelAllocation {
            now: at(11),
            id: high,
            by: "u".into(),
        },
    );
    assert!(s.claims().is_empty());
    assert!(s.allocations()[&high].claimed_nodes.is_empty());
    // The victim still goes back to pending, and the node is free for anyone.
    let victim = s
        .allocations()
        .values()
        .find(|a| a.state == AllocState::Preempting);
    let (v, node) = {
        let v = victim.expect("a victim");
        (v.id, v.assigned_nodes[0].clone())
    };
    assert!(low.contains(&v));
    report(
        &mut s,
        at(12),
        vec![gone(v, &node, 0, ExitOutcome::Preempted)],
    );
    let (_, out) = cycle(&mut s, at(13));
    assert_eq!(out.placed, vec![v], "the requeued victim runs again");
    assert_eq!(s.allocations()[&v].preempt_count, 1);
}

#[test]
fn a_victim_that_completes_on_its_own_is_not_requeued() {
    let mut s = cluster(&["n1"]);
    let low = fill(&mut s, &[(1, true)]);
    submit(&mut s, at(5), job(1, 9));
    cycle(&mut s, at(10));
    report(&mut s, at(11), vec![exited(low[0], "n1", 0)]);
    let a = &s.allocations()[&low[0]];
    assert_eq!(a.state, AllocState::Completed);
    assert_eq!(a.preempt_count, 0);
    // ...and it is not preempted twice: it is no candidate any more.
    let (plan, out) = cycle(&mut s, at(12));
    assert!(plan.preemptions.is_empty());
    assert_eq!(out.placed.len(), 1);
}

#[test]
fn checkpoint_requests_need_a_running_checkpointable_allocation() {
    let mut s = cluster(&["n1"]);
    let plain = fill(&mut s, &[(1, true)])[0];
    let e = rejected(
        &mut s,
        Command::RequestCheckpoint {
            now: at(2),
            id: plain,
            by: "u".into(),
        },
    );
    assert!(e.to_string().contains("checkpoint: none"), "{e}");
    let e = rejected(
        &mut s,
        Command::RequestCheckpoint {
            now: at(2),
            id: 999,
            by: "u".into(),
        },
    );
    assert!(matches!(e, Rejection::NotFound { .. }), "{e:?}");
}

#[test]
fn a_round_concludes_when_every_rank_reported() {
    let mut s = cluster(&["n1", "n2"]);
    let id = submit(
        &mut s,
        at(0),
        AllocationSpec {
            checkpoint: CheckpointSpec {
                mode: CheckpointMode::Signal,
                ..CheckpointSpec::default()
            },
            ..job(2, 3)
        },
    );
    cycle(&mut s, at(1));
    let rank = |node: &str, outcome, ms| CheckpointReport {
        allocation_id: id,
        node_id: node.into(),
        run: 0,
        trigger: CheckpointTrigger::Periodic(1),
        outcome,
        duration_ms: ms,
        message: Some("disk full".into()).filter(|_| outcome != CheckpointOutcome::Success),
    };
    let first = vec![rank("n1", CheckpointOutcome::Success, 400)];
    let out = ok(
        &mut s,
        Command::ReportCheckpoints {
            now: at(5),
            reports: first.clone(),
        },
    );
    assert!(
        matches!(out, CommandOutcome::Reports { applied: 1, ref checkpoints, .. } if checkpoints.is_empty())
    );
    // A duplicate is ignored.
    let out = ok(
        &mut s,
        Command::ReportCheckpoints {
            now: at(5),
            reports: first,
        },
    );
    assert!(matches!(
        out,
        CommandOutcome::Reports {
            applied: 0,
            ignored: 1,
            ..
        }
    ));
    let out = ok(
        &mut s,
        Command::ReportCheckpoints {
            now: at(6),
            reports: vec![rank("n2", CheckpointOutcome::Failure, 900)],
        },
    );
    let CommandOutcome::Reports { checkpoints, .. } = out else {
        panic!("{out:?}");
    };
    assert_eq!(checkpoints[0].outcome, CheckpointOutcome::Failure);
    assert_eq!(checkpoints[0].duration_ms, 900);
    assert_eq!(checkpoints[0].message.as_deref(), Some("n2: disk full"));
    let a = &s.allocations()[&id];
    assert_eq!((a.checkpoint_count, a.last_checkpoint_at), (0, None));
    assert!(a.checkpoint_rounds.is_empty());
}

#[test]
fn a_preemptor_whose_claimed_node_is_drained_preempts_afresh_in_a_plan_without_reasons() {
    let mut s = cluster(&["n1", "n2", "n3", "n4"]);
    let a = submit(&mut s, at(0), job(2, 1));
    let b = submit(&mut s, at(0), job(2, 1));
    cycle(&mut s, at(1));
    let high = submit(&mut s, at(5), job(2, 9));
    let (_, out) = cycle(&mut s, at(10));
    assert_eq!(out.preempted.len(), 1);
    let first = out.preempted[0];
    let second = if first == a { b } else { a };
    let claimed = s.allocations()[&first].assigned_nodes.clone();
    assert_eq!(s.allocations()[&high].claimed_nodes, claimed);
    // Draining a claimed node ends the claim's life: the preemptor schedules afresh.
    ok(
        &mut s,
        Command::SetNodeDrain {
            now: at(11),
            node_id: claimed[0].clone(),
            drain: true,
            reason: None,
        },
    );
    assert!(!s.live_claim(high));
    let before = s.clone();
    let (plan, out) = cycle(&mut s, at(12));
    // The preemptor keeps its reason ("preempting", one victim), so the plan carries the
    // preemption alone: no placement, no reason, no estimate. It still changes the state.
    assert!(plan.placements.is_empty() && plan.reasons.is_empty() && plan.estimates.is_empty());
    assert_eq!(out.preempted, vec![second]);
    let theirs = s.allocations()[&second].assigned_nodes.clone();
    assert_eq!(s.allocations()[&second].state, AllocState::Preempting);
    assert_eq!(s.allocations()[&high].claimed_nodes, theirs);
    assert!(claimed.iter().all(|n| s.claims().get(n).is_none()));
    assert!(theirs.iter().all(|n| s.claims().get(n) == Some(&high)));
    assert_ne!(before.allocations(), s.allocations());
    // The first victim, already checkpointing, still goes back to pending.
    assert_eq!(s.allocations()[&first].state, AllocState::Preempting);
}
