//! Apply handlers for the allocation lifecycle: cancel, and agents' exit reports (submissions
//! are in `submit.rs`).

use crate::agent::{ExitOutcome, ExitReport};
use crate::allocation::{AllocId, AllocState};
use crate::command::{CommandOutcome, CommandResult};
use crate::error::Rejection;
use crate::state::ClusterState;
use crate::time::Timestamp;

impl ClusterState {
    pub(super) fn cancel(&mut self, now: Timestamp, id: AllocId, by: &str) -> CommandResult {
        let a = self
            .allocations
            .get(&id)
            .ok_or_else(|| Rejection::not_found("allocation", id))?;
        if a.state.is_terminal() {
            return Err(Rejection::conflict(format!(
                "allocation {id} is already {}",
                a.state
            )));
        }
        self.finish(
            id,
            AllocState::Cancelled,
            now,
            Some("cancelled"),
            Some(format!("cancelled by {by}")),
        );
        // Nodes keep the allocation until their agents report its processes gone.
        self.touch_nodes_of(id);
        Ok(CommandOutcome::Allocation(self.allocations[&id].clone()))
    }

    /// Applies exit reports. Stale or duplicate reports (the node no longer holds the
    /// allocation) are ignored, so agents can safely resend after a lost answer.
    pub(super) fn report_exits(
        &mut self,
        now: Timestamp,
        reports: &[ExitReport],
    ) -> CommandOutcome {
        let (mut applied, mut ignored) = (0, 0);
        for r in reports {
            if self.report_exit(now, r) {
                applied += 1;
            } else {
                ignored += 1;
            }
        }
        CommandOutcome::Reports {
            applied,
            ignored,
            checkpoints: Vec::new(),
        }
    }

    fn report_exit(&mut self, now: Timestamp, r: &ExitReport) -> bool {
        let id = r.allocation_id;
        // A report of an earlier run (resent after a preemption) never touches this one.
        let current = self.allocations.get(&id).map(|a| a.preempt_count);
        if current != Some(r.run) || !self.release(&r.node_id, id) {
            return false;
        }
        let a = self.allocations.get_mut(&id).expect("checked above");
        let code = match (r.exit_code, r.signal) {
            (Some(c), _) => c,
            (None, Some(sig)) => -sig,
            (None, None) => -1,
        };
        a.node_exit_codes.insert(r.node_id.clone(), code);
        let preempting = a.state == AllocState::Preempting;
        if preempting && matches!(r.outcome, ExitOutcome::Preempted | ExitOutcome::Stopped) {
            self.preempted_rank_gone(id, now, true);
            return true;
        }
        if !preempting && a.state != AllocState::Running {
            // Already cancelled / failed: the report only frees the node.
            return true;
        }
        let failure = match r.outcome {
            ExitOutcome::Walltime => Some((
                "walltime",
                format!("killed at walltime of {}s", a.walltime_seconds),
            )),
            ExitOutcome::LaunchFailed => Some((
                "launch_failed",
                r.message
                    .clone()
                    .unwrap_or_else(|| "could not start".into()),
            )),
            // Preempted while running (not preempting) cannot come from a correct agent.
            ExitOutcome::Stopped | ExitOutcome::Preempted => Some((
                "stopped",
                r.message
                    .clone()
                    .unwrap_or_else(|| "stopped by the agent".into()),
            )),
            ExitOutcome::Exited => match (r.exit_code, r.signal) {
                (Some(0), _) => None,
                (Some(c), _) => Some(("exit_code", format!("exit code {c} on {}", r.node_id))),
                (None, Some(s)) => {
                    Some(("signal", format!("killed by signal {s} on {}", r.node_id)))
                }
                (None, None) => Some(("exit_code", format!("unknown exit on {}", r.node_id))),
            },
        };
        if let Some((reason, detail)) = failure {
            a.exit_code = Some(code);
            self.finish(id, AllocState::Failed, now, Some(reason), Some(detail));
            // Stop the remaining ranks.
            self.touch_nodes_of(id);
        } else if preempting {
            // A rank that ended on its own, successfully, before the preemption stopped it.
            self.preempted_rank_gone(id, now, false);
        } else if a.node_exit_codes.len() >= a.assigned_nodes.len() {
            a.exit_code = Some(0);
            self.finish(id, AllocState::Completed, now, None, None);
        }
        true
    }
}
