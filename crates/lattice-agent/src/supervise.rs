//! Supervising one running rank until it is gone: a tokio task selects over the process's
//! exit, a stop request, the walltime timer and agent shutdown, ends the whole process group
//! (SIGTERM, SIGKILL after the grace period, SIGKILL for stragglers) and returns the
//! [`ExitReport`]. A rank adopted after an agent restart is not the agent's child, so its
//! group is polled for liveness instead of waited for.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use lattice_core::agent::{ExitOutcome, ExitReport};
use nix::sys::signal::Signal;
use tokio::process::Child;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::process;
use crate::reconcile::RankKey;
use crate::records;
use crate::wait::raised;

/// How long to wait for a SIGKILLed group to vanish before reporting anyway.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Liveness poll period of adopted groups.
const ADOPTED_POLL: Duration = Duration::from_secs(1);
/// Poll period while waiting for a SIGTERMed group to leave.
const GROUP_POLL: Duration = Duration::from_millis(50);

/// Why the agent ended a rank.
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
}

/// The signals and timers a supervisor watches.
pub struct Watch {
    pub stop: watch::Receiver<bool>,
    pub shutdown: watch::Receiver<bool>,
    /// When the walltime runs out; `None` for no limit.
    pub deadline: Option<Instant>,
    pub walltime_seconds: u64,
    pub grace: Duration,
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
    };
    ExitReport {
        allocation_id: key.allocation_id,
        node_id: key.node_id.clone(),
        outcome,
        exit_code,
        signal,
        message,
    }
}

async fn deadline(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Supervises a child the agent started as leader of process group `pgid`.
pub async fn supervise_child(key: &RankKey, mut child: Child, pgid: i32, w: Watch) -> ExitReport {
    let Watch {
        mut stop,
        mut shutdown,
        deadline: at,
        walltime_seconds,
        grace,
    } = w;
    let (cause, status) = tokio::select! {
        status = child.wait() => (Cause::Exited, status),
        () = raised(&mut stop) => (Cause::Stopped, terminate_child(&mut child, pgid, grace).await),
        () = deadline(at) => {
            (Cause::Walltime(walltime_seconds), terminate_child(&mut child, pgid, grace).await)
        }
        () = raised(&mut shutdown) => {
            (Cause::Shutdown, terminate_child(&mut child, pgid, grace).await)
        }
    };
    // Whatever ended the leader, nothing of its group may outlive it.
    if !process::kill_group_and_wait(pgid, KILL_WAIT).await {
        tracing::warn!(%key, pgid, "process group still present after SIGKILL");
    }
    match status {
        Ok(s) => exit_report(key, cause, s.code(), s.signal()),
        Err(e) => {
            tracing::warn!(%key, error = %e, "cannot collect exit status");
            ExitReport {
                message: Some(format!("exit status unavailable: {e}")),
                ..exit_report(key, cause, None, None)
            }
        }
    }
}

/// SIGTERM to the group; wait up to `grace` for the leader and then the rest of the group;
/// SIGKILL to the group if anything is left. Returns the leader's status.
async fn terminate_child(
    child: &mut Child,
    pgid: i32,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
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

/// Supervises the process group of a rank started by an earlier agent run: polls it every
/// second, enforces stop, walltime and shutdown by signalling the group. Its exit status
/// cannot be known.
pub async fn supervise_adopted(key: &RankKey, pgid: i32, w: Watch) -> ExitReport {
    let Watch {
        mut stop,
        mut shutdown,
        deadline: at,
        walltime_seconds,
        grace,
    } = w;
    let mut poll = tokio::time::interval(ADOPTED_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let cause = loop {
        tokio::select! {
            _ = poll.tick() => {
                if !process::group_alive(pgid) {
                    return records::lost_report(key);
                }
            }
            () = raised(&mut stop) => break Cause::Stopped,
            () = deadline(at) => break Cause::Walltime(walltime_seconds),
            () = raised(&mut shutdown) => break Cause::Shutdown,
        }
    };
    signal(pgid, Signal::SIGTERM);
    if !wait_group_gone(pgid, Instant::now() + grace).await
        && !process::kill_group_and_wait(pgid, KILL_WAIT).await
    {
        tracing::warn!(%key, pgid, "adopted process group still present after SIGKILL");
    }
    exit_report(key, cause, None, None)
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
        assert_eq!((r.allocation_id, r.node_id.as_str()), (3, "n1"));
    }
}
