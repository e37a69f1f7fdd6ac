//! Job arrays: finding an element by task index, and the whole-array cancel. (Arrays are
//! created by the submit handler; hold, release and requeue of a whole array live with their
//! single-allocation handlers.)

use crate::allocation::{AllocId, AllocState, Allocation};
use crate::command::{CommandOutcome, CommandResult};
use crate::dependency::JobRef;
use crate::error::Rejection;
use crate::state::ClusterState;
use crate::time::Timestamp;

impl ClusterState {
    /// The current (not superseded) element of `array` with task index `index`.
    pub fn array_task(&self, array: AllocId, index: u32) -> Option<&Allocation> {
        self.array_members(array)
            .filter(|a| a.array_index == Some(index))
            .find(|a| a.requeued_as.is_none())
    }

    /// The allocation a user's reference names: `42` is allocation 42, `42_7` the current
    /// element of array 42 with task index 7.
    pub fn resolve_ref(&self, r: JobRef) -> Option<&Allocation> {
        match r {
            JobRef::Id(id) => self.allocations.get(&id).map(|a| &**a),
            JobRef::Task { array, index } => self.array_task(array, index),
        }
    }

    /// Live elements of the array (not superseded by a requeue).
    pub(super) fn live_members(&self, array: AllocId) -> Vec<AllocId> {
        self.array_members(array)
            .filter(|a| a.requeued_as.is_none())
            .map(|a| a.id)
            .collect()
    }

    pub(super) fn cancel_array(
        &mut self,
        now: Timestamp,
        array: AllocId,
        by: &str,
    ) -> CommandResult {
        if !self.arrays.contains_key(&array) {
            return Err(Rejection::not_found("array", array));
        }
        let open: Vec<AllocId> = self
            .live_members(array)
            .into_iter()
            .filter(|id| !self.allocations[id].state.is_terminal())
            .collect();
        if open.is_empty() {
            return Err(Rejection::conflict(format!(
                "every element of array {array} has already ended"
            )));
        }
        for &id in &open {
            // An element may already have been cancelled by an earlier one's cascade.
            if self.allocations[&id].state.is_terminal() {
                continue;
            }
            self.finish(
                id,
                AllocState::Cancelled,
                now,
                Some("cancelled"),
                Some(format!("cancelled by {by} (whole array {array})")),
            );
            self.touch_nodes_of(id);
        }
        Ok(CommandOutcome::Array {
            array_id: array,
            changed: open,
        })
    }
}
