//! [`AgentError`]: why the agent cannot start or keep running. Per-rank failures (a process
//! that cannot be launched, a record that cannot be written) are not errors of the agent: they
//! become exit reports or log lines.

use std::net::SocketAddr;
use std::path::PathBuf;

use lattice_client::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("invalid agent configuration: {0}")]
    Config(String),
    #[error("cannot prepare the work directory {path}: {source}")]
    WorkDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("agent HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Client(#[from] ClientError),
}
