//! The heartbeat loop: `heartbeat_interval_seconds` after the last successful beat, and at
//! once whenever a report is queued, tells the control plane that the agent's nodes are
//! alive and carries every pending checkpoint and exit report (taken together, so a rank's
//! checkpoints travel no later than its exit; the control plane applies `checkpoints` before
//! `reports`). Reports stay queued until a heartbeat carrying them succeeds (the control
//! plane ignores duplicates, so resending is safe). Nodes the control plane does not know are
//! registered again.

use std::sync::Arc;
use std::time::Duration;

use lattice_client::{Client, ClientError};
use lattice_core::agent::HeartbeatRequest;
use lattice_core::NodeId;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::ranks::Ranks;
use crate::register::Registrar;
use crate::wait;

pub struct Heartbeat {
    client: Client,
    ranks: Arc<Ranks>,
    registrar: Arc<Registrar>,
    nodes: Vec<NodeId>,
    interval: Duration,
}

impl Heartbeat {
    pub fn new(
        client: Client,
        ranks: Arc<Ranks>,
        registrar: Arc<Registrar>,
        nodes: Vec<NodeId>,
        interval: Duration,
    ) -> Self {
        Heartbeat {
            // Give up on an unreachable server within one period; the next beat retries.
            client: client.with_retry_for(interval),
            ranks,
            registrar,
            nodes,
            interval,
        }
    }

    /// Beats until `shutdown` is raised.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut failures = 0u32;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.ranks.report_queued() => {}
                () = wait::raised(&mut shutdown) => return,
            }
            let beat = tokio::select! {
                r = self.beat_once() => r,
                () = wait::raised(&mut shutdown) => return,
            };
            match beat {
                Ok(unknown) => {
                    // The control plane heard from these nodes just now: the next regular
                    // beat is due a whole interval later (a node that reports often sends
                    // no other beats).
                    tick.reset();
                    if failures > 0 {
                        tracing::info!("heartbeats answered again");
                    }
                    failures = 0;
                    if !unknown.is_empty() {
                        tracing::warn!(nodes = ?unknown, "control plane does not know these nodes; registering again");
                        if !self.registrar.register(&unknown, &mut shutdown).await {
                            return;
                        }
                    }
                }
                Err(e) => {
                    failures += 1;
                    if failures.is_power_of_two() {
                        let pending = self.ranks.pending();
                        tracing::warn!(
                            error = %e,
                            failures,
                            pending_reports = pending.reports.len(),
                            pending_checkpoints = pending.checkpoints.len(),
                            "heartbeat failed"
                        );
                    }
                }
            }
        }
    }

    /// Sends one heartbeat with every pending report (exit and checkpoint) and marks them delivered on success.
    /// Returns the presented nodes the control plane does not know.
    pub async fn beat_once(&self) -> Result<Vec<NodeId>, ClientError> {
        send(&self.client, &self.ranks, &self.nodes).await
    }
}

/// One heartbeat carrying the pending exit and checkpoint reports of `ranks`; used by the loop and, once, at
/// shutdown. Returns the presented nodes the control plane does not know.
pub async fn send(
    client: &Client,
    ranks: &Ranks,
    nodes: &[NodeId],
) -> Result<Vec<NodeId>, ClientError> {
    let pending = ranks.pending();
    let req = HeartbeatRequest {
        nodes: nodes.to_vec(),
        reports: pending.reports.clone(),
        checkpoints: pending.checkpoints.clone(),
    };
    let resp = client.heartbeat(&req).await?;
    if !pending.is_empty() {
        tracing::debug!(
            reports = pending.reports.len(),
            checkpoints = pending.checkpoints.len(),
            "reports delivered"
        );
        ranks.ack(&pending);
    }
    Ok(resp
        .unknown_nodes
        .into_iter()
        .filter(|n| nodes.contains(n))
        .collect())
}
