//! Building a vCluster's queue: every pending allocation is read once, in ID order, into a
//! compact [`Entry`] (or a gate reason: held, dependency), scored, and the entries are sorted
//! by score. Large queues are split in two halves, each read, scored and sorted in place on
//! its own thread (all three are independent per allocation); the sorted halves are merged,
//! and positions break the last ties, so the result is the same as on one thread.

use crate::allocation::{AllocId, Allocation, Constraints};
use crate::scheduler::cycle::{Cycle, Work};
use crate::scheduler::feasibility::Feasibility;
use crate::scheduler::reasons::{Reasons, Why};
use crate::scheduler::score::{score, FairShare, NEUTRAL};
use crate::vcluster::VCluster;

/// Below this many pending allocations a queue is built on one thread.
pub const PARALLEL_FROM: usize = 20_000;

/// The empty constraint set, interned first so that threads can use its ID.
static PLAIN: Constraints = Constraints {
    features: Vec::new(),
    gpu_type: None,
    min_gpus: None,
    min_memory_gb: None,
    min_cpus: None,
};

/// What the placement loop needs of a pending allocation, with its place in the queue (48
/// bytes): entries are sorted themselves, so the loop reads them in order.
#[derive(Clone, Copy)]
pub struct Entry {
    /// See [`sort_key`]; the tie-break half first, the score half once terms are known.
    pub key: u128,
    /// Index in the vCluster's pending list (ID order): the last tie-break.
    pub pos: u32,
    /// Interned constraint set.
    pub cid: u32,
    pub work: Work,
}

/// What the reason and estimate passes need of every pending allocation (read in the same
/// pass as the entries, so that each allocation record is visited once).
pub struct Seen<'a> {
    pub id: AllocId,
    pub reason: Option<&'a str>,
    pub detail: Option<&'a str>,
    pub estimate: Option<u64>,
}

/// The queue order as one integer: score descending (the bits of a non-negative float order
/// like the float), then the tie-break of `order.rs`: priority descending, oldest; the
/// position (ID order) breaks the remaining ties.
fn sort_key(score: f64, tie_break: u64) -> u128 {
    let hi = !score.max(0.0).to_bits();
    (u128::from(hi) << 64) | u128::from(tie_break)
}

fn tie_break(priority: u8, submitted_ms: u64) -> u64 {
    (u64::from(255 - priority) << 56) | (submitted_ms & ((1 << 56) - 1))
}

/// The priority a tie-break half was made from.
/// An entry's allocation priority (kept in its sort key).
pub fn priority(e: &Entry) -> u8 {
    priority_of(e.key)
}

fn priority_of(key: u128) -> u8 {
    255 - (key as u64 >> 56) as u8
}

/// The submission time a tie-break half was made from.
fn submitted_of(key: u128) -> u64 {
    key as u64 & ((1 << 56) - 1)
}

/// What reading part of the pending list gives.
struct Part<'a> {
    entries: Vec<Entry>,
    seen: Vec<Seen<'a>>,
    /// Held or dependency-waiting allocations: (position, why).
    gates: Vec<(usize, Why<'a>)>,
    /// Entries (indices into `entries`) whose constraints are not empty: interned later.
    odd: Vec<usize>,
    /// Tenants (by index) with work in this part.
    tenants: Vec<bool>,
}

/// Why `a` is not considered for placement at all this cycle, if it is not: it is held, or
/// waits for a dependency.
pub fn gate<'a>(cx: &Cycle<'a>, a: &'a Allocation) -> Option<Why<'a>> {
    if a.held {
        return Some(Why::Held);
    }
    cx.state.unmet_dependency(a).map(|(d, _)| Why::Dependency {
        on: d.on,
        array: d.array,
        kind: d.kind,
    })
}

fn read<'a>(cx: &Cycle<'a>, pending: &[&'a Allocation], offset: usize, plain: u32) -> Part<'a> {
    let mut p = Part {
        entries: Vec::with_capacity(pending.len()),
        seen: Vec::with_capacity(pending.len()),
        gates: Vec::new(),
        odd: Vec::new(),
        tenants: vec![false; cx.tenants.len()],
    };
    // Consecutive allocations mostly share a tenant (an array's elements always do): its
    // index is looked up again only when the name changes.
    let mut last: Option<(&str, Option<u32>)> = None;
    for (i, &a) in pending.iter().enumerate() {
        let pos = offset + i;
        p.seen.push(Seen {
            id: a.id,
            reason: a.reason.as_deref(),
            detail: a.reason_detail.as_deref(),
            estimate: a.estimated_start.map(|t| t.as_millis()),
        });
        if let Some(why) = gate(cx, a) {
            p.gates.push((pos, why));
            continue;
        }
        let tenant = match last {
            Some((name, t)) if name == a.tenant => t,
            _ => {
                let t = cx.tenant_of(&a.tenant);
                last = Some((a.tenant.as_str(), t));
                t
            }
        };
        let work = Work::with_tenant(tenant, a);
        if let Some(t) = work.tenant() {
            p.tenants[t as usize] = true;
        }
        let cid = if a.constraints == PLAIN {
            plain
        } else {
            p.odd.push(p.entries.len());
            u32::MAX
        };
        p.entries.push(Entry {
            key: u128::from(tie_break(a.priority, a.submitted_at.as_millis())),
            pos: pos as u32,
            cid,
            work,
        });
    }
    p
}

/// Scores entries: the score half of each key.
fn score_all(
    entries: &mut [Entry],
    vc: &VCluster,
    cx: &Cycle<'_>,
    feas: &Feasibility<'_>,
    groups: bool,
    terms: &[f64],
) {
    for e in entries {
        let topology = if groups {
            1.0 / feas.groups_for(e.cid as usize, e.work.nodes as usize) as f64
        } else {
            1.0
        };
        let fs = e.work.tenant().map_or(NEUTRAL, |t| terms[t as usize]);
        let (priority, submitted) = (priority_of(e.key), submitted_of(e.key));
        let s = score(&vc.weights, priority, submitted, cx.now, fs, topology);
        e.key = sort_key(tiered(vc, priority, s), e.key as u64);
    }
}

/// Scores are at most 4 x 1e6 (four terms in [0, 1] weighted at most [`MAX_WEIGHT`]).
///
/// [`MAX_WEIGHT`]: crate::vcluster::MAX_WEIGHT
const TIER: f64 = 1e8;

/// In a vCluster with preemption on, priority is a tier: work of a higher priority comes
/// before all work of a lower one, whatever the other terms say (it could take the nodes by
/// preemption anyway; ordering by tier first keeps a cycle from starting lower-priority work
/// that the next cycle would preempt). The score orders work within a tier.
fn tiered(vc: &VCluster, priority: u8, score: f64) -> f64 {
    if vc.preemption {
        f64::from(priority) * TIER + score
    } else {
        score
    }
}

fn by_key(e: &Entry) -> (u128, u32) {
    (e.key, e.pos)
}

/// What every pending allocation had, by position: the parts read on each thread, kept as
/// they are (joining them would copy, and fault in, tens of megabytes per cycle at a million
/// pending).
pub struct SeenList<'a> {
    parts: Vec<Vec<Seen<'a>>>,
}

impl<'a> SeenList<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &Seen<'a>> {
        self.parts.iter().flatten()
    }
}

impl<'a> std::ops::Index<usize> for SeenList<'a> {
    type Output = Seen<'a>;

    fn index(&self, mut pos: usize) -> &Seen<'a> {
        for p in &self.parts {
            if pos < p.len() {
                return &p[pos];
            }
            pos -= p.len();
        }
        panic!("position {pos} past the pending list")
    }
}

/// Reads, gates, scores and sorts a vCluster's pending allocations (`pending` in ID order).
/// Gated allocations get their reason in `why` (by position); the others come back sorted,
/// with what every allocation had (`Seen`, by position).
pub fn build<'a>(
    cx: &Cycle<'a>,
    vc: &'a VCluster,
    feas: &mut Feasibility<'a>,
    pending: &[&'a Allocation],
    reasons: &mut Reasons<'a>,
    why: &mut [u32],
) -> (Vec<Entry>, SeenList<'a>) {
    let parallel = pending.len() >= cx.parallel_from.max(2);
    let mid = pending.len() / 2;
    let plain = feas.intern(cx, &PLAIN) as u32;
    let mut parts: Vec<Part<'a>> = if parallel {
        let (low, high) = pending.split_at(mid);
        std::thread::scope(|s| {
            let h = s.spawn(|| read(cx, high, mid, plain));
            let first = read(cx, low, 0, plain);
            let second = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            vec![first, second]
        })
    } else {
        vec![read(cx, pending, 0, plain)]
    };

    // Intern what the threads could not, in position order.
    let mut tenants = vec![false; cx.tenants.len()];
    for p in &mut parts {
        for (pos, w) in p.gates.drain(..) {
            why[pos] = reasons.intern(w);
        }
        for &k in &p.odd {
            let e = &mut p.entries[k];
            e.cid = feas.intern(cx, &pending[e.pos as usize].constraints) as u32;
        }
        for (t, any) in p.tenants.iter().enumerate() {
            tenants[t] |= *any;
        }
    }

    // Scores, with the fair-share terms of the tenants that have work here.
    let names = (0..tenants.len())
        .filter(|&t| tenants[t])
        .map(|t| cx.tenants[t].name.as_str());
    let fairshare = FairShare::for_tenants(cx.state, vc, cx.now, names);
    let terms: Vec<f64> = cx
        .tenants
        .iter()
        .enumerate()
        .map(|(t, x)| {
            if tenants[t] {
                fairshare.term(&x.name)
            } else {
                NEUTRAL
            }
        })
        .collect();
    let groups = feas.has_groups(cx);
    if groups {
        feas.prepare_all_groups(cx);
    }
    let feas: &Feasibility<'a> = feas;
    // Each part is scored and sorted in place (on its own thread), then the two are merged.
    // (key, position) pairs are distinct, so an unstable sort gives one order; positions are
    // in ID order, so they break the last ties by ID.
    let sort = |entries: &mut Vec<Entry>| {
        score_all(entries, vc, cx, feas, groups, &terms);
        entries.sort_unstable_by_key(by_key);
    };
    let seen = SeenList {
        parts: parts
            .iter_mut()
            .map(|p| std::mem::take(&mut p.seen))
            .collect(),
    };
    let entries = match &mut parts[..] {
        [one] => {
            sort(&mut one.entries);
            std::mem::take(&mut one.entries)
        }
        [low, high] => {
            std::thread::scope(|s| {
                let h = s.spawn(|| sort(&mut high.entries));
                sort(&mut low.entries);
                h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            });
            merge(&low.entries, &high.entries)
        }
        _ => Vec::new(),
    };
    (entries, seen)
}

/// Merges two sorted runs.
fn merge(a: &[Entry], b: &[Entry]) -> Vec<Entry> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if by_key(&a[i]) <= by_key(&b[j]) {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}
