//! Reading the audit log through its indexes: [`Filter`] (what a query asks for, already
//! scoped to the caller) and [`page`], which walks `BY_TENANT` (one range per tenant, merged
//! in `(time, seq)` order) or `BY_TIME` (every tenant), loads the matching rows and stops
//! after `limit` entries.
//!
//! Paging is by position: the cursor is the `(time_ms, seq)` of the last index row a page
//! consumed, and the next page starts right after it. Each page examines at most `max_scan`
//! index rows, so a selective filter (one user in a large tenant) cannot make a request
//! walk the whole log: such a page may hold fewer than `limit` entries while its
//! `next` is still set.

use std::ops::Bound;

use lattice_core::audit::AuditEntry;
use redb::ReadTransaction;

use super::store::{get_in, BY_TENANT, BY_TIME};
use crate::raft::storage::DbError;

/// A position in time order: `(time_ms, seq)`.
pub type Key = (u64, u64);

/// Which tenants' entries a query reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tenants {
    All,
    /// These tenants only (none: the answer is empty).
    Only(Vec<String>),
}

/// A query, scoped to what the caller may see.
#[derive(Clone, Debug)]
pub struct Filter {
    pub tenants: Tenants,
    /// Inclusive, Unix milliseconds.
    pub from: Option<u64>,
    /// Exclusive, Unix milliseconds.
    pub to: Option<u64>,
    pub user: Option<String>,
    pub allocation: Option<u64>,
    pub node: Option<String>,
    pub action: Option<String>,
    /// Start after this position.
    pub after: Option<Key>,
    pub limit: usize,
    /// Index rows one page may examine.
    pub max_scan: usize,
}

/// One page of a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub entries: Vec<AuditEntry>,
    /// Where the next page starts; `None` when nothing more matches.
    pub next: Option<Key>,
}

impl Filter {
    /// Whether some field other than tenant and time narrows the result.
    fn narrows(&self) -> bool {
        self.user.is_some()
            || self.allocation.is_some()
            || self.node.is_some()
            || self.action.is_some()
    }

    fn matches(&self, e: &AuditEntry) -> bool {
        self.user.as_ref().is_none_or(|u| *u == e.user)
            && self.allocation.is_none_or(|a| e.allocation == Some(a))
            && self.node.as_ref().is_none_or(|n| e.nodes.contains(n))
            && self.action.as_ref().is_none_or(|a| *a == e.action)
    }

    /// The first position to read and the end of the time range.
    fn bounds(&self) -> (Key, Bound<Key>) {
        let mut start = (self.from.unwrap_or(0), 0);
        if let Some((t, s)) = self.after {
            let next = match s.checked_add(1) {
                Some(s) => (t, s),
                None => (t.saturating_add(1), 0),
            };
            start = start.max(next);
        }
        let end = match self.to {
            Some(to) => Bound::Excluded((to, 0)),
            None => Bound::Unbounded,
        };
        (start, end)
    }
}

/// The index positions of a query in `(time, seq)` order.
type Keys = Box<dyn Iterator<Item = Result<Key, DbError>>>;

fn keys(tx: &ReadTransaction, f: &Filter) -> Result<Keys, DbError> {
    let (start, end) = f.bounds();
    match &f.tenants {
        Tenants::All => {
            let t = tx.open_table(BY_TIME)?;
            let range = t.range::<Key>((Bound::Included(start), end))?;
            Ok(Box::new(range.map(|r| {
                let (k, _) = r?;
                Ok(k.value())
            })))
        }
        Tenants::Only(tenants) => {
            let t = tx.open_table(BY_TENANT)?;
            let mut heads = Vec::new();
            for tenant in tenants {
                let lo = (tenant.as_str(), start.0, start.1);
                let hi = match end {
                    Bound::Excluded((a, b)) => Bound::Excluded((tenant.as_str(), a, b)),
                    _ => Bound::Included((tenant.as_str(), u64::MAX, u64::MAX)),
                };
                let range = t.range::<(&str, u64, u64)>((Bound::Included(lo), hi))?;
                let it: Keys = Box::new(range.map(|r| {
                    let (k, _) = r?;
                    let (_, time, seq) = k.value();
                    Ok((time, seq))
                }));
                heads.push(it.peekable());
            }
            Ok(Box::new(Merge { heads }))
        }
    }
}

/// Merges per-tenant key streams (each in order) into one ordered stream.
struct Merge {
    heads: Vec<std::iter::Peekable<Keys>>,
}

impl Iterator for Merge {
    type Item = Result<Key, DbError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut best: Option<(usize, Key)> = None;
        for (i, h) in self.heads.iter_mut().enumerate() {
            match h.peek() {
                // Report an error at once.
                Some(Err(_)) => return h.next(),
                Some(Ok(k)) if best.is_none_or(|(_, b)| *k < b) => best = Some((i, *k)),
                _ => {}
            }
        }
        let (i, _) = best?;
        self.heads[i].next()
    }
}

/// One page of `f` from the database as of `tx`.
pub fn page(tx: &ReadTransaction, f: &Filter) -> Result<Page, DbError> {
    let mut entries: Vec<AuditEntry> = Vec::new();
    if f.limit == 0 || f.tenants == Tenants::Only(Vec::new()) {
        return Ok(Page {
            entries,
            next: None,
        });
    }
    let narrows = f.narrows();
    let mut last_returned: Option<Key> = None;
    for (scanned, key) in keys(tx, f)?.enumerate() {
        let key = key?;
        let full = entries.len() >= f.limit;
        if full && !narrows {
            // Another entry exists: it starts the next page.
            return Ok(Page {
                entries,
                next: last_returned,
            });
        }
        // An index row whose entry is gone (pruned meanwhile) is skipped.
        if let Some(e) = get_in(tx, key.1)?.filter(|e| f.matches(e)) {
            if full {
                return Ok(Page {
                    entries,
                    next: last_returned,
                });
            }
            entries.push(e);
            last_returned = Some(key);
        }
        if scanned + 1 >= f.max_scan {
            return Ok(Page {
                entries,
                next: Some(key),
            });
        }
    }
    Ok(Page {
        entries,
        next: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tests::{chain, store};

    fn filter(tenants: Tenants) -> Filter {
        Filter {
            tenants,
            from: None,
            to: None,
            user: None,
            allocation: None,
            node: None,
            action: None,
            after: None,
            limit: 1000,
            max_scan: usize::MAX,
        }
    }

    fn only(ts: &[&str]) -> Tenants {
        Tenants::Only(ts.iter().map(|t| t.to_string()).collect())
    }

    fn seqs(p: &Page) -> Vec<u64> {
        p.entries.iter().map(|e| e.seq).collect()
    }

    /// Every page of `f`, following the cursor.
    fn all_pages(tx: &ReadTransaction, mut f: Filter) -> (Vec<u64>, usize) {
        let mut out = Vec::new();
        let mut pages = 0;
        loop {
            let p = page(tx, &f).unwrap();
            pages += 1;
            out.extend(seqs(&p));
            match p.next {
                Some(k) => f.after = Some(k),
                None => return (out, pages),
            }
        }
    }

    #[test]
    fn index_ranges_are_in_time_order_with_exclusive_to() {
        let (_dir, s) = store();
        let mut c = chain(20, 3);
        // Entry 5's time runs backwards (a leader change with a slower clock).
        c[4].time = lattice_core::Timestamp(1500);
        s.write_applied(&c, None).unwrap();
        let tx = s.begin_read().unwrap();
        let all = page(&tx, &filter(Tenants::All)).unwrap();
        assert_eq!(seqs(&all)[..4], [1, 5, 2, 3]);
        assert_eq!(all.next, None);
        // t1: seq % 3 == 1.
        let p = page(&tx, &filter(only(&["t1"]))).unwrap();
        assert_eq!(seqs(&p), [1, 4, 7, 10, 13, 16, 19]);
        let mut f = filter(only(&["t1", "t2"]));
        f.from = Some(4000);
        f.to = Some(11_000);
        assert_eq!(seqs(&page(&tx, &f).unwrap()), [4, 7, 8, 10]);
        f.tenants = Tenants::All;
        assert_eq!(seqs(&page(&tx, &f).unwrap()), [4, 6, 7, 8, 9, 10]);
        // Unknown tenant, or none: nothing.
        assert!(page(&tx, &filter(only(&["nope"])))
            .unwrap()
            .entries
            .is_empty());
        assert!(page(&tx, &filter(only(&[]))).unwrap().entries.is_empty());
    }

    #[test]
    fn field_filters_narrow_the_result() {
        let (_dir, s) = store();
        let c = chain(24, 2);
        s.write_applied(&c, None).unwrap();
        let tx = s.begin_read().unwrap();
        let mut f = filter(Tenants::All);
        f.user = Some("u1".into());
        assert_eq!(seqs(&page(&tx, &f).unwrap()), [1, 4, 7, 10, 13, 16, 19, 22]);
        f.node = Some("n1".into());
        assert_eq!(seqs(&page(&tx, &f).unwrap()), [1, 13]);
        f.action = Some("allocation.started".into());
        assert!(page(&tx, &f).unwrap().entries.is_empty());
        let mut f = filter(only(&["t0"]));
        f.allocation = Some(110);
        assert_eq!(seqs(&page(&tx, &f).unwrap()), [10]);
        f.action = Some("allocation.started".into());
        assert_eq!(seqs(&page(&tx, &f).unwrap()), [10]);
    }

    #[test]
    fn pages_follow_the_cursor_to_the_end_without_gaps_or_repeats() {
        let (_dir, s) = store();
        let c = chain(100, 4);
        s.write_applied(&c, None).unwrap();
        let tx = s.begin_read().unwrap();
        for limit in [1, 7, 25, 100, 1000] {
            let mut f = filter(only(&["t1", "t3"]));
            f.limit = limit;
            let (got, pages) = all_pages(&tx, f);
            let want: Vec<u64> = (1..=100).filter(|s| s % 2 == 1).collect();
            assert_eq!(got, want, "limit {limit}");
            // The last page ends with `next: None` exactly at the end.
            assert_eq!(pages, 50usize.div_ceil(limit), "limit {limit}");
        }
        // With a narrowing filter too.
        let mut f = filter(Tenants::All);
        f.user = Some("u2".into());
        f.limit = 5;
        let (got, pages) = all_pages(&tx, f);
        assert_eq!(got, (1..=100).filter(|s| s % 3 == 2).collect::<Vec<_>>());
        assert_eq!(pages, 7);
    }

    #[test]
    fn a_page_stops_at_the_scan_budget_and_the_cursor_resumes_there() {
        let (_dir, s) = store();
        let c = chain(100, 1);
        s.write_applied(&c, None).unwrap();
        let tx = s.begin_read().unwrap();
        let mut f = filter(Tenants::All);
        f.allocation = Some(190); // entry 90 only
        f.max_scan = 30;
        let p = page(&tx, &f).unwrap();
        assert!(p.entries.is_empty());
        assert_eq!(p.next, Some((30_000, 30)));
        let (got, pages) = all_pages(&tx, f);
        assert_eq!((got, pages), (vec![90], 4));
    }
}
