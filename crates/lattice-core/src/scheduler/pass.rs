//! One vCluster's pass over its queue: gates (held, dependencies), scores, then placement by
//! the vCluster's policy, then estimated starts.
//!
//! Backfill (EASY): allocations are taken in score order. The first one that cannot start
//! and whose nodes will free up gets a reservation at its shadow time S (the earliest time
//! enough matching nodes are free, from walltimes). Every later allocation starts now only if
//! it does not delay S: it ends by S, or it keeps busy past S only nodes the reservation does
//! not need (non-matching nodes, or at most the reservation's `extra` matching ones).
//! FIFO: nothing starts past the first allocation that cannot.
//!
//! Quota-, cap-, dependency- and hold-blocked allocations never block others.

use std::cmp::Reverse;

use crate::allocation::{AllocId, Allocation};
use crate::scheduler::backfill::{ceil_second, estimate, shadow, Reservation, ESTIMATE_DEPTH};
use crate::scheduler::cycle::{Cycle, FastMap};
use crate::scheduler::feasibility::{Feasibility, Picks, Use};
use crate::scheduler::reasons::{Reasons, Why};
use crate::scheduler::score::{score, FairShare, NEUTRAL};
use crate::scheduler::{Placement, Plan, VClusterTrace};
use crate::tenant::quota_exceeded;
use crate::vcluster::{Policy, VCluster};

/// Estimated starts move in the plan only when they change by more than this.
pub const ESTIMATE_SLACK_MS: u64 = 5_000;

/// The queue order: score (descending; the bits of a non-negative float order like the
/// float), then the tie-break of `order.rs` (priority descending, oldest, lowest ID).
type SortKey = (Reverse<u64>, Reverse<u8>, u64, AllocId);

struct Entry<'a> {
    key: SortKey,
    a: &'a Allocation,
    /// Interned constraint set.
    cid: usize,
    /// Index of its tenant in the cycle's tenant table.
    tenant: Option<u32>,
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
    let groups = feas.has_groups(cx);
    // Fair-share terms per tenant index, for the tenants with pending work here.
    let tenant_of: Vec<Option<u32>> = pending.iter().map(|a| cx.tenant_of(&a.tenant)).collect();
    let mut active = vec![false; cx.tenants.len()];
    for t in tenant_of.iter().flatten() {
        active[*t as usize] = true;
    }
    let names = (0..active.len())
        .filter(|&t| active[t])
        .map(|t| cx.tenants[t].name.as_str());
    let fairshare = FairShare::for_tenants(cx.state, vc, cx.now, names);
    let terms: Vec<f64> = cx.tenants.iter().map(|t| fairshare.term(&t.name)).collect();
    let mut trace = VClusterTrace {
        vcluster: vc.name.clone(),
        head: None,
        backfilled: Vec::new(),
    };

    let mut queue: Vec<Entry<'a>> = Vec::with_capacity(pending.len());
    for (&a, &tenant) in pending.iter().zip(&tenant_of) {
        if a.held {
            reasons.note(a, Why::Held, plan);
            continue;
        }
        if let Some((d, _)) = cx.state.unmet_dependency(a) {
            let why = Why::Dependency {
                on: d.on,
                array: d.array,
                kind: d.kind,
            };
            reasons.note(a, why, plan);
            continue;
        }
        let cid = feas.intern(cx, &a.constraints);
        let topology = if groups {
            1.0 / feas.min_groups(cx, cid, a.nodes as usize) as f64
        } else {
            1.0
        };
        let fs = tenant.map_or(NEUTRAL, |t| terms[t as usize]);
        let s = score(&vc.weights, a, cx.now, fs, topology).max(0.0);
        let key = (
            Reverse(s.to_bits()),
            Reverse(a.priority),
            a.submitted_at.as_millis(),
            a.id,
        );
        queue.push(Entry {
            key,
            a,
            cid,
            tenant,
        });
    }
    // Keys are distinct (IDs are), so an unstable sort gives one order.
    queue.sort_unstable_by_key(|e| e.key);

    let mut resv: Option<Reservation> = None;
    let mut head: Option<&'a Allocation> = None;
    let mut fifo_head: Option<AllocId> = None;
    let mut blocked: Vec<Blocked<'a>> = Vec::new();
    let mut scratch = Vec::new();
    for e in &queue {
        let (a, cid, tenant) = (e.a, e.cid, e.tenant);
        let need = a.nodes as usize;
        let exist = feas.total(cid);
        if exist < need {
            let why = Why::Unsatisfiable {
                need,
                exist,
                vcluster: &vc.name,
            };
            reasons.note(a, why, plan);
            continue;
        }
        if limit(cx, a, tenant, None).is_some() {
            // Its reason is decided at the end, with the final loads.
            blocked.push(Blocked {
                a,
                cid,
                tenant,
                exist,
                ahead: None,
            });
            continue;
        }
        if let Some(head) = fifo_head {
            blocked.push(Blocked {
                a,
                cid,
                tenant,
                exist,
                ahead: Some((head, true)),
            });
            continue;
        }
        // Backfill may not use up the quota or array cap the reserved allocation needs.
        if let (Some(r), Some(h)) = (&resv, head) {
            if limit(cx, a, tenant, Some(h)).is_some() {
                blocked.push(Blocked {
                    a,
                    cid,
                    tenant,
                    exist,
                    ahead: Some((r.allocation, false)),
                });
                continue;
            }
        }
        // What starting now would cost the reservation: picks, and matching nodes kept busy
        // past its start.
        let picked: Option<(Picks, usize)> = match &resv {
            None => feas.pick(&cx.taken, cid, need, Use::Any).map(|p| (p, 0)),
            Some(r) => {
                let end = cx.now.plus_secs(a.walltime_seconds).as_millis();
                if end <= r.start {
                    feas.pick(&cx.taken, cid, need, Use::Any).map(|p| (p, 0))
                } else if let Some(p) = feas.pick(&cx.taken, cid, need, Use::Unreserved) {
                    Some((p, 0))
                } else {
                    // Taking every unreserved candidate first, this many reserved ones
                    // stay busy past the reservation's start.
                    let cost = need.saturating_sub(feas.free_unreserved(cid));
                    if feas.free(cid) >= need && cost > r.extra {
                        blocked.push(Blocked {
                            a,
                            cid,
                            tenant,
                            exist,
                            ahead: Some((r.allocation, false)),
                        });
                        continue;
                    }
                    feas.pick(&cx.taken, cid, need, Use::FewestReserved)
                        .map(|p| {
                            debug_assert_eq!(cost, feas.reserved_count(cid, &p));
                            (p, cost)
                        })
                }
            }
        };
        match picked {
            Some((picks, cost)) => {
                if let Some(r) = resv.as_mut() {
                    r.extra -= cost;
                    trace.backfilled.push(a.id);
                }
                feas.commit(&picks);
                let mut nodes: Vec<u32> = picks.iter().map(|p| p.1).collect();
                nodes.sort_unstable();
                cx.place(a, &nodes);
                plan.placements.push(Placement {
                    allocation: a.id,
                    nodes: nodes
                        .iter()
                        .map(|&i| cx.nodes[i as usize].id.clone())
                        .collect(),
                });
            }
            None => {
                blocked.push(Blocked {
                    a,
                    cid,
                    tenant,
                    exist,
                    ahead: resv.as_ref().map(|r| (r.allocation, false)),
                });
                if resv.is_some() {
                    continue;
                }
                match vc.policy {
                    Policy::Fifo => fifo_head = Some(a.id),
                    Policy::Backfill => {
                        let usable = feas.usable(cx, cid);
                        if let Some((start, free)) = shadow(&cx.avail, usable, need, &mut scratch) {
                            resv = Some(Reservation {
                                allocation: a.id,
                                constraints: cid,
                                need,
                                start,
                                extra: free - need,
                            });
                            trace.head = resv.clone();
                            head = Some(a);
                            feas.reserve(cx, cid);
                        }
                    }
                }
            }
        }
    }

    // Reasons of blocked allocations are decided against the nodes left free at the end, so
    // that the next cycle on the committed plan finds the same reasons: `priority` when it
    // would fit but a higher-scored allocation's reservation (or FIFO order) holds it back,
    // `resources` when not enough matching nodes are free.
    // Likewise quotas and caps: later placements may have used them up.
    let mut waiting = Vec::with_capacity(blocked.len());
    for b in blocked {
        let need = b.a.nodes as usize;
        let why = if let Some(why) = limit(cx, b.a, b.tenant, None) {
            why
        } else {
            waiting.push(b);
            match b.ahead {
                Some((head, fifo)) if feas.free(b.cid) >= need => Why::Priority { head, fifo },
                _ => Why::Resources {
                    need,
                    exist: b.exist,
                },
            }
        };
        reasons.note(b.a, why, plan);
    }
    write_estimates(cx, &mut feas, &pending, &waiting, plan);
    trace
}

/// An allocation that could not start now.
#[derive(Clone, Copy)]
struct Blocked<'a> {
    a: &'a Allocation,
    cid: usize,
    tenant: Option<u32>,
    /// Matching nodes in the vCluster.
    exist: usize,
    /// The allocation whose reservation (or FIFO position, `true`) was ahead of it.
    ahead: Option<(AllocId, bool)>,
}

/// A tenant quota or array cap that keeps `a` (of tenant index `tenant`) from starting now;
/// with `head`, also counting what the reserved allocation will need when it starts.
fn limit<'a>(
    cx: &mut Cycle<'a>,
    a: &'a Allocation,
    tenant: Option<u32>,
    head: Option<&Allocation>,
) -> Option<Why<'a>> {
    if let Some(ti) = tenant {
        let t = cx.tenants[ti as usize];
        let mut load = cx.loads[ti as usize];
        if let Some(h) = head.filter(|h| h.tenant == a.tenant) {
            load.nodes += u64::from(h.nodes);
            load.running += 1;
        }
        if let Some(quota) = quota_exceeded(t, load, a.nodes) {
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
    let array = a.array_id?;
    let cap = cx.state.array(array)?.max_running?;
    let reserved = u32::from(head.is_some_and(|h| h.array_id == Some(array)));
    (cx.array_running(array) + reserved >= cap).then_some(Why::ArrayLimit { array, cap })
}

/// Conservative estimated starts for the first blocked allocations, in queue order; the plan
/// gets the ones that moved by more than [`ESTIMATE_SLACK_MS`] (or appeared, or went away).
fn write_estimates<'a>(
    cx: &Cycle<'a>,
    feas: &mut Feasibility<'a>,
    pending: &[&'a Allocation],
    blocked: &[Blocked<'a>],
    plan: &mut Plan,
) {
    let mut estimates: FastMap<AllocId, u64> = FastMap::default();
    if !blocked.is_empty() {
        let mut avail = cx.avail.clone();
        let mut scratch = Vec::new();
        for b in blocked.iter().take(ESTIMATE_DEPTH) {
            let (a, cid) = (b.a, b.cid);
            let usable = feas.usable(cx, cid);
            let walltime_ms = a.walltime_seconds.saturating_mul(1000);
            if let Some(s) = estimate(&mut avail, usable, a.nodes as usize, walltime_ms, &mut scratch)
            {
                estimates.insert(a.id, ceil_second(s));
            }
        }
    }
    let placed: FastMap<AllocId, ()> = plan
        .placements
        .iter()
        .map(|p| (p.allocation, ()))
        .collect();
    // Only allocations that have an estimate, or get one, can change.
    for a in pending {
        let old = a.estimated_start.map(|t| t.as_millis());
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
