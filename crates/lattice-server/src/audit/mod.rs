//! The audit log of sensitive tenants on a member: the entries apply produces
//! (`lattice_core::audit`) stored in redb with their indexes ([`store`]), queried through
//! them ([`query`], [`params`], [`scope`]), the chain head signed with the member's Ed25519
//! key ([`signing`]), the stored chain checked ([`verify`]), old entries archived and pruned
//! by the leader ([`retention`]), and entries skipped by a snapshot install fetched from the
//! leader ([`gap`], [`catch_up`]). docs/audit.md describes all of it for operators.

pub mod catch_up;
pub mod gap;
pub mod params;
pub mod query;
pub mod retention;
pub mod scope;
pub mod signing;
pub mod store;
pub mod verify;

use std::sync::Arc;

use lattice_core::audit::AuditHead;
use redb::ReadTransaction;

use crate::raft::state_machine::SharedState;
use crate::raft::storage::DbError;
use signing::AuditSigner;
use store::AuditStore;

/// What can go wrong in the audit log's server-side work.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Key(#[from] signing::SigningKeyError),
    #[error("cannot write the audit archive {0}: {1}")]
    Archive(String, std::io::Error),
    #[error("snapshot catch-up: {0}")]
    CatchUp(String),
    #[error("the prune could not be committed: {0}")]
    Propose(String),
    #[error("internal: {0}")]
    Internal(String),
}

/// The member's audit log handle (in [`crate::api::App`]).
pub struct Audit {
    pub store: Arc<AuditStore>,
    pub signer: AuditSigner,
    /// Retention passes run one at a time.
    pub pass_lock: tokio::sync::Mutex<()>,
}

impl Audit {
    pub fn new(store: Arc<AuditStore>, signer: AuditSigner) -> Audit {
        Audit {
            store,
            signer,
            pass_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The replicated chain head and a read transaction that agree with it (no apply batch
    /// is half-written between them).
    pub fn consistent_read(
        &self,
        state: &SharedState,
    ) -> Result<(AuditHead, ReadTransaction), DbError> {
        let _barrier = self.store.barrier();
        let head = state.read().state.audit_head().clone();
        let tx = self.store.begin_read()?;
        Ok((head, tx))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use lattice_core::audit::{AuditAction, AuditEntry, AuditHead, AuditRecord, GENESIS_HASH};
    use lattice_core::Timestamp;

    use super::store::AuditStore;
    use crate::raft::storage::Db;

    /// A chain of `n` entries: entry `k` is at `k` seconds, of tenant `t{k % tenants}`, about
    /// user `u{k % 3}`, allocation `100 + k`, node `n{k % 4}`; even entries are
    /// `allocation.started`, odd ones `node.claimed`.
    pub fn chain(n: u64, tenants: u64) -> Vec<AuditEntry> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let r = AuditRecord {
                    tenant: format!("t{}", seq % tenants.max(1)),
                    user: format!("u{}", seq % 3),
                    action: if seq % 2 == 0 {
                        AuditAction::Started
                    } else {
                        AuditAction::NodeClaimed
                    },
                    allocation: Some(100 + seq),
                    nodes: vec![format!("n{}", seq % 4)],
                    detail: format!("entry {seq}"),
                };
                let e = AuditEntry::chained(seq, Timestamp(seq * 1000), &r, &prev);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    /// The head after `entries` (the whole chain from 1), with `pruned` entries pruned.
    pub fn head_of(entries: &[AuditEntry], pruned: u64) -> AuditHead {
        let last = entries.last().expect("entries");
        AuditHead {
            next_seq: last.seq + 1,
            head_hash: last.hash.clone(),
            pruned_through: pruned,
            anchor_hash: match pruned {
                0 => GENESIS_HASH.to_string(),
                p => entries[(p - 1) as usize].hash.clone(),
            },
        }
    }

    pub fn store() -> (tempfile::TempDir, AuditStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(Db::open(&dir.path().join("lattice.redb")).expect("db"));
        (dir, AuditStore::open(db).expect("store"))
    }
}
