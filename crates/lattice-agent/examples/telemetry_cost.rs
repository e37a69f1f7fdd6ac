//! What telemetry costs the agent: CPU time of N collection cycles (read /proc and /sys,
//! NVML when present, scan the process table for 4 running ranks), of encoding them
//! (protobuf), compressing them (block snappy) and, with `--push URL`, of sending each as one
//! remote-write request. Prints per-cycle figures and the share of one core they mean at a
//! 30 s and a 1 s interval. docs/benchmarks.md records the figures.
//!
//! `cargo run --release -p lattice-agent --example telemetry_cost -- [--cycles N] [--nodes N]
//! [--ranks N] [--push http://127.0.0.1:8428]` (defaults: 2000 cycles, 1 node, 4 ranks, no push).

use std::time::Instant;

use lattice_agent::telemetry::{
    compress, encode, Collector, GpuCollector, Group, Pusher, RankKey, RunningGroup, Sources,
    TelemetryConfig,
};

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    tv(u.user_time()) + tv(u.system_time())
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cycles: usize = arg(&args, "--cycles").map_or(2000, |v| v.parse().expect("--cycles N"));
    let nodes: usize = arg(&args, "--nodes").map_or(1, |v| v.parse().expect("--nodes N"));
    let ranks: usize = arg(&args, "--ranks").map_or(4, |v| v.parse().expect("--ranks N"));
    let push = arg(&args, "--push");

    let node_ids: Vec<String> = (1..=nodes).map(|i| format!("bench-{i}")).collect();
    let mut collector = Collector::new(node_ids.clone(), Sources::default(), GpuCollector::open());
    let me = nix::unistd::getpgrp().as_raw();
    // This process's own group and three that do not exist: the process table is scanned
    // once per cycle whatever the number of ranks.
    let running: Vec<RunningGroup> = [me, 999_991, 999_992, 999_993]
        .iter()
        .cycle()
        .take(ranks)
        .enumerate()
        .map(|(i, pgid)| RunningGroup {
            key: RankKey::new(i as u64 + 1, node_ids[0].clone()),
            group: Group {
                pgid: *pgid,
                tenant: "bench".into(),
                vcluster: "default".into(),
            },
        })
        .collect();
    let pusher = push.as_ref().map(|url| {
        let cfg = TelemetryConfig {
            tsdb_endpoint: Some(url.clone()),
            ..TelemetryConfig::default()
        };
        Pusher::new(&cfg).expect("client").expect("enabled")
    });

    let (mut t_collect, mut t_encode, mut t_compress, mut t_push) = (0.0, 0.0, 0.0, 0.0);
    let (mut samples, mut pb_bytes, mut z_bytes) = (0usize, 0usize, 0usize);
    let wall = Instant::now();
    for i in 0..cycles {
        let c0 = cpu_seconds();
        let batch = collector.collect(&running, 1_700_000_000_000 + i as i64 * 1000);
        let c1 = cpu_seconds();
        let pb = encode(&batch);
        let c2 = cpu_seconds();
        let z = compress(&pb).expect("snappy");
        let c3 = cpu_seconds();
        if let Some(p) = &pusher {
            // The pusher compresses again; its cost is counted here, minus nothing.
            p.push(&pb).await.expect("push");
        }
        let c4 = cpu_seconds();
        t_collect += c1 - c0;
        t_encode += c2 - c1;
        t_compress += c3 - c2;
        t_push += c4 - c3;
        samples = batch.len();
        pb_bytes = pb.len();
        z_bytes = z.len();
    }
    let n = cycles as f64;
    let per_cycle = (t_collect + t_encode + t_compress + t_push) / n;
    let processes = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count()
        })
        .unwrap_or(0);
    println!(
        "cycles: {cycles}, presented nodes: {nodes}, running ranks: {ranks}, processes on the host: {processes}, wall {:.1}s",
        wall.elapsed().as_secs_f64()
    );
    println!("samples per cycle: {samples}; request {pb_bytes} B protobuf, {z_bytes} B snappy");
    println!(
        "CPU per cycle (µs): collect {:.0}, encode {:.0}, compress {:.0}, push {:.0}; total {:.0}",
        t_collect / n * 1e6,
        t_encode / n * 1e6,
        t_compress / n * 1e6,
        t_push / n * 1e6,
        per_cycle * 1e6
    );
    println!(
        "share of one core: {:.4}% at a 30 s interval, {:.3}% at 1 s",
        per_cycle / 30.0 * 100.0,
        per_cycle / 1.0 * 100.0
    );
}
