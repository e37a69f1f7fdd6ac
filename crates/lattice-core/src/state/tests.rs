//! Tests of the state machine: apply unit tests per command family, and property tests that
//! drive random clusters with random command sequences (including real scheduling cycles).
//!
//! Shared helpers live here; [`check_invariants`] is the one statement of what a consistent
//! [`ClusterState`] looks like and is run after every command in every test.

mod allocations;
mod batch;
mod claims;
mod nodes;
mod plan;
mod policy;
mod preemption;
mod properties;

use std::collections::{BTreeMap, BTreeSet};

use super::ClusterState;
use crate::agent::{Desired, ExitOutcome, ExitReport};
use crate::allocation::{AllocId, AllocState, AllocationSpec, Constraints};
use crate::command::{Command, CommandOutcome, CommandResult, PlanOutcome};
use crate::error::Rejection;
use crate::node::{GpuInfo, NodeRegistration, NodeState};
use crate::scheduler::{Placement, Plan};
use crate::time::Timestamp;

const GIB: u64 = 1 << 30;

/// 2026-03-01T12:00:00Z plus `secs`.
fn at(secs: u64) -> Timestamp {
    Timestamp(1_772_366_400_000 + secs * 1000)
}

fn reg(id: &str) -> NodeRegistration {
    NodeRegistration {
        id: id.into(),
        hostname: format!("{id}.example"),
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
        preemptible: true,
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

/// A cluster of ready nodes with default resources.
fn cluster(ids: &[&str]) -> ClusterState {
    let mut s = ClusterState::default();
    for id in ids {
        ok(
            &mut s,
            Command::RegisterNode {
                now: at(0),
                registration: reg(id),
            },
        );
    }
    s
}

/// Applies a command that must succeed, then checks every invariant.
fn ok(s: &mut ClusterState, cmd: Command) -> CommandOutcome {
    let before = s.revision();
    let out = s
        .apply(&cmd)
        .unwrap_or_else(|e| panic!("{} rejected: {e}", cmd.kind()));
    assert_eq!(s.revision(), before + 1, "every command bumps the revision");
    check_invariants(s);
    out
}

/// Applies a command that must be rejected and checks that only the revision moved.
fn rejected(s: &mut ClusterState, cmd: Command) -> Rejection {
    let before = s.clone();
    let err = match s.apply(&cmd) {
        Err(e) => e,
        Ok(out) => panic!("{} accepted: {out:?}", cmd.kind()),
    };
    assert_unchanged_but_revision(&before, s);
    err
}

/// `after` is `before` with only the revision bumped by one.
fn assert_unchanged_but_revision(before: &ClusterState, after: &ClusterState) {
    assert_eq!(after.revision, before.revision + 1);
    let mut normalised = before.clone();
    normalised.revision = after.revision;
    assert_eq!(&normalised, after, "state changed");
}

fn submit(s: &mut ClusterState, now: Timestamp, spec: AllocationSpec) -> AllocId {
    match ok(s, Command::SubmitAllocation { now, spec }) {
        CommandOutcome::Allocation(a) => a.id,
        other => panic!("unexpected outcome {other:?}"),
    }
}

fn apply_plan(s: &mut ClusterState, now: Timestamp, plan: Plan) -> PlanOutcome {
    match ok(s, Command::ApplyPlan { now, plan }) {
        CommandOutcome::Plan(p) => p,
        other => panic!("unexpected outcome {other:?}"),
    }
}

fn placement(id: AllocId, nodes: &[&str]) -> Plan {
    Plan {
        placements: vec![Placement {
            allocation: id,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
        }],
        ..Default::default()
    }
}

/// Places `id` on `nodes`, which must be accepted.
fn place(s: &mut ClusterState, id: AllocId, nodes: &[&str]) {
    let out = apply_plan(s, at(1), placement(id, nodes));
    assert_eq!(out.placed, vec![id], "rejected: {:?}", out.rejected);
    assert_eq!(s.allocations[&id].state, AllocState::Running);
}

fn exited(id: AllocId, node: &str, code: i32) -> ExitReport {
    ExitReport {
        run: 0,
        allocation_id: id,
        node_id: node.into(),
        outcome: ExitOutcome::Exited,
        exit_code: Some(code),
        signal: None,
        message: None,
    }
}

/// Applies exit reports and returns `(applied, ignored)`.
fn report(s: &mut ClusterState, now: Timestamp, reports: Vec<ExitReport>) -> (u32, u32) {
    match ok(s, Command::ReportExits { now, reports }) {
        CommandOutcome::Reports {
            applied, ignored, ..
        } => (applied, ignored),
        other => panic!("unexpected outcome {other:?}"),
    }
}

/// What `work_for` tells the agent of `node`: (allocation, desired) pairs.
fn desired(s: &ClusterState, node: &str) -> Vec<(AllocId, Desired)> {
    s.work_for(&[node.to_string()])
        .assignments
        .iter()
        .map(|a| (a.allocation_id, a.desired))
        .collect()
}

/// Everything that must hold in any state reachable through `apply`.
fn check_invariants(s: &ClusterState) {
    // Derived indexes agree with a recount.
    let mut counts: BTreeMap<AllocState, u64> = AllocState::ALL.iter().map(|&st| (st, 0)).collect();
    for a in s.allocations().values() {
        *counts.get_mut(&a.state).unwrap() += 1;
    }
    assert_eq!(
        s.state_counts(),
        counts,
        "state_counts disagrees with a recount"
    );
    let pending: BTreeSet<AllocId> = s
        .allocations()
        .values()
        .filter(|a| a.state == AllocState::Pending)
        .map(|a| a.id)
        .collect();
    assert_eq!(s.pending_ids(), &pending, "pending index disagrees");
    let mut by_tenant: crate::state::PendingTenants = BTreeMap::new();
    for a in s.allocations().values() {
        if a.state == AllocState::Pending {
            let c = by_tenant
                .entry(a.vcluster.clone())
                .or_default()
                .entry(a.tenant.clone())
                .or_default();
            c.all += 1;
            c.held += u64::from(a.held);
        }
    }
    assert_eq!(
        s.pending_tenants(),
        &by_tenant,
        "pending counts per vCluster and tenant disagree"
    );
    assert!(s
        .allocations()
        .keys()
        .all(|&id| id < s.next_allocation_id()));

    for n in s.nodes().values() {
        let expected = if n.down {
            NodeState::Down
        } else if n.drain && n.allocations.is_empty() {
            NodeState::Drained
        } else if n.drain {
            NodeState::Draining
        } else {
            NodeState::Ready
        };
        assert_eq!(n.state, expected, "node {} state vs flags", n.id);
        // Work is only placed on empty nodes, so a node never holds two allocations.
        assert!(n.allocations.len() <= 1, "node {} double-booked", n.id);
        if n.down {
            assert!(n.allocations.is_empty(), "down node {} holds work", n.id);
        }
        for aid in &n.allocations {
            let a = &s.allocations()[aid];
            assert_ne!(
                a.state,
                AllocState::Pending,
                "node {} holds pending {aid}",
                n.id
            );
            assert!(a.assigned_nodes.contains(&n.id));
            assert!(
                !a.node_exit_codes.contains_key(&n.id),
                "node {} holds {aid} after its exit was recorded",
                n.id
            );
        }
        let work = s.work_for(std::slice::from_ref(&n.id));
        assert_eq!(work.assignments.len(), n.allocations.len());
        for w in &work.assignments {
            let a = &s.allocations()[&w.allocation_id];
            let run = a.state == AllocState::Running;
            assert_eq!(w.desired == Desired::Run, run);
            assert_eq!(
                w.desired == Desired::Preempt,
                a.state == AllocState::Preempting
            );
            assert_eq!(w.run, a.preempt_count);
            assert_eq!(a.assigned_nodes[w.rank as usize], n.id);
        }
    }

    for a in s.allocations().values() {
        match a.state {
            AllocState::Pending => {
                assert!(a.assigned_nodes.is_empty() && a.started_at.is_none());
                assert!(a.finished_at.is_none() && a.exit_code.is_none());
                assert!(a.preemption.is_none() && a.node_exit_codes.is_empty());
                for nid in &a.claimed_nodes {
                    assert_eq!(s.claims().get(nid), Some(&a.id), "claim index of {nid}");
                }
            }
            AllocState::Preempting => {
                assert_eq!(a.assigned_nodes.len(), a.nodes as usize);
                assert!(a.started_at.is_some() && a.finished_at.is_none());
                assert!(a.preemption.is_some());
                let holds = a
                    .assigned_nodes
                    .iter()
                    .any(|n| s.nodes()[n].allocations.contains(&a.id));
                assert!(holds, "preempting {} holds no node", a.id);
            }
            AllocState::Running => {
                assert_eq!(a.assigned_nodes.len(), a.nodes as usize);
                let distinct: BTreeSet<_> = a.assigned_nodes.iter().collect();
                assert_eq!(distinct.len(), a.assigned_nodes.len());
                assert!(a.started_at.is_some() && a.finished_at.is_none());
                assert!(a.reason.is_none());
                // Each rank either still occupies its node or has reported exit 0.
                for nid in &a.assigned_nodes {
                    let holds = s.nodes()[nid].allocations.contains(&a.id);
                    let reported = a.node_exit_codes.get(nid);
                    assert!(
                        holds != reported.is_some(),
                        "running {} on {nid}: holds={holds} reported={reported:?}",
                        a.id
                    );
                    assert!(reported.is_none_or(|&c| c == 0));
                }
                assert!(a.node_exit_codes.len() < a.assigned_nodes.len());
            }
            AllocState::Completed => {
                assert_eq!(a.exit_code, Some(0));
                assert!(a.finished_at.is_some() && a.reason.is_none());
                assert_eq!(a.node_exit_codes.len(), a.assigned_nodes.len());
                assert!(a.node_exit_codes.values().all(|&c| c == 0));
            }
            AllocState::Failed | AllocState::Cancelled => {
                assert!(a.finished_at.is_some() && a.reason.is_some());
                if a.state == AllocState::Cancelled {
                    assert!(
                        matches!(
                            a.reason.as_deref(),
                            Some("cancelled" | "dependency_failed" | "requeued")
                        ),
                        "{a:?}"
                    );
                }
            }
        }
        check_policy_fields(s, a);
    }

    for (nid, claimant) in s.claims() {
        let a = &s.allocations()[claimant];
        assert_eq!(a.state, AllocState::Pending, "claim of {nid} by {claimant}");
        assert!(!a.held, "held {claimant} keeps a claim");
        assert!(a.claimed_nodes.contains(nid));
    }

    // Every derived index equals what loading the serialized state rebuilds.
    let rebuilt = ClusterState::from(super::StateData::from(s.clone()));
    assert_eq!(&rebuilt, s, "derived indexes disagree with a rebuild");
}

/// Invariants of tenants, vClusters, arrays, dependencies, holds and requeues.
fn check_policy_fields(s: &ClusterState, a: &crate::allocation::Allocation) {
    use crate::dependency::DepStatus;
    assert!(s.tenant(&a.tenant).is_some(), "{}: unknown tenant", a.id);
    assert!(
        s.vcluster(&a.vcluster).is_some(),
        "{}: unknown vCluster",
        a.id
    );
    assert!(!a.held || a.state == AllocState::Pending, "{} held", a.id);
    assert!(
        a.estimated_start.is_none() || a.state == AllocState::Pending,
        "{} has an estimate",
        a.id
    );
    for d in &a.depends_on {
        assert!(d.on < a.id, "{} depends on a later {}", a.id, d.on);
        if a.state == AllocState::Pending {
            assert_ne!(
                s.dependency_status(d),
                DepStatus::Broken,
                "{} pending with a broken dependency {d:?}",
                a.id
            );
        }
    }
    if let Some(next) = a.requeued_as {
        assert!(next > a.id);
        assert_eq!(s.allocations()[&next].requeued_from, Some(a.id));
        assert_ne!(a.state, AllocState::Running);
    }
    if let Some(prev) = a.requeued_from {
        assert_eq!(s.allocations()[&prev].requeued_as, Some(a.id));
    }
    assert_eq!(a.array_id.is_some(), a.array_index.is_some());
    if let Some(array) = a.array_id {
        let info = s.array(array).expect("array recorded");
        assert!(a.id >= info.id);
        if let Some(cap) = info.max_running {
            let running = s.array_tally(array)[AllocState::Running as usize];
            assert!(running <= cap, "array {array} runs {running} > cap {cap}");
        }
    }
}
