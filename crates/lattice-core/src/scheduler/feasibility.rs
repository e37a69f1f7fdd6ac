//! Feasibility: which free nodes of a vCluster an allocation may use, and which ones to take.
//!
//! Candidates are computed once per distinct constraint set per vCluster per cycle, as
//! buckets of free matching nodes (in ID order), one per topology group. Each bucket keeps a
//! cursor past its taken prefix and the exact count of what is still untaken (a take updates
//! every set's buckets), so a request that cannot be met fails in O(buckets) and 100k queued
//! jobs do not rescan 10k nodes each. Node choice depends only on which nodes are free, never
//! on the order in which constraint sets were first seen.
//!
//! Taking N nodes is best fit: the group with the fewest untaken candidates that still holds
//! N (packing multi-node work into one group, and keeping large groups whole); failing that,
//! the largest groups first. Once the vCluster has a backfill reservation, buckets are also
//! split by whether their nodes match the reservation's constraints, so backfill can prefer
//! nodes the reservation does not need.

use std::collections::HashMap;

use crate::allocation::Constraints;
use crate::scheduler::cycle::{Cycle, FastMap};

/// Which buckets a pick may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Any candidate, best fit.
    Any,
    /// Only nodes that do not match the reservation's constraints.
    Unreserved,
    /// As few nodes matching the reservation's constraints as possible.
    FewestReserved,
}

struct Bucket {
    /// (topology group, matches the reservation's constraints): buckets are ordered by it.
    key: (u32, bool),
    nodes: Vec<u32>,
    /// Entries before `pos` are all taken.
    pos: usize,
    /// Untaken entries (exact: every take updates every set's buckets).
    count: usize,
}

impl Bucket {
    /// The first `k` untaken nodes, advancing past the taken prefix.
    fn scan(&mut self, taken: &[bool], k: usize, out: &mut Vec<(usize, u32)>, me: usize) {
        while self.pos < self.nodes.len() && taken[self.nodes[self.pos] as usize] {
            self.pos += 1;
        }
        let mut got = 0;
        for &n in &self.nodes[self.pos..] {
            if got == k {
                break;
            }
            if !taken[n as usize] {
                out.push((me, n));
                got += 1;
            }
        }
    }
}

struct Candidates<'c> {
    constraints: &'c Constraints,
    /// Sorted by key.
    buckets: Vec<Bucket>,
    /// For each node of the cycle: the bucket holding it, or `NONE`.
    slot: Vec<u32>,
    /// Untaken candidates by class: [not matching the reservation, matching it].
    free: [usize; 2],
    /// Matching members in any state.
    total: usize,
    /// Matching members that may take work at some point (lazily computed).
    usable: Option<Vec<u32>>,
    /// Usable matching members per topology group, largest first (lazily computed).
    group_sizes: Option<Vec<usize>>,
}

const NONE: u32 = u32::MAX;

pub struct Feasibility<'c> {
    /// The vCluster's nodes (indices into the cycle's node table), in ID order.
    members: Vec<u32>,
    ids: FastMap<&'c Constraints, usize>,
    /// The ID of the empty constraint set, once seen.
    plain: Option<usize>,
    sets: Vec<Candidates<'c>>,
    /// The reservation's constraint set, once the vCluster has one.
    reserved: Option<usize>,
}

/// Nodes picked from buckets, not yet taken: (bucket, node).
pub type Picks = Vec<(usize, u32)>;

impl<'c> Feasibility<'c> {
    pub fn new(members: Vec<u32>) -> Self {
        Feasibility {
            members,
            ids: FastMap::default(),
            plain: None,
            sets: Vec::new(),
            reserved: None,
        }
    }

    pub fn members(&self) -> &[u32] {
        &self.members
    }

    /// A small ID for a constraint set (computed once per distinct set).
    pub fn intern(&mut self, cx: &Cycle<'_>, c: &'c Constraints) -> usize {
        // Most work has no constraints: skip hashing for it.
        let plain = c.features.is_empty()
            && c.gpu_type.is_none()
            && c.min_gpus.is_none()
            && c.min_memory_gb.is_none()
            && c.min_cpus.is_none();
        if plain {
            if let Some(id) = self.plain {
                return id;
            }
        } else if let Some(&id) = self.ids.get(c) {
            return id;
        }
        let id = self.sets.len();
        let total = self
            .members
            .iter()
            .filter(|&&i| cx.nodes[i as usize].satisfies(c))
            .count();
        self.sets.push(Candidates {
            constraints: c,
            buckets: Vec::new(),
            slot: Vec::new(),
            free: [0; 2],
            total,
            usable: None,
            group_sizes: None,
        });
        if plain {
            self.plain = Some(id);
        } else {
            self.ids.insert(c, id);
        }
        self.rebuild(cx, id);
        id
    }

    pub fn constraints(&self, id: usize) -> &'c Constraints {
        self.sets[id].constraints
    }

    /// Whether no interned set has an untaken free member: nothing more can start.
    pub fn none_free(&self) -> bool {
        self.sets.iter().all(|c| c.free == [0, 0])
    }

    /// Untaken free members satisfying the set.
    pub fn free(&self, id: usize) -> usize {
        let f = self.sets[id].free;
        f[0] + f[1]
    }

    /// Untaken free members satisfying the set that do not match the reservation's
    /// constraints (all of them before there is a reservation).
    pub fn free_unreserved(&self, id: usize) -> usize {
        self.sets[id].free[0]
    }

    /// Members satisfying the set, in any state.
    pub fn total(&self, id: usize) -> usize {
        self.sets[id].total
    }

    /// Members satisfying the set that may take work at some point.
    pub fn usable(&mut self, cx: &Cycle<'_>, id: usize) -> &[u32] {
        let members = &self.members;
        let set = &mut self.sets[id];
        let c = set.constraints;
        set.usable.get_or_insert_with(|| {
            members
                .iter()
                .copied()
                .filter(|&i| cx.usable(i as usize) && cx.nodes[i as usize].satisfies(c))
                .collect()
        })
    }

    /// Whether the vCluster's nodes carry topology groups.
    pub fn has_groups(&self, cx: &Cycle<'_>) -> bool {
        self.members.iter().any(|&i| cx.group[i as usize] != 0)
    }

    /// The fewest topology groups `need` nodes of the set can fit in.
    pub fn min_groups(&mut self, cx: &Cycle<'_>, id: usize, need: usize) -> usize {
        self.prepare_groups(cx, id);
        self.groups_for(id, need)
    }

    /// Computes the group sizes of set `id` (for [`Feasibility::groups_for`]).
    pub fn prepare_groups(&mut self, cx: &Cycle<'_>, id: usize) {
        if self.sets[id].group_sizes.is_none() {
            let mut sizes: HashMap<u32, usize> = HashMap::new();
            for &i in self.usable(cx, id).to_vec().iter() {
                *sizes.entry(cx.group[i as usize]).or_default() += 1;
            }
            let mut v: Vec<usize> = sizes.into_values().collect();
            v.sort_unstable_by(|a, b| b.cmp(a));
            self.sets[id].group_sizes = Some(v);
        }
    }

    /// Computes the group sizes of every set interned so far.
    pub fn prepare_all_groups(&mut self, cx: &Cycle<'_>) {
        for id in 0..self.sets.len() {
            self.prepare_groups(cx, id);
        }
    }

    /// [`Feasibility::min_groups`] of a set whose group sizes are prepared (1 if not).
    pub fn groups_for(&self, id: usize, need: usize) -> usize {
        let sizes = self.sets[id].group_sizes.as_deref().unwrap_or(&[]);
        let mut sum = 0;
        for (k, s) in sizes.iter().enumerate() {
            sum += s;
            if sum >= need {
                return k + 1;
            }
        }
        sizes.len().max(1)
    }

    /// From now on, buckets are split by whether their nodes satisfy set `id`.
    pub fn reserve(&mut self, cx: &Cycle<'_>, id: usize) {
        self.reserved = Some(id);
        for s in 0..self.sets.len() {
            self.rebuild(cx, s);
        }
    }

    /// (Re)builds the buckets of set `id` from the nodes that are free now.
    fn rebuild(&mut self, cx: &Cycle<'_>, id: usize) {
        let reserved = self.reserved.map(|r| self.sets[r].constraints);
        let set = &mut self.sets[id];
        let c = set.constraints;
        let mut buckets: Vec<Bucket> = Vec::new();
        for &i in &self.members {
            let n = cx.nodes[i as usize];
            if !cx.is_free(i as usize) || !n.satisfies(c) {
                continue;
            }
            let key = (
                cx.group[i as usize],
                reserved.is_some_and(|r| n.satisfies(r)),
            );
            let b = match buckets.binary_search_by_key(&key, |b| b.key) {
                Ok(b) => b,
                Err(at) => {
                    buckets.insert(
                        at,
                        Bucket {
                            key,
                            nodes: Vec::new(),
                            pos: 0,
                            count: 0,
                        },
                    );
                    at
                }
            };
            buckets[b].nodes.push(i);
            buckets[b].count += 1;
        }
        set.slot = vec![NONE; cx.nodes.len()];
        set.free = [0; 2];
        for (b, bucket) in buckets.iter().enumerate() {
            for &n in &bucket.nodes {
                set.slot[n as usize] = b as u32;
            }
            set.free[usize::from(bucket.key.1)] += bucket.count;
        }
        set.buckets = buckets;
    }

    /// Picks `need` untaken candidates of set `id` (without taking them), or none at all.
    pub fn pick(&mut self, taken: &[bool], id: usize, need: usize, how: Use) -> Option<Picks> {
        let set = &mut self.sets[id];
        let enough = match how {
            Use::Any | Use::FewestReserved => set.free[0] + set.free[1] >= need,
            Use::Unreserved => set.free[0] >= need,
        };
        if !enough {
            return None;
        }
        let mut out = Vec::with_capacity(need);
        let ok = match how {
            Use::Any => fit(&mut set.buckets, taken, need, &|_| true, &mut out),
            Use::Unreserved => fit(&mut set.buckets, taken, need, &|b| !b.key.1, &mut out),
            Use::FewestReserved => {
                // Every unreserved candidate there is (up to `need`), then reserved ones.
                let mut order: Vec<usize> = (0..set.buckets.len())
                    .filter(|&b| !set.buckets[b].key.1 && set.buckets[b].count > 0)
                    .collect();
                order.sort_by_key(|&b| std::cmp::Reverse(set.buckets[b].count));
                for b in order {
                    let take = (need - out.len()).min(set.buckets[b].count);
                    set.buckets[b].scan(taken, take, &mut out, b);
                }
                let left = need - out.len();
                left == 0 || fit(&mut set.buckets, taken, left, &|b| b.key.1, &mut out)
            }
        };
        ok.then_some(out)
    }

    /// How many picked nodes match the reservation's constraints.
    pub fn reserved_count(&self, id: usize, picks: &Picks) -> usize {
        let set = &self.sets[id];
        picks.iter().filter(|(b, _)| set.buckets[*b].key.1).count()
    }

    /// Takes picked nodes out of every set's buckets (the cycle marks them taken for all).
    pub fn commit(&mut self, picks: &Picks) {
        for set in &mut self.sets {
            for &(_, n) in picks {
                let b = set.slot.get(n as usize).copied().unwrap_or(NONE);
                if b != NONE {
                    let bucket = &mut set.buckets[b as usize];
                    bucket.count -= 1;
                    set.free[usize::from(bucket.key.1)] -= 1;
                    set.slot[n as usize] = NONE;
                }
            }
        }
    }
}

/// Picks `need` nodes from the buckets `allowed` admits: the bucket with the fewest untaken
/// nodes that holds them all (best fit; ties to the lower key), else the fullest buckets
/// first. Appends to `out` only on success.
fn fit(
    buckets: &mut [Bucket],
    taken: &[bool],
    need: usize,
    allowed: &dyn Fn(&Bucket) -> bool,
    out: &mut Picks,
) -> bool {
    if need == 0 {
        return true;
    }
    let sum: usize = buckets.iter().filter(|b| allowed(b)).map(|b| b.count).sum();
    if sum < need {
        return false;
    }
    let best = (0..buckets.len())
        .filter(|&b| allowed(&buckets[b]) && buckets[b].count >= need)
        .min_by_key(|&b| buckets[b].count);
    if let Some(b) = best {
        buckets[b].scan(taken, need, out, b);
        return true;
    }
    let mut order: Vec<usize> = (0..buckets.len())
        .filter(|&b| allowed(&buckets[b]) && buckets[b].count > 0)
        .collect();
    order.sort_by_key(|&b| std::cmp::Reverse(buckets[b].count));
    let base = out.len();
    for b in order {
        let take = (need - (out.len() - base)).min(buckets[b].count);
        buckets[b].scan(taken, take, out, b);
        if out.len() - base == need {
            break;
        }
    }
    true
}
