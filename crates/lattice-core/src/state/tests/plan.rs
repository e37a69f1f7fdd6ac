//! Apply tests for `ApplyPlan`: every placement is re-validated against the state at commit.

use super::*;

/// Applies a one-placement plan that must be refused; returns the reason. A refused placement
/// changes nothing.
fn refused(s: &mut ClusterState, id: AllocId, nodes: &[&str]) -> String {
    let before = s.clone();
    let out = apply_plan(s, at(1), placement(id, nodes));
    assert!(out.placed.is_empty(), "placed {id} on {nodes:?}");
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].0, id);
    assert_unchanged_but_revision(&before, s);
    out.rejected[0].1.clone()
}

#[test]
fn valid_placement_is_accepted() {
    let mut s = cluster(&["n1", "n2", "n3"]);
    let id = submit(&mut s, at(0), spec(2));
    let out = apply_plan(&mut s, at(7), placement(id, &["n3", "n1"]));
    assert_eq!(
        out,
        PlanOutcome {
            preempted: Vec::new(),
            preemptions_rejected: Vec::new(),
            placed: vec![id],
            rejected: vec![]
        }
    );
    let a = &s.allocations()[&id];
    assert_eq!(a.state, AllocState::Running);
    assert_eq!(a.assigned_nodes, vec!["n3".to_string(), "n1".to_string()]);
    assert_eq!(a.started_at, Some(at(7)));
    for n in ["n1", "n3"] {
        assert_eq!(s.node(n).unwrap().allocations, BTreeSet::from([id]));
        assert_eq!(s.node(n).unwrap().work_revision, s.revision());
    }
    assert!(s.node("n2").unwrap().is_free());
    assert!(s.pending_ids().is_empty());
}

#[test]
fn placement_on_unavailable_nodes_is_refused() {
    let mut s = cluster(&["busy", "drained", "draining", "down", "free"]);
    let running = submit(&mut s, at(0), spec(1));
    place(&mut s, running, &["busy"]);
    let draining = submit(&mut s, at(0), spec(1));
    place(&mut s, draining, &["draining"]);
    for n in ["drained", "draining"] {
        ok(
            &mut s,
            Command::SetNodeDrain {
                now: at(2),
                node_id: n.into(),
                drain: true,
                reason: None,
            },
        );
    }
    ok(
        &mut s,
        Command::SetNodeLiveness {
            now: at(2),
            down: vec!["down".into()],
            up: vec![],
        },
    );
    let id = submit(&mut s, at(3), spec(1));
    for n in ["busy", "drained", "draining", "down"] {
        let why = refused(&mut s, id, &[n]);
        assert!(why.contains("not free"), "{n}: {why}");
    }
    let why = refused(&mut s, id, &["ghost"]);
    assert_eq!(why, "unknown node ghost");
    place(&mut s, id, &["free"]);
}

#[test]
fn placement_with_wrong_or_duplicate_nodes_is_refused() {
    let mut s = cluster(&["n1", "n2", "n3"]);
    let id = submit(&mut s, at(0), spec(2));
    assert_eq!(refused(&mut s, id, &["n1"]), "needs 2 nodes, plan gives 1");
    assert_eq!(
        refused(&mut s, id, &["n1", "n2", "n3"]),
        "needs 2 nodes, plan gives 3"
    );
    assert_eq!(refused(&mut s, id, &["n1", "n1"]), "a node appears twice");
    assert_eq!(refused(&mut s, id, &["n1", "ghost"]), "unknown node ghost");
}

#[test]
fn placement_of_non_pending_allocations_is_refused() {
    let mut s = cluster(&["n1", "n2"]);
    let running = submit(&mut s, at(0), spec(1));
    place(&mut s, running, &["n1"]);
    assert_eq!(refused(&mut s, running, &["n2"]), "allocation is running");
    let cancelled = submit(&mut s, at(0), spec(1));
    ok(
        &mut s,
        Command::CancelAllocation {
            now: at(1),
            id: cancelled,
            by: "alice".into(),
        },
    );
    assert_eq!(
        refused(&mut s, cancelled, &["n2"]),
        "allocation is cancelled"
    );
    assert_eq!(refused(&mut s, 42, &["n2"]), "unknown allocation");
}

#[test]
fn placement_violating_constraints_is_refused() {
    let mut s = ClusterState::default();
    let mut gpu = reg("gpu");
    gpu.gpus = GpuInfo {
        count: 4,
        model: Some("NVIDIA H100 80GB HBM3".into()),
    };
    gpu.features = vec!["ib".into()];
    for r in [reg("plain"), gpu] {
        ok(
            &mut s,
            Command::RegisterNode {
                now: at(0),
                registration: r,
            },
        );
    }
    let constrained = [
        Constraints {
            features: vec!["ib".into()],
            ..Default::default()
        },
        Constraints {
            gpu_type: Some("h100".into()),
            ..Default::default()
        },
        Constraints {
            min_gpus: Some(2),
            ..Default::default()
        },
        Constraints {
            min_cpus: Some(32),
            ..Default::default()
        },
        Constraints {
            min_memory_gb: Some(65),
            ..Default::default()
        },
    ];
    for c in constrained {
        let id = submit(
            &mut s,
            at(1),
            AllocationSpec {
                constraints: c.clone(),
                ..spec(1)
            },
        );
        let why = refused(&mut s, id, &["plain"]);
        assert_eq!(why, "node plain does not satisfy the constraints", "{c:?}");
    }
}

#[test]
fn one_plan_cannot_book_a_node_twice() {
    let mut s = cluster(&["n1", "n2"]);
    let a = submit(&mut s, at(0), spec(1));
    let b = submit(&mut s, at(0), spec(2));
    let c = submit(&mut s, at(0), spec(1));
    let plan = Plan {
        placements: vec![
            Placement {
                allocation: a,
                nodes: vec!["n1".into()],
            },
            Placement {
                allocation: b,
                nodes: vec!["n2".into(), "n1".into()],
            },
            Placement {
                allocation: c,
                nodes: vec!["n2".into()],
            },
        ],
        ..Default::default()
    };
    let out = apply_plan(&mut s, at(1), plan);
    assert_eq!(out.placed, vec![a, c]);
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].0, b);
    assert_eq!(s.allocations()[&b].state, AllocState::Pending);
}

#[test]
fn plan_reasons_only_touch_pending_allocations() {
    let mut s = cluster(&["n1"]);
    let running = submit(&mut s, at(0), spec(1));
    place(&mut s, running, &["n1"]);
    let pending = submit(&mut s, at(0), spec(1));
    let plan = Plan {
        placements: vec![],
        reasons: vec![
            (running, "resources".into(), Some("x".into())),
            (pending, "resources".into(), Some("waiting".into())),
            (99, "resources".into(), None),
        ],
        ..Default::default()
    };
    apply_plan(&mut s, at(2), plan);
    assert_eq!(s.allocations()[&running].reason, None);
    let p = &s.allocations()[&pending];
    assert_eq!(p.reason.as_deref(), Some("resources"));
    assert_eq!(p.reason_detail.as_deref(), Some("waiting"));
    // Placing it later clears the pending reason.
    report(&mut s, at(3), vec![exited(running, "n1", 0)]);
    place(&mut s, pending, &["n1"]);
    assert_eq!(s.allocations()[&pending].reason, None);
    assert_eq!(s.allocations()[&pending].reason_detail, None);
}
