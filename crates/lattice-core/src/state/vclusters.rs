//! Apply handler for vClusters: create (refused if the name exists) and change (refused if it
//! does not). The `default` vCluster always holds every node: its selector cannot change.

use crate::command::{CommandOutcome, CommandResult};
use crate::error::Rejection;
use crate::state::ClusterState;
use crate::submit::validate_name;
use crate::time::Timestamp;
use crate::vcluster::{is_default, VCluster, VClusterChange};

impl ClusterState {
    pub(super) fn put_vcluster(
        &mut self,
        now: Timestamp,
        name: &str,
        change: &VClusterChange,
        create: bool,
    ) -> CommandResult {
        validate_name("name", name)?;
        if is_default(name) && change.changes_selector() {
            let field = if change.features.is_some() {
                "features"
            } else {
                "nodes"
            };
            return Err(Rejection::invalid(
                field,
                "the default vCluster always holds every node",
            ));
        }
        let v = match (self.vclusters.get_mut(name), create) {
            (Some(_), true) => {
                return Err(Rejection::conflict(format!(
                    "vCluster {name} already exists"
                )))
            }
            (None, false) => return Err(Rejection::not_found("vCluster", name)),
            (Some(v), false) => v,
            (None, true) => self
                .vclusters
                .entry(name.to_string())
                .or_insert_with(|| VCluster::new(name, now)),
        };
        v.apply_change(change, now);
        Ok(CommandOutcome::VCluster(Box::new(v.clone())))
    }
}
