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
//! Performance: the queue is read lazily (`queue.rs`). Once nothing more can start (no free
//! matching node is left after a reservation, or a FIFO head is set) and the first
//! [`ESTIMATE_DEPTH`] waiting allocations are known, the pass stops: every allocation not
//! read would be blocked, and its reason follows from its class (`unread_why`). A class
//! whose member was too big for the vCluster or held back by a quota or cap leaves the merge
//! at once (loads only grow within a pass, so its later members fare the same). With claims
//! about (preemptors waiting for or starting on their nodes), everything is read. A cycle
//! over 900,000 queued jobs and 10,000 busy nodes thus reads a few dozen records.
//! `lattice_core` tests check that stopping gives exactly the plan of reading everything.

use std::collections::{BTreeMap, BTreeSet};

use crate::allocation::AllocId;
use crate::scheduler::backfill::{ceil_second, estimate, shadow, Reservation, ESTIMATE_DEPTH};
use crate::scheduler::cycle::{Cycle, FastMap, Work, CLAIMED};
use crate::scheduler::feasibility::{Feasibility, Picks, Use};
use crate::scheduler::preempt::Preemptor;
use crate::scheduler::queue::{self, Entry, Queue};
use crate::scheduler::reasons::{Reasons, Why, MAX_REASON_CHANGES, NO_REASON};
use crate::scheduler::{Placement, Plan, VClusterTrace};
use crate::state::VcQueue;
use crate::tenant::quota_exceeded;
use crate::time::Timestamp;
use crate::vcluster::{Policy, VCluster};

/// Estimated starts move in the plan only when they change by more than this.
pub const ESTIMATE_SLACK_MS: u64 = 5_000;

/// An allocation that could not start now (24 bytes: there may be 100k of them).
#[derive(Clone, Copy)]
struct Blocked {
    /// Its entry's index in the entries read.
    at: u32,
    /// Matching nodes in the vCluster.
    exist: u32,
    /// The allocation whose reservation (or FIFO position, `true`) was ahead of it.
    ahead: Option<(AllocId, bool)>,
}

pub fn run<'a>(
    cx: &mut Cycle<'a>,
    vc: &'a VCluster,
    index: &'a VcQueue,
    skip: &dyn Fn(&str) -> bool,
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
    let mut queue = Queue::build(cx, vc, &mut feas, index, skip, reasons);
    // With claims about, a claimant's turn depends on its ID, not its class: read it all.
    let lazy = cx.lazy && cx.claims.is_empty() && cx.started.is_empty();
    let mut resv: Option<Reservation> = None;
    let mut head: Option<Work> = None;
    let mut head_priority = 0u8;
    let mut fifo_head: Option<AllocId> = None;
    let mut blocked: Vec<Blocked> = Vec::new();
    let mut read: Vec<Entry> = Vec::new();
    let mut scratch = Vec::new();
    let mut preemptor = Preemptor::default();
    // Once nothing more can start (`settled`), blocked work that will wait for nodes (not
    // for a quota or cap) is counted: once the estimates have theirs, the rest is decided
    // by class.
    let mut settled = false;
    let mut waiting = 0usize;
    loop {
        if lazy && !settled && (fifo_head.is_some() || resv.is_some() && feas.none_free()) {
            settled = true;
            waiting = blocked
                .iter()
                .filter(|b| limit(cx, &read[b.at as usize].work, None).is_none())
                .count();
        }
        if settled && waiting >= ESTIMATE_DEPTH {
            break;
        }
        let Some((e, class)) = queue.next(cx) else {
            break;
        };
        let at = read.len();
        read.push(e);
        let blocked_before = blocked.len();
        step(
            cx,
            vc,
            &mut feas,
            &mut queue,
            lazy.then_some(class).flatten(),
            e,
            at,
            &mut Step {
                resv: &mut resv,
                head: &mut head,
                head_priority: &mut head_priority,
                fifo_head: &mut fifo_head,
                blocked: &mut blocked,
                scratch: &mut scratch,
                preemptor: &mut preemptor,
                trace: &mut trace,
            },
            plan,
            reasons,
        );
        if settled && blocked.len() > blocked_before && limit(cx, &e.work, None).is_none() {
            waiting += 1;
        }
    }

    // Reasons of blocked allocations are decided against what is left at the end, so that the
    // next cycle on the committed plan finds the same reasons: a quota or cap if one is used
    // up; `priority` when it would fit but a higher-scored allocation's reservation (or FIFO
    // order) holds it back; `resources` when not enough matching nodes are free.
    // The first ones still waiting for nodes get estimated starts.
    let mut waiting: Vec<Entry> = Vec::with_capacity(ESTIMATE_DEPTH);
    for b in blocked {
        let e = read[b.at as usize];
        let need = e.work.nodes as usize;
        // A waiting preemptor's own count is not what holds it back.
        let claimant =
            !cx.claims.is_empty() && cx.claims.contains_key(&queue.seen[e.pos as usize].id);
        if claimant {
            cx.count(&e.work, false);
        }
        let held_back = limit(cx, &e.work, None);
        if claimant {
            cx.count(&e.work, true);
        }
        queue.why[e.pos as usize] = reasons.intern(if let Some(w) = held_back {
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
    let ahead = fifo_head
        .map(|h| (h, true))
        .or(resv.as_ref().map(|r| (r.allocation, false)));
    write_reasons(cx, vc, &feas, &queue, ahead, reasons, plan);
    write_estimates(cx, &mut feas, index, skip, &queue, &waiting, plan);
    trace
}

/// What the placement loop keeps between allocations.
struct Step<'s> {
    resv: &'s mut Option<Reservation>,
    head: &'s mut Option<Work>,
    head_priority: &'s mut u8,
    fifo_head: &'s mut Option<AllocId>,
    blocked: &'s mut Vec<Blocked>,
    scratch: &'s mut Vec<u64>,
    preemptor: &'s mut Preemptor,
    trace: &'s mut VClusterTrace,
}

/// Places, blocks or preempts for the allocation `e` (the `at`th read). `class`: its class,
/// which is dropped from the queue when what decides for `e` decides for all the rest of it
/// (too few matching nodes; a quota or cap, as loads only grow within a pass).
#[allow(clippy::too_many_arguments)]
fn step<'a>(
    cx: &mut Cycle<'a>,
    vc: &'a VCluster,
    feas: &mut Feasibility<'a>,
    queue: &mut Queue<'a>,
    class: Option<u32>,
    e: Entry,
    at: usize,
    st: &mut Step<'_>,
    plan: &mut Plan,
    reasons: &mut Reasons<'a>,
) {
    let (cid, need) = (e.cid as usize, e.work.nodes as usize);
    let exist = feas.total(cid);
    if exist < need {
        queue.why[e.pos as usize] = reasons.intern(Why::Unsatisfiable {
            need,
            exist,
            vcluster: &vc.name,
        });
        if let Some(c) = class {
            queue.drop_class(c);
        }
        return;
    }
    let block = |ahead| Blocked {
        at: at as u32,
        exist: exist as u32,
        ahead,
    };
    let id = queue.seen[e.pos as usize].id;
    if cx.started.contains_key(&id) {
        return; // started on its claim at the start of the cycle
    }
    if let Some(claim) = cx.claims.get(&id).cloned() {
        // A preemptor waiting for its victims to release the nodes it claimed (or over
        // a quota lowered since): its quota and cap stay counted.
        let mut occupants: Vec<AllocId> = claim
            .iter()
            .flat_map(|&i| cx.nodes[i as usize].allocations.iter().copied())
            .collect();
        if occupants.is_empty() {
            st.blocked.push(block(None));
        } else {
            occupants.sort_unstable();
            occupants.dedup();
            queue.why[e.pos as usize] = reasons.intern(Why::Preempting {
                victims: occupants.len(),
            });
        }
        return;
    }
    if limit(cx, &e.work, None).is_some() {
        // Its reason is decided at the end, with the final loads.
        st.blocked.push(block(None));
        if let Some(c) = class {
            queue.drop_class(c);
        }
        return;
    }
    if let Some(head) = *st.fifo_head {
        st.blocked.push(block(Some((head, true))));
        return;
    }
    // What starting now would cost the reservation: picks, and matching nodes kept busy
    // past its start.
    let picked: Option<(Picks, usize)> = match (&*st.resv, &*st.head) {
        (Some(r), Some(h)) => {
            let ahead = Some((r.allocation, false));
            // Backfill may not use up the quota or array cap the reservation needs.
            if limit(cx, &e.work, Some(h)).is_some() {
                st.blocked.push(block(ahead));
                return;
            }
            let end = cx
                .now
                .plus_secs(u64::from(e.work.walltime_seconds))
                .as_millis();
            // Work the head could preempt does not backfill onto nodes the head could
            // use: the next cycle would preempt it there.
            let preemptable =
                vc.preemption && e.work.preemptible && queue::priority(&e) < *st.head_priority;
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
                    st.blocked.push(block(ahead));
                    return;
                }
                feas.pick(&cx.taken, cid, need, Use::FewestReserved)
                    .map(|p| (p, cost))
            }
        }
        _ => feas.pick(&cx.taken, cid, need, Use::Any).map(|p| (p, 0)),
    };
    match picked {
        Some((picks, cost)) => {
            if let Some(r) = st.resv.as_mut() {
                r.extra -= cost;
                st.trace.backfilled.push(id);
            }
            feas.commit(&picks);
            let mut nodes: Vec<u32> = picks.iter().map(|p| p.1).collect();
            nodes.sort_unstable();
            cx.place(&e.work, &nodes);
            plan.placements.push(Placement {
                allocation: id,
                nodes: nodes
                    .iter()
                    .map(|&i| cx.nodes[i as usize].id.clone())
                    .collect(),
            });
        }
        None => {
            // Only work ahead of the reservation preempts: what waits behind it would
            // otherwise take the nodes the reservation counts on.
            if st.resv.is_none() {
                let a = queue.seen[e.pos as usize].alloc;
                if let Some(victims) = st.preemptor.attempt(cx, feas, vc, cid, a, &e.work, plan) {
                    queue.why[e.pos as usize] = reasons.intern(Why::Preempting { victims });
                    return;
                }
            }
            st.blocked
                .push(block(st.resv.as_ref().map(|r| (r.allocation, false))));
            if st.resv.is_some() {
                return;
            }
            match vc.policy {
                Policy::Fifo => *st.fifo_head = Some(id),
                Policy::Backfill => {
                    let usable = feas.usable(cx, cid);
                    // A start behind claimed nodes is no start: no reservation.
                    if let Some((start, free)) = shadow(&cx.avail, usable, need, st.scratch)
                        .filter(|(start, _)| *start < CLAIMED)
                    {
                        *st.resv = Some(Reservation {
                            allocation: id,
                            constraints: cid,
                            need,
                            start,
                            extra: free - need,
                        });
                        st.trace.head = st.resv.clone();
                        *st.head = Some(e.work);
                        *st.head_priority = queue::priority(&e);
                        feas.reserve(cx, cid);
                    }
                }
            }
        }
    }
}

/// Why work of class-like shape (`cid`, `w`) waits when the pass did not read it: it could
/// not start (nothing it fits is free, or the queue stopped), so as for a blocked allocation
/// at the end: too few matching nodes at all, a quota or cap, or held back by `ahead`.
fn unread_why<'a>(
    cx: &mut Cycle<'a>,
    vc: &'a VCluster,
    feas: &Feasibility<'a>,
    cid: u32,
    w: &Work,
    ahead: Option<(AllocId, bool)>,
) -> Why<'a> {
    let need = w.nodes as usize;
    let exist = feas.total(cid as usize);
    if exist < need {
        return Why::Unsatisfiable {
            need,
            exist,
            vcluster: &vc.name,
        };
    }
    if let Some(why) = limit(cx, w, None) {
        return why;
    }
    match ahead {
        Some((head, fifo)) if feas.free(cid as usize) >= need => Why::Priority { head, fifo },
        _ => Why::Resources { need, exist },
    }
}

/// Writes the reasons that changed, of what was read and of what was not (by class), oldest
/// first (by submission, then ID) up to the plan's budget, in ID order.
fn write_reasons<'a>(
    cx: &mut Cycle<'a>,
    vc: &'a VCluster,
    feas: &Feasibility<'a>,
    queue: &Queue<'a>,
    ahead: Option<(AllocId, bool)>,
    reasons: &mut Reasons<'a>,
    plan: &mut Plan,
) {
    let budget = MAX_REASON_CHANGES.saturating_sub(plan.reasons.len());
    if budget == 0 {
        return;
    }
    // (submitted, ID, reason)
    let mut changes: Vec<(Timestamp, AllocId, u32)> = Vec::new();
    for (x, &w) in queue.seen.iter().zip(&queue.why) {
        if w != NO_REASON && reasons.change(x.reason, x.detail, w).is_some() {
            changes.push((x.alloc.submitted_at, x.id, w));
        }
    }
    let mut targets: FastMap<u32, u32> = FastMap::default();
    for rest in queue.rest() {
        let w = *targets.entry(rest.class).or_insert_with(|| {
            let c = &queue.classes[rest.class as usize];
            reasons.intern(unread_why(cx, vc, feas, c.cid, &c.work(), ahead))
        });
        if reasons.change(rest.reason, rest.detail, w).is_some() {
            changes.extend(rest.members.take(budget).map(|(t, id)| (t, id, w)));
        }
    }
    for (a, cid, work) in queue.open_rest() {
        let w = reasons.intern(unread_why(cx, vc, feas, cid, &work, ahead));
        if reasons
            .change(a.reason.as_deref(), a.reason_detail.as_deref(), w)
            .is_some()
        {
            changes.push((a.submitted_at, a.id, w));
        }
    }
    if changes.len() > budget {
        changes.select_nth_unstable(budget);
        changes.truncate(budget);
    }
    changes.sort_unstable_by_key(|c| c.1);
    for (_, id, w) in changes {
        if let Some((code, detail)) = reasons.change(None, None, w) {
            plan.reasons
                .push((id, code.to_string(), Some(detail.to_string())));
        }
    }
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
/// gets the ones that moved by more than [`ESTIMATE_SLACK_MS`] (or appeared, or went away:
/// the state lists the pending allocations that have one).
fn write_estimates<'a>(
    cx: &Cycle<'a>,
    feas: &mut Feasibility<'a>,
    index: &VcQueue,
    skip: &dyn Fn(&str) -> bool,
    queue: &Queue<'a>,
    blocked: &[Entry],
    plan: &mut Plan,
) {
    let mut estimates: BTreeMap<AllocId, u64> = BTreeMap::new();
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
                estimates.insert(queue.seen[e.pos as usize].id, ceil_second(s));
            }
        }
    }
    if estimates.is_empty() && index.estimated.is_empty() {
        return;
    }
    let placed: FastMap<AllocId, ()> = plan.placements.iter().map(|p| (p.allocation, ())).collect();
    let ids: BTreeSet<AllocId> = index
        .estimated
        .iter()
        .chain(estimates.keys())
        .copied()
        .collect();
    for id in ids {
        let Some(a) = cx.state.allocation(id) else {
            continue;
        };
        if skip(&a.tenant) || placed.contains_key(&id) {
            continue;
        }
        let old = a.estimated_start.map(|t| t.as_millis());
        let new = estimates.get(&id).copied();
        let moved = match (old, new) {
            (None, None) => false,
            (Some(o), Some(n)) => o.abs_diff(n) > ESTIMATE_SLACK_MS,
            _ => true,
        };
        if moved {
            plan.estimates
                .push((id, new.map(crate::time::Timestamp::from_millis)));
        }
    }
}
