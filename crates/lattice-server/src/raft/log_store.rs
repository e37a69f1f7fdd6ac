//! The Raft log store on redb: entries, vote, commit pointer and purge pointer. Each append is
//! one durable write transaction (fsync before the flush callback fires), so an entry is on
//! disk before this member acknowledges it.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::ReadableTable;

use super::storage::{Db, DbError, LOGS};
use super::{Entry, LogId, MemberId, StorageError, TypeConfig};

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";

fn read_err(e: impl ToString) -> StorageError {
    StorageIOError::read_logs(AnyError::error(e.to_string())).into()
}

fn write_err(e: impl ToString) -> StorageError {
    StorageIOError::write_logs(AnyError::error(e.to_string())).into()
}

/// The commit index as this member last persisted it (readable by the API).
#[derive(Clone, Default)]
pub struct CommitIndex(Arc<std::sync::atomic::AtomicU64>);

impl CommitIndex {
    /// `None` until something was committed.
    pub fn get(&self) -> Option<u64> {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            v => Some(v - 1),
        }
    }

    fn set(&self, index: Option<u64>) {
        let v = index.map_or(0, |i| i + 1);
        self.0.store(v, std::sync::atomic::Ordering::Relaxed);
    }
}

#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
    committed: CommitIndex,
    /// The newest commit pointer not yet written: it is written with the next append (see
    /// `save_committed`).
    unsaved_committed: Arc<std::sync::Mutex<Option<Option<LogId>>>>,
}

impl LogStore {
    pub fn new(db: Arc<Db>) -> Self {
        LogStore {
            db,
            committed: CommitIndex::default(),
            unsaved_committed: Arc::default(),
        }
    }

    fn unsaved_committed(&self) -> std::sync::MutexGuard<'_, Option<Option<LogId>>> {
        self.unsaved_committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn commit_index(&self) -> CommitIndex {
        self.committed.clone()
    }

    fn read_range(&self, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry>, DbError> {
        let tx = self.db.inner().begin_read()?;
        let t = tx.open_table(LOGS)?;
        let mut out = Vec::new();
        for item in t.range::<u64>(range)? {
            let (_, v) = item?;
            out.push(bincode::deserialize(v.value())?);
        }
        Ok(out)
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, DbError> {
        let tx = self.db.inner().begin_read()?;
        let t = tx.open_table(LOGS)?;
        let last = match t.last()? {
            Some((_, v)) => {
                let e: Entry = bincode::deserialize(v.value())?;
                Some(e.log_id)
            }
            None => None,
        };
        Ok(last)
    }

    fn write_entries(&self, entries: Vec<Entry>) -> Result<(), DbError> {
        let committed = *self.unsaved_committed();
        let tx = self.db.inner().begin_write()?;
        {
            let mut t = tx.open_table(LOGS)?;
            for e in &entries {
                let bytes = bincode::serialize(e)?;
                t.insert(e.log_id.index, bytes.as_slice())?;
            }
            if let Some(c) = committed {
                let bytes = bincode::serialize(&c)?;
                let mut m = tx.open_table(super::storage::META)?;
                m.insert(KEY_COMMITTED, bytes.as_slice())?;
            }
        }
        tx.commit()?;
        if let Some(c) = committed {
            // Unless a newer pointer arrived meanwhile: that one waits for the next append.
            let mut unsaved = self.unsaved_committed();
            if *unsaved == Some(c) {
                *unsaved = None;
            }
        }
        Ok(())
    }

    /// Deletes entries with index in `range`, and records the purge pointer if given.
    fn delete_range(
        &self,
        from: u64,
        to_inclusive: u64,
        purged: Option<&LogId>,
    ) -> Result<(), DbError> {
        let tx = self.db.inner().begin_write()?;
        {
            let mut t = tx.open_table(LOGS)?;
            let keys: Vec<u64> = t
                .range(from..=to_inclusive)?
                .map(|r| r.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?;
            for k in keys {
                t.remove(k)?;
            }
            if let Some(p) = purged {
                let bytes = bincode::serialize(p)?;
                let mut m = tx.open_table(super::storage::META)?;
                m.insert(KEY_PURGED, bytes.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let r = (range.start_bound().cloned(), range.end_bound().cloned());
        tokio::task::block_in_place(|| self.read_range(r)).map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        tokio::task::block_in_place(|| {
            let last_purged: Option<LogId> = self.db.get_meta(KEY_PURGED)?;
            let last = self.last_entry_id()?.or(last_purged);
            Ok::<_, DbError>(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        })
        .map_err(read_err)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<MemberId>) -> Result<(), StorageError> {
        tokio::task::block_in_place(|| self.db.put_meta(KEY_VOTE, vote))
            .map_err(|e| StorageIOError::write_vote(AnyError::error(e.to_string())).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<MemberId>>, StorageError> {
        tokio::task::block_in_place(|| self.db.get_meta(KEY_VOTE))
            .map_err(|e| StorageIOError::read_vote(AnyError::error(e.to_string())).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Written with the next append's transaction, not in one of its own: this runs on
        // the path from a quorum's acknowledgement to apply and the client's answer, once per
        // commit. Losing the newest pointer in a crash only means re-learning it from the
        // leader (openraft treats it as a hint; a stale one is never ahead of the log, which
        // is always durable).
        *self.unsaved_committed() = Some(committed);
        self.committed.set(committed.map(|l| l.index));
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let unsaved = *self.unsaved_committed();
        let c = match unsaved {
            Some(c) => c,
            None => {
                tokio::task::block_in_place(|| self.db.get_meta::<Option<LogId>>(KEY_COMMITTED))
                    .map(Option::flatten)
                    .map_err(read_err)?
            }
        };
        self.committed.set(c.map(|l| l.index));
        Ok(c)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let res = tokio::task::block_in_place(|| self.write_entries(entries));
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tokio::task::block_in_place(|| self.delete_range(log_id.index, u64::MAX, None))
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tokio::task::block_in_place(|| self.delete_range(0, log_id.index, Some(&log_id)))
            .map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;
    use crate::raft::state_machine::StateMachine;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().map_err(write_err)?;
            let db = Arc::new(Db::open(&dir.path().join("lattice.redb")).map_err(write_err)?);
            let sm = StateMachine::open(db.clone()).map_err(write_err)?;
            Ok((dir, LogStore::new(db), sm))
        }
    }

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(term, 1), index),
            payload: openraft::EntryPayload::Blank,
        }
    }

    async fn append(store: &mut LogStore, entries: Vec<Entry>) {
        store.blocking_append(entries).await.unwrap();
    }

    /// The commit pointer is kept in memory at once and written with the next append; a
    /// store opened again on the same file reads what was written, never a pointer ahead of
    /// the log.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_commit_pointer_is_written_with_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(&dir.path().join("lattice.redb")).unwrap());
        let mut store = LogStore::new(db.clone());
        append(&mut store, vec![entry(1, 1), entry(1, 2), entry(1, 3)]).await;
        let two = Some(entry(1, 2).log_id);
        store.save_committed(two).await.unwrap();
        assert_eq!(
            store.read_committed().await.unwrap(),
            two,
            "this process sees it"
        );
        assert_eq!(store.commit_index().get(), Some(2));
        let mut reopened = LogStore::new(db.clone());
        assert_eq!(
            reopened.read_committed().await.unwrap(),
            None,
            "not written yet"
        );

        append(&mut store, vec![entry(1, 4)]).await;
        let mut reopened = LogStore::new(db.clone());
        assert_eq!(reopened.read_committed().await.unwrap(), two);

        // A newer pointer saved after that append waits for the next one.
        let four = Some(entry(1, 4).log_id);
        store.save_committed(four).await.unwrap();
        let mut reopened = LogStore::new(db.clone());
        assert_eq!(reopened.read_committed().await.unwrap(), two);
        append(&mut store, vec![entry(1, 5)]).await;
        let mut reopened = LogStore::new(db);
        assert_eq!(reopened.read_committed().await.unwrap(), four);
    }

    /// openraft's own conformance suite for log stores and state machines (appends, reads
    /// after append, truncation, purging, vote, snapshots).
    /// (It runs each case on a runtime of its own.)
    #[test]
    fn passes_the_openraft_storage_suite() {
        Suite::test_all(Builder).expect("openraft storage suite");
    }
}
