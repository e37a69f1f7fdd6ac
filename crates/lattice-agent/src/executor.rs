//! [`Executor`]: carries out the [`Action`]s of reconciliation. It launches ranks (or recovers
//! ones an earlier agent run started), hands each to a supervisor task, forwards stop
//! requests, and records every exit in the `exit` file and in [`Ranks`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lattice_core::agent::{Assignment, ExitOutcome, ExitReport};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::launch::{self, LaunchError};
use crate::process;
use crate::ranks::{Group, Ranks};
use crate::reconcile::{Action, RankKey};
use crate::records::{self, DiskRecord, Recovery};
use crate::supervise::{self, Cause, Watch};

#[derive(Clone)]
pub struct Executor {
    ranks: Arc<Ranks>,
    work_dir: PathBuf,
    grace: Duration,
    shutdown: watch::Receiver<bool>,
}

impl Executor {
    /// `work_dir` should be absolute (it is exported as part of `LATTICE_WORKDIR`).
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
                Action::Retire(key) => self.retire(key),
                Action::Resend(key) => {
                    self.ranks.requeue(&key);
                }
                Action::Forget(key) => self.ranks.forget(&key),
            }
        }
    }

    fn watch(
        &self,
        stop: watch::Receiver<bool>,
        deadline: Option<Instant>,
        walltime: u64,
    ) -> Watch {
        Watch {
            stop,
            shutdown: self.shutdown.clone(),
            deadline,
            walltime_seconds: walltime,
            grace: self.grace,
        }
    }

    /// Launches a rank, unless its directory shows an earlier start.
    pub fn start(&self, a: &Assignment) {
        let key = RankKey::of(a);
        if self.ranks.contains(&key) {
            return;
        }
        let dir = launch::rank_dir(&self.work_dir, &key);
        if let Some(record) = records::read(&dir) {
            tracing::info!(%key, dir = %dir.display(), "started before this agent run; not starting again");
            self.recover(key, dir, &record, a.walltime_seconds, owner(a), false);
            return;
        }
        let plan = match launch::plan(a, &self.work_dir) {
            Ok(p) => p,
            Err(e) => return self.launch_failed(key, &dir, &e),
        };
        let child = match launch::spawn(&plan) {
            Ok(c) => c,
            Err(e) => return self.launch_failed(key, &dir, &e),
        };
        let Some(pgid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
            // Only possible if the child was already waited for, which it was not.
            let e = LaunchError::Spawn {
                program: plan.program,
                source: std::io::Error::other("started process has no pid"),
            };
            return self.launch_failed(key, &dir, &e);
        };
        if let Err(e) = records::write_pid(&dir, pgid) {
            tracing::warn!(%key, error = %e, "cannot write pid file; a restarted agent will not find this rank");
        }
        tracing::info!(%key, pgid, program = %plan.program, "started");
        let (tenant, vcluster) = owner(a);
        let group = Group {
            pgid,
            tenant,
            vcluster,
        };
        let stop = self.ranks.insert_running(key.clone(), group);
        let deadline = walltime_deadline(a.walltime_seconds, Duration::ZERO);
        let w = self.watch(stop, deadline, a.walltime_seconds);
        let this = self.clone();
        tokio::spawn(async move {
            let report = supervise::supervise_child(&key, child, pgid, w).await;
            this.finish(&dir, report);
        });
    }

    /// Wanted stopped but not running here: stop anything an earlier agent run left, then
    /// report the rank gone.
    fn retire(&self, key: RankKey) {
        let dir = launch::rank_dir(&self.work_dir, &key);
        match records::read(&dir) {
            // Only the key is known here; the group is stopped at once anyway.
            Some(record) => self.recover(key, dir, &record, 0, Default::default(), true),
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
    /// reports what the records say. `owner` is (tenant, vcluster) for telemetry labels.
    fn recover(
        &self,
        key: RankKey,
        dir: PathBuf,
        record: &DiskRecord,
        walltime: u64,
        owner: (String, String),
        stop: bool,
    ) {
        match records::recover(&key, record, process::group_alive) {
            Recovery::Report(report) => {
                tracing::info!(%key, outcome = ?report.outcome, "earlier run already gone");
                self.ranks.finish(report);
            }
            Recovery::Adopt { pgid } => {
                tracing::info!(%key, pgid, "adopting process group of an earlier agent run");
                let (tenant, vcluster) = owner;
                let group = Group {
                    pgid,
                    tenant,
                    vcluster,
                };
                let stop_rx = self.ranks.insert_running(key.clone(), group);
                if stop {
                    self.ranks.request_stop(&key);
                }
                let elapsed = record
                    .started
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .unwrap_or_default();
                let w = self.watch(stop_rx, walltime_deadline(walltime, elapsed), walltime);
                let this = self.clone();
                tokio::spawn(async move {
                    let report = supervise::supervise_adopted(&key, pgid, w).await;
                    this.finish(&dir, report);
                });
            }
        }
    }

    fn launch_failed(&self, key: RankKey, dir: &Path, e: &LaunchError) {
        tracing::warn!(%key, error = %e, "launch failed");
        let report = ExitReport {
            allocation_id: key.allocation_id,
            node_id: key.node_id.clone(),
            outcome: ExitOutcome::LaunchFailed,
            exit_code: Some(e.exit_code()),
            signal: None,
            message: Some(e.to_string()),
        };
        // Record it, so that a restarted agent does not try again.
        if std::fs::create_dir_all(dir).is_ok() {
            if let Err(e) = records::write_exit(dir, &report) {
                tracing::warn!(%key, error = %e, "cannot write exit file");
            }
        }
        self.ranks.finish(report);
    }

    fn finish(&self, dir: &Path, report: ExitReport) {
        let key = RankKey::new(report.allocation_id, report.node_id.clone());
        if let Err(e) = records::write_exit(dir, &report) {
            tracing::warn!(%key, error = %e, "cannot write exit file");
        }
        tracing::info!(
            %key,
            outcome = ?report.outcome,
            exit_code = ?report.exit_code,
            signal = ?report.signal,
            "finished"
        );
        self.ranks.finish(report);
    }
}

/// (tenant, vcluster) of an assignment, the labels of its telemetry.
fn owner(a: &Assignment) -> (String, String) {
    (a.tenant.clone(), a.vcluster.clone())
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
