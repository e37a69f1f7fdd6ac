//! The work loop: long-polls the control plane for the work of the agent's nodes and, after
//! every answer, reconciles (the pure `reconcile`) and lets the executor act on the result,
//! and hands the answer's wipe orders to the [`Wiper`] (which runs the new ones in tasks of
//! their own).

use std::sync::Arc;
use std::time::Duration;

use lattice_client::Client;
use lattice_core::agent::WorkRequest;
use lattice_core::NodeId;
use tokio::sync::watch;

use crate::executor::Executor;
use crate::ranks::Ranks;
use crate::reconcile::reconcile;
use crate::register::Registrar;
use crate::wait;
use crate::wipe::Wiper;

/// How long the control plane may hold one long-poll.
pub const WAIT: Duration = Duration::from_millis(25_000);
/// Pause after an unchanged answer that came back sooner than this.
pub const MIN_POLL: Duration = Duration::from_millis(500);

/// Whether the poll after an answer at `revision`, when the last one acted on was at `known`,
/// asks for every node's work instead of the changed ones (`changed_only: false`): after an
/// answer that changed nothing (a quiet long-poll: a full reconcile then costs one answer,
/// and re-sends any report the control plane lost) or that was older (a lagging member, or a
/// control plane restored from a backup, whose work for unchanged nodes differs from what
/// this agent saw). Under load, answers change, and polls ask for the changes only.
pub fn full_next(revision: u64, known: u64) -> bool {
    revision <= known
}

pub struct WorkLoop {
    client: Client,
    ranks: Arc<Ranks>,
    executor: Executor,
    wiper: Wiper,
    registrar: Arc<Registrar>,
    nodes: Vec<NodeId>,
}

impl WorkLoop {
    pub fn new(
        client: Client,
        ranks: Arc<Ranks>,
        executor: Executor,
        wiper: Wiper,
        registrar: Arc<Registrar>,
        nodes: Vec<NodeId>,
    ) -> Self {
        WorkLoop {
            client,
            ranks,
            executor,
            wiper,
            registrar,
            nodes,
        }
    }

    /// Polls and reconciles until `shutdown` is raised.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut known_revision = 0u64;
        let mut full = true;
        let mut failures = 0u32;
        loop {
            let req = WorkRequest {
                nodes: self.nodes.clone(),
                known_revision,
                wait_ms: u64::try_from(WAIT.as_millis()).unwrap_or(u64::MAX),
                changed_only: !full,
            };
            let asked_at = tokio::time::Instant::now();
            let answer = tokio::select! {
                r = self.client.work(&req) => r,
                () = wait::raised(&mut shutdown) => return,
            };
            let resp = match answer {
                Ok(r) => r,
                Err(e) => {
                    failures += 1;
                    let delay = wait::backoff(failures);
                    if failures.is_power_of_two() {
                        tracing::warn!(error = %e, failures, retry_in = ?delay, "work poll failed");
                    }
                    if wait::sleep_or_raised(delay, &mut shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            failures = 0;
            // Nodes the control plane does not know, and nodes whose work did not change since
            // the last answer acted on, are left out of this round (their ranks are neither
            // started nor stopped on an answer that says nothing about them). After an
            // unchanged or older answer the next poll asks for all of them ([`full_next`]).
            let unknown: Vec<NodeId> = resp
                .unknown_nodes
                .iter()
                .filter(|n| self.nodes.contains(n))
                .cloned()
                .collect();
            let asked: Vec<NodeId> = self
                .nodes
                .iter()
                .filter(|n| !unknown.contains(n) && resp.speaks_for(n))
                .cloned()
                .collect();
            let actions = reconcile(&resp.assignments, &self.ranks.view(&asked));
            if !actions.is_empty() {
                tracing::debug!(
                    revision = resp.revision,
                    actions = actions.len(),
                    "reconciled"
                );
            }
            self.executor.apply(actions);
            self.wiper.start(&resp.wipes, &asked);
            let unchanged = resp.revision == known_revision;
            full = full_next(resp.revision, known_revision);
            known_revision = resp.revision;
            if !unknown.is_empty() {
                tracing::warn!(nodes = ?unknown, "control plane does not know these nodes; registering again");
                if !self.registrar.register(&unknown, &mut shutdown).await {
                    return;
                }
            }
            // A server that answers an unchanged revision at once is not holding the poll:
            // do not spin against it.
            if unchanged
                && asked_at.elapsed() < MIN_POLL
                && wait::sleep_or_raised(MIN_POLL, &mut shutdown).await
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_or_older_answer_makes_the_next_poll_ask_for_every_node() {
        assert!(!full_next(8, 5), "changed: ask for the changes only");
        assert!(full_next(5, 5), "nothing changed (the poll timed out)");
        assert!(
            full_next(3, 5),
            "older: a lagging or restored control plane"
        );
        assert!(full_next(0, 0), "first answer of a new control plane");
    }
}
