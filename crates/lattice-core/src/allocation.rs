//! Allocations: a user's request for whole nodes to run one command ([`AllocationSpec`]) and
//! the record the cluster keeps of it ([`Allocation`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointRecord, CheckpointRound, CheckpointSpec};
use crate::dependency::Dependency;
use crate::node::NodeId;
use crate::time::Timestamp;

/// Allocation IDs are positive integers assigned by the state machine in commit order.
pub type AllocId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllocState {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
    /// Being preempted: still on its nodes while it checkpoints and stops; then back to
    /// `pending` (appended last: states are encoded by index).
    Preempting,
}

impl AllocState {
    pub const ALL: [AllocState; 6] = [
        AllocState::Pending,
        AllocState::Running,
        AllocState::Completed,
        AllocState::Failed,
        AllocState::Cancelled,
        AllocState::Preempting,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            AllocState::Completed | AllocState::Failed | AllocState::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AllocState::Pending => "pending",
            AllocState::Running => "running",
            AllocState::Completed => "completed",
            AllocState::Failed => "failed",
            AllocState::Cancelled => "cancelled",
            AllocState::Preempting => "preempting",
        }
    }

    pub fn parse(text: &str) -> Option<AllocState> {
        AllocState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for AllocState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a node must offer for an allocation to be placed on it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// Every listed feature must be present on the node.
    #[serde(default)]
    pub features: Vec<String>,
    /// GPU model, matched case-insensitively as a substring of the node's GPU model.
    #[serde(default)]
    pub gpu_type: Option<String>,
    #[serde(default)]
    pub min_gpus: Option<u32>,
    #[serde(default)]
    pub min_memory_gb: Option<u64>,
    #[serde(default)]
    pub min_cpus: Option<u32>,
}

/// Environment variables of an allocation's ranks. Behind an `Arc` so that the allocations
/// made from one submission (an array's elements) share one map instead of a copy each:
/// a one-entry `BTreeMap` costs a whole B-tree leaf (about 540 bytes), which at a million
/// array elements was a third of the control plane's memory. Serialized as the map itself
/// (API, snapshots and log entries unchanged); [`crate::state::ClusterState`] shares equal
/// maps again after a snapshot is loaded.
pub type Env = Arc<BTreeMap<String, String>>;

/// `env` as an [`Env`]; all empty ones share one map (most submissions set no variables).
pub fn env_of(env: BTreeMap<String, String>) -> Env {
    static EMPTY: std::sync::LazyLock<Env> = std::sync::LazyLock::new(Env::default);
    if env.is_empty() {
        EMPTY.clone()
    } else {
        Arc::new(env)
    }
}

/// A validated submission, with every default filled in. Built by [`crate::submit`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationSpec {
    pub name: String,
    pub tenant: String,
    pub vcluster: String,
    pub user: String,
    /// argv to execute; exactly one of `command` and `script` is set.
    pub command: Option<Vec<String>>,
    /// Script text run with `/bin/sh`.
    pub script: Option<String>,
    pub nodes: u32,
    pub walltime_seconds: u64,
    pub priority: u8,
    pub constraints: Constraints,
    /// Shared, not copied, by the allocations made from one spec (an array's elements):
    /// see [`Env`].
    pub env: Env,
    /// May be preempted by higher-priority work of its vCluster (`--no-preempt`: false).
    pub preemptible: bool,
    pub checkpoint: CheckpointSpec,
}

/// A preemption in progress: who it makes room for, and since when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preemption {
    pub by: AllocId,
    pub since: Timestamp,
    /// Ranks the agents ended for the preemption (rather than ranks that ended on their own).
    pub stopped_ranks: u32,
}

/// The cluster's record of an allocation. Serialized as-is in the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub id: AllocId,
    pub name: String,
    pub tenant: String,
    pub vcluster: String,
    pub user: String,
    pub command: Option<Vec<String>>,
    pub script: Option<String>,
    pub nodes: u32,
    pub walltime_seconds: u64,
    pub priority: u8,
    pub constraints: Constraints,
    pub env: Env,

    pub state: AllocState,
    /// Nodes the allocation was placed on, in rank order (empty while pending).
    pub assigned_nodes: Vec<NodeId>,
    pub submitted_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// First non-zero exit code of any rank, else 0 once every rank exited.
    pub exit_code: Option<i32>,
    /// Why it is pending (`priority`, `resources`, `quota`, `dependency`, `held`,
    /// `array_limit`, `unsatisfiable`, `preempting`, `preempted`) or why it failed / was
    /// cancelled (`exit_code`, `signal`, `walltime`, `node_lost`, `launch_failed`, `stopped`,
    /// `cancelled`, `dependency_failed`, `requeued`).
    pub reason: Option<String>,
    /// Human-readable detail for `reason`.
    pub reason_detail: Option<String>,
    /// Exit code reported by each rank's node (a negative value is a signal number, negated).
    pub node_exit_codes: BTreeMap<NodeId, i32>,

    /// The array this allocation is an element of (the array's ID), if any.
    pub array_id: Option<AllocId>,
    /// The element's task index (`LATTICE_TASK_INDEX`).
    pub array_index: Option<u32>,
    /// Allocations (or arrays) that must end first.
    pub depends_on: Vec<Dependency>,
    /// Held by a user: not scheduled until released.
    pub held: bool,
    /// While pending: when the scheduler expects it to start (set for the allocations at the
    /// head of the queue; may lie in the past when it waits on work that overran its walltime).
    pub estimated_start: Option<Timestamp>,
    /// This allocation re-runs the work of that one (`lattice requeue`).
    pub requeued_from: Option<AllocId>,
    /// This allocation's work was requeued as that allocation.
    pub requeued_as: Option<AllocId>,

    pub preemptible: bool,
    pub checkpoint: CheckpointSpec,
    /// Times it was preempted and went back to pending: the number of its current run
    /// (`LATTICE_RESTART_COUNT`).
    pub preempt_count: u32,
    /// Set when it entered `preempting` (kept if it then ended another way, cleared when it
    /// went back to pending).
    pub preemption: Option<Preemption>,
    /// While pending: nodes a preemption freed (or is freeing) for it; nothing else is placed
    /// there.
    pub claimed_nodes: Vec<NodeId>,
    /// Successful checkpoint rounds, and when the last one ended.
    pub checkpoint_count: u32,
    pub last_checkpoint_at: Option<Timestamp>,
    /// The last checkpoint round that ended, whatever its outcome.
    pub last_checkpoint: Option<CheckpointRecord>,
    /// On-demand checkpoint requests so far (the agent acts on each new number once).
    pub checkpoint_requests: u64,
    /// Rounds whose ranks are still reporting (at most a few).
    pub checkpoint_rounds: Vec<CheckpointRound>,
    /// Node-milliseconds of its earlier runs, ended by preemption.
    pub preempted_node_ms: u64,
    /// The authenticated caller who submitted it on `user`'s behalf (an admin), if not `user`.
    pub submitted_by: Option<String>,
}

impl Allocation {
    pub fn new(id: AllocId, spec: AllocationSpec, now: Timestamp) -> Self {
        Allocation {
            id,
            name: spec.name,
            tenant: spec.tenant,
            vcluster: spec.vcluster,
            user: spec.user,
            command: spec.command,
            script: spec.script,
            nodes: spec.nodes,
            walltime_seconds: spec.walltime_seconds,
            priority: spec.priority,
            constraints: spec.constraints,
            env: spec.env,
            state: AllocState::Pending,
            assigned_nodes: Vec::new(),
            submitted_at: now,
            started_at: None,
            finished_at: None,
            exit_code: None,
            reason: None,
            reason_detail: None,
            node_exit_codes: BTreeMap::new(),
            array_id: None,
            array_index: None,
            depends_on: Vec::new(),
            held: false,
            estimated_start: None,
            requeued_from: None,
            requeued_as: None,
            preemptible: spec.preemptible,
            checkpoint: spec.checkpoint,
            preempt_count: 0,
            preemption: None,
            claimed_nodes: Vec::new(),
            checkpoint_count: 0,
            last_checkpoint_at: None,
            last_checkpoint: None,
            checkpoint_requests: 0,
            checkpoint_rounds: Vec::new(),
            preempted_node_ms: 0,
            submitted_by: None,
        }
    }

    /// How users name it: `42`, or `42_7` for task 7 of array 42.
    pub fn job_ref(&self) -> String {
        match (self.array_id, self.array_index) {
            (Some(a), Some(i)) => format!("{a}_{i}"),
            _ => self.id.to_string(),
        }
    }

    /// Moves the allocation to a terminal state with its reason. The state machine calls it
    /// only through `ClusterState::finish`, which first updates the state indexes.
    pub(crate) fn finish(
        &mut self,
        state: AllocState,
        now: Timestamp,
        reason: Option<&str>,
        detail: Option<String>,
    ) {
        debug_assert!(state.is_terminal());
        self.state = state;
        self.finished_at = Some(now);
        self.reason = reason.map(str::to_string);
        self.reason_detail = detail;
    }
}
