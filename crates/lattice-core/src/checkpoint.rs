//! Checkpointing: how an allocation asks to be checkpointed ([`CheckpointSpec`]), what an
//! agent reports when a checkpoint of one rank ended ([`CheckpointReport`]), and what the
//! cluster records once every rank of a round reported ([`CheckpointRecord`]).
//!
//! The application contract (docs/preemption.md): the agent removes the file named by
//! `$LATTICE_CHECKPOINT_ACK`, sends the checkpoint signal to the rank's process group and
//! waits up to the timeout for the file to appear. Empty or `ok` means success; any other
//! content is a failure, the text its message. No file in time is a timeout.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::allocation::AllocId;
use crate::node::NodeId;
use crate::time::Timestamp;

pub const DEFAULT_CHECKPOINT_SIGNAL: &str = "SIGUSR1";
pub const DEFAULT_CHECKPOINT_TIMEOUT_SECONDS: u64 = 60;
pub const MAX_CHECKPOINT_TIMEOUT_SECONDS: i64 = 3600;
pub const MIN_CHECKPOINT_INTERVAL_SECONDS: i64 = 1;
pub const MAX_CHECKPOINT_INTERVAL_SECONDS: i64 = 366 * 24 * 3600;

/// Signals an application may ask to be checkpointed with (never SIGTERM or SIGKILL, which
/// end the rank, nor SIGSTOP/SIGCONT, which the agent does not own).
pub const CHECKPOINT_SIGNALS: [&str; 6] = [
    "SIGUSR1", "SIGUSR2", "SIGHUP", "SIGINT", "SIGQUIT", "SIGWINCH",
];

/// Whether and how an allocation can be checkpointed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointMode {
    /// Not checkpointable: preemption stops it at once (its work since start is lost).
    #[default]
    None,
    /// The agent signals the process group and waits for the acknowledgement file.
    Signal,
}

impl CheckpointMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointMode::None => "none",
            CheckpointMode::Signal => "signal",
        }
    }

    pub fn parse(text: &str) -> Option<CheckpointMode> {
        match text {
            "none" => Some(CheckpointMode::None),
            "signal" => Some(CheckpointMode::Signal),
            _ => None,
        }
    }
}

/// An allocation's checkpoint settings (validated at submission).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CheckpointSpec {
    pub mode: CheckpointMode,
    /// Canonical name, one of [`CHECKPOINT_SIGNALS`].
    pub signal: String,
    pub timeout_seconds: u64,
    /// Checkpoint periodically: at k x this many seconds after the run started (k = 1, 2, ...).
    pub interval_seconds: Option<u64>,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        CheckpointSpec {
            mode: CheckpointMode::None,
            signal: DEFAULT_CHECKPOINT_SIGNAL.to_string(),
            timeout_seconds: DEFAULT_CHECKPOINT_TIMEOUT_SECONDS,
            interval_seconds: None,
        }
    }
}

impl CheckpointSpec {
    pub fn enabled(&self) -> bool {
        self.mode == CheckpointMode::Signal
    }
}

/// The canonical name of a checkpoint signal given as `SIGUSR1`, `USR1` or `usr1`.
pub fn parse_signal(text: &str) -> Result<&'static str, String> {
    let upper = text.trim().to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    CHECKPOINT_SIGNALS
        .into_iter()
        .find(|s| *s == name)
        .ok_or_else(|| {
            format!(
                "{text:?} is not a checkpoint signal (one of {})",
                CHECKPOINT_SIGNALS.join(", ")
            )
        })
}

/// What started a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointTrigger {
    /// The allocation is being preempted.
    Preemption,
    /// On-demand request number N (`POST /api/v1/allocations/{id}/checkpoint`).
    Request(u64),
    /// The Nth periodic checkpoint of the run (`checkpoint_interval_seconds`).
    Periodic(u64),
}

/// How a checkpoint ended (the `result` label of `lattice_checkpoint_duration_seconds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointOutcome {
    Success,
    /// The application reported a failure (or the rank ended before acknowledging).
    Failure,
    /// No acknowledgement within the timeout.
    Timeout,
}

impl CheckpointOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointOutcome::Success => "success",
            CheckpointOutcome::Failure => "failure",
            CheckpointOutcome::Timeout => "timeout",
        }
    }

    /// The worse of two outcomes (a round is only a success if every rank succeeded).
    pub fn worst(self, other: CheckpointOutcome) -> CheckpointOutcome {
        self.max(other)
    }
}

/// An agent's report that one rank's checkpoint ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointReport {
    pub allocation_id: AllocId,
    pub node_id: NodeId,
    /// The run of the allocation it belongs to (its `preempt_count` when it started).
    pub run: u32,
    pub trigger: CheckpointTrigger,
    pub outcome: CheckpointOutcome,
    pub duration_ms: u64,
    #[serde(default)]
    pub message: Option<String>,
}

/// One rank's part of a round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankCheckpoint {
    pub outcome: CheckpointOutcome,
    pub duration_ms: u64,
    pub message: Option<String>,
}

/// A checkpoint round in progress: the ranks that reported so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRound {
    pub run: u32,
    pub trigger: CheckpointTrigger,
    pub ranks: BTreeMap<NodeId, RankCheckpoint>,
}

/// A finished round: the worst outcome of its ranks and the longest duration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub trigger: CheckpointTrigger,
    pub outcome: CheckpointOutcome,
    pub duration_ms: u64,
    pub at: Timestamp,
    /// The first failing rank's message, naming its node.
    pub message: Option<String>,
}

impl CheckpointRound {
    /// Folds the ranks' reports into one record. `expected` ranks that did not report count
    /// as failures.
    pub fn conclude(&self, expected: &[NodeId], at: Timestamp) -> CheckpointRecord {
        let mut outcome = CheckpointOutcome::Success;
        let mut duration_ms = 0;
        let mut message = None;
        for node in expected {
            match self.ranks.get(node) {
                Some(r) => {
                    outcome = outcome.worst(r.outcome);
                    duration_ms = duration_ms.max(r.duration_ms);
                    if r.outcome != CheckpointOutcome::Success && message.is_none() {
                        let why = r.message.as_deref().unwrap_or(r.outcome.as_str());
                        message = Some(format!("{node}: {why}"));
                    }
                }
                None => {
                    outcome = outcome.worst(CheckpointOutcome::Failure);
                    if message.is_none() {
                        message = Some(format!("{node}: no checkpoint report"));
                    }
                }
            }
        }
        CheckpointRecord {
            trigger: self.trigger,
            outcome,
            duration_ms,
            at,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_in_every_spelling() {
        assert_eq!(parse_signal("SIGUSR1"), Ok("SIGUSR1"));
        assert_eq!(parse_signal("usr2"), Ok("SIGUSR2"));
        assert_eq!(parse_signal(" hup "), Ok("SIGHUP"));
        for bad in ["SIGTERM", "KILL", "", "SIGSTOP", "9"] {
            let e = parse_signal(bad).unwrap_err();
            assert!(e.contains("SIGUSR1"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_round_is_as_good_as_its_worst_rank() {
        let rank = |outcome, duration_ms| RankCheckpoint {
            outcome,
            duration_ms,
            message: None,
        };
        let mut round = CheckpointRound {
            run: 0,
            trigger: CheckpointTrigger::Preemption,
            ranks: BTreeMap::from([
                ("a".to_string(), rank(CheckpointOutcome::Success, 300)),
                ("b".to_string(), rank(CheckpointOutcome::Success, 900)),
            ]),
        };
        let nodes = vec!["a".to_string(), "b".to_string()];
        let r = round.conclude(&nodes, Timestamp(5));
        assert_eq!(
            (r.outcome, r.duration_ms, r.message),
            (CheckpointOutcome::Success, 900, None)
        );
        round
            .ranks
            .insert("b".into(), rank(CheckpointOutcome::Timeout, 2000));
        let r = round.conclude(&nodes, Timestamp(5));
        assert_eq!(r.outcome, CheckpointOutcome::Timeout);
        assert_eq!(r.message.as_deref(), Some("b: timeout"));
        round.ranks.remove("a");
        let r = round.conclude(&nodes, Timestamp(5));
        assert_eq!(
            r.outcome,
            CheckpointOutcome::Timeout,
            "timeout is worse than failure"
        );
        assert_eq!(r.message.as_deref(), Some("a: no checkpoint report"));
    }
}
