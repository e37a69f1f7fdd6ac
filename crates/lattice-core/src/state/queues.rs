//! The scheduler's queue index: every pending allocation of a vCluster, grouped so that a
//! cycle reads only as far into the queue as it places (`scheduler/queue.rs`).
//!
//! An allocation's score depends, besides its submission time, only on its tenant, priority,
//! constraints and node count ([`QueueClass`]); the older of two allocations of one class
//! always scores at least as high. So each class, kept in (submission, ID) order, is already
//! in queue order, and a cycle merges classes lazily instead of sorting the whole queue.
//! Within a class, members are further split by their current reason, so that a cycle can
//! find the members whose reason it must change without reading every record.
//!
//! Held allocations and those with dependencies ("irregular") are not classed: they are read
//! every cycle (their gates depend on other allocations). Pending allocations with an
//! estimated start are listed too, so that a cycle can clear estimates that went away.
//!
//! Kept in step where pending allocations enter and leave (`index.rs`) and wherever a
//! pending allocation's reason, hold or estimate changes ([`ClusterState::modify_pending`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::allocation::{AllocId, AllocState, Allocation, Constraints};
use crate::state::ClusterState;
use crate::time::Timestamp;

/// What orders a pending allocation in its vCluster's queue besides its submission time;
/// with its array (caps are per array), what decides its reason when a cycle does not reach
/// it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueueClass {
    pub tenant: String,
    pub priority: u8,
    pub nodes: u32,
    /// Its array's ID, or 0.
    pub array: AllocId,
    pub constraints: Constraints,
}

/// A pending allocation's current `reason` and `reason_detail`.
pub type ReasonKey = (Option<String>, Option<String>);

/// Members of a class with one reason, in queue order: (submitted, ID).
pub type Members = BTreeSet<(Timestamp, AllocId)>;

/// One vCluster's pending allocations, indexed for the scheduler.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VcQueue {
    /// Regular allocations (not held, without dependencies): class -> reason -> members.
    pub classes: BTreeMap<QueueClass, BTreeMap<ReasonKey, Members>>,
    /// Held allocations and those with dependencies.
    pub irregular: BTreeSet<AllocId>,
    /// Pending allocations with an estimated start.
    pub estimated: BTreeSet<AllocId>,
}

/// vCluster -> its queue index (vClusters with nothing pending are absent).
pub type Queues = BTreeMap<String, VcQueue>;

fn regular(a: &Allocation) -> bool {
    !a.held && a.depends_on.is_empty()
}

fn class_of(a: &Allocation) -> QueueClass {
    QueueClass {
        tenant: a.tenant.clone(),
        priority: a.priority,
        nodes: a.nodes,
        array: a.array_id.unwrap_or(0),
        constraints: a.constraints.clone(),
    }
}

fn reason_of(a: &Allocation) -> ReasonKey {
    (a.reason.clone(), a.reason_detail.clone())
}

/// Adds pending allocation `a` to the index.
pub(super) fn add(q: &mut Queues, a: &Allocation) {
    let vq = q.entry(a.vcluster.clone()).or_default();
    if regular(a) {
        vq.classes
            .entry(class_of(a))
            .or_default()
            .entry(reason_of(a))
            .or_default()
            .insert((a.submitted_at, a.id));
    } else {
        vq.irregular.insert(a.id);
    }
    if a.estimated_start.is_some() {
        vq.estimated.insert(a.id);
    }
}

/// Removes pending allocation `a` (as it was added), dropping what becomes empty (a rebuilt
/// index has no empty entries, and the derived `PartialEq` must see the two as equal).
pub(super) fn remove(q: &mut Queues, a: &Allocation) {
    let Some(vq) = q.get_mut(&a.vcluster) else {
        return;
    };
    if regular(a) {
        let class = class_of(a);
        if let Some(reasons) = vq.classes.get_mut(&class) {
            let reason = reason_of(a);
            if let Some(m) = reasons.get_mut(&reason) {
                m.remove(&(a.submitted_at, a.id));
                if m.is_empty() {
                    reasons.remove(&reason);
                }
            }
            if reasons.is_empty() {
                vq.classes.remove(&class);
            }
        }
    } else {
        vq.irregular.remove(&a.id);
    }
    vq.estimated.remove(&a.id);
    if vq.classes.is_empty() && vq.irregular.is_empty() && vq.estimated.is_empty() {
        q.remove(&a.vcluster);
    }
}

impl ClusterState {
    /// Changes allocation `id` with `f`, keeping the queue index in step if it is pending
    /// (its reason, hold or estimate may change; its class and submission never do).
    pub(super) fn modify_pending<R>(
        &mut self,
        id: AllocId,
        f: impl FnOnce(&mut Allocation) -> R,
    ) -> Option<R> {
        let a = self.allocations.get_mut(&id)?;
        let pending = a.state == AllocState::Pending;
        if pending {
            remove(&mut self.queues, a);
        }
        let r = f(a);
        if pending {
            add(&mut self.queues, a);
        }
        Some(r)
    }

    /// The queue index of a vCluster's pending allocations (`None`: nothing pending there).
    pub fn queue(&self, vcluster: &str) -> Option<&VcQueue> {
        self.queues.get(vcluster)
    }
}
