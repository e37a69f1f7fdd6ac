//! [`Attempt`]: one checkpoint of one rank in progress, the file and signal side of the
//! protocol described in the parent module. [`Attempt::start`] removes a stale
//! acknowledgement and signals the process group; the supervisor then calls
//! [`Attempt::poll`] every [`ACK_POLL`](super::ACK_POLL) until it yields the outcome, or ends
//! it early with [`Attempt::rank_exited`] or [`Attempt::interrupted`].

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lattice_core::checkpoint::{CheckpointOutcome, CheckpointSpec, CheckpointTrigger};
use tokio::time::Instant;

use super::{read_ack, signal_of, Ack, Finished, EXITED_BEFORE_ACK};
use crate::process;

/// A checkpoint waiting for its acknowledgement.
#[derive(Debug)]
pub struct Attempt {
    trigger: CheckpointTrigger,
    ack: PathBuf,
    /// When the signal was sent.
    started: Instant,
    timeout: Duration,
    /// The file was there but empty at the previous poll.
    seen_empty: bool,
}

/// The file as one look finds it.
enum Look {
    Missing,
    Found(Ack),
    Unreadable(io::Error),
}

fn look(path: &Path) -> Look {
    match std::fs::read(path) {
        Ok(bytes) => Look::Found(read_ack(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Look::Missing,
        Err(e) => Look::Unreadable(e),
    }
}

impl Attempt {
    /// Removes a stale acknowledgement at `ack` and sends the checkpoint signal to group
    /// `pgid`. A checkpoint that cannot start (bad signal name, stale file that cannot be
    /// removed, group gone or not signallable) is returned as already finished.
    pub fn start(
        trigger: CheckpointTrigger,
        spec: &CheckpointSpec,
        ack: &Path,
        pgid: i32,
    ) -> Result<Attempt, Finished> {
        let fail = |message: String| Finished::failed_at_once(trigger, message);
        let Some(signal) = signal_of(&spec.signal) else {
            return Err(fail(format!(
                "{:?} is not a checkpoint signal",
                spec.signal
            )));
        };
        match std::fs::remove_file(ack) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(fail(format!(
                    "cannot remove the stale acknowledgement {}: {e}",
                    ack.display()
                )))
            }
        }
        let started = Instant::now();
        match process::signal_group(pgid, signal) {
            Ok(true) => Ok(Attempt {
                trigger,
                ack: ack.to_path_buf(),
                started,
                timeout: Duration::from_secs(spec.timeout_seconds),
                seen_empty: false,
            }),
            Ok(false) => Err(fail(EXITED_BEFORE_ACK.to_string())),
            Err(e) => Err(fail(format!("cannot send {}: {e}", spec.signal))),
        }
    }

    fn done(&self, outcome: CheckpointOutcome, message: Option<String>) -> Finished {
        Finished {
            trigger: self.trigger,
            outcome,
            duration: self.started.elapsed(),
            message,
        }
    }

    fn acknowledged(&self, ack: Ack) -> Finished {
        match ack {
            Ack::Empty | Ack::Ok => self.done(CheckpointOutcome::Success, None),
            Ack::Failed(m) => self.done(CheckpointOutcome::Failure, Some(m)),
        }
    }

    fn unreadable(&self, e: &io::Error) -> Finished {
        let m = format!("cannot read {}: {e}", self.ack.display());
        self.done(CheckpointOutcome::Failure, Some(m))
    }

    /// One look for the acknowledgement: the outcome once there is one.
    pub fn poll(&mut self) -> Option<Finished> {
        let timed_out = self.started.elapsed() >= self.timeout;
        match look(&self.ack) {
            Look::Found(Ack::Empty) if !self.seen_empty && !timed_out => {
                // Perhaps created but not yet written: decide at the next look.
                self.seen_empty = true;
                None
            }
            Look::Found(ack) => Some(self.acknowledged(ack)),
            Look::Unreadable(e) => Some(self.unreadable(&e)),
            Look::Missing => {
                self.seen_empty = false;
                timed_out.then(|| {
                    let m = format!("no acknowledgement within {}s", self.timeout.as_secs());
                    self.done(CheckpointOutcome::Timeout, Some(m))
                })
            }
        }
    }

    /// The process group ended: the acknowledgement counts if it is there by now.
    pub fn rank_exited(self) -> Finished {
        match look(&self.ack) {
            Look::Found(ack) => self.acknowledged(ack),
            Look::Unreadable(e) => self.unreadable(&e),
            Look::Missing => self.done(
                CheckpointOutcome::Failure,
                Some(EXITED_BEFORE_ACK.to_string()),
            ),
        }
    }

    /// Given up because the rank is being ended for `why` (stop, walltime, shutdown).
    pub fn interrupted(self, why: &str) -> Finished {
        self.done(
            CheckpointOutcome::Failure,
            Some(format!("interrupted: {why}")),
        )
    }
}
