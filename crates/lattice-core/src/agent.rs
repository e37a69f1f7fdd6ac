//! The agent protocol's messages: heartbeats carrying exit reports, and the long-poll through
//! which an agent learns what should run (and what should stop) on its nodes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::allocation::AllocId;
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
}

/// `POST /api/v1/agent/heartbeat`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    pub nodes: Vec<NodeId>,
    #[serde(default)]
    pub reports: Vec<ExitReport>,
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    Run,
    Stop,
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
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkResponse {
    pub revision: u64,
    /// Every allocation currently occupying one of the requested nodes.
    pub assignments: Vec<Assignment>,
    pub unknown_nodes: Vec<NodeId>,
}
