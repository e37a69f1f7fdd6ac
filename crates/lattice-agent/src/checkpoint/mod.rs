//! Checkpointing a running rank. This module holds the pure parts: the acknowledgement-file
//! contract ([`read_ack`]), the signal names ([`signal_of`]), which checkpoint is due when
//! ([`Schedule`]) and how a finished one is reported ([`Finished`]). One attempt's file and
//! signal work is in [`attempt`]; [`driver`] runs a rank's checkpoints for its supervisor
//! (`supervise`).
//!
//! The contract with the application (allocations with checkpoint mode `signal`), per rank
//! and run:
//! 1. the agent removes the file named by `$LATTICE_CHECKPOINT_ACK` (a stale one from an
//!    earlier checkpoint), then sends `$LATTICE_CHECKPOINT_SIGNAL` to the rank's whole
//!    process group (so every process of the rank must handle or ignore it: the default
//!    action of most checkpoint signals ends a process);
//! 2. the application writes its checkpoint (typically under `$LATTICE_WORKDIR`, which every
//!    run of the allocation shares) and then creates the acknowledgement file: empty or `ok`
//!    (any case, surrounding whitespace ignored) means success; anything else means failure,
//!    the text (trimmed, at most [`MAX_MESSAGE_CHARS`] characters) being the message;
//! 3. the agent polls for the file every [`ACK_POLL`]; none by the allocation's
//!    `timeout_seconds` is a timeout; the process group ending first is a failure ("rank
//!    exited before acknowledging"), unless the file is there by then.
//!
//! An empty file is only taken for success once it is still empty one poll later (or the
//! rank is gone, or the time is up): a shell's `echo msg > file` creates the file before it
//! writes the message. Applications that write a failure message should still create the file
//! atomically (write elsewhere, then rename) to be safe.
//!
//! What triggers a checkpoint: a preemption (once, before the rank is stopped), an on-demand
//! request (the assignment's `checkpoint_requests` counter grew past what the rank handled;
//! requests from before the rank started are not replayed, several arriving during one
//! checkpoint are served by one more), and, with `interval_seconds = i`, the `k`th periodic
//! one at `k * i` seconds after the rank started (skipped if another is in progress then).
//! One checkpoint runs at a time per rank.

pub mod attempt;
pub mod driver;

use std::time::Duration;

use lattice_core::checkpoint::{
    parse_signal, CheckpointOutcome, CheckpointReport, CheckpointSpec, CheckpointTrigger,
};
use nix::sys::signal::Signal;

use crate::reconcile::RankKey;

/// How often the acknowledgement file is looked for.
pub const ACK_POLL: Duration = Duration::from_millis(50);
/// Longest failure message taken from an acknowledgement file.
pub const MAX_MESSAGE_CHARS: usize = 200;
/// The failure message when the process group ends before acknowledging.
pub const EXITED_BEFORE_ACK: &str = "rank exited before acknowledging";

/// The signal of a checkpoint signal name (`SIGUSR1`, `usr1`, ...); `None` for names that are
/// not checkpoint signals (`lattice_core::checkpoint::CHECKPOINT_SIGNALS`).
pub fn signal_of(name: &str) -> Option<Signal> {
    parse_signal(name).ok()?.parse().ok()
}

/// What an acknowledgement file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ack {
    /// Empty (or only whitespace): success, once it stays empty.
    Empty,
    /// `ok`: success.
    Ok,
    /// Anything else: failure, with this (trimmed, truncated) message.
    Failed(String),
}

/// Reads an acknowledgement file's content.
pub fn read_ack(content: &str) -> Ack {
    let text = content.trim();
    if text.is_empty() {
        Ack::Empty
    } else if text.eq_ignore_ascii_case("ok") {
        Ack::Ok
    } else {
        Ack::Failed(truncate(text, MAX_MESSAGE_CHARS))
    }
}

/// At most `max` characters of `text`, with `...` marking a cut.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}...", &text[..cut]),
    }
}

/// A checkpoint that ended (or could not start).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    pub trigger: CheckpointTrigger,
    pub outcome: CheckpointOutcome,
    /// From sending the signal to the outcome.
    pub duration: Duration,
    pub message: Option<String>,
}

impl Finished {
    /// A failure that took no time (the checkpoint could not even start).
    pub fn failed_at_once(trigger: CheckpointTrigger, message: impl Into<String>) -> Self {
        Finished {
            trigger,
            outcome: CheckpointOutcome::Failure,
            duration: Duration::ZERO,
            message: Some(message.into()),
        }
    }

    /// The report the heartbeat carries.
    pub fn report(&self, key: &RankKey) -> CheckpointReport {
        CheckpointReport {
            allocation_id: key.allocation_id,
            node_id: key.node_id.clone(),
            run: key.run,
            trigger: self.trigger,
            outcome: self.outcome,
            duration_ms: u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
            message: self.message.clone(),
        }
    }
}

/// The message of a preempted rank's exit report, given its preemption checkpoint (`None`:
/// the allocation is not checkpointable).
pub fn preempted_message(checkpoint: Option<&Finished>) -> String {
    let Some(c) = checkpoint else {
        return "preempted (not checkpointable)".to_string();
    };
    let secs = c.duration.as_secs_f64();
    match (c.outcome, &c.message) {
        (CheckpointOutcome::Success, _) => format!("preempted; checkpoint success in {secs:.1}s"),
        (CheckpointOutcome::Timeout, _) => {
            format!("preempted; checkpoint timeout after {secs:.1}s")
        }
        (CheckpointOutcome::Failure, Some(m)) => {
            format!("preempted; checkpoint failure in {secs:.1}s: {m}")
        }
        (CheckpointOutcome::Failure, None) => {
            format!("preempted; checkpoint failure in {secs:.1}s")
        }
    }
}

/// What a rank with no checkpoint in progress should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing to do.
    Idle,
    /// Start a checkpoint with this trigger.
    Start(CheckpointTrigger),
    /// A checkpoint was asked for but the allocation is not checkpointable: report a failure.
    Refuse(CheckpointTrigger),
    /// Preempting and its checkpoint is over (or there is none): stop the rank.
    Stop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Preemption {
    NotAsked,
    /// Asked; its checkpoint started (or is not needed).
    Started,
}

/// One rank's checkpoint bookkeeping (pure): which trigger is due, given the requests the
/// control plane made and the time since the rank started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    enabled: bool,
    interval: Option<Duration>,
    handled_requests: u64,
    /// Number of the next periodic checkpoint.
    next_periodic: u64,
    preemption: Preemption,
}

/// Number of the first periodic checkpoint due after `elapsed` (`k` is due at `k * interval`).
pub fn next_periodic(elapsed: Duration, interval: Duration) -> u64 {
    if interval.is_zero() {
        return u64::MAX;
    }
    let done = elapsed.as_nanos() / interval.as_nanos();
    u64::try_from(done).unwrap_or(u64::MAX).saturating_add(1)
}

impl Schedule {
    /// A rank that started `elapsed` ago (0 for a fresh one, more for one adopted after an
    /// agent restart) whose assignment counted `requests` on-demand requests then.
    pub fn new(spec: &CheckpointSpec, requests: u64, elapsed: Duration) -> Self {
        let interval = spec
            .interval_seconds
            .filter(|s| *s > 0)
            .map(Duration::from_secs);
        Schedule {
            enabled: spec.enabled(),
            interval,
            handled_requests: requests,
            next_periodic: interval.map_or(1, |i| next_periodic(elapsed, i)),
            preemption: Preemption::NotAsked,
        }
    }

    /// With no checkpoint in progress: what to do, given the request counter the control
    /// plane sent and whether it preempts the rank. A preemption wins over requests.
    pub fn next(&mut self, requests: u64, preempting: bool) -> Next {
        if preempting {
            return match (self.enabled, self.preemption) {
                (true, Preemption::NotAsked) => {
                    self.preemption = Preemption::Started;
                    Next::Start(CheckpointTrigger::Preemption)
                }
                _ => {
                    self.preemption = Preemption::Started;
                    Next::Stop
                }
            };
        }
        if requests > self.handled_requests {
            self.handled_requests = requests;
            let trigger = CheckpointTrigger::Request(requests);
            return if self.enabled {
                Next::Start(trigger)
            } else {
                Next::Refuse(trigger)
            };
        }
        Next::Idle
    }

    /// Whether the preemption checkpoint started (so the rank owes its report).
    pub fn preemption_started(&self) -> bool {
        self.enabled && self.preemption == Preemption::Started
    }

    /// When (since the rank's start) the next periodic checkpoint is due; `None` when there
    /// are none (not checkpointable, no interval, preempting).
    pub fn periodic_due(&self) -> Option<Duration> {
        if !self.enabled || self.preemption != Preemption::NotAsked {
            return None;
        }
        let i = self.interval?;
        Some(i.saturating_mul(u32::try_from(self.next_periodic).unwrap_or(u32::MAX)))
    }

    /// The periodic timer fired `elapsed` after the rank's start: the checkpoint to start,
    /// unless one is `busy` (then it is skipped). Either way the next one is due after
    /// `elapsed`.
    pub fn periodic_fired(&mut self, elapsed: Duration, busy: bool) -> Option<CheckpointTrigger> {
        self.periodic_due()?;
        let i = self.interval?;
        let k = self.next_periodic;
        self.next_periodic = next_periodic(elapsed, i).max(k.saturating_add(1));
        (!busy).then_some(CheckpointTrigger::Periodic(k))
    }
}

#[cfg(test)]
mod tests;
