//! The work loop of one batch of virtual nodes: registers them, then long-polls the control
//! plane for their work (`POST /api/v1/agent/work` naming the whole batch; see the module
//! documentation of `sim` for what batching changes), reconciles every answer with the real
//! agent's pure `reconcile` and lets the engine carry out the actions. Every new wipe order
//! is reported a success at once (detail "simulated").

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;
use lattice_core::agent::{WorkRequest, WorkResponse};
use lattice_core::command::WipeReport;
use lattice_core::NodeId;
use tokio::time::Instant;

use super::Ctx;
use crate::reconcile::reconcile;
use crate::wait;
use crate::work::{full_next, MIN_POLL, WAIT};

/// Detail of every simulated wipe's report.
pub const SIMULATED_WIPE: &str = "simulated";
/// Consecutive answers older than one already acted on that are skipped before one is taken
/// anyway (the control plane's state itself went back, e.g. restored from a backup).
const MAX_STALE: u32 = 3;

/// Registers the nodes `idxs`, then polls for their work until shutdown.
pub async fn batch(ctx: Arc<Ctx>, idxs: Vec<u32>) {
    let registered = futures::stream::iter(idxs.iter().copied())
        .map(|idx| {
            let ctx = ctx.clone();
            async move { ctx.register(idx).await }
        })
        .buffer_unordered(idxs.len().max(1))
        .all(|ok| async move { ok })
        .await;
    if registered {
        poll(ctx, idxs).await;
    }
}

/// Whether an answer is older than the last one acted on and should be skipped, given how
/// many were skipped in a row before it.
pub fn stale(resp: &WorkResponse, known_revision: u64, skipped: u32) -> bool {
    resp.revision < known_revision && skipped < MAX_STALE
}

async fn poll(ctx: Arc<Ctx>, idxs: Vec<u32>) {
    let mut shutdown = ctx.shutdown.clone();
    let ids: Vec<NodeId> = {
        let e = ctx.shared.lock();
        idxs.iter().map(|&i| e.node_id(i).clone()).collect()
    };
    let mut known_revision = 0u64;
    let mut full = true;
    let mut failures = 0u32;
    let mut skipped = 0u32;
    loop {
        let req = WorkRequest {
            nodes: ids.clone(),
            known_revision,
            wait_ms: u64::try_from(WAIT.as_millis()).unwrap_or(u64::MAX),
            changed_only: !full,
        };
        let asked_at = Instant::now();
        let answer = tokio::select! {
            r = ctx.work(&req) => r,
            () = wait::raised(&mut shutdown) => return,
        };
        ctx.metrics.work_poll(answer.is_ok());
        let resp = match answer {
            Ok(r) => r,
            Err(e) => {
                failures += 1;
                let delay = wait::backoff(failures);
                if failures.is_power_of_two() {
                    tracing::warn!(error = %e, failures, first = %ids[0], retry_in = ?delay, "work poll failed");
                }
                if wait::sleep_or_raised(delay, &mut shutdown).await {
                    return;
                }
                continue;
            }
        };
        failures = 0;
        let unknown: BTreeSet<NodeId> = resp
            .unknown_nodes
            .iter()
            .filter(|n| ids.contains(n))
            .cloned()
            .collect();
        for n in &unknown {
            if let Some(idx) = ctx.shared.lock().index_of(n) {
                ctx.reregister(idx);
            }
        }
        if stale(&resp, known_revision, skipped) {
            skipped += 1;
            tracing::debug!(
                revision = resp.revision,
                known_revision,
                "skipping an answer older than one acted on"
            );
            if wait::sleep_or_raised(MIN_POLL, &mut shutdown).await {
                return;
            }
            continue;
        }
        skipped = 0;
        // Nodes the control plane does not know, and those whose work did not change, are
        // left out of this round, as in the real agent.
        ctx.shared.update(|e| {
            let mut asked = e.known(&idxs, &unknown);
            asked.retain(|&i| resp.speaks_for(e.node_id(i)));
            let actions = reconcile(&resp.assignments, &e.view(&asked));
            e.apply(actions, Instant::now());
        });
        if !resp.wipes.is_empty() {
            let asked: Vec<NodeId> = ids
                .iter()
                .filter(|n| !unknown.contains(*n) && resp.speaks_for(n))
                .cloned()
                .collect();
            for o in ctx.wipes.take_new(&resp.wipes, &asked) {
                ctx.wipes.finish(WipeReport {
                    node_id: o.node_id,
                    wipe_id: o.wipe_id,
                    success: true,
                    detail: SIMULATED_WIPE.into(),
                });
            }
        }
        let unchanged = resp.revision == known_revision;
        full = full_next(resp.revision, known_revision);
        known_revision = resp.revision;
        // A server that answers an unchanged revision at once is not holding the poll: do
        // not spin against it.
        if unchanged
            && asked_at.elapsed() < MIN_POLL
            && wait::sleep_or_raised(MIN_POLL, &mut shutdown).await
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_answers_are_skipped_a_few_times_only() {
        let resp = |revision| WorkResponse {
            revision,
            ..WorkResponse::default()
        };
        assert!(!stale(&resp(5), 5, 0), "unchanged");
        assert!(!stale(&resp(6), 5, 0), "newer");
        assert!(stale(&resp(4), 5, 0), "older");
        assert!(stale(&resp(4), 5, MAX_STALE - 1));
        assert!(!stale(&resp(4), 5, MAX_STALE), "the state itself went back");
    }
}
