//! Thin wrappers over the process-group system calls the agent needs: signalling a group,
//! checking whether any member is left, reaping members re-parented to the agent, and
//! becoming a child subreaper. Every function refuses process-group IDs that could address
//! more than one rank's group (`<= 1`, which `kill(2)` would turn into "every process") or the
//! agent's own group.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpgrp, Pid};

/// Whether `pgid` may be signalled: a real group that is not the agent's own.
fn signallable(pgid: i32) -> bool {
    pgid > 1 && pgid != getpgrp().as_raw()
}

/// Sends `sig` to every process of the group. `Ok(false)` when the group is already gone.
pub fn signal_group(pgid: i32, sig: Signal) -> Result<bool, Errno> {
    if !signallable(pgid) {
        return Err(Errno::EINVAL);
    }
    match signal::killpg(Pid::from_raw(pgid), sig) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether any process of the group exists (a zombie counts until it is reaped).
pub fn group_alive(pgid: i32) -> bool {
    if !signallable(pgid) {
        return false;
    }
    match signal::kill(Pid::from_raw(-pgid), None) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        // EPERM: it exists but belongs to someone else; treat as alive.
        Err(_) => true,
    }
}

/// Reaps members of the group that are (zombie) children of the agent: with the agent as a
/// child subreaper, a rank's orphaned grandchildren are re-parented to it. Only call after
/// the group leader itself has been waited for, so no status is taken from tokio.
pub fn reap_group(pgid: i32) {
    if !signallable(pgid) {
        return;
    }
    loop {
        match waitpid(Pid::from_raw(-pgid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

/// Sends SIGKILL to the group and waits (polling, reaping) until no member is left or
/// `timeout` passes. Returns whether the group is gone.
pub async fn kill_group_and_wait(pgid: i32, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Err(e) = signal_group(pgid, Signal::SIGKILL) {
            tracing::warn!(pgid, error = %e, "cannot SIGKILL process group");
        }
        reap_group(pgid);
        if !group_alive(pgid) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Makes the agent the child subreaper of its descendants, so that a rank's orphaned
/// background processes become the agent's children (and can be reaped, and so truly
/// disappear) instead of lingering as zombies under a non-reaping PID 1.
pub fn become_subreaper() {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::debug!(error = %e, "cannot become child subreaper");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_dangerous_groups() {
        for pgid in [-5, 0, 1, getpgrp().as_raw()] {
            assert_eq!(signal_group(pgid, Signal::SIGTERM), Err(Errno::EINVAL));
            assert!(!group_alive(pgid));
        }
    }

    #[test]
    fn vanished_group_is_not_alive() {
        // PIDs above the largest possible pid_max (2^22) are never allocated.
        let pgid = 4_195_000;
        assert!(!group_alive(pgid));
        assert_eq!(signal_group(pgid, Signal::SIGTERM), Ok(false));
    }
}
