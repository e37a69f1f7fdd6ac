//! Client subcommands (`submit`, `status`, `cancel`, `logs`, `nodes`, `hold`, `release`,
//! `requeue`, `checkpoint`, `tenants`, `vclusters`, ...), modelled on Slurm's `sbatch`, `squeue`,
//! `scancel`, `sinfo`, `scontrol` and `sacctmgr`. They talk to the control plane only through
//! `lattice-client`.
//!
//! Exit codes: 0 on success, 1 when the server or the network fails or the work asked for
//! failed (a checkpoint that failed; one `error: ...` line on stderr), 2 for usage errors (bad flag values, unreadable script, bad endpoint), with nothing
//! sent to the server.

mod acl;
mod alloc_view;
mod audit;
mod cancel;
mod checkpoint;
mod claim;
mod constraint;
pub(crate) mod credentials;
mod directives;
mod duration;
mod hold;
mod job_spec;
mod logs;
mod node_view;
mod nodes;
mod output;
mod raft;
mod requeue;
mod status;
mod submit;
mod table;
mod targets;
mod tenants;
mod top;
mod vclusters;

use lattice_client::{Client, ClientError};

// One value per process, parsed once from the command line: the size of `Submit` costs
// nothing worth a `Box`.
#[allow(clippy::large_enum_variant)]
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Submit a batch script or a command (like sbatch).
    Submit(submit::SubmitArgs),
    /// List pending and running allocations, or show one (like squeue).
    Status(status::StatusArgs),
    /// Cancel allocations (like scancel).
    Cancel(cancel::CancelArgs),
    /// Print an allocation's output.
    Logs(logs::LogsArgs),
    /// List nodes (like sinfo), show one, or drain / undrain them.
    Nodes(nodes::NodesArgs),
    /// Show what a running job uses per node: CPU, memory, GPUs (like sstat / top).
    Top(top::TopArgs),
    /// Control-plane membership: status, add, remove, snapshot save.
    Raft(raft::RaftArgs),
    /// Keep pending allocations from being scheduled (like scontrol hold).
    Hold(hold::HoldArgs),
    /// Let held allocations be scheduled again (like scontrol release), or with --tenant give
    /// back claimed nodes.
    Release(claim::ReleaseArgs),
    /// Run allocations again as new pending ones (like scontrol requeue).
    Requeue(requeue::RequeueArgs),
    /// Checkpoint a running allocation now and wait for the checkpoint to end.
    Checkpoint(checkpoint::CheckpointArgs),
    /// List tenants (accounts) with shares, quotas and usage, or create / change one.
    Tenants(tenants::TenantsArgs),
    /// List vClusters (partitions) with policy and nodes, or create / change one.
    Vclusters(vclusters::VClustersArgs),
    /// Access control: create the first admin token (`acl bootstrap`).
    Acl(acl::AclArgs),
    /// API tokens: create, list, revoke (admins).
    Token(acl::TokenArgs),
    /// Show who the current token authenticates as.
    Whoami,
    /// Claim nodes for exclusive use by a sensitive tenant's user.
    Claim(claim::ClaimArgs),
    /// List claimed nodes.
    Claims(claim::ClaimsArgs),
    /// The audit log of sensitive tenants: query, export, verify, pubkey, prune.
    Audit(audit::AuditArgs),
}

/// Why a client command stopped early; each maps to an exit code.
#[derive(Debug)]
pub(crate) enum CmdError {
    /// Bad input from the user (exit 2).
    Usage(String),
    /// The API call failed (exit 1; a bad endpoint is a usage error).
    Client(ClientError),
    /// Errors about single items were already printed (exit 1).
    Reported,
    /// Standard output was closed by the reader; stop quietly (exit 0).
    Closed,
    /// Local I/O failed (exit 1).
    Io(String),
    /// What the command asked for failed or did not happen in time (exit 1).
    Failed(String),
}

impl From<ClientError> for CmdError {
    fn from(e: ClientError) -> Self {
        CmdError::Client(e)
    }
}

/// Runs a client command; returns the process exit code.
pub async fn run(cmd: ClientCommand, endpoint: &str) -> i32 {
    let result = match cmd {
        ClientCommand::Submit(a) => submit::run(a, endpoint).await,
        ClientCommand::Status(a) => status::run(a, endpoint).await,
        ClientCommand::Cancel(a) => cancel::run(a, endpoint).await,
        ClientCommand::Logs(a) => logs::run(a, endpoint).await,
        ClientCommand::Nodes(a) => nodes::run(a, endpoint).await,
        ClientCommand::Top(a) => top::run(a, endpoint).await,
        ClientCommand::Raft(a) => raft::run(a, endpoint).await,
        ClientCommand::Hold(a) => hold::run(a, endpoint, true).await,
        ClientCommand::Release(a) => claim::release(a, endpoint).await,
        ClientCommand::Requeue(a) => requeue::run(a, endpoint).await,
        ClientCommand::Checkpoint(a) => checkpoint::run(a, endpoint).await,
        ClientCommand::Tenants(a) => tenants::run(a, endpoint).await,
        ClientCommand::Vclusters(a) => vclusters::run(a, endpoint).await,
        ClientCommand::Acl(a) => acl::run_acl(a, endpoint).await,
        ClientCommand::Token(a) => acl::run_token(a, endpoint).await,
        ClientCommand::Whoami => acl::run_whoami(endpoint).await,
        ClientCommand::Claim(a) => claim::claim(a, endpoint).await,
        ClientCommand::Claims(a) => claim::list(a, endpoint).await,
        ClientCommand::Audit(a) => audit::run(a, endpoint).await,
    };
    exit_code(result)
}

/// Prints the error, if any, and picks the exit code.
fn exit_code(result: Result<(), CmdError>) -> i32 {
    match result {
        Ok(()) | Err(CmdError::Closed) => 0,
        Err(CmdError::Reported) => 1,
        Err(CmdError::Usage(msg)) | Err(CmdError::Client(ClientError::Config(msg))) => {
            output::error_line(&msg);
            2
        }
        Err(CmdError::Client(e)) => {
            output::error_line(&crate::ca_file::explain(&e));
            1
        }
        Err(CmdError::Io(msg)) | Err(CmdError::Failed(msg)) => {
            output::error_line(&msg);
            1
        }
    }
}

/// A client for the `--endpoint` list, trusting `--ca-file`, with the token from `LATTICE_TOKEN`
/// or the token file.
pub(crate) fn connect(endpoint: &str) -> Result<Client, CmdError> {
    let client =
        Client::new(&[endpoint]).map_err(|e| CmdError::Usage(format!("--endpoint: {e}")))?;
    let client = crate::ca_file::trust(client).map_err(CmdError::Usage)?;
    Ok(client.with_token(credentials::token()?))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// Stands in for the binary's top-level parser.
    #[derive(Parser, Debug)]
    #[command(name = "lattice")]
    pub(crate) struct TestCli {
        #[command(subcommand)]
        pub cmd: ClientCommand,
    }

    /// Parses a command line (without the leading `lattice`).
    pub(crate) fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
        TestCli::try_parse_from(std::iter::once("lattice").chain(args.iter().copied()))
            .map(|c| c.cmd)
    }

    #[test]
    fn the_command_tree_is_consistent() {
        use clap::CommandFactory;
        TestCli::command().debug_assert();
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(Ok(())), 0);
        assert_eq!(exit_code(Err(CmdError::Closed)), 0);
        assert_eq!(exit_code(Err(CmdError::Usage("x".into()))), 2);
        assert_eq!(exit_code(Err(CmdError::Reported)), 1);
        assert_eq!(exit_code(Err(CmdError::Failed("timeout".into()))), 1);
        let api = ClientError::Api {
            status: 404,
            message: "allocation 9 not found".into(),
            detail: serde_json::Value::Null,
        };
        assert_eq!(exit_code(Err(api.into())), 1);
        assert_eq!(
            exit_code(Err(ClientError::Transport("down".into()).into())),
            1
        );
    }

    #[test]
    fn bad_endpoints_are_usage_errors() {
        assert!(matches!(connect("ftp://x"), Err(CmdError::Usage(_))));
        assert!(matches!(connect(" , "), Err(CmdError::Usage(_))));
        assert!(connect("http://a:1,http://b:2").is_ok());
    }
}
