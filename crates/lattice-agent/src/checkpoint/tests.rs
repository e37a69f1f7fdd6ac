//! Unit tests of the pure checkpoint parts.

use lattice_core::checkpoint::{CheckpointMode, CHECKPOINT_SIGNALS};

use super::*;

fn spec(mode: CheckpointMode, interval_seconds: Option<u64>) -> CheckpointSpec {
    CheckpointSpec {
        mode,
        interval_seconds,
        ..CheckpointSpec::default()
    }
}

const SIGNAL: CheckpointMode = CheckpointMode::Signal;
const NONE: CheckpointMode = CheckpointMode::None;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn every_checkpoint_signal_maps_to_a_signal() {
    for name in CHECKPOINT_SIGNALS {
        let sig = signal_of(name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(sig.as_str(), name);
    }
    assert_eq!(signal_of("usr2"), Some(Signal::SIGUSR2));
    for bad in ["SIGTERM", "SIGKILL", "SIGSTOP", "", "bogus"] {
        assert_eq!(signal_of(bad), None, "{bad}");
    }
}

#[test]
fn ack_contents() {
    assert_eq!(read_ack(""), Ack::Empty);
    assert_eq!(read_ack(" \n"), Ack::Empty);
    for ok in ["ok", "OK\n", "  Ok  "] {
        assert_eq!(read_ack(ok), Ack::Ok, "{ok:?}");
    }
    assert_eq!(read_ack("disk full\n"), Ack::Failed("disk full".into()));
    assert_eq!(read_ack("okay"), Ack::Failed("okay".into()));
    let long = "é".repeat(500);
    let Ack::Failed(m) = read_ack(&long) else {
        panic!("a failure");
    };
    assert_eq!(m.chars().count(), MAX_MESSAGE_CHARS + 3);
    assert!(m.ends_with("..."));
}

#[test]
fn truncation_keeps_short_texts() {
    assert_eq!(truncate("abc", 3), "abc");
    assert_eq!(truncate("abcd", 3), "abc...");
    assert_eq!(truncate("", 0), "");
}

#[test]
fn reports_carry_the_rank_and_milliseconds() {
    let f = Finished {
        trigger: CheckpointTrigger::Request(3),
        outcome: CheckpointOutcome::Timeout,
        duration: Duration::from_millis(1234),
        message: Some("no acknowledgement within 1s".into()),
    };
    let r = f.report(&RankKey::new(9, "n2").in_run(4));
    assert_eq!(
        r,
        CheckpointReport {
            allocation_id: 9,
            node_id: "n2".into(),
            run: 4,
            trigger: CheckpointTrigger::Request(3),
            outcome: CheckpointOutcome::Timeout,
            duration_ms: 1234,
            message: Some("no acknowledgement within 1s".into()),
        }
    );
}

#[test]
fn preempted_messages() {
    let done = |outcome, message: Option<&str>| Finished {
        trigger: CheckpointTrigger::Preemption,
        outcome,
        duration: Duration::from_millis(1234),
        message: message.map(str::to_string),
    };
    assert_eq!(preempted_message(None), "preempted (not checkpointable)");
    assert_eq!(
        preempted_message(Some(&done(CheckpointOutcome::Success, None))),
        "preempted; checkpoint success in 1.2s"
    );
    assert_eq!(
        preempted_message(Some(&done(CheckpointOutcome::Timeout, Some("x")))),
        "preempted; checkpoint timeout after 1.2s"
    );
    assert_eq!(
        preempted_message(Some(&done(CheckpointOutcome::Failure, Some("disk full")))),
        "preempted; checkpoint failure in 1.2s: disk full"
    );
}

#[test]
fn periodic_numbers() {
    assert_eq!(next_periodic(Duration::ZERO, secs(10)), 1);
    assert_eq!(next_periodic(secs(9), secs(10)), 1);
    assert_eq!(next_periodic(secs(10), secs(10)), 2);
    assert_eq!(next_periodic(secs(35), secs(10)), 4);
    assert_eq!(next_periodic(secs(35), Duration::ZERO), u64::MAX);
}

#[test]
fn requests_before_the_start_are_not_replayed() {
    let mut s = Schedule::new(&spec(SIGNAL, None), 3, Duration::ZERO);
    assert_eq!(s.next(3, false), Next::Idle);
    assert_eq!(s.next(5, false), Next::Start(CheckpointTrigger::Request(5)));
    // Handled: once only.
    assert_eq!(s.next(5, false), Next::Idle);
    assert_eq!(s.next(6, false), Next::Start(CheckpointTrigger::Request(6)));
}

#[test]
fn requests_of_a_rank_that_cannot_checkpoint_are_refused_once() {
    let mut s = Schedule::new(&spec(NONE, Some(10)), 0, Duration::ZERO);
    assert_eq!(
        s.next(1, false),
        Next::Refuse(CheckpointTrigger::Request(1))
    );
    assert_eq!(s.next(1, false), Next::Idle);
    assert_eq!(s.periodic_due(), None, "no periodic checkpoints either");
}

#[test]
fn preemption_checkpoints_once_then_stops() {
    let mut s = Schedule::new(&spec(SIGNAL, Some(10)), 0, Duration::ZERO);
    assert!(!s.preemption_started());
    // A preemption wins over a pending request.
    assert_eq!(s.next(2, true), Next::Start(CheckpointTrigger::Preemption));
    assert!(s.preemption_started());
    assert_eq!(s.next(2, true), Next::Stop);
    assert_eq!(s.next(3, true), Next::Stop);
    assert_eq!(
        s.periodic_due(),
        None,
        "no periodic checkpoints while preempting"
    );
}

#[test]
fn preemption_without_checkpointing_stops_at_once() {
    let mut s = Schedule::new(&spec(NONE, None), 0, Duration::ZERO);
    assert_eq!(s.next(0, true), Next::Stop);
    assert!(!s.preemption_started());
}

#[test]
fn periodic_checkpoints_at_multiples_of_the_interval() {
    let mut s = Schedule::new(&spec(SIGNAL, Some(10)), 0, Duration::ZERO);
    assert_eq!(s.periodic_due(), Some(secs(10)));
    assert_eq!(
        s.periodic_fired(secs(10), false),
        Some(CheckpointTrigger::Periodic(1))
    );
    assert_eq!(s.periodic_due(), Some(secs(20)));
    // Busy at 20 s: skipped, the next is the third.
    assert_eq!(s.periodic_fired(secs(20), true), None);
    assert_eq!(s.periodic_due(), Some(secs(30)));
    // Fired late (the runtime was slow): those already past are skipped too.
    assert_eq!(
        s.periodic_fired(secs(47), false),
        Some(CheckpointTrigger::Periodic(3))
    );
    assert_eq!(s.periodic_due(), Some(secs(50)));
}

#[test]
fn an_adopted_rank_continues_the_periodic_numbering() {
    let s = Schedule::new(&spec(SIGNAL, Some(10)), 0, secs(25));
    assert_eq!(s.periodic_due(), Some(secs(30)));
    let none = Schedule::new(&spec(SIGNAL, None), 0, secs(25));
    assert_eq!(none.periodic_due(), None);
    let zero = Schedule::new(&spec(SIGNAL, Some(0)), 0, Duration::ZERO);
    assert_eq!(zero.periodic_due(), None);
}
