//! Property tests: random clusters (1-40 nodes, random resources, some drained or down) driven
//! by random command sequences that include real scheduling cycles. After every command the
//! invariants of [`check_invariants`] hold; rejected and no-op commands change nothing but the
//! revision; every plan the scheduler computes is accepted in full by the state it was computed
//! from and leaves no placeable work behind; the log replays to an equal state and the state
//! survives a snapshot round-trip.

use proptest::prelude::*;

use super::*;
use crate::scheduler::{schedule, REASON_RESOURCES, REASON_UNSATISFIABLE};

const FEATURES: [&str; 4] = ["ib", "nvme", "bigmem", "x86"];
const MODELS: [&str; 3] = [
    "NVIDIA H100 80GB HBM3",
    "NVIDIA A100-SXM4-40GB",
    "AMD Instinct MI250X",
];

#[derive(Clone, Debug)]
struct NodeGen {
    reg: NodeRegistration,
    drain: bool,
    down: bool,
}

fn node_gen() -> impl Strategy<Value = NodeGen> {
    (
        prop::sample::select(vec![4u32, 8, 16, 32, 64, 128]),
        prop::sample::select(vec![16u64, 64, 256, 512]),
        0u32..=8,
        prop::sample::select(MODELS.to_vec()),
        prop::sample::subsequence(FEATURES.to_vec(), 0..=FEATURES.len()),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(cpus, mem_gb, gpus, model, features, drain, down)| NodeGen {
                reg: NodeRegistration {
                    cpus,
                    memory_bytes: mem_gb * GIB,
                    gpus: GpuInfo {
                        count: gpus,
                        model: (gpus > 0).then(|| model.to_string()),
                    },
                    features: features.into_iter().map(String::from).collect(),
                    ..reg("")
                },
                drain,
                down,
            },
        )
}

fn constraints() -> impl Strategy<Value = Constraints> {
    let features = prop_oneof![
        3 => Just(Vec::new()),
        1 => prop::sample::subsequence(FEATURES.to_vec(), 1..=2),
    ];
    (
        features,
        prop::option::weighted(
            0.15,
            prop::sample::select(vec!["h100", "A100", "nvidia", "MI250", "v100"]),
        ),
        prop::option::weighted(0.15, 1u32..=8),
        prop::option::weighted(0.15, prop::sample::select(vec![32u64, 128, 512, 1024])),
        prop::option::weighted(0.15, prop::sample::select(vec![8u32, 32, 128])),
    )
        .prop_map(
            |(features, gpu_type, min_gpus, min_memory_gb, min_cpus)| Constraints {
                features: features.into_iter().map(String::from).collect(),
                gpu_type: gpu_type.map(String::from),
                min_gpus,
                min_memory_gb,
                min_cpus,
            },
        )
}

/// How a rank ends: (outcome, exit code, signal).
type Ending = (ExitOutcome, Option<i32>, Option<i32>);

fn ending() -> impl Strategy<Value = Ending> {
    prop_oneof![
        5 => Just((ExitOutcome::Exited, Some(0), None)),
        1 => (1i32..=255).prop_map(|c| (ExitOutcome::Exited, Some(c), None)),
        1 => Just((ExitOutcome::Exited, None, Some(9))),
        1 => Just((ExitOutcome::Walltime, None, Some(9))),
        1 => Just((ExitOutcome::Stopped, None, Some(15))),
        1 => Just((ExitOutcome::LaunchFailed, None, None)),
    ]
}

/// A command in the abstract; resolved against the current state into a concrete [`Command`].
#[derive(Clone, Debug)]
enum Op {
    Submit {
        nodes: u32,
        priority: u8,
        constraints: Constraints,
    },
    Schedule,
    /// Exit reports for (allocation, node) pairs that currently occupy a node.
    Exit(Vec<(usize, Ending)>),
    /// An exit report for an arbitrary, most likely stale, pair.
    StaleExit(u64, usize),
    /// Cancel an arbitrary ID: pending, running, terminal or unknown.
    Cancel(u64),
    Drain(usize, bool),
    DrainUnknown,
    Liveness(Vec<usize>, Vec<usize>),
    /// Re-register a node as it first registered, or (false) with an invalid ID.
    Register(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1u32..=6, 0u8..=10, constraints()).prop_map(|(nodes, priority, constraints)| {
            Op::Submit { nodes, priority, constraints }
        }),
        3 => Just(Op::Schedule),
        4 => prop::collection::vec((any::<usize>(), ending()), 1..=3).prop_map(Op::Exit),
        1 => (any::<u64>(), any::<usize>()).prop_map(|(a, n)| Op::StaleExit(a, n)),
        2 => any::<u64>().prop_map(Op::Cancel),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(n, d)| Op::Drain(n, d)),
        1 => Just(Op::DrainUnknown),
        1 => (
            prop::collection::vec(any::<usize>(), 0..=2),
            prop::collection::vec(any::<usize>(), 0..=2),
        )
            .prop_map(|(down, up)| Op::Liveness(down, up)),
        1 => (any::<usize>(), prop::bool::weighted(0.8)).prop_map(|(n, v)| Op::Register(n, v)),
    ]
}

fn scenario() -> impl Strategy<Value = (Vec<NodeGen>, Vec<Op>)> {
    (
        prop::collection::vec(node_gen(), 1..=40),
        prop::collection::vec(op(), 1..=80),
    )
}

/// The commands that bring a generated cluster into being.
fn setup_commands(cluster: &[NodeGen]) -> Vec<Command> {
    let mut cmds = Vec::new();
    let mut down = Vec::new();
    for (i, g) in cluster.iter().enumerate() {
        let id = format!("n{i:02}");
        cmds.push(Command::RegisterNode {
            now: at(0),
            registration: NodeRegistration {
                id: id.clone(),
                hostname: format!("{id}.example"),
                ..g.reg.clone()
            },
        });
        if g.drain {
            cmds.push(Command::SetNodeDrain {
                now: at(0),
                node_id: id.clone(),
                drain: true,
                reason: Some("generated".into()),
            });
        }
        if g.down {
            down.push(id);
        }
    }
    cmds.push(Command::SetNodeLiveness {
        now: at(0),
        down,
        up: vec![],
    });
    cmds
}

fn node_ids(s: &ClusterState) -> Vec<String> {
    s.nodes().keys().cloned().collect()
}

/// Turns an abstract op into a command for the current state.
fn resolve(s: &ClusterState, setup: &[Command], op: &Op, now: Timestamp) -> Command {
    let ids = node_ids(s);
    let node = |i: &usize| ids[i % ids.len()].clone();
    match op {
        Op::Submit {
            nodes,
            priority,
            constraints,
        } => Command::SubmitAllocation {
            now,
            spec: AllocationSpec {
                priority: *priority,
                constraints: constraints.clone(),
                ..spec(*nodes)
            },
        },
        Op::Schedule => Command::ApplyPlan {
            now,
            plan: schedule(s, now),
        },
        Op::Exit(picks) => {
            let pairs: Vec<(AllocId, String)> = s
                .nodes()
                .values()
                .flat_map(|n| n.allocations.iter().map(|&a| (a, n.id.clone())))
                .collect();
            let reports = if pairs.is_empty() {
                Vec::new()
            } else {
                picks
                    .iter()
                    .map(|(i, (outcome, exit_code, signal))| {
                        let (a, n) = &pairs[i % pairs.len()];
                        ExitReport {
                            outcome: *outcome,
                            exit_code: *exit_code,
                            signal: *signal,
                            ..exited(*a, n, 0)
                        }
                    })
                    .collect()
            };
            Command::ReportExits { now, reports }
        }
        Op::StaleExit(a, n) => Command::ReportExits {
            now,
            reports: vec![exited(a % (s.next_allocation_id() + 1), &node(n), 0)],
        },
        Op::Cancel(id) => Command::CancelAllocation {
            now,
            id: id % (s.next_allocation_id() + 1),
            by: "prop".into(),
        },
        Op::Drain(n, drain) => Command::SetNodeDrain {
            now,
            node_id: node(n),
            drain: *drain,
            reason: Some("maintenance".into()),
        },
        Op::DrainUnknown => Command::SetNodeDrain {
            now,
            node_id: "ghost".into(),
            drain: true,
            reason: None,
        },
        Op::Liveness(down, up) => Command::SetNodeLiveness {
            now,
            down: down.iter().map(node).collect(),
            up: up.iter().map(node).collect(),
        },
        Op::Register(n, valid) => {
            let id = node(n);
            let registration = setup
                .iter()
                .find_map(|c| match c {
                    Command::RegisterNode { registration, .. } if registration.id == id => {
                        Some(registration.clone())
                    }
                    _ => None,
                })
                .expect("every node was registered in setup");
            let id = if *valid { id } else { String::new() };
            Command::RegisterNode {
                now,
                registration: NodeRegistration { id, ..registration },
            }
        }
    }
}

/// Checks a scheduling cycle: `plan` was computed from `before` and applied to give `after`.
fn check_cycle(before: &ClusterState, plan: &Plan, outcome: &PlanOutcome, after: &ClusterState) {
    // Every placement is sound against the state the plan was computed from...
    let mut used = BTreeSet::new();
    for p in &plan.placements {
        let a = &before.allocations()[&p.allocation];
        assert_eq!(a.state, AllocState::Pending);
        assert_eq!(p.nodes.len(), a.nodes as usize);
        for nid in &p.nodes {
            let n = &before.nodes()[nid];
            assert!(n.is_free(), "{nid} is {} with {:?}", n.state, n.allocations);
            assert!(
                n.satisfies(&a.constraints),
                "{nid} violates {:?}",
                a.constraints
            );
            assert!(used.insert(nid.clone()), "{nid} used twice in one plan");
        }
    }
    // ...so apply accepts all of it.
    assert!(
        outcome.rejected.is_empty(),
        "rejected {:?}",
        outcome.rejected
    );
    let planned: Vec<AllocId> = plan.placements.iter().map(|p| p.allocation).collect();
    assert_eq!(outcome.placed, planned);
    for p in &plan.placements {
        let a = &after.allocations()[&p.allocation];
        assert_eq!(a.state, AllocState::Running);
        assert_eq!(a.assigned_nodes, p.nodes);
        for nid in &p.nodes {
            assert_eq!(after.nodes()[nid].allocations, BTreeSet::from([a.id]));
        }
    }
    // Every allocation still pending has a reason, and the right one; none of them could have
    // been placed on what is left free.
    for id in after.pending_ids() {
        let a = &after.allocations()[id];
        let exist = after
            .nodes()
            .values()
            .filter(|n| n.satisfies(&a.constraints))
            .count();
        let free = after
            .nodes()
            .values()
            .filter(|n| n.is_free() && n.satisfies(&a.constraints))
            .count();
        let want = if exist < a.nodes as usize {
            REASON_UNSATISFIABLE
        } else {
            REASON_RESOURCES
        };
        assert_eq!(a.reason.as_deref(), Some(want), "allocation {id}");
        assert!(a.reason_detail.is_some());
        assert!(free < a.nodes as usize, "{id} fits on {free} free nodes");
    }
    // Nothing changed since, so the next cycle has nothing to do.
    let again = schedule(after, Timestamp(u64::MAX));
    assert!(again.is_empty(), "second cycle: {again:?}");
}

/// Whether a successful outcome reports that nothing was changed.
fn is_no_op(cmd: &Command, out: &CommandOutcome) -> bool {
    match (cmd, out) {
        (_, CommandOutcome::Reports { applied: 0, .. }) => true,
        (_, CommandOutcome::Liveness { changed: 0 }) => true,
        (Command::ApplyPlan { plan, .. }, CommandOutcome::Plan(p)) => {
            p.placed.is_empty() && plan.reasons.is_empty()
        }
        _ => false,
    }
}

/// Runs a scenario, checking every step; returns the final state, the log and the results.
fn run(cluster: &[NodeGen], ops: &[Op]) -> (ClusterState, Vec<Command>, Vec<CommandResult>) {
    let setup = setup_commands(cluster);
    let mut s = ClusterState::default();
    let mut log = Vec::new();
    let mut results = Vec::new();
    for cmd in &setup {
        results.push(Ok(ok(&mut s, cmd.clone())));
        log.push(cmd.clone());
    }
    for (step, op) in ops.iter().enumerate() {
        let now = at(10 + step as u64);
        let cmd = resolve(&s, &setup, op, now);
        let before = s.clone();
        let res = s.apply(&cmd);
        assert_eq!(s.revision(), before.revision() + 1);
        check_invariants(&s);
        match &res {
            Err(_) => assert_unchanged_but_revision(&before, &s),
            Ok(out) if is_no_op(&cmd, out) => assert_unchanged_but_revision(&before, &s),
            Ok(_) => {}
        }
        if let (Command::ApplyPlan { plan, .. }, Ok(CommandOutcome::Plan(out))) = (&cmd, &res) {
            check_cycle(&before, plan, out, &s);
        }
        if let (Command::CancelAllocation { id, .. }, Ok(_)) = (&cmd, &res) {
            let a = &s.allocations()[id];
            assert_eq!(a.state, AllocState::Cancelled);
            for nid in &a.assigned_nodes {
                assert!(desired(&s, nid)
                    .iter()
                    .all(|&(x, d)| x != *id || d == Desired::Stop));
            }
        }
        log.push(cmd);
        results.push(res);
    }
    (s, log, results)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    /// Invariants hold after every command, rejected and no-op commands change nothing, and
    /// every scheduling cycle is accepted in full, gives reasons and leaves nothing placeable.
    #[test]
    fn random_command_sequences_keep_the_state_consistent((cluster, ops) in scenario()) {
        run(&cluster, &ops);
    }

    /// The same log gives the same state and the same answers; a snapshot (bincode, as the
    /// server stores it, and JSON) round-trips to an equal state with its indexes rebuilt.
    #[test]
    fn replay_and_snapshots_give_equal_states((cluster, ops) in scenario()) {
        let (s, log, results) = run(&cluster, &ops);
        let mut replay = ClusterState::default();
        let replayed: Vec<CommandResult> = log.iter().map(|c| replay.apply(c)).collect();
        prop_assert_eq!(&replayed, &results);
        prop_assert_eq!(&replay, &s);

        let bin = bincode::serialize(&s).unwrap();
        let from_bin: ClusterState = bincode::deserialize(&bin).unwrap();
        prop_assert_eq!(&from_bin, &s);
        let json = serde_json::to_string(&s).unwrap();
        let from_json: ClusterState = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&from_json, &s);
        check_invariants(&from_bin);
    }
}

/// A hand-picked sequence that exercises every command family, so the properties above are
/// known to reach the interesting states and not only trivially hold.
#[test]
fn properties_reach_interesting_states() {
    let cluster: Vec<NodeGen> = (0..4)
        .map(|_| NodeGen {
            reg: reg(""),
            drain: false,
            down: false,
        })
        .collect();
    let ops = vec![
        Op::Submit {
            nodes: 2,
            priority: 5,
            constraints: Constraints::default(),
        },
        Op::Submit {
            nodes: 3,
            priority: 5,
            constraints: Constraints::default(),
        },
        Op::Submit {
            nodes: 9,
            priority: 9,
            constraints: Constraints::default(),
        },
        Op::Schedule,
        Op::Liveness(vec![0], vec![]),
        Op::Exit(vec![(0, (ExitOutcome::Exited, Some(0), None))]),
        Op::Schedule,
        Op::Cancel(2),
        Op::Drain(3, true),
        Op::Register(0, true),
        Op::Schedule,
    ];
    let (s, _, results) = run(&cluster, &ops);
    let a = |id| &s.allocations()[&id];
    assert_eq!(a(1).state, AllocState::Failed);
    assert_eq!(a(1).reason.as_deref(), Some("node_lost"));
    assert_eq!(a(2).state, AllocState::Cancelled);
    assert_eq!(a(3).reason.as_deref(), Some(REASON_UNSATISFIABLE));
    assert!(results.iter().all(|r| r.is_ok()));
}
