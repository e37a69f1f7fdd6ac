//! How nodes are shown: the sinfo-like table of `lattice nodes` (with current utilization in
//! `-o wide`) and the `key: value` detail of `lattice nodes show ID`. Pure functions of the nodes and the local clock.

use std::collections::BTreeMap;

use lattice_core::{GpuInfo, Node, Timestamp};

use super::output::one_line;
use super::table::{format_age, format_time, Align, Table};

/// Memory in GiB: one decimal below 100 GiB (`15.5 GiB`, `64 GiB`), whole above (`504 GiB`).
pub fn memory_text(bytes: u64) -> String {
    let gib = bytes as f64 / f64::from(1u32 << 30);
    let text = if gib >= 100.0 {
        format!("{gib:.0}")
    } else {
        format!("{gib:.1}")
    };
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} GiB")
}

/// `2xH100`, `4` when the model is unknown, `-` without GPUs.
pub fn gpus_text(g: &GpuInfo) -> String {
    match (g.count, g.model.as_deref().map(short_model)) {
        (0, _) => "-".into(),
        (n, Some(m)) if !m.is_empty() => format!("{n}x{m}"),
        (n, _) => n.to_string(),
    }
}

/// A GPU model without vendor words and with its name cut after the first word that has a digit:
/// `NVIDIA H100 80GB HBM3` is `H100`, `NVIDIA GeForce RTX 4090` is `RTX 4090`.
fn short_model(model: &str) -> String {
    const VENDOR: [&str; 6] = ["nvidia", "tesla", "geforce", "amd", "instinct", "radeon"];
    let mut kept = Vec::new();
    for word in model.split_whitespace() {
        if VENDOR.contains(&word.to_ascii_lowercase().as_str()) {
            continue;
        }
        kept.push(word);
        if word.chars().any(|c| c.is_ascii_digit()) {
            break;
        }
    }
    kept.join(" ")
}

fn join_or_dash<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

/// Current utilization of one node (from telemetry), as ratios 0-1.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Utilization {
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub gpu: Option<f64>,
}

fn percent(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{:.0}%", r * 100.0))
}

/// The node table; `wide` adds HOSTNAME, LAST_HEARTBEAT and REASON.
pub fn table(nodes: &[Node], now: Timestamp, wide: bool) -> String {
    render(nodes, now, wide, None)
}

/// The wide node table with CPU%, MEM% and GPU% (current utilization; `-` where telemetry
/// has none) after GPUS.
pub fn wide_table(nodes: &[Node], now: Timestamp, util: &BTreeMap<String, Utilization>) -> String {
    render(nodes, now, true, Some(util))
}

fn render(
    nodes: &[Node],
    now: Timestamp,
    wide: bool,
    util: Option<&BTreeMap<String, Utilization>>,
) -> String {
    use Align::{Left, Right};
    let mut cols = vec![("NODE", Left)];
    if wide {
        cols.push(("HOSTNAME", Left));
    }
    cols.extend([
        ("STATE", Left),
        ("CPUS", Right),
        ("MEMORY", Right),
        ("GPUS", Left),
    ]);
    if util.is_some() {
        cols.extend([("CPU%", Right), ("MEM%", Right), ("GPU%", Right)]);
    }
    cols.extend([("ALLOCATIONS", Left), ("FEATURES", Left)]);
    if wide {
        cols.extend([("LAST_HEARTBEAT", Left), ("REASON", Left)]);
    }
    let mut t = Table::new(cols);
    for n in nodes {
        let mut row = vec![n.id.clone()];
        if wide {
            row.push(n.hostname.clone());
        }
        row.extend([
            n.state.as_str().to_string(),
            n.cpus.to_string(),
            memory_text(n.memory_bytes),
            gpus_text(&n.gpus),
        ]);
        if let Some(util) = util {
            let u = util.get(&n.id).copied().unwrap_or_default();
            row.extend([percent(u.cpu), percent(u.memory), percent(u.gpu)]);
        }
        row.extend([join_or_dash(&n.allocations), join_or_dash(&n.features)]);
        if wide {
            row.push(
                n.last_heartbeat
                    .map_or("never".into(), |t| format_age(t, now)),
            );
            row.push(n.state_reason.clone().unwrap_or_default());
        }
        t.row(row);
    }
    t.render()
}

/// Every field of one node as aligned `key: value` lines.
pub fn detail(n: &Node, now: Timestamp) -> String {
    let heartbeat = n.last_heartbeat.map_or("never".to_string(), |t| {
        format!("{} ({})", format_time(t), format_age(t, now))
    });
    let fields: Vec<(&str, String)> = vec![
        ("id", n.id.clone()),
        ("hostname", n.hostname.clone()),
        ("state", n.state.as_str().to_string()),
        (
            "reason",
            n.state_reason.clone().unwrap_or_else(|| "-".into()),
        ),
        ("cpus", n.cpus.to_string()),
        (
            "memory",
            format!("{} ({} bytes)", memory_text(n.memory_bytes), n.memory_bytes),
        ),
        ("gpus", n.gpus.count.to_string()),
        (
            "gpu_model",
            n.gpus.model.clone().unwrap_or_else(|| "-".into()),
        ),
        ("features", join_or_dash(&n.features)),
        ("allocations", join_or_dash(&n.allocations)),
        ("drain", n.drain.to_string()),
        ("down", n.down.to_string()),
        ("agent_url", n.agent_url.clone()),
        ("registered_at", format_time(n.registered_at)),
        ("last_heartbeat", heartbeat),
        ("work_revision", n.work_revision.to_string()),
    ];
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    fields
        .into_iter()
        .map(|(k, v)| format!("{:<width$} {}\n", format!("{k}:"), one_line(&v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use lattice_core::{NodeRegistration, NodeState};

    use super::*;

    const T0: u64 = 1_772_366_400_000;

    fn node(id: &str, gpus: u32, model: Option<&str>) -> Node {
        let reg = NodeRegistration {
            id: id.into(),
            hostname: format!("{id}.example.org"),
            cpus: 128,
            memory_bytes: 512 << 30,
            gpus: GpuInfo {
                count: gpus,
                model: model.map(str::to_string),
            },
            features: vec![],
            agent_url: "http://10.0.0.1:9090".into(),
            agent_token: None,
        };
        Node::from_registration(reg, Timestamp::from_millis(T0), 1)
    }

    fn sample() -> Vec<Node> {
        let mut a = node("nid001", 4, Some("NVIDIA H100 80GB HBM3"));
        a.allocations = [12, 15].into();
        a.features = vec!["ib".into(), "nvme".into()];
        let mut b = node("dev-1", 0, None);
        b.cpus = 8;
        b.memory_bytes = 15 * (1 << 30) + (1 << 29);
        b.state = NodeState::Draining;
        b.drain = true;
        b.state_reason = Some("bad DIMM".into());
        vec![a, b]
    }

    #[test]
    fn sinfo_like_table() {
        assert_eq!(
            table(&sample(), Timestamp::from_millis(T0 + 4000), false),
            "NODE    STATE     CPUS    MEMORY  GPUS    ALLOCATIONS  FEATURES\n\
             nid001  ready      128   512 GiB  4xH100  12,15        ib,nvme\n\
             dev-1   draining     8  15.5 GiB  -       -            -\n"
        );
    }

    #[test]
    fn wide_table_adds_columns() {
        let text = table(&sample(), Timestamp::from_millis(T0 + 4000), true);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("NODE    HOSTNAME            STATE"),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].ends_with("FEATURES  LAST_HEARTBEAT  REASON"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].ends_with("ib,nvme   4s ago          -"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].ends_with("4s ago          bad DIMM"),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn wide_table_with_utilization() {
        let util = BTreeMap::from([(
            "nid001".to_string(),
            Utilization {
                cpu: Some(0.125),
                memory: Some(0.5),
                gpu: None,
            },
        )]);
        let text = wide_table(&sample(), Timestamp::from_millis(T0 + 4000), &util);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("GPUS    CPU%  MEM%  GPU%  ALLOCATIONS"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains("4xH100   12%   50%     -  12,15"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].contains("-          -     -     -  -"),
            "{}",
            lines[2]
        );
        assert!(lines[0].ends_with("LAST_HEARTBEAT  REASON"), "{}", lines[0]);
    }

    #[test]
    fn gpu_and_memory_cells() {
        let g = |count, model: Option<&str>| {
            gpus_text(&GpuInfo {
                count,
                model: model.map(str::to_string),
            })
        };
        assert_eq!(g(2, Some("NVIDIA H100 80GB HBM3")), "2xH100");
        assert_eq!(g(8, Some("NVIDIA A100-SXM4-80GB")), "8xA100-SXM4-80GB");
        assert_eq!(g(1, Some("NVIDIA GeForce RTX 4090")), "1xRTX 4090");
        assert_eq!(g(4, Some("Tesla V100-SXM2-16GB")), "4xV100-SXM2-16GB");
        assert_eq!(g(4, None), "4");
        assert_eq!(g(4, Some("NVIDIA")), "4");
        assert_eq!(g(0, Some("NVIDIA H100")), "-");
        assert_eq!(memory_text(0), "0 GiB");
        assert_eq!(memory_text(64 << 30), "64 GiB");
        assert_eq!(memory_text(1 << 29), "0.5 GiB");
        assert_eq!(memory_text((503 << 30) + (7 << 27)), "504 GiB");
    }

    #[test]
    fn detail_shows_every_field() {
        let text = detail(&sample()[1], Timestamp::from_millis(T0 + 90_000));
        for want in [
            "id:             dev-1\n",
            "state:          draining\n",
            "reason:         bad DIMM\n",
            "memory:         15.5 GiB (16642998272 bytes)\n",
            "gpu_model:      -\n",
            "drain:          true\n",
            "last_heartbeat: 2026-03-01T12:00:00Z (90s ago)\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
