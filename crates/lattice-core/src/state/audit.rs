//! The audit chain of sensitive tenants inside the state machine: apply handlers call
//! [`ClusterState::audit`] (or [`ClusterState::audit_alloc`]) while they change state, so an
//! entry is committed in the same Raft entry as the action it records and is produced on
//! every member alike. The chain's head ([`AuditHead`]) is replicated state; the entries
//! themselves leave the state machine through [`ClusterState::take_audit`] after each apply
//! (the server stores them in its database, idempotently by `seq`), so they never accumulate
//! in memory.
//!
//! Also the two commands of the log itself: `RecordAudit` (access and refusal entries the API
//! proposes) and `PruneAudit` (retention).

use crate::allocation::{AllocId, AllocState};
use crate::audit::{AuditAction, AuditEntry, AuditHead, AuditRecord};
use crate::checkpoint::{CheckpointRecord, CheckpointTrigger};
use crate::command::{CommandOutcome, CommandResult};
use crate::error::Rejection;
use crate::state::ClusterState;

impl ClusterState {
    /// Where the audit chain stands.
    pub fn audit_head(&self) -> &AuditHead {
        &self.audit
    }

    /// Entries committed by the commands applied since the last call, in `seq` order.
    pub fn take_audit(&mut self) -> Vec<AuditEntry> {
        std::mem::take(&mut self.scratch.audit)
    }

    /// Whether work of `tenant` is audited.
    pub fn is_sensitive(&self, tenant: &str) -> bool {
        self.tenants.get(tenant).is_some_and(|t| t.sensitive)
    }

    /// Appends an entry to the chain (at the current command's time).
    pub(super) fn audit(&mut self, r: &AuditRecord) {
        let e = AuditEntry::chained(
            self.audit.next_seq,
            self.scratch.now,
            r,
            &self.audit.head_hash,
        );
        self.audit.next_seq += 1;
        self.audit.head_hash = e.hash.clone();
        self.scratch.audit.push(e);
    }

    /// Records `action` on allocation `id` if its tenant is sensitive; the entry names the
    /// allocation's owner and its nodes.
    pub(super) fn audit_alloc(&mut self, id: AllocId, action: AuditAction, detail: String) {
        let Some(a) = self.allocations.get(&id) else {
            return;
        };
        if !self.is_sensitive(&a.tenant) {
            return;
        }
        let r = AuditRecord {
            tenant: a.tenant.clone(),
            user: a.user.clone(),
            action,
            allocation: Some(id),
            nodes: a.assigned_nodes.clone(),
            detail,
        };
        self.audit(&r);
    }

    /// The entry for a state change made by `set_state` (terminal states are recorded by
    /// `finish`, which knows the reason).
    pub(super) fn audit_transition(&mut self, id: AllocId, from: AllocState, to: AllocState) {
        let Some(a) = self.allocations.get(&id) else {
            return;
        };
        let (action, detail) = match (from, to) {
            (AllocState::Pending, AllocState::Running) => {
                (AuditAction::Started, format!("on {} node(s)", a.nodes))
            }
            // Preemptions are recorded by `preempt`, which knows the preemptor.
            (AllocState::Preempting, AllocState::Pending) => (
                AuditAction::Requeued,
                "back to pending after preemption".into(),
            ),
            _ => return,
        };
        self.audit_alloc(id, action, detail);
    }

    /// The entry for a concluded checkpoint round.
    pub(super) fn audit_checkpoint(&mut self, id: AllocId, r: &CheckpointRecord) {
        let trigger = match r.trigger {
            CheckpointTrigger::Preemption => "preemption".to_string(),
            CheckpointTrigger::Request(n) => format!("request {n}"),
            CheckpointTrigger::Periodic(n) => format!("periodic {n}"),
        };
        let mut detail = format!(
            "{trigger} checkpoint: {} in {} ms",
            r.outcome.as_str(),
            r.duration_ms
        );
        if let Some(m) = &r.message {
            detail.push_str(&format!(": {m}"));
        }
        self.audit_alloc(id, AuditAction::Checkpointed, detail);
    }

    /// The entry for an allocation that just ended.
    pub(super) fn audit_ended(&mut self, id: AllocId) {
        let Some(a) = self.allocations.get(&id) else {
            return;
        };
        let action = match a.state {
            AllocState::Completed => AuditAction::Completed,
            AllocState::Failed => AuditAction::Failed,
            AllocState::Cancelled => AuditAction::Cancelled,
            _ => return,
        };
        let mut detail = Vec::new();
        if let Some(c) = a.exit_code {
            detail.push(format!("exit code {c}"));
        }
        if let Some(r) = &a.reason {
            detail.push(format!("reason {r}"));
        }
        if let Some(d) = &a.reason_detail {
            detail.push(d.clone());
        }
        self.audit_alloc(id, action, detail.join("; "));
    }

    /// `Command::RecordAudit`: access and refusal entries from the API. Only access actions
    /// may be recorded this way, and only for sensitive tenants.
    pub(super) fn record_audit(&mut self, records: &[AuditRecord]) -> CommandResult {
        if records.is_empty() {
            return Err(Rejection::invalid("records", "nothing to record"));
        }
        for r in records {
            if !r.action.is_access() {
                return Err(Rejection::invalid(
                    "records.action",
                    format!("{} is recorded by the action itself", r.action.as_str()),
                ));
            }
            if r.action != AuditAction::AuditQueried && !self.is_sensitive(&r.tenant) {
                return Err(Rejection::invalid(
                    "records.tenant",
                    format!("tenant {:?} is not sensitive", r.tenant),
                ));
            }
        }
        for r in records {
            self.audit(r);
        }
        Ok(CommandOutcome::Audit {
            head: self.audit.clone(),
        })
    }

    /// `Command::PruneAudit`: entries up to `through` leave the log (retention); `anchor` is
    /// the hash of entry `through`, computed by the proposer from its stored entries.
    pub(super) fn prune_audit(&mut self, through: u64, anchor: &str) -> CommandResult {
        if through <= self.audit.pruned_through {
            return Err(Rejection::conflict(format!(
                "entries up to {} are already pruned",
                self.audit.pruned_through
            )));
        }
        if through >= self.audit.next_seq {
            return Err(Rejection::invalid(
                "through",
                format!(
                    "entry {through} does not exist (the last is {})",
                    self.audit.count()
                ),
            ));
        }
        if anchor.len() != 64 || !anchor.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Rejection::invalid("anchor", "not a SHA-256 hex digest"));
        }
        self.audit.pruned_through = through;
        self.audit.anchor_hash = anchor.to_ascii_lowercase();
        Ok(CommandOutcome::Audit {
            head: self.audit.clone(),
        })
    }
}
