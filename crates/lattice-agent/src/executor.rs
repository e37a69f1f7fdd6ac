//! [`Executor`]: carries out the [`Action`]s of reconciliation. It launches ranks (or recovers
//! ones an earlier agent run started), hands each to a supervisor task, forwards stop,
//! preemption and checkpoint requests, and records every exit in the run's `exit` file and
//! in [`Ranks`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lattice_core::agent::{Assignment, ExitOutcome, ExitReport};
use lattice_core::checkpoint::CheckpointSpec;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::checkpoint::driver::Setup;
use crate::launch::{self, LaunchError};
use crate::layout;
use crate::process;
use crate::ranks::{Group, Ranks};
use crate::reconcile::{Action, RankKey};
use crate::records::{self, DiskRecord, Recovery};
use crate::supervise::{self, Cause, Leader, Watch};

#[derive(Clone)]
pub struct Executor {
    ranks: Arc<Ranks>,
    work_dir: PathBuf,
    grace: Duration,
    shutdown: watch::Receiver<bool>,
}

/// What a rank's supervision needs from its assignment (a retired rank has none: defaults).
#[derive(Clone, Debug, Default)]
struct Terms {
    /// (tenant, vcluster), the labels of its telemetry.
    owner: (String, String),
    walltime_seconds: u64,
    checkpoint: CheckpointSpec,
    checkpoint_requests: u64,
}

impl Terms {
    fn of(a: &Assignment) -> Terms {
        Terms {
            owner: (a.tenant.clone(), a.vcluster.clone()),
            walltime_seconds: a.walltime_seconds,
            checkpoint: a.checkpoint.clone(),
            checkpoint_requests: a.checkpoint_requests,
        }
    }
}

impl Executor {
    /// `work_dir` should be absolute (paths under it are exported to the ranks).
    pub fn new(
        ranks: Arc<Ranks>,
        work_dir: PathBuf,
        grace: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Executor {
            ranks,
            work_dir,
            grace,
            shutdown,
        }
    }

    /// Carries out `actions` in order. Must run inside a tokio runtime.
    pub fn apply(&self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Start(a) => self.start(&a),
                Action::Stop(key) => {
                    tracing::info!(%key, "stopping");
                    self.ranks.request_stop(&key);
                }
                Action::Preempt(key) => {
                    tracing::info!(%key, "preempting");
                    self.ranks.request_preempt(&key);
                }
                Action::Checkpoint { key, requests } => {
                    tracing::info!(%key, requests, "checkpoint requested");
                    self.ranks.request_checkpoint(&key, requests);
                }
                Action::Retire(key) => self.retire(key),
                Action::Resend(key) => {
                    self.ranks.requeue(&key);
                }
                Action::Forget(key) => self.ranks.forget(&key),
            }
        }
    }

    /// Records `key` as running in group `pgid` and supervises it in a new task, which
    /// records its exit in `records_dir` and in the rank table.
    fn supervise(
        &self,
        key: RankKey,
        pgid: i32,
        leader: Leader,
        terms: Terms,
        elapsed: Duration,
        records_dir: PathBuf,
    ) {
        let (tenant, vcluster) = terms.owner;
        let group = Group {
            pgid,
            tenant,
            vcluster,
        };
        let control = self
            .ranks
            .insert_running(key.clone(), group, terms.checkpoint_requests);
        let now = Instant::now();
        let setup = Setup {
            spec: terms.checkpoint,
            ack: layout::ack_path(&self.work_dir, &key),
            started: now.checked_sub(elapsed).unwrap_or(now),
            requests: terms.checkpoint_requests,
        };
        let w = Watch {
            control,
            shutdown: self.shutdown.clone(),
            deadline: walltime_deadline(terms.walltime_seconds, elapsed),
            walltime_seconds: terms.walltime_seconds,
            grace: self.grace,
        };
        let this = self.clone();
        tokio::spawn(async move {
            let report = supervise::supervise(&key, pgid, leader, w, setup, &this.ranks).await;
            this.finish(&records_dir, report);
        });
    }

    /// Launches a rank, unless its records show an earlier start of this run.
    pub fn start(&self, a: &Assignment) {
        let key = RankKey::of(a);
        if self.ranks.contains(&key) {
            return;
        }
        let records_dir = layout::records_dir(&self.work_dir, &key);
        if let Some(record) = records::read(&records_dir) {
            tracing::info!(%key, dir = %records_dir.display(), "started before this agent run; not starting again");
            self.recover(key, records_dir, &record, Terms::of(a), false);
            return;
        }
        let plan = match launch::plan(a, &self.work_dir) {
            Ok(p) => p,
            Err(e) => return self.launch_failed(key, &records_dir, &e),
        };
        let child = match launch::spawn(&plan) {
            Ok(c) => c,
            Err(e) => return self.launch_failed(key, &records_dir, &e),
        };
        let Some(pgid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
            // Only possible if the child was already waited for, which it was not.
            let e = LaunchError::Spawn {
                program: plan.program,
                source: std::io::Error::other("started process has no pid"),
            };
            return self.launch_failed(key, &records_dir, &e);
        };
        if let Err(e) = records::write_pid(&records_dir, pgid) {
            tracing::warn!(%key, error = %e, "cannot write pid file; a restarted agent will not find this rank");
        }
        tracing::info!(%key, pgid, program = %plan.program, "started");
        let leader = Leader::Child(child);
        self.supervise(key, pgid, leader, Terms::of(a), Duration::ZERO, records_dir);
    }

    /// Wanted stopped but not running here: stop anything an earlier agent run left, then
    /// report the rank gone.
    fn retire(&self, key: RankKey) {
        let dir = layout::records_dir(&self.work_dir, &key);
        match records::read(&dir) {
            // Only the key is known here; the group is stopped at once anyway.
            Some(record) => self.recover(key, dir, &record, Terms::default(), true),
            None => {
                tracing::info!(%key, "stopped before it started here");
                let report = ExitReport {
                    message: Some("stopped before it started on this node".into()),
                    ..supervise::exit_report(&key, Cause::Stopped, None, None)
                };
                self.ranks.finish(report);
            }
        }
    }

    /// Takes over a rank started by an earlier agent run: adopts its live process group, or
    /// reports what the records say.
    fn recover(
        &self,
        key: RankKey,
        records_dir: PathBuf,
        record: &DiskRecord,
        terms: Terms,
        stop: bool,
    ) {
        match records::recover(&key, record, process::group_alive) {
            Recovery::Report(report) => {
                tracing::info!(%key, outcome = ?report.outcome, "earlier run already gone");
                self.ranks.finish(report);
            }
            Recovery::Adopt { pgid } => {
                tracing::info!(%key, pgid, "adopting process group of an earlier agent run");
                let elapsed = record
                    .started
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .unwrap_or_default();
                let leader = Leader::adopted();
                self.supervise(key.clone(), pgid, leader, terms, elapsed, records_dir);
                if stop {
                    self.ranks.request_stop(&key);
                }
            }
        }
    }

    fn launch_failed(&self, key: RankKey, records_dir: &Path, e: &LaunchError) {
        tracing::warn!(%key, error = %e, "launch failed");
        let report = ExitReport {
            allocation_id: key.allocation_id,
            node_id: key.node_id.clone(),
            outcome: ExitOutcome::LaunchFailed,
            exit_code: Some(e.exit_code()),
            signal: None,
            message: Some(e.to_string()),
            run: key.run,
        };
        // Record it, so that a restarted agent does not try again.
        if std::fs::create_dir_all(records_dir).is_ok() {
            if let Err(e) = records::write_exit(records_dir, &report) {
                tracing::warn!(%key, error = %e, "cannot write exit file");
            }
        }
        self.ranks.finish(report);
    }

    fn finish(&self, records_dir: &Path, report: ExitReport) {
        let key = RankKey::of_report(&report);
        if let Err(e) = records::write_exit(records_dir, &report) {
            tracing::warn!(%key, error = %e, "cannot write exit file");
        }
        tracing::info!(
            %key,
            outcome = ?report.outcome,
            exit_code = ?report.exit_code,
            signal = ?report.signal,
            message = report.message.as_deref().unwrap_or(""),
            "finished"
        );
        self.ranks.finish(report);
    }
}

/// When a walltime of `secs` (0: none) ends, for a rank that has run `elapsed` already.
fn walltime_deadline(secs: u64, elapsed: Duration) -> Option<Instant> {
    if secs == 0 {
        return None;
    }
    let left = Duration::from_secs(secs).saturating_sub(elapsed);
    Instant::now().checked_add(left)
}

#[cfg(test)]
#[path = "executor_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "executor_checkpoint_tests.rs"]
mod checkpoint_tests;
