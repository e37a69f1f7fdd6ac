//! Preemption: which running allocations a pending one that cannot start may displace.
//!
//! Rules (docs/preemption.md): only in a vCluster with `preemption` on; only running,
//! preemptible allocations of the same vCluster with a strictly lower priority; only nodes
//! they hold alone, that are usable and match the preemptor. Victims are taken cheapest
//! first (lowest priority, then least work lost since their last successful checkpoint, in
//! node-milliseconds, then fewest nodes, then ID) until free plus freed matching nodes cover
//! the need; victims that turn out unnecessary are then dropped, costliest first. If the
//! candidates cannot cover the need, nothing is preempted.
//!
//! The preemptor's claim (the nodes it will start on) takes free matching nodes first and
//! victims' nodes for the rest; claimed nodes are taken for the rest of the cycle.
//!
//! Cost: the candidate list is built once per vCluster pass, and only when some pending
//! allocation outranks a running one; failed attempts are capped per pass.

use crate::allocation::{AllocId, AllocState, Allocation};
use crate::scheduler::cycle::{Cycle, FastMap, Work};
use crate::scheduler::feasibility::{Feasibility, Use};
use crate::scheduler::{Plan, PlannedPreemption};
use crate::vcluster::VCluster;

/// Failed attempts per vCluster pass before preemption is given up for the cycle.
pub const MAX_FAILED_ATTEMPTS: u32 = 32;

/// A running allocation that could be preempted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: AllocId,
    pub priority: u8,
    /// Node-milliseconds of work since its last successful checkpoint (or its start).
    pub lost: u64,
    /// Its nodes (cycle indices) that it holds alone and that are usable, ascending.
    pub nodes: Vec<u32>,
}

impl Candidate {
    fn cost(&self) -> (u8, u64, usize, AllocId) {
        (self.priority, self.lost, self.nodes.len(), self.id)
    }
}

/// Picks victims among `cands` (any order) for a preemptor of `priority` that needs `want`
/// more matching nodes; `matching(node)` says whether a node suits it. Returns indices into
/// `cands`, cheapest first, or `None` if they cannot free enough. Pure.
pub fn choose(
    cands: &[Candidate],
    priority: u8,
    want: usize,
    matching: impl Fn(u32) -> bool,
) -> Option<Vec<usize>> {
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by_key(|&i| cands[i].cost());
    choose_in_order(cands, order.into_iter(), &[], priority, want, matching)
}

/// [`choose`] over candidates already in cost order (`order`), skipping `used` ones: it
/// reads only the cheapest prefix it needs, so a cycle that preempts for thousands of
/// allocations does not re-sort thousands of candidates for each.
fn choose_in_order(
    cands: &[Candidate],
    order: impl Iterator<Item = usize>,
    used: &[bool],
    priority: u8,
    want: usize,
    matching: impl Fn(u32) -> bool,
) -> Option<Vec<usize>> {
    if want == 0 {
        return None;
    }
    let mut chosen = Vec::new();
    let mut got = 0;
    for i in order {
        let c = &cands[i];
        if c.priority >= priority {
            break; // cost order is priority first: nothing further qualifies
        }
        if used.get(i).copied().unwrap_or(false) {
            continue;
        }
        let useful = c.nodes.iter().filter(|&&n| matching(n)).count();
        if useful == 0 {
            continue;
        }
        chosen.push((i, useful));
        got += useful;
        if got >= want {
            break;
        }
    }
    if got < want {
        return None;
    }
    // Drop victims that are not needed after all, costliest first.
    let mut k = chosen.len();
    while k > 0 {
        k -= 1;
        if got - chosen[k].1 >= want {
            got -= chosen[k].1;
            chosen.remove(k);
        }
    }
    Some(chosen.into_iter().map(|(i, _)| i).collect())
}

/// Preemption state of one vCluster pass: the candidates in cost order (built once, on the
/// first attempt) and which of them this cycle already preempted.
#[derive(Default)]
pub struct Preemptor {
    cands: Option<Vec<Candidate>>,
    used: Vec<bool>,
    /// Every candidate before this one is used (victims come mostly from the cheap front).
    first_unused: usize,
    failures: u32,
    /// The lowest priority of the vCluster's running preemptible work (`Some(None)`: there
    /// is none), looked up before the candidates are built.
    lowest: Option<Option<u8>>,
}

impl Preemptor {
    /// Tries to make room for `a` (which could not be placed) by preempting; on success the
    /// preemption is in `plan`, its claimed nodes are taken in `cx`, and the number of
    /// victims is returned.
    #[allow(clippy::too_many_arguments)]
    pub fn attempt<'a>(
        &mut self,
        cx: &mut Cycle<'a>,
        feas: &mut Feasibility<'a>,
        vc: &VCluster,
        cid: usize,
        a: &Allocation,
        w: &Work,
        plan: &mut Plan,
    ) -> Option<usize> {
        if !vc.preemption || a.priority == 0 || self.failures >= MAX_FAILED_ATTEMPTS {
            return None;
        }
        // Building the candidates indexes every node of the cycle and collects each victim's
        // nodes: first make sure that some running work is of lower priority at all (when
        // every job has the same priority, as often, none is).
        if self.cands.is_none() {
            let lowest = *self.lowest.get_or_insert_with(|| lowest_priority(cx, vc));
            if lowest.is_none_or(|p| p >= a.priority) {
                return None;
            }
        }
        let cands = self.cands.get_or_insert_with(|| {
            let mut c = candidates(cx, vc);
            c.sort_by_key(Candidate::cost);
            c
        });
        if self.used.len() != cands.len() {
            self.used = vec![false; cands.len()];
        }
        while self.first_unused < cands.len() && self.used[self.first_unused] {
            self.first_unused += 1;
        }
        if cands
            .get(self.first_unused)
            .is_none_or(|c| c.priority >= a.priority)
        {
            return None;
        }
        let need = w.nodes as usize;
        let free = feas.free(cid);
        let want = need.saturating_sub(free);
        let nodes = &cx.nodes;
        let taken = &cx.taken;
        let matching = |n: u32| !taken[n as usize] && nodes[n as usize].satisfies(&a.constraints);
        // The candidates are sorted by cost: walk them in place.
        let in_place = self.first_unused..cands.len();
        let Some(picked) = choose_in_order(cands, in_place, &self.used, a.priority, want, matching)
        else {
            self.failures += 1;
            return None;
        };
        // Victims' matching nodes first (in cost order), then free ones.
        let mut claim: Vec<u32> = Vec::with_capacity(need);
        for &i in &picked {
            for &n in &cands[i].nodes {
                if claim.len() < need && matching(n) {
                    claim.push(n);
                }
            }
        }
        let from_free = need - claim.len();
        if from_free > 0 {
            let picks = feas.pick(&cx.taken, cid, from_free, Use::Any)?;
            feas.commit(&picks);
            claim.extend(picks.iter().map(|p| p.1));
        }
        claim.sort_unstable();
        for &n in &claim {
            cx.claim_node(n as usize);
        }
        cx.count(w, true);
        let mut victims: Vec<AllocId> = picked.iter().map(|&i| cands[i].id).collect();
        victims.sort_unstable();
        // A victim is preempted once per cycle.
        for i in picked {
            self.used[i] = true;
        }
        let n = victims.len();
        plan.preemptions.push(PlannedPreemption {
            preemptor: a.id,
            victims,
            nodes: claim
                .iter()
                .map(|&i| cx.nodes[i as usize].id.clone())
                .collect(),
        });
        Some(n)
    }
}

/// The lowest priority among the running, preemptible allocations of `vc` (a superset of
/// the candidates: `None` when there is none).
fn lowest_priority(cx: &Cycle<'_>, vc: &VCluster) -> Option<u8> {
    let state = cx.state;
    state
        .running_ids()
        .iter()
        .filter_map(|id| state.allocation(*id))
        .filter(|a| a.state == AllocState::Running && a.preemptible && a.vcluster == vc.name)
        .map(|a| a.priority)
        .min()
}

/// The running, preemptible allocations of `vc` with the nodes they hold alone.
fn candidates(cx: &Cycle<'_>, vc: &VCluster) -> Vec<Candidate> {
    let state = cx.state;
    let now = cx.now;
    let mut index: FastMap<&str, u32> = FastMap::default();
    let mut out = Vec::new();
    for id in state.running_ids() {
        let Some(a) = state.allocation(*id) else {
            continue;
        };
        if a.state != AllocState::Running || !a.preemptible || a.vcluster != vc.name {
            continue;
        }
        if index.is_empty() {
            index = cx
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.id.as_str(), i as u32))
                .collect();
        }
        let mut nodes: Vec<u32> = a
            .assigned_nodes
            .iter()
            .filter_map(|n| index.get(n.as_str()).copied())
            .filter(|&i| {
                let n = cx.nodes[i as usize];
                cx.usable(i as usize)
                    && !cx.taken[i as usize]
                    && n.allocations.len() == 1
                    && n.allocations.contains(&a.id)
                    && vc.contains(n)
            })
            .collect();
        if nodes.is_empty() {
            continue;
        }
        nodes.sort_unstable();
        let since = match (a.started_at, a.last_checkpoint_at) {
            (Some(s), Some(c)) => s.max(c),
            (Some(s), None) => s,
            (None, c) => c.unwrap_or(now),
        };
        out.push(Candidate {
            id: a.id,
            priority: a.priority,
            lost: now.millis_since(since).saturating_mul(u64::from(a.nodes)),
            nodes,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: AllocId, priority: u8, lost: u64, nodes: &[u32]) -> Candidate {
        Candidate {
            id,
            priority,
            lost,
            nodes: nodes.to_vec(),
        }
    }

    fn ids(cands: &[Candidate], picked: Option<Vec<usize>>) -> Option<Vec<AllocId>> {
        picked.map(|p| p.into_iter().map(|i| cands[i].id).collect())
    }

    #[test]
    fn lowest_priority_goes_first() {
        let c = [
            cand(1, 4, 10, &[0]),
            cand(2, 1, 999, &[1]),
            cand(3, 3, 0, &[2]),
        ];
        assert_eq!(ids(&c, choose(&c, 5, 1, |_| true)), Some(vec![2]));
        assert_eq!(ids(&c, choose(&c, 5, 2, |_| true)), Some(vec![2, 3]));
    }

    #[test]
    fn least_lost_work_breaks_priority_ties() {
        let c = [
            cand(1, 2, 5_000, &[0]),
            cand(2, 2, 100, &[1]),
            cand(3, 2, 2_000, &[2]),
        ];
        assert_eq!(ids(&c, choose(&c, 5, 1, |_| true)), Some(vec![2]));
        assert_eq!(ids(&c, choose(&c, 5, 2, |_| true)), Some(vec![2, 3]));
    }

    #[test]
    fn fewest_nodes_breaks_remaining_ties() {
        let c = [cand(1, 2, 100, &[0, 1, 2, 3]), cand(2, 2, 100, &[4])];
        assert_eq!(ids(&c, choose(&c, 5, 1, |_| true)), Some(vec![2]));
    }

    #[test]
    fn never_equal_or_higher_priority() {
        let c = [cand(1, 5, 0, &[0]), cand(2, 7, 0, &[1])];
        assert_eq!(choose(&c, 5, 1, |_| true), None);
        assert_eq!(ids(&c, choose(&c, 6, 1, |_| true)), Some(vec![1]));
    }

    #[test]
    fn not_enough_frees_nothing() {
        let c = [cand(1, 1, 0, &[0]), cand(2, 1, 0, &[1])];
        assert_eq!(choose(&c, 5, 3, |_| true), None);
        // Only matching nodes count.
        assert_eq!(choose(&c, 5, 2, |n| n == 0), None);
        assert_eq!(ids(&c, choose(&c, 5, 1, |n| n == 1)), Some(vec![2]));
    }

    #[test]
    fn unnecessary_victims_are_dropped() {
        // Cheapest first takes 1 (1 node) then 2 (4 nodes): 2 alone covers 3.
        let c = [cand(1, 1, 0, &[0]), cand(2, 2, 0, &[1, 2, 3, 4])];
        assert_eq!(ids(&c, choose(&c, 5, 3, |_| true)), Some(vec![2]));
        assert_eq!(ids(&c, choose(&c, 5, 5, |_| true)), Some(vec![1, 2]));
    }

    #[test]
    fn nothing_wanted_preempts_nothing() {
        let c = [cand(1, 1, 0, &[0])];
        assert_eq!(choose(&c, 5, 0, |_| true), None);
    }
}
