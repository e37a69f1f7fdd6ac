//! Property: [`schedule`] gives exactly the plan of a naive implementation of the documented
//! policy (no caching, no cursors), over random clusters and queues and across two cycles. This
//! checks the per-constraint candidate cache, its cursor and its upper bounds in `feasibility`.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::allocation::Allocation;

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

/// The documented policy, with no caching: queue by (priority desc, submitted, id); give each
/// allocation the lowest-ID free matching nodes or skip it with a reason.
fn reference(s: &ClusterState) -> Plan {
    let mut queue: Vec<&Allocation> = s
        .allocations()
        .values()
        .filter(|a| a.state == AllocState::Pending)
        .collect();
    queue.sort_by_key(|a| (Reverse(a.priority), a.submitted_at, a.id));
    let mut taken: BTreeSet<&str> = BTreeSet::new();
    let mut plan = Plan::default();
    for a in queue {
        let need = a.nodes as usize;
        let free: Vec<&str> = s
            .nodes()
            .values()
            .filter(|n| n.state == crate::node::NodeState::Ready && n.allocations.is_empty())
            .filter(|n| !taken.contains(n.id.as_str()) && fits(n, &a.constraints))
            .map(|n| n.id.as_str())
            .take(need)
            .collect();
        if free.len() == need {
            taken.extend(free.iter().copied());
            plan.placements.push(Placement {
                allocation: a.id,
                nodes: free.iter().map(|n| n.to_string()).collect(),
            });
            continue;
        }
        let exist = s
            .nodes()
            .values()
            .filter(|n| fits(n, &a.constraints))
            .count();
        let (reason, detail) = if exist < need {
            (
                REASON_UNSATISFIABLE,
                format!("needs {need} nodes matching its constraints; the cluster has {exist}"),
            )
        } else {
            (
                REASON_RESOURCES,
                format!("waiting for {need} free nodes ({exist} match its constraints)"),
            )
        };
        if a.reason.as_deref() != Some(reason) || a.reason_detail.as_ref() != Some(&detail) {
            plan.reasons.push((a.id, reason.into(), Some(detail)));
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
    )
        .prop_map(|(nodes, priority, submitted, constraints)| Job {
            nodes,
            priority,
            submitted,
            constraints,
        })
}

/// (cpus, memory GiB, H100 count, features bitmask, state: 0 ready, 1 drained, 2 down)
type NodeSpec = (u32, u64, u32, u8, u8);

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (
        prop::sample::select(vec![8u32, 32, 64]),
        prop::sample::select(vec![64u64, 256]),
        prop::sample::select(vec![0u32, 0, 1, 4]),
        0u8..4,
        prop::sample::select(vec![0u8, 0, 0, 0, 1, 2]),
    )
}

fn build(nodes: &[NodeSpec]) -> ClusterState {
    let mut s = ClusterState::default();
    for (i, &(cpus, mem, gpus, feats, state)) in nodes.iter().enumerate() {
        let id = format!("n{i:02}");
        let mut features = Vec::new();
        if feats & 1 != 0 {
            features.push("ib".to_string());
        }
        if feats & 2 != 0 {
            features.push("nvme".to_string());
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
        submit(
            s,
            at(j.submitted),
            AllocationSpec {
                priority: j.priority,
                ..with(j.nodes, pool[j.constraints].clone())
            },
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// Over two cycles, with work finishing in between (which frees scattered nodes and leaves
    /// reasons from the first cycle in place), the scheduler's plan equals the reference's.
    #[test]
    fn schedule_matches_the_reference_policy(
        nodes in prop::collection::vec(node_spec(), 1..=30),
        first in prop::collection::vec(job(), 0..=25),
        finished in prop::collection::vec(any::<bool>(), 0..=30),
        second in prop::collection::vec(job(), 0..=25),
    ) {
        let mut s = build(&nodes);
        submit_jobs(&mut s, &first);
        let plan = schedule(&s, at(30));
        prop_assert_eq!(&plan, &reference(&s));
        cycle(&mut s, at(30));

        let reports: Vec<ExitReport> = s
            .nodes()
            .values()
            .zip(finished.iter().chain(std::iter::repeat(&false)))
            .filter(|(_, &f)| f)
            .flat_map(|(n, _)| n.allocations.iter().map(|&a| (a, n.id.clone())))
            .map(|(a, n)| ExitReport {
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
        prop_assert_eq!(&plan, &reference(&s));
        cycle(&mut s, at(32));
        prop_assert!(schedule(&s, at(33)).is_empty());
    }
}
