//! The scheduler: a pure function from a snapshot of [`ClusterState`] and the time to a
//! [`Plan`]. The leader commits the whole plan as one Raft entry; apply re-validates it.
//!
//! One cycle schedules some vClusters (those that are due) one after the other; they share
//! the nodes taken in the cycle and the tenants' quota counts, but each has its own queue,
//! policy and reservation, so one vCluster's blocked queue never blocks another's.
//!
//! Pipeline per vCluster (see `README.md` beside this file and docs/scheduling.md):
//! 1. gates ([`queue`]): held and dependency-waiting allocations get their reason;
//! 2. [`score`]: priority, log-shaped aging, fair share, topology, weighted per vCluster; the
//!    [`queue`] merges the state's classes of pending work lazily in score order;
//! 3. placement in score order ([`pass`]): [`feasibility`] picks free matching nodes (cached
//!    per distinct constraint set, best fit by topology group); quotas and array caps are
//!    checked; an allocation that cannot start may [`preempt`] lower-priority work (the
//!    victims and its claim go into the plan); [`backfill`] gives the first blocked
//!    allocation a reservation (EASY) or, in a FIFO vCluster, stops the queue;
//! 4. [`reasons`] and estimated starts that changed go into the plan. Once nothing more can
//!    start and the estimates have their allocations, the pass stops reading: the reasons
//!    of the rest follow from their classes.

pub mod backfill;
pub mod claims;
pub mod cycle;
pub mod feasibility;
pub mod order;
pub mod pass;
pub mod preempt;
pub mod queue;
pub mod reasons;
pub mod score;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::allocation::AllocId;
use crate::node::NodeId;
use crate::state::{ClusterState, VcQueue};
use crate::time::Timestamp;
use crate::vcluster::VCluster;

pub use backfill::Reservation;
pub use reasons::{
    REASON_ARRAY_LIMIT, REASON_CLAIM, REASON_DEPENDENCY, REASON_HELD, REASON_PREEMPTING,
    REASON_PRIORITY, REASON_QUOTA, REASON_RESOURCES, REASON_UNSATISFIABLE,
};

/// Start `allocation` on `nodes` (rank order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub allocation: AllocId,
    pub nodes: Vec<NodeId>,
}

/// Preempt `victims` so that `preemptor` can start on `nodes` (its claim: free nodes and
/// nodes the victims hold, `preemptor`'s node count of them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPreemption {
    pub preemptor: AllocId,
    pub victims: Vec<AllocId>,
    pub nodes: Vec<NodeId>,
}

/// The outcome of one scheduling cycle.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub placements: Vec<Placement>,
    /// Preemptions, committed with the placements of the same cycle.
    pub preemptions: Vec<PlannedPreemption>,
    /// Pending allocations whose reason changed: (id, reason, detail).
    pub reasons: Vec<(AllocId, String, Option<String>)>,
    /// Pending allocations whose estimated start moved (by more than a few seconds).
    pub estimates: Vec<(AllocId, Option<Timestamp>)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.placements.is_empty()
            && self.preemptions.is_empty()
            && self.reasons.is_empty()
            && self.estimates.is_empty()
    }
}

/// What one vCluster's pass decided, for tests and diagnostics (not part of the plan).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VClusterTrace {
    pub vcluster: String,
    /// The backfill reservation, if an allocation got one.
    pub head: Option<Reservation>,
    /// Allocations started after the reservation was made, in order.
    pub backfilled: Vec<AllocId>,
}

/// Computes one cycle's plan for every vCluster. Pure: the same state and time give the same
/// plan.
pub fn schedule(state: &ClusterState, now: Timestamp) -> Plan {
    schedule_traced(state, now, None).0
}

/// Computes one cycle's plan for the named vClusters only (the leader's loop runs each
/// vCluster on its own interval).
pub fn schedule_some(state: &ClusterState, now: Timestamp, vclusters: &BTreeSet<String>) -> Plan {
    schedule_traced(state, now, Some(vclusters)).0
}

/// [`schedule`] or [`schedule_some`], with what each vCluster's pass decided.
pub fn schedule_traced(
    state: &ClusterState,
    now: Timestamp,
    only: Option<&BTreeSet<String>>,
) -> (Plan, Vec<VClusterTrace>) {
    run_cycle(state, now, only, true)
}

/// One cycle; `lazy`: passes stop reading their queues once the rest cannot start (off only
/// in tests, to check that this changes nothing).
fn run_cycle(
    state: &ClusterState,
    now: Timestamp,
    only: Option<&BTreeSet<String>>,
    lazy: bool,
) -> (Plan, Vec<VClusterTrace>) {
    let mut plan = Plan::default();
    let mut traces = Vec::new();
    let due: Vec<(&VCluster, &VcQueue)> = state
        .pending_by_vcluster()
        .keys()
        .filter(|name| only.is_none_or(|o| o.contains(*name)))
        // Submissions to unknown vClusters are refused.
        .filter_map(|name| Some((state.vcluster(name)?, state.queue(name)?)))
        .collect();
    if due.is_empty() {
        return (plan, traces);
    }
    let mut cx = cycle::Cycle::new(state, now);
    cx.lazy = lazy;
    cx.start_claims(&mut plan);
    let mut reasons = reasons::Reasons::new(state);
    // Sensitive tenants' work is placed on their claimed nodes, not from the shared queues.
    let any_sensitive = state.tenants().values().any(|t| t.sensitive);
    let skip = |tenant: &str| any_sensitive && state.is_sensitive(tenant);
    let mut private = Vec::new();
    if any_sensitive {
        for (_, q) in &due {
            private.extend(claims::sensitive(state, q));
        }
    }
    claims::place(&mut cx, private, &mut plan, &mut reasons);
    for (vc, q) in due {
        traces.push(pass::run(&mut cx, vc, q, &skip, &mut plan, &mut reasons));
    }
    (plan, traces)
}

#[cfg(test)]
mod tests;
