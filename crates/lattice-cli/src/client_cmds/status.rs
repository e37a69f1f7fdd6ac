//! `lattice status`: like `squeue`. Without an ID, a table of pending, running and preempting
//! allocations
//! (every state with `--all`, chosen ones with `--state`), a job array folded into one line
//! unless `--expand`, with estimated starts under `--start`; with an ID (`42` or `42_7`), one
//! allocation in detail.

use clap::Args;
use lattice_client::ListQuery;
use lattice_core::{AllocState, Allocation, JobRef};

use super::alloc_view::{detail, table_view, View};
use super::output::{now, out, out_json, Format};
use super::targets::job_ref;
use super::{connect, CmdError};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Show this allocation in detail: N, or N_I for task I of array N
    #[arg(value_name = "ID", value_parser = job_ref)]
    pub id: Option<JobRef>,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table, value_name = "FORMAT")]
    pub output: Format,
    /// Include finished allocations (completed, failed, cancelled)
    #[arg(short = 'a', long, conflicts_with_all = ["id", "state"])]
    pub all: bool,
    /// Only these states: pending, running, preempting, completed, failed, cancelled (or
    /// Slurm's PD, R, PR, CD, F, CA); comma-separated or repeated
    #[arg(short = 't', long, value_name = "STATE", value_delimiter = ',', value_parser = parse_state, conflicts_with = "id")]
    pub state: Vec<AllocState>,
    /// Only this tenant's allocations
    #[arg(
        short = 'A',
        long,
        visible_alias = "account",
        value_name = "TENANT",
        conflicts_with = "id"
    )]
    pub tenant: Option<String>,
    /// Only this user's allocations
    #[arg(short = 'u', long, value_name = "USER", conflicts_with = "id")]
    pub user: Option<String>,
    /// Only this vCluster's allocations
    #[arg(
        short = 'p',
        long,
        visible_alias = "partition",
        value_name = "VCLUSTER",
        conflicts_with = "id"
    )]
    pub vcluster: Option<String>,
    /// One line per job-array task (arrays are folded into one line by default)
    #[arg(long, conflicts_with = "id")]
    pub expand: bool,
    /// Add a START column: when pending allocations are expected to start (like squeue --start)
    #[arg(long, conflicts_with = "id")]
    pub start: bool,
}

/// A state by its name or its Slurm abbreviation, in any case.
fn parse_state(text: &str) -> Result<AllocState, String> {
    let lower = text.trim().to_ascii_lowercase();
    let state = match lower.as_str() {
        "pd" => Some(AllocState::Pending),
        "r" => Some(AllocState::Running),
        "pr" => Some(AllocState::Preempting),
        "cd" => Some(AllocState::Completed),
        "f" => Some(AllocState::Failed),
        "ca" | "canceled" => Some(AllocState::Cancelled),
        other => AllocState::parse(other),
    };
    state.ok_or_else(|| {
        "expected pending, running, preempting, completed, failed or cancelled \
         (or PD, R, PR, CD, F, CA)"
            .into()
    })
}

pub async fn run(args: StatusArgs, endpoint: &str) -> Result<(), CmdError> {
    let client = connect(endpoint)?;
    if let Some(id) = args.id {
        let alloc = client.get_allocation_ref(&id.to_string()).await?;
        return match args.output {
            Format::Json => out_json(&alloc),
            Format::Table | Format::Wide => out(&detail(&alloc, now())),
        };
    }
    let mut allocs: Vec<Allocation> = Vec::new();
    for state in states_to_query(&args) {
        let query = ListQuery {
            state: state.map(|s| s.as_str().to_string()),
            tenant: args.tenant.clone(),
            user: args.user.clone(),
            vcluster: args.vcluster.clone(),
            array: None,
            limit: None,
            cursor: None,
        };
        allocs.extend(client.list_all_allocations(&query).await?);
    }
    allocs.sort_by_key(|a| a.id);
    allocs.dedup_by_key(|a| a.id);
    let view = View {
        wide: args.output == Format::Wide,
        expand: args.expand,
        start: args.start,
    };
    match args.output {
        Format::Json => out_json(&allocs),
        Format::Table | Format::Wide => out(&table_view(&allocs, now(), view)),
    }
}

/// One server query per state (`None`: every state).
fn states_to_query(args: &StatusArgs) -> Vec<Option<AllocState>> {
    if args.all {
        return vec![None];
    }
    let mut states = if args.state.is_empty() {
        // Preempting allocations still hold their nodes: they are active work.
        vec![
            AllocState::Pending,
            AllocState::Running,
            AllocState::Preempting,
        ]
    } else {
        args.state.clone()
    };
    states.sort();
    states.dedup();
    states.into_iter().map(Some).collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::super::ClientCommand;
    use super::*;

    fn status(args: &[&str]) -> StatusArgs {
        match parse(&[&["status"], args].concat()) {
            Ok(ClientCommand::Status(a)) => a,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn defaults_to_active_states() {
        let a = status(&[]);
        assert_eq!(a.output, Format::Table);
        assert_eq!(
            states_to_query(&a),
            [
                Some(AllocState::Pending),
                Some(AllocState::Running),
                Some(AllocState::Preempting)
            ]
        );
        assert_eq!(states_to_query(&status(&["--all"])), [None]);
    }

    #[test]
    fn states_by_name_or_slurm_code() {
        let a = status(&["--state", "PD,cancelled", "-t", "R", "-t", "pending"]);
        assert_eq!(
            states_to_query(&a),
            [
                Some(AllocState::Pending),
                Some(AllocState::Running),
                Some(AllocState::Cancelled)
            ]
        );
        assert!(parse(&["status", "--state", "bogus"]).is_err());
        let a = status(&["-t", "PR", "-t", "preempting"]);
        assert_eq!(states_to_query(&a), [Some(AllocState::Preempting)]);
    }

    #[test]
    fn filters_and_formats() {
        let a = status(&["-o", "wide", "-A", "phys", "-u", "bob", "-p", "gpu"]);
        assert_eq!(a.output, Format::Wide);
        assert_eq!(a.tenant.as_deref(), Some("phys"));
        assert_eq!(a.user.as_deref(), Some("bob"));
        assert_eq!(a.vcluster.as_deref(), Some("gpu"));
        let a = status(&["42", "-o", "json"]);
        assert_eq!((a.id, a.output), (Some(JobRef::Id(42)), Format::Json));
        let a = status(&["42_7"]);
        assert_eq!(
            a.id,
            Some(JobRef::Task {
                array: 42,
                index: 7
            })
        );
        let a = status(&["--expand", "--start"]);
        assert!(a.expand && a.start);
        assert!(parse(&["status", "42", "--expand"]).is_err());
        assert!(parse(&["status", "-o", "yaml"]).is_err());
        assert!(parse(&["status", "x"]).is_err());
        assert!(parse(&["status", "42", "--all"]).is_err());
        assert!(parse(&["status", "--all", "--state", "running"]).is_err());
        assert!(parse(&["status", "42", "-u", "bob"]).is_err());
    }
}
