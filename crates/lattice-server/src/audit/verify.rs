//! [`verify_stored`]: walks the member's stored chain from the anchor to the head (what
//! `GET /api/v1/audit/verify` answers). Every entry's hash must match its content, every
//! `prev_hash` the entry before (the first kept entry's: the replicated anchor), `seq` must
//! run without holes from `pruned_through + 1`, and the last entry must be the replicated
//! head (its `seq` and hash). The walk reads in chunks, so it never holds the log in memory.

use lattice_core::audit::{verify_chain, AuditHead, ChainBreak};
use redb::ReadTransaction;
use serde::Serialize;

use super::gap::Gap;
use super::store::run_in;
use crate::raft::storage::DbError;

const CHUNK: usize = 10_000;

/// What the walk found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Entries that verified (all of them when `error` is `None`).
    pub entries: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub error: Option<BreakReport>,
}

/// The first problem, by `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BreakReport {
    pub seq: u64,
    pub why: String,
}

impl From<ChainBreak> for BreakReport {
    fn from(b: ChainBreak) -> Self {
        BreakReport {
            seq: b.seq,
            why: b.why,
        }
    }
}

/// Walks the rows of `tx` against `head` (read together with `tx`); `gap` explains missing
/// rows that snapshot catch-up has not fetched yet.
pub fn verify_stored(
    tx: &ReadTransaction,
    head: &AuditHead,
    gap: Option<Gap>,
) -> Result<ChainReport, DbError> {
    let mut report = ChainReport {
        entries: 0,
        first_seq: None,
        last_seq: None,
        error: None,
    };
    let missing = |seq: u64| BreakReport {
        seq,
        why: match gap.filter(|g| g.contains(seq)) {
            Some(g) => format!(
                "entries {}..={} are not stored on this member yet (snapshot catch-up in progress)",
                g.from, g.to
            ),
            None => "the entry is missing".to_string(),
        },
    };
    let mut expect = head.pruned_through + 1;
    let mut prev_hash = head.anchor_hash.clone();
    // The first read starts at 0 to catch rows a prune left behind.
    let mut start = 0;
    loop {
        let chunk = run_in(tx, start..=u64::MAX, CHUNK)?;
        start = expect;
        if let Some(e) = chunk.first().filter(|e| e.seq < expect) {
            report.error = Some(BreakReport {
                seq: e.seq,
                why: format!(
                    "stored although entries up to {} were pruned",
                    head.pruned_through
                ),
            });
            return Ok(report);
        }
        let run = chunk
            .iter()
            .zip(expect..)
            .take_while(|(e, seq)| e.seq == *seq)
            .count();
        let (good, rest) = chunk.split_at(run);
        match verify_chain(good, Some(&prev_hash)) {
            Ok(last) => {
                if let (Some(first), Some(last_e)) = (good.first(), good.last()) {
                    report.entries += good.len() as u64;
                    report.first_seq = report.first_seq.or(Some(first.seq));
                    report.last_seq = Some(last_e.seq);
                    expect = last_e.seq + 1;
                    start = expect;
                }
                prev_hash = last.unwrap_or_default();
            }
            Err(b) => {
                report.entries += b.seq.saturating_sub(expect);
                report.error = Some(b.into());
                return Ok(report);
            }
        }
        if !rest.is_empty() {
            report.error = Some(missing(expect));
            return Ok(report);
        }
        if chunk.len() < CHUNK {
            break;
        }
    }
    let count = head.count();
    if expect <= count {
        report.error = Some(missing(expect));
    } else if expect > count + 1 {
        report.error = Some(BreakReport {
            seq: count + 1,
            why: format!("stored beyond the replicated head (entry {count})"),
        });
    } else if prev_hash != head.head_hash {
        report.error = Some(BreakReport {
            seq: count,
            why: "its hash is not the replicated head hash".to_string(),
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::store::overwrite_row;
    use crate::audit::tests::{chain, head_of, store};

    #[test]
    fn an_intact_chain_verifies_and_a_modified_row_is_found() {
        let (_dir, s) = store();
        let c = chain(25, 3);
        s.write_applied(&c, None).unwrap();
        let head = head_of(&c, 0);
        let tx = s.begin_read().unwrap();
        let r = verify_stored(&tx, &head, None).unwrap();
        drop(tx);
        assert_eq!(
            r,
            ChainReport {
                entries: 25,
                first_seq: Some(1),
                last_seq: Some(25),
                error: None
            }
        );

        // An attacker with the database file changes entry 7's user.
        let mut bad = c[6].clone();
        bad.user = "mallory".into();
        overwrite_row(&s, &bad).unwrap();
        let tx = s.begin_read().unwrap();
        let r = verify_stored(&tx, &head, None).unwrap();
        let e = r.error.unwrap();
        assert_eq!((e.seq, r.entries), (7, 6), "{}", e.why);
        assert!(e.why.contains("altered"), "{}", e.why);
    }

    #[test]
    fn pruning_moves_the_anchor_and_missing_or_extra_rows_are_reported() {
        let (_dir, s) = store();
        let c = chain(10, 2);
        s.write_applied(&c, Some(4)).unwrap();
        let head = head_of(&c, 4);
        let tx = s.begin_read().unwrap();
        let r = verify_stored(&tx, &head, None).unwrap();
        assert_eq!((r.error, r.entries, r.first_seq), (None, 6, Some(5)));
        // The replicated head is further than the rows: entries are missing at the end.
        let ahead = head_of(&chain(12, 2), 4);
        let r = verify_stored(&tx, &ahead, None).unwrap();
        assert_eq!(r.error.unwrap().seq, 11);
        // A head with another hash.
        let mut other = head.clone();
        other.head_hash = "0".repeat(64);
        assert_eq!(
            verify_stored(&tx, &other, None).unwrap().error.unwrap().seq,
            10
        );
        drop(tx);
        // A hole in the middle, explained by a recorded gap.
        let (_dir2, s2) = store();
        s2.write_applied(&c[..3], None).unwrap();
        s2.write_applied(&c[6..], None).unwrap();
        let gap = Some(Gap { from: 4, to: 6 });
        let tx = s2.begin_read().unwrap();
        let r = verify_stored(&tx, &head_of(&c, 0), gap).unwrap();
        let e = r.error.unwrap();
        assert_eq!(e.seq, 4);
        assert!(e.why.contains("catch-up"), "{}", e.why);
    }
}
