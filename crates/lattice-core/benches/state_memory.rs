//! How the replicated state grows: memory (this process's resident set) and the time of one
//! scheduling cycle with 1k, 10k and 50k nodes and 10k, 100k and 1M allocations in its
//! history (all ended but 1% pending), and the size of a snapshot (bincode, as the Raft
//! state machine writes it). Prints figures; checks nothing (docs/benchmarks.md).
//!
//! Run: `cargo bench -p lattice-core --bench state_memory` (`-- 50000x1000000` for one size).

use std::time::Instant;

use lattice_core::agent::{ExitOutcome, ExitReport};
use lattice_core::allocation::AllocationSpec;
use lattice_core::command::Command;
use lattice_core::node::{GpuInfo, NodeRegistration};
use lattice_core::scheduler::{Placement, Plan};
use lattice_core::submit::SubmitOptions;
use lattice_core::{schedule, ClusterState, Timestamp};

const T0: u64 = 1_772_366_400_000;

fn at(ms: u64) -> Timestamp {
    Timestamp(T0 + ms)
}

fn apply(s: &mut ClusterState, cmd: Command) {
    if let Err(e) = s.apply(&cmd) {
        panic!("{} refused: {e}", cmd.kind());
    }
}

/// Resident set size of this process, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn spec(i: usize) -> AllocationSpec {
    AllocationSpec {
        name: "bench".into(),
        tenant: "default".into(),
        vcluster: "default".into(),
        user: "bench".into(),
        command: Some(vec!["true".into()]),
        script: None,
        nodes: 1,
        walltime_seconds: 600 + (i % 3600) as u64,
        priority: (i % 11) as u8,
        constraints: Default::default(),
        // As a submission through the API gets it (`SubmitRequest`): the shared empty map.
        env: lattice_core::allocation::env_of(Default::default()),
        preemptible: true,
        checkpoint: Default::default(),
    }
}

/// `nodes` nodes; `history` allocations submitted, of which all but 1% ran on the nodes (in
/// waves, one plan per wave) and completed.
fn build(nodes: usize, history: usize) -> ClusterState {
    let mut s = ClusterState::default();
    for i in 0..nodes {
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
                    features: vec![format!("group=g{}", i / 32)],
                    agent_url: String::new(),
                    agent_token: None,
                },
            },
        );
    }
    let ended = history - history / 100;
    let mut t = 1;
    let mut done = 0;
    while done < ended {
        let wave = nodes.min(ended - done);
        let first = s.next_allocation_id();
        for k in 0..wave {
            apply(
                &mut s,
                Command::Submit {
                    now: at(t),
                    spec: spec(done + k),
                    options: SubmitOptions::default(),
                },
            );
        }
        let placements = (0..wave)
            .map(|k| Placement {
                allocation: first + k as u64,
                nodes: vec![format!("n{k:05}")],
            })
            .collect();
        apply(
            &mut s,
            Command::ApplyPlan {
                now: at(t + 1),
                plan: Plan {
                    placements,
                    ..Default::default()
                },
            },
        );
        let reports = (0..wave)
            .map(|k| ExitReport {
                allocation_id: first + k as u64,
                node_id: format!("n{k:05}"),
                outcome: ExitOutcome::Exited,
                exit_code: Some(0),
                signal: None,
                message: None,
                run: 0,
            })
            .collect();
        apply(
            &mut s,
            Command::ReportExits {
                now: at(t + 2),
                reports,
            },
        );
        done += wave;
        t += 1000;
    }
    for i in 0..history / 100 {
        apply(
            &mut s,
            Command::Submit {
                now: at(t),
                spec: spec(i),
                options: SubmitOptions::default(),
            },
        );
    }
    s
}

fn main() {
    let only: Option<String> = std::env::args().find(|a| a.contains('x'));
    println!(
        "{:>7} {:>10} {:>12} {:>12} {:>14} {:>10}",
        "nodes", "history", "state MiB", "cycle ms", "snapshot MiB", "build s"
    );
    for (nodes, history) in [
        (1_000, 10_000),
        (10_000, 10_000),
        (10_000, 100_000),
        (10_000, 1_000_000),
        (50_000, 100_000),
        (50_000, 1_000_000),
    ] {
        if only
            .as_ref()
            .is_some_and(|o| *o != format!("{nodes}x{history}"))
        {
            continue;
        }
        let before = rss_mib();
        let started = Instant::now();
        let s = build(nodes, history);
        let built = started.elapsed().as_secs_f64();
        let state_mib = rss_mib() - before;
        let now = at(10_000_000);
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(schedule(&s, now));
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let snapshot = bincode::serialize(&s).map_or(0, |b| b.len()) as f64 / 1048576.0;
        println!(
            "{nodes:>7} {history:>10} {state_mib:>12.0} {:>12.1} {snapshot:>14.1} {built:>10.1}",
            times[2]
        );
        drop(s);
    }
}
