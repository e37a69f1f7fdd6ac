//! One vCluster's pass over its queue: gates (held, dependencies), scores, then placement by
//! the vCluster's policy, then reasons and estimated starts.
//!
//! Backfill (EASY): allocations are taken in score order. The first one that cannot start
//! and whose nodes will free up gets a reservation at its shadow time S (the earliest time
//! enough matching nodes are free, from walltimes). Every later allocation starts now only if
//! it does not delay S: it ends by S, or it keeps busy past S only nodes the reservation does
//! not need (non-matching nodes, or at most the reservation's `extra` matching ones), and it
//! leaves the quota and array cap the reserved allocation needs.
//! FIFO: nothing starts past the first allocation that cannot.
//!
//! Quota-, cap-, dependency- and hold-blocked allocations never block others.
//!
//! Preemption (`preempt.rs`): an allocation that cannot start, ahead of any reservation, may
//! preempt lower-priority running work instead of taking the reservation; it then waits,
//! reason `preempting`, and starts on its claimed nodes once they are released. With
//! preemption on, the queue is ordered by priority tier first (`queue.rs`).
//!
//! Performance: the pending allocations are read once, in ID order, into compact entries
//! (`queue.rs`, on two threads for large queues); the placement loop (in score order) touches
//! only those, and reasons are compared with the allocations' current ones in ID order
//! again. 100k queued jobs therefore stream through memory instead of being visited in random
//! order.

use crate::allocation::{AllocId, Allocation};
use crate::scheduler::backfill::{ceil_second, estimate, shadow, Reservation, ESTIMATE_DEPTH};
use crate::scheduler::cycle::{Cycle, FastMap, Work, CLAIMED};
use crate::scheduler::feasibility::{Feasibility, Picks, Use};
use crate::scheduler::preempt::Preemptor;
use crate::scheduler::queue::{self, Entry, SeenList};
use crate::scheduler::reasons::{Reasons, Why, NO_REASON};
use crate::scheduler::{Placement, Plan, VClusterTrace};
use crate::tenant::quota_exceeded;
use crate::vcluster::{Policy, VCluster};

/// Estimated starts move in the plan only when they change by more than this.
pub const ESTIMATE_SLACK_MS: u64 = 5_000;

/// An allocation that could not start now (24 bytes: there may be 100k of them).
#[derive(Clone, Copy)]
struct Blocked {
    /// Its entry's index in the sorted queue.
    at: u32,
    /// Matching nodes in the vCluster.
    exist: u32,
    /// The allocation whose reservation (or FIFO position, `true`) was ahead of it.
    ahead: Option<(AllocId, bool)>,
}

pub fn run<'a>(
    cx: &mut Cycle<'a>,
    vc: &'a VCluster,
    pending: Vec<&'a Allocation>,
    plan: &mut Plan,
    reasons: &mut Reasons<'a>,
) -> VClusterTrace {
    let members: Vec<u32> = (0..cx.nodes.len())
        .filter(|&i| vc.contains(cx.nodes[i]))
        .map(|i| i as u32)
        .collect();
    let mut feas = Feasibility::new(members);
    let mut trace = VClusterTrace {
        vcluster: vc.name.clone(),
        head: None,
        backfilled: Vec::new(),
    };
    // Why each pending allocation (by position) waits, as an interned reason.
    let mut why: Vec<u32> = vec![NO_REASON; pending.len()];

    let (queue, seen) = queue::build(cx, vc, &mut feas, &pending, reasons, &mut why);
    let mut resv: Option<Reservation> = None;
    let mut head: Option<Work> = None;
    let mut head_priority = 0u8;
    let mut fifo_head: Option<AllocId> = None;
    let mut blocked: Vec<Blocked> = Vec::new();
    let mut scratch = Vec::new();
    let mut preemptor = Preemptor::default();
    let id_of = |e: &Entry| seen[e.pos as usize].id;
    for (at, &e) in queue.iter().enumerate() {
        let (cid, need) = (e.cid as usize, e.work.nodes as usize);
        let exist = feas.total(cid);
        if exist < need {
            why[e.pos as usize] = reasons.intern(Why::Unsatisfiable {
                need,
                exist,
                vcluster: &vc.name,
            });
            continue;
        }
        let block = |ahead| Blocked {
            at: at as u32,
            exist: exist as u32,
            ahead,
        };
        // The allocation record itself is read only where needed (preemption): the loop
        // streams through compact entries.
        // (Reading its ID is a random access too: only when some claim exists.)
        let claimed = !cx.started.is_empty() || !cx.claims.is_empty();
        let id = if claimed { id_of(&e) } else { 0 };
        if claimed && cx.started.contains_key(&id) {
            continue; // started on its claim at the start of the cycle
        }
        if let Some(claim) = claimed.then(|| cx.claims.get(&id).cloned()).flatten() {
            // A preemptor waiting for its victims to release the nodes it claimed (or over
            // a quota lowered since): its quota and cap stay counted.
            let mut occupants: Vec<AllocId> = claim
                .iter()
                .flat_map(|&i| cx.nodes[i as usize].allocations.iter().copied())
                .collect();
            if occupants.is_empty() {
                blocked.push(block(None));
            } else {
                occupants.sort_unstable();
                occupants.dedup();
                why[e.pos as usize] = reasons.intern(Why::Preempting {
                    victims: occupants.len(),
                });
            }
            continue;
        }
        if limit(cx, &e.work, None).is_some() {
            // Its reason is decided at the end, with the final loads.
            blocked.push(block(None));
            continue;
        }
        if let Some(head) = fifo_head {
            blocked.push(block(Some((head, true))));
            continue;
        }
        // What starting now would cost the reservation: picks, and matching nodes kept busy
        // past its start.
        let picked: Option<(Picks, usize)> = match (&resv, &head) {
            (Some(r), Some(h)) => {
                let ahead = Some((r.allocation, false));
                // Backfill may not use up the quota or array cap the reservation needs.
                if limit(cx, &e.work, Some(h)).is_some() {
                    blocked.push(block(ahead));
                    continue;
                }
                let end = cx
                    .now
                    .plus_secs(u64::from(e.work.walltime_seconds))
                    .as_millis();
                // Work the head could preempt does not backfill onto nodes the head could
                // use: the next cycle would preempt it there.
                let preemptable =
                    vc.preemption && e.work.preemptible && queue::priority(&e) < head_priority;
                if preemptable {
                    feas.pick(&cx.taken, cid, need, Use::Unreserved)
                        .map(|p| (p, 0))
                } else if end <= r.start {
                    feas.pick(&cx.taken, cid, need, Use::Any).map(|p| (p, 0))
                } else if let Some(p) = feas.pick(&cx.taken, cid, need, Use::Unreserved) {
                    Some((p, 0))
                } else {
                    // Taking every unreserved candidate first, this many reserved ones
                    // stay busy past the reservation's start.
                    let cost = need.saturating_sub(feas.free_unreserved(cid));
                    if feas.free(cid) >= need && cost > r.extra {
                        blocked.push(block(ahead));
                        continue;
                    }
                    feas.pick(&cx.taken, cid, need, Use::FewestReserved)
                        .map(|p| (p, cost))
                }
            }
            _ => feas.pick(&cx.taken, cid, need, Use::Any).map(|p| (p, 0)),
        };
        match picked {
            Some((picks, cost)) => {
                if let Some(r) = resv.as_mut() {
                    r.extra -= cost;
                    trace.backfilled.push(id_of(&e));
                }
                feas.commit(&picks);
                let mut nodes: Vec<u32> = picks.iter().map(|p| p.1).collect();
                nodes.sort_unstable();
                cx.place(&e.work, &nodes);
                plan.placements.push(Placement {
                    allocation: id_of(&e),
                    nodes: nodes
                        .iter()
                        .map(|&i| cx.nodes[i as usize].id.clone())
                        .collect(),
                });
            }
            None => {
                // Only work ahead of the reservation preempts: what waits behind it would
                // otherwise take the nodes the reservation counts on.
                if resv.is_none() {
                    let a = pending[e.pos as usize];
                    if let Some(victims) =
                        preemptor.attempt(cx, &mut feas, vc, cid, a, &e.work, plan)
                    {
                        why[e.pos as usize] = reasons.intern(Why::Preempting { victims });
                        continue;
                    }
                }
                blocked.push(block(resv.as_ref().map(|r| (r.allocation, false))));
                if resv.is_some() {
                    continue;
                }
                match vc.policy {
                    Policy::Fifo => fifo_head = Some(id_of(&e)),
                    Policy::Backfill => {
                        let usable = feas.usable(cx, cid);
                        // A start behind claimed nodes is no start: no reservation.
                        if let Some((start, free)) = shadow(&cx.avail, usable, need, &mut scratch)
                            .filter(|(start, _)| *start < CLAIMED)
                        {
                            resv = Some(Reservation {
                                allocation: id_of(&e),
                                constraints: cid,
                                need,
                                start,
                                extra: free - need,
                            });
                            trace.head = resv.clone();
                            head = Some(e.work);
                            head_priority = queue::priority(&e);
                            feas.reserve(cx, cid);
                        }
                    }
                }
            }
        }
    }

    // Reasons of blocked allocations are decided against what is left at the end, so that the
    // next cycle on the committed plan finds the same reasons: a quota or cap if one is used
    // up; `priority` when it would fit but a higher-scored allocation's reservation (or FIFO
    // order) holds it back; `resources` when not enough matching nodes are free.
    // The first ones still waiting for nodes get estimated starts.
    let mut waiting: Vec<Entry> = Vec::with_capacity(ESTIMATE_DEPTH);
    for b in blocked {
        let e = queue[b.at as usize];
        let need = e.work.nodes as usize;
        // A waiting preemptor's own count is not what holds it back.
        let claimant = !cx.claims.is_empty() && cx.claims.contains_key(&seen[e.pos as usize].id);
        if claimant {
            cx.count(&e.work, false);
        }
        let held_back = limit(cx, &e.work, None);
        if claimant {
            cx.count(&e.work, true);
        }
        why[e.pos as usize] = reasons.intern(if let Some(w) = held_back {
            w
        } else {
            if waiting.len() < ESTIMATE_DEPTH {
                waiting.push(e);
            }
            match b.ahead {
                Some((head, fifo)) if feas.free(e.cid as usize) >= need => {
                    Why::Priority { head, fifo }
                }
                _ => Why::Resources {
                    need,
                    exist: b.exist as usize,
                },
            }
        });
    }
    for (x, w) in seen.iter().zip(why) {
        if w != NO_REASON {
            reasons.note_index(x.id, x.reason, x.detail, w, plan);
        }
    }
    write_estimates(cx, &mut feas, &seen, &waiting, plan);
    trace
}

/// A tenant quota or array cap that keeps `w` from starting now; with `head`, also counting
/// what the reserved allocation will need when it starts.
fn limit<'a>(cx: &mut Cycle<'a>, w: &Work, head: Option<&Work>) -> Option<Why<'a>> {
    let quota = w.tenant().filter(|t| cx.has_quota[*t as usize]);
    if quota.is_none() && w.array().is_none() {
        return None;
    }
    if let Some(ti) = quota {
        let t = cx.tenants[ti as usize];
        let mut load = cx.loads[ti as usize];
        if let Some(h) = head.filter(|h| h.tenant() == w.tenant()) {
            load.nodes += u64::from(h.nodes);
            load.running += 1;
        }
        if let Some(quota) = quota_exceeded(t, load, w.nodes) {
            let limit = match quota {
                "max_nodes" => t.max_nodes,
                _ => t.max_running,
            }
            .unwrap_or(0);
            return Some(Why::Quota {
                tenant: &t.name,
                quota,
                limit,
            });
        }
    }
    let array = w.array()?;
    let cap = cx.array_cap(array)?;
    let reserved = u32::from(head.is_some_and(|h| h.array() == Some(array)));
    (cx.array_running(array) + reserved >= cap).then_some(Why::ArrayLimit { array, cap })
}

/// Conservative estimated starts for the first blocked allocations, in queue order; the plan
/// gets the ones that moved by more than [`ESTIMATE_SLACK_MS`] (or appeared, or went away).
fn write_estimates<'a>(
    cx: &Cycle<'a>,
    feas: &mut Feasibility<'a>,
    pending: &SeenList<'a>,
    blocked: &[Entry],
    plan: &mut Plan,
) {
    let mut estimates: FastMap<AllocId, u64> = FastMap::default();
    if !blocked.is_empty() {
        let mut avail = cx.avail.clone();
        let mut scratch = Vec::new();
        for e in blocked.iter().take(ESTIMATE_DEPTH) {
            let usable = feas.usable(cx, e.cid as usize);
            let walltime_ms = u64::from(e.work.walltime_seconds) * 1000;
            let need = e.work.nodes as usize;
            if let Some(s) = estimate(&mut avail, usable, need, walltime_ms, &mut scratch)
                .filter(|s| *s < CLAIMED)
            {
                estimates.insert(pending[e.pos as usize].id, ceil_second(s));
            }
        }
    }
    let placed: FastMap<AllocId, ()> = plan.placements.iter().map(|p| (p.allocation, ())).collect();
    // Only allocations that have an estimate, or get one, can change.
    for a in pending.iter() {
        let old = a.estimate;
        if old.is_none() && estimates.is_empty() {
            continue;
        }
        if placed.contains_key(&a.id) {
            continue;
        }
        let new = estimates.get(&a.id).copied();
        let moved = match (old, new) {
            (None, None) => false,
            (Some(o), Some(n)) => o.abs_diff(n) > ESTIMATE_SLACK_MS,
            _ => true,
        };
        if moved {
            plan.estimates
                .push((a.id, new.map(crate::time::Timestamp::from_millis)));
        }
    }
}
