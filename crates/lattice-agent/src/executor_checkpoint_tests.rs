//! Checkpoints, preemption and later runs with real processes: `sh` scripts that trap the
//! checkpoint signal and write the acknowledgement file. Every wait is a poll with a
//! deadline; a script signals readiness (its trap is installed) on stdout before the test
//! sends anything.

use lattice_core::checkpoint::{
    CheckpointMode, CheckpointOutcome, CheckpointReport, CheckpointSpec, CheckpointTrigger,
};

use super::tests::*;
use super::*;
use crate::launch::STDOUT_FILE;
use crate::records::{EXIT_FILE, PID_FILE};

/// Loops until killed, `trap` installed first, `ready` printed once it is.
fn trapping(trap: &str) -> String {
    format!("{trap}\necho ready\nwhile :; do sleep 0.05; done\n")
}

/// Writes `what` to the acknowledgement file on SIGUSR1 (after `delay`), then goes on.
fn acking(what: &str, delay: &str) -> String {
    trapping(&format!(
        "trap 'sleep {delay}; echo \"{what}\" > \"$LATTICE_CHECKPOINT_ACK\"' USR1"
    ))
}

fn checkpointable(mut a: Assignment, timeout_seconds: u64) -> Assignment {
    a.checkpoint = CheckpointSpec {
        mode: CheckpointMode::Signal,
        signal: "SIGUSR1".into(),
        timeout_seconds,
        interval_seconds: None,
    };
    a
}

/// Waits until the rank printed `what`.
async fn printed(f: &Fixture, id: u64, what: &str) {
    let out = rank_dir(f, id).join(STDOUT_FILE);
    eventually(what, || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        std::future::ready(text.contains(what))
    })
    .await;
}

async fn ready(f: &Fixture, id: u64) {
    printed(f, id, "ready").await;
}

fn checkpoints_of(f: &Fixture, id: u64) -> Vec<CheckpointReport> {
    f.ranks
        .pending_checkpoints()
        .into_iter()
        .filter(|c| c.allocation_id == id)
        .collect()
}

/// Waits for the checkpoint report with this trigger.
async fn checkpoint_of(f: &Fixture, id: u64, trigger: CheckpointTrigger) -> CheckpointReport {
    let mut found = None;
    eventually("the checkpoint report", || {
        found = checkpoints_of(f, id)
            .into_iter()
            .find(|c| c.trigger == trigger);
        std::future::ready(found.is_some())
    })
    .await;
    found.expect("found")
}

fn sigterm() -> Option<i32> {
    Some(libc_sigterm())
}

#[tokio::test]
async fn preemption_checkpoints_then_stops() {
    let f = fixture();
    let a = checkpointable(script_assignment(40, &acking("ok", "0.3")), 10);
    f.exec.apply(vec![Action::Start(Box::new(a.clone()))]);
    ready(&f, 40).await;
    let pgid = pgid_of(&f, 40);
    f.exec.apply(vec![Action::Preempt(RankKey::of(&a))]);
    let r = report_of(&f, 40).await;
    assert_eq!((r.outcome, r.signal), (ExitOutcome::Preempted, sigterm()));
    let message = r.message.clone().unwrap_or_default();
    assert!(
        message.starts_with("preempted; checkpoint success in "),
        "{message}"
    );
    // Its checkpoint report was queued before the exit report.
    let c = checkpoint_of(&f, 40, CheckpointTrigger::Preemption).await;
    assert_eq!(
        (c.outcome, c.message, c.run),
        (CheckpointOutcome::Success, None, 0)
    );
    assert!(c.duration_ms >= 300, "{}", c.duration_ms);
    assert!(c.duration_ms < 10_000, "{}", c.duration_ms);
    assert_eq!(checkpoints_of(&f, 40).len(), 1);
    let ack = rank_dir(&f, 40).join("checkpoint-ack");
    assert_eq!(std::fs::read_to_string(ack).expect("ack"), "ok\n");
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn an_ignored_signal_times_out_then_the_rank_is_stopped_once() {
    let f = fixture();
    let a = checkpointable(script_assignment(41, &trapping("trap '' USR1")), 1);
    f.exec.apply(vec![Action::Start(Box::new(a.clone()))]);
    ready(&f, 41).await;
    let key = RankKey::of(&a);
    let started = Instant::now();
    f.exec.apply(vec![Action::Preempt(key.clone())]);
    // A stop (or another preemption) during the preemption changes nothing.
    f.exec
        .apply(vec![Action::Stop(key.clone()), Action::Preempt(key)]);
    let r = report_of(&f, 41).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!((r.outcome, r.signal), (ExitOutcome::Preempted, sigterm()));
    assert_eq!(
        r.message.as_deref(),
        Some("preempted; checkpoint timeout after 1.0s")
    );
    let c = checkpoint_of(&f, 41, CheckpointTrigger::Preemption).await;
    assert_eq!(c.outcome, CheckpointOutcome::Timeout);
    assert!((1000..5000).contains(&c.duration_ms), "{}", c.duration_ms);
    assert_eq!(checkpoints_of(&f, 41).len(), 1, "a single checkpoint");
}

#[tokio::test]
async fn a_failure_message_is_reported() {
    let f = fixture();
    let a = checkpointable(script_assignment(42, &acking("disk full", "0")), 10);
    f.exec.apply(vec![Action::Start(Box::new(a.clone()))]);
    ready(&f, 42).await;
    f.exec.apply(vec![Action::Preempt(RankKey::of(&a))]);
    let c = checkpoint_of(&f, 42, CheckpointTrigger::Preemption).await;
    assert_eq!(
        (c.outcome, c.message.as_deref()),
        (CheckpointOutcome::Failure, Some("disk full"))
    );
    let r = report_of(&f, 42).await;
    assert_eq!(r.outcome, ExitOutcome::Preempted);
    let message = r.message.unwrap_or_default();
    assert!(
        message.starts_with("preempted; checkpoint failure in ")
            && message.ends_with(": disk full"),
        "{message}"
    );
}

#[tokio::test]
async fn a_rank_that_exits_during_its_checkpoint_is_still_preempted() {
    let f = fixture();
    // Checkpoints and exits at once: the acknowledgement counts even though the rank is gone
    // before the next look.
    let saved = checkpointable(
        script_assignment(
            43,
            &trapping("trap 'echo ok > \"$LATTICE_CHECKPOINT_ACK\"; exit 0' USR1"),
        ),
        10,
    );
    // Exits without acknowledging.
    let lost = checkpointable(script_assignment(44, &trapping("trap 'exit 7' USR1")), 10);
    f.exec.apply(vec![
        Action::Start(Box::new(saved.clone())),
        Action::Start(Box::new(lost.clone())),
    ]);
    ready(&f, 43).await;
    ready(&f, 44).await;
    f.exec.apply(vec![
        Action::Preempt(RankKey::of(&saved)),
        Action::Preempt(RankKey::of(&lost)),
    ]);
    let r = report_of(&f, 43).await;
    assert_eq!(
        (r.outcome, r.exit_code, r.signal),
        (ExitOutcome::Preempted, Some(0), None)
    );
    let c = checkpoint_of(&f, 43, CheckpointTrigger::Preemption).await;
    assert_eq!(c.outcome, CheckpointOutcome::Success);

    let r = report_of(&f, 44).await;
    assert_eq!(
        (r.outcome, r.exit_code, r.signal),
        (ExitOutcome::Preempted, Some(7), None)
    );
    let c = checkpoint_of(&f, 44, CheckpointTrigger::Preemption).await;
    assert_eq!(
        (c.outcome, c.message.as_deref()),
        (
            CheckpointOutcome::Failure,
            Some("rank exited before acknowledging")
        )
    );
}

#[tokio::test]
async fn preempting_a_rank_without_checkpointing_stops_it_at_once() {
    let f = fixture();
    let a = assignment(45, &["sleep", "30"]);
    f.exec.apply(vec![Action::Start(Box::new(a.clone()))]);
    let pgid = pgid_of(&f, 45);
    f.exec.apply(vec![Action::Preempt(RankKey::of(&a))]);
    let r = report_of(&f, 45).await;
    assert_eq!((r.outcome, r.signal), (ExitOutcome::Preempted, sigterm()));
    assert_eq!(r.message.as_deref(), Some("preempted (not checkpointable)"));
    assert!(checkpoints_of(&f, 45).is_empty());
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn on_demand_requests_checkpoint_once_each() {
    let f = fixture();
    let mut a = checkpointable(script_assignment(46, &acking("ok", "0")), 10);
    // Two requests were made before the rank started: not replayed.
    a.checkpoint_requests = 2;
    f.exec.apply(vec![Action::Start(Box::new(a.clone()))]);
    ready(&f, 46).await;
    let key = RankKey::of(&a);
    f.exec.apply(vec![Action::Checkpoint {
        key: key.clone(),
        requests: 3,
    }]);
    let c = checkpoint_of(&f, 46, CheckpointTrigger::Request(3)).await;
    assert_eq!(c.outcome, CheckpointOutcome::Success);
    // The rank still runs; the table knows the request was passed on.
    assert_eq!(
        f.ranks.view(&["n1".into()]).ranks[&key],
        crate::reconcile::LocalState::Running {
            stopping: false,
            checkpoint_requests: 3
        }
    );
    f.exec.apply(vec![Action::Checkpoint {
        key: key.clone(),
        requests: 4,
    }]);
    checkpoint_of(&f, 46, CheckpointTrigger::Request(4)).await;
    f.exec.apply(vec![Action::Stop(key)]);
    let r = report_of(&f, 46).await;
    assert_eq!(r.outcome, ExitOutcome::Stopped);
    let triggers: Vec<_> = checkpoints_of(&f, 46).iter().map(|c| c.trigger).collect();
    assert_eq!(
        triggers,
        vec![CheckpointTrigger::Request(3), CheckpointTrigger::Request(4)]
    );
}

#[tokio::test]
async fn on_demand_requests_of_a_rank_that_cannot_checkpoint_fail() {
    let f = fixture();
    let a = assignment(47, &["sleep", "30"]);
    f.exec.apply(vec![Action::Start(Box::new(a.clone()))]);
    let key = RankKey::of(&a);
    f.exec.apply(vec![Action::Checkpoint {
        key: key.clone(),
        requests: 1,
    }]);
    let c = checkpoint_of(&f, 47, CheckpointTrigger::Request(1)).await;
    assert_eq!(
        (c.outcome, c.duration_ms, c.message.as_deref()),
        (
            CheckpointOutcome::Failure,
            0,
            Some("the allocation is not checkpointable")
        )
    );
    f.exec.apply(vec![Action::Stop(key)]);
    assert_eq!(report_of(&f, 47).await.outcome, ExitOutcome::Stopped);
}

#[tokio::test]
async fn periodic_checkpoints_follow_the_interval() {
    let f = fixture();
    let mut a = checkpointable(script_assignment(48, &acking("ok", "0")), 10);
    a.checkpoint.interval_seconds = Some(1);
    f.exec.apply(vec![Action::Start(Box::new(a.clone()))]);
    let second = checkpoint_of(&f, 48, CheckpointTrigger::Periodic(2)).await;
    assert_eq!(second.outcome, CheckpointOutcome::Success);
    let first = checkpoint_of(&f, 48, CheckpointTrigger::Periodic(1)).await;
    assert_eq!(first.outcome, CheckpointOutcome::Success);
    f.exec.apply(vec![Action::Stop(RankKey::of(&a))]);
    assert_eq!(report_of(&f, 48).await.outcome, ExitOutcome::Stopped);
}

#[tokio::test]
async fn a_later_run_starts_in_the_shared_directory_with_its_own_records() {
    let f = fixture();
    let script = "echo \"run $LATTICE_RESTART_COUNT in $(pwd) ack=$LATTICE_CHECKPOINT_ACK\"\n\
                  cat state 2>/dev/null\n\
                  echo \"state of run $LATTICE_RESTART_COUNT\" > state\n";
    let first = checkpointable(script_assignment(49, script), 10);
    f.exec.apply(vec![Action::Start(Box::new(first.clone()))]);
    let r = report_of(&f, 49).await;
    assert_eq!((r.exit_code, r.run), (Some(0), 0));
    // The control plane saw run 0 end and placed run 1 here: its records do not stop it.
    let mut next = first.clone();
    next.run = 1;
    f.exec.apply(vec![
        Action::Forget(RankKey::of(&first)),
        Action::Start(Box::new(next.clone())),
    ]);
    let mut done = None;
    eventually("the report of run 1", || {
        done = f.ranks.pending_reports().into_iter().find(|r| r.run == 1);
        std::future::ready(done.is_some())
    })
    .await;
    let done = done.expect("found");
    assert_eq!(
        (done.outcome, done.exit_code),
        (ExitOutcome::Exited, Some(0))
    );

    let out_dir = rank_dir(&f, 49);
    let alloc = f.dir.path().join("allocations").join("49");
    let out = std::fs::read_to_string(out_dir.join(STDOUT_FILE)).expect("stdout");
    assert_eq!(
        out,
        format!(
            "run 0 in {a} ack={o}/checkpoint-ack\nrun 1 in {a} ack={o}/run-1/checkpoint-ack\n\
             state of run 0\n",
            a = alloc.display(),
            o = out_dir.display()
        )
    );
    // Each run has its own records.
    for dir in [out_dir.clone(), out_dir.join("run-1")] {
        assert!(dir.join(PID_FILE).exists(), "{}", dir.display());
        assert!(dir.join(EXIT_FILE).exists(), "{}", dir.display());
    }

    // A restarted agent told to run run 1 again does not.
    let g = fixture_in(f.dir);
    g.exec.apply(vec![Action::Start(Box::new(next))]);
    let again = report_of(&g, 49).await;
    assert_eq!(again, done);
    let out = std::fs::read_to_string(out_dir.join(STDOUT_FILE)).expect("stdout");
    assert_eq!(out.lines().count(), 3);
}

#[tokio::test]
async fn a_stop_abandons_the_checkpoint_in_progress() {
    let f = fixture();
    // Never acknowledges.
    let a = checkpointable(
        script_assignment(50, &trapping("trap 'echo signalled' USR1")),
        30,
    );
    f.exec.apply(vec![Action::Start(Box::new(a.clone()))]);
    ready(&f, 50).await;
    let key = RankKey::of(&a);
    f.exec.apply(vec![Action::Checkpoint {
        key: key.clone(),
        requests: 1,
    }]);
    printed(&f, 50, "signalled").await;
    f.exec.apply(vec![Action::Stop(key)]);
    let r = report_of(&f, 50).await;
    assert_eq!((r.outcome, r.signal), (ExitOutcome::Stopped, sigterm()));
    let c = checkpoint_of(&f, 50, CheckpointTrigger::Request(1)).await;
    assert_eq!(
        (c.outcome, c.message.as_deref()),
        (
            CheckpointOutcome::Failure,
            Some("interrupted: the rank was stopped")
        )
    );
}

#[tokio::test]
async fn a_preemption_during_a_requested_checkpoint_follows_it() {
    let f = fixture();
    let a = checkpointable(
        script_assignment(
            51,
            &trapping(
                "trap 'echo signalled; sleep 0.5; echo ok > \"$LATTICE_CHECKPOINT_ACK\"' USR1",
            ),
        ),
        10,
    );
    f.exec.apply(vec![Action::Start(Box::new(a.clone()))]);
    ready(&f, 51).await;
    let key = RankKey::of(&a);
    f.exec.apply(vec![Action::Checkpoint {
        key: key.clone(),
        requests: 1,
    }]);
    // Preempt while the requested checkpoint is under way: it is finished first.
    printed(&f, 51, "signalled").await;
    f.exec.apply(vec![Action::Preempt(key)]);
    let r = report_of(&f, 51).await;
    assert_eq!(r.outcome, ExitOutcome::Preempted);
    let triggers: Vec<_> = checkpoints_of(&f, 51)
        .iter()
        .map(|c| (c.trigger, c.outcome))
        .collect();
    assert_eq!(
        triggers,
        vec![
            (CheckpointTrigger::Request(1), CheckpointOutcome::Success),
            (CheckpointTrigger::Preemption, CheckpointOutcome::Success),
        ]
    );
}
