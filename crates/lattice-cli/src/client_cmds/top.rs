//! `lattice top ID`: what a job is doing now, per node — CPU cores it uses, CPU time so far,
//! resident memory, processes, the node's CPU and memory use and its GPUs — read from the
//! telemetry TSDB through `GET /api/v1/allocations/{id}/metrics` (like `sstat` / `top`).

use clap::Args;
use lattice_client::telemetry::{AllocationMetrics, GpuUse, NodeUse};
use lattice_core::AllocId;

use super::output::{out, out_json, Format};
use super::table::{format_elapsed, Align, Table};
use super::{connect, CmdError};

#[derive(Args, Debug)]
pub struct TopArgs {
    /// Allocation ID
    #[arg(value_name = "ID")]
    pub id: AllocId,
    /// Output format (`json`: the API's answer)
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table, value_name = "FORMAT")]
    pub output: Format,
}

pub async fn run(args: TopArgs, endpoint: &str) -> Result<(), CmdError> {
    let m = connect(endpoint)?.allocation_metrics(args.id).await?;
    match args.output {
        Format::Json => out_json(&m),
        Format::Table | Format::Wide => out(&render(&m)),
    }
}

/// Bytes with a binary unit: `512 B`, `3.2 MiB`, `15.5 GiB`.
pub fn bytes_text(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes.max(0.0);
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn percent(ratio: Option<f64>) -> String {
    ratio.map_or("-".into(), |r| format!("{:.0}%", r * 100.0))
}

fn ratio(used: Option<f64>, total: Option<f64>) -> Option<f64> {
    match (used, total) {
        (Some(u), Some(t)) if t > 0.0 => Some(u / t),
        _ => None,
    }
}

/// `87%,3%` per GPU in index order; `-` without GPUs.
fn gpus_text(gpus: &[GpuUse]) -> String {
    if gpus.is_empty() {
        return "-".into();
    }
    gpus.iter()
        .map(|g| percent(g.utilization))
        .collect::<Vec<_>>()
        .join(",")
}

/// `40.0 GiB/80.0 GiB` summed over the GPUs; `-` without GPUs.
fn gpu_memory_text(gpus: &[GpuUse]) -> String {
    if gpus.is_empty() {
        return "-".into();
    }
    let used: f64 = gpus.iter().filter_map(|g| g.memory_used_bytes).sum();
    let total: f64 = gpus.iter().filter_map(|g| g.memory_total_bytes).sum();
    format!("{}/{}", bytes_text(used), bytes_text(total))
}

fn row(n: &NodeUse) -> Vec<String> {
    vec![
        n.node.clone(),
        n.cpu_cores.map_or("-".into(), |c| format!("{c:.2}")),
        n.cpu_seconds
            .map_or("-".into(), |s| format_elapsed(s.max(0.0) as u64)),
        n.memory_bytes.map_or("-".into(), bytes_text),
        n.processes.map_or("-".into(), |p| format!("{p:.0}")),
        percent(n.node_cpu_utilization),
        percent(ratio(n.node_memory_used_bytes, n.node_memory_total_bytes)),
        gpus_text(&n.gpus),
        gpu_memory_text(&n.gpus),
    ]
}

/// The table: one line per node, then a line naming the source.
pub fn render(m: &AllocationMetrics) -> String {
    use Align::{Left, Right};
    let mut t = Table::new(vec![
        ("NODE", Left),
        ("CPU", Right),
        ("CPU_TIME", Right),
        ("MEMORY", Right),
        ("PROCS", Right),
        ("NODE_CPU", Right),
        ("NODE_MEM", Right),
        ("GPU_UTIL", Left),
        ("GPU_MEM", Left),
    ]);
    for n in &m.nodes {
        t.row(row(n));
    }
    format!(
        "Allocation {} ({}): CPU in cores over the last {}s, from {}\n{}",
        m.allocation_id,
        m.state,
        m.rate_window_seconds,
        m.tsdb,
        t.render()
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::super::ClientCommand;
    use super::*;

    #[test]
    fn parses() {
        match parse(&["top", "12", "-o", "json"]) {
            Ok(ClientCommand::Top(a)) => assert!(a.id == 12 && a.output == Format::Json),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["top"]).is_err());
        assert!(parse(&["top", "x"]).is_err());
    }

    #[test]
    fn renders_a_row_per_node() {
        let m = AllocationMetrics {
            allocation_id: 7,
            state: "running".into(),
            tsdb: "http://vm:8428".into(),
            rate_window_seconds: 120,
            nodes: vec![
                NodeUse {
                    node: "nid001".into(),
                    cpu_cores: Some(15.678),
                    cpu_seconds: Some(3725.0),
                    memory_bytes: Some(3.5 * 1024.0 * 1024.0 * 1024.0),
                    processes: Some(17.0),
                    node_cpu_utilization: Some(0.98),
                    node_memory_used_bytes: Some(50.0),
                    node_memory_total_bytes: Some(200.0),
                    gpus: vec![
                        GpuUse {
                            gpu: "0".into(),
                            model: "H100".into(),
                            utilization: Some(0.87),
                            memory_used_bytes: Some(40.0 * 1073741824.0),
                            memory_total_bytes: Some(80.0 * 1073741824.0),
                        },
                        GpuUse {
                            gpu: "1".into(),
                            model: "H100".into(),
                            utilization: Some(0.03),
                            memory_used_bytes: Some(0.0),
                            memory_total_bytes: Some(80.0 * 1073741824.0),
                        },
                    ],
                },
                NodeUse {
                    node: "nid002".into(),
                    cpu_cores: None,
                    cpu_seconds: None,
                    memory_bytes: None,
                    processes: None,
                    node_cpu_utilization: None,
                    node_memory_used_bytes: None,
                    node_memory_total_bytes: None,
                    gpus: vec![],
                },
            ],
        };
        assert_eq!(
            render(&m),
            "Allocation 7 (running): CPU in cores over the last 120s, from http://vm:8428\n\
             NODE      CPU  CPU_TIME   MEMORY  PROCS  NODE_CPU  NODE_MEM  GPU_UTIL  GPU_MEM\n\
             nid001  15.68   1:02:05  3.5 GiB     17       98%       25%  87%,3%    40.0 GiB/160.0 GiB\n\
             nid002      -         -        -      -         -         -  -         -\n"
        );
    }

    #[test]
    fn byte_units() {
        assert_eq!(bytes_text(0.0), "0 B");
        assert_eq!(bytes_text(1023.0), "1023 B");
        assert_eq!(bytes_text(1536.0), "1.5 KiB");
        assert_eq!(bytes_text(5.0 * 1048576.0), "5.0 MiB");
        assert_eq!(bytes_text(-1.0), "0 B");
    }
}
