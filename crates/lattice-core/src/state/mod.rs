//! [`ClusterState`]: the replicated state machine. [`ClusterState::apply`] is the one writer:
//! it dispatches each [`Command`] to its own handler (one file per command family), never reads
//! a clock or a random source, and either applies a command fully or rejects it unchanged.
//!
//! Files: `allocations.rs` (cancel, exit reports), `submit.rs` (submissions: arrays,
//! dependencies, holds), `arrays.rs` (whole-array cancel), `holds.rs` (hold / release),
//! `requeue.rs`, `tenants.rs`, `vclusters.rs`, `nodes.rs`, `plan.rs` (a scheduling cycle),
//! `preemption.rs` (preemptions, claims, checkpoint requests and reports),
//! `dependencies.rs` (dependency status and the `dependency_failed` cascade), `index.rs` (the
//! one place allocation states change, keeping the derived indexes in step), `queues.rs`
//! (pending allocations indexed for the scheduler), `query.rs`,
//! `node_claims.rs` (sensitive tenants' node claims, releases and wipes), `audit.rs` (the
//! audit chain: entries produced in the same apply as their action).

mod acl;
mod allocations;
mod arrays;
mod audit;
mod dependencies;
mod holds;
mod index;
mod metrics_view;
mod node_claims;
mod nodes;
mod plan;
mod preemption;
mod query;
mod queues;
mod requeue;
mod scratch;
mod submit;
mod tenants;
mod vclusters;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

pub use metrics_view::{AllocationTotals, MetricsView, Running, Totals};
pub use query::AllocationFilter;
pub use queues::{Members, QueueClass, ReasonKey, VcQueue};

use crate::allocation::{AllocId, AllocState, Allocation, Env};
use crate::array::ArrayInfo;
use crate::audit::AuditHead;
use crate::command::{Command, CommandOutcome, CommandResult};
use crate::fairshare::Usage;
use crate::node::{Node, NodeId};
use crate::submit::{DEFAULT_TENANT, DEFAULT_VCLUSTER};
use crate::tenant::{Tenant, TenantLoad};
use crate::time::Timestamp;
use crate::vcluster::VCluster;
pub use acl::{Acl, AclData};
pub use index::{PendingCount, PendingTenants};

/// Allocation counts per state, indexed by `AllocState as usize`.
pub type Tally = [u32; 6];

/// Fair-share usage: vCluster -> tenant -> decayed node-milliseconds.
pub type UsageTable = BTreeMap<String, BTreeMap<String, Usage>>;

/// Cluster state as every Raft member holds it after applying the same log.
///
/// Serialized (for snapshots) through [`StateData`]; derived indexes are rebuilt on load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StateData", into = "StateData")]
pub struct ClusterState {
    /// Incremented by every applied command (used by agents' long-polls).
    revision: u64,
    next_allocation_id: AllocId,
    /// Boxed: a record is ~850 bytes, and B-tree nodes filled in ascending order stay half
    /// empty, so by value each would cost twice its size (docs/benchmarks.md).
    allocations: BTreeMap<AllocId, Box<Allocation>>,
    nodes: BTreeMap<NodeId, Node>,
    tenants: BTreeMap<String, Tenant>,
    vclusters: BTreeMap<String, VCluster>,
    arrays: BTreeMap<AllocId, ArrayInfo>,
    usage: UsageTable,
    // ---- derived indexes (not serialized) ----
    /// Pending allocations.
    pending: BTreeSet<AllocId>,
    /// Pending allocations per vCluster.
    pending_by_vcluster: BTreeMap<String, BTreeSet<AllocId>>,
    /// Pending allocations per vCluster and tenant, with how many are held (`index.rs`).
    pending_tenants: PendingTenants,
    /// Pending allocations per vCluster, indexed for the scheduler (`queues.rs`).
    queues: queues::Queues,
    /// Running and preempting allocations (their work is on their nodes).
    running: BTreeSet<AllocId>,
    /// Allocation count per state.
    state_counts: BTreeMap<AllocState, u64>,
    /// What each tenant's running allocations hold (tenants with nothing running are absent).
    tenant_load: BTreeMap<String, TenantLoad>,
    /// Per array: states of its live elements (those not superseded by a requeue).
    array_tally: BTreeMap<AllocId, Tally>,
    /// Per array: every element, live or superseded.
    array_members: BTreeMap<AllocId, BTreeSet<AllocId>>,
    /// Per allocation or array ID: the allocations that depend on it.
    dependents: BTreeMap<AllocId, BTreeSet<AllocId>>,
    /// Monotonic allocation counters for `/metrics` (see `metrics_view.rs`).
    totals: AllocationTotals,
    /// Nodes claimed by pending preemptors: node -> claimant (see `preemption.rs`).
    claims: BTreeMap<NodeId, AllocId>,
    /// API tokens (hashes only) with their hash index.
    acl: Acl,
    /// Where the audit chain of sensitive tenants stands (`audit.rs`).
    audit: AuditHead,
    /// The current command's time and the audit entries it produced (not replicated state).
    scratch: scratch::Scratch,
}

/// The serialized form of [`ClusterState`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateData {
    revision: u64,
    next_allocation_id: AllocId,
    allocations: BTreeMap<AllocId, Box<Allocation>>,
    nodes: BTreeMap<NodeId, Node>,
    tenants: BTreeMap<String, Tenant>,
    vclusters: BTreeMap<String, VCluster>,
    arrays: BTreeMap<AllocId, ArrayInfo>,
    usage: UsageTable,
    acl: AclData,
    audit: AuditHead,
}

impl From<StateData> for ClusterState {
    fn from(d: StateData) -> Self {
        let mut s = ClusterState {
            revision: d.revision,
            next_allocation_id: d.next_allocation_id,
            allocations: BTreeMap::new(),
            nodes: d.nodes,
            tenants: d.tenants,
            vclusters: d.vclusters,
            arrays: d.arrays,
            usage: d.usage,
            pending: BTreeSet::new(),
            pending_by_vcluster: BTreeMap::new(),
            pending_tenants: BTreeMap::new(),
            queues: BTreeMap::new(),
            running: BTreeSet::new(),
            state_counts: BTreeMap::new(),
            tenant_load: BTreeMap::new(),
            array_tally: BTreeMap::new(),
            array_members: BTreeMap::new(),
            dependents: BTreeMap::new(),
            totals: AllocationTotals::default(),
            claims: BTreeMap::new(),
            acl: Acl::from(d.acl),
            audit: d.audit,
            scratch: scratch::Scratch::default(),
        };
        // The allocations made from one submission (an array's elements) share one
        // environment map in memory, but a snapshot holds a copy for each: share equal maps
        // again (`Env`).
        let mut envs: HashSet<Env> = HashSet::new();
        for (_, mut a) in d.allocations {
            match envs.get(&a.env) {
                Some(shared) => a.env = shared.clone(),
                None => {
                    envs.insert(a.env.clone());
                }
            }
            s.insert_allocation(*a);
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
            tenants: s.tenants,
            vclusters: s.vclusters,
            arrays: s.arrays,
            usage: s.usage,
            acl: s.acl.into(),
            audit: s.audit,
        }
    }
}

impl Default for ClusterState {
    /// An empty cluster with the `default` tenant and the `default` vCluster.
    fn default() -> Self {
        let epoch = Timestamp(0);
        ClusterState::from(StateData {
            revision: 0,
            next_allocation_id: 1,
            allocations: BTreeMap::new(),
            nodes: BTreeMap::new(),
            tenants: BTreeMap::from([(
                DEFAULT_TENANT.to_string(),
                Tenant::new(DEFAULT_TENANT, epoch),
            )]),
            vclusters: BTreeMap::from([(
                DEFAULT_VCLUSTER.to_string(),
                VCluster::new(DEFAULT_VCLUSTER, epoch),
            )]),
            arrays: BTreeMap::new(),
            usage: BTreeMap::new(),
            acl: AclData::default(),
            audit: AuditHead::default(),
        })
    }
}

impl ClusterState {
    /// Applies one command. Deterministic: depends only on `self` and `cmd`.
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        if let Command::Batch { commands, .. } = cmd {
            // Its commands count the revisions, exactly as if each had had its own entry.
            return Ok(CommandOutcome::Batch(
                commands.iter().map(|c| self.apply(c)).collect(),
            ));
        }
        self.revision += 1;
        self.scratch.now = cmd.now();
        match cmd {
            Command::SubmitAllocation { now, spec } => self.submit_legacy(*now, spec),
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
            Command::Submit { now, spec, options } => self.submit(*now, spec, options),
            Command::CancelArray { now, array_id, by } => self.cancel_array(*now, *array_id, by),
            Command::SetHold {
                now,
                target,
                hold,
                by,
            } => self.set_hold(*now, *target, *hold, by),
            Command::Requeue { now, target, by } => self.requeue(*now, *target, by),
            Command::PutTenant {
                now,
                name,
                change,
                create,
            } => self.put_tenant(*now, name, change, *create),
            Command::PutVCluster {
                now,
                name,
                change,
                create,
            } => self.put_vcluster(*now, name, change, *create),
            Command::RequestCheckpoint { now, id, by } => self.request_checkpoint(*now, *id, by),
            Command::ReportCheckpoints { now, reports } => {
                Ok(self.report_checkpoints(*now, reports))
            }
            Command::BootstrapAcl { token, .. } => self.bootstrap_acl(token),
            Command::CreateToken { token, .. } => self.create_token(token),
            Command::RevokeToken { now, id, by } => self.revoke_token(*now, id, by),
            Command::ClaimNodes { now, claim } => self.claim_nodes(*now, claim),
            Command::ReleaseNodes { now, release } => self.release_nodes(*now, release),
            Command::ReportWipes { reports, .. } => Ok(self.report_wipes(reports)),
            Command::RecordAudit { records, .. } => self.record_audit(records),
            Command::PruneAudit {
                through, anchor, ..
            } => self.prune_audit(*through, anchor),
            // Applied command by command above.
            Command::Batch { .. } => Ok(CommandOutcome::Batch(Vec::new())),
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
        self.allocations.get(&id).map(|a| &**a)
    }

    pub fn allocations(&self) -> &BTreeMap<AllocId, Box<Allocation>> {
        &self.allocations
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.get(id)
    }

    pub fn nodes(&self) -> &BTreeMap<NodeId, Node> {
        &self.nodes
    }

    pub fn tenant(&self, name: &str) -> Option<&Tenant> {
        self.tenants.get(name)
    }

    pub fn tenants(&self) -> &BTreeMap<String, Tenant> {
        &self.tenants
    }

    pub fn vcluster(&self, name: &str) -> Option<&VCluster> {
        self.vclusters.get(name)
    }

    pub fn vclusters(&self) -> &BTreeMap<String, VCluster> {
        &self.vclusters
    }

    pub fn array(&self, id: AllocId) -> Option<&ArrayInfo> {
        self.arrays.get(&id)
    }

    pub fn arrays(&self) -> &BTreeMap<AllocId, ArrayInfo> {
        &self.arrays
    }

    /// Every element of array `id` (superseded ones included), ascending.
    pub fn array_members(&self, id: AllocId) -> impl Iterator<Item = &Allocation> + '_ {
        self.array_members
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|m| self.allocations.get(m).map(|a| &**a))
    }

    /// States of the array's live elements (superseded ones are not counted).
    pub fn array_tally(&self, id: AllocId) -> Tally {
        self.array_tally.get(&id).copied().unwrap_or_default()
    }

    /// Elements of the array that hold nodes (running or being preempted): what its `%` cap
    /// limits.
    pub fn array_running(&self, id: AllocId) -> u32 {
        let t = self.array_tally(id);
        t[AllocState::Running as usize] + t[AllocState::Preempting as usize]
    }

    /// Fair-share usage records: vCluster -> tenant -> usage.
    pub fn usage(&self) -> &UsageTable {
        &self.usage
    }

    /// What the tenant's running allocations hold.
    pub fn tenant_load(&self, tenant: &str) -> TenantLoad {
        self.tenant_load.get(tenant).copied().unwrap_or_default()
    }

    /// Pending allocation IDs, ascending.
    pub fn pending_ids(&self) -> &BTreeSet<AllocId> {
        &self.pending
    }

    /// Pending allocation IDs per vCluster (vClusters with none are absent).
    pub fn pending_by_vcluster(&self) -> &BTreeMap<String, BTreeSet<AllocId>> {
        &self.pending_by_vcluster
    }

    /// Pending allocations per vCluster and tenant, with how many of them are held.
    pub fn pending_tenants(&self) -> &PendingTenants {
        &self.pending_tenants
    }

    /// Running and preempting allocation IDs (work on its nodes), ascending.
    pub fn running_ids(&self) -> &BTreeSet<AllocId> {
        &self.running
    }

    /// Number of allocations in each state (every state present, possibly 0).
    pub fn state_counts(&self) -> BTreeMap<AllocState, u64> {
        AllocState::ALL
            .into_iter()
            .map(|s| (s, self.state_counts.get(&s).copied().unwrap_or(0)))
            .collect()
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
        scratch::touch(n, revision, &mut self.scratch.work_changed);
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
                    scratch::touch(n, revision, &mut self.scratch.work_changed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
