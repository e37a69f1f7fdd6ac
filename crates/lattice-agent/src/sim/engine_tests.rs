use std::collections::BTreeMap;

use lattice_core::agent::Desired;
use lattice_core::checkpoint::{CheckpointMode, CheckpointSpec};

use super::*;
use crate::reconcile::reconcile;

const S: Duration = Duration::from_secs(1);

fn engine(default: Duration) -> Engine {
    let mut e = Engine::new(vec!["v-1".into(), "v-2".into()], default);
    e.set_registered(0);
    e.set_registered(1);
    e
}

fn assignment(id: AllocId, node: &str, desired: Desired) -> Assignment {
    Assignment {
        allocation_id: id,
        node_id: node.into(),
        desired,
        rank: 0,
        nodes: vec![node.into()],
        name: format!("job{id}"),
        tenant: "t".into(),
        vcluster: "default".into(),
        user: "u".into(),
        command: Some(vec!["true".into()]),
        script: None,
        env: BTreeMap::new(),
        walltime_seconds: 60,
        started_at: None,
        run: 0,
        checkpoint: CheckpointSpec::default(),
        checkpoint_requests: 0,
    }
}

fn with_duration(mut a: Assignment, secs: &str) -> Assignment {
    a.env.insert(job::DURATION_ENV.into(), secs.into());
    a
}

fn checkpointable(mut a: Assignment, interval: Option<u64>) -> Assignment {
    a.checkpoint = CheckpointSpec {
        mode: CheckpointMode::Signal,
        interval_seconds: interval,
        ..CheckpointSpec::default()
    };
    a
}

/// Reconciles `desired` against node indexes 0 and 1 and applies the actions at `now`.
fn step(e: &mut Engine, desired: &[Assignment], now: Instant) -> Vec<Action> {
    let actions = reconcile(desired, &e.view(&[0, 1]));
    e.apply(actions.clone(), now);
    actions
}

/// What the next heartbeat of node `idx` carries, delivered.
fn beat(e: &mut Engine, idx: u32) -> Pending {
    let p = e.begin_beat(idx, false).expect("no beat in flight");
    e.end_beat(idx, Some(&p), Instant::now());
    p
}

fn outcomes(p: &Pending) -> Vec<(AllocId, u32, ExitOutcome)> {
    p.reports
        .iter()
        .map(|r| (r.allocation_id, r.run, r.outcome))
        .collect()
}

#[test]
fn a_rank_runs_for_its_duration_then_exits_zero() {
    let t0 = Instant::now();
    let mut e = engine(2 * S);
    let a = assignment(1, "v-1", Desired::Run);
    step(&mut e, std::slice::from_ref(&a), t0);
    assert_eq!(e.stats().running, 1);
    assert_eq!(e.next_timer(), Some(t0 + 2 * S));
    e.fire(t0 + S);
    assert_eq!(e.stats().running, 1, "not yet");
    assert!(e.take_dirty().is_empty());
    e.fire(t0 + 2 * S);
    assert_eq!(
        e.stats(),
        Stats {
            started: 1,
            finished: 1,
            running: 0
        }
    );
    assert_eq!(e.take_dirty(), vec![0]);
    let p = beat(&mut e, 0);
    assert_eq!(p.reports.len(), 1);
    let r = &p.reports[0];
    assert_eq!(
        (r.outcome, r.exit_code, r.signal, r.node_id.as_str()),
        (ExitOutcome::Exited, Some(0), None, "v-1")
    );
    // Delivered: nothing more to send for it; still listed, it is never run again.
    assert_eq!(beat(&mut e, 0), Pending::default());
    assert_eq!(
        step(&mut e, &[a], t0 + 3 * S),
        vec![Action::Resend(RankKey::new(1, "v-1"))]
    );
    assert_eq!(e.stats().started, 1);
}

#[test]
fn a_zero_duration_ends_at_once_and_the_job_overrides_the_default() {
    let t0 = Instant::now();
    let mut e = engine(Duration::ZERO);
    let quick = assignment(1, "v-1", Desired::Run);
    let slow = with_duration(assignment(2, "v-2", Desired::Run), "0.25");
    step(&mut e, &[quick, slow], t0);
    assert_eq!(
        outcomes(&beat(&mut e, 0)),
        vec![(1, 0, ExitOutcome::Exited)]
    );
    assert_eq!(e.next_timer(), Some(t0 + Duration::from_millis(250)));
    e.fire(t0 + Duration::from_millis(250));
    assert_eq!(
        outcomes(&beat(&mut e, 1)),
        vec![(2, 0, ExitOutcome::Exited)]
    );
}

#[test]
fn a_bad_duration_fails_the_launch() {
    let t0 = Instant::now();
    let mut e = engine(S);
    step(
        &mut e,
        &[with_duration(assignment(1, "v-1", Desired::Run), "soon")],
        t0,
    );
    let p = beat(&mut e, 0);
    assert_eq!(outcomes(&p), vec![(1, 0, ExitOutcome::LaunchFailed)]);
    assert!(p.reports[0]
        .message
        .as_deref()
        .unwrap_or("")
        .contains("LATTICE_SIM_DURATION"));
}

#[test]
fn a_run_longer_than_its_walltime_is_killed_at_it() {
    let t0 = Instant::now();
    let mut e = engine(S);
    let mut a = with_duration(assignment(1, "v-1", Desired::Run), "5");
    a.walltime_seconds = 2;
    step(&mut e, &[a], t0);
    e.fire(t0 + 2 * S);
    let p = beat(&mut e, 0);
    assert_eq!(outcomes(&p), vec![(1, 0, ExitOutcome::Walltime)]);
    assert_eq!(
        p.reports[0].message.as_deref(),
        Some("killed at walltime of 2s")
    );
}

#[test]
fn stop_ends_a_running_rank_at_once_and_its_timer_is_ignored() {
    let t0 = Instant::now();
    let mut e = engine(10 * S);
    let a = assignment(1, "v-1", Desired::Run);
    step(&mut e, std::slice::from_ref(&a), t0);
    let stop = assignment(1, "v-1", Desired::Stop);
    step(&mut e, &[stop], t0 + S);
    assert_eq!(e.stats().running, 0);
    assert_eq!(
        outcomes(&beat(&mut e, 0)),
        vec![(1, 0, ExitOutcome::Stopped)]
    );
    e.fire(t0 + 10 * S);
    assert_eq!(e.stats().finished, 1, "the old timer does nothing");
    assert_eq!(beat(&mut e, 0), Pending::default());
}

#[test]
fn stop_before_start_is_reported_and_never_started() {
    let t0 = Instant::now();
    let mut e = engine(S);
    step(&mut e, &[assignment(3, "v-2", Desired::Stop)], t0);
    assert_eq!(e.stats().started, 0);
    let p = beat(&mut e, 1);
    assert_eq!(outcomes(&p), vec![(3, 0, ExitOutcome::Stopped)]);
    // Listed again as wanted running (a stale answer): it was reported, so it is resent,
    // never started.
    let again = step(&mut e, &[assignment(3, "v-2", Desired::Run)], t0);
    assert_eq!(again, vec![Action::Resend(RankKey::new(3, "v-2"))]);
    assert_eq!(e.stats().started, 0);
}

#[test]
fn preemption_without_checkpoint_reports_preempted() {
    let t0 = Instant::now();
    let mut e = engine(10 * S);
    step(&mut e, &[assignment(1, "v-1", Desired::Run)], t0);
    step(&mut e, &[assignment(1, "v-1", Desired::Preempt)], t0 + S);
    let p = beat(&mut e, 0);
    assert!(p.checkpoints.is_empty());
    assert_eq!(outcomes(&p), vec![(1, 0, ExitOutcome::Preempted)]);
    assert_eq!(
        p.reports[0].message.as_deref(),
        Some("preempted (not checkpointable)")
    );
}

#[test]
fn preemption_with_checkpoint_reports_an_instant_success_first() {
    let t0 = Instant::now();
    let mut e = engine(10 * S);
    let mut a = checkpointable(assignment(1, "v-1", Desired::Run), None);
    a.run = 2;
    step(&mut e, std::slice::from_ref(&a), t0);
    let mut preempt = a.clone();
    preempt.desired = Desired::Preempt;
    step(&mut e, &[preempt], t0 + S);
    let p = beat(&mut e, 0);
    assert_eq!(outcomes(&p), vec![(1, 2, ExitOutcome::Preempted)]);
    assert_eq!(p.checkpoints.len(), 1);
    let c = &p.checkpoints[0];
    assert_eq!(
        (
            c.trigger,
            c.outcome,
            c.duration_ms,
            c.run,
            c.node_id.as_str()
        ),
        (
            CheckpointTrigger::Preemption,
            CheckpointOutcome::Success,
            0,
            2,
            "v-1"
        )
    );
    // The next run on the same node is a new rank.
    let mut next = a;
    next.run = 3;
    let actions = step(&mut e, std::slice::from_ref(&next), t0 + 2 * S);
    assert_eq!(
        actions,
        vec![
            Action::Start(Box::new(next)),
            Action::Forget(RankKey::new(1, "v-1").in_run(2)),
        ]
    );
    assert_eq!(e.stats().running, 1);
}

#[test]
fn on_demand_checkpoints_succeed_or_are_refused() {
    let t0 = Instant::now();
    let mut e = engine(10 * S);
    let mut a = checkpointable(assignment(1, "v-1", Desired::Run), None);
    let mut b = assignment(2, "v-2", Desired::Run);
    step(&mut e, &[a.clone(), b.clone()], t0);
    a.checkpoint_requests = 2;
    b.checkpoint_requests = 1;
    step(&mut e, &[a.clone(), b.clone()], t0 + S);
    let triggers = |p: &Pending| {
        p.checkpoints
            .iter()
            .map(|c| (c.trigger, c.outcome))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        triggers(&beat(&mut e, 0)),
        vec![(CheckpointTrigger::Request(2), CheckpointOutcome::Success)]
    );
    assert_eq!(
        triggers(&beat(&mut e, 1)),
        vec![(CheckpointTrigger::Request(1), CheckpointOutcome::Failure)]
    );
    // Told already: nothing more.
    assert_eq!(step(&mut e, &[a, b], t0 + 2 * S), vec![]);
}

#[test]
fn periodic_checkpoints_fire_on_the_timer_until_the_end() {
    let t0 = Instant::now();
    let mut e = engine(Duration::from_millis(3500));
    step(
        &mut e,
        &[checkpointable(assignment(1, "v-1", Desired::Run), Some(1))],
        t0,
    );
    assert_eq!(e.next_timer(), Some(t0 + S));
    for k in 1..=3u32 {
        e.fire(t0 + S * k);
    }
    e.fire(t0 + Duration::from_millis(3500));
    let p = beat(&mut e, 0);
    let triggers: Vec<CheckpointTrigger> = p.checkpoints.iter().map(|c| c.trigger).collect();
    assert_eq!(
        triggers,
        vec![
            CheckpointTrigger::Periodic(1),
            CheckpointTrigger::Periodic(2),
            CheckpointTrigger::Periodic(3)
        ]
    );
    assert_eq!(outcomes(&p), vec![(1, 0, ExitOutcome::Exited)]);
    assert_eq!(e.next_timer(), None);
}

#[test]
fn beats_carry_each_nodes_own_reports_and_never_overlap() {
    let t0 = Instant::now();
    let mut e = engine(Duration::ZERO);
    step(
        &mut e,
        &[
            assignment(1, "v-1", Desired::Run),
            assignment(2, "v-2", Desired::Run),
        ],
        t0,
    );
    assert_eq!(
        e.take_wakeups(),
        Wakeups {
            reports: true,
            timer: false
        }
    );
    let mut dirty = e.take_dirty();
    dirty.sort_unstable();
    assert_eq!(dirty, vec![0, 1]);
    let first = e.begin_beat(0, true).expect("dirty node beats");
    assert_eq!(outcomes(&first), vec![(1, 0, ExitOutcome::Exited)]);
    // A report queued while the beat is in flight goes out when it ends.
    step(&mut e, &[assignment(3, "v-1", Desired::Stop)], t0);
    assert!(e.take_dirty().contains(&0));
    assert_eq!(e.begin_beat(0, true), None, "one beat in flight per node");
    e.end_beat(0, None, t0); // failed: everything stays pending
    assert_eq!(e.take_dirty(), vec![0]);
    let second = e.begin_beat(0, true).expect("queued reports go out");
    assert_eq!(
        outcomes(&second),
        vec![(1, 0, ExitOutcome::Exited), (3, 0, ExitOutcome::Stopped)]
    );
    // A regular beat due while one is in flight is covered by that one's success...
    assert_eq!(e.begin_beat(0, false), None);
    e.end_beat(0, Some(&second), t0);
    assert_eq!(e.take_dirty(), Vec::<u32>::new());
    assert_eq!(e.begin_beat(0, true), None, "nothing new");
    // ...and owed, not lost, when that one fails.
    let third = e.begin_beat(0, false).expect("no beat in flight");
    assert_eq!(e.begin_beat(0, false), None);
    e.end_beat(0, None, t0);
    assert_eq!(e.take_dirty(), vec![0]);
    assert_eq!(e.begin_beat(0, true), Some(third));
    e.end_beat(0, Some(&Pending::default()), t0);
    assert_eq!(e.begin_beat(0, true), None, "nothing new");
    assert_eq!(
        outcomes(&beat(&mut e, 1)),
        vec![(2, 0, ExitOutcome::Exited)]
    );
}

#[test]
fn a_regular_beat_is_skipped_within_an_interval_of_a_successful_one() {
    let mut e = Engine::new(vec!["v-1".into()], S);
    e.set_registered(0);
    let t0 = Instant::now();
    let i = Duration::from_secs(5);
    // Never beaten: due.
    let p = e.tick_beat(0, t0, i).expect("first beat");
    e.end_beat(0, Some(&p), t0);
    assert_eq!(e.tick_beat(0, t0 + i - Duration::from_millis(1), i), None);
    assert!(e.tick_beat(0, t0 + i, i).is_some(), "an interval later");
    // A failed beat does not count.
    e.end_beat(0, None, t0 + i);
    assert!(e.tick_beat(0, t0 + i, i).is_some());
}

#[test]
fn unregistered_nodes_do_not_beat_until_registered() {
    let mut e = Engine::new(vec!["v-1".into()], S);
    assert_eq!(e.begin_beat(0, false), None);
    e.set_registered(0);
    assert_eq!(e.begin_beat(0, false), Some(Pending::default()));
}

#[test]
fn the_timer_task_is_woken_only_for_an_earlier_timer() {
    let t0 = Instant::now();
    let mut e = engine(10 * S);
    step(&mut e, &[assignment(1, "v-1", Desired::Run)], t0);
    assert!(e.take_wakeups().timer, "no timer armed yet");
    e.arm(e.next_timer());
    step(&mut e, &[assignment(2, "v-2", Desired::Run)], t0 + S);
    assert!(!e.take_wakeups().timer, "later than the armed one");
    step(
        &mut e,
        &[
            assignment(2, "v-2", Desired::Run),
            with_duration(assignment(3, "v-1", Desired::Run), "1"),
        ],
        t0 + S,
    );
    assert!(e.take_wakeups().timer, "earlier than the armed one");
}

#[test]
fn shutdown_stops_every_running_rank() {
    let t0 = Instant::now();
    let mut e = engine(10 * S);
    step(
        &mut e,
        &[
            assignment(1, "v-1", Desired::Run),
            assignment(2, "v-2", Desired::Run),
        ],
        t0,
    );
    e.stop_all();
    assert_eq!(e.stats().running, 0);
    let all = e.all_pending();
    assert_eq!(all.len(), 2);
    for (_, p) in &all {
        assert_eq!(p.reports[0].outcome, ExitOutcome::Stopped);
        assert_eq!(
            p.reports[0].message.as_deref(),
            Some("stopped: the agent shut down")
        );
    }
}

/// Many ranks on many nodes through the real `reconcile`, with random stops: every
/// started rank is reported exactly once, with its run, and none is started twice.
#[test]
fn many_ranks_each_start_once_and_report_once() {
    let t0 = Instant::now();
    let ids: Vec<NodeId> = (1..=50).map(|i| format!("v-{i}")).collect();
    let mut e = Engine::new(ids.clone(), Duration::from_millis(100));
    for i in 0..50 {
        e.set_registered(i);
    }
    let all: Vec<u32> = (0..50).collect();
    let mut desired: Vec<Assignment> = Vec::new();
    let mut delivered = Vec::new();
    let mut next_id = 1;
    for tick in 0..200u32 {
        let now = t0 + Duration::from_millis(u64::from(tick) * 10);
        // Place a new job on every third free node; stop every 7th job.
        for (i, id) in ids.iter().enumerate() {
            let busy = desired.iter().any(|a| &a.node_id == id);
            if !busy && (tick + i as u32).is_multiple_of(3) {
                let mut a = assignment(next_id, id, Desired::Run);
                a.run = next_id as u32 % 4;
                desired.push(a);
                next_id += 1;
            }
        }
        for a in desired.iter_mut() {
            if a.allocation_id.is_multiple_of(7) {
                a.desired = Desired::Stop;
            }
        }
        let actions = reconcile(&desired, &e.view(&all));
        e.apply(actions, now);
        e.fire(now);
        for idx in e.take_dirty() {
            if let Some(p) = e.begin_beat(idx, true) {
                e.end_beat(idx, Some(&p), now);
                // The control plane frees the node for each reported rank.
                for r in &p.reports {
                    desired.retain(|a| !(a.allocation_id == r.allocation_id && a.run == r.run));
                    delivered.push(r.clone());
                }
            }
        }
    }
    let mut seen: Vec<(AllocId, String, u32)> = delivered
        .iter()
        .map(|r| (r.allocation_id, r.node_id.clone(), r.run))
        .collect();
    let n = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), n, "a rank was reported twice");
    let retired = delivered
        .iter()
        .filter(|r| r.message.as_deref() == Some("stopped before it started on this node"))
        .count() as u64;
    assert!(retired > 0);
    assert_eq!(
        e.stats().started + retired,
        e.stats().finished + e.stats().running
    );
    assert!(e.stats().finished >= 100, "{:?}", e.stats());
    for r in &delivered {
        assert_eq!(r.run, r.allocation_id as u32 % 4);
    }
}
