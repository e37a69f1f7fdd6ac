//! Queue order: highest `priority` first, then oldest submission (lowest ID breaks ties).

use std::cmp::Reverse;

use crate::allocation::Allocation;
use crate::state::ClusterState;

/// Pending allocations in the order the scheduler considers them.
pub fn queue(state: &ClusterState) -> Vec<&Allocation> {
    let mut q: Vec<&Allocation> = state
        .pending_ids()
        .iter()
        .filter_map(|id| state.allocation(*id))
        .collect();
    q.sort_by_key(|a| (Reverse(a.priority), a.submitted_at, a.id));
    q
}
