//! `lattice claim`, `lattice release --tenant` and `lattice claims`: exclusive nodes for a
//! sensitive tenant's user. A claim is immediate or refused (the error names each
//! conflicting node's holder); a release hands the nodes to their agents for the wipe, after
//! which they return to the pool. (`lattice release ID...` without `--tenant` still
//! releases held allocations, like `scontrol release`.)

use clap::Args;
use lattice_client::ClaimRequest;
use lattice_core::{JobRef, Timestamp};
use serde_json::Value;

use super::hold::{self, HoldArgs};
use super::output::{out, out_json};
use super::table::{format_time, Align, Table};
use super::targets::job_ref;
use super::{connect, CmdError};

#[derive(Args, Debug)]
pub struct ClaimArgs {
    /// The sensitive tenant the nodes are claimed for.
    #[arg(long)]
    pub tenant: String,
    /// How many idle nodes to claim.
    #[arg(
        long,
        conflicts_with = "node_ids",
        required_unless_present = "node_ids"
    )]
    pub nodes: Option<u32>,
    /// Exactly these nodes (comma-separated or repeated).
    #[arg(long = "node-ids", value_delimiter = ',')]
    pub node_ids: Vec<String>,
    /// Admins: claim on behalf of this user.
    #[arg(long)]
    pub user: Option<String>,
    #[arg(short = 'o', long, default_value = "table", value_parser = ["table", "json"])]
    pub output: String,
}

#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// Held allocations to release (N, or N_I for task I of array N). Not with --tenant.
    #[arg(value_name = "ID", value_parser = job_ref, conflicts_with = "tenant")]
    pub ids: Vec<JobRef>,
    /// Release claimed nodes of this sensitive tenant (every node you claimed for it, or
    /// those --node-ids names); their agents wipe them before they return to the pool.
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long = "node-ids", value_delimiter = ',', requires = "tenant")]
    pub node_ids: Vec<String>,
    /// Admins, operators and the tenant's admins: release this user's claims.
    #[arg(long, requires = "tenant")]
    pub user: Option<String>,
    #[arg(short = 'o', long, default_value = "table", value_parser = ["table", "json"])]
    pub output: String,
}

#[derive(Args, Debug)]
pub struct ClaimsArgs {
    /// Only this tenant's claims.
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(short = 'o', long, default_value = "table", value_parser = ["table", "json"])]
    pub output: String,
}

pub async fn claim(args: ClaimArgs, endpoint: &str) -> Result<(), CmdError> {
    let client = connect(endpoint)?;
    let v = client
        .claim_nodes(&ClaimRequest {
            tenant: args.tenant.clone(),
            count: args.nodes,
            node_ids: args.node_ids,
            user: args.user,
        })
        .await?;
    if args.output == "json" {
        return out_json(&v);
    }
    let ids = node_ids(&v);
    out(&format!(
        "Claimed {} node(s) for tenant {}: {}\n",
        ids.len(),
        args.tenant,
        ids.join(", ")
    ))
}

pub async fn release(args: ReleaseArgs, endpoint: &str) -> Result<(), CmdError> {
    let Some(tenant) = args.tenant else {
        if args.ids.is_empty() {
            return Err(CmdError::Usage(
                "name held allocations to release, or --tenant T to release claimed nodes".into(),
            ));
        }
        return hold::run(HoldArgs { ids: args.ids }, endpoint, false).await;
    };
    let client = connect(endpoint)?;
    let v = client
        .release_nodes(&tenant, &args.node_ids, args.user.as_deref())
        .await?;
    if args.output == "json" {
        return out_json(&v);
    }
    let ids = node_ids(&v);
    out(&format!(
        "Released {} node(s) of tenant {}: {} (wiping; they return to the pool when the wipe succeeds)\n",
        ids.len(),
        tenant,
        ids.join(", ")
    ))
}

pub async fn list(args: ClaimsArgs, endpoint: &str) -> Result<(), CmdError> {
    let v = connect(endpoint)?
        .list_claims(args.tenant.as_deref())
        .await?;
    if args.output == "json" {
        return out_json(&v);
    }
    out(&claims_table(&v["claims"]))
}

fn node_ids(v: &Value) -> Vec<String> {
    v["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["id"].as_str().map(String::from))
        .collect()
}

fn claims_table(claims: &Value) -> String {
    let mut t = Table::new(vec![
        ("NODE", Align::Left),
        ("TENANT", Align::Left),
        ("USER", Align::Left),
        ("STATE", Align::Left),
        ("SINCE", Align::Left),
        ("ALLOCATIONS", Align::Left),
    ]);
    for c in claims.as_array().into_iter().flatten() {
        let s = |k: &str| c[k].as_str().unwrap_or("-").to_string();
        let allocs: Vec<String> = c["allocations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a.to_string())
            .collect();
        t.row(vec![
            s("node"),
            s("tenant"),
            s("user"),
            s("state"),
            c["since"]
                .as_str()
                .and_then(Timestamp::parse)
                .map_or_else(|| "-".into(), format_time),
            if allocs.is_empty() {
                "-".into()
            } else {
                allocs.join(",")
            },
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::super::ClientCommand;
    use serde_json::json;

    #[test]
    fn claim_takes_a_count_or_node_ids_not_both() {
        match parse(&["claim", "--tenant", "clinic", "--nodes", "4"]) {
            Ok(ClientCommand::Claim(a)) => assert_eq!(a.nodes, Some(4)),
            other => panic!("{other:?}"),
        }
        match parse(&["claim", "--tenant", "clinic", "--node-ids", "n1,n2"]) {
            Ok(ClientCommand::Claim(a)) => assert_eq!(a.node_ids, ["n1", "n2"]),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["claim", "--tenant", "clinic"]).is_err());
        assert!(parse(&["claim", "--tenant", "c", "--nodes", "1", "--node-ids", "n1"]).is_err());
        assert!(parse(&["claim", "--nodes", "1"]).is_err());
    }

    #[test]
    fn release_is_for_held_allocations_or_claimed_nodes() {
        match parse(&["release", "3"]) {
            Ok(ClientCommand::Release(a)) => assert!(a.tenant.is_none() && a.ids.len() == 1),
            other => panic!("{other:?}"),
        }
        match parse(&["release", "--tenant", "clinic", "--node-ids", "n1"]) {
            Ok(ClientCommand::Release(a)) => assert_eq!(a.node_ids, ["n1"]),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["release", "3", "--tenant", "clinic"]).is_err());
        assert!(parse(&["release", "--node-ids", "n1"]).is_err());
    }

    #[test]
    fn the_claims_table_shows_holder_and_state() {
        let t = super::claims_table(&json!([
            {"node": "n1", "tenant": "clinic", "user": "alice", "state": "wiping",
             "since": "2026-11-24T10:00:00Z", "allocations": []},
            {"node": "n2", "tenant": "clinic", "user": "alice", "state": "claimed",
             "since": "2026-11-24T10:00:00Z", "allocations": [7]},
        ]));
        assert!(t.lines().nth(1).unwrap().contains("wiping"), "{t}");
        assert!(t.lines().nth(2).unwrap().trim_end().ends_with('7'), "{t}");
    }
}
