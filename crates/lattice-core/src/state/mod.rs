//! [`ClusterState`]: the replicated state machine. [`ClusterState::apply`] is the one writer:
//! it dispatches each [`Command`] to its own handler (one file per command family), never reads
//! a clock or a random source, and either applies a command fully or rejects it unchanged.

mod allocations;
mod nodes;
mod plan;
mod query;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use query::AllocationFilter;

use crate::allocation::{AllocId, AllocState, Allocation};
use crate::command::{Command, CommandResult};
use crate::node::{Node, NodeId};
use crate::time::Timestamp;

/// Cluster state as every Raft member holds it after applying the same log.
///
/// Serialized (for snapshots) through [`StateData`]; derived indexes are rebuilt on load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StateData", into = "StateData")]
pub struct ClusterState {
    /// Incremented by every applied command (used by agents' long-polls).
    revision: u64,
    next_allocation_id: AllocId,
    allocations: BTreeMap<AllocId, Allocation>,
    nodes: BTreeMap<NodeId, Node>,
    // ---- derived indexes (not serialized) ----
    /// Pending allocations.
    pending: BTreeSet<AllocId>,
    /// Allocation count per state.
    state_counts: BTreeMap<AllocState, u64>,
}

/// The serialized form of [`ClusterState`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateData {
    revision: u64,
    next_allocation_id: AllocId,
    allocations: BTreeMap<AllocId, Allocation>,
    nodes: BTreeMap<NodeId, Node>,
}

impl From<StateData> for ClusterState {
    fn from(d: StateData) -> Self {
        let mut s = ClusterState {
            revision: d.revision,
            next_allocation_id: d.next_allocation_id,
            allocations: d.allocations,
            nodes: d.nodes,
            pending: BTreeSet::new(),
            state_counts: BTreeMap::new(),
        };
        for a in s.allocations.values() {
            if a.state == AllocState::Pending {
                s.pending.insert(a.id);
            }
            *s.state_counts.entry(a.state).or_default() += 1;
        }
        s
    }
}

impl From<ClusterState> for StateData {
    fn from(s: ClusterState) -> Self {
        StateData {
            revision: s.revision,
            next_allocation_id: s.next_allocation_id,
            allocations: s.allocations,
            nodes: s.nodes,
        }
    }
}

impl Default for ClusterState {
    fn default() -> Self {
        ClusterState {
            revision: 0,
            next_allocation_id: 1,
            allocations: BTreeMap::new(),
            nodes: BTreeMap::new(),
            pending: BTreeSet::new(),
            state_counts: BTreeMap::new(),
        }
    }
}

impl ClusterState {
    /// Applies one command. Deterministic: depends only on `self` and `cmd`.
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        self.revision += 1;
        match cmd {
            Command::SubmitAllocation { now, spec } => self.submit(*now, spec),
            Command::CancelAllocation { now, id, by } => self.cancel(*now, *id, by),
            Command::RegisterNode { now, registration } => self.register_node(*now, registration),
            Command::SetNodeDrain {
                now,
                node_id,
                drain,
                reason,
            } => self.set_drain(*now, node_id, *drain, reason.as_deref()),
            Command::ApplyPlan { now, plan } => Ok(self.apply_plan(*now, plan)),
            Command::ReportExits { now, reports } => Ok(self.report_exits(*now, reports)),
            Command::SetNodeLiveness { now, down, up } => Ok(self.set_liveness(*now, down, up)),
        }
    }

    /// Counts a state-only change (Raft blank or membership entries).
    pub fn bump_revision(&mut self) {
        self.revision += 1;
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The ID the next submitted allocation will get.
    pub fn next_allocation_id(&self) -> AllocId {
        self.next_allocation_id
    }

    pub fn allocation(&self, id: AllocId) -> Option<&Allocation> {
        self.allocations.get(&id)
    }

    pub fn allocations(&self) -> &BTreeMap<AllocId, Allocation> {
        &self.allocations
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.get(id)
    }

    pub fn nodes(&self) -> &BTreeMap<NodeId, Node> {
        &self.nodes
    }

    /// Pending allocation IDs, ascending.
    pub fn pending_ids(&self) -> &BTreeSet<AllocId> {
        &self.pending
    }

    /// Number of allocations in each state (every state present, possibly 0).
    pub fn state_counts(&self) -> BTreeMap<AllocState, u64> {
        AllocState::ALL
            .into_iter()
            .map(|s| (s, self.state_counts.get(&s).copied().unwrap_or(0)))
            .collect()
    }

    /// Moves an allocation to `to`, keeping the indexes in step. The one place states change.
    fn set_state(&mut self, id: AllocId, to: AllocState) {
        let Some(a) = self.allocations.get_mut(&id) else {
            return;
        };
        let from = a.state;
        if from == to {
            return;
        }
        a.state = to;
        // Drop a count that reaches zero: the index rebuilt from a snapshot has no zero
        // entries, and the derived `PartialEq` must see the two as equal.
        if let Some(c) = self.state_counts.get_mut(&from) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.state_counts.remove(&from);
            }
        }
        *self.state_counts.entry(to).or_default() += 1;
        if from == AllocState::Pending {
            self.pending.remove(&id);
        }
        if to == AllocState::Pending {
            self.pending.insert(id);
        }
    }

    /// Moves an allocation to a terminal state with its reason, keeping the indexes in step.
    /// `set_state` must see the old state, so it runs before `Allocation::finish`.
    fn finish(
        &mut self,
        id: AllocId,
        to: AllocState,
        now: Timestamp,
        reason: Option<&str>,
        detail: Option<String>,
    ) {
        self.set_state(id, to);
        if let Some(a) = self.allocations.get_mut(&id) {
            a.finish(to, now, reason, detail);
        }
    }

    /// Removes an allocation from a node's occupancy and refreshes the node.
    fn release(&mut self, node_id: &str, id: AllocId) -> bool {
        let revision = self.revision;
        let Some(n) = self.nodes.get_mut(node_id) else {
            return false;
        };
        if !n.allocations.remove(&id) {
            return false;
        }
        n.work_revision = revision;
        n.refresh_state();
        true
    }

    /// Marks every node still holding `id` as having changed work (so its agent stops it).
    fn touch_nodes_of(&mut self, id: AllocId) {
        let revision = self.revision;
        let Some(a) = self.allocations.get(&id) else {
            return;
        };
        for nid in &a.assigned_nodes {
            if let Some(n) = self.nodes.get_mut(nid) {
                if n.allocations.contains(&id) {
                    n.work_revision = revision;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
