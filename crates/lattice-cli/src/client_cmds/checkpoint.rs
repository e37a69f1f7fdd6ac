//! `lattice checkpoint ID`: asks a running allocation submitted with `--checkpoint=signal` to
//! checkpoint now, then (unless `--no-wait`) waits for that checkpoint round to end and prints
//! how it ended: `checkpoint of 12: success in 0.84s`. A failed or timed-out checkpoint, or no
//! answer within the wait, exits 1 with an `error:` line.
//!
//! The request's answer carries its number (`checkpoint_requests`); the round it started is
//! recorded as `last_checkpoint` with the trigger `{"request": N}` once every rank reported.

use std::time::{Duration, Instant};

use clap::Args;
use lattice_core::checkpoint::{CheckpointOutcome, CheckpointRecord, CheckpointTrigger};
use lattice_core::{AllocState, Allocation, JobRef};

use super::alloc_view::{duration_text, trigger_text};
use super::duration::parse_seconds;
use super::output::out;
use super::table::format_elapsed;
use super::targets::job_ref;
use super::{connect, CmdError};

/// How often the allocation is read while waiting.
const POLL: Duration = Duration::from_millis(250);
/// Added to the allocation's checkpoint timeout for the default wait: the agents notice the
/// request, then report the round in their next heartbeat.
const GRACE_SECS: u64 = 30;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  lattice checkpoint 12\n  \
    lattice checkpoint 12 --no-wait\n  lattice checkpoint 40_3 --timeout 10m\n\n\
    Only running allocations submitted with --checkpoint=signal can be checkpointed.")]
pub struct CheckpointArgs {
    /// Allocation ID: N, or N_I for task I of array N
    #[arg(value_name = "ID", value_parser = job_ref)]
    pub id: JobRef,
    /// Return once the request is recorded instead of waiting for the checkpoint to end
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the checkpoint to end: seconds, or 90s, 5m, 1h [default: the
    /// allocation's checkpoint timeout + 30 s]
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, conflicts_with = "no_wait")]
    pub timeout: Option<u64>,
}

pub async fn run(args: CheckpointArgs, endpoint: &str) -> Result<(), CmdError> {
    let client = connect(endpoint)?;
    let asked = client.checkpoint_ref(&args.id.to_string()).await?;
    let n = asked.checkpoint_requests;
    let job = asked.job_ref();
    if args.no_wait {
        return out(&format!(
            "Requested checkpoint {n} of allocation {job} (see: lattice status {job})\n"
        ));
    }
    let wait = Duration::from_secs(
        args.timeout
            .unwrap_or_else(|| asked.checkpoint.timeout_seconds.saturating_add(GRACE_SECS)),
    );
    let deadline = Instant::now() + wait;
    loop {
        let now = client.get_allocation(asked.id).await?;
        match progress(&asked, &now) {
            Progress::Ended(record) => return report(&job, &record),
            Progress::Gone(why) => {
                return Err(CmdError::Failed(format!(
                    "checkpoint of {job}: request {n} did not complete: {why}"
                )))
            }
            Progress::Waiting => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CmdError::Failed(format!(
                "checkpoint of {job}: request {n} has not ended after {} (it may still end: \
                 see lattice status {job})",
                format_elapsed(wait.as_secs())
            )));
        }
        tokio::time::sleep(POLL.min(left)).await;
    }
}

/// Where the requested round stands.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    Waiting,
    Ended(CheckpointRecord),
    /// It can no longer end (why).
    Gone(String),
}

/// Compares the allocation as the request left it (`asked`) with its state `now`.
fn progress(asked: &Allocation, now: &Allocation) -> Progress {
    let n = asked.checkpoint_requests;
    if let Some(r) = &now.last_checkpoint {
        match r.trigger {
            CheckpointTrigger::Request(m) if m == n => return Progress::Ended(r.clone()),
            CheckpointTrigger::Request(m) if m > n => {
                return Progress::Gone(format!(
                    "request {m} ended first and its record replaced this one's"
                ))
            }
            _ => {}
        }
    }
    let live = matches!(now.state, AllocState::Running | AllocState::Preempting);
    if !live || now.preempt_count != asked.preempt_count {
        let state = if now.state == AllocState::Pending {
            "pending (preempted)".to_string()
        } else {
            now.state.as_str().to_string()
        };
        return Progress::Gone(format!("the allocation's run ended (it is {state})"));
    }
    Progress::Waiting
}

/// Prints the round's outcome; anything but success is an error (exit 1).
fn report(job: &str, r: &CheckpointRecord) -> Result<(), CmdError> {
    let line = outcome_line(job, r);
    match r.outcome {
        CheckpointOutcome::Success => out(&format!("{line}\n")),
        CheckpointOutcome::Failure | CheckpointOutcome::Timeout => Err(CmdError::Failed(line)),
    }
}

/// `checkpoint of 12: success in 0.84s`, with `: message` for a failing rank.
fn outcome_line(job: &str, r: &CheckpointRecord) -> String {
    let mut line = format!(
        "checkpoint of {job}: {} in {}",
        r.outcome.as_str(),
        duration_text(r.duration_ms)
    );
    if let Some(m) = &r.message {
        line.push_str(&format!(": {m}"));
    }
    if !matches!(r.trigger, CheckpointTrigger::Request(_)) {
        line.push_str(&format!(" ({})", trigger_text(r.trigger)));
    }
    line
}

#[cfg(test)]
mod tests {
    use lattice_core::{AllocationSpec, Constraints, Timestamp};

    use super::super::tests::parse;
    use super::super::ClientCommand;
    use super::*;

    fn args(a: &[&str]) -> CheckpointArgs {
        match parse(&[&["checkpoint"], a].concat()) {
            Ok(ClientCommand::Checkpoint(c)) => c,
            other => panic!("{a:?}: {other:?}"),
        }
    }

    #[test]
    fn parses() {
        let a = args(&["12"]);
        assert_eq!((a.id, a.no_wait, a.timeout), (JobRef::Id(12), false, None));
        let a = args(&["40_3", "--timeout", "5m"]);
        assert_eq!(
            a.id,
            JobRef::Task {
                array: 40,
                index: 3
            }
        );
        assert_eq!(a.timeout, Some(300));
        assert_eq!(args(&["7", "--timeout=90"]).timeout, Some(90));
        assert!(args(&["7", "--no-wait"]).no_wait);
        assert!(parse(&["checkpoint"]).is_err());
        assert!(parse(&["checkpoint", "x"]).is_err());
        assert!(parse(&["checkpoint", "7", "--timeout", "soon"]).is_err());
        assert!(parse(&["checkpoint", "7", "--no-wait", "--timeout", "5"]).is_err());
    }

    fn running() -> Allocation {
        let spec = AllocationSpec {
            name: "train".into(),
            tenant: "t".into(),
            vcluster: "default".into(),
            user: "u".into(),
            command: Some(vec!["x".into()]),
            script: None,
            nodes: 2,
            walltime_seconds: 60,
            priority: 5,
            constraints: Constraints::default(),
            env: Default::default(),
            preemptible: true,
            checkpoint: Default::default(),
        };
        let mut a = Allocation::new(12, spec, Timestamp(0));
        a.state = AllocState::Running;
        a.checkpoint_requests = 2;
        a
    }

    fn record(trigger: CheckpointTrigger, outcome: CheckpointOutcome) -> CheckpointRecord {
        CheckpointRecord {
            trigger,
            outcome,
            duration_ms: 840,
            at: Timestamp(5),
            message: None,
        }
    }

    #[test]
    fn waits_for_its_own_round() {
        let asked = running();
        let mut now = asked.clone();
        assert_eq!(progress(&asked, &now), Progress::Waiting);
        // An earlier request's or a periodic round's record is not ours.
        now.last_checkpoint = Some(record(
            CheckpointTrigger::Request(1),
            CheckpointOutcome::Success,
        ));
        assert_eq!(progress(&asked, &now), Progress::Waiting);
        now.last_checkpoint = Some(record(
            CheckpointTrigger::Periodic(4),
            CheckpointOutcome::Success,
        ));
        now.state = AllocState::Preempting;
        assert_eq!(progress(&asked, &now), Progress::Waiting);
        let ours = record(CheckpointTrigger::Request(2), CheckpointOutcome::Timeout);
        now.last_checkpoint = Some(ours.clone());
        assert_eq!(progress(&asked, &now), Progress::Ended(ours));
        now.last_checkpoint = Some(record(
            CheckpointTrigger::Request(3),
            CheckpointOutcome::Success,
        ));
        assert!(matches!(progress(&asked, &now), Progress::Gone(w) if w.contains("request 3")));
    }

    #[test]
    fn a_run_that_ended_ends_the_wait() {
        let asked = running();
        let mut now = asked.clone();
        now.state = AllocState::Completed;
        assert!(matches!(progress(&asked, &now), Progress::Gone(w) if w.contains("completed")));
        now.state = AllocState::Pending;
        now.preempt_count = 1;
        assert!(matches!(progress(&asked, &now), Progress::Gone(w) if w.contains("preempted")));
        // Preempted and already running again: a new run, whose requests start over.
        now.state = AllocState::Running;
        assert!(matches!(progress(&asked, &now), Progress::Gone(_)));
    }

    #[test]
    fn outcome_lines() {
        let mut r = record(CheckpointTrigger::Request(2), CheckpointOutcome::Success);
        assert_eq!(outcome_line("12", &r), "checkpoint of 12: success in 0.84s");
        assert!(report("12", &r).is_ok());
        r.outcome = CheckpointOutcome::Failure;
        r.duration_ms = 2000;
        r.message = Some("nid002: disk full".into());
        assert_eq!(
            outcome_line("40_3", &r),
            "checkpoint of 40_3: failure in 2.00s: nid002: disk full"
        );
        assert!(matches!(report("12", &r), Err(CmdError::Failed(_))));
        r.outcome = CheckpointOutcome::Timeout;
        assert!(matches!(report("12", &r), Err(CmdError::Failed(m)) if m.contains("timeout")));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_an_error() {
        let e = run(args(&["12"]), "http://127.0.0.1:1").await.unwrap_err();
        assert!(matches!(e, CmdError::Client(_)), "{e:?}");
    }
}
