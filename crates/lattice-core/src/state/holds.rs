//! Apply handler for hold and release: a held pending allocation is not scheduled (reason
//! `held`) until released. On a whole array, every pending element is held or released.

use crate::allocation::{AllocId, AllocState};
use crate::audit::AuditAction;
use crate::command::{CommandOutcome, CommandResult, Target};
use crate::error::Rejection;
use crate::state::ClusterState;
use crate::time::Timestamp;

impl ClusterState {
    pub(super) fn set_hold(
        &mut self,
        _now: Timestamp,
        target: Target,
        hold: bool,
        by: &str,
    ) -> CommandResult {
        let verb = if hold { "held" } else { "released" };
        let ids: Vec<AllocId> = match target {
            Target::Allocation(id) => {
                let a = self
                    .allocations
                    .get(&id)
                    .ok_or_else(|| Rejection::not_found("allocation", id))?;
                if a.state != AllocState::Pending {
                    return Err(Rejection::conflict(format!(
                        "allocation {} is {}; only pending allocations can be {verb}",
                        a.job_ref(),
                        a.state
                    )));
                }
                if !hold && !a.held {
                    return Err(Rejection::conflict(format!(
                        "allocation {} is not held",
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
                    .filter(|id| {
                        let a = &self.allocations[id];
                        a.state == AllocState::Pending && a.held != hold
                    })
                    .collect();
                let pending = self
                    .live_members(array)
                    .iter()
                    .any(|id| self.allocations[id].state == AllocState::Pending);
                if !pending {
                    return Err(Rejection::conflict(format!(
                        "array {array} has no pending elements to be {verb}"
                    )));
                }
                ids
            }
        };
        for id in &ids {
            let a = &self.allocations[id];
            if a.held != hold {
                super::index::count_held(&mut self.pending_tenants, a, hold);
            }
            self.modify_pending(*id, |a| {
                a.held = hold;
                a.estimated_start = None;
                if hold {
                    a.reason = Some("held".into());
                    a.reason_detail = Some(format!("held by {by}"));
                } else {
                    // The next scheduling cycle says why it waits now.
                    a.reason = None;
                    a.reason_detail = None;
                }
            });
            if hold {
                // A held preemptor gives up the nodes it claimed.
                self.drop_claim(*id);
                self.audit_alloc(*id, AuditAction::Held, format!("held by {by}"));
            } else {
                self.audit_alloc(*id, AuditAction::Unheld, format!("released by {by}"));
            }
        }
        Ok(match target {
            Target::Allocation(id) => CommandOutcome::Allocation(self.allocations[&id].clone()),
            Target::Array(array) => CommandOutcome::Array {
                array_id: array,
                changed: ids,
            },
        })
    }
}
