//! Supervising one running rank until it is gone: a tokio task selects over the process's
//! exit, the control plane's requests (stop, preempt, on-demand checkpoints, all carried by
//! the rank's [`Control`]), the walltime timer, periodic checkpoints and agent shutdown. It
//! runs the rank's checkpoints through a [`Driver`], ends the whole process group (SIGTERM,
//! SIGKILL after the grace period, SIGKILL for stragglers) and returns the [`ExitReport`].
//!
//! A preemption checkpoints the rank (if its allocation can be) and then stops it like a
//! stop does; the report says `preempted`, also when the rank ends on its own while its
//! checkpoint is awaited. The first of stop and preempt wins: a stop during a preemption
//! changes nothing. Walltime and shutdown still end a rank at once, abandoning a checkpoint
//! in progress (reported as a failure).
//!
//! A rank adopted after an agent restart is not the agent's child, so its group is polled
//! for liveness instead of waited for, and its exit status is unknown.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use lattice_core::agent::{ExitOutcome, ExitReport};
use nix::sys::signal::Signal;
use tokio::process::Child;
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::checkpoint::driver::{Driver, Setup, Step};
use crate::checkpoint::ACK_POLL;
use crate::process;
use crate::ranks::{Control, End, Ranks};
use crate::reconcile::RankKey;
use crate::records;
use crate::wait::raised;

/// How long to wait for a SIGKILLed group to vanish before reporting anyway.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(5);
/// Liveness poll period of adopted groups.
const ADOPTED_POLL: Duration = Duration::from_secs(1);
/// Poll period while waiting for a SIGTERMed group to leave.
const GROUP_POLL: Duration = Duration::from_millis(50);

/// Why a rank ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// It ended on its own.
    Exited,
    /// The control plane no longer wants it.
    Stopped,
    /// It ran past its walltime (in seconds).
    Walltime(u64),
    /// The agent is shutting down.
    Shutdown,
    /// The control plane preempted it (after its checkpoint, if it has one).
    Preempted,
}

/// The signals and timers a supervisor watches.
pub struct Watch {
    pub control: watch::Receiver<Control>,
    pub shutdown: watch::Receiver<bool>,
    /// When the walltime runs out; `None` for no limit.
    pub deadline: Option<Instant>,
    pub walltime_seconds: u64,
    pub grace: Duration,
}

/// The process a supervisor waits for.
pub enum Leader {
    /// Started by this agent as the leader of its group: waited for, its status known.
    Child(Child),
    /// Started by an earlier agent run: its group is polled; no status.
    Adopted(Interval),
}

impl Leader {
    pub fn adopted() -> Leader {
        let mut poll = tokio::time::interval(ADOPTED_POLL);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Leader::Adopted(poll)
    }

    /// Resolves when the leader (adopted: the whole group) is gone, with its status if known.
    /// Cancel-safe.
    async fn exited(&mut self, pgid: i32) -> Option<io::Result<ExitStatus>> {
        match self {
            Leader::Child(child) => Some(child.wait().await),
            Leader::Adopted(poll) => loop {
                poll.tick().await;
                if !process::group_alive(pgid) {
                    return None;
                }
            },
        }
    }

    /// SIGTERM to the group; after `grace`, SIGKILL to whatever is left. The leader's status
    /// if known.
    async fn terminate(&mut self, pgid: i32, grace: Duration) -> Option<io::Result<ExitStatus>> {
        match self {
            Leader::Child(child) => Some(terminate_child(child, pgid, grace).await),
            Leader::Adopted(_) => {
                signal(pgid, Signal::SIGTERM);
                if !wait_group_gone(pgid, Instant::now() + grace).await
                    && !process::kill_group_and_wait(pgid, KILL_WAIT).await
                {
                    tracing::warn!(pgid, "adopted process group still present after SIGKILL");
                }
                None
            }
        }
    }
}

/// The exit report for a rank that ended for `cause` with the given status (pure).
pub fn exit_report(
    key: &RankKey,
    cause: Cause,
    exit_code: Option<i32>,
    signal: Option<i32>,
) -> ExitReport {
    let (outcome, message) = match cause {
        Cause::Exited => (ExitOutcome::Exited, None),
        Cause::Stopped => (
            ExitOutcome::Stopped,
            Some("stopped: no longer wanted by the control plane".to_string()),
        ),
        Cause::Walltime(secs) => (
            ExitOutcome::Walltime,
            Some(format!("killed at walltime of {secs}s")),
        ),
        Cause::Shutdown => (
            ExitOutcome::Stopped,
            Some("stopped: the agent shut down".to_string()),
        ),
        Cause::Preempted => (ExitOutcome::Preempted, Some("preempted".to_string())),
    };
    ExitReport {
        allocation_id: key.allocation_id,
        node_id: key.node_id.clone(),
        outcome,
        exit_code,
        signal,
        message,
        run: key.run,
    }
}

async fn deadline(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Supervises the rank `key` whose process group is `pgid` until it is gone; queues its
/// checkpoint reports in `ranks` on the way and returns its exit report.
pub async fn supervise(
    key: &RankKey,
    pgid: i32,
    mut leader: Leader,
    w: Watch,
    setup: Setup,
    ranks: &Ranks,
) -> ExitReport {
    let Watch {
        mut control,
        mut shutdown,
        deadline: at,
        walltime_seconds,
        grace,
    } = w;
    let mut checkpoints = Driver::new(key, ranks, pgid, setup);
    let mut control_open = true;
    let (cause, status) = loop {
        let c = *control.borrow_and_update();
        let preempting = c.end == Some(End::Preempt);
        if c.end == Some(End::Stop) {
            checkpoints.interrupt(false, "the rank was stopped");
            break (Cause::Stopped, leader.terminate(pgid, grace).await);
        }
        if checkpoints.advance(&c) == Step::Stop {
            tracing::info!(%key, "preempted: stopping");
            break (Cause::Preempted, leader.terminate(pgid, grace).await);
        }
        let polling = checkpoints.in_progress();
        let periodic_at = checkpoints.periodic_at();
        tokio::select! {
            status = leader.exited(pgid) => {
                checkpoints.rank_exited(preempting);
                let cause = if preempting { Cause::Preempted } else { Cause::Exited };
                break (cause, status);
            }
            changed = control.changed(), if control_open => {
                // The sender lives in the rank table while the rank runs; if it is gone
                // anyway, stop watching it instead of spinning.
                control_open = changed.is_ok();
            }
            () = deadline(at) => {
                checkpoints.interrupt(preempting, "the rank reached its walltime");
                let status = leader.terminate(pgid, grace).await;
                break (Cause::Walltime(walltime_seconds), status);
            }
            () = raised(&mut shutdown) => {
                checkpoints.interrupt(preempting, "the agent shut down");
                let cause = if preempting { Cause::Preempted } else { Cause::Shutdown };
                break (cause, leader.terminate(pgid, grace).await);
            }
            () = tokio::time::sleep(ACK_POLL), if polling => checkpoints.poll(),
            () = deadline(periodic_at) => checkpoints.periodic(),
        }
    };
    // Whatever ended the leader, nothing of its group may outlive it.
    if matches!(leader, Leader::Child(_)) && !process::kill_group_and_wait(pgid, KILL_WAIT).await {
        tracing::warn!(%key, pgid, "process group still present after SIGKILL");
    }
    let mut report = match status {
        Some(Ok(s)) => exit_report(key, cause, s.code(), s.signal()),
        Some(Err(e)) => {
            tracing::warn!(%key, error = %e, "cannot collect exit status");
            ExitReport {
                message: Some(format!("exit status unavailable: {e}")),
                ..exit_report(key, cause, None, None)
            }
        }
        None if cause == Cause::Exited => records::lost_report(key),
        None => exit_report(key, cause, None, None),
    };
    if cause == Cause::Preempted {
        report.message = Some(checkpoints.preempted_message());
    }
    report
}

/// SIGTERM to the group; wait up to `grace` for the leader and then the rest of the group;
/// SIGKILL to the group if anything is left. Returns the leader's status. (Also ends wipes.)
pub(crate) async fn terminate_child(
    child: &mut Child,
    pgid: i32,
    grace: Duration,
) -> io::Result<ExitStatus> {
    let until = Instant::now() + grace;
    signal(pgid, Signal::SIGTERM);
    let status = match tokio::time::timeout_at(until, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            signal(pgid, Signal::SIGKILL);
            return child.wait().await;
        }
    };
    wait_group_gone(pgid, until).await;
    status
}

/// Polls (and reaps) until the group is gone or `until`; true when it is gone.
async fn wait_group_gone(pgid: i32, until: Instant) -> bool {
    loop {
        process::reap_group(pgid);
        if !process::group_alive(pgid) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(GROUP_POLL).await;
    }
}

fn signal(pgid: i32, sig: Signal) {
    if let Err(e) = process::signal_group(pgid, sig) {
        tracing::warn!(pgid, signal = %sig, error = %e, "cannot signal process group");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_per_cause() {
        let k = RankKey::new(3, "n1");
        let r = exit_report(&k, Cause::Exited, Some(2), None);
        assert_eq!(
            (r.outcome, r.exit_code, r.signal, r.message),
            (ExitOutcome::Exited, Some(2), None, None)
        );
        let r = exit_report(&k, Cause::Walltime(7), None, Some(15));
        assert_eq!((r.outcome, r.signal), (ExitOutcome::Walltime, Some(15)));
        assert_eq!(r.message.as_deref(), Some("killed at walltime of 7s"));
        assert_eq!(
            exit_report(&k, Cause::Stopped, None, Some(9)).outcome,
            ExitOutcome::Stopped
        );
        assert_eq!(
            exit_report(&k, Cause::Shutdown, None, None).outcome,
            ExitOutcome::Stopped
        );
        assert_eq!((r.allocation_id, r.node_id.as_str(), r.run), (3, "n1", 0));
        let r = exit_report(&k.clone().in_run(2), Cause::Preempted, Some(0), None);
        assert_eq!((r.outcome, r.run), (ExitOutcome::Preempted, 2));
    }
}
