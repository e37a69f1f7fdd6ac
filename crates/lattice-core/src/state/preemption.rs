//! Apply handlers for preemption and checkpoints.
//!
//! A plan's [`PlannedPreemption`] moves its victims to `preempting` (their agents checkpoint
//! and stop them) and gives the preemptor a *claim* on the nodes it will start on: nothing
//! else is placed there while the preemptor waits, pending. Once the last node of a victim is
//! released, the victim goes back to `pending` with `preempt_count` incremented (same ID, its
//! next run sees `LATTICE_RESTART_COUNT`), unless every rank ended on its own first (then it
//! completed). A claim ends when its preemptor leaves `pending` (placed, cancelled) or is
//! held; victims already preempting still go back to pending.
//!
//! Checkpoint reports are folded per round (run and trigger) into one [`CheckpointRecord`]
//! once every rank reported.

use std::collections::BTreeSet;

use crate::allocation::{AllocId, AllocState, Preemption};
use crate::audit::AuditAction;
use crate::checkpoint::{CheckpointRecord, CheckpointReport, CheckpointRound, RankCheckpoint};
use crate::command::{CommandOutcome, CommandResult};
use crate::error::Rejection;
use crate::node::NodeId;
use crate::scheduler::PlannedPreemption;
use crate::state::ClusterState;
use crate::time::Timestamp;

/// Open rounds kept per allocation (a rank that never reports must not grow the record).
const MAX_OPEN_ROUNDS: usize = 4;

impl ClusterState {
    /// Re-validates a planned preemption against the state at commit time. `taken`: nodes
    /// the same plan placed work on.
    pub(super) fn check_preemption(
        &self,
        p: &PlannedPreemption,
        taken: &BTreeSet<NodeId>,
    ) -> Result<(), String> {
        let a = self
            .allocations
            .get(&p.preemptor)
            .ok_or_else(|| "unknown allocation".to_string())?;
        if a.state != AllocState::Pending || a.held {
            return Err(format!(
                "allocation is {}",
                if a.held { "held" } else { a.state.as_str() }
            ));
        }
        let vc = self
            .vclusters
            .get(&a.vcluster)
            .ok_or_else(|| format!("unknown vCluster {}", a.vcluster))?;
        if !vc.preemption {
            return Err(format!("preemption is disabled in vCluster {}", vc.name));
        }
        if self.is_sensitive(&a.tenant) {
            return Err("work of a sensitive tenant runs only on its claimed nodes".into());
        }
        if p.nodes.len() != a.nodes as usize || p.victims.is_empty() {
            return Err(format!(
                "needs {} nodes and at least one victim, plan gives {} nodes and {} victims",
                a.nodes,
                p.nodes.len(),
                p.victims.len()
            ));
        }
        let victims: BTreeSet<AllocId> = p.victims.iter().copied().collect();
        for v in &victims {
            let va = self
                .allocations
                .get(v)
                .ok_or_else(|| format!("unknown victim {v}"))?;
            if va.state != AllocState::Running {
                return Err(format!("victim {v} is {}", va.state));
            }
            if !va.preemptible {
                return Err(format!("victim {v} is not preemptible"));
            }
            if va.vcluster != a.vcluster || va.priority >= a.priority {
                return Err(format!(
                    "victim {v} (priority {} in {}) may not be preempted by priority {} in {}",
                    va.priority, va.vcluster, a.priority, a.vcluster
                ));
            }
            if !va.assigned_nodes.iter().any(|n| p.nodes.contains(n)) {
                return Err(format!("victim {v} holds none of the claimed nodes"));
            }
        }
        let distinct: BTreeSet<&NodeId> = p.nodes.iter().collect();
        if distinct.len() != p.nodes.len() {
            return Err("a node appears twice".into());
        }
        for nid in &p.nodes {
            let n = self
                .nodes
                .get(nid)
                .ok_or_else(|| format!("unknown node {nid}"))?;
            if taken.contains(nid) || n.down || n.drain {
                return Err(format!("node {nid} is not available ({})", n.state));
            }
            if let Some(c) = &n.claim {
                return Err(format!(
                    "node {nid} is claimed by {} (tenant {})",
                    c.user, c.tenant
                ));
            }
            if !n.allocations.iter().all(|x| victims.contains(x)) {
                return Err(format!("node {nid} holds work that is not a victim"));
            }
            if self
                .claims
                .get(nid)
                .is_some_and(|c| *c != p.preemptor && self.live_claim(*c))
            {
                return Err(format!("node {nid} is claimed by another allocation"));
            }
            if !n.satisfies(&a.constraints) || !vc.contains(n) {
                return Err(format!("node {nid} does not suit allocation {}", a.id));
            }
        }
        Ok(())
    }

    /// Applies a validated preemption; returns the victims.
    pub(super) fn preempt(&mut self, now: Timestamp, p: &PlannedPreemption) -> Vec<AllocId> {
        for &v in &p.victims {
            self.set_state(v, AllocState::Preempting);
            if let Some(a) = self.allocations.get_mut(&v) {
                a.preemption = Some(Preemption {
                    by: p.preemptor,
                    since: now,
                    stopped_ranks: 0,
                });
                a.reason = Some("preempting".into());
                a.reason_detail = Some(format!("preempted by allocation {}", p.preemptor));
            }
            self.audit_alloc(
                v,
                AuditAction::Preempted,
                format!("for allocation {}", p.preemptor),
            );
            self.touch_nodes_of(v);
        }
        self.drop_claim(p.preemptor);
        for nid in &p.nodes {
            // A claim that was no longer live (checked above) gives way entirely.
            if let Some(&other) = self.claims.get(nid) {
                self.drop_claim(other);
            }
            self.claims.insert(nid.clone(), p.preemptor);
        }
        self.modify_pending(p.preemptor, |a| {
            a.claimed_nodes = p.nodes.clone();
            a.reason = Some(crate::scheduler::REASON_PREEMPTING.into());
            a.reason_detail = Some(crate::scheduler::reasons::preempting_detail(
                p.victims.len(),
            ));
        });
        p.victims.clone()
    }

    /// Ends a pending allocation's claim on nodes (placed, cancelled, held).
    pub(super) fn drop_claim(&mut self, id: AllocId) {
        let Some(a) = self.allocations.get_mut(&id) else {
            return;
        };
        for nid in std::mem::take(&mut a.claimed_nodes) {
            if self.claims.get(&nid) == Some(&id) {
                self.claims.remove(&nid);
            }
        }
    }

    /// Whether `id` holds a live claim: it is pending and not held, and every node it
    /// claimed is still usable and in its vCluster. The scheduler keeps everyone else off a
    /// live claim's nodes and apply refuses placements there; a claim that is not live is
    /// ignored (its preemptor schedules afresh, and a new preemption replaces it).
    pub fn live_claim(&self, id: AllocId) -> bool {
        let Some(a) = self.allocations.get(&id) else {
            return false;
        };
        if a.state != AllocState::Pending || a.held || a.claimed_nodes.is_empty() {
            return false;
        }
        let Some(vc) = self.vclusters.get(&a.vcluster) else {
            return false;
        };
        a.claimed_nodes.iter().all(|n| {
            self.nodes
                .get(n)
                .is_some_and(|n| !n.down && !n.drain && vc.contains(n))
        })
    }

    /// Nodes claimed by pending preemptors: node -> claimant.
    pub fn claims(&self) -> &std::collections::BTreeMap<NodeId, AllocId> {
        &self.claims
    }

    /// A preempting allocation's rank is gone (`stopped`: ended by the preemption rather
    /// than on its own). Once no node holds it, it goes back to pending, or completed if
    /// every rank exited successfully on its own before being stopped.
    pub(super) fn preempted_rank_gone(&mut self, id: AllocId, now: Timestamp, stopped: bool) {
        let Some(a) = self.allocations.get_mut(&id) else {
            return;
        };
        if a.state != AllocState::Preempting {
            return;
        }
        if stopped {
            if let Some(p) = a.preemption.as_mut() {
                p.stopped_ranks += 1;
            }
        }
        let still_held = a.assigned_nodes.iter().any(|n| {
            self.nodes
                .get(n)
                .is_some_and(|n| n.allocations.contains(&id))
        });
        if still_held {
            return;
        }
        let stopped_any = a.preemption.as_ref().is_some_and(|p| p.stopped_ranks > 0);
        if !stopped_any && a.node_exit_codes.values().all(|c| *c == 0) {
            a.exit_code = Some(0);
            self.finish(id, AllocState::Completed, now, None, None);
            return;
        }
        self.requeue_preempted(id, now);
    }

    /// Sends a preempted allocation back to pending for its next run.
    fn requeue_preempted(&mut self, id: AllocId, now: Timestamp) {
        self.charge_usage(id, now);
        let a = self.allocations.get_mut(&id).expect("caller checked");
        if let Some(ms) = a
            .started_at
            .map(|s| now.millis_since(s).saturating_mul(u64::from(a.nodes)))
        {
            a.preempted_node_ms = a.preempted_node_ms.saturating_add(ms);
            self.totals.on_preempted(a, ms);
        }
        let a = self.allocations.get_mut(&id).expect("caller checked");
        // A preemption round that some rank never reported still ends here.
        let run = a.preempt_count;
        if let Some(i) = a.checkpoint_rounds.iter().position(|r| {
            r.run == run && r.trigger == crate::checkpoint::CheckpointTrigger::Preemption
        }) {
            let round = a.checkpoint_rounds.remove(i);
            let record = round.conclude(&a.assigned_nodes, now);
            a.note_checkpoint(record.clone());
            self.audit_checkpoint(id, &record);
        }
        let a = self.allocations.get_mut(&id).expect("caller checked");
        let by = a.preemption.take().map(|p| p.by);
        a.checkpoint_rounds.clear();
        a.preempt_count += 1;
        a.assigned_nodes.clear();
        a.node_exit_codes.clear();
        a.started_at = None;
        a.exit_code = None;
        a.estimated_start = None;
        a.reason = Some("preempted".into());
        a.reason_detail = Some(match by {
            Some(by) => format!(
                "preempted by allocation {by}; waiting for run {}",
                a.preempt_count
            ),
            None => format!("preempted; waiting for run {}", a.preempt_count),
        });
        self.set_state(id, AllocState::Pending);
    }

    pub(super) fn request_checkpoint(
        &mut self,
        _now: Timestamp,
        id: AllocId,
        _by: &str,
    ) -> CommandResult {
        let a = self
            .allocations
            .get_mut(&id)
            .ok_or_else(|| Rejection::not_found("allocation", id))?;
        if !a.checkpoint.enabled() {
            return Err(Rejection::conflict(format!(
                "allocation {} was submitted with checkpoint: none; submit with \
                 --checkpoint=signal to checkpoint it",
                a.job_ref()
            )));
        }
        if a.state != AllocState::Running {
            return Err(Rejection::conflict(format!(
                "allocation {} is {}; only running allocations can be checkpointed",
                a.job_ref(),
                a.state
            )));
        }
        a.checkpoint_requests += 1;
        self.touch_nodes_of(id);
        Ok(CommandOutcome::Allocation(self.allocations[&id].clone()))
    }

    pub(super) fn report_checkpoints(
        &mut self,
        now: Timestamp,
        reports: &[CheckpointReport],
    ) -> CommandOutcome {
        let (mut applied, mut ignored) = (0, 0);
        let mut checkpoints = Vec::new();
        for r in reports {
            match self.report_checkpoint(now, r) {
                None => ignored += 1,
                Some(done) => {
                    applied += 1;
                    if let Some(record) = &done {
                        self.audit_checkpoint(r.allocation_id, record);
                    }
                    checkpoints.extend(done);
                }
            }
        }
        CommandOutcome::Reports {
            applied,
            ignored,
            checkpoints,
        }
    }

    /// `None`: ignored (unknown, stale, duplicate); `Some(record)` when it concluded a round.
    fn report_checkpoint(
        &mut self,
        now: Timestamp,
        r: &CheckpointReport,
    ) -> Option<Option<CheckpointRecord>> {
        let a = self.allocations.get_mut(&r.allocation_id)?;
        let live = matches!(a.state, AllocState::Running | AllocState::Preempting);
        if !live || r.run != a.preempt_count || !a.assigned_nodes.contains(&r.node_id) {
            return None;
        }
        let i = match a
            .checkpoint_rounds
            .iter()
            .position(|x| x.run == r.run && x.trigger == r.trigger)
        {
            Some(i) => i,
            None => {
                if a.checkpoint_rounds.len() >= MAX_OPEN_ROUNDS {
                    a.checkpoint_rounds.remove(0);
                }
                a.checkpoint_rounds.push(CheckpointRound {
                    run: r.run,
                    trigger: r.trigger,
                    ranks: Default::default(),
                });
                a.checkpoint_rounds.len() - 1
            }
        };
        let round = &mut a.checkpoint_rounds[i];
        if round.ranks.contains_key(&r.node_id) {
            return None;
        }
        round.ranks.insert(
            r.node_id.clone(),
            RankCheckpoint {
                outcome: r.outcome,
                duration_ms: r.duration_ms,
                message: r.message.clone(),
            },
        );
        if round.ranks.len() < a.assigned_nodes.len() {
            return Some(None);
        }
        let round = a.checkpoint_rounds.remove(i);
        let record = round.conclude(&a.assigned_nodes, now);
        a.note_checkpoint(record.clone());
        Some(Some(record))
    }
}

impl crate::allocation::Allocation {
    /// Records a concluded checkpoint round.
    pub(crate) fn note_checkpoint(&mut self, record: CheckpointRecord) {
        if record.outcome == crate::checkpoint::CheckpointOutcome::Success {
            self.checkpoint_count += 1;
            self.last_checkpoint_at = Some(record.at);
        }
        self.last_checkpoint = Some(record);
    }
}
