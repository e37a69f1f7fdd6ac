//! Exit reports of many agents' heartbeats committed together: each heartbeat hands its
//! reports to one task, which proposes everything that arrived meanwhile as one
//! `ReportExits` entry and answers every heartbeat once it is applied. While one entry is
//! being committed the next batch accumulates, so 10,000 agents reporting at once cost a
//! handful of Raft entries (and fsyncs), not 10,000. Apply ignores duplicates, so a batch
//! may safely hold a report twice.

use lattice_core::agent::ExitReport;
use lattice_core::{Command, CommandOutcome};
use tokio::sync::{mpsc, oneshot};

use super::error::ApiError;
use super::App;
use crate::clock;

/// Reports in one entry at most.
pub const MAX_BATCH_REPORTS: usize = 10_000;
/// Heartbeats waiting for the batcher at most (then senders wait).
pub const QUEUE: usize = 4_096;

/// One heartbeat's reports and where to answer it.
pub struct Pending {
    pub reports: Vec<ExitReport>,
    pub done: oneshot::Sender<Result<(), ApiError>>,
}

pub type Sender = mpsc::Sender<Pending>;

pub fn channel() -> (Sender, mpsc::Receiver<Pending>) {
    mpsc::channel(QUEUE)
}

/// Commits `reports` in the next batch and returns once it is applied.
pub async fn submit(app: &App, reports: Vec<ExitReport>) -> Result<(), ApiError> {
    let (done, answer) = oneshot::channel();
    app.exit_reports
        .send(Pending { reports, done })
        .await
        .map_err(|_| ApiError::unavailable("the server is shutting down"))?;
    answer
        .await
        .map_err(|_| ApiError::unavailable("the server is shutting down"))?
}

/// The batching loop; ends when the member stops (or every sender is gone).
pub async fn run(app: App, mut rx: mpsc::Receiver<Pending>) {
    let mut stop = app.stop.clone();
    loop {
        let first = tokio::select! {
            p = rx.recv() => match p {
                Some(p) => p,
                None => return,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let mut n = first.reports.len();
        let mut batch = vec![first];
        while n < MAX_BATCH_REPORTS {
            match rx.try_recv() {
                Ok(p) => {
                    n += p.reports.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let reports: Vec<ExitReport> = batch
            .iter_mut()
            .flat_map(|p| std::mem::take(&mut p.reports))
            .collect();
        let res = app
            .propose(Command::ReportExits {
                now: clock::now(),
                reports,
            })
            .await;
        match res {
            Ok(out) => {
                observe(&out);
                for p in batch {
                    let _ = p.done.send(Ok(()));
                }
            }
            Err(e) => {
                for p in batch {
                    let _ = p.done.send(Err(ApiError {
                        status: e.status,
                        error: e.error.clone(),
                        detail: e.detail.clone(),
                        retry_after_secs: e.retry_after_secs,
                    }));
                }
            }
        }
    }
}

/// Observes the checkpoint rounds that applied reports concluded (once per entry).
pub fn observe(out: &CommandOutcome) {
    if let CommandOutcome::Reports { checkpoints, .. } = out {
        for c in checkpoints {
            crate::metrics::checkpoint(c.outcome, c.duration_ms as f64 / 1000.0);
        }
    }
}
