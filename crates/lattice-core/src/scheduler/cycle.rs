//! [`Cycle`]: what one scheduling cycle shares across the vClusters it schedules: the node
//! table, when each node is expected to be free, nodes taken in this cycle, and the tenant
//! loads and array counts including this cycle's placements (quotas and caps are global).

use std::collections::HashMap;

use crate::allocation::{AllocId, AllocState, Allocation};
use crate::node::Node;
use crate::state::ClusterState;
use crate::tenant::TenantLoad;
use crate::time::Timestamp;

/// A node that will not take work again (drained, draining or down).
pub const NEVER: u64 = u64::MAX;

/// Node features of the form `group=NAME` place a node in a topology group (a rack, a
/// switch); multi-node work is packed into as few groups as possible.
pub const GROUP_PREFIX: &str = "group=";

pub struct Cycle<'a> {
    pub state: &'a ClusterState,
    pub now: Timestamp,
    /// Every node, in ID order.
    pub nodes: Vec<&'a Node>,
    /// Topology group of each node (0: no group).
    pub group: Vec<u32>,
    /// Taken by a placement of this cycle.
    pub taken: Vec<bool>,
    /// When each node is expected to be free, in Unix ms: 0 if free now, the expected end
    /// (start + walltime) of what occupies it, the end of work still stopping there, or
    /// [`NEVER`]. Times are not clamped to `now`, so they do not drift with the clock.
    pub avail: Vec<u64>,
    /// Tenant loads, including this cycle's placements.
    pub loads: HashMap<&'a str, TenantLoad>,
    /// Running elements per array, including this cycle's placements.
    pub array_running: HashMap<AllocId, u32>,
}

impl<'a> Cycle<'a> {
    pub fn new(state: &'a ClusterState, now: Timestamp) -> Self {
        let nodes: Vec<&Node> = state.nodes().values().collect();
        let mut groups: HashMap<&str, u32> = HashMap::new();
        let group = nodes
            .iter()
            .map(|n| {
                n.features
                    .iter()
                    .find_map(|f| f.strip_prefix(GROUP_PREFIX))
                    .map_or(0, |g| {
                        let next = groups.len() as u32 + 1;
                        *groups.entry(g).or_insert(next)
                    })
            })
            .collect();
        let avail = nodes.iter().map(|n| expected_free(state, n)).collect();
        Cycle {
            state,
            now,
            taken: vec![false; nodes.len()],
            nodes,
            group,
            avail,
            loads: HashMap::new(),
            array_running: HashMap::new(),
        }
    }

    /// Whether node `i` can take work now.
    pub fn is_free(&self, i: usize) -> bool {
        !self.taken[i] && self.nodes[i].is_free()
    }

    /// Whether node `i` may take work at some point (not drained, draining or down).
    pub fn usable(&self, i: usize) -> bool {
        self.avail[i] != NEVER
    }

    pub fn load(&mut self, tenant: &'a str) -> TenantLoad {
        let state = self.state;
        *self
            .loads
            .entry(tenant)
            .or_insert_with(|| state.tenant_load(tenant))
    }

    pub fn array_running(&mut self, array: AllocId) -> u32 {
        let state = self.state;
        *self
            .array_running
            .entry(array)
            .or_insert_with(|| state.array_tally(array)[AllocState::Running as usize])
    }

    /// Records a placement of this cycle.
    pub fn place(&mut self, a: &'a Allocation, nodes: &[u32]) {
        let end = self
            .now
            .plus_secs(a.walltime_seconds)
            .as_millis();
        for &i in nodes {
            self.taken[i as usize] = true;
            self.avail[i as usize] = end;
        }
        let mut load = self.load(&a.tenant);
        load.nodes += u64::from(a.nodes);
        load.running += 1;
        self.loads.insert(&a.tenant, load);
        if let Some(array) = a.array_id {
            let r = self.array_running(array) + 1;
            self.array_running.insert(array, r);
        }
    }
}

/// When `n` is expected to be free (see [`Cycle::avail`]).
fn expected_free(state: &ClusterState, n: &Node) -> u64 {
    if n.down || n.drain {
        return NEVER;
    }
    n.allocations
        .iter()
        .filter_map(|id| state.allocation(*id))
        .map(|a| match (a.state, a.started_at, a.finished_at) {
            (AllocState::Running, Some(s), _) => s.plus_secs(a.walltime_seconds).as_millis(),
            (_, _, Some(f)) => f.as_millis(),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}
