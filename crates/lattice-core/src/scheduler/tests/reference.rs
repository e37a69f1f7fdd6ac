//! Property: [`schedule`] gives exactly the plan of a naive implementation of the documented
//! policy (no caching, no cursors, everything recomputed from scratch), over random clusters
//! (with topology groups, drained and down nodes) and queues, in backfill and FIFO vClusters,
//! across two cycles. This checks the per-constraint candidate buckets, their cursors and
//! counts, the reservation split, and the estimate pass.
//!
//! Scores are computed with the same `score` functions (they are unit-tested on their own);
//! everything after the order is written out again here.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::allocation::Allocation;
use crate::scheduler::backfill::ESTIMATE_DEPTH;
use crate::scheduler::cycle::NEVER;
use crate::scheduler::pass::ESTIMATE_SLACK_MS;
use crate::scheduler::score::{score, FairShare};
use crate::vcluster::{Policy, VClusterChange};

/// Constraint matching written out independently of `Node::satisfies`.
fn fits(n: &Node, c: &Constraints) -> bool {
    let gpus_needed = match (&c.gpu_type, c.min_gpus) {
        (_, Some(m)) if m > 0 => m,
        (Some(_), _) => 1,
        _ => 0,
    };
    c.features.iter().all(|f| n.features.contains(f))
        && c.min_cpus.is_none_or(|m| n.cpus >= m)
        && c.min_memory_gb.is_none_or(|m| n.memory_bytes >= m * GIB)
        && n.gpus.count >= gpus_needed
        && c.gpu_type.as_ref().is_none_or(|t| {
            n.gpus
                .model
                .as_ref()
                .is_some_and(|m| m.to_lowercase().contains(&t.to_lowercase()))
        })
}

fn group_of(n: &Node) -> Option<&str> {
    n.features.iter().find_map(|f| f.strip_prefix("group="))
}

/// Free nodes of `free`, picked the documented way: partitions by (group, matches the
/// reservation); the smallest partition holding all `need` (ties: lower key), else the
/// largest partitions first; lowest IDs within a partition. `classes`: the reservation's
/// constraints once there is one; `only`: restrict to one class.
fn best_fit<'n>(
    free: &[&'n Node],
    gid: &BTreeMap<&str, u32>,
    need: usize,
    reserved: Option<&Constraints>,
    only: Option<bool>,
) -> Option<Vec<&'n Node>> {
    let mut parts: BTreeMap<(u32, bool), Vec<&Node>> = BTreeMap::new();
    for n in free {
        let class = reserved.is_some_and(|r| fits(n, r));
        if only.is_some_and(|o| o != class) {
            continue;
        }
        let g = group_of(n).map_or(0, |g| gid[g]);
        parts.entry((g, class)).or_default().push(n);
    }
    if parts.values().map(Vec::len).sum::<usize>() < need {
        return None;
    }
    if let Some((_, p)) = parts
        .iter()
        .filter(|(_, p)| p.len() >= need)
        .min_by_key(|(_, p)| p.len())
    {
        return Some(p[..need].to_vec());
    }
    let mut order: Vec<&Vec<&Node>> = parts.values().collect();
    order.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut out = Vec::new();
    for p in order {
        let take = (need - out.len()).min(p.len());
        out.extend_from_slice(&p[..take]);
    }
    Some(out)
}

/// Backfill's "fewest reserved nodes": every unreserved node (largest partitions first), then
/// a best fit among the reserved.
fn fewest_reserved<'n>(
    free: &[&'n Node],
    gid: &BTreeMap<&str, u32>,
    need: usize,
    reserved: &Constraints,
) -> Option<Vec<&'n Node>> {
    let mut parts: BTreeMap<u32, Vec<&Node>> = BTreeMap::new();
    for n in free.iter().filter(|n| !fits(n, reserved)) {
        parts
            .entry(group_of(n).map_or(0, |g| gid[g]))
            .or_default()
            .push(n);
    }
    let mut order: Vec<&Vec<&Node>> = parts.values().collect();
    order.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut out = Vec::new();
    for p in order {
        let take = (need - out.len()).min(p.len());
        out.extend_from_slice(&p[..take]);
    }
    let left = need - out.len();
    if left == 0 {
        return Some(out);
    }
    let rest = best_fit(free, gid, left, Some(reserved), Some(true))?;
    out.extend(rest);
    Some(out)
}

fn expected_free(s: &ClusterState, n: &Node) -> u64 {
    if n.down || n.drain {
        return NEVER;
    }
    let mut t = 0;
    for id in &n.allocations {
        let a = s.allocation(*id).unwrap();
        let end = if a.state == AllocState::Running {
            a.started_at
                .unwrap()
                .plus_secs(a.walltime_seconds)
                .as_millis()
        } else {
            a.finished_at.map_or(0, Timestamp::as_millis)
        };
        t = t.max(end);
    }
    t
}

/// The documented policy for the default vCluster (the only one these clusters have).
fn reference(s: &ClusterState, now: Timestamp) -> Plan {
    let vc = s.vcluster("default").unwrap();
    let pending: Vec<&Allocation> = s
        .allocations()
        .values()
        .map(|a| &**a)
        .filter(|a| a.state == AllocState::Pending)
        .collect();
    let fs = FairShare::new(s, vc, now, &pending);
    let nodes: Vec<&Node> = s.nodes().values().collect();
    let mut gid: BTreeMap<&str, u32> = BTreeMap::new();
    for n in &nodes {
        if let Some(g) = group_of(n) {
            let next = gid.len() as u32 + 1;
            gid.entry(g).or_insert(next);
        }
    }
    let grouped = !gid.is_empty();
    let mut avail: BTreeMap<&str, u64> = nodes
        .iter()
        .map(|n| (n.id.as_str(), expected_free(s, n)))
        .collect();
    let mut taken: BTreeSet<&str> = BTreeSet::new();
    let mut plan = Plan::default();
    let note = |plan: &mut Plan, a: &Allocation, reason: &str, detail: String| {
        if a.reason.as_deref() != Some(reason) || a.reason_detail.as_ref() != Some(&detail) {
            plan.reasons.push((a.id, reason.into(), Some(detail)));
        }
    };

    let usable_matching = |c: &Constraints| -> Vec<&Node> {
        nodes
            .iter()
            .copied()
            .filter(|n| !n.down && !n.drain && fits(n, c))
            .collect()
    };
    let min_groups = |c: &Constraints, need: usize| -> usize {
        let mut sizes: BTreeMap<Option<&str>, usize> = BTreeMap::new();
        for n in usable_matching(c) {
            *sizes.entry(group_of(n)).or_default() += 1;
        }
        let mut v: Vec<usize> = sizes.into_values().collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        let mut sum = 0;
        for (k, x) in v.iter().enumerate() {
            sum += x;
            if sum >= need {
                return k + 1;
            }
        }
        v.len().max(1)
    };

    let mut queue: Vec<(f64, &Allocation)> = Vec::new();
    for a in &pending {
        if a.held {
            if a.reason.as_deref() != Some("held") {
                note(&mut plan, a, "held", "held".into());
            }
            continue;
        }
        let topo = if grouped {
            1.0 / min_groups(&a.constraints, a.nodes as usize) as f64
        } else {
            1.0
        };
        let sc = score(
            &vc.weights,
            a.priority,
            a.submitted_at.as_millis(),
            now,
            fs.term(&a.tenant),
            topo,
        );
        queue.push((sc, a));
    }
    queue.sort_by(|x, y| y.0.total_cmp(&x.0).then_with(|| order::tie_break(x.1, y.1)));

    // (allocation, constraints, start, extra)
    let mut resv: Option<(AllocId, &Constraints, u64, usize)> = None;
    let mut fifo_head: Option<AllocId> = None;
    let mut blocked: Vec<(&Allocation, Option<(AllocId, bool)>)> = Vec::new();
    for (_, a) in queue {
        let need = a.nodes as usize;
        let c = &a.constraints;
        let exist = nodes.iter().filter(|n| fits(n, c)).count();
        if exist < need {
            let detail =
                format!("needs {need} nodes matching its constraints; the cluster has {exist}");
            note(&mut plan, a, REASON_UNSATISFIABLE, detail);
            continue;
        }
        let free: Vec<&Node> = nodes
            .iter()
            .copied()
            .filter(|n| n.is_free() && !taken.contains(n.id.as_str()) && fits(n, c))
            .collect();
        if let Some(head) = fifo_head {
            blocked.push((a, Some((head, true))));
            continue;
        }
        let end = now.plus_secs(a.walltime_seconds).as_millis();
        let chosen = match resv {
            None => best_fit(&free, &gid, need, None, None),
            Some((_, rc, start, _)) if end <= start => best_fit(&free, &gid, need, Some(rc), None),
            Some((head, rc, _, extra)) => {
                match best_fit(&free, &gid, need, Some(rc), Some(false)) {
                    Some(p) => Some(p),
                    None => match fewest_reserved(&free, &gid, need, rc) {
                        Some(p) => {
                            let cost = p.iter().filter(|n| fits(n, rc)).count();
                            if cost > extra {
                                blocked.push((a, Some((head, false))));
                                continue;
                            }
                            resv.as_mut().unwrap().3 -= cost;
                            Some(p)
                        }
                        None => None,
                    },
                }
            }
        };
        match chosen {
            Some(mut picked) => {
                picked.sort_by_key(|n| n.id.as_str());
                for n in &picked {
                    taken.insert(n.id.as_str());
                    avail.insert(n.id.as_str(), end);
                }
                plan.placements.push(Placement {
                    allocation: a.id,
                    nodes: picked.iter().map(|n| n.id.clone()).collect(),
                });
            }
            None => {
                blocked.push((a, resv.map(|r| (r.0, false))));
                if resv.is_some() {
                    continue;
                }
                if vc.policy == Policy::Fifo {
                    fifo_head = Some(a.id);
                    continue;
                }
                let mut times: Vec<u64> = usable_matching(c)
                    .iter()
                    .map(|n| avail[n.id.as_str()])
                    .collect();
                times.sort_unstable();
                if times.len() >= need && times[need - 1] != NEVER {
                    let start = times[need - 1];
                    let extra = times.iter().filter(|&&t| t <= start).count() - need;
                    resv = Some((a.id, c, start, extra));
                }
            }
        }
    }

    // Reasons of blocked allocations, against what is left free at the end.
    for &(a, ahead) in &blocked {
        let need = a.nodes as usize;
        let c = &a.constraints;
        let exist = nodes.iter().filter(|n| fits(n, c)).count();
        let free = nodes
            .iter()
            .filter(|n| n.is_free() && !taken.contains(n.id.as_str()) && fits(n, c))
            .count();
        match ahead {
            Some((head, true)) if free >= need => {
                let d = format!("waiting behind allocation {head} (fifo)");
                note(&mut plan, a, REASON_PRIORITY, d);
            }
            Some((head, false)) if free >= need => {
                let d = format!(
                    "starting now would delay the reservation of higher-priority allocation {head}"
                );
                note(&mut plan, a, REASON_PRIORITY, d);
            }
            _ => {
                let d = format!("waiting for {need} free nodes ({exist} match its constraints)");
                note(&mut plan, a, REASON_RESOURCES, d);
            }
        }
    }

    // The plan lists reasons in ID order.
    plan.reasons.sort_by_key(|r| r.0);

    // Conservative estimates for the first blocked allocations.
    let mut est: BTreeMap<AllocId, u64> = BTreeMap::new();
    for (a, _) in blocked.iter().take(ESTIMATE_DEPTH) {
        let need = a.nodes as usize;
        let mut pairs: Vec<(u64, &str)> = usable_matching(&a.constraints)
            .iter()
            .map(|n| (avail[n.id.as_str()], n.id.as_str()))
            .collect();
        pairs.sort_unstable();
        if pairs.len() < need || pairs[need - 1].0 == NEVER {
            continue;
        }
        let start = pairs[need - 1].0;
        for (_, id) in &pairs[..need] {
            avail.insert(id, start + a.walltime_seconds * 1000);
        }
        est.insert(a.id, start.div_ceil(1000) * 1000);
    }
    let placed: BTreeSet<AllocId> = plan.placements.iter().map(|p| p.allocation).collect();
    for a in &pending {
        if placed.contains(&a.id) {
            continue;
        }
        let new = est.get(&a.id).copied();
        let old = a.estimated_start.map(Timestamp::as_millis);
        let moved = match (old, new) {
            (None, None) => false,
            (Some(o), Some(n)) => o.abs_diff(n) > ESTIMATE_SLACK_MS,
            _ => true,
        };
        if moved {
            plan.estimates.push((a.id, new.map(Timestamp::from_millis)));
        }
    }
    plan
}

#[derive(Clone, Debug)]
struct Job {
    nodes: u32,
    priority: u8,
    submitted: u64,
    constraints: usize,
    walltime: u64,
    held: bool,
}

/// A small pool, so that several jobs share a constraint set (and its cached candidates).
fn constraint_pool() -> Vec<Constraints> {
    let f = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
    vec![
        Constraints::default(),
        Constraints {
            features: f(&["ib"]),
            ..Default::default()
        },
        Constraints {
            features: f(&["ib", "nvme"]),
            ..Default::default()
        },
        Constraints {
            gpu_type: Some("h100".into()),
            ..Default::default()
        },
        Constraints {
            min_gpus: Some(2),
            min_cpus: Some(32),
            ..Default::default()
        },
        Constraints {
            min_memory_gb: Some(256),
            ..Default::default()
        },
    ]
}

fn job() -> impl Strategy<Value = Job> {
    (
        prop_oneof![4 => 1u32..=3, 1 => 4u32..=12],
        prop::sample::select(vec![0u8, 5, 5, 10]),
        0u64..20,
        0usize..6,
        prop::sample::select(vec![10u64, 60, 600, 3600]),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(nodes, priority, submitted, constraints, walltime, held)| Job {
                nodes,
                priority,
                submitted,
                constraints,
                walltime,
                held,
            },
        )
}

/// (cpus, memory GiB, H100 count, features bitmask, state: 0 ready, 1 drained, 2 down,
/// topology group: 0 none, else `group=rN`)
type NodeSpec = (u32, u64, u32, u8, u8, u8);

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (
        prop::sample::select(vec![8u32, 32, 64]),
        prop::sample::select(vec![64u64, 256]),
        prop::sample::select(vec![0u32, 0, 1, 4]),
        0u8..4,
        prop::sample::select(vec![0u8, 0, 0, 0, 1, 2]),
        0u8..3,
    )
}

fn build(nodes: &[NodeSpec], grouped: bool, fifo: bool) -> ClusterState {
    let mut s = ClusterState::default();
    if fifo {
        apply(
            &mut s,
            Command::PutVCluster {
                now: at(0),
                name: "default".into(),
                change: VClusterChange {
                    policy: Some(Policy::Fifo),
                    ..Default::default()
                },
                create: false,
            },
        );
    }
    for (i, &(cpus, mem, gpus, feats, state, group)) in nodes.iter().enumerate() {
        let id = format!("n{i:02}");
        let mut features = Vec::new();
        if feats & 1 != 0 {
            features.push("ib".to_string());
        }
        if feats & 2 != 0 {
            features.push("nvme".to_string());
        }
        if grouped && group > 0 {
            features.push(format!("group=r{group}"));
        }
        register(
            &mut s,
            NodeRegistration {
                cpus,
                memory_bytes: mem * GIB,
                gpus: GpuInfo {
                    count: gpus,
                    model: (gpus > 0).then(|| "NVIDIA H100 80GB HBM3".to_string()),
                },
                features,
                ..reg(&id)
            },
        );
        match state {
            1 => {
                apply(
                    &mut s,
                    Command::SetNodeDrain {
                        now: at(0),
                        node_id: id,
                        drain: true,
                        reason: None,
                    },
                );
            }
            2 => {
                apply(
                    &mut s,
                    Command::SetNodeLiveness {
                        now: at(0),
                        down: vec![id],
                        up: vec![],
                    },
                );
            }
            _ => {}
        }
    }
    s
}

fn submit_jobs(s: &mut ClusterState, jobs: &[Job]) {
    let pool = constraint_pool();
    for j in jobs {
        apply(
            s,
            Command::Submit {
                now: at(j.submitted),
                spec: AllocationSpec {
                    priority: j.priority,
                    walltime_seconds: j.walltime,
                    ..with(j.nodes, pool[j.constraints].clone())
                },
                options: crate::submit::SubmitOptions {
                    hold: j.held,
                    ..Default::default()
                },
            },
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// Over two cycles, with work finishing in between (which frees scattered nodes and leaves
    /// reasons and estimates from the first cycle in place), the scheduler's plan equals the
    /// reference's; a third cycle on the committed result has nothing to do.
    #[test]
    fn schedule_matches_the_reference_policy(
        nodes in prop::collection::vec(node_spec(), 1..=30),
        grouped in any::<bool>(),
        fifo in prop::bool::weighted(0.25),
        first in prop::collection::vec(job(), 0..=25),
        finished in prop::collection::vec(any::<bool>(), 0..=30),
        second in prop::collection::vec(job(), 0..=25),
    ) {
        let mut s = build(&nodes, grouped, fifo);
        submit_jobs(&mut s, &first);
        let plan = schedule(&s, at(30));
        prop_assert_eq!(&plan, &reference(&s, at(30)));
        // Reading the whole queue (no early stop) gives the same plan.
        prop_assert_eq!(&plan, &super::super::run_cycle(&s, at(30), None, false).0);
        cycle(&mut s, at(30));

        let reports: Vec<ExitReport> = s
            .nodes()
            .values()
            .zip(finished.iter().chain(std::iter::repeat(&false)))
            .filter(|(_, &f)| f)
            .flat_map(|(n, _)| n.allocations.iter().map(|&a| (a, n.id.clone())))
            .map(|(a, n)| ExitReport { run: 0,
                allocation_id: a,
                node_id: n,
                outcome: ExitOutcome::Exited,
                exit_code: Some(0),
                signal: None,
                message: None,
            })
            .collect();
        apply(&mut s, Command::ReportExits { now: at(31), reports });
        submit_jobs(&mut s, &second);
        let plan = schedule(&s, at(32));
        prop_assert_eq!(&plan, &reference(&s, at(32)));
        prop_assert_eq!(&plan, &super::super::run_cycle(&s, at(32), None, false).0);
        cycle(&mut s, at(32));
        // At the same time (scores age, so order may legitimately change later).
        let third = schedule(&s, at(32));
        prop_assert!(third.is_empty(), "third cycle: {:?}", third);
    }
}
