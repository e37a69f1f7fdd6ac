//! Retention: the leader prunes entries older than `server.audit.retention_days` every
//! `prune_interval_seconds` ([`run`]); `POST /api/v1/audit/prune` runs the same pass at once
//! ([`pass`]).
//!
//! A pass finds the longest run of stored entries after `pruned_through` that are all older
//! than the cutoff (it stops at the first younger entry, so an entry is never pruned early
//! even if clocks made times run backwards across a leader change). When
//! `server.audit.archive_dir` is set it first writes them, as JSON lines, to
//! `archive_dir/audit-<first>-<last>.jsonl` (fsynced, then renamed into place); then it
//! proposes `PruneAudit { through, anchor }`, and every member deletes those rows when it
//! applies the command.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lattice_core::audit::{AuditEntry, AuditHead};
use lattice_core::{Command, CommandOutcome, Timestamp};
use serde::Serialize;
use tokio::sync::watch;

use super::gap::Gap;
use super::store::run_in;
use super::AuditError;
use crate::api::App;
use crate::{clock, forward};

const CHUNK: usize = 10_000;
const DAY_MS: u64 = 86_400_000;

/// What a pass did (the answer of `POST /api/v1/audit/prune`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PruneOutcome {
    pub pruned_through: u64,
    /// Entries pruned by this pass.
    pub pruned: u64,
    /// The archive file written, if any.
    pub archive: Option<PathBuf>,
}

/// What a pass proposes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub through: u64,
    pub anchor: String,
    pub pruned: u64,
    pub archive: Option<PathBuf>,
}

/// The cutoff of retention at `now`.
pub fn retention_cutoff(now: Timestamp, retention_days: u64) -> Timestamp {
    Timestamp(now.0.saturating_sub(retention_days.saturating_mul(DAY_MS)))
}

/// Decides what to prune before `cutoff` and writes the archive. Entries that snapshot
/// catch-up has not fetched yet (`gap`) stop the run: they could not be archived.
pub fn plan(
    tx: &redb::ReadTransaction,
    head: &AuditHead,
    gap: Option<Gap>,
    cutoff: Timestamp,
    archive_dir: Option<&Path>,
) -> Result<Option<Plan>, AuditError> {
    let first = head.pruned_through + 1;
    let stop = gap.map_or(u64::MAX, |g| g.from);
    let mut archive = match archive_dir {
        Some(dir) => Some(Archive::create(dir, first)?),
        None => None,
    };
    let mut last: Option<(u64, String)> = None;
    let mut next = first;
    'walk: loop {
        let chunk = run_in(tx, next..=u64::MAX, CHUNK)?;
        for e in &chunk {
            if e.seq != next || e.seq >= stop || e.time >= cutoff {
                break 'walk;
            }
            if let Some(a) = archive.as_mut() {
                a.write(e)?;
            }
            last = Some((e.seq, e.hash.clone()));
            next = e.seq + 1;
        }
        if chunk.len() < CHUNK {
            break;
        }
    }
    let Some((through, anchor)) = last else {
        if let Some(a) = archive {
            a.discard();
        }
        return Ok(None);
    };
    let archive = match archive {
        Some(a) => Some(a.finish(through)?),
        None => None,
    };
    Ok(Some(Plan {
        through,
        anchor,
        pruned: through - head.pruned_through,
        archive,
    }))
}

/// Runs one pass on the leader with `cutoff` = min(`before`, now - retention).
pub async fn pass(app: &App, before: Option<Timestamp>) -> Result<PruneOutcome, AuditError> {
    let audit = app.audit.clone();
    let _one_at_a_time = audit.pass_lock.lock().await;
    let mut cutoff = retention_cutoff(clock::now(), app.cfg.audit.retention_days);
    if let Some(b) = before {
        cutoff = cutoff.min(b);
    }
    let state = app.state.clone();
    let archive_dir = app.cfg.audit.archive_dir.clone();
    let store = audit.store.clone();
    let (head, planned) = tokio::task::spawn_blocking(move || {
        let (head, tx) = {
            let _barrier = store.barrier();
            let head = state.read().state.audit_head().clone();
            (head, store.begin_read()?)
        };
        let p = plan(&tx, &head, store.gap(), cutoff, archive_dir.as_deref())?;
        Ok::<_, AuditError>((head, p))
    })
    .await
    .map_err(|e| AuditError::Internal(e.to_string()))??;
    let Some(p) = planned else {
        return Ok(PruneOutcome {
            pruned_through: head.pruned_through,
            pruned: 0,
            archive: None,
        });
    };
    let cmd = Command::PruneAudit {
        now: clock::now(),
        through: p.through,
        anchor: p.anchor.clone(),
    };
    let pruned_through = match forward::propose_as_leader(app, cmd).await {
        Ok(CommandOutcome::Audit { head }) => head.pruned_through,
        Ok(_) => p.through,
        Err(e) => return Err(AuditError::Propose(e.error)),
    };
    tracing::info!(
        through = p.through,
        pruned = p.pruned,
        archive = ?p.archive,
        cutoff = %cutoff,
        "pruned the audit log"
    );
    Ok(PruneOutcome {
        pruned_through,
        pruned: p.pruned,
        archive: p.archive,
    })
}

/// The leader's periodic pass; ends when `stop` fires.
pub async fn run(app: App, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_secs(app.cfg.audit.prune_interval_seconds);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if *stop.borrow() {
            return;
        }
        if !app.is_leader() {
            continue;
        }
        if let Err(e) = pass(&app, None).await {
            tracing::warn!(error = %e, "audit retention pass failed; retrying next interval");
        }
    }
}

/// An archive file being written: a hidden temporary name until it is complete.
struct Archive {
    dir: PathBuf,
    tmp: PathBuf,
    first: u64,
    out: std::io::BufWriter<std::fs::File>,
}

impl Archive {
    fn create(dir: &Path, first: u64) -> Result<Archive, AuditError> {
        let io = |e| AuditError::Archive(dir.display().to_string(), e);
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = dir.join(format!(".audit-{first}.jsonl.tmp"));
        let file = std::fs::File::create(&tmp).map_err(io)?;
        Ok(Archive {
            dir: dir.to_path_buf(),
            tmp,
            first,
            out: std::io::BufWriter::new(file),
        })
    }

    fn write(&mut self, e: &AuditEntry) -> Result<(), AuditError> {
        let line = serde_json::to_string(e).map_err(|e| AuditError::Internal(e.to_string()))?;
        writeln!(self.out, "{line}")
            .map_err(|e| AuditError::Archive(self.tmp.display().to_string(), e))
    }

    /// Flushes, fsyncs and renames the file to `audit-<first>-<last>.jsonl`.
    fn finish(self, last: u64) -> Result<PathBuf, AuditError> {
        let path = self.dir.join(format!("audit-{}-{last}.jsonl", self.first));
        let io = |e| AuditError::Archive(path.display().to_string(), e);
        let file = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&self.tmp, &path).map_err(io)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(path)
    }

    fn discard(self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tests::{chain, head_of, store};

    #[test]
    fn a_pass_prunes_the_old_prefix_and_archives_it() {
        let (dir, s) = store();
        // chain(): entry n at time n seconds.
        let c = chain(10, 2);
        s.write_applied(&c, None).unwrap();
        let head = head_of(&c, 0);
        let tx = s.begin_read().unwrap();
        // Nothing older than the cutoff.
        assert_eq!(plan(&tx, &head, None, Timestamp(500), None).unwrap(), None);
        let archive = dir.path().join("archive");
        let p = plan(&tx, &head, None, Timestamp(4_500), Some(&archive))
            .unwrap()
            .unwrap();
        assert_eq!((p.through, p.pruned), (4, 4));
        assert_eq!(p.anchor, c[3].hash);
        let file = archive.join("audit-1-4.jsonl");
        assert_eq!(p.archive.as_deref(), Some(file.as_path()));
        let lines: Vec<AuditEntry> = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, c[..4]);
        // A gap stops the run: those entries could not be archived.
        let p = plan(
            &tx,
            &head,
            Some(Gap { from: 3, to: 5 }),
            Timestamp(9_500),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.through, 2);
        drop(tx);

        // Applying the prune deletes the rows; the next pass starts after them.
        s.write_applied(&[], Some(4)).unwrap();
        let head = head_of(&c, 4);
        let tx = s.begin_read().unwrap();
        let p = plan(&tx, &head, None, Timestamp(6_500), None)
            .unwrap()
            .unwrap();
        assert_eq!((p.through, p.pruned), (6, 2));
        assert_eq!(
            retention_cutoff(Timestamp(10 * DAY_MS), 3),
            Timestamp(7 * DAY_MS)
        );
    }
}
