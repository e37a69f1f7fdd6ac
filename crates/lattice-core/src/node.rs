//! Compute nodes: what an agent registers ([`NodeRegistration`]) and what the cluster keeps
//! ([`Node`]): resources, drain/down flags and which allocations occupy the node.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::allocation::{AllocId, Constraints};
use crate::time::Timestamp;

/// Node names, e.g. `nid0001` or `dev-1`; chosen by the agent's configuration.
pub type NodeId = String;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Accepts new work.
    Ready,
    /// Drain requested; allocations still run, no new work is placed.
    Draining,
    /// Drained and empty.
    Drained,
    /// Heartbeats stopped for longer than `node_down_after_seconds`.
    Down,
}

impl NodeState {
    pub const ALL: [NodeState; 4] = [
        NodeState::Ready,
        NodeState::Draining,
        NodeState::Drained,
        NodeState::Down,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Ready => "ready",
            NodeState::Draining => "draining",
            NodeState::Drained => "drained",
            NodeState::Down => "down",
        }
    }
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    pub count: u32,
    /// Model name as NVML reports it, e.g. `NVIDIA H100 80GB HBM3`.
    #[serde(rename = "type")]
    pub model: Option<String>,
}

/// What an agent reports about a node when it registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRegistration {
    pub id: NodeId,
    pub hostname: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    #[serde(default)]
    pub gpus: GpuInfo,
    #[serde(default)]
    pub features: Vec<String>,
    /// Base URL of the agent's own HTTP server (logs are fetched from it).
    pub agent_url: String,
    /// The ID of the API token the agent registered with: set by the server from the
    /// authenticated caller (whatever the body says). The server proves itself to the agent's
    /// log endpoint with that token's hash.
    #[serde(default)]
    pub agent_token: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: NodeId,
    pub hostname: String,
    pub state: NodeState,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub gpus: GpuInfo,
    pub features: Vec<String>,
    pub agent_url: String,
    /// The API token the agent registered with (see [`NodeRegistration::agent_token`]).
    pub agent_token: Option<String>,
    pub registered_at: Timestamp,
    /// Last heartbeat the serving member has seen. Heartbeats do not go through Raft; the
    /// replicated value is the last registration or liveness change, and the API overlays the
    /// live value from the leader's memory.
    pub last_heartbeat: Option<Timestamp>,
    /// An operator asked for no new work here.
    pub drain: bool,
    /// Heartbeats were lost.
    pub down: bool,
    pub state_reason: Option<String>,
    /// Allocations occupying the node: placed and not yet reported gone by its agent.
    pub allocations: BTreeSet<AllocId>,
    /// State revision at which this node's assigned work last changed (for agent long-polls).
    pub work_revision: u64,
    /// A sensitive tenant's user owns the node (`lattice claim`): only that user's work of
    /// that tenant runs here.
    pub claim: Option<NodeClaim>,
}

/// Exclusive ownership of a node by one user of a sensitive tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeClaim {
    pub tenant: String,
    pub user: String,
    pub since: Timestamp,
    /// Who made the claim, when not `user` (an admin).
    pub by: Option<String>,
    /// Set on release: the agent runs the wipe command; the claim ends when it reports.
    pub wipe: Option<Wipe>,
}

/// A wipe the node's agent must run before the node returns to the pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wipe {
    /// Identifies this wipe in the agent's report (the state revision of the release).
    pub id: u64,
    pub requested_at: Timestamp,
    pub requested_by: String,
}

impl Node {
    pub fn from_registration(reg: NodeRegistration, now: Timestamp, revision: u64) -> Self {
        Node {
            id: reg.id,
            hostname: reg.hostname,
            state: NodeState::Ready,
            cpus: reg.cpus,
            memory_bytes: reg.memory_bytes,
            gpus: reg.gpus,
            features: reg.features,
            agent_url: reg.agent_url,
            agent_token: reg.agent_token,
            registered_at: now,
            last_heartbeat: Some(now),
            drain: false,
            down: false,
            state_reason: None,
            allocations: BTreeSet::new(),
            work_revision: revision,
            claim: None,
        }
    }

    /// Recomputes `state` from the flags and occupancy.
    pub(crate) fn refresh_state(&mut self) {
        self.state = if self.down {
            NodeState::Down
        } else if self.drain && self.allocations.is_empty() {
            NodeState::Drained
        } else if self.drain {
            NodeState::Draining
        } else {
            NodeState::Ready
        };
    }

    /// Ready, holding no allocation and claimed by nobody: a candidate for new work.
    pub fn is_free(&self) -> bool {
        self.claim.is_none() && self.is_idle()
    }

    /// Ready and holding no allocation (claimed or not).
    pub fn is_idle(&self) -> bool {
        self.state == NodeState::Ready && self.allocations.is_empty()
    }

    /// Whether the node's claim lets `user`'s work of `tenant` start here now: claimed by
    /// them, not being wiped, ready and idle.
    pub fn free_for(&self, tenant: &str, user: &str) -> bool {
        self.claim
            .as_ref()
            .is_some_and(|c| c.tenant == tenant && c.user == user && c.wipe.is_none())
            && self.is_idle()
    }

    /// Whether the node's resources satisfy the constraints (ignoring its state).
    pub fn satisfies(&self, c: &Constraints) -> bool {
        if !c.features.iter().all(|f| self.features.contains(f)) {
            return false;
        }
        if let Some(min) = c.min_cpus {
            if self.cpus < min {
                return false;
            }
        }
        if let Some(min_gb) = c.min_memory_gb {
            if self.memory_bytes < min_gb.saturating_mul(1 << 30) {
                return false;
            }
        }
        let min_gpus = c.min_gpus.unwrap_or(0).max(u32::from(c.gpu_type.is_some()));
        if self.gpus.count < min_gpus {
            return false;
        }
        if let Some(want) = &c.gpu_type {
            let have = self.gpus.model.as_deref().unwrap_or("").to_lowercase();
            if !have.contains(&want.to_lowercase()) {
                return false;
            }
        }
        true
    }
}
