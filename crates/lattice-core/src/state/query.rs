//! Read-side helpers over [`ClusterState`]: filtered allocation pages and the work assigned to
//! a set of nodes (with the wipes their agents must run).

use crate::agent::{Assignment, Desired, WipeOrder, WorkResponse};
use crate::allocation::{AllocId, AllocState, Allocation};
use crate::node::NodeId;
use crate::state::ClusterState;

/// Filters of `GET /api/v1/allocations`. `after` is the cursor: the last ID of the previous page.
#[derive(Clone, Debug, Default)]
pub struct AllocationFilter {
    pub state: Option<AllocState>,
    pub tenant: Option<String>,
    pub user: Option<String>,
    pub vcluster: Option<String>,
    /// Only elements of this array.
    pub array: Option<AllocId>,
    pub after: Option<AllocId>,
    pub limit: usize,
    /// Only these tenants (the caller's scope); `None`: every tenant.
    pub tenants: Option<Vec<String>>,
}

impl AllocationFilter {
    fn matches(&self, a: &Allocation) -> bool {
        self.state.is_none_or(|s| a.state == s)
            && self.tenant.as_deref().is_none_or(|t| a.tenant == t)
            && self.user.as_deref().is_none_or(|u| a.user == u)
            && self.vcluster.as_deref().is_none_or(|v| a.vcluster == v)
            && self.array.is_none_or(|x| a.array_id == Some(x))
            && self
                .tenants
                .as_ref()
                .is_none_or(|ts| ts.contains(&a.tenant))
    }
}

impl ClusterState {
    /// One page of allocations in ID order, and whether more follow.
    pub fn list_allocations(&self, f: &AllocationFilter) -> (Vec<&Allocation>, bool) {
        let start = f.after.map_or(0, |c| c.saturating_add(1));
        let limit = f.limit.max(1);
        let mut page = Vec::with_capacity(limit.min(1024));
        let mut more = false;
        // Pending is the common filter on a busy cluster: walk its index, not every allocation.
        let ids: Box<dyn Iterator<Item = AllocId>> = if f.state == Some(AllocState::Pending) {
            Box::new(self.pending.range(start..).copied())
        } else {
            Box::new(self.allocations.range(start..).map(|(id, _)| *id))
        };
        for id in ids {
            let a = &self.allocations[&id];
            if !f.matches(a) {
                continue;
            }
            if page.len() == limit {
                more = true;
                break;
            }
            page.push(&**a);
        }
        (page, more)
    }

    /// The newest work revision among `nodes` (0 for unknown nodes).
    pub fn work_revision(&self, nodes: &[NodeId]) -> u64 {
        nodes
            .iter()
            .filter_map(|n| self.nodes.get(n))
            .map(|n| n.work_revision)
            .max()
            .unwrap_or(0)
    }

    /// Whether a poll that last saw `known` must be answered now: one of `nodes` has work
    /// newer than `known`, or is unknown. The same as `work_revision(nodes) > known` or an
    /// unknown node, in one pass that stops at the first such node.
    pub fn work_stale(&self, nodes: &[NodeId], known: u64) -> bool {
        nodes
            .iter()
            .any(|n| self.nodes.get(n).is_none_or(|n| n.work_revision > known))
    }

    /// What should run, or stop, on each of `nodes`, and which of them to wipe. A release
    /// bumps the node's `work_revision`, so a new wipe order wakes the agent's long-poll.
    pub fn work_for(&self, nodes: &[NodeId]) -> WorkResponse {
        self.work_of(nodes, None)
    }

    /// [`Self::work_for`] restricted to the nodes whose work changed after revision `since`,
    /// named in [`WorkResponse::changed_nodes`]. `revision` is still that of every node.
    pub fn work_changed_since(&self, nodes: &[NodeId], since: u64) -> WorkResponse {
        self.work_of(nodes, Some(since))
    }

    /// Each node is looked up once (a batched poll names up to a few hundred, and polls are
    /// answered at every change of their nodes): the revision is the newest seen on the way.
    fn work_of(&self, nodes: &[NodeId], since: Option<u64>) -> WorkResponse {
        let mut out = WorkResponse {
            changed_nodes: since.map(|_| Vec::new()),
            ..Default::default()
        };
        for nid in nodes {
            let Some(n) = self.nodes.get(nid) else {
                out.unknown_nodes.push(nid.clone());
                continue;
            };
            out.revision = out.revision.max(n.work_revision);
            if let (Some(since), Some(changed)) = (since, out.changed_nodes.as_mut()) {
                if n.work_revision <= since {
                    continue;
                }
                changed.push(nid.clone());
            }
            if let Some(w) = n.claim.as_ref().and_then(|c| c.wipe.as_ref()) {
                out.wipes.push(WipeOrder {
                    node_id: nid.clone(),
                    wipe_id: w.id,
                });
            }
            for aid in &n.allocations {
                let Some(a) = self.allocations.get(aid) else {
                    continue;
                };
                out.assignments.push(assignment(a, nid));
            }
        }
        out
    }
}

/// The rank of `a` on `nid`, as its agent gets it.
fn assignment(a: &Allocation, nid: &NodeId) -> Assignment {
    let rank = a.assigned_nodes.iter().position(|x| x == nid).unwrap_or(0) as u32;
    Assignment {
        allocation_id: a.id,
        node_id: nid.clone(),
        desired: match a.state {
            AllocState::Running => Desired::Run,
            AllocState::Preempting => Desired::Preempt,
            _ => Desired::Stop,
        },
        rank,
        nodes: a.assigned_nodes.clone(),
        name: a.name.clone(),
        tenant: a.tenant.clone(),
        vcluster: a.vcluster.clone(),
        user: a.user.clone(),
        command: a.command.clone(),
        script: a.script.clone(),
        env: job_env(a),
        walltime_seconds: a.walltime_seconds,
        started_at: a.started_at,
        run: a.preempt_count,
        checkpoint: a.checkpoint.clone(),
        checkpoint_requests: a.checkpoint_requests,
    }
}

/// The job's environment as the agent gets it: the user's variables, plus
/// `LATTICE_ARRAY_ID` and `LATTICE_TASK_INDEX` for an array element (the agent adds
/// `LATTICE_RESTART_COUNT` and the checkpoint variables from the assignment).
fn job_env(a: &Allocation) -> std::collections::BTreeMap<String, String> {
    let mut env = (*a.env).clone();
    if let (Some(array), Some(index)) = (a.array_id, a.array_index) {
        env.insert("LATTICE_ARRAY_ID".into(), array.to_string());
        env.insert("LATTICE_TASK_INDEX".into(), index.to_string());
    }
    env
}
