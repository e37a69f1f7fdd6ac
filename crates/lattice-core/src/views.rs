//! What the API answers about tenants, vClusters and arrays: their records plus figures
//! derived from the state (loads, usage, counts). Built by pure functions of the state and the
//! time; the server serializes them and the client reads them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::allocation::{AllocId, AllocState};
use crate::state::ClusterState;
use crate::tenant::Tenant;
use crate::time::Timestamp;
use crate::vcluster::VCluster;

/// `GET /api/v1/tenants/{name}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantView {
    pub name: String,
    pub share: u32,
    pub max_nodes: Option<u32>,
    pub max_running: Option<u32>,
    pub sensitive: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Nodes held by its running allocations.
    pub running_nodes: u64,
    pub running_allocations: u64,
    /// Fair-share usage per vCluster: node-seconds of ended work, decayed to now.
    pub usage_node_seconds: BTreeMap<String, f64>,
}

impl TenantView {
    pub fn of(state: &ClusterState, t: &Tenant, now: Timestamp) -> Self {
        let load = state.tenant_load(&t.name);
        let usage_node_seconds = state
            .usage()
            .iter()
            .filter_map(|(vc, per)| {
                let u = per.get(&t.name)?;
                let half_life = state
                    .vcluster(vc)
                    .map_or(0, |v| v.fairshare_half_life_seconds.saturating_mul(1000));
                Some((vc.clone(), u.at(now, half_life) as f64 / 1000.0))
            })
            .collect();
        TenantView {
            name: t.name.clone(),
            share: t.share,
            max_nodes: t.max_nodes,
            max_running: t.max_running,
            sensitive: t.sensitive,
            created_at: t.created_at,
            updated_at: t.updated_at,
            running_nodes: load.nodes,
            running_allocations: load.running,
            usage_node_seconds,
        }
    }
}

/// `GET /api/v1/vclusters/{name}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VClusterView {
    pub name: String,
    pub features: Vec<String>,
    pub nodes: Vec<String>,
    pub policy: crate::vcluster::Policy,
    pub cycle_interval_ms: u64,
    pub weights: crate::vcluster::Weights,
    pub fairshare_half_life_seconds: u64,
    /// Whether pending work may preempt lower-priority running work there.
    pub preemption: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Nodes that belong to it now, in any state.
    pub node_count: usize,
    /// Of those, free (ready and empty).
    pub free_nodes: usize,
    pub pending_allocations: usize,
}

impl VClusterView {
    pub fn of(state: &ClusterState, v: &VCluster) -> Self {
        let members: Vec<_> = state.nodes().values().filter(|n| v.contains(n)).collect();
        VClusterView {
            name: v.name.clone(),
            features: v.features.clone(),
            nodes: v.nodes.clone(),
            policy: v.policy,
            cycle_interval_ms: v.cycle_interval_ms,
            weights: v.weights,
            fairshare_half_life_seconds: v.fairshare_half_life_seconds,
            preemption: v.preemption,
            created_at: v.created_at,
            updated_at: v.updated_at,
            node_count: members.len(),
            free_nodes: members.iter().filter(|n| n.is_free()).count(),
            pending_allocations: state
                .pending_by_vcluster()
                .get(&v.name)
                .map_or(0, |p| p.len()),
        }
    }
}

/// One element of an array.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayTask {
    pub index: u32,
    pub id: AllocId,
    pub state: AllocState,
    pub reason: Option<String>,
}

/// `GET /api/v1/arrays/{id}`: the array and its current elements (requeued ones are
/// replaced by their new run).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayView {
    pub id: AllocId,
    pub name: String,
    pub tenant: String,
    pub vcluster: String,
    pub user: String,
    /// The `--array` text, e.g. `0-999%50`.
    pub array: String,
    pub size: u32,
    pub max_running: Option<u32>,
    pub submitted_at: Timestamp,
    /// How many elements are in each state.
    pub states: BTreeMap<AllocState, u32>,
    pub tasks: Vec<ArrayTask>,
}

impl ArrayView {
    pub fn of(state: &ClusterState, id: AllocId) -> Option<Self> {
        let info = state.array(id)?;
        let first = state.allocation(id)?;
        let mut tasks: Vec<ArrayTask> = state
            .array_members(id)
            .filter(|a| a.requeued_as.is_none())
            .map(|a| ArrayTask {
                index: a.array_index.unwrap_or(0),
                id: a.id,
                state: a.state,
                reason: a.reason.clone(),
            })
            .collect();
        tasks.sort_by_key(|t| t.index);
        let tally = state.array_tally(id);
        let states = AllocState::ALL
            .into_iter()
            .map(|s| (s, tally[s as usize]))
            .filter(|(_, n)| *n > 0)
            .collect();
        Some(ArrayView {
            id,
            name: first.name.clone(),
            tenant: first.tenant.clone(),
            vcluster: first.vcluster.clone(),
            user: first.user.clone(),
            array: info.text.clone(),
            size: info.size,
            max_running: info.max_running,
            submitted_at: info.submitted_at,
            states,
            tasks,
        })
    }
}
