//! The tie-break order among allocations with equal scores: higher `priority` first, then the
//! oldest submission, then the lowest ID. [`queue`] lists pending allocations in this order
//! alone (the score's other terms aside).

use std::cmp::{Ordering, Reverse};

use crate::allocation::Allocation;
use crate::state::ClusterState;

/// Orders `a` before `b` when it has the higher priority, then the older submission, then
/// the lower ID.
pub fn tie_break(a: &Allocation, b: &Allocation) -> Ordering {
    (Reverse(a.priority), a.submitted_at, a.id).cmp(&(Reverse(b.priority), b.submitted_at, b.id))
}

/// Pending allocations in tie-break order.
pub fn queue(state: &ClusterState) -> Vec<&Allocation> {
    let mut q: Vec<&Allocation> = state
        .pending_ids()
        .iter()
        .filter_map(|id| state.allocation(*id))
        .collect();
    q.sort_by(|a, b| tie_break(a, b));
    q
}
