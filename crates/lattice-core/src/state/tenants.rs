//! Apply handler for tenants: create (refused if the name exists) and change (refused if it
//! does not). Usage accounting for fair share is charged in `index.rs` when work ends.

use crate::command::{CommandOutcome, CommandResult};
use crate::error::Rejection;
use crate::state::ClusterState;
use crate::submit::validate_name;
use crate::tenant::{Tenant, TenantChange};
use crate::time::Timestamp;

impl ClusterState {
    pub(super) fn put_tenant(
        &mut self,
        now: Timestamp,
        name: &str,
        change: &TenantChange,
        create: bool,
    ) -> CommandResult {
        validate_name("name", name)?;
        let t = match (self.tenants.get_mut(name), create) {
            (Some(_), true) => {
                return Err(Rejection::conflict(format!("tenant {name} already exists")))
            }
            (None, false) => return Err(Rejection::not_found("tenant", name)),
            (Some(t), false) => t,
            (None, true) => self
                .tenants
                .entry(name.to_string())
                .or_insert_with(|| Tenant::new(name, now)),
        };
        t.apply_change(change, now);
        Ok(CommandOutcome::Tenant(Box::new(t.clone())))
    }
}
