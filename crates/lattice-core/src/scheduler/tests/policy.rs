//! Unit tests of single policy rules: backfill decisions, FIFO, reasons for held, dependency,
//! quota and array-cap waits, estimated starts, topology packing and fair-share order.

use super::*;
use crate::array::parse_array;
use crate::dependency::parse_dependencies;
use crate::submit::SubmitOptions;
use crate::tenant::TenantChange;
use crate::vcluster::{Policy, VClusterChange};

fn submit_with(
    s: &mut ClusterState,
    now: Timestamp,
    spec: AllocationSpec,
    o: SubmitOptions,
) -> AllocId {
    let o = SubmitOptions {
        create_tenant: true,
        ..o
    };
    match apply(
        s,
        Command::Submit {
            now,
            spec,
            options: o,
        },
    ) {
        CommandOutcome::Allocation(a) => a.id,
        other => panic!("{other:?}"),
    }
}

fn wall(nodes: u32, walltime_seconds: u64, priority: u8) -> AllocationSpec {
    AllocationSpec {
        walltime_seconds,
        priority,
        ..spec(nodes)
    }
}

fn set_policy(s: &mut ClusterState, policy: Policy) {
    apply(
        s,
        Command::PutVCluster {
            now: at(0),
            name: "default".into(),
            change: VClusterChange {
                policy: Some(policy),
                ..Default::default()
            },
            create: false,
        },
    );
}

/// n1, n3 busy for an hour from at(0); n2, n4 free.
fn half_busy() -> ClusterState {
    let mut s = cluster(&["n1", "n2", "n3", "n4"]);
    occupy(&mut s, "n1");
    occupy(&mut s, "n3");
    s
}

#[test]
fn a_job_that_would_delay_the_reservation_waits_with_reason_priority() {
    let mut s = half_busy();
    let big = submit(&mut s, at(1), wall(3, 600, 9));
    // Fits on n2 + n4 now, but runs past the reservation (at(3600)) and would keep two of
    // the nodes it needs busy; only one node is spare then.
    let long = submit(&mut s, at(2), wall(2, 7200, 1));
    let (plan, traces) = schedule_traced(&s, at(4), None);
    assert!(plan.placements.is_empty());
    let head = traces[0].head.clone().unwrap();
    assert_eq!(
        (head.allocation, head.start, head.extra),
        (big, at(3600).as_millis(), 1)
    );
    assert_eq!(reason_of(&plan, big).unwrap().0, REASON_RESOURCES);
    assert_eq!(
        reason_of(&plan, long),
        Some((
            REASON_PRIORITY,
            "starting now would delay the reservation of higher-priority allocation 3"
        ))
    );
    assert_eq!(plan.estimates[0], (big, Some(at(3600))));

    // A one-node job that runs past the reservation may use the one spare node.
    let one = submit(&mut s, at(3), wall(1, 7200, 1));
    let plan = cycle(&mut s, at(5));
    assert_eq!(placed(&plan), vec![(one, vec!["n2"])]);
    // A short job that ends before the reservation may use the last free node.
    let short = submit(&mut s, at(6), wall(1, 60, 1));
    let plan = cycle(&mut s, at(7));
    assert_eq!(placed(&plan), vec![(short, vec!["n4"])]);
    assert_eq!(s.allocation(big).unwrap().estimated_start, Some(at(3600)));
}

#[test]
fn backfill_prefers_nodes_the_reservation_does_not_need() {
    let mut s = ClusterState::default();
    for (id, ib) in [
        ("a1", true),
        ("a2", true),
        ("a3", true),
        ("b1", false),
        ("b2", false),
    ] {
        register(
            &mut s,
            NodeRegistration {
                features: if ib { vec!["ib".into()] } else { vec![] },
                ..reg(id)
            },
        );
    }
    occupy(&mut s, "a1");
    let ib = Constraints {
        features: vec!["ib".into()],
        ..Default::default()
    };
    let head = submit(
        &mut s,
        at(1),
        AllocationSpec {
            priority: 9,
            ..with(3, ib)
        },
    );
    // Runs past the reservation: must not take a2/a3 (extra is 0), b1/b2 are fine.
    let any = submit(&mut s, at(2), wall(2, 7200, 1));
    let plan = cycle(&mut s, at(3));
    assert_eq!(placed(&plan), vec![(any, vec!["b1", "b2"])]);
    assert_eq!(reason_of(&plan, head).unwrap().0, REASON_RESOURCES);
}

#[test]
fn fifo_starts_nothing_past_the_first_job_that_cannot_start() {
    let mut s = half_busy();
    set_policy(&mut s, Policy::Fifo);
    let big = submit(&mut s, at(1), wall(3, 600, 9));
    let small = submit(&mut s, at(2), wall(1, 60, 1));
    let plan = cycle(&mut s, at(3));
    assert!(plan.placements.is_empty());
    assert_eq!(reason_of(&plan, big).unwrap().0, REASON_RESOURCES);
    assert_eq!(
        reason_of(&plan, small),
        Some((REASON_PRIORITY, "waiting behind allocation 3 (fifo)"))
    );
    // The same queue with backfill starts the small job.
    set_policy(&mut s, Policy::Backfill);
    let plan = cycle(&mut s, at(4));
    assert_eq!(placed(&plan), vec![(small, vec!["n2"])]);
}

#[test]
fn gated_work_waits_with_its_reason_and_does_not_block() {
    let mut s = cluster(&["n1", "n2", "n3"]);
    apply(
        &mut s,
        Command::PutTenant {
            now: at(0),
            name: "small".into(),
            change: TenantChange {
                max_nodes: Some(Some(1)),
                ..Default::default()
            },
            create: true,
        },
    );
    let held = submit_with(
        &mut s,
        at(1),
        wall(1, 60, 9),
        SubmitOptions {
            hold: true,
            ..Default::default()
        },
    );
    let first = submit(&mut s, at(1), wall(1, 60, 1));
    let waits = submit_with(
        &mut s,
        at(1),
        wall(1, 60, 9),
        SubmitOptions {
            depends_on: parse_dependencies(&format!("{first}:any")).unwrap(),
            ..Default::default()
        },
    );
    let quota = submit(
        &mut s,
        at(1),
        AllocationSpec {
            tenant: "small".into(),
            priority: 9,
            ..spec(2)
        },
    );
    let array = submit_with(
        &mut s,
        at(1),
        wall(1, 60, 9),
        SubmitOptions {
            array: Some(parse_array("0-3%1").unwrap()),
            ..Default::default()
        },
    );
    let plan = cycle(&mut s, at(2));
    let mut started: Vec<AllocId> = plan.placements.iter().map(|p| p.allocation).collect();
    started.sort();
    assert_eq!(started, vec![first, array]);
    assert_eq!(
        s.allocation(held).unwrap().reason.as_deref(),
        Some(REASON_HELD)
    );
    assert_eq!(
        reason_of(&plan, waits),
        Some((REASON_DEPENDENCY, "waiting for allocation 2 to end"))
    );
    assert_eq!(
        reason_of(&plan, quota),
        Some((REASON_QUOTA, "tenant small is at its max_nodes quota of 1"))
    );
    assert_eq!(
        reason_of(&plan, array + 1),
        Some((
            REASON_ARRAY_LIMIT,
            "array 5 already runs 1 tasks at once (its % limit)"
        ))
    );
    assert!(plan.estimates.is_empty(), "{:?}", plan.estimates);
}

#[test]
fn estimates_cover_the_first_blocked_jobs_and_change_only_when_they_move() {
    let mut s = cluster(&["n1"]);
    let running = submit(&mut s, at(0), wall(1, 100, 5));
    cycle(&mut s, at(0));
    let queued: Vec<AllocId> = (0..20)
        .map(|i| submit(&mut s, at(1 + i), wall(1, 100, 5)))
        .collect();
    let plan = cycle(&mut s, at(30));
    assert_eq!(plan.estimates.len(), backfill::ESTIMATE_DEPTH);
    // Conservative: one after the other, each a walltime later.
    for (i, id) in queued.iter().take(backfill::ESTIMATE_DEPTH).enumerate() {
        let want = at(100 * (i as u64 + 1));
        assert_eq!(s.allocation(*id).unwrap().estimated_start, Some(want));
    }
    assert_eq!(s.allocation(queued[19]).unwrap().estimated_start, None);
    assert!(schedule(&s, at(31)).is_empty());
    // The running job ends early: every estimate moves up by more than the slack.
    report_exit(&mut s, running, "n1", at(40));
    let plan = cycle(&mut s, at(41));
    assert_eq!(placed(&plan), vec![(queued[0], vec!["n1"])]);
    assert_eq!(
        s.allocation(queued[1]).unwrap().estimated_start,
        Some(at(141))
    );
}

#[test]
fn multi_node_work_is_packed_into_one_topology_group() {
    let mut s = ClusterState::default();
    // Group r1: 4 nodes, r2: 3 nodes; ids interleave the groups.
    for (id, g) in [
        ("n1", "r1"),
        ("n2", "r2"),
        ("n3", "r1"),
        ("n4", "r2"),
        ("n5", "r1"),
        ("n6", "r2"),
        ("n7", "r1"),
    ] {
        register(
            &mut s,
            NodeRegistration {
                features: vec![format!("group={g}")],
                ..reg(id)
            },
        );
    }
    let three = submit(&mut s, at(1), spec(3));
    let four = submit(&mut s, at(2), spec(4));
    let plan = cycle(&mut s, at(3));
    // Best fit: 3 nodes into the 3-node group, 4 into the 4-node group.
    assert_eq!(
        placed(&plan),
        vec![
            (three, vec!["n2", "n4", "n6"]),
            (four, vec!["n1", "n3", "n5", "n7"])
        ]
    );
}

#[test]
fn fair_share_puts_the_tenant_below_its_share_first() {
    let mut s = cluster(&["n1"]);
    for (name, share) in [("heavy", 1), ("light", 1)] {
        apply(
            &mut s,
            Command::PutTenant {
                now: at(0),
                name: name.into(),
                change: TenantChange {
                    share: Some(share),
                    ..Default::default()
                },
                create: true,
            },
        );
    }
    let of = |t: &str| AllocationSpec {
        tenant: t.into(),
        ..wall(1, 100, 5)
    };
    // `heavy` used the node for a while.
    let used = submit(&mut s, at(0), of("heavy"));
    cycle(&mut s, at(0));
    report_exit(&mut s, used, "n1", at(1000));
    // Then both submit; heavy's job is even older.
    let h = submit(&mut s, at(1001), of("heavy"));
    let l = submit(&mut s, at(1002), of("light"));
    let plan = cycle(&mut s, at(1003));
    assert_eq!(placed(&plan), vec![(l, vec!["n1"])]);
    assert_eq!(reason_of(&plan, h).unwrap().0, REASON_RESOURCES);
}
