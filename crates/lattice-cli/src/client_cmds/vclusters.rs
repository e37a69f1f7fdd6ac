//! `lattice vclusters`: like `sinfo -s` / `scontrol show partition`. Lists vClusters with their
//! policy, preemption, nodes and queue; `vclusters show NAME` shows one; `vclusters create NAME ...` and
//! `vclusters set NAME ...` change them (administrators).

use clap::{Args, Subcommand};
use lattice_client::VClusterInfo;
use lattice_core::vcluster::{Policy, VClusterRequest, WeightsRequest};
use lattice_core::views::VClusterView;

use super::duration::parse_duration;
use super::output::{out, out_json, Format};
use super::table::{format_elapsed, format_time, Align, Table};
use super::{connect, CmdError};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct VClustersArgs {
    #[command(subcommand)]
    pub action: Option<VClustersAction>,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table, value_name = "FORMAT")]
    pub output: Format,
}

#[derive(Subcommand, Debug)]
pub enum VClustersAction {
    /// Show one vCluster in detail.
    Show {
        #[arg(value_name = "VCLUSTER")]
        name: String,
        /// Output format (`json`; anything else shows `key: value` lines)
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table, value_name = "FORMAT")]
        output: Format,
    },
    /// Create a vCluster (unset settings take their defaults).
    Create {
        #[arg(value_name = "VCLUSTER")]
        name: String,
        #[command(flatten)]
        settings: VClusterSettings,
    },
    /// Change a vCluster (unset settings stay as they are).
    Set {
        #[arg(value_name = "VCLUSTER")]
        name: String,
        #[command(flatten)]
        settings: VClusterSettings,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyArg {
    /// EASY backfill (the default)
    Backfill,
    /// Strict order
    Fifo,
}

#[derive(Args, Debug, Default)]
pub struct VClusterSettings {
    /// Nodes with all of these features belong to it (comma-separated; `none` clears)
    #[arg(long, value_name = "F1,F2|none")]
    pub features: Option<String>,
    /// These nodes belong to it (comma-separated; `none` clears)
    #[arg(long, value_name = "N1,N2|none")]
    pub nodes: Option<String>,
    /// Scheduling policy
    #[arg(long, value_enum, value_name = "POLICY")]
    pub policy: Option<PolicyArg>,
    /// Cycle interval: milliseconds, or 500ms, 2s, 1m
    #[arg(long, value_name = "INTERVAL", value_parser = interval_ms)]
    pub cycle_interval: Option<i64>,
    /// Score weight, repeatable: priority=N, age=N, fairshare=N, topology=N
    #[arg(long = "weight", value_name = "TERM=N")]
    pub weights: Vec<String>,
    /// Half-life of fair-share usage: 7d, 12h, 90m, ...
    #[arg(long, value_name = "DURATION")]
    pub half_life: Option<String>,
    /// Whether higher-priority pending work may preempt running work here [default: on]
    #[arg(long, value_name = "on|off", value_parser = clap::builder::BoolishValueParser::new())]
    pub preemption: Option<bool>,
}

/// `500`, `500ms`, `2s`, `1m`: milliseconds.
fn interval_ms(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if let Some(ms) = t.strip_suffix("ms") {
        return ms
            .parse()
            .map_err(|_| "expected milliseconds, or 500ms, 2s, 1m".into());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) && !t.is_empty() {
        return t.parse().map_err(|_| "too large".into());
    }
    parse_duration(t).map(|s| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))
}

fn list(text: &str) -> Option<Vec<String>> {
    if text.eq_ignore_ascii_case("none") || text.trim().is_empty() {
        None
    } else {
        Some(text.split(',').map(|s| s.trim().to_string()).collect())
    }
}

impl VClusterSettings {
    fn request(&self, name: &str) -> Result<VClusterRequest, CmdError> {
        let mut w = WeightsRequest::default();
        for kv in &self.weights {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                CmdError::Usage(format!("invalid --weight {kv:?}: expected TERM=N"))
            })?;
            let n: i64 = v.parse().map_err(|_| {
                CmdError::Usage(format!("invalid --weight {kv:?}: {v:?} is not a number"))
            })?;
            let slot = match k {
                "priority" => &mut w.priority,
                "age" => &mut w.age,
                "fairshare" => &mut w.fairshare,
                "topology" => &mut w.topology,
                other => {
                    return Err(CmdError::Usage(format!(
                        "invalid --weight {kv:?}: {other:?} is not priority, age, fairshare or topology"
                    )))
                }
            };
            *slot = Some(n);
        }
        let half_life = match &self.half_life {
            Some(h) => Some(
                parse_duration(h)
                    .map(|s| i64::try_from(s).unwrap_or(i64::MAX))
                    .map_err(|e| CmdError::Usage(format!("invalid --half-life {h:?}: {e}")))?,
            ),
            None => None,
        };
        Ok(VClusterRequest {
            name: Some(name.to_string()),
            features: self.features.as_deref().map(list),
            nodes: self.nodes.as_deref().map(list),
            policy: self.policy.map(|p| match p {
                PolicyArg::Backfill => Policy::Backfill,
                PolicyArg::Fifo => Policy::Fifo,
            }),
            cycle_interval_ms: self.cycle_interval,
            weights: (!self.weights.is_empty()).then_some(w),
            fairshare_half_life_seconds: half_life,
            preemption: self.preemption,
        })
    }
}

pub async fn run(args: VClustersArgs, endpoint: &str) -> Result<(), CmdError> {
    let client = connect(endpoint)?;
    match args.action {
        None => {
            let vcs = client.vclusters().await?;
            match args.output {
                Format::Json => out_json(&vcs),
                Format::Table | Format::Wide => out(&table(&vcs)),
            }
        }
        Some(VClustersAction::Show { name, output }) => {
            let v = client.vcluster(&name).await?;
            match output {
                Format::Json => out_json(&v),
                Format::Table | Format::Wide => out(&detail(&v)),
            }
        }
        Some(VClustersAction::Create { name, settings }) => {
            let v = client.create_vcluster(&settings.request(&name)?).await?;
            out(&format!(
                "Created vCluster {} ({} nodes)\n",
                v.name, v.node_count
            ))
        }
        Some(VClustersAction::Set { name, settings }) => {
            let v = client
                .update_vcluster(&name, &settings.request(&name)?)
                .await?;
            out(&format!(
                "Updated vCluster {} ({} nodes)\n",
                v.name, v.node_count
            ))
        }
    }
}

fn selector(v: &VClusterView) -> String {
    let mut parts = Vec::new();
    if !v.features.is_empty() {
        parts.push(format!("features={}", v.features.join(",")));
    }
    if !v.nodes.is_empty() {
        parts.push(format!("nodes={}", v.nodes.join(",")));
    }
    if parts.is_empty() {
        "all nodes".into()
    } else {
        parts.join(" ")
    }
}

fn weights(v: &VClusterView) -> String {
    let w = v.weights;
    format!(
        "priority={} age={} fairshare={} topology={}",
        w.priority, w.age, w.fairshare, w.topology
    )
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

pub fn table(vcs: &[VClusterInfo]) -> String {
    use Align::{Left, Right};
    let mut t = Table::new(vec![
        ("VCLUSTER", Left),
        ("POLICY", Left),
        ("PREEMPT", Left),
        ("NODES", Right),
        ("FREE", Right),
        ("PENDING", Right),
        ("INTERVAL", Right),
        ("SELECTOR", Left),
    ]);
    for v in vcs {
        t.row(vec![
            v.name.clone(),
            v.policy.as_str().into(),
            on_off(v.preemption).into(),
            v.node_count.to_string(),
            v.free_nodes.to_string(),
            v.pending_allocations.to_string(),
            format!("{}ms", v.cycle_interval_ms),
            selector(v),
        ]);
    }
    t.render()
}

pub fn detail(v: &VClusterInfo) -> String {
    let fields = [
        ("name", v.name.clone()),
        ("policy", v.policy.as_str().to_string()),
        ("preemption", on_off(v.preemption).to_string()),
        ("selector", selector(v)),
        ("nodes", format!("{} ({} free)", v.node_count, v.free_nodes)),
        ("pending", v.pending_allocations.to_string()),
        ("cycle_interval", format!("{} ms", v.cycle_interval_ms)),
        ("weights", weights(v)),
        (
            "fairshare_half_life",
            format_elapsed(v.fairshare_half_life_seconds),
        ),
        ("created_at", format_time(v.created_at)),
        ("updated_at", format_time(v.updated_at)),
    ];
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    fields
        .iter()
        .map(|(k, val)| format!("{:<width$} {val}\n", format!("{k}:")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::super::ClientCommand;
    use super::*;

    fn settings(args: &[&str]) -> VClusterSettings {
        let all = [&["vclusters", "create", "gpu"], args].concat();
        match parse(&all) {
            Ok(ClientCommand::Vclusters(VClustersArgs {
                action: Some(VClustersAction::Create { settings, .. }),
                ..
            })) => settings,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn settings_become_a_request() {
        let r = settings(&[
            "--features",
            "gpu,ib",
            "--policy",
            "fifo",
            "--cycle-interval",
            "2s",
            "--weight",
            "fairshare=900",
            "--half-life",
            "1d",
        ])
        .request("gpu")
        .unwrap();
        assert_eq!(r.features, Some(Some(vec!["gpu".into(), "ib".into()])));
        assert_eq!(r.nodes, None);
        assert_eq!(r.policy, Some(Policy::Fifo));
        assert_eq!(r.cycle_interval_ms, Some(2000));
        assert_eq!(r.weights.unwrap().fairshare, Some(900));
        assert_eq!(r.fairshare_half_life_seconds, Some(86400));
        assert_eq!(interval_ms("750"), Ok(750));
        assert_eq!(interval_ms("750ms"), Ok(750));
        assert!(settings(&["--weight", "speed=3"]).request("gpu").is_err());
        assert!(parse(&["vclusters", "create", "g", "--policy", "lifo"]).is_err());
        let cleared = settings(&["--nodes", "none"]).request("gpu").unwrap();
        assert_eq!(cleared.nodes, Some(None));
        assert_eq!(cleared.preemption, None, "unset: unchanged");
    }

    #[test]
    fn preemption_is_switched_on_or_off() {
        let r = |args: &[&str]| settings(args).request("gpu").unwrap().preemption;
        assert_eq!(r(&["--preemption", "off"]), Some(false));
        assert_eq!(r(&["--preemption=on"]), Some(true));
        assert_eq!(r(&["--preemption", "no"]), Some(false));
        assert!(parse(&["vclusters", "create", "g", "--preemption", "maybe"]).is_err());
        assert!(parse(&["vclusters", "create", "g", "--preemption"]).is_err());
        let set = parse(&["vclusters", "set", "gpu", "--preemption", "off"]);
        assert!(
            matches!(
                set,
                Ok(ClientCommand::Vclusters(VClustersArgs {
                    action: Some(VClustersAction::Set { ref settings, .. }),
                    ..
                })) if settings.preemption == Some(false)
            ),
            "{set:?}"
        );
    }

    fn view(name: &str, preemption: bool) -> VClusterInfo {
        VClusterView {
            name: name.into(),
            features: vec![],
            nodes: vec![],
            policy: Policy::Backfill,
            cycle_interval_ms: 500,
            weights: Default::default(),
            fairshare_half_life_seconds: 3600,
            preemption,
            created_at: Default::default(),
            updated_at: Default::default(),
            node_count: 4,
            free_nodes: 1,
            pending_allocations: 2,
        }
    }

    #[test]
    fn listings_show_preemption() {
        let text = table(&[view("default", true), view("batch", false)]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("VCLUSTER  POLICY    PREEMPT  NODES"),
            "{text}"
        );
        assert!(lines[1].starts_with("default   backfill  on "), "{text}");
        assert!(lines[2].starts_with("batch     backfill  off "), "{text}");
        assert!(detail(&view("batch", false)).contains("preemption:          off\n"));
    }
}
