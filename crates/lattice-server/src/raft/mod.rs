//! Raft wiring: the openraft type configuration, type aliases, and [`new_raft`], which opens
//! the redb database under `data_dir` and starts the Raft node.
//!
//! The log store ([`log_store`]), state machine ([`state_machine`]) and network ([`network`])
//! are each their own module.

pub mod log_store;
pub mod network;
pub mod restore;
pub mod state_machine;
pub mod storage;
pub mod work_waiters;

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use lattice_core::{Command, CommandResult};
use openraft::{BasicNode, Config, SnapshotPolicy};

use crate::config::ServerConfig;

openraft::declare_raft_types!(
    /// Lattice's Raft types: commands in, apply results out, u64 member IDs.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type MemberId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<MemberId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StorageError = openraft::StorageError<MemberId>;
pub type RaftMetrics = openraft::RaftMetrics<MemberId, BasicNode>;

/// Everything `new_raft` builds.
pub struct RaftParts {
    pub raft: Raft,
    pub committed: log_store::CommitIndex,
    pub state: state_machine::SharedState,
    pub db: Arc<storage::Db>,
    /// The audit log's rows, in the same database (written by the state machine).
    pub audit: Arc<crate::audit::store::AuditStore>,
}

/// openraft configuration from the server's settings.
pub fn raft_config(cfg: &ServerConfig) -> anyhow::Result<Config> {
    let c = Config {
        cluster_name: "lattice".into(),
        heartbeat_interval: cfg.raft_heartbeat_interval_ms,
        election_timeout_min: cfg.raft_election_timeout_min_ms,
        election_timeout_max: cfg.raft_election_timeout_max_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every_entries),
        max_in_snapshot_log_to_keep: cfg.log_entries_kept_after_snapshot,
        // openraft purges only once this many entries are purgeable: keep it no larger than the
        // snapshot interval, or small intervals would never compact.
        purge_batch_size: cfg.snapshot_every_entries.clamp(1, 256),
        ..Default::default()
    };
    Ok(c.validate()?)
}

/// Opens (or creates) the member's storage under `data_dir` and starts its Raft node.
pub async fn new_raft(cfg: &ServerConfig, data_dir: &Path) -> anyhow::Result<RaftParts> {
    let db = Arc::new(storage::Db::open(&data_dir.join("lattice.redb"))?);
    let log_store = log_store::LogStore::new(db.clone());
    let committed = log_store.commit_index();
    let sm = state_machine::StateMachine::open(db.clone())?;
    let state = sm.shared();
    let audit = sm.audit_store();
    let http = crate::tls::http_client(cfg, network::Network::CONNECT_TIMEOUT)?;
    let network = network::Network::new(cfg.cluster_secret.clone(), http);
    let raft = Raft::new(
        cfg.node_id,
        Arc::new(raft_config(cfg)?),
        network,
        log_store,
        sm,
    )
    .await?;
    Ok(RaftParts {
        raft,
        committed,
        state,
        db,
        audit,
    })
}
