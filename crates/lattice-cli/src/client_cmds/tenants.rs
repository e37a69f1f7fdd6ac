//! `lattice tenants`: like `sacctmgr show account`. Lists tenants with their share, quotas,
//! what they run now and their decayed fair-share usage; `tenants show NAME` shows one;
//! `tenants create NAME ...` and `tenants set NAME ...` change them (administrators).

use clap::{Args, Subcommand};
use lattice_core::tenant::TenantRequest;
use lattice_core::views::TenantView;

use super::output::{out, out_json, Format};
use super::table::{format_time, Align, Table};
use super::{connect, CmdError};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TenantsArgs {
    #[command(subcommand)]
    pub action: Option<TenantsAction>,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table, value_name = "FORMAT")]
    pub output: Format,
}

#[derive(Subcommand, Debug)]
pub enum TenantsAction {
    /// Show one tenant in detail.
    Show {
        #[arg(value_name = "TENANT")]
        name: String,
        /// Output format (`json`; anything else shows `key: value` lines)
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table, value_name = "FORMAT")]
        output: Format,
    },
    /// Create a tenant (unset settings take their defaults: share 1, no quotas).
    Create {
        #[arg(value_name = "TENANT")]
        name: String,
        #[command(flatten)]
        settings: TenantSettings,
    },
    /// Change a tenant's settings (unset ones stay as they are).
    Set {
        #[arg(value_name = "TENANT")]
        name: String,
        #[command(flatten)]
        settings: TenantSettings,
    },
}

#[derive(Args, Debug, Default)]
pub struct TenantSettings {
    /// Fair-share weight: the tenant's target fraction of a vCluster is its share over the
    /// shares of the tenants active there
    #[arg(long, value_name = "N")]
    pub share: Option<i64>,
    /// Most nodes its running allocations may hold (`none`: no limit); more work stays
    /// pending with reason `quota`
    #[arg(long, value_name = "N|none", value_parser = limit)]
    pub max_nodes: Option<Limit>,
    /// Most allocations it may run at once (`none`: no limit)
    #[arg(long, value_name = "N|none", value_parser = limit)]
    pub max_running: Option<Limit>,
    /// Whether its work is audited and runs only on nodes its users claim (docs/audit.md)
    #[arg(long, value_name = "true|false")]
    pub sensitive: Option<bool>,
}

/// A quota value: a number, or `none` for no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(pub Option<i64>);

fn limit(text: &str) -> Result<Limit, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(Limit(None));
    }
    text.parse::<i64>()
        .map(|n| Limit(Some(n)))
        .map_err(|_| "expected a number or `none`".into())
}

impl TenantSettings {
    fn request(&self, name: &str) -> TenantRequest {
        TenantRequest {
            name: Some(name.to_string()),
            share: self.share,
            max_nodes: self.max_nodes.map(|l| l.0),
            max_running: self.max_running.map(|l| l.0),
            sensitive: self.sensitive,
        }
    }
}

pub async fn run(args: TenantsArgs, endpoint: &str) -> Result<(), CmdError> {
    let client = connect(endpoint)?;
    match args.action {
        None => {
            let tenants = client.tenants().await?;
            match args.output {
                Format::Json => out_json(&tenants),
                Format::Table | Format::Wide => out(&table(&tenants)),
            }
        }
        Some(TenantsAction::Show { name, output }) => {
            let t = client.tenant(&name).await?;
            match output {
                Format::Json => out_json(&t),
                Format::Table | Format::Wide => out(&detail(&t)),
            }
        }
        Some(TenantsAction::Create { name, settings }) => {
            let t = client.create_tenant(&settings.request(&name)).await?;
            out(&format!("Created tenant {}\n", t.name))
        }
        Some(TenantsAction::Set { name, settings }) => {
            let t = client
                .update_tenant(&name, &settings.request(&name))
                .await?;
            out(&format!("Updated tenant {}\n", t.name))
        }
    }
}

fn quota(q: Option<u32>) -> String {
    q.map_or("-".into(), |n| n.to_string())
}

/// Usage over every vCluster, in node-hours.
fn usage_hours(t: &TenantView) -> String {
    let secs: f64 = t.usage_node_seconds.values().sum();
    format!("{:.1}", secs / 3600.0)
}

pub fn table(tenants: &[TenantView]) -> String {
    use Align::{Left, Right};
    let mut t = Table::new(vec![
        ("TENANT", Left),
        ("SHARE", Right),
        ("RUNNING", Right),
        ("NODES", Right),
        ("MAX_RUNNING", Right),
        ("MAX_NODES", Right),
        ("USAGE(NODE-H)", Right),
        ("SENSITIVE", Left),
    ]);
    for x in tenants {
        t.row(vec![
            x.name.clone(),
            x.share.to_string(),
            x.running_allocations.to_string(),
            x.running_nodes.to_string(),
            quota(x.max_running),
            quota(x.max_nodes),
            usage_hours(x),
            if x.sensitive { "yes" } else { "no" }.into(),
        ]);
    }
    t.render()
}

pub fn detail(x: &TenantView) -> String {
    let usage: Vec<String> = x
        .usage_node_seconds
        .iter()
        .map(|(v, s)| format!("{v}={:.1}", s / 3600.0))
        .collect();
    let fields = [
        ("name", x.name.clone()),
        ("share", x.share.to_string()),
        ("max_nodes", quota(x.max_nodes)),
        ("max_running", quota(x.max_running)),
        ("sensitive", x.sensitive.to_string()),
        ("running_allocations", x.running_allocations.to_string()),
        ("running_nodes", x.running_nodes.to_string()),
        (
            "usage_node_hours",
            if usage.is_empty() {
                "-".into()
            } else {
                usage.join(" ")
            },
        ),
        ("created_at", format_time(x.created_at)),
        ("updated_at", format_time(x.updated_at)),
    ];
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    fields
        .iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use lattice_core::Timestamp;

    use super::super::tests::parse;
    use super::super::ClientCommand;
    use super::*;

    #[test]
    fn settings_become_a_request() {
        let Ok(ClientCommand::Tenants(a)) = parse(&[
            "tenants",
            "set",
            "phys",
            "--share",
            "3",
            "--max-nodes",
            "none",
            "--max-running",
            "4",
        ]) else {
            panic!()
        };
        let Some(TenantsAction::Set { name, settings }) = a.action else {
            panic!()
        };
        let r = settings.request(&name);
        assert_eq!(r.share, Some(3));
        assert_eq!(r.max_nodes, Some(None));
        assert_eq!(r.max_running, Some(Some(4)));
        assert_eq!(r.sensitive, None);
        // Absent settings are not sent at all (so they keep their value).
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "phys", "share": 3, "max_nodes": null, "max_running": 4})
        );
        assert!(parse(&["tenants", "create", "x", "--max-nodes", "lots"]).is_err());
        assert!(matches!(parse(&["tenants"]), Ok(ClientCommand::Tenants(_))));
    }

    #[test]
    fn table_shows_quotas_and_usage() {
        let t = TenantView {
            name: "phys".into(),
            share: 3,
            max_nodes: Some(10),
            max_running: None,
            sensitive: false,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            running_nodes: 4,
            running_allocations: 2,
            usage_node_seconds: BTreeMap::from([("default".into(), 7200.0)]),
        };
        assert_eq!(
            table(std::slice::from_ref(&t)),
            "TENANT  SHARE  RUNNING  NODES  MAX_RUNNING  MAX_NODES  USAGE(NODE-H)  SENSITIVE\n\
             phys        3        2      4            -         10            2.0  no\n"
        );
        assert!(detail(&t).contains("usage_node_hours:    default=2.0\n"));
    }
}
