//! [`Gap`]: the entries a member lacks after installing a snapshot (it skipped the log
//! entries that produced them), and [`accept_run`], which checks a run of them fetched from
//! another member and stores it.
//!
//! A fetched run is stored only if it is a valid chain that links to what this member
//! already trusts: the first entry's `prev_hash` is the hash of the stored entry before it
//! (or the replicated anchor when it is the first kept entry), and the last entry of the gap
//! is the `prev_hash` of the stored entry after it (or the replicated head hash when it is
//! the newest entry). The rows and the shrunk gap are written in one durable transaction.

use lattice_core::audit::{verify_chain, AuditEntry, AuditHead};
use serde::{Deserialize, Serialize};

use super::store::{get_in, AuditStore};
use super::AuditError;

/// Entries `from..=to` are missing from this member's store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub from: u64,
    pub to: u64,
}

impl Gap {
    /// What is left once entries up to `pruned_through` are gone anyway.
    pub fn clipped_after(self, pruned_through: u64) -> Option<Gap> {
        let from = self.from.max(pruned_through + 1);
        (from <= self.to).then_some(Gap { from, to: self.to })
    }

    /// The smallest gap covering both (entries in between are fetched again: harmless).
    pub fn union(self, other: Gap) -> Gap {
        Gap {
            from: self.from.min(other.from),
            to: self.to.max(other.to),
        }
    }

    pub fn contains(self, seq: u64) -> bool {
        (self.from..=self.to).contains(&seq)
    }
}

/// Where catch-up stands after a run was accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing is missing any more.
    Done,
    /// Entries from this `seq` on are still missing.
    More(u64),
}

/// Checks `run` (entries fetched from another member, starting at the gap's first entry) and
/// stores it. `head` reads the replicated chain head; it is called under the store's barrier,
/// so the rows and the head agree while the run is checked and written.
pub fn accept_run(
    store: &AuditStore,
    head: impl FnOnce() -> AuditHead,
    run: &[AuditEntry],
) -> Result<Progress, AuditError> {
    let _barrier = store.barrier();
    let head = head();
    let Some(gap) = store.gap() else {
        return Ok(Progress::Done);
    };
    let Some(gap) = gap.clipped_after(head.pruned_through) else {
        store.write_fetched(&[], None)?;
        return Ok(Progress::Done);
    };
    let run: Vec<&AuditEntry> = run.iter().filter(|e| gap.contains(e.seq)).collect();
    let Some(first) = run.first() else {
        return Err(AuditError::CatchUp(format!(
            "the source sent no entry of {}..={}",
            gap.from, gap.to
        )));
    };
    if first.seq != gap.from {
        return Err(AuditError::CatchUp(format!(
            "the source sent entries from {}, expected {}",
            first.seq, gap.from
        )));
    }
    let tx = store.begin_read()?;
    let anchor = if gap.from == head.pruned_through + 1 {
        head.anchor_hash.clone()
    } else {
        match get_in(&tx, gap.from - 1)? {
            Some(e) => e.hash,
            None => {
                return Err(AuditError::CatchUp(format!(
                    "entry {} (before the missing ones) is not stored here either",
                    gap.from - 1
                )))
            }
        }
    };
    let last_hash = verify_chain(run.iter().copied(), Some(&anchor))
        .map_err(|b| AuditError::CatchUp(format!("the fetched entries do not verify: {b}")))?
        .unwrap_or_default();
    let last = run.last().map_or(gap.from, |e| e.seq);
    let rest = if last >= gap.to {
        // The run closes the gap: it must also link to what follows it.
        let links = match get_in(&tx, gap.to + 1)? {
            Some(next) => next.prev_hash == last_hash,
            None if head.count() == gap.to => head.head_hash == last_hash,
            None => {
                return Err(AuditError::CatchUp(format!(
                    "entry {} (after the missing ones) is not stored here",
                    gap.to + 1
                )))
            }
        };
        if !links {
            return Err(AuditError::CatchUp(format!(
                "the fetched entry {} does not link to the chain after it",
                gap.to
            )));
        }
        None
    } else {
        Some(Gap {
            from: last + 1,
            to: gap.to,
        })
    };
    drop(tx);
    let rows: Vec<AuditEntry> = run.into_iter().cloned().collect();
    store.write_fetched(&rows, rest)?;
    Ok(rest.map_or(Progress::Done, |g| Progress::More(g.from)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tests::{chain, head_of, store};

    #[test]
    fn a_gap_is_clipped_by_pruning_and_merged() {
        let g = Gap { from: 5, to: 9 };
        assert_eq!(g.clipped_after(3), Some(g));
        assert_eq!(g.clipped_after(6), Some(Gap { from: 7, to: 9 }));
        assert_eq!(g.clipped_after(9), None);
        assert_eq!(g.union(Gap { from: 8, to: 12 }), Gap { from: 5, to: 12 });
    }

    #[test]
    fn a_snapshot_install_records_the_missing_range_and_a_verified_run_fills_it() {
        let (_dir, s) = store();
        let c = chain(10, 2);
        s.write_applied(&c[..3], None).unwrap();
        // The snapshot's head is at entry 8; entries 9 and 10 are then applied normally.
        assert_eq!(s.reconcile(0, 8).unwrap(), Some(Gap { from: 4, to: 8 }));
        s.write_applied(&c[8..], None).unwrap();
        let head = head_of(&c, 0);
        // Survives a restart (it is in META).
        let db = s.db().clone();
        drop(s);
        let s = AuditStore::open(db).unwrap();
        assert_eq!(s.gap(), Some(Gap { from: 4, to: 8 }));

        // A run that does not start at the gap, or was altered, is refused.
        assert!(accept_run(&s, || head.clone(), &c[4..8]).is_err());
        let mut bad = c[3..8].to_vec();
        bad[2].user = "mallory".into();
        let e = accept_run(&s, || head.clone(), &bad).unwrap_err();
        assert!(e.to_string().contains("entry 6"), "{e}");
        // A forged but self-consistent run does not link to the stored entry 9.
        let forged = chain(8, 3);
        assert!(accept_run(&s, || head.clone(), &forged[3..8]).is_err());
        assert_eq!(s.gap(), Some(Gap { from: 4, to: 8 }));

        // Page by page.
        assert_eq!(
            accept_run(&s, || head.clone(), &c[3..5]).unwrap(),
            Progress::More(6)
        );
        assert_eq!(s.gap(), Some(Gap { from: 6, to: 8 }));
        assert_eq!(
            accept_run(&s, || head.clone(), &c[5..8]).unwrap(),
            Progress::Done
        );
        assert_eq!(s.gap(), None);
        assert_eq!(s.run(1..=100, 100).unwrap(), c);
    }

    #[test]
    fn a_run_ending_at_the_head_links_to_the_head_hash_and_pruning_shrinks_the_gap() {
        let (_dir, s) = store();
        let c = chain(6, 1);
        assert_eq!(s.reconcile(0, 6).unwrap(), Some(Gap { from: 1, to: 6 }));
        let mut wrong_head = head_of(&c, 0);
        wrong_head.head_hash = "f".repeat(64);
        assert!(accept_run(&s, || wrong_head, &c).is_err());
        // Entries up to 2 are pruned meanwhile: the run links to the anchor.
        s.write_applied(&[], Some(2)).unwrap();
        assert_eq!(s.gap(), Some(Gap { from: 3, to: 6 }));
        let head = head_of(&c, 2);
        assert_eq!(accept_run(&s, || head, &c).unwrap(), Progress::Done);
        let seqs: Vec<u64> = s.run(0..=99, 99).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5, 6]);
    }
}
