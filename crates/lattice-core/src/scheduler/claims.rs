//! Sensitive tenants' work runs only on nodes its user claimed (`lattice claim`), and claimed
//! nodes take no other work: [`sensitive`] lists sensitive allocations, which the shared queues skip
//! (whose passes never see claimed nodes: they are not free and never expected to be, see
//! `cycle::expected_free`), and [`place`] starts them on their owner's claimed, idle nodes.
//!
//! Each owner's claim is a small private pool: allocations go in priority order, then ID,
//! first fit (no backfill or preemption inside a claim); quotas and array caps still apply.

use std::collections::BTreeMap;

use crate::allocation::Allocation;
use crate::scheduler::cycle::{Cycle, Work};
use crate::scheduler::reasons::{Reasons, Why};
use crate::scheduler::{Placement, Plan};
use crate::state::{ClusterState, VcQueue};

/// The pending allocations of sensitive tenants in a vCluster's queue index (the shared
/// queue skips them).
pub fn sensitive<'a>(state: &'a ClusterState, q: &'a VcQueue) -> Vec<&'a Allocation> {
    let classed = q
        .classes
        .iter()
        .filter(|(c, _)| state.is_sensitive(&c.tenant))
        .flat_map(|(_, by_reason)| by_reason.values().flatten().map(|m| m.1));
    classed
        .chain(q.irregular.iter().copied())
        .filter_map(|id| state.allocation(id))
        .filter(|a| state.is_sensitive(&a.tenant))
        .collect()
}

/// Places sensitive allocations on their owners' claimed nodes.
pub fn place<'a>(
    cx: &mut Cycle<'a>,
    mut private: Vec<&'a Allocation>,
    plan: &mut Plan,
    reasons: &mut Reasons<'a>,
) {
    if private.is_empty() {
        return;
    }
    // Claimed nodes (cycle indices) by (tenant, user).
    let mut pools: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, n) in cx.nodes.iter().enumerate() {
        if let Some(c) = &n.claim {
            pools
                .entry((c.tenant.as_str(), c.user.as_str()))
                .or_default()
                .push(i);
        }
    }
    private.sort_by_key(|a| (std::cmp::Reverse(a.priority), a.id));
    for a in private {
        if let Some(why) = super::queue::gate(cx, a) {
            reasons.note(a, why, plan);
            continue;
        }
        let pool = pools
            .get(&(a.tenant.as_str(), a.user.as_str()))
            .map_or(&[][..], Vec::as_slice);
        let fit: Vec<usize> = pool
            .iter()
            .copied()
            .filter(|&i| {
                let n = cx.nodes[i];
                !cx.taken[i] && n.free_for(&a.tenant, &a.user) && n.satisfies(&a.constraints)
            })
            .take(a.nodes as usize)
            .collect();
        let claim = Why::Claim {
            tenant: &a.tenant,
            user: &a.user,
            need: a.nodes as usize,
            claimed: pool.len(),
        };
        if fit.len() < a.nodes as usize {
            reasons.note(a, claim, plan);
            continue;
        }
        let w = Work::of(cx, a);
        if let Some(t) = w.tenant() {
            let tenant = cx.tenants[t as usize];
            if let Some(quota) =
                crate::tenant::quota_exceeded(tenant, cx.loads[t as usize], w.nodes)
            {
                let limit = match quota {
                    "max_nodes" => tenant.max_nodes,
                    _ => tenant.max_running,
                };
                let why = Why::Quota {
                    tenant: &tenant.name,
                    quota,
                    limit: limit.unwrap_or(0),
                };
                reasons.note(a, why, plan);
                continue;
            }
        }
        if let Some(array) = w.array() {
            let cap = cx.state.array(array).and_then(|i| i.max_running);
            if let Some(cap) = cap.filter(|&c| cx.array_running(array) >= c) {
                reasons.note(a, Why::ArrayLimit { array, cap }, plan);
                continue;
            }
        }
        let picked: Vec<u32> = fit.iter().map(|&i| i as u32).collect();
        cx.place(&w, &picked);
        plan.placements.push(Placement {
            allocation: a.id,
            nodes: fit.iter().map(|&i| cx.nodes[i].id.clone()).collect(),
        });
    }
}
