//! The scheduler: a pure function from a snapshot of [`ClusterState`] and the time to a
//! [`Plan`]. The leader commits the whole plan as one Raft entry; apply re-validates it.
//!
//! Pipeline (see `README.md` beside this file):
//! 1. [`order`]: pending allocations, highest priority first, then oldest.
//! 2. [`feasibility`]: for each, the free nodes that satisfy its constraints (cached per
//!    distinct constraint set, so 100k queued jobs do not rescan 10k nodes each).
//! 3. Placement: whole nodes, lowest node ID first; a job that cannot start now is skipped and
//!    gets a pending `reason` (`resources`, or `unsatisfiable` when not enough nodes in the
//!    whole cluster could ever match).

pub mod feasibility;
pub mod order;

use serde::{Deserialize, Serialize};

use crate::allocation::AllocId;
use crate::node::NodeId;
use crate::state::ClusterState;
use crate::time::Timestamp;

use feasibility::Feasibility;

/// Start `allocation` on `nodes` (rank order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub allocation: AllocId,
    pub nodes: Vec<NodeId>,
}

/// The outcome of one scheduling cycle.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub placements: Vec<Placement>,
    /// Pending allocations whose reason changed: (id, reason, detail).
    pub reasons: Vec<(AllocId, String, Option<String>)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.placements.is_empty() && self.reasons.is_empty()
    }
}

pub const REASON_RESOURCES: &str = "resources";
pub const REASON_UNSATISFIABLE: &str = "unsatisfiable";

/// Computes one cycle's plan. Pure: the same state and time give the same plan.
pub fn schedule(state: &ClusterState, _now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let queue = order::queue(state);
    if queue.is_empty() {
        return plan;
    }
    let mut feas = Feasibility::new(state);
    for a in queue {
        let need = a.nodes as usize;
        let (reason, detail) = match feas.take(&a.constraints, need) {
            Some(nodes) => {
                plan.placements.push(Placement {
                    allocation: a.id,
                    nodes,
                });
                continue;
            }
            None => {
                let exist = feas.matching_total(&a.constraints);
                if exist < need {
                    (
                        REASON_UNSATISFIABLE,
                        format!(
                            "needs {need} nodes matching its constraints; the cluster has {exist}"
                        ),
                    )
                } else {
                    (
                        REASON_RESOURCES,
                        format!("waiting for {need} free nodes ({exist} match its constraints)"),
                    )
                }
            }
        };
        if a.reason.as_deref() != Some(reason)
            || a.reason_detail.as_deref() != Some(detail.as_str())
        {
            plan.reasons.push((a.id, reason.to_string(), Some(detail)));
        }
    }
    plan
}

#[cfg(test)]
mod tests;
