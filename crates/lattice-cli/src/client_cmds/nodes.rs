//! `lattice nodes`: like `sinfo`. Lists nodes; `nodes show ID` shows one; `nodes drain ID...`
//! and `nodes undrain ID...` stop and resume placing new work on nodes.

use clap::{Args, Subcommand};
use lattice_client::ClientError;
use lattice_core::Node;

use std::collections::BTreeMap;

use lattice_client::Client;

use super::node_view::{detail, table, wide_table, Utilization};
use super::output::{about, error_line, now, out, out_json, warn, Format};
use super::{connect, CmdError};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct NodesArgs {
    #[command(subcommand)]
    pub action: Option<NodesAction>,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table, value_name = "FORMAT")]
    pub output: Format,
}

#[derive(Subcommand, Debug)]
pub enum NodesAction {
    /// Show one node in detail.
    Show {
        /// Node name
        #[arg(value_name = "NODE", value_parser = node_id)]
        id: String,
        /// Output format (`json`; anything else shows `key: value` lines)
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table, value_name = "FORMAT")]
        output: Format,
    },
    /// Place no new work on nodes; what runs there finishes.
    Drain {
        /// Node names
        #[arg(required = true, value_name = "NODE", value_parser = node_id)]
        ids: Vec<String>,
        /// Why (shown in `lattice nodes -o wide`)
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Accept new work on drained nodes again.
    Undrain {
        /// Node names
        #[arg(required = true, value_name = "NODE", value_parser = node_id)]
        ids: Vec<String>,
    },
}

/// Node IDs go into URL paths, so characters with a meaning there are refused.
fn node_id(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 63
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/?#%\\".contains(c))
        && text != "."
        && text != "..";
    if ok {
        Ok(text.to_string())
    } else {
        Err("expected a node name of 1-63 characters without spaces or / ? # % \\".into())
    }
}

pub async fn run(args: NodesArgs, endpoint: &str) -> Result<(), CmdError> {
    let client = connect(endpoint)?;
    match args.action {
        None => {
            let mut nodes = client.nodes().await?;
            nodes.sort_by(|a, b| a.id.cmp(&b.id));
            match args.output {
                Format::Json => out_json(&nodes),
                Format::Table => out(&table(&nodes, now(), false)),
                Format::Wide => {
                    let util = utilization(&client).await;
                    out(&wide_table(&nodes, now(), &util))
                }
            }
        }
        Some(NodesAction::Show { id, output }) => {
            let node = client.node(&id).await?;
            match output {
                Format::Json => out_json(&node),
                Format::Table | Format::Wide => out(&detail(&node, now())),
            }
        }
        Some(NodesAction::Drain { ids, reason }) => {
            let mut failed = false;
            for id in &ids {
                let result = client.drain(id, reason.as_deref()).await;
                failed |= report(id, result)?;
            }
            if failed {
                Err(CmdError::Reported)
            } else {
                Ok(())
            }
        }
        Some(NodesAction::Undrain { ids }) => {
            let mut failed = false;
            for id in &ids {
                failed |= report(id, client.undrain(id).await)?;
            }
            if failed {
                Err(CmdError::Reported)
            } else {
                Ok(())
            }
        }
    }
}

/// Current utilization per node from the telemetry TSDB; empty when the control plane has
/// none configured, and empty with a warning when it cannot be read (the list still shows).
async fn utilization(client: &Client) -> BTreeMap<String, Utilization> {
    match client.node_utilization().await {
        Ok(list) => list
            .nodes
            .into_iter()
            .map(|n| {
                let memory = match (n.memory_used_bytes, n.memory_total_bytes) {
                    (Some(u), Some(t)) if t > 0.0 => Some(u / t),
                    _ => None,
                };
                let u = Utilization {
                    cpu: n.cpu_utilization,
                    memory,
                    gpu: n.gpu_utilization,
                };
                (n.node, u)
            })
            .collect(),
        Err(e) => {
            warn(&format!("node utilization unavailable: {e}"));
            BTreeMap::new()
        }
    }
}

/// Prints `Node X is now <state>`, or an error line and returns `true`. An unreachable server
/// ends the command: every later node would wait out the same retries.
fn report(id: &str, result: Result<Node, ClientError>) -> Result<bool, CmdError> {
    match result {
        Ok(node) => out(&format!("Node {} is now {}\n", node.id, node.state)).map(|()| false),
        Err(e @ ClientError::Transport(_)) => Err(e.into()),
        Err(e) => {
            error_line(&about(&format!("node {id}"), &e.to_string()));
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::super::ClientCommand;
    use super::*;

    fn nodes(args: &[&str]) -> NodesArgs {
        match parse(&[&["nodes"], args].concat()) {
            Ok(ClientCommand::Nodes(a)) => a,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn plain_nodes_lists() {
        let a = nodes(&[]);
        assert!(a.action.is_none());
        assert_eq!(a.output, Format::Table);
        assert_eq!(nodes(&["-o", "wide"]).output, Format::Wide);
        assert_eq!(nodes(&["--output=json"]).output, Format::Json);
    }

    #[test]
    fn drain_undrain_show() {
        match nodes(&["drain", "dev-1", "nid002", "--reason", "bad DIMM"]).action {
            Some(NodesAction::Drain { ids, reason }) => {
                assert_eq!(ids, ["dev-1", "nid002"]);
                assert_eq!(reason.as_deref(), Some("bad DIMM"));
            }
            other => panic!("{other:?}"),
        }
        match nodes(&["undrain", "dev-1"]).action {
            Some(NodesAction::Undrain { ids }) => assert_eq!(ids, ["dev-1"]),
            other => panic!("{other:?}"),
        }
        match nodes(&["show", "dev-1", "-o", "json"]).action {
            Some(NodesAction::Show { id, output }) => {
                assert_eq!((id.as_str(), output), ("dev-1", Format::Json))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_node_command_lines() {
        for bad in [
            &["nodes", "drain"][..],
            &["nodes", "undrain"],
            &["nodes", "drain", "../allocations/1"],
            &["nodes", "drain", "a?b"],
            &["nodes", "drain", ".."],
            &["nodes", "show"],
            &["nodes", "bogus"],
            &["nodes", "-o", "wide", "drain", "x"],
            &["nodes", "-o", "csv"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
