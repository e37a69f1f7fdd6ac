//! Apply handler for a scheduling cycle's [`Plan`]. Every placement is re-validated against the
//! state at commit time, so a plan computed from a slightly older snapshot can never
//! double-book a node, place work on a node that was drained or lost meanwhile, exceed a
//! tenant's quota or an array's cap, start work that was held or whose dependencies are
//! no longer met, or place work on nodes claimed by another allocation's preemption.
//! Preemptions are checked after the placements (`preemption.rs`).

use std::collections::BTreeSet;

use crate::allocation::AllocState;
use crate::command::{CommandOutcome, PlanOutcome};
use crate::scheduler::{Placement, Plan};
use crate::state::ClusterState;
use crate::tenant::quota_exceeded;
use crate::time::Timestamp;

impl ClusterState {
    pub(super) fn apply_plan(&mut self, now: Timestamp, plan: &Plan) -> CommandOutcome {
        let mut out = PlanOutcome::default();
        let mut taken = BTreeSet::new();
        for p in &plan.placements {
            match self.check_placement(p, &taken) {
                Ok(()) => {
                    taken.extend(p.nodes.iter().cloned());
                    self.place(now, p);
                    out.placed.push(p.allocation);
                }
                Err(why) => out.rejected.push((p.allocation, why)),
            }
        }
        for p in &plan.preemptions {
            match self.check_preemption(p, &taken) {
                Ok(()) => {
                    taken.extend(p.nodes.iter().cloned());
                    out.preempted.extend(self.preempt(now, p));
                }
                Err(why) => out.preemptions_rejected.push((p.preemptor, why)),
            }
        }
        for (id, reason, detail) in &plan.reasons {
            if self.allocations.get(id).map(|a| a.state) == Some(AllocState::Pending) {
                self.modify_pending(*id, |a| {
                    a.reason = Some(reason.clone());
                    a.reason_detail = detail.clone();
                });
            }
        }
        for (id, start) in &plan.estimates {
            if self.allocations.get(id).map(|a| a.state) == Some(AllocState::Pending) {
                self.modify_pending(*id, |a| a.estimated_start = *start);
            }
        }
        CommandOutcome::Plan(out)
    }

    fn check_placement(&self, p: &Placement, taken: &BTreeSet<String>) -> Result<(), String> {
        let a = self
            .allocations
            .get(&p.allocation)
            .ok_or_else(|| "unknown allocation".to_string())?;
        if a.state != AllocState::Pending {
            return Err(format!("allocation is {}", a.state));
        }
        if a.held {
            return Err("allocation is held".into());
        }
        if let Some((d, _)) = self.unmet_dependency(a) {
            return Err(format!("dependency on {} is not met", d.on));
        }
        if p.nodes.len() != a.nodes as usize {
            return Err(format!(
                "needs {} nodes, plan gives {}",
                a.nodes,
                p.nodes.len()
            ));
        }
        let distinct: BTreeSet<_> = p.nodes.iter().collect();
        if distinct.len() != p.nodes.len() {
            return Err("a node appears twice".into());
        }
        let vc = self
            .vclusters
            .get(&a.vcluster)
            .ok_or_else(|| format!("unknown vCluster {}", a.vcluster))?;
        let tenant = self
            .tenants
            .get(&a.tenant)
            .ok_or_else(|| format!("unknown tenant {}", a.tenant))?;
        if let Some(q) = quota_exceeded(tenant, self.tenant_load(&a.tenant), a.nodes) {
            return Err(format!("tenant {} would exceed its {q} quota", a.tenant));
        }
        if let Some(array) = a.array_id {
            let cap = self.arrays.get(&array).and_then(|i| i.max_running);
            let running = self.array_running(array);
            if cap.is_some_and(|c| running >= c) {
                return Err(format!("array {array} already runs its cap of tasks"));
            }
        }
        for nid in &p.nodes {
            let n = self
                .nodes
                .get(nid)
                .ok_or_else(|| format!("unknown node {nid}"))?;
            if tenant.sensitive {
                // Only its user's claimed nodes, whatever the vCluster (`scheduler/claims.rs`).
                if !n.free_for(&a.tenant, &a.user) || taken.contains(nid) {
                    return Err(format!(
                        "node {nid} is not an idle node claimed by {} for tenant {}",
                        a.user, a.tenant
                    ));
                }
                if !n.satisfies(&a.constraints) {
                    return Err(format!("node {nid} does not satisfy the constraints"));
                }
                continue;
            }
            if let Some(c) = &n.claim {
                return Err(format!(
                    "node {nid} is claimed by {} (tenant {})",
                    c.user, c.tenant
                ));
            }
            if !n.is_free() || taken.contains(nid) {
                return Err(format!("node {nid} is not free ({})", n.state));
            }
            if self
                .claims
                .get(nid)
                .is_some_and(|c| *c != a.id && self.live_claim(*c))
            {
                return Err(format!("node {nid} is claimed by a preemption"));
            }
            if !n.satisfies(&a.constraints) {
                return Err(format!("node {nid} does not satisfy the constraints"));
            }
            if !vc.contains(n) {
                return Err(format!("node {nid} is not in vCluster {}", vc.name));
            }
        }
        Ok(())
    }

    fn place(&mut self, now: Timestamp, p: &Placement) {
        let revision = self.revision;
        for nid in &p.nodes {
            if let Some(n) = self.nodes.get_mut(nid) {
                n.allocations.insert(p.allocation);
                super::scratch::touch(n, revision, &mut self.scratch.work_changed);
                n.refresh_state();
            }
        }
        if let Some(a) = self.allocations.get_mut(&p.allocation) {
            a.assigned_nodes = p.nodes.clone();
            a.started_at = Some(now);
        }
        // Out of pending (and the queue index, which holds it by its reason) first.
        self.set_state(p.allocation, AllocState::Running);
        if let Some(a) = self.allocations.get_mut(&p.allocation) {
            a.reason = None;
            a.reason_detail = None;
            a.estimated_start = None;
        }
    }
}
