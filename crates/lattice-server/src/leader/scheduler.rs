//! The scheduling loop: the leader schedules each vCluster on its own `cycle_interval_ms`:
//! a vCluster with pending work is due when its interval has passed since its last cycle
//! (changes in between are batched into that cycle; with nothing changing, the cycle still
//! repeats every interval, as aging and fair share move). State changes wake the loop, so new
//! work in a quiet vCluster is scheduled at once. The due vClusters of one wake-up are
//! scheduled together by the pure `lattice_core::scheduler::schedule_some` into ONE plan,
//! committed as ONE Raft entry; apply re-validates every placement, so a plan can never
//! double-book a node. One vCluster's blocked queue never holds up another's: each has its
//! own queue and reservation inside the plan. The plan also carries the cycle's preemptions;
//! each victim a committed plan moved to `preempting` is counted and logged here.
//!
//! A cycle plans under the lock that `apply` writes the state with, so while it plans, nothing
//! is applied (reports, heartbeats' exits, submissions wait). The next cycle therefore starts
//! no sooner after the plan's commit than planning took ([`rest_after`]): the scheduler holds
//! the state at most about half the time, whatever the queue, and what waited is applied
//! before the next cycle reads the state. A plan of a few milliseconds rests a few
//! milliseconds; only one over a very deep queue makes a noticeable pause. (The commit's own
//! time adds no rest: a slow quorum does not slow scheduling further.)

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use lattice_core::command::PlanOutcome;
use lattice_core::scheduler::{schedule_some, PlannedPreemption};
use lattice_core::vcluster::DEFAULT_CYCLE_INTERVAL_MS;
use lattice_core::{ClusterState, Command, CommandOutcome};
use tokio::sync::watch;

use crate::api::App;
use crate::{clock, metrics};

/// Which vClusters are due at `now`, given when each last ran; and the earliest time a
/// vCluster that is not due yet will be.
pub fn due(
    state: &ClusterState,
    last: &HashMap<String, Instant>,
    now: Instant,
) -> (BTreeSet<String>, Option<Instant>) {
    let mut due = BTreeSet::new();
    let mut next: Option<Instant> = None;
    for name in state.pending_by_vcluster().keys() {
        let interval = Duration::from_millis(
            state
                .vcluster(name)
                .map_or(DEFAULT_CYCLE_INTERVAL_MS, |v| v.cycle_interval_ms),
        );
        match last.get(name) {
            Some(t) if now < *t + interval => {
                let at = *t + interval;
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            _ => {
                due.insert(name.clone());
            }
        }
    }
    (due, next)
}

/// The earliest time the next cycle may start, after a cycle that planned from `started` to
/// `planned` (holding the state's lock) and whose plan was committed (or found empty) at
/// `done`: as long after `done` as planning took. The commit's own time adds nothing.
pub fn rest_after(started: Instant, planned: Instant, done: Instant) -> Instant {
    done + planned.saturating_duration_since(started)
}

pub async fn run(app: App, mut stop: watch::Receiver<bool>) {
    let mut changes = app.state.subscribe();
    let idle = Duration::from_millis(app.cfg.scheduler_interval_ms);
    // When each vCluster's last cycle ran (on this member, as leader).
    let mut last: HashMap<String, Instant> = HashMap::new();
    let mut wake_at: Option<Instant> = None;
    // No cycle before this (the rest after the last one).
    let mut not_before = Instant::now();
    loop {
        let sleep = wake_at.map_or(idle, |w| {
            w.saturating_duration_since(Instant::now()).min(idle)
        });
        tokio::select! {
            _ = stop.changed() => return,
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(sleep) => {}
        }
        if *stop.borrow() {
            return;
        }
        let rest = not_before.saturating_duration_since(Instant::now());
        if !rest.is_zero() {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(rest) => {}
            }
        }
        if !app.is_leader() {
            last.clear();
            wake_at = None;
            continue;
        }
        // Most wake-ups (every applied entry wakes the loop) find nothing due: find that out
        // before confirming leadership, which costs a round of heartbeats to the followers.
        {
            let d = app.state.read();
            let (due, next) = due(&d.state, &last, Instant::now());
            if due.is_empty() {
                wake_at = next;
                continue;
            }
        }
        // Start from the committed state: as a new leader, wait until everything committed
        // before our term is applied here (never plan from a stale view).
        if app.raft.ensure_linearizable().await.is_err() {
            continue;
        }
        let now = clock::now();
        let started = Instant::now();
        // Planning holds a runtime thread for as long as it takes (up to a second with a
        // million pending): that thread's other tasks move to another one meanwhile.
        let (cycle, next) = tokio::task::block_in_place(|| {
            let d = app.state.read();
            let (due, next) = due(&d.state, &last, started);
            if due.is_empty() {
                return (None, next);
            }
            // The due ones run again after their interval if work stays pending.
            let again = due
                .iter()
                .filter_map(|v| d.state.vcluster(v))
                .map(|vc| started + Duration::from_millis(vc.cycle_interval_ms))
                .min();
            (Some((schedule_some(&d.state, now, &due), due, again)), next)
        });
        wake_at = next;
        let Some((plan, due, again)) = cycle else {
            continue;
        };
        // How long planning held the state's lock: the rest after this cycle.
        let planned = Instant::now();
        for v in &due {
            last.insert(v.clone(), started);
        }
        if let Some(t) = again {
            wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
        }
        // A plan that only preempts (its preemptors start in a later cycle, once the victims
        // stopped) is not empty: `Plan::is_empty` counts preemptions.
        if plan.is_empty() {
            metrics::cycle_of(&due, started.elapsed().as_secs_f64());
            not_before = rest_after(started, planned, Instant::now());
            continue;
        }
        let placements = plan.placements.len();
        let preemptions = plan.preemptions.clone();
        match crate::forward::propose_as_leader(&app, Command::ApplyPlan { now, plan }).await {
            Ok(CommandOutcome::Plan(outcome)) => {
                metrics::cycle_of(&due, started.elapsed().as_secs_f64());
                committed(&app, &outcome, &preemptions);
                tracing::debug!(
                    planned = placements,
                    placed = outcome.placed.len(),
                    preempted = outcome.preempted.len(),
                    ?due,
                    "scheduling cycle committed"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.error, "could not commit the scheduling plan"),
        }
        not_before = rest_after(started, planned, Instant::now());
    }
}

/// Counts and logs what a committed plan did: its placements, and each preemption it
/// started (the victims `outcome.preempted` names, grouped by the preemptor that planned them).
fn committed(app: &App, outcome: &PlanOutcome, planned: &[PlannedPreemption]) {
    let d = app.state.read();
    metrics::placed(&d.state, &outcome.placed);
    metrics::preempted(&d.state, &outcome.preempted);
    for p in planned {
        let victims: Vec<_> = p
            .victims
            .iter()
            .filter(|v| outcome.preempted.contains(v))
            .collect();
        if !victims.is_empty() {
            tracing::info!(preemptor = p.preemptor, ?victims, nodes = ?p.nodes, "preempting");
        }
    }
    if !outcome.rejected.is_empty() {
        tracing::warn!(rejected = ?outcome.rejected, "plan placements refused on apply");
    }
    if !outcome.preemptions_rejected.is_empty() {
        tracing::info!(
            rejected = ?outcome.preemptions_rejected,
            "plan preemptions refused on apply"
        );
    }
}

#[cfg(test)]
mod tests {
    use lattice_core::allocation::{AllocationSpec, Constraints};
    use lattice_core::vcluster::VClusterChange;
    use lattice_core::Timestamp;

    use super::*;

    fn submit(s: &mut ClusterState, vcluster: &str) {
        let spec = AllocationSpec {
            name: "x".into(),
            tenant: "default".into(),
            vcluster: vcluster.into(),
            user: "u".into(),
            command: Some(vec!["true".into()]),
            script: None,
            nodes: 1,
            walltime_seconds: 60,
            priority: 5,
            constraints: Constraints::default(),
            env: Default::default(),
            preemptible: true,
            checkpoint: Default::default(),
        };
        s.apply(&Command::SubmitAllocation {
            now: Timestamp(1),
            spec,
        })
        .unwrap();
    }

    #[test]
    fn each_vcluster_runs_on_its_own_interval() {
        let mut s = ClusterState::default();
        s.apply(&Command::PutVCluster {
            now: Timestamp(0),
            name: "slow".into(),
            change: VClusterChange {
                cycle_interval_ms: Some(10_000),
                ..Default::default()
            },
            create: true,
        })
        .unwrap();
        let t0 = Instant::now();
        let mut last = HashMap::new();
        // Nothing pending: nothing due.
        assert!(due(&s, &last, t0).0.is_empty());
        submit(&mut s, "default");
        submit(&mut s, "slow");
        let (d, _) = due(&s, &last, t0);
        assert_eq!(d, BTreeSet::from(["default".into(), "slow".into()]));
        last.insert("default".to_string(), t0);
        last.insert("slow".to_string(), t0);
        // 600 ms later: `default` (500 ms) is due again, `slow` (10 s) is not.
        let (d, next) = due(&s, &last, t0 + Duration::from_millis(600));
        assert_eq!(d, BTreeSet::from(["default".to_string()]));
        assert_eq!(next, Some(t0 + Duration::from_secs(10)));
        let (d, next) = due(&s, &last, t0 + Duration::from_millis(100));
        assert!(d.is_empty());
        assert_eq!(next, Some(t0 + Duration::from_millis(500)));
    }

    #[test]
    fn the_loop_rests_as_long_as_planning_took() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Planning took 800 ms, the commit 50 ms: 800 ms of rest after the commit.
        assert_eq!(rest_after(t0, t0 + ms(800), t0 + ms(850)), t0 + ms(1650));
        // A slow commit (a lagging quorum) adds no rest.
        assert_eq!(rest_after(t0, t0 + ms(3), t0 + ms(2003)), t0 + ms(2006));
        assert_eq!(rest_after(t0, t0, t0), t0);
    }
}
