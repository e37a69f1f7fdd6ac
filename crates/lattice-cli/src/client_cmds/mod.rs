//! Client subcommands (submit, status, cancel, logs, nodes). They talk to the control plane
//! only through `lattice-client`.

#[derive(clap::Subcommand)]
pub enum ClientCommand {
    /// Show the cluster's health.
    Ping,
}

/// Runs a client command; returns the process exit code.
pub async fn run(cmd: ClientCommand, endpoint: &str) -> i32 {
    let _ = (cmd, endpoint);
    0
}
