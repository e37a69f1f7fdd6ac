//! A vCluster's queue, read lazily: [`Queue::next`] gives pending allocations in score order,
//! reading only as many records as the pass asks for.
//!
//! The state indexes pending work by class (`state/queues.rs`): tenant, priority, node count,
//! array and constraints. Within a class the score falls with the submission time alone
//! (aging is monotonic; the other terms are the class's), so a class kept in (submission,
//! ID) order is already in queue order, and the queue is a merge of the classes' heads: one
//! score per allocation read, no sort of the whole queue. Held allocations and those with
//! dependencies are read every cycle; those whose gates are open join the merge.
//!
//! What the pass does not read keeps its place: [`Queue::rest`] names it by class, and the
//! pass decides its reason for the whole class at once (`pass.rs`).

use std::cmp::Reverse;
use std::collections::btree_set;
use std::collections::BinaryHeap;

use crate::allocation::{AllocId, Allocation, Constraints};
use crate::scheduler::cycle::{Cycle, Work};
use crate::scheduler::feasibility::Feasibility;
use crate::scheduler::reasons::{Reasons, Why, NO_REASON};
use crate::scheduler::score::{score, FairShare, NEUTRAL};
use crate::state::{QueueClass, VcQueue};
use crate::time::Timestamp;
use crate::vcluster::VCluster;

/// The empty constraint set, interned first (the usual one).
static PLAIN: Constraints = Constraints {
    features: Vec::new(),
    gpu_type: None,
    min_gpus: None,
    min_memory_gb: None,
    min_cpus: None,
};

/// What the placement loop needs of a pending allocation, with its place in the queue.
#[derive(Clone, Copy)]
pub struct Entry {
    /// See [`sort_key`].
    pub key: u128,
    /// Its index in [`Queue::seen`] (the order it was read in).
    pub pos: u32,
    /// Interned constraint set.
    pub cid: u32,
    pub work: Work,
}

/// An allocation the pass read (in the order read), with its current reason.
pub struct Seen<'a> {
    pub id: AllocId,
    pub alloc: &'a Allocation,
    pub reason: Option<&'a str>,
    pub detail: Option<&'a str>,
}

/// The queue order as one integer: score descending (the bits of a non-negative float order
/// like the float), then the tie-break of `order.rs`: priority descending, oldest; the ID
/// breaks the remaining ties.
fn sort_key(score: f64, priority: u8, submitted_ms: u64) -> u128 {
    let hi = !score.max(0.0).to_bits();
    let tie = (u64::from(255 - priority) << 56) | (submitted_ms & ((1 << 56) - 1));
    (u128::from(hi) << 64) | u128::from(tie)
}

/// An entry's allocation priority (kept in its sort key).
pub fn priority(e: &Entry) -> u8 {
    255 - (e.key as u64 >> 56) as u8
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

/// A class of the state's queue index, as this cycle sees it.
pub struct Class<'a> {
    pub key: &'a QueueClass,
    pub cid: u32,
    pub tenant: Option<u32>,
    fairshare: f64,
    topology: f64,
    /// Taken out of the merge: what is left of it gets one reason (`pass.rs`).
    dropped: bool,
}

impl Class<'_> {
    /// What quotas and caps need of the class's members.
    pub fn work(&self) -> Work {
        Work::for_limits(self.tenant, self.key.nodes, self.key.array)
    }
}

/// The members of one class that share a reason, from the one in the merge on.
struct Source<'a> {
    class: u32,
    reason: Option<&'a str>,
    detail: Option<&'a str>,
    /// The member in the merge (not read yet), if any.
    head: Option<(Timestamp, AllocId)>,
    rest: btree_set::Iter<'a, (Timestamp, AllocId)>,
}

/// An irregular allocation whose gates are open.
struct Open<'a> {
    alloc: &'a Allocation,
    cid: u32,
    work: Work,
    read: bool,
}

pub struct Queue<'a> {
    vc: &'a VCluster,
    pub classes: Vec<Class<'a>>,
    sources: Vec<Source<'a>>,
    open: Vec<Open<'a>>,
    /// (key, ID, source): sources first, then `open` entries.
    heap: BinaryHeap<Reverse<(u128, AllocId, u32)>>,
    /// What was read so far, in order; and why each waits (an interned reason), if decided.
    pub seen: Vec<Seen<'a>>,
    pub why: Vec<u32>,
}

/// The part of a class the pass did not read, by reason.
pub struct Rest<'a> {
    pub class: u32,
    pub reason: Option<&'a str>,
    pub detail: Option<&'a str>,
    pub members: Box<dyn Iterator<Item = (Timestamp, AllocId)> + 'a>,
}

impl<'a> Queue<'a> {
    /// The queue of `vc` from the state's index (`skip`: tenants whose work is placed
    /// elsewhere, see `claims.rs`). Gated irregular allocations are read here and get
    /// their reason; every constraint set is interned.
    pub fn build(
        cx: &Cycle<'a>,
        vc: &'a VCluster,
        feas: &mut Feasibility<'a>,
        index: &'a VcQueue,
        skip: &dyn Fn(&str) -> bool,
        reasons: &mut Reasons<'a>,
    ) -> Self {
        let mut q = Queue {
            vc,
            classes: Vec::new(),
            sources: Vec::new(),
            open: Vec::new(),
            heap: BinaryHeap::new(),
            seen: Vec::new(),
            why: Vec::new(),
        };
        let mut active = vec![false; cx.tenants.len()];
        feas.intern(cx, &PLAIN);
        for (key, by_reason) in &index.classes {
            if skip(&key.tenant) {
                continue;
            }
            let tenant = cx.tenant_of(&key.tenant);
            if let Some(t) = tenant {
                active[t as usize] = true;
            }
            let class = q.classes.len() as u32;
            q.classes.push(Class {
                key,
                cid: feas.intern(cx, &key.constraints) as u32,
                tenant,
                fairshare: NEUTRAL,
                topology: 1.0,
                dropped: false,
            });
            for ((reason, detail), members) in by_reason {
                q.sources.push(Source {
                    class,
                    reason: reason.as_deref(),
                    detail: detail.as_deref(),
                    head: None,
                    rest: members.iter(),
                });
            }
        }
        for &id in &index.irregular {
            let Some(a) = cx.state.allocation(id) else {
                continue;
            };
            if skip(&a.tenant) {
                continue;
            }
            if let Some(w) = gate(cx, a) {
                let i = reasons.intern(w);
                q.push_seen(a, i);
                continue;
            }
            let work = Work::of(cx, a);
            if let Some(t) = work.tenant() {
                active[t as usize] = true;
            }
            let cid = feas.intern(cx, &a.constraints) as u32;
            q.open.push(Open {
                alloc: a,
                cid,
                work,
                read: false,
            });
        }

        // Fair-share terms of the tenants with work here; topology terms per class.
        let names = (0..active.len())
            .filter(|&t| active[t])
            .map(|t| cx.tenants[t].name.as_str());
        let fairshare = FairShare::for_tenants(cx.state, vc, cx.now, names);
        let terms: Vec<f64> = cx
            .tenants
            .iter()
            .enumerate()
            .map(|(t, x)| {
                if active[t] {
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
        let topology = |cid: u32, nodes: u32| {
            if groups {
                1.0 / feas.groups_for(cid as usize, nodes as usize) as f64
            } else {
                1.0
            }
        };
        for c in &mut q.classes {
            c.fairshare = c.tenant.map_or(NEUTRAL, |t| terms[t as usize]);
            c.topology = topology(c.cid, c.key.nodes);
        }
        for s in 0..q.sources.len() {
            q.advance(cx, s);
        }
        let n = q.sources.len();
        let open: Vec<_> = q
            .open
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let fs = o.work.tenant().map_or(NEUTRAL, |t| terms[t as usize]);
                let a = o.alloc;
                let key = q.key(cx, a.priority, a.submitted_at, fs, topology(o.cid, a.nodes));
                Reverse((key, a.id, (n + i) as u32))
            })
            .collect();
        q.heap.extend(open);
        q
    }

    fn key(&self, cx: &Cycle<'_>, priority: u8, submitted: Timestamp, fs: f64, topo: f64) -> u128 {
        let ms = submitted.as_millis();
        let s = score(&self.vc.weights, priority, ms, cx.now, fs, topo);
        sort_key(tiered(self.vc, priority, s), priority, ms)
    }

    /// Puts source `s`'s next member into the merge.
    fn advance(&mut self, cx: &Cycle<'_>, s: usize) {
        let src = &mut self.sources[s];
        src.head = src.rest.next().copied();
        let Some((submitted, id)) = src.head else {
            return;
        };
        let c = &self.classes[src.class as usize];
        let key = self.key(cx, c.key.priority, submitted, c.fairshare, c.topology);
        self.heap.push(Reverse((key, id, s as u32)));
    }

    fn push_seen(&mut self, a: &'a Allocation, why: u32) -> u32 {
        let pos = self.seen.len() as u32;
        self.seen.push(Seen {
            id: a.id,
            alloc: a,
            reason: a.reason.as_deref(),
            detail: a.reason_detail.as_deref(),
        });
        self.why.push(why);
        pos
    }

    /// The next allocation in queue order, and its class (`None`: an irregular one).
    pub fn next(&mut self, cx: &Cycle<'a>) -> Option<(Entry, Option<u32>)> {
        let n = self.sources.len();
        loop {
            let Reverse((key, id, s)) = self.heap.pop()?;
            let s = s as usize;
            if s >= n {
                let o = &mut self.open[s - n];
                o.read = true;
                let (a, cid, work) = (o.alloc, o.cid, o.work);
                let pos = self.push_seen(a, NO_REASON);
                return Some((
                    Entry {
                        key,
                        pos,
                        cid,
                        work,
                    },
                    None,
                ));
            }
            let class = self.sources[s].class;
            if self.classes[class as usize].dropped {
                continue; // its head stays: it is part of what is left
            }
            let (reason, detail) = (self.sources[s].reason, self.sources[s].detail);
            self.advance(cx, s);
            let Some(a) = cx.state.allocation(id) else {
                continue;
            };
            let c = &self.classes[class as usize];
            let (cid, work) = (c.cid, Work::with_tenant(c.tenant, a));
            let pos = self.seen.len() as u32;
            self.seen.push(Seen {
                id,
                alloc: a,
                reason,
                detail,
            });
            self.why.push(NO_REASON);
            return Some((
                Entry {
                    key,
                    pos,
                    cid,
                    work,
                },
                Some(class),
            ));
        }
    }

    /// Takes `class` out of the merge: the pass decides the reason of the rest of it at
    /// once.
    pub fn drop_class(&mut self, class: u32) {
        self.classes[class as usize].dropped = true;
    }

    /// What was not read: the rest of every class, by reason.
    pub fn rest(&self) -> impl Iterator<Item = Rest<'a>> + '_ {
        self.sources
            .iter()
            .filter(|s| s.head.is_some())
            .map(|s| Rest {
                class: s.class,
                reason: s.reason,
                detail: s.detail,
                members: Box::new(s.head.into_iter().chain(s.rest.clone().copied())),
            })
    }

    /// Irregular allocations with open gates that were not read.
    pub fn open_rest(&self) -> impl Iterator<Item = (&'a Allocation, u32, Work)> + '_ {
        self.open
            .iter()
            .filter(|o| !o.read)
            .map(|o| (o.alloc, o.cid, o.work))
    }
}
