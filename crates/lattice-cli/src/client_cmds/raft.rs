//! `lattice raft status|add|remove|snapshot save`: the control plane's Raft membership.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::output::out;
use super::table::{Align, Table};
use super::{connect, CmdError};

#[derive(Args, Debug)]
pub struct RaftArgs {
    #[command(subcommand)]
    pub cmd: RaftCmd,
}

#[derive(Subcommand, Debug)]
pub enum RaftCmd {
    /// Members, leader, term, commit/applied index and each follower's lag.
    Status {
        /// Output format
        #[arg(short = 'o', long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Add a member (as learner until it caught up, then as voter).
    Add {
        /// New member's Raft ID
        id: u64,
        /// URL where the new member serves (its advertise URL)
        url: String,
    },
    /// Remove a member from the cluster.
    Remove {
        /// Member's Raft ID
        id: u64,
    },
    /// Backups of the replicated state.
    Snapshot {
        #[command(subcommand)]
        cmd: SnapshotCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Save a consistent copy of the state to FILE (restore: `lattice server --restore FILE`).
    Save { file: PathBuf },
}

fn status_table(v: &Value) -> String {
    let mut text = format!(
        "member {} is {}; leader: {}; term {}; commit index {}; applied index {}\n",
        v["id"],
        v["state"].as_str().unwrap_or("?"),
        v["leader"],
        v["term"],
        v["commit_index"],
        v["applied_index"],
    );
    let mut t = Table::new(vec![
        ("ID", Align::Right),
        ("URL", Align::Left),
        ("ROLE", Align::Left),
        ("MATCHED", Align::Right),
        ("LAG", Align::Right),
    ]);
    for m in v["members"].as_array().into_iter().flatten() {
        let role = if m["id"] == v["leader"] {
            "leader"
        } else if m["voter"] == true {
            "voter"
        } else {
            "learner"
        };
        let show = |x: &Value| {
            if x.is_null() {
                "-".to_string()
            } else {
                x.to_string()
            }
        };
        t.row(vec![
            m["id"].to_string(),
            m["url"].as_str().unwrap_or("").to_string(),
            role.to_string(),
            show(&m["matched_index"]),
            show(&m["lag"]),
        ]);
    }
    text.push_str(&t.render());
    text
}

pub async fn run(args: RaftArgs, endpoint: &str) -> Result<(), CmdError> {
    let client = connect(endpoint)?;
    match args.cmd {
        RaftCmd::Status { output } => {
            let v = client.raft_status().await?;
            if output == "json" {
                out(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&v).unwrap_or_default()
                ))
            } else {
                out(&status_table(&v))
            }
        }
        RaftCmd::Add { id, url } => {
            client.raft_add(id, &url).await?;
            out(&format!("Member {id} added at {url}\n"))
        }
        RaftCmd::Remove { id } => {
            client.raft_remove(id).await?;
            out(&format!("Member {id} removed\n"))
        }
        RaftCmd::Snapshot {
            cmd: SnapshotCmd::Save { file },
        } => {
            let bytes = client.raft_snapshot().await?;
            std::fs::write(&file, &bytes)
                .map_err(|e| CmdError::Io(format!("cannot write {}: {e}", file.display())))?;
            out(&format!(
                "Saved {} bytes to {}\n",
                bytes.len(),
                file.display()
            ))
        }
    }
}
