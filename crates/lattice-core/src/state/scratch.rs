//! What applying commands produces besides the state itself, drained by the server after each
//! batch of entries: the audit entries ([`ClusterState::take_audit`]) and the nodes whose work
//! changed ([`ClusterState::take_work_changed`], so that only their agents' long-polls wake).
//! Not part of the replicated state: equality ignores it and snapshots do not carry it.

use std::collections::BTreeSet;

use crate::audit::AuditEntry;
use crate::node::{Node, NodeId};
use crate::state::ClusterState;
use crate::time::Timestamp;

#[derive(Clone, Debug, Default)]
pub(crate) struct Scratch {
    /// The current command's time.
    pub(crate) now: Timestamp,
    /// Audit entries produced since the last drain, in `seq` order.
    pub(crate) audit: Vec<AuditEntry>,
    /// Nodes whose `work_revision` moved since the last drain (a set: bounded by the nodes
    /// even if nobody drains it).
    pub(crate) work_changed: BTreeSet<NodeId>,
}

impl PartialEq for Scratch {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Scratch {}

/// Node `n`'s work changed at `revision`: its agent's long-poll must answer.
pub(super) fn touch(n: &mut Node, revision: u64, changed: &mut BTreeSet<NodeId>) {
    n.work_revision = revision;
    if !changed.contains(&n.id) {
        changed.insert(n.id.clone());
    }
}

impl ClusterState {
    /// The nodes whose work changed in the commands applied since the last call.
    pub fn take_work_changed(&mut self) -> BTreeSet<NodeId> {
        std::mem::take(&mut self.scratch.work_changed)
    }
}
