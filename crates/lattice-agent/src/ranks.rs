//! [`Ranks`]: the agent's in-memory table of local ranks (running or finished) and of the
//! reports waiting for a heartbeat to carry them: exit reports (one per rank, the latest wins)
//! and checkpoint reports (in the order the checkpoints ended). Shared by the work loop (which
//! reconciles against it and passes requests to running ranks), the supervisors (which record
//! checkpoints and exits) and the heartbeat loop (which sends and acknowledges reports).
//! Telemetry reads the process groups of running ranks from it.
//!
//! A supervisor queues a rank's checkpoint reports before its exit report, and [`Ranks::pending`]
//! takes both under one lock, so a heartbeat never carries a rank's exit without the
//! checkpoints that preceded it.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use lattice_core::agent::ExitReport;
use lattice_core::checkpoint::CheckpointReport;
use lattice_core::NodeId;
use tokio::sync::{watch, Notify};

use crate::reconcile::{LocalState, LocalView, RankKey};

/// A running rank's process group and the labels its telemetry carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub pgid: i32,
    pub tenant: String,
    pub vcluster: String,
}

/// A running rank as telemetry sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningGroup {
    pub key: RankKey,
    pub group: Group,
}

/// How the control plane wants a running rank to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Stop it (SIGTERM, SIGKILL after the grace period).
    Stop,
    /// Checkpoint it if it can be, then stop it.
    Preempt,
}

/// What the work loop asks of a running rank, watched by its supervisor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Control {
    /// Set once; the first request wins (a stop during a preemption changes nothing).
    pub end: Option<End>,
    /// The highest on-demand checkpoint request counter seen for the rank.
    pub checkpoint_requests: u64,
}

enum Rank {
    Running {
        control: watch::Sender<Control>,
        group: Group,
    },
    Finished {
        report: ExitReport,
    },
}

/// Reports a heartbeat carries, taken together by [`Ranks::pending`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub reports: Vec<ExitReport>,
    pub checkpoints: Vec<CheckpointReport>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.reports.is_empty() && self.checkpoints.is_empty()
    }
}

#[derive(Default)]
struct Inner {
    ranks: BTreeMap<RankKey, Rank>,
    pending: BTreeMap<RankKey, ExitReport>,
    checkpoints: Vec<CheckpointReport>,
}

pub struct Ranks {
    inner: Mutex<Inner>,
    /// Woken when a report is queued, so the heartbeat loop sends it at once.
    report_queued: Notify,
    /// Number of running ranks (for shutdown to wait on).
    running: watch::Sender<usize>,
}

impl Default for Ranks {
    fn default() -> Self {
        Ranks {
            inner: Mutex::default(),
            report_queued: Notify::new(),
            running: watch::Sender::new(0),
        }
    }
}

impl Ranks {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated (every update is
        // a single insert/remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish_running(&self, inner: &Inner) {
        let n = inner
            .ranks
            .values()
            .filter(|r| matches!(r, Rank::Running { .. }))
            .count();
        self.running.send_replace(n);
    }

    /// The local side of reconciliation, for the given presented nodes.
    pub fn view(&self, nodes: &[NodeId]) -> LocalView {
        let inner = self.lock();
        LocalView {
            nodes: nodes.iter().cloned().collect(),
            ranks: inner
                .ranks
                .iter()
                .map(|(k, r)| {
                    let s = match r {
                        Rank::Running { control, .. } => {
                            let c = *control.borrow();
                            LocalState::Running {
                                stopping: c.end.is_some(),
                                checkpoint_requests: c.checkpoint_requests,
                            }
                        }
                        Rank::Finished { .. } => LocalState::Finished {
                            report_pending: inner.pending.contains_key(k),
                        },
                    };
                    (k.clone(), s)
                })
                .collect(),
        }
    }

    /// Whether the table holds this rank in any state.
    pub fn contains(&self, key: &RankKey) -> bool {
        self.lock().ranks.contains_key(key)
    }

    /// Records a running rank whose assignment counted `checkpoint_requests` on-demand
    /// requests when it started; returns the receiver its supervisor watches.
    pub fn insert_running(
        &self,
        key: RankKey,
        group: Group,
        checkpoint_requests: u64,
    ) -> watch::Receiver<Control> {
        let (tx, rx) = watch::channel(Control {
            end: None,
            checkpoint_requests,
        });
        let mut inner = self.lock();
        inner
            .ranks
            .insert(key, Rank::Running { control: tx, group });
        self.publish_running(&inner);
        rx
    }

    /// The process groups of the running ranks, in rank order.
    pub fn running_groups(&self) -> Vec<RunningGroup> {
        self.lock()
            .ranks
            .iter()
            .filter_map(|(k, r)| match r {
                Rank::Running { group, .. } => Some(RunningGroup {
                    key: k.clone(),
                    group: group.clone(),
                }),
                Rank::Finished { .. } => None,
            })
            .collect()
    }

    /// Changes a running rank's [`Control`]; false when it is not running.
    fn control(&self, key: &RankKey, change: impl FnOnce(&mut Control)) -> bool {
        let inner = self.lock();
        match inner.ranks.get(key) {
            Some(Rank::Running { control, .. }) => {
                control.send_modify(change);
                true
            }
            _ => false,
        }
    }

    /// Asks a running rank's supervisor to stop it (unless it already ends); false when it
    /// is not running.
    pub fn request_stop(&self, key: &RankKey) -> bool {
        self.control(key, |c| {
            c.end.get_or_insert(End::Stop);
        })
    }

    /// Asks a running rank's supervisor to checkpoint and stop it (unless it already ends);
    /// false when it is not running.
    pub fn request_preempt(&self, key: &RankKey) -> bool {
        self.control(key, |c| {
            c.end.get_or_insert(End::Preempt);
        })
    }

    /// Tells a running rank that the on-demand checkpoint counter reached `requests`;
    /// false when it is not running.
    pub fn request_checkpoint(&self, key: &RankKey, requests: u64) -> bool {
        self.control(key, |c| {
            c.checkpoint_requests = c.checkpoint_requests.max(requests);
        })
    }

    /// Queues the report of a checkpoint that ended.
    pub fn checkpointed(&self, report: CheckpointReport) {
        self.lock().checkpoints.push(report);
        self.report_queued.notify_one();
    }

    /// Records that a rank is gone and queues its exit report.
    pub fn finish(&self, report: ExitReport) {
        let key = RankKey::of_report(&report);
        {
            let mut inner = self.lock();
            inner.pending.insert(key.clone(), report.clone());
            inner.ranks.insert(key, Rank::Finished { report });
            self.publish_running(&inner);
        }
        self.report_queued.notify_one();
    }

    /// Queues a finished rank's report again; false when the rank is not finished here.
    pub fn requeue(&self, key: &RankKey) -> bool {
        let queued = {
            let mut inner = self.lock();
            match inner.ranks.get(key) {
                Some(Rank::Finished { report }) => {
                    let report = report.clone();
                    inner.pending.insert(key.clone(), report);
                    true
                }
                _ => false,
            }
        };
        if queued {
            self.report_queued.notify_one();
        }
        queued
    }

    /// Drops a finished rank whose report was delivered; running ranks are kept.
    pub fn forget(&self, key: &RankKey) {
        let mut inner = self.lock();
        if matches!(inner.ranks.get(key), Some(Rank::Finished { .. }))
            && !inner.pending.contains_key(key)
        {
            inner.ranks.remove(key);
        }
    }

    /// Exit reports waiting to be carried by a heartbeat, in rank order.
    pub fn pending_reports(&self) -> Vec<ExitReport> {
        self.lock().pending.values().cloned().collect()
    }

    /// Checkpoint reports waiting to be carried by a heartbeat, oldest first.
    pub fn pending_checkpoints(&self) -> Vec<CheckpointReport> {
        self.lock().checkpoints.clone()
    }

    /// Everything a heartbeat should carry, taken at one instant.
    pub fn pending(&self) -> Pending {
        let inner = self.lock();
        Pending {
            reports: inner.pending.values().cloned().collect(),
            checkpoints: inner.checkpoints.clone(),
        }
    }

    /// Marks reports as delivered (a heartbeat carrying them succeeded). An exit report
    /// replaced by a newer one since stays queued.
    pub fn ack(&self, delivered: &Pending) {
        let mut inner = self.lock();
        for r in &delivered.reports {
            let key = RankKey::of_report(r);
            if inner.pending.get(&key) == Some(r) {
                inner.pending.remove(&key);
            }
        }
        for c in &delivered.checkpoints {
            if let Some(i) = inner.checkpoints.iter().position(|q| q == c) {
                inner.checkpoints.remove(i);
            }
        }
    }

    /// Resolves when a report has been queued since the last call (or ever, the first time).
    pub async fn report_queued(&self) {
        self.report_queued.notified().await;
    }

    /// Resolves once no rank is running.
    pub async fn idle(&self) {
        let mut rx = self.running.subscribe();
        // The sender lives in `self`, so this cannot fail while we are borrowed.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    pub fn running_count(&self) -> usize {
        *self.running.borrow()
    }
}

#[cfg(test)]
mod tests {
    use lattice_core::agent::ExitOutcome;
    use lattice_core::checkpoint::{CheckpointOutcome, CheckpointTrigger};

    use super::*;

    fn report(id: u64, node: &str) -> ExitReport {
        ExitReport {
            allocation_id: id,
            node_id: node.into(),
            outcome: ExitOutcome::Exited,
            exit_code: Some(0),
            signal: None,
            message: None,
            run: 0,
        }
    }

    fn checkpoint(id: u64, trigger: CheckpointTrigger) -> CheckpointReport {
        CheckpointReport {
            allocation_id: id,
            node_id: "n1".into(),
            run: 0,
            trigger,
            outcome: CheckpointOutcome::Success,
            duration_ms: 12,
            message: None,
        }
    }

    fn group(pgid: i32) -> Group {
        Group {
            pgid,
            tenant: "physics".into(),
            vcluster: "gpu".into(),
        }
    }

    const RUNNING: LocalState = LocalState::Running {
        stopping: false,
        checkpoint_requests: 0,
    };

    #[test]
    fn lifecycle_running_finished_acked_forgotten() {
        let ranks = Ranks::default();
        let key = RankKey::new(1, "n1");
        let nodes = vec!["n1".to_string()];
        let control = ranks.insert_running(key.clone(), group(900), 0);
        assert_eq!(ranks.running_count(), 1);
        assert_eq!(
            ranks.running_groups(),
            vec![RunningGroup {
                key: key.clone(),
                group: group(900)
            }]
        );
        assert_eq!(ranks.view(&nodes).ranks[&key], RUNNING);

        assert!(ranks.request_stop(&key));
        assert_eq!(control.borrow().end, Some(End::Stop));
        assert_eq!(
            ranks.view(&nodes).ranks[&key],
            LocalState::Running {
                stopping: true,
                checkpoint_requests: 0
            }
        );

        ranks.finish(report(1, "n1"));
        assert_eq!(ranks.running_count(), 0);
        assert!(ranks.running_groups().is_empty());
        assert_eq!(ranks.pending_reports(), vec![report(1, "n1")]);
        assert_eq!(
            ranks.view(&nodes).ranks[&key],
            LocalState::Finished {
                report_pending: true
            }
        );

        // Forgetting is refused while the report is pending.
        ranks.forget(&key);
        assert!(ranks.contains(&key));

        ranks.ack(&ranks.pending());
        assert!(ranks.pending_reports().is_empty());
        assert!(ranks.requeue(&key));
        assert_eq!(ranks.pending_reports().len(), 1);
        ranks.ack(&ranks.pending());
        ranks.forget(&key);
        assert!(!ranks.contains(&key));
        assert!(!ranks.request_stop(&key));
        assert!(!ranks.request_preempt(&key));
        assert!(!ranks.request_checkpoint(&key, 3));
    }

    #[test]
    fn the_first_end_wins_and_requests_only_grow() {
        let ranks = Ranks::default();
        let key = RankKey::new(1, "n1");
        let control = ranks.insert_running(key.clone(), group(900), 2);
        assert_eq!(control.borrow().checkpoint_requests, 2);
        assert!(ranks.request_checkpoint(&key, 5));
        assert!(ranks.request_checkpoint(&key, 4));
        assert_eq!(control.borrow().checkpoint_requests, 5);
        assert!(ranks.request_preempt(&key));
        assert!(ranks.request_stop(&key));
        assert_eq!(
            *control.borrow(),
            Control {
                end: Some(End::Preempt),
                checkpoint_requests: 5
            }
        );
        assert_eq!(
            ranks.view(&["n1".into()]).ranks[&key],
            LocalState::Running {
                stopping: true,
                checkpoint_requests: 5
            }
        );
    }

    #[test]
    fn runs_of_one_allocation_are_separate_ranks() {
        let ranks = Ranks::default();
        ranks.finish(report(1, "n1"));
        let run1 = RankKey::new(1, "n1").in_run(1);
        let _control = ranks.insert_running(run1.clone(), group(901), 0);
        let view = ranks.view(&["n1".into()]);
        assert_eq!(
            view.ranks[&RankKey::new(1, "n1")],
            LocalState::Finished {
                report_pending: true
            }
        );
        assert_eq!(view.ranks[&run1], RUNNING);
        ranks.finish(ExitReport {
            run: 1,
            ..report(1, "n1")
        });
        assert_eq!(ranks.pending_reports().len(), 2);
    }

    #[test]
    fn checkpoint_reports_queue_in_order_and_are_acked_with_exits() {
        let ranks = Ranks::default();
        let first = checkpoint(1, CheckpointTrigger::Periodic(1));
        let second = checkpoint(1, CheckpointTrigger::Preemption);
        ranks.checkpointed(first.clone());
        ranks.checkpointed(second.clone());
        ranks.finish(report(1, "n1"));
        let sent = ranks.pending();
        assert_eq!(sent.checkpoints, vec![first.clone(), second.clone()]);
        assert_eq!(sent.reports, vec![report(1, "n1")]);
        // One more ends while the heartbeat is in flight: it stays queued.
        let third = checkpoint(2, CheckpointTrigger::Request(1));
        ranks.checkpointed(third.clone());
        ranks.ack(&sent);
        assert_eq!(
            ranks.pending(),
            Pending {
                reports: vec![],
                checkpoints: vec![third]
            }
        );
        assert!(!ranks.pending().is_empty());
        ranks.ack(&ranks.pending());
        assert!(ranks.pending().is_empty());
        assert!(ranks.pending_checkpoints().is_empty());
    }

    #[test]
    fn ack_of_an_older_report_keeps_the_newer_one() {
        let ranks = Ranks::default();
        let old = report(1, "n1");
        ranks.finish(old.clone());
        let newer = ExitReport {
            message: Some("newer".into()),
            ..old.clone()
        };
        ranks.finish(newer.clone());
        ranks.ack(&Pending {
            reports: vec![old],
            checkpoints: vec![],
        });
        assert_eq!(ranks.pending_reports(), vec![newer]);
    }

    #[tokio::test]
    async fn idle_and_report_queued_resolve() {
        let ranks = Ranks::default();
        let _rx = ranks.insert_running(RankKey::new(2, "n1"), group(901), 0);
        ranks.finish(report(2, "n1"));
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            ranks.idle().await;
            ranks.report_queued().await;
        })
        .await
        .expect("idle and notified");
    }
}
