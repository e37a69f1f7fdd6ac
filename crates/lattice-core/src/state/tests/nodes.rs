//! Apply tests for nodes: registration, drain/undrain, liveness.

use super::*;

fn drain(s: &mut ClusterState, node: &str, drain: bool) {
    ok(
        s,
        Command::SetNodeDrain {
            now: at(3),
            node_id: node.into(),
            drain,
            reason: Some("maintenance".into()),
        },
    );
}

fn liveness(s: &mut ClusterState, down: &[&str], up: &[&str]) -> u32 {
    let ids = |l: &[&str]| l.iter().map(|n| n.to_string()).collect();
    match ok(
        s,
        Command::SetNodeLiveness {
            now: at(50),
            down: ids(down),
            up: ids(up),
        },
    ) {
        CommandOutcome::Liveness { changed } => changed,
        other => panic!("unexpected outcome {other:?}"),
    }
}

fn state_of(s: &ClusterState, node: &str) -> NodeState {
    s.node(node).unwrap().state
}

#[test]
fn register_creates_a_ready_node() {
    let mut s = ClusterState::default();
    let out = ok(
        &mut s,
        Command::RegisterNode {
            now: at(1),
            registration: reg("n1"),
        },
    );
    let CommandOutcome::Node(n) = out else {
        panic!("unexpected outcome {out:?}");
    };
    assert_eq!(*n, s.nodes()["n1"]);
    assert_eq!(n.state, NodeState::Ready);
    assert!(n.is_free());
    assert_eq!((n.registered_at, n.last_heartbeat), (at(1), Some(at(1))));
    assert_eq!(n.cpus, 16);
}

#[test]
fn register_with_a_bad_id_is_invalid_and_changes_nothing() {
    let mut s = cluster(&["n1"]);
    for id in [String::new(), "x".repeat(64)] {
        let err = rejected(
            &mut s,
            Command::RegisterNode {
                now: at(1),
                registration: reg(&id),
            },
        );
        assert!(matches!(err, Rejection::Invalid { ref field, .. } if field == "id"));
    }
}

#[test]
fn drain_with_work_goes_draining_then_drained_after_release() {
    let mut s = cluster(&["n1", "n2"]);
    let id = submit(&mut s, at(0), spec(1));
    place(&mut s, id, &["n1"]);
    drain(&mut s, "n1", true);
    assert_eq!(state_of(&s, "n1"), NodeState::Draining);
    assert_eq!(
        s.node("n1").unwrap().state_reason.as_deref(),
        Some("maintenance")
    );
    // Draining leaves running work alone.
    assert_eq!(s.allocations()[&id].state, AllocState::Running);
    assert_eq!(desired(&s, "n1"), vec![(id, Desired::Run)]);
    report(&mut s, at(10), vec![exited(id, "n1", 0)]);
    assert_eq!(state_of(&s, "n1"), NodeState::Drained);
    assert!(!s.node("n1").unwrap().is_free());
    drain(&mut s, "n1", false);
    assert_eq!(state_of(&s, "n1"), NodeState::Ready);
    assert_eq!(s.node("n1").unwrap().state_reason, None);
    assert!(s.node("n1").unwrap().is_free());
}

#[test]
fn drain_of_an_empty_node_is_drained_at_once() {
    let mut s = cluster(&["n1"]);
    drain(&mut s, "n1", true);
    assert_eq!(state_of(&s, "n1"), NodeState::Drained);
    let id = submit(&mut s, at(4), spec(1));
    let plan = crate::scheduler::schedule(&s, at(5));
    assert!(plan.placements.is_empty());
    apply_plan(&mut s, at(5), plan);
    assert_eq!(s.allocations()[&id].reason.as_deref(), Some("resources"));
    drain(&mut s, "n1", false);
    let plan = crate::scheduler::schedule(&s, at(6));
    assert_eq!(apply_plan(&mut s, at(6), plan).placed, vec![id]);
}

#[test]
fn register_twice_keeps_drain_and_updates_resources() {
    let mut s = cluster(&["n1"]);
    drain(&mut s, "n1", true);
    let mut again = reg("n1");
    again.cpus = 64;
    again.features = vec!["ib".into()];
    ok(
        &mut s,
        Command::RegisterNode {
            now: at(9),
            registration: again,
        },
    );
    let n = s.node("n1").unwrap();
    assert!(n.drain);
    assert_eq!(n.state, NodeState::Drained);
    assert_eq!(n.state_reason.as_deref(), Some("maintenance"));
    assert_eq!((n.cpus, n.features.clone()), (64, vec!["ib".to_string()]));
    assert_eq!(n.registered_at, at(9));
    assert_eq!(s.nodes().len(), 1);
}

#[test]
fn register_again_keeps_the_work_of_a_live_node() {
    let mut s = cluster(&["n1"]);
    let id = submit(&mut s, at(0), spec(1));
    place(&mut s, id, &["n1"]);
    ok(
        &mut s,
        Command::RegisterNode {
            now: at(9),
            registration: reg("n1"),
        },
    );
    assert!(s.node("n1").unwrap().allocations.contains(&id));
    assert_eq!(s.allocations()[&id].state, AllocState::Running);
}

#[test]
fn node_down_fails_its_running_work_and_frees_it() {
    let mut s = cluster(&["n1", "n2", "n3"]);
    let id = submit(&mut s, at(0), spec(2));
    place(&mut s, id, &["n1", "n2"]);
    assert_eq!(liveness(&mut s, &["n2"], &[]), 1);
    let a = &s.allocations()[&id];
    assert_eq!(a.state, AllocState::Failed);
    assert_eq!(a.reason.as_deref(), Some("node_lost"));
    assert_eq!(a.finished_at, Some(at(50)));
    assert_eq!(a.node_exit_codes.get("n2"), Some(&-1));
    let n2 = s.node("n2").unwrap();
    assert_eq!(n2.state, NodeState::Down);
    assert!(n2.allocations.is_empty());
    assert_eq!(n2.state_reason.as_deref(), Some("heartbeat lost"));
    // The surviving rank is told to stop and keeps its node until it reports.
    assert_eq!(desired(&s, "n1"), vec![(id, Desired::Stop)]);
    assert_eq!(s.state_counts()[&AllocState::Failed], 1);
    assert_eq!(s.state_counts()[&AllocState::Running], 0);

    // A down node is never offered new work.
    let other = submit(&mut s, at(51), spec(1));
    let plan = crate::scheduler::schedule(&s, at(52));
    assert_eq!(plan.placements[0].nodes, vec!["n3".to_string()]);
    apply_plan(&mut s, at(52), plan);
    assert_eq!(
        s.allocations()[&other].assigned_nodes,
        vec!["n3".to_string()]
    );

    // Repeating the verdict is a no-op; coming back makes it ready again.
    let before = s.clone();
    assert_eq!(liveness(&mut s, &["n2", "ghost"], &["n1", "ghost"]), 0);
    assert_unchanged_but_revision(&before, &s);
    assert_eq!(liveness(&mut s, &[], &["n2"]), 1);
    assert_eq!(state_of(&s, "n2"), NodeState::Ready);
    assert_eq!(s.node("n2").unwrap().state_reason, None);
    assert!(s.node("n2").unwrap().is_free());
}

#[test]
fn node_down_only_frees_work_that_already_ended() {
    let mut s = cluster(&["n1"]);
    let id = submit(&mut s, at(0), spec(1));
    place(&mut s, id, &["n1"]);
    ok(
        &mut s,
        Command::CancelAllocation {
            now: at(2),
            id,
            by: "alice".into(),
        },
    );
    liveness(&mut s, &["n1"], &[]);
    let a = &s.allocations()[&id];
    assert_eq!(a.state, AllocState::Cancelled);
    assert_eq!(a.reason.as_deref(), Some("cancelled"));
    assert!(s.node("n1").unwrap().allocations.is_empty());
}

#[test]
fn drained_node_coming_back_stays_drained() {
    let mut s = cluster(&["n1"]);
    drain(&mut s, "n1", true);
    liveness(&mut s, &["n1"], &[]);
    assert_eq!(state_of(&s, "n1"), NodeState::Down);
    liveness(&mut s, &[], &["n1"]);
    assert_eq!(state_of(&s, "n1"), NodeState::Drained);
}

#[test]
fn re_registration_brings_a_down_node_back() {
    let mut s = cluster(&["n1"]);
    liveness(&mut s, &["n1"], &[]);
    ok(
        &mut s,
        Command::RegisterNode {
            now: at(60),
            registration: reg("n1"),
        },
    );
    let n = s.node("n1").unwrap();
    assert_eq!(n.state, NodeState::Ready);
    assert_eq!(n.last_heartbeat, Some(at(60)));
    assert_eq!(
        n.state_reason, None,
        "a ready node still says why it was down"
    );
}

/// A released claim's wipe is ordered in the work answer of its node (and wakes its
/// long-poll); the order disappears once the wipe is reported.
#[test]
fn work_orders_the_wipe_of_a_released_node_until_it_is_reported() {
    use crate::agent::WipeOrder;
    use crate::command::{ClaimSpec, ReleaseSpec, WipeReport};
    use crate::tenant::TenantChange;

    let mut s = cluster(&["n1", "n2"]);
    ok(
        &mut s,
        Command::PutTenant {
            now: at(1),
            name: "secret".into(),
            change: TenantChange {
                sensitive: Some(true),
                ..TenantChange::default()
            },
            create: true,
        },
    );
    ok(
        &mut s,
        Command::ClaimNodes {
            now: at(2),
            claim: ClaimSpec {
                tenant: "secret".into(),
                user: "ada".into(),
                by: None,
                count: 0,
                node_ids: vec!["n1".into()],
            },
        },
    );
    let both = ["n1".to_string(), "n2".to_string()];
    assert!(s.work_for(&both).wipes.is_empty(), "claimed, not released");
    let before = s.work_revision(&both);
    ok(
        &mut s,
        Command::ReleaseNodes {
            now: at(3),
            release: ReleaseSpec {
                tenant: "secret".into(),
                user: "ada".into(),
                node_ids: Vec::new(),
                by: "ada".into(),
                force: false,
            },
        },
    );
    let work = s.work_for(&both);
    assert!(work.revision > before, "the release wakes the long-poll");
    let wipe_id = s.nodes()["n1"]
        .claim
        .as_ref()
        .and_then(|c| c.wipe.as_ref())
        .expect("wipe pending")
        .id;
    assert_eq!(
        work.wipes,
        vec![WipeOrder {
            node_id: "n1".into(),
            wipe_id
        }]
    );
    assert!(s.work_for(&["n2".into()]).wipes.is_empty());

    ok(
        &mut s,
        Command::ReportWipes {
            now: at(4),
            reports: vec![WipeReport {
                node_id: "n1".into(),
                wipe_id,
                success: true,
                detail: String::new(),
            }],
        },
    );
    let work = s.work_for(&both);
    assert!(work.wipes.is_empty());
    assert!(work.revision > before);
}

#[test]
fn applying_names_the_nodes_whose_work_changed_and_answers_only_them() {
    let mut s = cluster(&["n1", "n2", "n3"]);
    s.take_work_changed();
    let all = ["n1".to_string(), "n2".to_string(), "n3".to_string()];
    let since = s.work_revision(&all);
    let id = submit(&mut s, at(1), spec(2));
    assert!(
        s.take_work_changed().is_empty(),
        "a submission changes no node's work"
    );
    place(&mut s, id, &["n1", "n3"]);
    assert_eq!(
        s.take_work_changed(),
        BTreeSet::from(["n1".to_string(), "n3".to_string()])
    );
    assert!(s.take_work_changed().is_empty(), "drained");

    let delta = s.work_changed_since(&all, since);
    assert_eq!(
        delta.changed_nodes,
        Some(vec!["n1".to_string(), "n3".to_string()])
    );
    assert_eq!(delta.assignments.len(), 2);
    assert!(delta.speaks_for(&"n3".to_string()) && !delta.speaks_for(&"n2".to_string()));
    assert_eq!(delta.revision, s.work_for(&all).revision);
    let none = s.work_changed_since(&all, delta.revision);
    assert_eq!(none.changed_nodes, Some(Vec::new()));
    assert!(none.assignments.is_empty());
    assert!(
        s.work_for(&all).speaks_for(&"n2".to_string()),
        "a full answer"
    );

    report(&mut s, at(5), vec![exited(id, "n1", 0)]);
    assert_eq!(s.take_work_changed(), BTreeSet::from(["n1".to_string()]));
}

#[test]
fn a_poll_is_stale_exactly_when_a_node_changed_after_its_revision_or_is_unknown() {
    let mut s = cluster(&["n1", "n2", "n3"]);
    let all = ["n1".to_string(), "n2".to_string(), "n3".to_string()];
    // The definition the poll handler used before `work_stale`: the newest revision among
    // the known nodes is newer, or a node is unknown.
    let by_definition = |s: &ClusterState, nodes: &[String], known: u64| {
        s.work_revision(nodes) > known || nodes.iter().any(|n| s.node(n).is_none())
    };
    let since = s.work_revision(&all);
    let id = submit(&mut s, at(1), spec(2));
    place(&mut s, id, &["n1", "n3"]);
    let now = s.work_revision(&all);
    assert!(now > since);
    let with_unknown = ["n2".to_string(), "gone".to_string()];
    for nodes in [&all[..], &all[1..2], &all[2..], &with_unknown[..], &[]] {
        for known in [0, since, now, now + 1] {
            assert_eq!(
                s.work_stale(nodes, known),
                by_definition(&s, nodes, known),
                "{nodes:?} known {known}"
            );
            // The answer's revision is still the newest of the known nodes.
            assert_eq!(
                s.work_changed_since(nodes, known).revision,
                s.work_revision(nodes)
            );
        }
    }
    assert!(!s.work_stale(&all[1..2], since), "n2's work did not change");
    assert!(
        s.work_stale(&with_unknown, now),
        "an unknown node answers at once"
    );
}
