//! Apply tests for the allocation lifecycle: submit, cancel, exit reports.

use super::*;

#[test]
fn submit_assigns_ids_in_commit_order() {
    let mut s = ClusterState::default();
    assert_eq!(s.next_allocation_id(), 1);
    let ids: Vec<AllocId> = (0..3).map(|i| submit(&mut s, at(i), spec(1))).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(s.next_allocation_id(), 4);
    for (i, id) in ids.iter().enumerate() {
        let a = &s.allocations()[id];
        assert_eq!(a.state, AllocState::Pending);
        assert_eq!(a.submitted_at, at(i as u64));
        assert_eq!(a.name, "job");
    }
    assert_eq!(s.pending_ids().iter().copied().collect::<Vec<_>>(), ids);
    assert_eq!(s.state_counts()[&AllocState::Pending], 3);
    assert_eq!(s.revision(), 3);
}

#[test]
fn cancel_pending_allocation() {
    let mut s = ClusterState::default();
    let id = submit(&mut s, at(0), spec(1));
    let out = ok(
        &mut s,
        Command::CancelAllocation {
            now: at(5),
            id,
            by: "alice".into(),
        },
    );
    let CommandOutcome::Allocation(a) = out else {
        panic!("unexpected outcome {out:?}");
    };
    assert_eq!(a.state, AllocState::Cancelled);
    assert_eq!(*a, *s.allocations()[&id]);
    assert_eq!(a.reason.as_deref(), Some("cancelled"));
    assert_eq!(a.reason_detail.as_deref(), Some("cancelled by alice"));
    assert_eq!(a.finished_at, Some(at(5)));
    assert!(s.pending_ids().is_empty());
    assert_eq!(s.state_counts()[&AllocState::Cancelled], 1);
}

#[test]
fn cancel_running_keeps_nodes_until_their_exits_are_reported() {
    let mut s = cluster(&["n1", "n2", "n3"]);
    let id = submit(&mut s, at(0), spec(2));
    place(&mut s, id, &["n1", "n2"]);
    let rev_before = s.revision();
    ok(
        &mut s,
        Command::CancelAllocation {
            now: at(5),
            id,
            by: "bob".into(),
        },
    );
    assert_eq!(s.allocations()[&id].state, AllocState::Cancelled);
    for n in ["n1", "n2"] {
        let node = s.node(n).unwrap();
        assert!(node.allocations.contains(&id), "{n} released too early");
        assert!(!node.is_free());
        assert!(node.work_revision > rev_before, "{n}'s agent is not woken");
        assert_eq!(desired(&s, n), vec![(id, Desired::Stop)]);
    }
    // The occupied nodes are not offered to new work.
    let other = submit(&mut s, at(6), spec(2));
    let plan = crate::scheduler::schedule(&s, at(7));
    assert!(plan.placements.is_empty());
    assert_eq!(plan.reasons[0].0, other);

    let stopped = |node: &str| ExitReport {
        outcome: ExitOutcome::Stopped,
        exit_code: None,
        signal: Some(15),
        ..exited(id, node, 0)
    };
    assert_eq!(report(&mut s, at(8), vec![stopped("n1")]), (1, 0));
    assert!(s.node("n1").unwrap().is_free());
    assert!(!s.node("n2").unwrap().is_free());
    assert_eq!(report(&mut s, at(9), vec![stopped("n2")]), (1, 0));
    assert!(s.node("n2").unwrap().is_free());
    // The late reports free the nodes but do not rewrite how the allocation ended.
    let a = &s.allocations()[&id];
    assert_eq!(a.state, AllocState::Cancelled);
    assert_eq!(a.reason.as_deref(), Some("cancelled"));
    assert_eq!(a.finished_at, Some(at(5)));
}

#[test]
fn cancel_of_terminal_allocation_is_a_conflict_and_changes_nothing() {
    let mut s = cluster(&["n1"]);
    let done = submit(&mut s, at(0), spec(1));
    place(&mut s, done, &["n1"]);
    report(&mut s, at(2), vec![exited(done, "n1", 0)]);
    let cancelled = submit(&mut s, at(3), spec(1));
    let cancel = |id| Command::CancelAllocation {
        now: at(4),
        id,
        by: "alice".into(),
    };
    ok(&mut s, cancel(cancelled));
    for id in [done, cancelled] {
        let err = rejected(&mut s, cancel(id));
        assert!(matches!(err, Rejection::Conflict { .. }), "{err:?}");
        assert!(err.to_string().contains(&id.to_string()), "{err}");
    }
}

#[test]
fn unknown_ids_are_not_found_and_change_nothing() {
    let mut s = cluster(&["n1"]);
    submit(&mut s, at(0), spec(1));
    for id in [0, 2, 99] {
        let err = rejected(
            &mut s,
            Command::CancelAllocation {
                now: at(1),
                id,
                by: "alice".into(),
            },
        );
        assert_eq!(err, Rejection::not_found("allocation", id));
    }
    let err = rejected(
        &mut s,
        Command::SetNodeDrain {
            now: at(1),
            node_id: "ghost".into(),
            drain: true,
            reason: None,
        },
    );
    assert_eq!(err, Rejection::not_found("node", "ghost"));
    // Exit reports and liveness verdicts about unknown things are ignored, not refused.
    for r in [exited(7, "n1", 0), exited(1, "ghost", 0)] {
        let before = s.clone();
        assert_eq!(report(&mut s, at(2), vec![r]), (0, 1));
        assert_unchanged_but_revision(&before, &s);
    }
}

#[test]
fn single_node_exit_zero_completes() {
    let mut s = cluster(&["n1"]);
    let id = submit(&mut s, at(0), spec(1));
    place(&mut s, id, &["n1"]);
    assert_eq!(report(&mut s, at(10), vec![exited(id, "n1", 0)]), (1, 0));
    let a = &s.allocations()[&id];
    assert_eq!(a.state, AllocState::Completed);
    assert_eq!(a.exit_code, Some(0));
    assert_eq!(a.reason, None);
    assert_eq!(a.finished_at, Some(at(10)));
    assert_eq!(a.node_exit_codes, BTreeMap::from([("n1".to_string(), 0)]));
    assert!(s.node("n1").unwrap().is_free());
    assert_eq!(s.state_counts()[&AllocState::Completed], 1);
    assert_eq!(s.state_counts()[&AllocState::Running], 0);
}

#[test]
fn non_zero_exit_fails_with_reason_exit_code() {
    let mut s = cluster(&["n1"]);
    let id = submit(&mut s, at(0), spec(1));
    place(&mut s, id, &["n1"]);
    report(&mut s, at(10), vec![exited(id, "n1", 3)]);
    let a = &s.allocations()[&id];
    assert_eq!(a.state, AllocState::Failed);
    assert_eq!(a.exit_code, Some(3));
    assert_eq!(a.reason.as_deref(), Some("exit_code"));
    assert_eq!(a.reason_detail.as_deref(), Some("exit code 3 on n1"));
    assert!(s.node("n1").unwrap().is_free());
    assert_eq!(s.state_counts()[&AllocState::Failed], 1);
}

#[test]
fn failure_outcomes_name_their_reason() {
    let cases = [
        (ExitOutcome::Exited, None, Some(9), "signal", -9),
        (ExitOutcome::Walltime, None, Some(9), "walltime", -9),
        (ExitOutcome::LaunchFailed, None, None, "launch_failed", -1),
        (ExitOutcome::Stopped, Some(0), None, "stopped", 0),
    ];
    for (outcome, exit_code, signal, reason, code) in cases {
        let mut s = cluster(&["n1"]);
        let id = submit(&mut s, at(0), spec(1));
        place(&mut s, id, &["n1"]);
        let r = ExitReport {
            outcome,
            exit_code,
            signal,
            ..exited(id, "n1", 0)
        };
        report(&mut s, at(10), vec![r]);
        let a = &s.allocations()[&id];
        assert_eq!(a.state, AllocState::Failed, "{outcome:?}");
        assert_eq!(a.reason.as_deref(), Some(reason), "{outcome:?}");
        assert_eq!(a.exit_code, Some(code), "{outcome:?}");
    }
    // The walltime detail names the limit.
    let mut s = cluster(&["n1"]);
    let id = submit(&mut s, at(0), spec(1));
    place(&mut s, id, &["n1"]);
    let r = ExitReport {
        outcome: ExitOutcome::Walltime,
        ..exited(id, "n1", 137)
    };
    report(&mut s, at(70), vec![r]);
    let a = &s.allocations()[&id];
    assert_eq!(a.reason.as_deref(), Some("walltime"));
    assert_eq!(
        a.reason_detail.as_deref(),
        Some("killed at walltime of 60s")
    );
}

#[test]
fn multi_node_failure_of_one_rank_stops_the_others() {
    let mut s = cluster(&["n1", "n2", "n3"]);
    let id = submit(&mut s, at(0), spec(3));
    place(&mut s, id, &["n1", "n2", "n3"]);
    for n in ["n1", "n2", "n3"] {
        assert_eq!(desired(&s, n), vec![(id, Desired::Run)]);
    }
    let rev = s.revision();
    report(&mut s, at(10), vec![exited(id, "n2", 1)]);
    let a = &s.allocations()[&id];
    assert_eq!(a.state, AllocState::Failed);
    assert_eq!(a.reason.as_deref(), Some("exit_code"));
    assert_eq!(a.exit_code, Some(1));
    assert!(desired(&s, "n2").is_empty());
    for n in ["n1", "n3"] {
        assert_eq!(desired(&s, n), vec![(id, Desired::Stop)]);
        assert!(s.node(n).unwrap().work_revision > rev, "{n} not woken");
    }
    // The remaining ranks' reports free their nodes and keep the first failure.
    report(
        &mut s,
        at(11),
        vec![exited(id, "n1", 143), exited(id, "n3", 0)],
    );
    let a = &s.allocations()[&id];
    assert_eq!((a.state, a.exit_code), (AllocState::Failed, Some(1)));
    assert_eq!(a.finished_at, Some(at(10)));
    assert_eq!(a.node_exit_codes.len(), 3);
    assert!(s.nodes().values().all(|n| n.is_free()));
}

#[test]
fn multi_node_completes_only_after_the_last_rank() {
    let mut s = cluster(&["n1", "n2", "n3"]);
    let id = submit(&mut s, at(0), spec(3));
    place(&mut s, id, &["n3", "n1", "n2"]);
    assert_eq!(s.work_for(&["n1".into()]).assignments[0].rank, 1);
    report(&mut s, at(10), vec![exited(id, "n3", 0)]);
    report(&mut s, at(11), vec![exited(id, "n1", 0)]);
    let a = &s.allocations()[&id];
    assert_eq!(a.state, AllocState::Running);
    assert_eq!(a.exit_code, None);
    assert!(s.node("n1").unwrap().is_free());
    assert_eq!(desired(&s, "n2"), vec![(id, Desired::Run)]);
    report(&mut s, at(12), vec![exited(id, "n2", 0)]);
    let a = &s.allocations()[&id];
    assert_eq!(a.state, AllocState::Completed);
    assert_eq!(a.exit_code, Some(0));
    assert_eq!(a.finished_at, Some(at(12)));
}

#[test]
fn duplicate_and_stale_reports_are_ignored() {
    let mut s = cluster(&["n1", "n2"]);
    let id = submit(&mut s, at(0), spec(1));
    place(&mut s, id, &["n1"]);
    // The same report twice in one batch, plus one from a node that never ran it.
    let (applied, ignored) = report(
        &mut s,
        at(10),
        vec![
            exited(id, "n1", 0),
            exited(id, "n1", 0),
            exited(id, "n2", 0),
        ],
    );
    assert_eq!((applied, ignored), (1, 2));
    let after_first = s.clone();
    // A resend after a lost answer, even with a different code, changes nothing.
    assert_eq!(report(&mut s, at(20), vec![exited(id, "n1", 7)]), (0, 1));
    assert_unchanged_but_revision(&after_first, &s);
    let a = &s.allocations()[&id];
    assert_eq!((a.state, a.exit_code), (AllocState::Completed, Some(0)));
    assert_eq!(a.finished_at, Some(at(10)));
}

#[test]
fn report_for_a_pending_allocation_is_ignored() {
    let mut s = cluster(&["n1"]);
    let id = submit(&mut s, at(0), spec(1));
    let before = s.clone();
    assert_eq!(report(&mut s, at(1), vec![exited(id, "n1", 0)]), (0, 1));
    assert_unchanged_but_revision(&before, &s);
}

#[test]
fn snapshot_round_trip_gives_an_equal_state_after_state_changes() {
    // Every allocation leaves `pending`, so its count drops to zero; the index rebuilt from the
    // snapshot must compare equal to the live one.
    let mut s = cluster(&["n1", "n2"]);
    let done = submit(&mut s, at(0), spec(1));
    let failed = submit(&mut s, at(0), spec(1));
    place(&mut s, done, &["n1"]);
    place(&mut s, failed, &["n2"]);
    report(
        &mut s,
        at(5),
        vec![exited(done, "n1", 0), exited(failed, "n2", 2)],
    );
    let bin = bincode::serialize(&s).unwrap();
    let restored: ClusterState = bincode::deserialize(&bin).unwrap();
    assert_eq!(restored, s);
    check_invariants(&restored);
}
