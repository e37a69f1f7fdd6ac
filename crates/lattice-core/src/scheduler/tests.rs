//! Scheduler tests: queue order, constraint matching, node choice and pending reasons; and in
//! [`reference`] a property test comparing [`schedule`] with a naive implementation of the same
//! policy.

mod policy;
mod properties;
mod reference;
mod scenarios;
mod sim;

use super::*;
use crate::agent::{ExitOutcome, ExitReport};
use crate::allocation::{AllocState, AllocationSpec, Constraints};
use crate::command::{Command, CommandOutcome};
use crate::node::{GpuInfo, Node, NodeRegistration};

const GIB: u64 = 1 << 30;

fn at(secs: u64) -> Timestamp {
    Timestamp(1_772_366_400_000 + secs * 1000)
}

fn reg(id: &str) -> NodeRegistration {
    NodeRegistration {
        id: id.into(),
        hostname: id.into(),
        cpus: 16,
        memory_bytes: 64 * GIB,
        gpus: GpuInfo::default(),
        features: Vec::new(),
        agent_url: format!("http://{id}:7070"),
        agent_token: None,
    }
}

fn spec(nodes: u32) -> AllocationSpec {
    AllocationSpec {
        preemptible: false,
        checkpoint: Default::default(),
        name: "job".into(),
        tenant: "default".into(),
        vcluster: "default".into(),
        user: "alice".into(),
        command: Some(vec!["/bin/true".into()]),
        script: None,
        nodes,
        walltime_seconds: 60,
        priority: 5,
        constraints: Constraints::default(),
        env: Default::default(),
    }
}

fn with(nodes: u32, constraints: Constraints) -> AllocationSpec {
    AllocationSpec {
        constraints,
        ..spec(nodes)
    }
}

fn apply(s: &mut ClusterState, cmd: Command) -> CommandOutcome {
    s.apply(&cmd)
        .unwrap_or_else(|e| panic!("{} rejected: {e}", cmd.kind()))
}

fn register(s: &mut ClusterState, r: NodeRegistration) {
    apply(
        s,
        Command::RegisterNode {
            now: at(0),
            registration: r,
        },
    );
}

fn cluster(ids: &[&str]) -> ClusterState {
    let mut s = ClusterState::default();
    for id in ids {
        register(&mut s, reg(id));
    }
    s
}

fn submit(s: &mut ClusterState, now: Timestamp, spec: AllocationSpec) -> AllocId {
    match apply(s, Command::SubmitAllocation { now, spec }) {
        CommandOutcome::Allocation(a) => a.id,
        other => panic!("unexpected outcome {other:?}"),
    }
}

/// Runs one cycle and commits it; returns the plan. The plan must be accepted in full.
fn cycle(s: &mut ClusterState, now: Timestamp) -> Plan {
    let plan = schedule(s, now);
    let out = apply(
        s,
        Command::ApplyPlan {
            now,
            plan: plan.clone(),
        },
    );
    let CommandOutcome::Plan(out) = out else {
        panic!("unexpected outcome {out:?}");
    };
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    plan
}

/// Occupies `node` with a fresh one-node allocation that runs for an hour (longer than the
/// jobs of the tests, so that those can backfill around it).
fn occupy(s: &mut ClusterState, node: &str) -> AllocId {
    let id = submit(
        s,
        at(0),
        AllocationSpec {
            walltime_seconds: 3600,
            ..spec(1)
        },
    );
    let out = apply(
        s,
        Command::ApplyPlan {
            now: at(0),
            plan: Plan {
                placements: vec![Placement {
                    allocation: id,
                    nodes: vec![node.into()],
                }],
                ..Default::default()
            },
        },
    );
    assert!(matches!(out, CommandOutcome::Plan(ref p) if p.placed == vec![id]));
    id
}

/// Reports `id` exited 0 on `node`.
fn report_exit(s: &mut ClusterState, id: AllocId, node: &str, now: Timestamp) {
    apply(
        s,
        Command::ReportExits {
            now,
            reports: vec![ExitReport {
                run: 0,
                allocation_id: id,
                node_id: node.into(),
                outcome: ExitOutcome::Exited,
                exit_code: Some(0),
                signal: None,
                message: None,
            }],
        },
    );
}

fn placed(plan: &Plan) -> Vec<(AllocId, Vec<&str>)> {
    plan.placements
        .iter()
        .map(|p| (p.allocation, p.nodes.iter().map(String::as_str).collect()))
        .collect()
}

fn reason_of(plan: &Plan, id: AllocId) -> Option<(&str, &str)> {
    plan.reasons
        .iter()
        .find(|r| r.0 == id)
        .map(|(_, r, d)| (r.as_str(), d.as_deref().unwrap_or("")))
}

#[test]
fn empty_queue_gives_an_empty_plan() {
    let s = cluster(&["n1"]);
    assert!(schedule(&s, at(1)).is_empty());
}

#[test]
fn higher_priority_goes_first_then_older() {
    let mut s = cluster(&["n1"]);
    let low = submit(
        &mut s,
        at(1),
        AllocationSpec {
            priority: 1,
            ..spec(1)
        },
    );
    let high_new = submit(
        &mut s,
        at(3),
        AllocationSpec {
            priority: 9,
            ..spec(1)
        },
    );
    let high_old = submit(
        &mut s,
        at(2),
        AllocationSpec {
            priority: 9,
            ..spec(1)
        },
    );
    let queue: Vec<AllocId> = order::queue(&s).iter().map(|a| a.id).collect();
    assert_eq!(queue, vec![high_old, high_new, low]);

    let plan = cycle(&mut s, at(4));
    assert_eq!(placed(&plan), vec![(high_old, vec!["n1"])]);
    assert_eq!(reason_of(&plan, high_new).unwrap().0, REASON_RESOURCES);
    assert_eq!(reason_of(&plan, low).unwrap().0, REASON_RESOURCES);
}

#[test]
fn equal_priority_and_time_go_in_id_order() {
    let mut s = cluster(&["n1"]);
    let first = submit(&mut s, at(1), spec(1));
    let second = submit(&mut s, at(1), spec(1));
    let queue: Vec<AllocId> = order::queue(&s).iter().map(|a| a.id).collect();
    assert_eq!(queue, vec![first, second]);
    assert_eq!(placed(&schedule(&s, at(2))), vec![(first, vec!["n1"])]);
}

/// Three nodes with distinct resources, to check each constraint picks the right one.
fn varied_cluster() -> ClusterState {
    let mut s = ClusterState::default();
    register(
        &mut s,
        NodeRegistration {
            cpus: 8,
            memory_bytes: 32 * GIB,
            ..reg("a-small")
        },
    );
    register(
        &mut s,
        NodeRegistration {
            cpus: 64,
            memory_bytes: 512 * GIB,
            features: vec!["ib".into(), "nvme".into()],
            ..reg("b-big")
        },
    );
    register(
        &mut s,
        NodeRegistration {
            cpus: 32,
            memory_bytes: 128 * GIB,
            gpus: GpuInfo {
                count: 4,
                model: Some("NVIDIA H100 80GB HBM3".into()),
            },
            features: vec!["ib".into()],
            ..reg("c-gpu")
        },
    );
    s
}

#[test]
fn constraints_choose_matching_nodes() {
    let cases: Vec<(Constraints, Option<&str>)> = vec![
        (Constraints::default(), Some("a-small")),
        (
            Constraints {
                features: vec!["ib".into()],
                ..Default::default()
            },
            Some("b-big"),
        ),
        (
            Constraints {
                features: vec!["ib".into(), "nvme".into()],
                ..Default::default()
            },
            Some("b-big"),
        ),
        (
            Constraints {
                features: vec!["nvme".into(), "gpu".into()],
                ..Default::default()
            },
            None,
        ),
        // gpu_type is a case-insensitive substring of the model.
        (
            Constraints {
                gpu_type: Some("h100".into()),
                ..Default::default()
            },
            Some("c-gpu"),
        ),
        (
            Constraints {
                gpu_type: Some("nvidia H100 80gb".into()),
                ..Default::default()
            },
            Some("c-gpu"),
        ),
        (
            Constraints {
                gpu_type: Some("A100".into()),
                ..Default::default()
            },
            None,
        ),
        (
            Constraints {
                min_gpus: Some(4),
                ..Default::default()
            },
            Some("c-gpu"),
        ),
        (
            Constraints {
                min_gpus: Some(5),
                ..Default::default()
            },
            None,
        ),
        // Memory is in GiB and the bound is inclusive.
        (
            Constraints {
                min_memory_gb: Some(33),
                ..Default::default()
            },
            Some("b-big"),
        ),
        (
            Constraints {
                min_memory_gb: Some(512),
                ..Default::default()
            },
            Some("b-big"),
        ),
        (
            Constraints {
                min_memory_gb: Some(513),
                ..Default::default()
            },
            None,
        ),
        (
            Constraints {
                min_cpus: Some(32),
                ..Default::default()
            },
            Some("b-big"),
        ),
        (
            Constraints {
                min_cpus: Some(32),
                min_gpus: Some(1),
                ..Default::default()
            },
            Some("c-gpu"),
        ),
        (
            Constraints {
                min_cpus: Some(65),
                ..Default::default()
            },
            None,
        ),
    ];
    for (c, want) in cases {
        let mut s = varied_cluster();
        let id = submit(&mut s, at(1), with(1, c.clone()));
        let plan = schedule(&s, at(2));
        match want {
            Some(node) => assert_eq!(placed(&plan), vec![(id, vec![node])], "{c:?}"),
            None => {
                assert!(plan.placements.is_empty(), "{c:?}: {plan:?}");
                assert_eq!(
                    reason_of(&plan, id).unwrap().0,
                    REASON_UNSATISFIABLE,
                    "{c:?}"
                );
            }
        }
    }
}

#[test]
fn gpu_type_needs_a_gpu_and_matches_no_model_otherwise() {
    let mut n = Node::from_registration(reg("x"), at(0), 0);
    let c = Constraints {
        gpu_type: Some("nvidia".into()),
        ..Default::default()
    };
    assert!(!n.satisfies(&c));
    n.gpus = GpuInfo {
        count: 0,
        model: Some("NVIDIA H100".into()),
    };
    assert!(!n.satisfies(&c), "a model with zero GPUs is not a GPU");
    n.gpus.count = 1;
    assert!(n.satisfies(&c));
    n.gpus.model = None;
    assert!(!n.satisfies(&c));
}

#[test]
fn multi_node_placement_picks_the_lowest_free_ids() {
    let mut s = cluster(&["n01", "n02", "n03", "n04", "n05", "n06"]);
    occupy(&mut s, "n02");
    let id = submit(&mut s, at(1), spec(3));
    let plan = cycle(&mut s, at(2));
    assert_eq!(placed(&plan), vec![(id, vec!["n01", "n03", "n04"])]);
    let next = submit(&mut s, at(3), spec(2));
    let plan = cycle(&mut s, at(4));
    assert_eq!(placed(&plan), vec![(next, vec!["n05", "n06"])]);
}

#[test]
fn more_nodes_than_exist_is_unsatisfiable_and_says_so() {
    let mut s = cluster(&["n1", "n2", "n3"]);
    let id = submit(&mut s, at(1), spec(5));
    let plan = cycle(&mut s, at(2));
    assert!(plan.placements.is_empty());
    assert_eq!(
        reason_of(&plan, id),
        Some((
            REASON_UNSATISFIABLE,
            "needs 5 nodes matching its constraints; the cluster has 3"
        ))
    );
    let a = s.allocation(id).unwrap();
    assert_eq!(a.reason.as_deref(), Some(REASON_UNSATISFIABLE));
    assert_eq!(a.state, AllocState::Pending);

    // Counting includes nodes that are busy, drained or down (they may come back); a
    // constraint narrows the count.
    let gpus = submit(
        &mut s,
        at(3),
        with(
            1,
            Constraints {
                min_gpus: Some(1),
                ..Default::default()
            },
        ),
    );
    let plan = schedule(&s, at(4));
    assert_eq!(
        reason_of(&plan, gpus),
        Some((
            REASON_UNSATISFIABLE,
            "needs 1 nodes matching its constraints; the cluster has 0"
        ))
    );
}

#[test]
fn enough_nodes_but_busy_is_resources() {
    let mut s = cluster(&["n1", "n2", "n3"]);
    occupy(&mut s, "n1");
    apply(
        &mut s,
        Command::SetNodeDrain {
            now: at(1),
            node_id: "n2".into(),
            drain: true,
            reason: None,
        },
    );
    let id = submit(&mut s, at(1), spec(3));
    let plan = schedule(&s, at(2));
    assert_eq!(
        reason_of(&plan, id),
        Some((
            REASON_RESOURCES,
            "waiting for 3 free nodes (3 match its constraints)"
        ))
    );
}

#[test]
fn a_blocked_large_job_does_not_block_a_smaller_one_behind_it() {
    let mut s = cluster(&["n1", "n2", "n3", "n4"]);
    occupy(&mut s, "n1");
    occupy(&mut s, "n3");
    let big = submit(
        &mut s,
        at(1),
        AllocationSpec {
            priority: 9,
            ..spec(3)
        },
    );
    let small = submit(
        &mut s,
        at(2),
        AllocationSpec {
            priority: 1,
            ..spec(2)
        },
    );
    let tiny = submit(
        &mut s,
        at(3),
        AllocationSpec {
            priority: 1,
            ..spec(1)
        },
    );
    let plan = cycle(&mut s, at(4));
    assert_eq!(placed(&plan), vec![(small, vec!["n2", "n4"])]);
    assert_eq!(reason_of(&plan, big).unwrap().0, REASON_RESOURCES);
    assert_eq!(reason_of(&plan, tiny).unwrap().0, REASON_RESOURCES);
}

#[test]
fn a_failed_request_does_not_hide_smaller_ones_with_the_same_constraints() {
    let mut s = cluster(&["n1", "n2", "n3", "n4"]);
    occupy(&mut s, "n2");
    occupy(&mut s, "n4");
    let three = submit(&mut s, at(1), spec(3));
    let two = submit(&mut s, at(2), spec(2));
    let one = submit(&mut s, at(3), spec(1));
    let plan = schedule(&s, at(4));
    assert_eq!(placed(&plan), vec![(two, vec!["n1", "n3"])]);
    assert_eq!(reason_of(&plan, three).unwrap().0, REASON_RESOURCES);
    assert_eq!(reason_of(&plan, one).unwrap().0, REASON_RESOURCES);
}

#[test]
fn nodes_taken_under_one_constraint_set_are_not_reused_under_another() {
    let mut s = ClusterState::default();
    for id in ["n1", "n2", "n3"] {
        register(
            &mut s,
            NodeRegistration {
                features: vec!["ib".into()],
                ..reg(id)
            },
        );
    }
    let ib = Constraints {
        features: vec!["ib".into()],
        ..Default::default()
    };
    let any = submit(&mut s, at(1), spec(1));
    let with_ib = submit(&mut s, at(2), with(1, ib.clone()));
    let any2 = submit(&mut s, at(3), spec(1));
    let with_ib2 = submit(&mut s, at(4), with(1, ib));
    let plan = cycle(&mut s, at(5));
    assert_eq!(
        placed(&plan),
        vec![(any, vec!["n1"]), (with_ib, vec!["n2"]), (any2, vec!["n3"])]
    );
    assert_eq!(reason_of(&plan, with_ib2).unwrap().0, REASON_RESOURCES);
}

#[test]
fn drained_draining_and_down_nodes_are_never_chosen() {
    let mut s = cluster(&["n1", "n2", "n3", "n4"]);
    let busy = occupy(&mut s, "n2");
    for n in ["n1", "n2"] {
        apply(
            &mut s,
            Command::SetNodeDrain {
                now: at(1),
                node_id: n.into(),
                drain: true,
                reason: None,
            },
        );
    }
    apply(
        &mut s,
        Command::SetNodeLiveness {
            now: at(1),
            down: vec!["n3".into()],
            up: vec![],
        },
    );
    // n1 drained, n2 draining, n3 down: only n4 is usable.
    let one = submit(&mut s, at(2), spec(1));
    let two = submit(&mut s, at(3), spec(2));
    let plan = cycle(&mut s, at(4));
    assert_eq!(placed(&plan), vec![(one, vec!["n4"])]);
    assert_eq!(reason_of(&plan, two).unwrap().0, REASON_RESOURCES);

    // The draining node finishing its work makes it drained, not free.
    apply(
        &mut s,
        Command::ReportExits {
            now: at(5),
            reports: vec![ExitReport {
                run: 0,
                allocation_id: busy,
                node_id: "n2".into(),
                outcome: ExitOutcome::Exited,
                exit_code: Some(0),
                signal: None,
                message: None,
            }],
        },
    );
    assert!(schedule(&s, at(6)).is_empty());
}

#[test]
fn the_plan_only_lists_reason_changes() {
    let mut s = ClusterState::default();
    register(&mut s, reg("n1"));
    register(
        &mut s,
        NodeRegistration {
            features: vec!["ib".into()],
            ..reg("n2")
        },
    );
    let ib = Constraints {
        features: vec!["ib".into()],
        ..Default::default()
    };
    let a = submit(&mut s, at(1), spec(1));
    let b = submit(&mut s, at(2), spec(2));
    let c = submit(&mut s, at(3), with(2, ib.clone()));
    let first = cycle(&mut s, at(4));
    assert_eq!(placed(&first), vec![(a, vec!["n1"])]);
    assert_eq!(first.reasons.len(), 2);
    assert_eq!(reason_of(&first, b).unwrap().0, REASON_RESOURCES);
    assert_eq!(reason_of(&first, c).unwrap().0, REASON_UNSATISFIABLE);
    // Pure: the same state gives the same plan, at any time; and nothing changed.
    assert_eq!(schedule(&s, at(5)), schedule(&s, at(500)));
    assert!(schedule(&s, at(5)).is_empty());

    // n1 re-registers with the feature: c becomes satisfiable (its reason changes), b's
    // reason and detail stay the same, so only c is listed.
    register(
        &mut s,
        NodeRegistration {
            features: vec!["ib".into()],
            ..reg("n1")
        },
    );
    let plan = cycle(&mut s, at(6));
    assert!(plan.placements.is_empty());
    assert_eq!(
        plan.reasons,
        vec![(
            c,
            REASON_RESOURCES.to_string(),
            Some("waiting for 2 free nodes (2 match its constraints)".to_string())
        )]
    );
    assert!(schedule(&s, at(7)).is_empty());
}

/// A burst larger than one plan's reason budget is written over several cycles, oldest
/// first, and then the plan is empty again.
#[test]
fn reason_changes_are_capped_per_plan() {
    use crate::scheduler::reasons::MAX_REASON_CHANGES;
    let mut s = cluster(&["n1"]);
    occupy(&mut s, "n1");
    let n = MAX_REASON_CHANGES + 500;
    for _ in 0..n {
        submit(&mut s, at(1), spec(1));
    }
    let first = schedule(&s, at(2));
    assert_eq!(first.reasons.len(), MAX_REASON_CHANGES);
    let ids: Vec<AllocId> = first.reasons.iter().map(|r| r.0).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first");
    apply(
        &mut s,
        Command::ApplyPlan {
            now: at(2),
            plan: first,
        },
    );
    let second = schedule(&s, at(3));
    assert_eq!(second.reasons.len(), 500);
    apply(
        &mut s,
        Command::ApplyPlan {
            now: at(3),
            plan: second,
        },
    );
    assert!(schedule(&s, at(4)).reasons.is_empty());
}
