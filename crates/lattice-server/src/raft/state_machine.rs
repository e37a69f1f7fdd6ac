//! The Raft state machine: applies committed entries to the in-memory [`ClusterState`] and
//! keeps the latest snapshot durable in redb. On start it is rebuilt from that snapshot;
//! openraft then re-applies the committed log entries that follow it.
//!
//! Readers (the API, the scheduler) share the state through [`SharedState`]; every apply batch
//! publishes the new state revision on a watch channel so long-polls and the scheduler wake.
//!
//! The audit entries a batch produces leave the state right after it and are written to the
//! audit store ([`AuditStore::write_applied`]) under the store's barrier, so that a snapshot
//! is never saved (durably) before the rows of the entries it covers. Installing a snapshot
//! (or starting from one) records the entries the store lacks ([`AuditStore::reconcile`]).

use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Instant;

use lattice_core::{ClusterState, CommandOutcome, CommandResult};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::storage::{Db, DbError, SNAPSHOT};
use super::work_waiters::WorkWaiters;
use super::{Entry, LogId, MemberId, StorageError, TypeConfig};
use crate::audit::store::AuditStore;
use crate::metrics::{self, SnapshotKind};

/// What the state machine holds, read and written under one lock so a snapshot is consistent.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SmData {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership<MemberId, BasicNode>,
    pub state: ClusterState,
}

/// State shared between the state machine (the one writer) and readers.
pub struct Shared {
    data: RwLock<SmData>,
    revision: watch::Sender<u64>,
    /// Agents' polls, woken by node when that node's work changes.
    work: Arc<WorkWaiters>,
}

pub type SharedState = Arc<Shared>;

impl Shared {
    /// Read access to the cluster state. Hold it briefly: apply waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, SmData> {
        self.data.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes to the state revision, bumped after every applied batch.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// The registry of agents' work polls (woken by node after each applied batch).
    pub fn work_waiters(&self) -> &Arc<WorkWaiters> {
        &self.work
    }
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<MemberId, BasicNode>,
    data: Vec<u8>,
}

const KEY_CURRENT: &str = "current";

pub struct StateMachine {
    db: Arc<Db>,
    shared: SharedState,
    audit: Arc<AuditStore>,
}

fn sm_err(e: impl ToString) -> StorageError {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

fn snap_err(e: impl ToString) -> StorageError {
    StorageIOError::read_snapshot(None, AnyError::error(e.to_string())).into()
}

impl StateMachine {
    /// Opens the state machine, restoring the latest durable snapshot if there is one.
    pub fn open(db: Arc<Db>) -> Result<Self, DbError> {
        let data = match load_snapshot(&db)? {
            Some(s) => bincode::deserialize::<SmData>(&s.data)?,
            None => SmData::default(),
        };
        let audit = Arc::new(AuditStore::open(db.clone())?);
        // Rows of the snapshot's entries are durable before the snapshot is, except after a
        // restore from a backup (which carries no rows): record what is missing.
        let head = data.state.audit_head();
        if let Some(gap) = audit.reconcile(head.pruned_through, head.count())? {
            tracing::warn!(
                from = gap.from,
                to = gap.to,
                "audit entries covered by the snapshot are not stored here; fetching them from the leader"
            );
        }
        let (tx, _) = watch::channel(data.state.revision());
        Ok(StateMachine {
            db,
            shared: Arc::new(Shared {
                data: RwLock::new(data),
                revision: tx,
                work: Arc::new(WorkWaiters::default()),
            }),
            audit,
        })
    }

    /// The audit store this state machine writes.
    pub fn audit_store(&self) -> Arc<AuditStore> {
        self.audit.clone()
    }

    pub fn shared(&self) -> SharedState {
        self.shared.clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, SmData> {
        self.shared.data.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The audit barrier and the write lock, taken once no reader holds the state. Waiting
    /// on the lock itself would block every new reader (std's lock lets a waiting writer go
    /// first), and with them the runtime's worker threads, for as long as the scheduler plans:
    /// up to a second with a million pending. So apply waits asynchronously, and requests that
    /// only read are served meanwhile. Readers hold the lock briefly, and the scheduler rests
    /// between cycles at least as long as it planned, so apply gets its turn. The barrier
    /// comes first, as everywhere (`audit::consistent_read` takes it, then reads the state),
    /// and is let go while waiting.
    async fn lock_for_apply(
        &self,
    ) -> (
        std::sync::MutexGuard<'_, ()>,
        std::sync::RwLockWriteGuard<'_, SmData>,
    ) {
        let mut tries = 0u32;
        loop {
            let barrier = self.audit.barrier();
            match self.shared.data.try_write() {
                Ok(g) => return (barrier, g),
                Err(std::sync::TryLockError::Poisoned(p)) => return (barrier, p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
            drop(barrier);
            if tries < 16 {
                tries += 1;
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    }

    fn publish(&self) {
        let rev = self.shared.read().state.revision();
        self.shared.revision.send_replace(rev);
    }
}

fn load_snapshot(db: &Db) -> Result<Option<StoredSnapshot>, DbError> {
    let tx = db.inner().begin_read()?;
    let t = tx.open_table(SNAPSHOT)?;
    match t.get(KEY_CURRENT)? {
        Some(v) => Ok(Some(bincode::deserialize(v.value())?)),
        None => Ok(None),
    }
}

fn save_snapshot(db: &Db, s: &StoredSnapshot) -> Result<(), DbError> {
    let bytes = bincode::serialize(s)?;
    let tx = db.inner().begin_write()?;
    {
        let mut t = tx.open_table(SNAPSHOT)?;
        t.insert(KEY_CURRENT, bytes.as_slice())?;
    }
    tx.commit()?;
    Ok(())
}

/// Whether a durable snapshot exists.
pub fn has_snapshot(db: &Db) -> Result<bool, DbError> {
    Ok(load_snapshot(db)?.is_some())
}

/// Stores `data` as the current durable snapshot (used by restore, before Raft starts).
pub fn write_restored(db: &Db, data: &SmData) -> Result<(), DbError> {
    let meta = SnapshotMeta {
        last_log_id: data.last_applied,
        last_membership: data.last_membership.clone(),
        snapshot_id: "restored".to_string(),
    };
    save_snapshot(
        db,
        &StoredSnapshot {
            meta,
            data: bincode::serialize(data)?,
        },
    )
}

/// Builds snapshots from a consistent copy of the state machine.
pub struct SnapshotBuilder {
    db: Arc<Db>,
    shared: SharedState,
    audit: Arc<AuditStore>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let started = Instant::now();
        let (meta, data) = {
            let d = self.shared.read();
            let data = bincode::serialize(&*d).map_err(snap_err)?;
            let snapshot_id = match d.last_applied {
                Some(l) => format!(
                    "{}-{}-{}",
                    l.leader_id.term,
                    l.index,
                    started.elapsed().as_nanos()
                ),
                None => "empty".to_string(),
            };
            let meta = SnapshotMeta {
                last_log_id: d.last_applied,
                last_membership: d.last_membership.clone(),
                snapshot_id,
            };
            (meta, data)
        };
        // An apply batch whose state was copied above may still be writing its audit rows:
        // wait for it, so that they are committed before the snapshot (durably) is.
        drop(self.audit.barrier());
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        tokio::task::block_in_place(|| save_snapshot(&self.db, &stored)).map_err(snap_err)?;
        metrics::snapshot(SnapshotKind::Built);
        tracing::info!(
            last_log_index = meta.last_log_id.map(|l| l.index),
            bytes = stored.data.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "built snapshot"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<MemberId, BasicNode>), StorageError> {
        let d = self.shared.read();
        Ok((d.last_applied, d.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let (barrier, mut d) = self.lock_for_apply().await;
        let (audit, pruned, work_changed) = {
            let pruned_before = d.state.audit_head().pruned_through;
            for e in entries {
                d.last_applied = Some(e.log_id);
                let r = match e.payload {
                    EntryPayload::Blank => {
                        d.state.bump_revision();
                        Ok(CommandOutcome::Nothing)
                    }
                    EntryPayload::Normal(cmd) => d.state.apply(&cmd),
                    EntryPayload::Membership(m) => {
                        d.last_membership = StoredMembership::new(Some(e.log_id), m);
                        d.state.bump_revision();
                        Ok(CommandOutcome::Nothing)
                    }
                };
                out.push(r);
            }
            let pruned = d.state.audit_head().pruned_through;
            (
                d.state.take_audit(),
                (pruned > pruned_before).then_some(pruned),
                d.state.take_work_changed(),
            )
        };
        drop(d);
        if !audit.is_empty() || pruned.is_some() {
            self.audit.write_applied(&audit, pruned).map_err(sm_err)?;
        }
        drop(barrier);
        self.publish();
        self.shared.work.wake(&work_changed);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            shared: self.shared.clone(),
            audit: self.audit.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<MemberId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let started = Instant::now();
        let bytes = snapshot.into_inner();
        let data: SmData = bincode::deserialize(&bytes).map_err(sm_err)?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: bytes,
        };
        let barrier = self.audit.barrier();
        // The entries the skipped log produced are recorded as missing (durably) before the
        // snapshot is adopted; `audit::catch_up` fetches them.
        let head = data.state.audit_head();
        let gap =
            tokio::task::block_in_place(|| self.audit.reconcile(head.pruned_through, head.count()))
                .map_err(sm_err)?;
        if let Some(gap) = gap {
            tracing::info!(
                from = gap.from,
                to = gap.to,
                "the installed snapshot covers audit entries not stored here; fetching them"
            );
        }
        tokio::task::block_in_place(|| save_snapshot(&self.db, &stored)).map_err(sm_err)?;
        *self.write() = data;
        drop(barrier);
        self.publish();
        self.shared.work.wake_all();
        metrics::snapshot(SnapshotKind::Installed);
        tracing::info!(
            last_log_index = meta.last_log_id.map(|l| l.index),
            bytes = stored.data.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "installed snapshot"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let s = tokio::task::block_in_place(|| load_snapshot(&self.db)).map_err(snap_err)?;
        Ok(s.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
