//! [`AuditStore`]: the audit log's rows in the member's redb database (`lattice.redb`, beside
//! the Raft log). Three tables:
//! - [`ENTRIES`]: `seq` -> bincode [`AuditEntry`];
//! - [`BY_TENANT`]: `(tenant, time_ms, seq)`, for one tenant's entries in time order;
//! - [`BY_TIME`]: `(time_ms, seq)`, for every tenant's entries in time order.
//!
//! The state machine writes each apply batch's entries in one write transaction without
//! fsync ([`AuditStore::write_applied`]): they become durable with the next durable commit on
//! the file (the next Raft log append), and a crash before that loses nothing, because the
//! log entries that produced them are re-applied and rewrite identical rows by `seq`.
//!
//! The `barrier` orders the state machine's writes with readers that need rows and the
//! replicated chain head to agree (queries, verify, snapshot building): apply holds it from
//! before it changes the state until its rows are written.

use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard};

use lattice_core::audit::AuditEntry;
use redb::{Durability, ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use super::gap::Gap;
use crate::raft::storage::{Db, DbError, META};

/// Entries by `seq` (bincode-encoded [`AuditEntry`]).
pub const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_entries");
/// `(tenant, time_ms, seq)`: one tenant's entries in time order.
pub const BY_TENANT: TableDefinition<(&str, u64, u64), ()> =
    TableDefinition::new("audit_by_tenant");
/// `(time_ms, seq)`: all entries in time order.
pub const BY_TIME: TableDefinition<(u64, u64), ()> = TableDefinition::new("audit_by_time");

/// META key of the range of entries this member lacks after a snapshot install ([`Gap`]).
pub const GAP_KEY: &str = "audit_missing";

/// Rows deleted per step of a prune (bounds the keys held in memory at once).
const DELETE_CHUNK: usize = 10_000;

pub struct AuditStore {
    db: Arc<Db>,
    barrier: Mutex<()>,
    gap: Mutex<Option<Gap>>,
    gap_changed: tokio::sync::Notify,
}

impl AuditStore {
    /// Opens the audit tables in `db` (creating them) and loads the recorded gap.
    pub fn open(db: Arc<Db>) -> Result<AuditStore, DbError> {
        let tx = db.inner().begin_write()?;
        tx.open_table(ENTRIES)?;
        tx.open_table(BY_TENANT)?;
        tx.open_table(BY_TIME)?;
        tx.commit()?;
        let gap = db.get_meta::<Option<Gap>>(GAP_KEY)?.flatten();
        Ok(AuditStore {
            db,
            barrier: Mutex::new(()),
            gap: Mutex::new(gap),
            gap_changed: tokio::sync::Notify::new(),
        })
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// Held by apply while the state and the rows disagree; see the module header.
    pub fn barrier(&self) -> MutexGuard<'_, ()> {
        self.barrier.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn begin_read(&self) -> Result<ReadTransaction, DbError> {
        Ok(self.db.inner().begin_read()?)
    }

    /// The entries this member still has to fetch (after a snapshot install), if any.
    pub fn gap(&self) -> Option<Gap> {
        *self.gap.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves when the gap may have changed.
    pub async fn gap_changed(&self) {
        self.gap_changed.notified().await
    }

    /// Records `gap` in META within `tx` (the caller updates the cached copy once `tx`
    /// committed, with [`AuditStore::set_gap_cached`]).
    fn put_gap(tx: &WriteTransaction, gap: Option<Gap>) -> Result<(), DbError> {
        let bytes = bincode::serialize(&gap)?;
        let mut t = tx.open_table(META)?;
        t.insert(GAP_KEY, bytes.as_slice())?;
        Ok(())
    }

    fn set_gap_cached(&self, gap: Option<Gap>) {
        let mut g = self.gap.lock().unwrap_or_else(|p| p.into_inner());
        if *g != gap {
            *g = gap;
            self.gap_changed.notify_waiters();
            self.gap_changed.notify_one();
        }
    }

    /// Writes one apply batch's entries and, when the batch moved `pruned_through`, deletes
    /// the rows up to it: one transaction, not fsynced (see the module header).
    pub fn write_applied(
        &self,
        entries: &[AuditEntry],
        prune_through: Option<u64>,
    ) -> Result<(), DbError> {
        let mut tx = self.db.inner().begin_write()?;
        tx.set_durability(Durability::None);
        put_rows(&tx, entries)?;
        let mut gap = self.gap();
        if let Some(through) = prune_through {
            delete_through(&tx, through)?;
            let clipped = gap.and_then(|g| g.clipped_after(through));
            if clipped != gap {
                gap = clipped;
                Self::put_gap(&tx, gap)?;
            }
        }
        tx.commit()?;
        self.set_gap_cached(gap);
        Ok(())
    }

    /// Writes fetched entries and the new gap in one durable transaction (snapshot catch-up).
    pub fn write_fetched(&self, entries: &[AuditEntry], gap: Option<Gap>) -> Result<(), DbError> {
        let tx = self.db.inner().begin_write()?;
        put_rows(&tx, entries)?;
        Self::put_gap(&tx, gap)?;
        tx.commit()?;
        self.set_gap_cached(gap);
        Ok(())
    }

    /// Brings the rows in line with a chain head this member adopted without applying the log
    /// that produced it (a snapshot install, or a start from a restored backup): deletes rows
    /// up to `pruned_through` and records the entries it lacks up to `count` as the gap
    /// (merged with a gap already recorded). Durable: call it before adopting the head.
    pub fn reconcile(&self, pruned_through: u64, count: u64) -> Result<Option<Gap>, DbError> {
        let tx = self.db.inner().begin_write()?;
        delete_through(&tx, pruned_through)?;
        let last = {
            let t = tx.open_table(ENTRIES)?;
            let last = t.last()?.map(|(k, _)| k.value());
            last.unwrap_or(0).max(pruned_through)
        };
        let missing = (last < count).then(|| Gap {
            from: last + 1,
            to: count,
        });
        let gap = match (
            self.gap().and_then(|g| g.clipped_after(pruned_through)),
            missing,
        ) {
            (Some(a), Some(b)) => Some(a.union(b)),
            (a, b) => a.or(b),
        };
        Self::put_gap(&tx, gap)?;
        tx.commit()?;
        self.set_gap_cached(gap);
        Ok(gap)
    }

    /// Stored entry `seq`.
    pub fn get(&self, seq: u64) -> Result<Option<AuditEntry>, DbError> {
        let tx = self.begin_read()?;
        get_in(&tx, seq)
    }

    /// Stored entries with `seq` in `range`, in `seq` order, at most `limit`.
    pub fn run(
        &self,
        range: RangeInclusive<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, DbError> {
        let tx = self.begin_read()?;
        run_in(&tx, range, limit)
    }

    /// `seq` of the last stored entry.
    pub fn last_seq(&self) -> Result<Option<u64>, DbError> {
        let tx = self.begin_read()?;
        let t = tx.open_table(ENTRIES)?;
        let last = t.last()?.map(|(k, _)| k.value());
        Ok(last)
    }
}

/// Stored entry `seq` in a read transaction.
pub fn get_in(tx: &ReadTransaction, seq: u64) -> Result<Option<AuditEntry>, DbError> {
    let t = tx.open_table(ENTRIES)?;
    let e = match t.get(seq)? {
        Some(v) => Some(bincode::deserialize(v.value())?),
        None => None,
    };
    Ok(e)
}

/// Stored entries with `seq` in `range`, in `seq` order, at most `limit`.
pub fn run_in(
    tx: &ReadTransaction,
    range: RangeInclusive<u64>,
    limit: usize,
) -> Result<Vec<AuditEntry>, DbError> {
    let t = tx.open_table(ENTRIES)?;
    let mut out = Vec::new();
    for row in t.range(range)? {
        if out.len() >= limit {
            break;
        }
        let (_, v) = row?;
        out.push(bincode::deserialize(v.value())?);
    }
    Ok(out)
}

/// Inserts (or rewrites) entries and their index rows. A rewrite with other content (which
/// replay never produces) also drops the old content's index rows.
fn put_rows(tx: &WriteTransaction, entries: &[AuditEntry]) -> Result<(), DbError> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut rows = tx.open_table(ENTRIES)?;
    let mut by_tenant = tx.open_table(BY_TENANT)?;
    let mut by_time = tx.open_table(BY_TIME)?;
    for e in entries {
        let bytes = bincode::serialize(e)?;
        let old = rows
            .insert(e.seq, bytes.as_slice())?
            .filter(|old| old.value() != bytes.as_slice())
            .map(|old| bincode::deserialize::<AuditEntry>(old.value()))
            .transpose()?;
        if let Some(old) = old {
            by_tenant.remove((old.tenant.as_str(), old.time.as_millis(), old.seq))?;
            by_time.remove((old.time.as_millis(), old.seq))?;
        }
        let time = e.time.as_millis();
        by_tenant.insert((e.tenant.as_str(), time, e.seq), ())?;
        by_time.insert((time, e.seq), ())?;
    }
    Ok(())
}

/// Deletes entries with `seq <= through` and their index rows; returns how many.
fn delete_through(tx: &WriteTransaction, through: u64) -> Result<u64, DbError> {
    let mut rows = tx.open_table(ENTRIES)?;
    let mut by_tenant = tx.open_table(BY_TENANT)?;
    let mut by_time = tx.open_table(BY_TIME)?;
    let mut deleted = 0;
    loop {
        let mut chunk = Vec::new();
        for row in rows.range(..=through)?.take(DELETE_CHUNK) {
            let (_, v) = row?;
            chunk.push(bincode::deserialize::<AuditEntry>(v.value())?);
        }
        if chunk.is_empty() {
            return Ok(deleted);
        }
        for e in &chunk {
            rows.remove(e.seq)?;
            by_tenant.remove((e.tenant.as_str(), e.time.as_millis(), e.seq))?;
            by_time.remove((e.time.as_millis(), e.seq))?;
            deleted += 1;
        }
    }
}

/// Test helper: overwrites the stored row of `e.seq` as is (no index change), as a tampering
/// attacker with access to the database file would.
#[cfg(test)]
pub(crate) fn overwrite_row(store: &AuditStore, e: &AuditEntry) -> Result<(), DbError> {
    let tx = store.db.inner().begin_write()?;
    {
        let mut t = tx.open_table(ENTRIES)?;
        let bytes = bincode::serialize(e)?;
        t.insert(e.seq, bytes.as_slice())?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tests::{chain, store};

    type TenantRows = Vec<(String, u64, u64)>;

    fn index_rows(s: &AuditStore) -> (TenantRows, Vec<(u64, u64)>) {
        let tx = s.begin_read().unwrap();
        let t = tx.open_table(BY_TENANT).unwrap();
        let by_tenant = t
            .iter()
            .unwrap()
            .map(|r| {
                let (k, _) = r.unwrap();
                let (a, b, c) = k.value();
                (a.to_string(), b, c)
            })
            .collect();
        let t = tx.open_table(BY_TIME).unwrap();
        let by_time = t.iter().unwrap().map(|r| r.unwrap().0.value()).collect();
        (by_tenant, by_time)
    }

    #[test]
    fn rows_and_indexes_are_written_and_a_replay_rewrites_them_identically() {
        let (_dir, s) = store();
        let c = chain(6, 2);
        s.write_applied(&c[..4], None).unwrap();
        s.write_applied(&c[4..], None).unwrap();
        assert_eq!(s.last_seq().unwrap(), Some(6));
        assert_eq!(s.get(3).unwrap().as_ref(), Some(&c[2]));
        assert_eq!(s.run(2..=4, 10).unwrap(), c[1..4]);
        assert_eq!(s.run(1..=6, 2).unwrap(), c[..2]);
        let before = index_rows(&s);
        assert_eq!(before.0.len(), 6);
        assert_eq!(before.0[0], ("t0".to_string(), 2000, 2));
        assert_eq!(before.1[5], (6000, 6));
        // Replay after a restart writes the same entries again: nothing changes.
        s.write_applied(&c, None).unwrap();
        assert_eq!(index_rows(&s), before);
        assert_eq!(s.run(1..=6, 10).unwrap(), c);
        // A rewrite with other content (never produced by replay) leaves no stale index row.
        let mut moved = c[0].clone();
        moved.tenant = "t9".into();
        s.write_applied(std::slice::from_ref(&moved), None).unwrap();
        let (by_tenant, by_time) = index_rows(&s);
        assert_eq!(by_tenant.len(), 6);
        assert!(by_tenant.contains(&("t9".to_string(), 1000, 1)));
        assert!(!by_tenant.contains(&("t1".to_string(), 1000, 1)));
        assert_eq!(by_time.len(), 6);
    }

    #[test]
    fn a_prune_deletes_rows_and_index_rows_up_to_through() {
        let (_dir, s) = store();
        let c = chain(30_000, 5);
        for part in c.chunks(7_000) {
            s.write_applied(part, None).unwrap();
        }
        // More rows than one delete chunk.
        s.write_applied(&[], Some(25_000)).unwrap();
        assert_eq!(s.get(25_000).unwrap(), None);
        assert_eq!(s.run(0..=u64::MAX, 1).unwrap()[0].seq, 25_001);
        let (by_tenant, by_time) = index_rows(&s);
        assert_eq!((by_tenant.len(), by_time.len()), (5_000, 5_000));
        assert!(by_time.iter().all(|(_, seq)| *seq > 25_000));
        // Entries and a prune in the same batch.
        let more = chain(30_002, 5);
        s.write_applied(&more[30_000..], Some(29_000)).unwrap();
        assert_eq!(s.run(0..=u64::MAX, 1).unwrap()[0].seq, 29_001);
        assert_eq!(s.last_seq().unwrap(), Some(30_002));
    }

    #[test]
    fn reconcile_drops_pruned_rows_and_records_what_is_missing() {
        let (_dir, s) = store();
        let c = chain(10, 2);
        s.write_applied(&c[..5], None).unwrap();
        // Nothing missing.
        assert_eq!(s.reconcile(0, 5).unwrap(), None);
        // A snapshot at entry 9 that pruned through 2.
        assert_eq!(s.reconcile(2, 9).unwrap(), Some(Gap { from: 6, to: 9 }));
        assert_eq!(s.run(0..=99, 99).unwrap()[0].seq, 3);
        // A later snapshot (through 7, head 12) shrinks and extends it.
        assert_eq!(s.reconcile(7, 12).unwrap(), Some(Gap { from: 8, to: 12 }));
        assert_eq!(s.last_seq().unwrap(), None);
    }
}
