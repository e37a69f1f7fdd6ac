//! Properties of the policy over random clusters and queues (several tenants with quotas and
//! shares, arrays with caps, holds, dependencies, two vClusters with random policies, random
//! walltimes, running work from earlier cycles):
//!
//! - backfill never delays the reservation of the top blocked allocation: its start, computed
//!   independently here from the state plus the placements so far, never moves later with a
//!   backfilled placement, and equals what the scheduler reserved;
//! - quotas are never exceeded and arrays never run more than their `%` cap;
//! - a node is never double-booked (the whole plan is accepted and every node holds at most
//!   one allocation);
//! - every pending allocation has a reason;
//! - vClusters are independent: with disjoint pools, scheduling one vCluster alone gives the
//!   same placements as scheduling all of them.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::array::ArraySpec;
use crate::command::Target;
use crate::dependency::{DepKind, DependencyRef, JobRef};
use crate::submit::SubmitOptions;
use crate::tenant::TenantChange;
use crate::vcluster::{Policy, VClusterChange};

#[derive(Clone, Debug)]
struct Gen {
    nodes: u32,
    tenant: usize,
    vcluster: usize,
    priority: u8,
    walltime: u64,
    ib: bool,
    array: Option<(u32, u32)>,
    dep: Option<u64>,
    hold: bool,
}

fn gen() -> impl Strategy<Value = Gen> {
    (
        prop_oneof![6 => 1u32..=2, 2 => 3u32..=6, 1 => 7u32..=14],
        0usize..3,
        prop::sample::select(vec![0usize, 0, 1]),
        prop::sample::select(vec![1u8, 5, 5, 9]),
        prop::sample::select(vec![30u64, 120, 600, 3600, 36_000]),
        prop::bool::weighted(0.2),
        prop::option::weighted(0.15, (2u32..=5, 1u32..=3)),
        prop::option::weighted(0.15, any::<u64>()),
        prop::bool::weighted(0.05),
    )
        .prop_map(
            |(nodes, tenant, vcluster, priority, walltime, ib, array, dep, hold)| Gen {
                nodes,
                tenant,
                vcluster,
                priority,
                walltime,
                ib,
                array,
                dep,
                hold,
            },
        )
}

const TENANTS: [&str; 3] = ["default", "phys", "bio"];
const VCLUSTERS: [&str; 2] = ["default", "gpu"];

/// `cpu` nodes (some with `ib`) in `default`, `gpu` nodes in vCluster `gpu` (and, since
/// `default` holds every node, in `default` too unless `disjoint`).
fn build(cpu: usize, gpu: usize, policies: (bool, bool), disjoint: bool) -> ClusterState {
    let mut s = ClusterState::default();
    let policy = |fifo: bool| Some(if fifo { Policy::Fifo } else { Policy::Backfill });
    let put = |s: &mut ClusterState, name: &str, change: VClusterChange, create: bool| {
        apply(
            s,
            Command::PutVCluster {
                now: at(0),
                name: name.into(),
                change,
                create,
            },
        );
    };
    put(
        &mut s,
        "default",
        VClusterChange {
            policy: policy(policies.0),
            ..Default::default()
        },
        false,
    );
    put(
        &mut s,
        "gpu",
        VClusterChange {
            features: Some(vec!["gpu".into()]),
            policy: policy(policies.1),
            ..Default::default()
        },
        true,
    );
    if disjoint {
        // Pools by feature: `default` cannot change its selector, so the CPU jobs go to a
        // `cpu` vCluster instead and `default` gets no work.
        put(
            &mut s,
            "cpu",
            VClusterChange {
                features: Some(vec!["cpu".into()]),
                ..Default::default()
            },
            true,
        );
    }
    for (name, share, max_nodes, max_running) in
        [("phys", 3, Some(8), None), ("bio", 1, None, Some(3))]
    {
        apply(
            &mut s,
            Command::PutTenant {
                now: at(0),
                name: name.into(),
                change: TenantChange {
                    share: Some(share),
                    max_nodes: Some(max_nodes),
                    max_running: Some(max_running),
                    sensitive: None,
                },
                create: true,
            },
        );
    }
    for i in 0..cpu {
        let mut features = vec!["cpu".to_string()];
        if i % 3 == 0 {
            features.push("ib".into());
        }
        features.push(format!("group=r{}", i / 8));
        register(
            &mut s,
            NodeRegistration {
                features,
                ..reg(&format!("c{i:02}"))
            },
        );
    }
    for i in 0..gpu {
        register(
            &mut s,
            NodeRegistration {
                features: vec!["gpu".into()],
                ..reg(&format!("g{i:02}"))
            },
        );
    }
    s
}

fn submit_gen(s: &mut ClusterState, now: Timestamp, g: &Gen, disjoint: bool) {
    let vcluster = match (g.vcluster, disjoint) {
        (1, _) => "gpu",
        (_, true) => "cpu",
        _ => VCLUSTERS[0],
    };
    let next = s.next_allocation_id();
    let spec = AllocationSpec {
        tenant: TENANTS[g.tenant].into(),
        vcluster: vcluster.into(),
        priority: g.priority,
        walltime_seconds: g.walltime,
        constraints: Constraints {
            features: if g.ib { vec!["ib".into()] } else { vec![] },
            ..Default::default()
        },
        ..spec(g.nodes)
    };
    let options = SubmitOptions {
        array: g.array.map(|(n, cap)| ArraySpec {
            indices: (0..n).collect(),
            max_running: Some(cap),
            text: String::new(),
        }),
        depends_on: g
            .dep
            .filter(|_| next > 1)
            .map(|d| DependencyRef {
                job: JobRef::Id(1 + d % (next - 1)),
                kind: if d % 2 == 0 {
                    DepKind::Any
                } else {
                    DepKind::Success
                },
            })
            .into_iter()
            .collect(),
        hold: g.hold,
        create_tenant: false,
        submitted_by: None,
    };
    // A dependency on something already failed is cancelled at once; fine either way.
    let _ = s.apply(&Command::Submit { now, spec, options });
}

/// When `need` nodes satisfying `c` in the head's vCluster are free, computed from scratch:
/// from the nodes' occupants' walltimes, and `placed` (this plan's placements so far, which
/// run from `now` for their walltime).
fn naive_start(
    s: &ClusterState,
    head: &crate::allocation::Allocation,
    placed: &[&Placement],
    now: Timestamp,
) -> Option<u64> {
    let vc = s.vcluster(&head.vcluster).unwrap();
    let mut placed_end: BTreeMap<&str, u64> = BTreeMap::new();
    for p in placed {
        let a = s.allocation(p.allocation).unwrap();
        for n in &p.nodes {
            placed_end.insert(n, now.plus_secs(a.walltime_seconds).as_millis());
        }
    }
    let mut times: Vec<u64> = Vec::new();
    for n in s.nodes().values() {
        if n.drain || n.down || !vc.contains(n) || !n.satisfies(&head.constraints) {
            continue;
        }
        let t = if let Some(&end) = placed_end.get(n.id.as_str()) {
            end
        } else {
            n.allocations
                .iter()
                .map(|id| {
                    let a = s.allocation(*id).unwrap();
                    match a.state {
                        AllocState::Running => a
                            .started_at
                            .unwrap()
                            .plus_secs(a.walltime_seconds)
                            .as_millis(),
                        _ => a.finished_at.map_or(0, Timestamp::as_millis),
                    }
                })
                .max()
                .unwrap_or(0)
        };
        times.push(t);
    }
    times.sort_unstable();
    times.get(head.nodes as usize - 1).copied()
}

/// Checks one cycle's plan and trace against `before`, then applies it.
fn check_and_apply(s: &mut ClusterState, now: Timestamp) {
    let (plan, traces) = schedule_traced(s, now, None);
    // Stopping early and deciding the unread rest by class gives the plan of reading it all.
    let full = super::super::run_cycle(s, now, None, false);
    assert_eq!(plan, full.0, "lazy and full reads disagree");
    assert_eq!(traces, full.1);
    let before = s.clone();
    let vc_of = |p: &Placement| before.allocation(p.allocation).unwrap().vcluster.clone();
    for t in &traces {
        let Some(head) = &t.head else { continue };
        let h = before.allocation(head.allocation).unwrap();
        // What was placed when the reservation was made: the placements of the vClusters
        // scheduled earlier in the cycle and this vCluster's own, up to the backfills. (Later
        // vClusters do not see this one's reservation: pools may overlap.)
        let backfilled: BTreeSet<AllocId> = t.backfilled.iter().copied().collect();
        let earlier = |p: &Placement| vc_of(p).as_str() < t.vcluster.as_str();
        let mut so_far: Vec<&Placement> = plan
            .placements
            .iter()
            .filter(|p| {
                earlier(p) || (vc_of(p) == t.vcluster && !backfilled.contains(&p.allocation))
            })
            .collect();
        let reserved = naive_start(&before, h, &so_far, now).unwrap();
        assert_eq!(
            reserved, head.start,
            "the reservation is the head's shadow time"
        );
        let mut last = reserved;
        for p in plan
            .placements
            .iter()
            .filter(|p| backfilled.contains(&p.allocation))
        {
            so_far.push(p);
            let after = naive_start(&before, h, &so_far, now).unwrap();
            assert!(
                after <= last,
                "backfilling {} delayed {}'s start from {last} to {after}",
                p.allocation,
                h.id
            );
            last = after;
        }
    }
    let out = match apply(s, Command::ApplyPlan { now, plan }) {
        CommandOutcome::Plan(o) => o,
        other => panic!("{other:?}"),
    };
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    for n in s.nodes().values() {
        assert!(n.allocations.len() <= 1, "{} double-booked", n.id);
    }
    for t in s.tenants().values() {
        let load = s.tenant_load(&t.name);
        assert!(
            t.max_nodes.is_none_or(|m| load.nodes <= u64::from(m)),
            "{}",
            t.name
        );
        assert!(
            t.max_running.is_none_or(|m| load.running <= u64::from(m)),
            "{}",
            t.name
        );
    }
    for (id, info) in s.arrays() {
        let running = s.array_tally(*id)[AllocState::Running as usize];
        assert!(
            running <= info.max_running.unwrap_or(u32::MAX),
            "array {id}"
        );
    }
    for id in s.pending_ids() {
        assert!(
            s.allocation(*id).unwrap().reason.is_some(),
            "{id} has no reason"
        );
    }
}

/// Ends what runs on the chosen nodes: (node index, failed).
fn finish_some(s: &mut ClusterState, now: Timestamp, picks: &[(usize, bool)]) {
    let ids: Vec<String> = s.nodes().keys().cloned().collect();
    let mut reports = Vec::new();
    for &(i, failed) in picks {
        let n = &s.nodes()[&ids[i % ids.len()]];
        for a in &n.allocations {
            reports.push(ExitReport {
                run: 0,
                allocation_id: *a,
                node_id: n.id.clone(),
                outcome: ExitOutcome::Exited,
                exit_code: Some(i32::from(failed)),
                signal: None,
                message: None,
            });
        }
    }
    apply(s, Command::ReportExits { now, reports });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn cycles_keep_reservations_quotas_caps_and_reasons(
        cpu in 4usize..=32,
        gpu in 0usize..=6,
        policies in (prop::bool::weighted(0.25), prop::bool::weighted(0.25)),
        rounds in prop::collection::vec(
            (
                prop::collection::vec(gen(), 0..=24),
                prop::collection::vec((any::<usize>(), prop::bool::weighted(0.2)), 0..=8),
                prop::option::weighted(0.2, (any::<u64>(), any::<bool>())),
            ),
            1..=5,
        ),
    ) {
        let mut s = build(cpu, gpu, policies, false);
        for (round, (jobs, ends, hold)) in rounds.iter().enumerate() {
            let t = 10 + 100 * round as u64;
            for g in jobs {
                submit_gen(&mut s, at(t), g, false);
            }
            if let Some((id, array)) = hold {
                let target = if *array {
                    Target::Array(*s.arrays().keys().next().unwrap_or(&999))
                } else {
                    Target::Allocation(1 + id % s.next_allocation_id())
                };
                let _ = s.apply(&Command::SetHold { now: at(t), target, hold: false, by: "p".into() });
            }
            check_and_apply(&mut s, at(t + 1));
            finish_some(&mut s, at(t + 50), ends);
            check_and_apply(&mut s, at(t + 51));
        }
    }

    #[test]
    fn disjoint_vclusters_do_not_affect_each_other(
        cpu in 2usize..=16,
        gpu in 1usize..=6,
        policies in (any::<bool>(), any::<bool>()),
        jobs in prop::collection::vec(gen(), 0..=20),
    ) {
        let mut s = build(cpu, gpu, policies, true);
        // No quotas, so that tenants do not couple the pools.
        for t in ["phys", "bio"] {
            apply(&mut s, Command::PutTenant {
                now: at(0),
                name: t.into(),
                change: TenantChange { max_nodes: Some(None), max_running: Some(None), ..Default::default() },
                create: false,
            });
        }
        for g in &jobs {
            submit_gen(&mut s, at(1), g, true);
        }
        let all = schedule(&s, at(2));
        for vc in ["cpu", "gpu"] {
            let alone = schedule_some(&s, at(2), &BTreeSet::from([vc.to_string()]));
            let mine = |p: &Placement| s.allocation(p.allocation).unwrap().vcluster == vc;
            let from_all: Vec<&Placement> = all.placements.iter().filter(|p| mine(p)).collect();
            let from_alone: Vec<&Placement> = alone.placements.iter().collect();
            prop_assert_eq!(from_all, from_alone);
        }
    }
}
