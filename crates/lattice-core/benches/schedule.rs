//! One scheduling cycle (`lattice_core::schedule`) on synthetic clusters: 1k and 10k nodes,
//! 10k and 100k pending allocations. Prints timings; it checks nothing (see
//! docs/benchmarks.md for the figures and how they were taken).
//!
//! Run: `cargo bench -p lattice-core --bench schedule` (add `-- quick` for fewer rounds).
//!
//! Each cluster: nodes in topology groups of 32 (`group=gN`), a quarter with `ib`; 90% of
//! the nodes run work with staggered walltimes (so blocked work gets a backfill
//! reservation), ten tenants with different shares, and a queue of mostly one-node jobs,
//! some wider ones, some `ib`-constrained, priorities 0-10, submitted over an hour. The
//! running work is not preemptible, except in the `preempting` case (running work of
//! priority 5 preemptible: every cycle selects victims for the higher-priority queue).

use std::time::{Duration, Instant};

use lattice_core::allocation::{AllocationSpec, Constraints};
use lattice_core::command::Command;
use lattice_core::node::{GpuInfo, NodeRegistration};
use lattice_core::scheduler::{Placement, Plan};
use lattice_core::submit::SubmitOptions;
use lattice_core::tenant::TenantChange;
use lattice_core::{schedule, ClusterState, Timestamp};

const T0: u64 = 1_772_366_400_000;

fn at(secs: u64) -> Timestamp {
    Timestamp(T0 + secs * 1000)
}

/// xorshift: reproducible inputs.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn apply(s: &mut ClusterState, cmd: Command) {
    if let Err(e) = s.apply(&cmd) {
        panic!("{} refused: {e}", cmd.kind());
    }
}

fn spec(tenant: usize, nodes: u32, walltime: u64, priority: u8, ib: bool) -> AllocationSpec {
    AllocationSpec {
        preemptible: false,
        checkpoint: Default::default(),
        name: "bench".into(),
        tenant: format!("t{tenant}"),
        vcluster: "default".into(),
        user: "bench".into(),
        command: Some(vec!["true".into()]),
        script: None,
        nodes,
        walltime_seconds: walltime,
        priority,
        constraints: Constraints {
            features: if ib { vec!["ib".into()] } else { vec![] },
            ..Default::default()
        },
        // As a submission through the API gets it (`SubmitRequest`): the shared empty map.
        env: lattice_core::allocation::env_of(Default::default()),
    }
}

/// A cluster of `nodes` nodes, 90% busy, with `pending` allocations queued.
/// `preemptible`: whether the running work may be preempted (then pending work of a higher
/// priority preempts it: the cycle includes victim selection).
fn build(nodes: usize, pending: usize, busy_fraction: f64, preemptible: bool) -> ClusterState {
    let mut rng = Rng(0x5eed ^ (nodes as u64) ^ ((pending as u64) << 20));
    let mut s = ClusterState::default();
    for t in 0..10 {
        apply(
            &mut s,
            Command::PutTenant {
                now: at(0),
                name: format!("t{t}"),
                change: TenantChange {
                    share: Some(1 + t as u32 % 4),
                    ..Default::default()
                },
                create: true,
            },
        );
    }
    for i in 0..nodes {
        let mut features = vec![format!("group=g{}", i / 32)];
        if i % 4 == 0 {
            features.push("ib".into());
        }
        apply(
            &mut s,
            Command::RegisterNode {
                now: at(0),
                registration: NodeRegistration {
                    id: format!("n{i:05}"),
                    hostname: format!("n{i:05}"),
                    cpus: 64,
                    memory_bytes: 256 << 30,
                    gpus: GpuInfo::default(),
                    features,
                    agent_url: String::new(),
                    agent_token: None,
                },
            },
        );
    }
    // Busy nodes: one-node jobs with walltimes of 10 min to 10 h, placed directly.
    let busy = (nodes as f64 * busy_fraction) as usize;
    let first = s.next_allocation_id();
    for i in 0..busy {
        let wt = 600 + rng.below(36_000);
        apply(
            &mut s,
            Command::Submit {
                now: at(0),
                spec: AllocationSpec {
                    preemptible,
                    ..spec(i % 10, 1, wt, 5, false)
                },
                options: SubmitOptions::default(),
            },
        );
    }
    let placements = (0..busy)
        .map(|i| Placement {
            allocation: first + i as u64,
            nodes: vec![format!("n{i:05}")],
        })
        .collect();
    apply(
        &mut s,
        Command::ApplyPlan {
            now: at(0),
            plan: Plan {
                placements,
                ..Default::default()
            },
        },
    );
    // The queue.
    for i in 0..pending {
        let n = match rng.below(100) {
            0..=69 => 1,
            70..=94 => 2 + rng.below(7) as u32,
            _ => 16 + rng.below(49) as u32,
        };
        let wt = 300 + rng.below(4 * 3600);
        let prio = rng.below(11) as u8;
        let ib = rng.below(10) == 0;
        apply(
            &mut s,
            Command::Submit {
                now: at(rng.below(3600)),
                spec: spec(i % 10, n, wt, prio, ib),
                options: SubmitOptions::default(),
            },
        );
    }
    s
}

/// Commits cycles until one changes nothing (a plan carries at most 20,000 reason changes,
/// so a queue of 100k just submitted needs several): the steady state.
fn settle(mut s: ClusterState) -> ClusterState {
    for _ in 0..20 {
        let plan = schedule(&s, at(3600));
        if plan.is_empty() {
            break;
        }
        apply(
            &mut s,
            Command::ApplyPlan {
                now: at(3600),
                plan,
            },
        );
    }
    s
}

fn measure(label: &str, s: &ClusterState, rounds: usize) {
    let now = at(3600);
    let mut times: Vec<Duration> = Vec::with_capacity(rounds);
    let mut placed = 0;
    let mut preempted = 0;
    let mut changes = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        let plan = schedule(s, now);
        times.push(start.elapsed());
        placed = plan.placements.len();
        preempted = plan
            .preemptions
            .iter()
            .map(|p| p.victims.len())
            .sum::<usize>();
        changes = plan.reasons.len() + plan.estimates.len();
        std::hint::black_box(plan);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<36} min {:>8.2} ms  median {:>8.2} ms  max {:>8.2} ms  ({placed} placed, {preempted} preempted, {changes} reason/estimate changes)",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    // `-- 10000x100000` runs only that size.
    let only: Option<String> = std::env::args().find(|a| a.contains('x'));
    let rounds = if quick { 3 } else { 11 };
    println!("one scheduling cycle (schedule(state, now)), {rounds} rounds each");
    for (nodes, pending) in [
        (1_000, 10_000),
        (1_000, 100_000),
        (10_000, 10_000),
        (10_000, 100_000),
    ] {
        if only
            .as_ref()
            .is_some_and(|o| *o != format!("{nodes}x{pending}"))
        {
            continue;
        }
        let build_start = Instant::now();
        let busy = build(nodes, pending, 0.9, false);
        if std::env::var_os("LATTICE_BENCH_STEADY_ONLY").is_some() {
            // For profiling: many rounds of the steady state only.
            let steady = settle(busy.clone());
            measure(
                &format!("{nodes} nodes x {pending} pending, steady"),
                &steady,
                40,
            );
            continue;
        }
        let built = build_start.elapsed();
        measure(
            &format!("{nodes} nodes x {pending} pending, 90% busy"),
            &busy,
            rounds,
        );
        // The same queue after a cycle was committed: the steady state (reasons and
        // estimates already written, so the plan only holds what changed).
        let steady = settle(busy.clone());
        measure(
            &format!("{nodes} nodes x {pending} pending, steady"),
            &steady,
            rounds,
        );
        drop(busy);
        let idle = build(nodes, pending, 0.0, false);
        measure(
            &format!("{nodes} nodes x {pending} pending, idle"),
            &idle,
            rounds,
        );
        drop(idle);
        // Running work (priority 5) preemptible: pending work of priority 6-10 preempts it,
        // so every cycle selects victims.
        let preempt = build(nodes, pending, 0.9, true);
        measure(
            &format!("{nodes} nodes x {pending} pending, preempting"),
            &preempt,
            rounds,
        );
        eprintln!("  (built in {:.1} s)", built.as_secs_f64());
    }
}
