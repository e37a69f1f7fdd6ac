//! The Raft log's vocabulary: every change to cluster state is one [`Command`].
//!
//! Variants are only ever appended; none is renamed, reordered or reused (the log on disk is
//! encoded by variant index). Every variant carries `now`, the leader's clock at proposal time,
//! so that `apply` never reads a clock.

use serde::{Deserialize, Serialize};

use crate::acl::Token;
use crate::agent::ExitReport;
use crate::allocation::{AllocId, Allocation, AllocationSpec};
use crate::audit::{AuditHead, AuditRecord};
use crate::checkpoint::{CheckpointRecord, CheckpointReport};
use crate::error::Rejection;
use crate::node::{Node, NodeId, NodeRegistration};
use crate::scheduler::Plan;
use crate::submit::SubmitOptions;
use crate::tenant::{Tenant, TenantChange};
use crate::time::Timestamp;
use crate::vcluster::{VCluster, VClusterChange};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A user submitted an allocation; the state machine assigns its ID.
    SubmitAllocation {
        now: Timestamp,
        spec: AllocationSpec,
    },
    /// Cancel a pending or running allocation.
    CancelAllocation {
        now: Timestamp,
        id: AllocId,
        by: String,
    },
    /// An agent (re-)registered a node. Drain state survives re-registration.
    RegisterNode {
        now: Timestamp,
        registration: NodeRegistration,
    },
    /// An operator drains or undrains a node.
    SetNodeDrain {
        now: Timestamp,
        node_id: NodeId,
        drain: bool,
        reason: Option<String>,
    },
    /// One scheduling cycle's placements and pending reasons, re-validated on apply.
    ApplyPlan { now: Timestamp, plan: Plan },
    /// Agents report allocation processes that are gone from their nodes.
    ReportExits {
        now: Timestamp,
        reports: Vec<ExitReport>,
    },
    /// The leader's failure detector: nodes whose heartbeats stopped, and nodes heard from again.
    SetNodeLiveness {
        now: Timestamp,
        down: Vec<NodeId>,
        up: Vec<NodeId>,
    },
    /// A submission with options: a whole job array (one entry), dependencies, held. The
    /// state machine assigns the IDs.
    Submit {
        now: Timestamp,
        spec: AllocationSpec,
        options: SubmitOptions,
    },
    /// Cancel every element of an array that has not ended.
    CancelArray {
        now: Timestamp,
        array_id: AllocId,
        by: String,
    },
    /// Hold (`hold: true`) or release pending allocations.
    SetHold {
        now: Timestamp,
        target: Target,
        hold: bool,
        by: String,
    },
    /// Run the work again as a new pending allocation (stopping it first if it runs).
    Requeue {
        now: Timestamp,
        target: Target,
        by: String,
    },
    /// Create (`create: true`, refused if it exists) or change (refused if it does not) a
    /// tenant.
    PutTenant {
        now: Timestamp,
        name: String,
        change: TenantChange,
        create: bool,
    },
    /// Create or change a vCluster, as `PutTenant`.
    PutVCluster {
        now: Timestamp,
        name: String,
        change: VClusterChange,
        create: bool,
    },
    /// Ask the agents of a running allocation to checkpoint it now.
    RequestCheckpoint {
        now: Timestamp,
        id: AllocId,
        by: String,
    },
    /// Agents report checkpoints that ended on their nodes.
    ReportCheckpoints {
        now: Timestamp,
        reports: Vec<CheckpointReport>,
    },
    /// The first admin token; refused once the cluster is bootstrapped.
    BootstrapAcl { now: Timestamp, token: Token },
    /// An admin creates a token (the record carries the hash, never the secret).
    CreateToken { now: Timestamp, token: Token },
    /// An admin revokes a token by ID.
    RevokeToken {
        now: Timestamp,
        id: String,
        by: String,
    },
    /// A user of a sensitive tenant claims nodes for exclusive use.
    ClaimNodes { now: Timestamp, claim: ClaimSpec },
    /// Claimed nodes are released: their agents wipe them, then they return to the pool.
    ReleaseNodes {
        now: Timestamp,
        release: ReleaseSpec,
    },
    /// Agents report wipes that ended on their nodes.
    ReportWipes {
        now: Timestamp,
        reports: Vec<WipeReport>,
    },
    /// Access and refusal entries of the audit log (reads of sensitive allocations, audit
    /// queries, refused requests), committed before the read is answered.
    RecordAudit {
        now: Timestamp,
        records: Vec<AuditRecord>,
    },
    /// Retention: audit entries up to `through` leave the log; `anchor` is the hash of entry
    /// `through` (the `prev_hash` of the first kept one).
    PruneAudit {
        now: Timestamp,
        through: u64,
        anchor: String,
    },
    /// Several commands committed in one Raft entry (the leader batches concurrent client
    /// writes): applied one after the other, each with its own outcome, exactly as if each
    /// had its own entry; one refused command changes nothing and refuses none of the others.
    Batch {
        now: Timestamp,
        commands: Vec<Command>,
    },
}

/// What `lattice claim` asks for: `count` free nodes, or the nodes `node_ids` names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimSpec {
    pub tenant: String,
    /// The claim's holder (the caller).
    pub user: String,
    /// Who asked, when not `user` (an admin claiming for a user).
    pub by: Option<String>,
    pub count: u32,
    pub node_ids: Vec<NodeId>,
}

/// What `lattice release` gives back: the named nodes, or (empty `node_ids`) every node
/// `user` holds for `tenant`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSpec {
    pub tenant: String,
    pub user: String,
    pub node_ids: Vec<NodeId>,
    /// Who asked.
    pub by: String,
    /// Release nodes held by another user (admins, the tenant's admins).
    pub force: bool,
}

/// An agent's report of a wipe that ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WipeReport {
    pub node_id: NodeId,
    /// The [`crate::node::Wipe::id`] it ran for.
    pub wipe_id: u64,
    pub success: bool,
    /// What the wipe printed last or why it failed (bounded by the agent).
    #[serde(default)]
    pub detail: String,
}

/// What a hold, release or requeue acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    Allocation(AllocId),
    /// Every element of the array with this ID.
    Array(AllocId),
}

impl Command {
    /// Short, bounded name of the variant (for logs and metrics labels).
    pub fn kind(&self) -> &'static str {
        match self {
            Command::SubmitAllocation { .. } => "submit_allocation",
            Command::CancelAllocation { .. } => "cancel_allocation",
            Command::RegisterNode { .. } => "register_node",
            Command::SetNodeDrain { .. } => "set_node_drain",
            Command::ApplyPlan { .. } => "apply_plan",
            Command::ReportExits { .. } => "report_exits",
            Command::SetNodeLiveness { .. } => "set_node_liveness",
            Command::Submit { .. } => "submit",
            Command::CancelArray { .. } => "cancel_array",
            Command::SetHold { .. } => "set_hold",
            Command::Requeue { .. } => "requeue",
            Command::PutTenant { .. } => "put_tenant",
            Command::PutVCluster { .. } => "put_vcluster",
            Command::RequestCheckpoint { .. } => "request_checkpoint",
            Command::ReportCheckpoints { .. } => "report_checkpoints",
            Command::BootstrapAcl { .. } => "bootstrap_acl",
            Command::CreateToken { .. } => "create_token",
            Command::RevokeToken { .. } => "revoke_token",
            Command::ClaimNodes { .. } => "claim_nodes",
            Command::ReleaseNodes { .. } => "release_nodes",
            Command::ReportWipes { .. } => "report_wipes",
            Command::RecordAudit { .. } => "record_audit",
            Command::PruneAudit { .. } => "prune_audit",
            Command::Batch { .. } => "batch",
        }
    }

    /// The leader's clock when the command was proposed.
    pub fn now(&self) -> Timestamp {
        match self {
            Command::SubmitAllocation { now, .. }
            | Command::CancelAllocation { now, .. }
            | Command::RegisterNode { now, .. }
            | Command::SetNodeDrain { now, .. }
            | Command::ApplyPlan { now, .. }
            | Command::ReportExits { now, .. }
            | Command::SetNodeLiveness { now, .. }
            | Command::Submit { now, .. }
            | Command::CancelArray { now, .. }
            | Command::SetHold { now, .. }
            | Command::Requeue { now, .. }
            | Command::PutTenant { now, .. }
            | Command::PutVCluster { now, .. }
            | Command::RequestCheckpoint { now, .. }
            | Command::ReportCheckpoints { now, .. }
            | Command::BootstrapAcl { now, .. }
            | Command::CreateToken { now, .. }
            | Command::RevokeToken { now, .. }
            | Command::ClaimNodes { now, .. }
            | Command::ReleaseNodes { now, .. }
            | Command::ReportWipes { now, .. }
            | Command::RecordAudit { now, .. }
            | Command::PruneAudit { now, .. }
            | Command::Batch { now, .. } => *now,
        }
    }
}

/// What a plan's apply did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanOutcome {
    pub placed: Vec<AllocId>,
    /// Placements refused by re-validation, with the reason.
    pub rejected: Vec<(AllocId, String)>,
    /// Allocations the plan's preemptions moved to `preempting`.
    pub preempted: Vec<AllocId>,
    /// Preemptions refused by re-validation: (preemptor, reason).
    pub preemptions_rejected: Vec<(AllocId, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandOutcome {
    Allocation(Box<Allocation>),
    Node(Box<Node>),
    Plan(PlanOutcome),
    Reports {
        applied: u32,
        ignored: u32,
        /// Checkpoint rounds these reports concluded.
        checkpoints: Vec<CheckpointRecord>,
    },
    Liveness {
        changed: u32,
    },
    /// Raft-internal entries (blank, membership) carry no command.
    Nothing,
    Tenant(Box<Tenant>),
    VCluster(Box<VCluster>),
    /// An operation on a whole array: the allocations it changed (for a requeue, the new
    /// ones).
    Array {
        array_id: AllocId,
        changed: Vec<AllocId>,
    },
    Token(Box<Token>),
    /// Nodes claimed or released (as they are now).
    Nodes(Vec<Node>),
    /// Where the audit chain stands after the command.
    Audit {
        head: AuditHead,
    },
    /// The outcome of each command of a [`Command::Batch`], in order.
    Batch(Vec<CommandResult>),
}

/// The response of applying one command: an outcome or a business rejection.
pub type CommandResult = Result<CommandOutcome, Rejection>;
