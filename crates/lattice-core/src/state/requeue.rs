//! Apply handler for requeue: the work runs again as a NEW pending allocation (same spec, same
//! array element), and the old one records `requeued_as`. A running allocation is first
//! cancelled with reason `requeued` (its agents stop it). The new ID is needed because an
//! agent never starts the same allocation ID twice on a node (its records make restarts safe).
//!
//! Dependencies on the old ID follow it to the new run; a superseded allocation never counts
//! as a failed dependency and no longer counts in its array.

use crate::allocation::{AllocId, AllocState, Allocation};
use crate::audit::AuditAction;
use crate::command::{CommandOutcome, CommandResult, Target};
use crate::error::Rejection;
use crate::state::ClusterState;
use crate::time::Timestamp;

impl ClusterState {
    pub(super) fn requeue(&mut self, now: Timestamp, target: Target, by: &str) -> CommandResult {
        let ids: Vec<AllocId> = match target {
            Target::Allocation(id) => {
                let a = self
                    .allocations
                    .get(&id)
                    .ok_or_else(|| Rejection::not_found("allocation", id))?;
                if let Some(next) = a.requeued_as {
                    return Err(Rejection::conflict(format!(
                        "allocation {id} was already requeued as {next}"
                    )));
                }
                if a.state == AllocState::Pending {
                    return Err(Rejection::conflict(format!(
                        "allocation {} is pending; only running or ended allocations can be \
                         requeued",
                        a.job_ref()
                    )));
                }
                vec![id]
            }
            Target::Array(array) => {
                if !self.arrays.contains_key(&array) {
                    return Err(Rejection::not_found("array", array));
                }
                let ids: Vec<AllocId> = self
                    .live_members(array)
                    .into_iter()
                    .filter(|id| self.allocations[id].state != AllocState::Pending)
                    .collect();
                if ids.is_empty() {
                    return Err(Rejection::conflict(format!(
                        "array {array} has no running or ended elements to requeue"
                    )));
                }
                ids
            }
        };
        let mut created = Vec::with_capacity(ids.len());
        for old in ids {
            let new = self.next_allocation_id;
            self.next_allocation_id += 1;
            let fresh = {
                let a = &self.allocations[&old];
                let mut n = Allocation::new(new, spec_of(a), now);
                n.array_id = a.array_id;
                n.array_index = a.array_index;
                n.requeued_from = Some(old);
                n.submitted_by = a.submitted_by.clone();
                n
            };
            self.untally(old);
            let a = self.allocations.get_mut(&old).expect("checked above");
            a.requeued_as = Some(new);
            if matches!(a.state, AllocState::Running | AllocState::Preempting) {
                self.finish(
                    old,
                    AllocState::Cancelled,
                    now,
                    Some("requeued"),
                    Some(format!("requeued by {by} as {new}")),
                );
                self.touch_nodes_of(old);
            }
            self.insert_allocation(fresh);
            self.audit_alloc(
                old,
                AuditAction::Requeued,
                format!("requeued by {by} as allocation {new}"),
            );
            self.audit_alloc(
                new,
                AuditAction::Submitted,
                format!("requeue of allocation {old} by {by}"),
            );
            created.push(new);
        }
        Ok(match target {
            Target::Allocation(_) => {
                CommandOutcome::Allocation(self.allocations[&created[0]].clone())
            }
            Target::Array(array) => CommandOutcome::Array {
                array_id: array,
                changed: created,
            },
        })
    }
}

/// The allocation's spec, as submitted.
fn spec_of(a: &Allocation) -> crate::allocation::AllocationSpec {
    crate::allocation::AllocationSpec {
        name: a.name.clone(),
        tenant: a.tenant.clone(),
        vcluster: a.vcluster.clone(),
        user: a.user.clone(),
        command: a.command.clone(),
        script: a.script.clone(),
        nodes: a.nodes,
        walltime_seconds: a.walltime_seconds,
        priority: a.priority,
        constraints: a.constraints.clone(),
        env: a.env.clone(),
        preemptible: a.preemptible,
        checkpoint: a.checkpoint.clone(),
    }
}
