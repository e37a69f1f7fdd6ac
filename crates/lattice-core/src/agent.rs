//! The agent protocol's messages: heartbeats carrying exit reports, the long-poll through
//! which an agent learns what should run (and what should stop) on its nodes and which of
//! them it must wipe, and the reports of those wipes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::allocation::AllocId;
use crate::checkpoint::{CheckpointReport, CheckpointSpec};
use crate::command::WipeReport;
use crate::node::NodeId;
use crate::time::Timestamp;

/// How a rank of an allocation ended on one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitOutcome {
    /// The process exited (or was killed by a signal) on its own.
    Exited,
    /// The agent killed it at its walltime.
    Walltime,
    /// The agent killed it because the control plane no longer wants it (cancel, node reassigned).
    Stopped,
    /// The process could not be started (missing executable, bad working directory, ...).
    LaunchFailed,
    /// The agent ended it for a preemption (after its checkpoint, if it has one): the
    /// allocation goes back to pending.
    Preempted,
}

/// An agent's report that an allocation's process on one node is gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitReport {
    pub allocation_id: AllocId,
    pub node_id: NodeId,
    pub outcome: ExitOutcome,
    /// Exit status; `None` when killed by a signal or never started.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Signal that ended the process, if any.
    #[serde(default)]
    pub signal: Option<i32>,
    #[serde(default)]
    pub message: Option<String>,
    /// The run of the allocation this rank belonged to ([`Assignment::run`]); a report of an
    /// earlier run never touches a later one.
    #[serde(default)]
    pub run: u32,
}

/// `POST /api/v1/agent/heartbeat`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    pub nodes: Vec<NodeId>,
    #[serde(default)]
    pub reports: Vec<ExitReport>,
    /// Checkpoints that ended (applied before `reports`).
    #[serde(default)]
    pub checkpoints: Vec<CheckpointReport>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// Nodes the control plane does not know: the agent must register them again.
    pub unknown_nodes: Vec<NodeId>,
}

/// `POST /api/v1/agent/work`: long-poll for the work assigned to these nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkRequest {
    pub nodes: Vec<NodeId>,
    /// The `revision` of the last answer this agent acted on; the call returns as soon as the
    /// work of any of `nodes` changed after it, or after `wait_ms`.
    #[serde(default)]
    pub known_revision: u64,
    #[serde(default)]
    pub wait_ms: u64,
    /// Answer only the nodes whose work changed after `known_revision` (named in
    /// [`WorkResponse::changed_nodes`]); the others' work is what the agent last saw. An agent
    /// of many nodes then reconciles what changed instead of all of them at every change.
    #[serde(default)]
    pub changed_only: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    Run,
    Stop,
    /// Checkpoint (if the allocation supports it), then stop; report `preempted`.
    Preempt,
}

/// One allocation's rank on one node, with everything needed to run it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub allocation_id: AllocId,
    pub node_id: NodeId,
    pub desired: Desired,
    pub rank: u32,
    pub nodes: Vec<NodeId>,
    pub name: String,
    pub tenant: String,
    pub vcluster: String,
    pub user: String,
    pub command: Option<Vec<String>>,
    pub script: Option<String>,
    pub env: BTreeMap<String, String>,
    pub walltime_seconds: u64,
    pub started_at: Option<Timestamp>,
    /// Which run of the allocation this is (0 first, +1 per preemption):
    /// `LATTICE_RESTART_COUNT`. A rank is identified by (allocation, node, run).
    pub run: u32,
    pub checkpoint: CheckpointSpec,
    /// On-demand checkpoint requests so far: the agent checkpoints once for each new number
    /// seen while the rank runs.
    pub checkpoint_requests: u64,
}

/// A wipe the agent of `node_id` must run: the node's sensitive claim was released
/// ([`crate::node::NodeClaim::wipe`]); the node returns to the pool when the agent reports it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WipeOrder {
    pub node_id: NodeId,
    /// The [`crate::node::Wipe::id`] the report must name.
    pub wipe_id: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkResponse {
    pub revision: u64,
    /// Every allocation currently occupying one of the requested nodes.
    pub assignments: Vec<Assignment>,
    pub unknown_nodes: Vec<NodeId>,
    /// Requested nodes whose claim waits for a wipe (JSON only, never in the Raft log:
    /// absent from an older server's answer).
    #[serde(default)]
    pub wipes: Vec<WipeOrder>,
    /// When the request asked `changed_only`: the requested nodes this answer speaks for
    /// (known nodes whose work changed after its `known_revision`); `assignments` and `wipes`
    /// cover only them. Absent (the answer covers every requested node) otherwise, and from an
    /// older server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_nodes: Option<Vec<NodeId>>,
}

impl WorkResponse {
    /// Whether this answer says what `node` should run: every requested node for a complete
    /// answer, only the changed ones for a `changed_only` one.
    pub fn speaks_for(&self, node: &NodeId) -> bool {
        self.changed_nodes
            .as_ref()
            .is_none_or(|changed| changed.contains(node))
    }
}

/// `POST /api/v1/agent/wipes`: wipes that ended on the agent's nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WipeReportRequest {
    pub reports: Vec<WipeReport>,
}

/// How many of the reports ended a pending wipe; the others (no such wipe pending: a resent
/// or stale report) were ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WipeReportResponse {
    pub applied: u32,
    pub ignored: u32,
}
