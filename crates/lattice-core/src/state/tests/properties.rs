//! Property tests: random clusters (1-40 nodes, random resources, some drained or down) driven
//! by random command sequences that include real scheduling cycles. After every command the
//! invariants of [`check_invariants`] hold; rejected and no-op commands change nothing but the
//! revision; every plan the scheduler computes is accepted in full by the state it was computed
//! from and leaves no placeable work behind; the log replays to an equal state and the state
//! survives a snapshot round-trip.

use proptest::prelude::*;

use super::*;
use crate::scheduler::{
    schedule, REASON_ARRAY_LIMIT, REASON_DEPENDENCY, REASON_HELD, REASON_PREEMPTING,
    REASON_PRIORITY, REASON_QUOTA, REASON_RESOURCES, REASON_UNSATISFIABLE,
};

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
        1 => Just((ExitOutcome::Preempted, None, Some(15))),
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
    /// A submission with options: tenant (0 default, 1 t1, 2 t2, 3 unknown), array of
    /// `count` tasks with an optional cap, dependencies on arbitrary IDs (`true`: any), held.
    SubmitWith {
        nodes: u32,
        tenant: usize,
        walltime: u64,
        array: Option<(u32, Option<u32>)>,
        deps: Vec<(u64, bool)>,
        hold: bool,
    },
    /// Hold or release an arbitrary ID, or (true) the array it belongs to.
    Hold(u64, bool, bool),
    /// Requeue an arbitrary ID, or (true) the array it belongs to.
    Requeue(u64, bool),
    /// Cancel the array an arbitrary ID belongs to (or an unknown array).
    CancelArray(u64),
    /// Change a tenant's quotas (0 default, 1 t1, 2 t2, 3 unknown).
    Quota(usize, Option<u32>, Option<u32>),
    /// Request an on-demand checkpoint of an arbitrary ID.
    RequestCheckpoint(u64),
    /// Checkpoint reports for (allocation, node) pairs that occupy a node (run current or
    /// not), with an outcome and a trigger.
    CheckpointReports(Vec<(usize, u8, bool)>),
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
        4 => (
            1u32..=4,
            0usize..4,
            prop::sample::select(vec![10u64, 60, 600]),
            prop::option::weighted(0.4, (1u32..=6, prop::option::of(1u32..=3))),
            prop::collection::vec((any::<u64>(), any::<bool>()), 0..=2),
            prop::bool::weighted(0.15),
        )
            .prop_map(|(nodes, tenant, walltime, array, deps, hold)| Op::SubmitWith {
                nodes,
                tenant,
                walltime,
                array,
                deps,
                hold,
            }),
        2 => (any::<u64>(), any::<bool>(), prop::bool::weighted(0.3))
            .prop_map(|(id, hold, array)| Op::Hold(id, hold, array)),
        1 => (any::<u64>(), prop::bool::weighted(0.3)).prop_map(|(id, array)| Op::Requeue(id, array)),
        1 => any::<u64>().prop_map(Op::CancelArray),
        1 => (
            0usize..4,
            prop::option::of(0u32..=6),
            prop::option::of(0u32..=3),
        )
            .prop_map(|(t, n, r)| Op::Quota(t, n, r)),
        1 => any::<u64>().prop_map(Op::RequestCheckpoint),
        2 => prop::collection::vec((any::<usize>(), 0u8..3, prop::bool::weighted(0.9)), 1..=3)
            .prop_map(Op::CheckpointReports),
    ]
}

const TENANTS: [&str; 4] = ["default", "t1", "t2", "nobody"];

/// The array an arbitrary ID picks (any ID modulo the arrays there are; 999 if none).
fn pick_array(s: &ClusterState, id: u64) -> AllocId {
    let arrays: Vec<AllocId> = s.arrays().keys().copied().collect();
    if arrays.is_empty() {
        999
    } else {
        arrays[(id % arrays.len() as u64) as usize]
    }
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
    for (name, share, max_nodes, max_running) in
        [("t1", 3, Some(4), None), ("t2", 1, None, Some(2))]
    {
        cmds.push(Command::PutTenant {
            now: at(0),
            name: name.into(),
            change: crate::tenant::TenantChange {
                share: Some(share),
                max_nodes: Some(max_nodes),
                max_running: Some(max_running),
                sensitive: None,
            },
            create: true,
        });
    }
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
                            run: s.allocations()[a].preempt_count,
                            ..exited(*a, n, 0)
                        }
                    })
                    .collect()
            };
            Command::ReportExits { now, reports }
        }
        Op::RequestCheckpoint(id) => Command::RequestCheckpoint {
            now,
            id: id % (s.next_allocation_id() + 1),
            by: "prop".into(),
        },
        Op::CheckpointReports(picks) => {
            use crate::checkpoint::{CheckpointOutcome, CheckpointReport, CheckpointTrigger};
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
                    .map(|&(i, outcome, current)| {
                        let (a, n) = &pairs[i % pairs.len()];
                        let alloc = &s.allocations()[a];
                        CheckpointReport {
                            allocation_id: *a,
                            node_id: n.clone(),
                            run: alloc.preempt_count + u32::from(!current),
                            trigger: if alloc.state == AllocState::Preempting {
                                CheckpointTrigger::Preemption
                            } else {
                                CheckpointTrigger::Request(alloc.checkpoint_requests)
                            },
                            outcome: [
                                CheckpointOutcome::Success,
                                CheckpointOutcome::Failure,
                                CheckpointOutcome::Timeout,
                            ][outcome as usize],
                            duration_ms: (i % 5000) as u64,
                            message: None,
                        }
                    })
                    .collect()
            };
            Command::ReportCheckpoints { now, reports }
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
        Op::SubmitWith {
            nodes,
            tenant,
            walltime,
            array,
            deps,
            hold,
        } => {
            let next = s.next_allocation_id();
            let depends_on = deps
                .iter()
                .map(|&(id, any)| crate::dependency::DependencyRef {
                    // Mostly existing IDs, sometimes the next one (refused).
                    job: crate::dependency::JobRef::Id(1 + id % next),
                    kind: if any {
                        crate::dependency::DepKind::Any
                    } else {
                        crate::dependency::DepKind::Success
                    },
                })
                .collect();
            Command::Submit {
                now,
                spec: AllocationSpec {
                    tenant: TENANTS[*tenant].into(),
                    walltime_seconds: *walltime,
                    ..spec(*nodes)
                },
                options: crate::submit::SubmitOptions {
                    array: array.map(|(count, cap)| crate::array::ArraySpec {
                        indices: (0..count).collect(),
                        max_running: cap,
                        text: format!("0-{}", count - 1),
                    }),
                    depends_on,
                    hold: *hold,
                    create_tenant: false,
                    submitted_by: None,
                },
            }
        }
        Op::Hold(id, hold, array) => Command::SetHold {
            now,
            target: if *array {
                crate::command::Target::Array(pick_array(s, *id))
            } else {
                crate::command::Target::Allocation(id % (s.next_allocation_id() + 1))
            },
            hold: *hold,
            by: "prop".into(),
        },
        Op::Requeue(id, array) => Command::Requeue {
            now,
            target: if *array {
                crate::command::Target::Array(pick_array(s, *id))
            } else {
                crate::command::Target::Allocation(id % (s.next_allocation_id() + 1))
            },
            by: "prop".into(),
        },
        Op::CancelArray(id) => Command::CancelArray {
            now,
            array_id: pick_array(s, *id),
            by: "prop".into(),
        },
        Op::Quota(t, max_nodes, max_running) => Command::PutTenant {
            now,
            name: TENANTS[*t].into(),
            change: crate::tenant::TenantChange {
                max_nodes: Some(*max_nodes),
                max_running: Some(*max_running),
                ..Default::default()
            },
            create: false,
        },
    }
}

/// Checks a scheduling cycle: `plan` was computed from `before` and applied to give `after`.
fn check_cycle(
    before: &ClusterState,
    plan: &Plan,
    outcome: &PlanOutcome,
    after: &ClusterState,
    now: Timestamp,
) {
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
    assert!(
        outcome.preemptions_rejected.is_empty(),
        "preemptions rejected {:?}",
        outcome.preemptions_rejected
    );
    let victims: Vec<AllocId> = plan
        .preemptions
        .iter()
        .flat_map(|p| p.victims.iter().copied())
        .collect();
    assert_eq!(outcome.preempted, victims);
    for p in &plan.preemptions {
        let a = &after.allocations()[&p.preemptor];
        assert_eq!(a.claimed_nodes, p.nodes);
        for v in &p.victims {
            let victim = &after.allocations()[v];
            assert_eq!(victim.state, AllocState::Preempting);
            assert!(victim.priority < a.priority && victim.preemptible);
            assert_eq!(victim.vcluster, a.vcluster);
        }
    }
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
    // No placement pushed a tenant over a quota or an array over its cap.
    let placed_tenants: BTreeSet<&str> = plan
        .placements
        .iter()
        .map(|p| after.allocations()[&p.allocation].tenant.as_str())
        .collect();
    for t in placed_tenants {
        let load = after.tenant_load(t);
        let tenant = after.tenant(t).unwrap();
        assert!(
            tenant.max_nodes.is_none_or(|m| load.nodes <= u64::from(m)),
            "{t}: {load:?}"
        );
        assert!(tenant
            .max_running
            .is_none_or(|m| load.running <= u64::from(m)));
    }
    // Every allocation still pending has a reason, and the right one; one that would fit on
    // what is left free waits only for a policy reason.
    for id in after.pending_ids() {
        let a = &after.allocations()[id];
        let need = a.nodes as usize;
        let exist = after
            .nodes()
            .values()
            .filter(|n| n.satisfies(&a.constraints))
            .count();
        // Nodes claimed by another allocation's preemption are not free for this one.
        let free = after
            .nodes()
            .values()
            .filter(|n| n.is_free() && n.satisfies(&a.constraints))
            .filter(|n| after.claims().get(&n.id).is_none_or(|c| c == id))
            .count();
        let reason = a
            .reason
            .as_deref()
            .unwrap_or_else(|| panic!("{id} has no reason"));
        assert!(a.reason_detail.is_some());
        match reason {
            REASON_HELD => assert!(a.held, "{id}"),
            REASON_PREEMPTING => {
                assert!(
                    !a.claimed_nodes.is_empty(),
                    "{id} preempting without a claim"
                );
                assert!(
                    a.claimed_nodes.iter().any(|n| !after.nodes()[n].is_free()),
                    "{id} waits although its claimed nodes are free"
                );
            }
            REASON_DEPENDENCY => assert!(after.unmet_dependency(a).is_some(), "{id}"),
            REASON_UNSATISFIABLE => assert!(exist < need, "{id}"),
            REASON_QUOTA => {
                let t = after.tenant(&a.tenant).unwrap();
                let mut load = after.tenant_load(&a.tenant);
                // Preemptors waiting on a claim count against their tenant's quota.
                for c in after.pending_ids() {
                    let c = &after.allocations()[c];
                    if c.id != a.id
                        && !c.held
                        && !c.claimed_nodes.is_empty()
                        && c.tenant == a.tenant
                    {
                        load.nodes += u64::from(c.nodes);
                        load.running += 1;
                    }
                }
                assert!(
                    crate::tenant::quota_exceeded(t, load, a.nodes).is_some(),
                    "{id}"
                );
            }
            REASON_ARRAY_LIMIT => {
                let array = a.array_id.unwrap();
                let cap = after.array(array).unwrap().max_running.unwrap();
                let claiming = after
                    .pending_ids()
                    .iter()
                    .map(|c| &after.allocations()[c])
                    .filter(|c| c.id != a.id && !c.held && !c.claimed_nodes.is_empty())
                    .filter(|c| c.array_id == Some(array))
                    .count() as u32;
                let running = after.array_running(array);
                assert!(
                    running + claiming >= cap,
                    "{id}: running {running} claiming {claiming} cap {cap} {:?}",
                    after
                        .array_members(array)
                        .map(|m| (m.id, m.state, m.claimed_nodes.clone(), m.held))
                        .collect::<Vec<_>>()
                );
            }
            REASON_RESOURCES => {
                assert!(
                    exist >= need && free < need,
                    "{id} fits on {free} free nodes"
                )
            }
            REASON_PRIORITY => assert!(exist >= need, "{id}"),
            other => panic!("{id}: unexpected reason {other}"),
        }
        if !a.held && after.unmet_dependency(a).is_none() {
            assert!(
                free < need || reason != REASON_RESOURCES,
                "{id} fits on {free} free nodes"
            );
        }
    }
    // Nothing changed since, so the next cycle at the same time has nothing to do.
    let again = schedule(after, now);
    // One known exception: a preemptor that claimed nodes keeps its claim, so a
    // higher-priority allocation that could not start while it waited may preempt it once it
    // started on them (docs/preemption.md). Such a second cycle (a preemption of a victim
    // that started on its claim in this one, together with whatever other victims it needs
    // for its node count) changes everything after it, so it is not compared.
    let started_on_claim = |v: &AllocId| {
        before.allocation(*v).is_some_and(|b| {
            !b.claimed_nodes.is_empty() && plan.placements.iter().any(|p| p.allocation == *v)
        })
    };
    if again
        .preemptions
        .iter()
        .any(|p| p.victims.iter().any(started_on_claim))
    {
        return;
    }
    assert!(again.is_empty(), "second cycle: {again:?}\nfirst: {plan:?}");
}

/// Whether a successful outcome reports that nothing was changed.
fn is_no_op(cmd: &Command, out: &CommandOutcome) -> bool {
    match (cmd, out) {
        (_, CommandOutcome::Reports { applied: 0, .. }) => true,
        (_, CommandOutcome::Liveness { changed: 0 }) => true,
        (Command::ApplyPlan { plan, .. }, CommandOutcome::Plan(p)) => {
            p.placed.is_empty()
                && p.preempted.is_empty()
                && plan.reasons.is_empty()
                && plan.estimates.is_empty()
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
            check_cycle(&before, plan, out, &s, now);
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
    ///
    /// The same log with its commands grouped into `Command::Batch` entries (as a leader
    /// batches concurrent writes; sizes cycle through `groups`), encoded as the log stores
    /// them, gives the same state and, command by command, the same answers.
    #[test]
    fn replay_and_snapshots_give_equal_states(
        (cluster, ops) in scenario(),
        groups in prop::collection::vec(1usize..6, 1..12),
    ) {
        let (s, log, results) = run(&cluster, &ops);
        let mut replay = ClusterState::default();
        let replayed: Vec<CommandResult> = log.iter().map(|c| replay.apply(c)).collect();
        prop_assert_eq!(&replayed, &results);
        prop_assert_eq!(&replay, &s);

        let mut batched = ClusterState::default();
        let mut answers: Vec<CommandResult> = Vec::new();
        let mut rest = &log[..];
        for n in groups.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (group, tail) = rest.split_at((*n).min(rest.len()));
            rest = tail;
            let entry = Command::Batch { now: group[0].now(), commands: group.to_vec() };
            let entry: Command = bincode::deserialize(&bincode::serialize(&entry).unwrap()).unwrap();
            match batched.apply(&entry) {
                Ok(CommandOutcome::Batch(r)) => answers.extend(r),
                other => prop_assert!(false, "a batch answered {:?}", other),
            }
            check_invariants(&batched);
        }
        prop_assert_eq!(&answers, &results);
        prop_assert_eq!(&batched, &s);

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

/// A plan whose only effect is a preemption is no no-op. A preemptor whose claimed node is
/// drained preempts afresh elsewhere; it keeps its reason ("preempting", one victim), so the
/// plan carries neither placements nor reasons nor estimates.
#[test]
fn a_plan_with_only_a_preemption_changes_the_state() {
    let cluster: Vec<NodeGen> = (0..4)
        .map(|_| NodeGen {
            reg: reg(""),
            drain: false,
            down: false,
        })
        .collect();
    let low = Op::Submit {
        nodes: 2,
        priority: 1,
        constraints: Constraints::default(),
    };
    let ops = vec![
        low.clone(),
        low,
        Op::Schedule,
        Op::Submit {
            nodes: 2,
            priority: 9,
            constraints: Constraints::default(),
        },
        Op::Schedule,
        // Allocation 3 preempted allocation 1 and claimed its nodes, n00 and n01.
        Op::Drain(0, true),
        Op::Schedule,
    ];
    let (s, log, results) = run(&cluster, &ops);
    let Some(Command::ApplyPlan { plan, .. }) = log.last() else {
        panic!("{log:?}");
    };
    assert!(plan.placements.is_empty() && plan.reasons.is_empty() && plan.estimates.is_empty());
    let Some(Ok(CommandOutcome::Plan(out))) = results.last() else {
        panic!("{results:?}");
    };
    assert_eq!(out.preempted, vec![2]);
    assert_eq!(s.allocations()[&3].claimed_nodes, ["n02", "n03"]);
}
