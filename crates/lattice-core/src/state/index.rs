//! The one place allocation states change ([`ClusterState::set_state`], and
//! [`ClusterState::finish`] for terminal transitions) and allocations are added
//! ([`ClusterState::insert_allocation`]); each keeps the derived indexes in step: pending and
//! running sets (and pending per vCluster, and per vCluster and tenant with their held
//! count, and the scheduler's queue index of `queues.rs`), state counts, tenant loads, array
//! tallies, array members and dependents. (Holds, which change a pending allocation's `held`
//! without moving it, call [`count_held`]; changes to a pending allocation's reason, hold or
//! estimate go through [`ClusterState::modify_pending`].)
//! Loading a snapshot rebuilds the same indexes by inserting every allocation.

use std::collections::BTreeMap;

use crate::allocation::{AllocId, AllocState, Allocation};
use crate::state::ClusterState;
use crate::time::Timestamp;
use crate::vcluster::DEFAULT_HALF_LIFE_SECONDS;

/// Pending allocations of one tenant in one vCluster, and how many of them are held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingCount {
    pub all: u64,
    pub held: u64,
}

/// vCluster -> tenant -> its pending allocations there (pairs with none are absent).
pub type PendingTenants = BTreeMap<String, BTreeMap<String, PendingCount>>;

/// Counts pending allocation `a` in (`add`) or out of its vCluster and tenant.
fn count_pending(map: &mut PendingTenants, a: &Allocation, add: bool) {
    update(map, a, |c| {
        if add {
            c.all += 1;
            c.held += u64::from(a.held);
        } else {
            c.all = c.all.saturating_sub(1);
            c.held = c.held.saturating_sub(u64::from(a.held));
        }
    });
}

/// Pending allocation `a` is now held (`held`) or no longer is.
pub(super) fn count_held(map: &mut PendingTenants, a: &Allocation, held: bool) {
    update(map, a, |c| {
        if held {
            c.held += 1;
        } else {
            c.held = c.held.saturating_sub(1);
        }
    });
}

/// Applies `f` to the count of `a`'s vCluster and tenant, dropping counts that reach zero (a
/// snapshot's rebuilt index has none, and `PartialEq` must see the two as equal).
fn update(map: &mut PendingTenants, a: &Allocation, f: impl FnOnce(&mut PendingCount)) {
    if !map.contains_key(&a.vcluster) {
        map.insert(a.vcluster.clone(), BTreeMap::new());
    }
    let Some(tenants) = map.get_mut(&a.vcluster) else {
        return;
    };
    if !tenants.contains_key(&a.tenant) {
        tenants.insert(a.tenant.clone(), PendingCount::default());
    }
    if let Some(c) = tenants.get_mut(&a.tenant) {
        f(c);
        if c.all == 0 {
            tenants.remove(&a.tenant);
        }
    }
    if tenants.is_empty() {
        map.remove(&a.vcluster);
    }
}

impl ClusterState {
    /// Adds an allocation (new, or loaded from a snapshot) and indexes it.
    pub(super) fn insert_allocation(&mut self, a: Allocation) {
        let id = a.id;
        *self.state_counts.entry(a.state).or_default() += 1;
        match a.state {
            AllocState::Pending => {
                self.pending.insert(id);
                self.pending_by_vcluster
                    .entry(a.vcluster.clone())
                    .or_default()
                    .insert(id);
                count_pending(&mut self.pending_tenants, &a, true);
                super::queues::add(&mut self.queues, &a);
            }
            AllocState::Running | AllocState::Preempting => {
                self.running.insert(id);
                let load = self.tenant_load.entry(a.tenant.clone()).or_default();
                load.nodes += u64::from(a.nodes);
                load.running += 1;
            }
            _ => {}
        }
        if a.state == AllocState::Pending {
            for nid in &a.claimed_nodes {
                self.claims.insert(nid.clone(), id);
            }
        }
        if let Some(array) = a.array_id {
            self.array_members.entry(array).or_default().insert(id);
            if a.requeued_as.is_none() {
                self.array_tally.entry(array).or_default()[a.state as usize] += 1;
            }
        }
        for d in &a.depends_on {
            self.dependents.entry(d.on).or_default().insert(id);
        }
        self.totals.on_insert(&a);
        self.allocations.insert(id, Box::new(a));
    }

    /// Moves an allocation to `to`, keeping the indexes in step.
    pub(super) fn set_state(&mut self, id: AllocId, to: AllocState) {
        let Some(a) = self.allocations.get_mut(&id) else {
            return;
        };
        let from = a.state;
        if from == to {
            return;
        }
        a.state = to;
        self.totals.on_enter(a, to);
        // Drop a count that reaches zero: the index rebuilt from a snapshot has no zero
        // entries, and the derived `PartialEq` must see the two as equal.
        if let Some(c) = self.state_counts.get_mut(&from) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.state_counts.remove(&from);
            }
        }
        *self.state_counts.entry(to).or_default() += 1;
        match from {
            AllocState::Pending => {
                self.pending.remove(&id);
                if let Some(set) = self.pending_by_vcluster.get_mut(&a.vcluster) {
                    set.remove(&id);
                    if set.is_empty() {
                        self.pending_by_vcluster.remove(&a.vcluster);
                    }
                }
                count_pending(&mut self.pending_tenants, a, false);
                super::queues::remove(&mut self.queues, a);
            }
            AllocState::Running | AllocState::Preempting => {
                self.running.remove(&id);
                if let Some(load) = self.tenant_load.get_mut(&a.tenant) {
                    load.nodes = load.nodes.saturating_sub(u64::from(a.nodes));
                    load.running = load.running.saturating_sub(1);
                    if load.is_zero() {
                        self.tenant_load.remove(&a.tenant);
                    }
                }
            }
            _ => {}
        }
        match to {
            AllocState::Pending => {
                self.pending.insert(id);
                self.pending_by_vcluster
                    .entry(a.vcluster.clone())
                    .or_default()
                    .insert(id);
                count_pending(&mut self.pending_tenants, a, true);
                super::queues::add(&mut self.queues, a);
            }
            AllocState::Running | AllocState::Preempting => {
                self.running.insert(id);
                let load = self.tenant_load.entry(a.tenant.clone()).or_default();
                load.nodes += u64::from(a.nodes);
                load.running += 1;
            }
            _ => {}
        }
        if let (Some(array), None) = (a.array_id, a.requeued_as) {
            let t = self.array_tally.entry(array).or_default();
            t[from as usize] = t[from as usize].saturating_sub(1);
            t[to as usize] += 1;
        }
        if from == AllocState::Pending {
            // A claim only lives while its preemptor waits.
            self.drop_claim(id);
        }
        self.audit_transition(id, from, to);
    }

    /// Takes a live array element out of its array's tally (before it is superseded).
    pub(super) fn untally(&mut self, id: AllocId) {
        let Some(a) = self.allocations.get(&id) else {
            return;
        };
        if let (Some(array), None) = (a.array_id, a.requeued_as) {
            if let Some(t) = self.array_tally.get_mut(&array) {
                t[a.state as usize] = t[a.state as usize].saturating_sub(1);
            }
        }
    }

    /// Moves an allocation to a terminal state with its reason, keeping the indexes in step;
    /// charges the tenant's fair-share usage if it ran; and cancels, with reason
    /// `dependency_failed`, every pending allocation whose `success` dependency can now never
    /// be met (transitively).
    pub(super) fn finish(
        &mut self,
        id: AllocId,
        to: AllocState,
        now: Timestamp,
        reason: Option<&str>,
        detail: Option<String>,
    ) {
        let mut work = vec![(id, to, reason.map(str::to_string), detail)];
        while let Some((id, to, reason, detail)) = work.pop() {
            let Some(a) = self.allocations.get(&id) else {
                continue;
            };
            if a.state.is_terminal() {
                continue;
            }
            let ran = matches!(a.state, AllocState::Running | AllocState::Preempting);
            self.set_state(id, to);
            let a = self.allocations.get_mut(&id).expect("checked above");
            a.finish(to, now, reason.as_deref(), detail);
            a.estimated_start = None;
            a.held = false;
            self.totals.on_ended(&self.allocations[&id]);
            self.audit_ended(id);
            if ran {
                self.charge_usage(id, now);
            }
            if matches!(to, AllocState::Failed | AllocState::Cancelled) {
                for dep in self.broken_dependents(id) {
                    let what = self.allocations[&id].job_ref();
                    let state = self.allocations[&id].state;
                    work.push((
                        dep,
                        AllocState::Cancelled,
                        Some("dependency_failed".to_string()),
                        Some(format!("dependency {what} {state}")),
                    ));
                }
            }
        }
    }

    /// Adds what a finished allocation used (nodes x run time) to its tenant's decayed usage
    /// in its vCluster.
    pub(super) fn charge_usage(&mut self, id: AllocId, now: Timestamp) {
        let a = &self.allocations[&id];
        let Some(started) = a.started_at else {
            return;
        };
        let node_ms = now.millis_since(started).saturating_mul(u64::from(a.nodes));
        let half_life_s = self
            .vclusters
            .get(&a.vcluster)
            .map_or(DEFAULT_HALF_LIFE_SECONDS, |v| v.fairshare_half_life_seconds);
        self.usage
            .entry(a.vcluster.clone())
            .or_default()
            .entry(a.tenant.clone())
            .or_default()
            .add(now, node_ms, half_life_s.saturating_mul(1000));
    }
}
