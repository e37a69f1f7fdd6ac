//! [`Ranks`]: the agent's in-memory table of local ranks (running or finished) and of exit
//! reports waiting for a heartbeat to carry them. Shared by the work loop (which reconciles
//! against it), the supervisors (which record exits) and the heartbeat loop (which sends and
//! acknowledges reports). Telemetry reads the process groups of running ranks from it.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use lattice_core::agent::ExitReport;
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

enum Rank {
    Running {
        stop: watch::Sender<bool>,
        stopping: bool,
        group: Group,
    },
    Finished {
        report: ExitReport,
    },
}

#[derive(Default)]
struct Inner {
    ranks: BTreeMap<RankKey, Rank>,
    pending: BTreeMap<RankKey, ExitReport>,
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
                        Rank::Running { stopping, .. } => LocalState::Running {
                            stopping: *stopping,
                        },
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

    /// Records a running rank; returns the receiver its supervisor watches for a stop request.
    pub fn insert_running(&self, key: RankKey, group: Group) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        let mut inner = self.lock();
        inner.ranks.insert(
            key,
            Rank::Running {
                stop: tx,
                stopping: false,
                group,
            },
        );
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

    /// Asks a running rank's supervisor to stop it; false when it is not running.
    pub fn request_stop(&self, key: &RankKey) -> bool {
        let mut inner = self.lock();
        match inner.ranks.get_mut(key) {
            Some(Rank::Running { stop, stopping, .. }) => {
                *stopping = true;
                stop.send_replace(true);
                true
            }
            _ => false,
        }
    }

    /// Records that a rank is gone and queues its exit report.
    pub fn finish(&self, report: ExitReport) {
        let key = RankKey::new(report.allocation_id, report.node_id.clone());
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

    /// Reports waiting to be carried by a heartbeat, in rank order.
    pub fn pending_reports(&self) -> Vec<ExitReport> {
        self.lock().pending.values().cloned().collect()
    }

    /// Marks reports as delivered (a heartbeat carrying them succeeded).
    pub fn ack(&self, delivered: &[ExitReport]) {
        let mut inner = self.lock();
        for r in delivered {
            let key = RankKey::new(r.allocation_id, r.node_id.clone());
            if inner.pending.get(&key) == Some(r) {
                inner.pending.remove(&key);
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

    use super::*;

    fn report(id: u64, node: &str) -> ExitReport {
        ExitReport {
            allocation_id: id,
            node_id: node.into(),
            outcome: ExitOutcome::Exited,
            exit_code: Some(0),
            signal: None,
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

    #[test]
    fn lifecycle_running_finished_acked_forgotten() {
        let ranks = Ranks::default();
        let key = RankKey::new(1, "n1");
        let nodes = vec!["n1".to_string()];
        let stop_rx = ranks.insert_running(key.clone(), group(900));
        assert_eq!(ranks.running_count(), 1);
        assert_eq!(
            ranks.running_groups(),
            vec![RunningGroup {
                key: key.clone(),
                group: group(900)
            }]
        );
        assert_eq!(
            ranks.view(&nodes).ranks[&key],
            LocalState::Running { stopping: false }
        );

        assert!(ranks.request_stop(&key));
        assert!(*stop_rx.borrow());
        assert_eq!(
            ranks.view(&nodes).ranks[&key],
            LocalState::Running { stopping: true }
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

        ranks.ack(&[report(1, "n1")]);
        assert!(ranks.pending_reports().is_empty());
        assert!(ranks.requeue(&key));
        assert_eq!(ranks.pending_reports().len(), 1);
        ranks.ack(&ranks.pending_reports());
        ranks.forget(&key);
        assert!(!ranks.contains(&key));
        assert!(!ranks.request_stop(&key));
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
        ranks.ack(&[old]);
        assert_eq!(ranks.pending_reports(), vec![newer]);
    }

    #[tokio::test]
    async fn idle_and_report_queued_resolve() {
        let ranks = Ranks::default();
        let _rx = ranks.insert_running(RankKey::new(2, "n1"), group(901));
        ranks.finish(report(2, "n1"));
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            ranks.idle().await;
            ranks.report_queued().await;
        })
        .await
        .expect("idle and notified");
    }
}
