//! The scheduling loop: whenever the state changes (a submission, an exit, a new node) and at
//! least every `scheduler_interval_ms`, the leader computes a plan from the committed state
//! with the pure `lattice_core::schedule` and commits it as ONE Raft entry. Apply re-validates
//! every placement, so a plan can never double-book a node.

use std::time::{Duration, Instant};

use lattice_core::command::PlanOutcome;
use lattice_core::{schedule, Command, CommandOutcome};
use tokio::sync::watch;

use crate::api::App;
use crate::{clock, metrics};

pub async fn run(app: App, mut stop: watch::Receiver<bool>) {
    let mut changes = app.state.subscribe();
    let interval = Duration::from_millis(app.cfg.scheduler_interval_ms);
    let mut last_seen_revision = 0u64;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(interval) => {}
        }
        if *stop.borrow() {
            return;
        }
        if !app.is_leader() {
            continue;
        }
        // Start from the committed state: as a new leader, wait until everything committed
        // before our term is applied here (never plan from a stale view).
        if app.raft.ensure_linearizable().await.is_err() {
            continue;
        }
        let now = clock::now();
        let started = Instant::now();
        let (plan, revision, queued) = {
            let d = app.state.read();
            let rev = d.state.revision();
            if rev == last_seen_revision && d.state.pending_ids().is_empty() {
                continue;
            }
            (
                schedule(&d.state, now),
                rev,
                metrics::queued_vclusters(&d.state),
            )
        };
        last_seen_revision = revision;
        if plan.is_empty() {
            metrics::cycle_of(&queued, started.elapsed().as_secs_f64());
            continue;
        }
        let placements = plan.placements.len();
        match crate::forward::propose_as_leader(&app, Command::ApplyPlan { now, plan }).await {
            Ok(CommandOutcome::Plan(PlanOutcome { placed, rejected })) => {
                metrics::cycle_of(&queued, started.elapsed().as_secs_f64());
                metrics::placed(&app.state.read().state, &placed);
                if !rejected.is_empty() {
                    tracing::warn!(?rejected, "plan placements refused on apply");
                }
                tracing::debug!(
                    planned = placements,
                    placed = placed.len(),
                    "scheduling cycle committed"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.error, "could not commit the scheduling plan"),
        }
    }
}
