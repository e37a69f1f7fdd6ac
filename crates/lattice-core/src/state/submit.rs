//! Apply handler for submissions: one allocation, or a whole job array in one entry; with
//! dependencies (resolved here, against the state at commit) and optionally held. The
//! vCluster must exist; an unknown tenant is refused unless the command allows creating it.

use crate::allocation::{AllocId, AllocState, Allocation, AllocationSpec};
use crate::array::ArrayInfo;
use crate::audit::AuditAction;
use crate::command::{CommandOutcome, CommandResult};
use crate::dependency::{DepStatus, Dependency, DependencyRef, JobRef};
use crate::error::Rejection;
use crate::state::ClusterState;
use crate::submit::{validate_name, SubmitOptions};
use crate::tenant::Tenant;
use crate::time::Timestamp;

impl ClusterState {
    /// `SubmitAllocation`, the original command: one allocation, the tenant created if needed.
    pub(super) fn submit_legacy(&mut self, now: Timestamp, spec: &AllocationSpec) -> CommandResult {
        let options = SubmitOptions {
            create_tenant: true,
            ..Default::default()
        };
        self.submit(now, spec, &options)
    }

    pub(super) fn submit(
        &mut self,
        now: Timestamp,
        spec: &AllocationSpec,
        options: &SubmitOptions,
    ) -> CommandResult {
        // Check everything before changing anything.
        validate_name("tenant", &spec.tenant)?;
        validate_name("vcluster", &spec.vcluster)?;
        if !self.vclusters.contains_key(&spec.vcluster) {
            let known: Vec<&str> = self.vclusters.keys().map(String::as_str).collect();
            return Err(Rejection::invalid(
                "vcluster",
                format!(
                    "unknown vCluster {:?} (known: {})",
                    spec.vcluster,
                    known.join(", ")
                ),
            ));
        }
        let new_tenant = !self.tenants.contains_key(&spec.tenant);
        if new_tenant && !options.create_tenant {
            return Err(Rejection::invalid(
                "tenant",
                format!(
                    "unknown tenant {:?}; an administrator creates tenants \
                     (POST /api/v1/tenants, lattice tenants create)",
                    spec.tenant
                ),
            ));
        }
        let deps = self.resolve_dependencies(&options.depends_on)?;
        let indices: Vec<Option<u32>> = match &options.array {
            Some(a) if a.indices.is_empty() => {
                return Err(Rejection::invalid("array", "no task indices"))
            }
            Some(a) => a.indices.iter().map(|i| Some(*i)).collect(),
            None => vec![None],
        };

        if new_tenant {
            self.tenants
                .insert(spec.tenant.clone(), Tenant::new(&spec.tenant, now));
        }
        let first = self.next_allocation_id;
        let array_id = options.array.as_ref().map(|_| first);
        if let (Some(id), Some(a)) = (array_id, &options.array) {
            self.arrays.insert(
                id,
                ArrayInfo {
                    id,
                    size: a.indices.len() as u32,
                    max_running: a.max_running,
                    text: a.text.clone(),
                    submitted_at: now,
                },
            );
        }
        let broken = deps
            .iter()
            .find(|d| self.dependency_status(d) == DepStatus::Broken)
            .copied();
        for index in indices {
            let id = self.next_allocation_id;
            self.next_allocation_id += 1;
            let mut a = Allocation::new(id, spec.clone(), now);
            a.array_id = array_id;
            a.array_index = index;
            a.depends_on = deps.clone();
            a.submitted_by = options.submitted_by.clone();
            if options.hold {
                a.held = true;
                a.reason = Some("held".into());
                a.reason_detail = Some("submitted held".into());
            }
            self.insert_allocation(a);
            let detail = match &options.submitted_by {
                Some(by) => format!("submitted by {by}"),
                None => String::new(),
            };
            self.audit_alloc(id, AuditAction::Submitted, detail);
            if let Some(d) = broken {
                // A `success` dependency that already failed can never be met.
                let what = self.job_ref_of(d.on, d.array);
                self.finish(
                    id,
                    AllocState::Cancelled,
                    now,
                    Some("dependency_failed"),
                    Some(format!("dependency {what} already failed or was cancelled")),
                );
            }
        }
        Ok(CommandOutcome::Allocation(self.allocations[&first].clone()))
    }

    /// How users name a dependency target.
    fn job_ref_of(&self, id: AllocId, array: bool) -> String {
        match self.allocations.get(&id) {
            Some(a) if !array => a.job_ref(),
            _ => id.to_string(),
        }
    }

    /// Resolves submitted dependency references. Only allocations that exist can be named;
    /// since every dependency points to an earlier ID, dependencies can never form a cycle.
    fn resolve_dependencies(&self, refs: &[DependencyRef]) -> Result<Vec<Dependency>, Rejection> {
        let mut out: Vec<Dependency> = Vec::new();
        for r in refs {
            let (on, array) = match r.job {
                JobRef::Id(id) => {
                    if id >= self.next_allocation_id {
                        return Err(Rejection::invalid(
                            "depends_on",
                            format!(
                                "allocation {id} does not exist (an allocation can only depend on \
                                 earlier ones, so dependencies never form a cycle)"
                            ),
                        ));
                    }
                    if !self.allocations.contains_key(&id) {
                        return Err(Rejection::invalid(
                            "depends_on",
                            format!("allocation {id} does not exist"),
                        ));
                    }
                    (id, self.arrays.contains_key(&id))
                }
                JobRef::Task { array, index } => {
                    let id = self
                        .array_task(array, index)
                        .ok_or_else(|| {
                            Rejection::invalid("depends_on", format!("{} does not exist", r.job))
                        })?
                        .id;
                    (id, false)
                }
            };
            let d = Dependency {
                on,
                array,
                kind: r.kind,
            };
            if !out.contains(&d) {
                out.push(d);
            }
        }
        Ok(out)
    }
}
