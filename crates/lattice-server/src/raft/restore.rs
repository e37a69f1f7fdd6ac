//! Restoring a cluster from a backup taken with `lattice raft snapshot save FILE`: the file's
//! state becomes the durable snapshot of a NEW single-member cluster (this member), as if the
//! log up to the backup's last applied entry had been compacted. Other members then join it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context};
use openraft::{BasicNode, Membership, StoredMembership};

use super::state_machine::{self, SmData};
use super::storage::Db;

/// First bytes of a backup file, followed by the bincode-encoded state machine.
pub const SNAPSHOT_FILE_MAGIC: &[u8] = b"LATTICE-SNAPSHOT-1\n";

/// Writes the backup in `file` into the fresh database at `db_path` as a single-member
/// cluster of `member` reachable at `url`. Refuses a database that already holds Raft state.
pub fn restore(db_path: &Path, file: &Path, member: u64, url: &str) -> anyhow::Result<u64> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let Some(body) = bytes.strip_prefix(SNAPSHOT_FILE_MAGIC) else {
        bail!("{} is not a Lattice snapshot file", file.display());
    };
    let mut data: SmData = bincode::deserialize(body)
        .with_context(|| format!("{} is damaged or from another version", file.display()))?;
    let Some(last) = data.last_applied else {
        bail!(
            "{} holds an empty state; nothing to restore",
            file.display()
        );
    };
    let db = Db::open(db_path)?;
    if db.get_meta::<openraft::Vote<u64>>("vote")?.is_some() || state_machine::has_snapshot(&db)? {
        bail!(
            "{} already holds Raft state; restore into an empty data_dir",
            db_path.display()
        );
    }
    let nodes = BTreeMap::from([(
        member,
        BasicNode {
            addr: url.to_string(),
        },
    )]);
    data.last_membership = StoredMembership::new(
        Some(last),
        Membership::new(vec![BTreeSet::from([member])], nodes),
    );
    state_machine::write_restored(&db, &data)?;
    // The log "ends" at the snapshot: nothing before it will ever be asked for.
    db.put_meta("last_purged", &last)?;
    Ok(last.index)
}
