//! The embedded database (redb) holding one member's Raft log, vote, commit pointer and
//! latest snapshot (and the audit log's tables, `crate::audit::store`). One file,
//! `lattice.redb`, under `data_dir`. Every write transaction is committed durably (fsync)
//! before it returns, except those that say otherwise (the audit rows).

use std::path::Path;

use redb::{Database, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Log entries by index (bincode-encoded `Entry`).
pub const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_logs");
/// Small values: vote, committed, last purged log id, snapshot metadata.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
/// The latest snapshot's bytes under key `data`.
pub const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("storage: {0}")]
    Redb(String),
    #[error("encoding: {0}")]
    Codec(#[from] bincode::Error),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for DbError {
            fn from(e: $t) -> Self {
                DbError::Redb(e.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub struct Db {
    db: Database,
    path: std::path::PathBuf,
}

impl Db {
    pub fn open(path: &Path) -> Result<Db, DbError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| DbError::Redb(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db = Database::create(path)?;
        // Create the tables so that readers never see "table does not exist".
        let tx = db.begin_write()?;
        tx.open_table(LOGS)?;
        tx.open_table(META)?;
        tx.open_table(SNAPSHOT)?;
        tx.commit()?;
        Ok(Db {
            db,
            path: path.to_path_buf(),
        })
    }

    pub fn inner(&self) -> &Database {
        &self.db
    }

    /// Size of the database file in bytes.
    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DbError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(META)?;
        match t.get(key)? {
            Some(v) => Ok(Some(bincode::deserialize(v.value())?)),
            None => Ok(None),
        }
    }

    pub fn put_meta<T: Serialize>(&self, key: &str, value: &T) -> Result<(), DbError> {
        let bytes = bincode::serialize(value)?;
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(META)?;
            t.insert(key, bytes.as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Checks that the database can still be read (for `/healthz`).
    pub fn check(&self) -> Result<(), DbError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(META)?;
        let _ = t.get("vote")?;
        Ok(())
    }
}
