//! Wipes of released sensitive nodes. When a sensitive tenant releases a claimed node, every
//! work answer for that node carries a [`WipeOrder`] until the agent's report of the wipe is
//! applied (`POST /api/v1/agent/wipes`); the node then returns to the pool, or, after a failed
//! wipe, stays drained with reason `wipe_failed`.
//!
//! - [`new_orders`] is the pure decision: which orders of an answer are new here (answers
//!   repeat an order until its report is applied, so each order is run once).
//! - [`Wipes`] is the table of wipe IDs seen per node (run or running) and of the reports not
//!   yet delivered; [`deliver`] sends queued reports at once and retries until the control
//!   plane answers (it ignores reports of wipes no longer pending, so resending is safe).
//! - [`Wiper`] starts each new wipe in its own task (the work loop never waits for one);
//!   `run` is the process part: `sensitive.wipe_command` under `/bin/sh -c`, killed at
//!   `sensitive.wipe_timeout_seconds`.
//!
//! The table is in memory only: an agent restarted before its report was delivered runs the
//! wipe again (the order is still pending), which is also what a wipe cut short needs. The
//! simulated agent uses the same table and reports every order a success at once.

pub mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use lattice_client::{Client, ClientError};
use lattice_core::agent::{WipeOrder, WipeReportRequest};
use lattice_core::command::WipeReport;
use lattice_core::NodeId;
use tokio::sync::{watch, Notify};

use self::run::WipeCommand;
use crate::wait;

/// Wipe IDs remembered per node, the newest kept. A node is wiped once per release, so only
/// a stale answer could repeat an older order: this just bounds memory.
const REMEMBERED_PER_NODE: usize = 8;

/// The wipes seen (run, running or reported) on each node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    ids: BTreeMap<NodeId, BTreeSet<u64>>,
}

impl Seen {
    pub fn contains(&self, o: &WipeOrder) -> bool {
        self.ids
            .get(&o.node_id)
            .is_some_and(|ids| ids.contains(&o.wipe_id))
    }

    /// Remembers `o`, forgetting the node's oldest wipe past [`REMEMBERED_PER_NODE`].
    pub fn insert(&mut self, o: &WipeOrder) {
        let ids = self.ids.entry(o.node_id.clone()).or_default();
        ids.insert(o.wipe_id);
        while ids.len() > REMEMBERED_PER_NODE {
            ids.pop_first();
        }
    }
}

/// The orders of `orders` to run now (pure): for one of `nodes` (the nodes the answer speaks
/// for), not seen before, each once, in the answer's order.
pub fn new_orders(orders: &[WipeOrder], nodes: &[NodeId], seen: &Seen) -> Vec<WipeOrder> {
    let mut out: Vec<WipeOrder> = Vec::new();
    for o in orders {
        if nodes.contains(&o.node_id) && !seen.contains(o) && !out.contains(o) {
            out.push(o.clone());
        }
    }
    out
}

#[derive(Default)]
struct Inner {
    seen: Seen,
    /// Undelivered reports by (node, wipe).
    pending: BTreeMap<(NodeId, u64), WipeReport>,
}

/// The agent's wipes: those seen, and the reports waiting for delivery.
pub struct Wipes {
    inner: Mutex<Inner>,
    /// Woken when a report is queued, so [`deliver`] sends it at once.
    queued: Notify,
    /// Wipe processes running (for shutdown to wait on).
    running: watch::Sender<usize>,
}

impl Default for Wipes {
    fn default() -> Self {
        Wipes {
            inner: Mutex::default(),
            queued: Notify::new(),
            running: watch::Sender::new(0),
        }
    }
}

impl Wipes {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update is a single insert or remove: a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The new orders among `orders` for `nodes` ([`new_orders`]), marked seen: the caller
    /// runs each of them, once.
    pub fn take_new(&self, orders: &[WipeOrder], nodes: &[NodeId]) -> Vec<WipeOrder> {
        if orders.is_empty() {
            return Vec::new();
        }
        let mut inner = self.lock();
        let new = new_orders(orders, nodes, &inner.seen);
        for o in &new {
            inner.seen.insert(o);
        }
        new
    }

    /// Queues the report of a wipe that ended.
    pub fn finish(&self, report: WipeReport) {
        let key = (report.node_id.clone(), report.wipe_id);
        self.lock().pending.insert(key, report);
        self.queued.notify_one();
    }

    /// Reports waiting for delivery, by node and wipe.
    pub fn pending(&self) -> Vec<WipeReport> {
        self.lock().pending.values().cloned().collect()
    }

    /// Drops the delivered reports.
    pub fn ack(&self, delivered: &[WipeReport]) {
        let mut inner = self.lock();
        for r in delivered {
            let key = (r.node_id.clone(), r.wipe_id);
            if inner.pending.get(&key) == Some(r) {
                inner.pending.remove(&key);
            }
        }
    }

    /// Resolves once a report was queued since the last call (or, the first time, ever).
    pub async fn queued(&self) {
        self.queued.notified().await;
    }

    /// Resolves when no wipe runs.
    pub async fn idle(&self) {
        let mut rx = self.running.subscribe();
        // The sender lives in `self`: the wait cannot fail.
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// Starts the wipes a work answer orders, each in its own task.
#[derive(Clone)]
pub struct Wiper {
    wipes: Arc<Wipes>,
    command: Arc<WipeCommand>,
    shutdown: watch::Receiver<bool>,
}

impl Wiper {
    pub fn new(wipes: Arc<Wipes>, command: WipeCommand, shutdown: watch::Receiver<bool>) -> Self {
        Wiper {
            wipes,
            command: Arc::new(command),
            shutdown,
        }
    }

    /// Runs every new order among `orders` for `nodes`, without waiting for any; each queues
    /// its report when it ends.
    pub fn start(&self, orders: &[WipeOrder], nodes: &[NodeId]) {
        for order in self.wipes.take_new(orders, nodes) {
            let this = self.clone();
            this.wipes.running.send_modify(|n| *n += 1);
            tokio::spawn(async move {
                if let Some(report) = run::run(&this.command, &order, this.shutdown).await {
                    this.wipes.finish(report);
                }
                this.wipes.running.send_modify(|n| *n -= 1);
            });
        }
    }
}

/// Sends queued wipe reports as soon as they are queued, retrying with backoff until the
/// control plane answers, until `shutdown` is raised.
pub async fn deliver(client: Client, wipes: Arc<Wipes>, mut shutdown: watch::Receiver<bool>) {
    let mut failures = 0u32;
    loop {
        if failures == 0 {
            tokio::select! {
                () = wipes.queued() => {}
                () = wait::raised(&mut shutdown) => return,
            }
        }
        let sent = tokio::select! {
            r = send(&client, &wipes) => r,
            () = wait::raised(&mut shutdown) => return,
        };
        match sent {
            Ok(_) => {
                if failures > 0 {
                    tracing::info!("wipe reports delivered after {failures} failures");
                }
                failures = 0;
            }
            Err(e) => {
                failures += 1;
                let delay = wait::backoff(failures);
                if failures.is_power_of_two() {
                    tracing::warn!(error = %e, failures, retry_in = ?delay, "cannot deliver wipe reports");
                }
                if wait::sleep_or_raised(delay, &mut shutdown).await {
                    return;
                }
            }
        }
    }
}

/// One request carrying every pending wipe report (none: no request); the reports are dropped
/// once it is answered. Returns how many it carried.
pub async fn send(client: &Client, wipes: &Wipes) -> Result<usize, ClientError> {
    let reports = wipes.pending();
    if reports.is_empty() {
        return Ok(0);
    }
    let req = WipeReportRequest {
        reports: reports.clone(),
    };
    let resp = client.report_wipes(&req).await?;
    tracing::info!(
        reports = reports.len(),
        applied = resp.applied,
        ignored = resp.ignored,
        "wipe reports delivered"
    );
    wipes.ack(&reports);
    Ok(reports.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(node: &str, id: u64) -> WipeOrder {
        WipeOrder {
            node_id: node.into(),
            wipe_id: id,
        }
    }

    fn nodes(ids: &[&str]) -> Vec<NodeId> {
        ids.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn only_unseen_orders_of_the_asked_nodes_are_new_each_once() {
        let mut seen = Seen::default();
        seen.insert(&order("n1", 5));
        let orders = [
            order("n1", 5),
            order("n1", 9),
            order("n2", 7),
            order("n2", 7),
            order("other", 3),
        ];
        assert_eq!(
            new_orders(&orders, &nodes(&["n1", "n2"]), &seen),
            vec![order("n1", 9), order("n2", 7)]
        );
        assert_eq!(
            new_orders(&orders, &nodes(&["n2"]), &seen),
            vec![order("n2", 7)],
            "an unknown node's order waits for an answer that speaks for it"
        );
        assert!(new_orders(&[], &nodes(&["n1"]), &seen).is_empty());
    }

    #[test]
    fn seen_remembers_the_newest_wipes_per_node() {
        let mut seen = Seen::default();
        for id in 1..=(REMEMBERED_PER_NODE as u64 + 2) {
            seen.insert(&order("n1", id));
        }
        seen.insert(&order("n2", 1));
        assert!(!seen.contains(&order("n1", 1)) && !seen.contains(&order("n1", 2)));
        assert!(seen.contains(&order("n1", 3)));
        assert!(seen.contains(&order("n1", REMEMBERED_PER_NODE as u64 + 2)));
        assert!(seen.contains(&order("n2", 1)));
    }

    #[test]
    fn a_repeated_order_is_taken_once_and_its_report_waits_for_delivery() {
        let wipes = Wipes::default();
        let asked = nodes(&["n1"]);
        assert_eq!(
            wipes.take_new(&[order("n1", 4)], &asked),
            vec![order("n1", 4)]
        );
        assert!(
            wipes.take_new(&[order("n1", 4)], &asked).is_empty(),
            "running"
        );
        let report = WipeReport {
            node_id: "n1".into(),
            wipe_id: 4,
            success: true,
            detail: "exit 0".into(),
        };
        wipes.finish(report.clone());
        assert!(wipes.take_new(&[order("n1", 4)], &asked).is_empty(), "done");
        assert_eq!(wipes.pending(), vec![report.clone()]);
        // A report replaced after it was taken for sending is not dropped by the ack.
        let newer = WipeReport {
            detail: "again".into(),
            ..report.clone()
        };
        wipes.finish(newer.clone());
        wipes.ack(std::slice::from_ref(&report));
        assert_eq!(wipes.pending(), vec![newer.clone()]);
        wipes.ack(&[newer]);
        assert!(wipes.pending().is_empty());
    }
}
