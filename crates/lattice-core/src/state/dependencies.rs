//! Dependency status (read by the scheduler and by plan re-validation) and the allocations a
//! failure breaks (for the `dependency_failed` cascade in `finish`).
//!
//! A requeue supersedes an allocation with a new one (`requeued_as`); a dependency on the old
//! ID follows the chain to the newest run, and a superseded allocation never breaks anything.

use crate::allocation::{AllocId, AllocState, Allocation};
use crate::dependency::{DepKind, DepStatus, Dependency};
use crate::state::ClusterState;

impl ClusterState {
    /// The newest run of `id` (following requeues).
    pub fn latest_run(&self, mut id: AllocId) -> Option<&Allocation> {
        // Each requeue creates a higher ID, so the chain ends.
        loop {
            let a = self.allocations.get(&id)?;
            match a.requeued_as {
                Some(next) if next > id => id = next,
                _ => return Some(a),
            }
        }
    }

    /// Where one dependency stands.
    pub fn dependency_status(&self, d: &Dependency) -> DepStatus {
        if d.array {
            let t = self.array_tally(d.on);
            let live: u32 = t.iter().sum();
            let completed = t[AllocState::Completed as usize];
            let bad = t[AllocState::Failed as usize] + t[AllocState::Cancelled as usize];
            return match d.kind {
                DepKind::Success if bad > 0 => DepStatus::Broken,
                DepKind::Success if completed == live => DepStatus::Met,
                DepKind::Any if completed + bad == live => DepStatus::Met,
                _ => DepStatus::Waiting,
            };
        }
        let Some(a) = self.latest_run(d.on) else {
            return DepStatus::Broken;
        };
        match (a.state, d.kind) {
            (AllocState::Completed, _) => DepStatus::Met,
            (AllocState::Failed | AllocState::Cancelled, DepKind::Success) => DepStatus::Broken,
            (AllocState::Failed | AllocState::Cancelled, DepKind::Any) => DepStatus::Met,
            _ => DepStatus::Waiting,
        }
    }

    /// The first dependency of `a` that is not met, with its status (`None`: all met).
    pub fn unmet_dependency<'a>(&self, a: &'a Allocation) -> Option<(&'a Dependency, DepStatus)> {
        a.depends_on
            .iter()
            .find_map(|d| match self.dependency_status(d) {
                DepStatus::Met => None,
                s => Some((d, s)),
            })
    }

    /// Pending allocations with a `success` dependency that the end of `id` (failed or
    /// cancelled) breaks: on `id` or an earlier run of it, or on its whole array.
    pub(super) fn broken_dependents(&self, id: AllocId) -> Vec<AllocId> {
        let Some(a) = self.allocations.get(&id) else {
            return Vec::new();
        };
        if a.requeued_as.is_some() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let push_from = |on: AllocId, array: bool, out: &mut Vec<AllocId>| {
            for dep in self.dependents.get(&on).into_iter().flatten() {
                let Some(d) = self.allocations.get(dep) else {
                    continue;
                };
                if d.state == AllocState::Pending
                    && d.depends_on
                        .iter()
                        .any(|x| x.on == on && x.array == array && x.kind == DepKind::Success)
                {
                    out.push(*dep);
                }
            }
        };
        // This run and the runs it requeued.
        let mut run = Some(a);
        while let Some(r) = run {
            push_from(r.id, false, &mut out);
            run = r
                .requeued_from
                .filter(|p| *p < r.id)
                .and_then(|p| self.allocations.get(&p));
        }
        if let Some(array) = a.array_id {
            push_from(array, true, &mut out);
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}
