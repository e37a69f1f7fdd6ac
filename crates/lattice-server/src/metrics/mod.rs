//! Every metric of a control-plane member, served at `GET /metrics` in the classic Prometheus
//! text format (what `promtool check metrics` understands). This module owns each metric's
//! name, type, help text, label set and bucket layout; call sites only call the typed
//! functions below. docs/monitoring.md is the operator's copy of the same list.
//!
//! Two kinds of metrics, kept apart on purpose:
//!
//! - **Events** ([`Metrics`], one per process): things this member observed happen — API
//!   requests it answered, scheduling cycles and commits it ran *while leading*, leader changes
//!   it saw, snapshots it built or installed. Counters start at 0 when the process starts.
//!   They live in one process-wide registry (typed functions need no handle), so a process
//!   running two members, which only tests do, would mix their events.
//! - **Views** ([`scrape`]): read at scrape time from the replicated state machine, Raft's own
//!   metrics and the disk. Views of replicated state (allocations, nodes, queues, tenants) are
//!   identical on every member that applied the same log, and the counters among them survive
//!   restarts because they are derived from replicated records.
//!
//! Label values are bounded: HTTP methods are folded to a fixed set, routes are templates
//! (`/api/v1/allocations/{id}`, or `unmatched`), tenants, vClusters and node names come from
//! the replicated state (validated names, created by operators and agents), never IDs of
//! allocations.

mod fs;
pub mod http;
pub mod scrape;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use lattice_core::checkpoint::CheckpointOutcome;
use lattice_core::{AllocId, ClusterState};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Content type of the classic text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Seconds. API answers take under a millisecond (reads) to a few (writes through Raft);
/// agents' work long-polls hold a request open for up to 60 s.
pub const API_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Seconds. A cycle over a few jobs takes well under a millisecond; one over a deep queue on
/// a large cluster, plus its Raft commit, can take many seconds. 1 ms and 20 s both land in
/// a bucket of their own.
pub const CYCLE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    30.0, 60.0, 120.0,
];
/// Seconds. Propose to applied on the leader: one fsync locally and a quorum's fsync over the
/// network, so milliseconds; seconds mean a slow disk or a struggling quorum.
pub const COMMIT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];
/// Seconds. Checkpointing a job writes its memory (GPUs included) to storage: seconds to an
/// hour.
pub const CHECKPOINT_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

/// HTTP methods are folded to this set (anything else is `OTHER`).
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

/// Every value of the `result` label of `lattice_checkpoint_duration_seconds` (how a round
/// ended: lattice-core's [`CheckpointOutcome`]).
const CHECKPOINT_RESULTS: [CheckpointOutcome; 3] = [
    CheckpointOutcome::Success,
    CheckpointOutcome::Failure,
    CheckpointOutcome::Timeout,
];

/// Whether this member built a snapshot of its own state or installed one sent by the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotKind {
    Built,
    Installed,
}

impl SnapshotKind {
    fn as_str(self) -> &'static str {
        match self {
            SnapshotKind::Built => "built",
            SnapshotKind::Installed => "installed",
        }
    }
}

/// The event metrics of this process.
pub struct Metrics {
    registry: Registry,
    api_duration: HistogramVec,
    api_requests: IntCounterVec,
    cycle: HistogramVec,
    placements: IntCounterVec,
    preemptions: IntCounterVec,
    commit_latency: Histogram,
    write_batch: Histogram,
    leader_changes: IntCounter,
    snapshots: IntCounterVec,
    checkpoint: HistogramVec,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    r.register(Box::new(c.clone()))
        .expect("every metric is registered once, with a valid name");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter"),
    )
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(r, HistogramVec::new(opts, labels).expect("valid histogram"))
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        let m = Metrics {
            api_duration: histogram_vec(
                &r,
                "lattice_api_request_duration_seconds",
                "Time to answer an HTTP request on this member, by method and route template.",
                &["method", "route"],
                API_BUCKETS,
            ),
            api_requests: counter_vec(
                &r,
                "lattice_api_requests_total",
                "HTTP requests answered by this member, by method, route template and status code.",
                &["method", "route", "status"],
            ),
            cycle: histogram_vec(
                &r,
                "lattice_scheduling_cycle_duration_seconds",
                "Scheduling cycles run by this member while leading: planning plus committing the plan.",
                &["vcluster"],
                CYCLE_BUCKETS,
            ),
            placements: counter_vec(
                &r,
                "lattice_scheduling_placements_total",
                "Allocations started by plans this member committed while leading.",
                &["vcluster", "tenant"],
            ),
            preemptions: counter_vec(
                &r,
                "lattice_scheduling_preemptions_total",
                "Allocations preempted by this member's scheduler while leading.",
                &["vcluster", "tenant"],
            ),
            commit_latency: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "lattice_raft_commit_latency_seconds",
                        "Time from proposing a command to its being applied, on the leader.",
                    )
                    .buckets(COMMIT_BUCKETS.to_vec()),
                )
                .expect("valid histogram"),
            ),
            write_batch: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "lattice_raft_write_batch_commands",
                        "Commands per Raft entry this member proposed (writes proposed at the same time are committed together).",
                    )
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
                )
                .expect("valid histogram"),
            ),
            leader_changes: register(
                &r,
                IntCounter::new(
                    "lattice_raft_leader_changes_total",
                    "Times this member learned of a new Raft leader (new term or new leader; its first after start included).",
                )
                .expect("valid counter"),
            ),
            snapshots: counter_vec(
                &r,
                "lattice_raft_snapshots_total",
                "Snapshots this member built (log compaction) or installed from the leader.",
                &["kind"],
            ),
            checkpoint: histogram_vec(
                &r,
                "lattice_checkpoint_duration_seconds",
                "Time to checkpoint an allocation (one round: its slowest rank), for a preemption, on request or periodically, by result.",
                &["result"],
                CHECKPOINT_BUCKETS,
            ),
            registry: r,
        };
        // Series that must exist before their first event, so that rates and ratios over them
        // are 0 rather than "no data".
        for k in [SnapshotKind::Built, SnapshotKind::Installed] {
            m.snapshots.with_label_values(&[k.as_str()]);
        }
        for res in CHECKPOINT_RESULTS {
            m.checkpoint.with_label_values(&[res.as_str()]);
        }
        m
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("OTHER")
}

/// One HTTP request answered: its method, route template (see [`http`]), status code and
/// duration.
pub fn api_request(method: &str, route: &str, status: u16, secs: f64) {
    let method = method_label(method);
    METRICS
        .api_duration
        .with_label_values(&[method, route])
        .observe(secs);
    METRICS
        .api_requests
        .with_label_values(&[method, route, &status.to_string()])
        .inc();
}

/// One scheduling cycle of `vcluster` (planning plus committing its plan), on the leader.
pub fn cycle(vcluster: &str, secs: f64) {
    METRICS.cycle.with_label_values(&[vcluster]).observe(secs);
}

/// One scheduling cycle that served every vCluster in `vclusters` (those due together in one
/// plan): the pure scheduler is not timed per vCluster, so the cycle is observed once for each.
pub fn cycle_of(vclusters: &BTreeSet<String>, secs: f64) {
    for v in vclusters {
        cycle(v, secs);
    }
}

/// Allocations `placed` by a committed plan: counted per (vCluster, tenant).
pub fn placed(state: &ClusterState, placed: &[AllocId]) {
    let mut by: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for a in placed.iter().filter_map(|id| state.allocation(*id)) {
        *by.entry((a.vcluster.as_str(), a.tenant.as_str()))
            .or_default() += 1;
    }
    for ((v, t), n) in by {
        placements(v, t, n);
    }
}

/// `n` allocations of `tenant` started in `vcluster` by a committed plan, on the leader.
pub fn placements(vcluster: &str, tenant: &str, n: u64) {
    METRICS
        .placements
        .with_label_values(&[vcluster, tenant])
        .inc_by(n);
}

/// One allocation of `tenant` preempted in `vcluster` (moved to `preempting` by a plan this
/// member committed while leading).
pub fn preemption(vcluster: &str, tenant: &str) {
    METRICS
        .preemptions
        .with_label_values(&[vcluster, tenant])
        .inc();
}

/// Allocations a committed plan moved to `preempting`: counted per (vCluster, tenant).
pub fn preempted(state: &ClusterState, preempted: &[AllocId]) {
    for a in preempted.iter().filter_map(|id| state.allocation(*id)) {
        preemption(&a.vcluster, &a.tenant);
    }
}

/// One checkpoint round that ended with `result` after `secs` (its slowest rank), concluded by
/// agents' reports this member proposed (the leader: agents' heartbeats are forwarded to it).
pub fn checkpoint(result: CheckpointOutcome, secs: f64) {
    METRICS
        .checkpoint
        .with_label_values(&[result.as_str()])
        .observe(secs);
}

/// One command committed and applied through this member's Raft (it leads): propose to
/// applied.
pub fn commit_latency(secs: f64) {
    METRICS.commit_latency.observe(secs);
}

/// One Raft entry proposed with `commands` commands (`write_batch.rs`).
pub fn write_batch(commands: usize) {
    METRICS.write_batch.observe(commands as f64);
}

fn leader_changed() {
    METRICS.leader_changes.inc();
}

/// Counts leader changes as this member sees them: every time it learns of a leader for a
/// new (term, leader) pair, its first one after start included. Ends when `stop` fires.
pub fn watch_leader(
    raft: crate::raft::Raft,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut m = raft.metrics();
        let mut last: Option<(u64, u64)> = None;
        loop {
            let seen = {
                let m = m.borrow_and_update();
                m.current_leader.map(|l| (m.current_term, l))
            };
            if seen.is_some() && seen != last {
                leader_changed();
                last = seen;
            }
            tokio::select! {
                _ = stop.changed() => return,
                r = m.changed() => if r.is_err() { return },
            }
        }
    })
}

/// This member built or installed a snapshot.
pub fn snapshot(kind: SnapshotKind) {
    METRICS.snapshots.with_label_values(&[kind.as_str()]).inc();
}

/// Makes the per-vCluster and per-(vCluster, tenant) scheduling series exist (at 0) for the
/// pairs the replicated state knows, on every member: a member that becomes leader then counts
/// up from a 0 that Prometheus has already seen, so `increase()` misses nothing.
fn touch_scheduling_series<'a>(
    vclusters: impl Iterator<Item = &'a str>,
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
) {
    for v in vclusters {
        METRICS.cycle.with_label_values(&[v]);
    }
    for (v, t) in pairs {
        METRICS.placements.with_label_values(&[v, t]);
        METRICS.preemptions.with_label_values(&[v, t]);
    }
}

/// Encodes metric families in the classic text format, sorted by name.
pub fn encode(mut families: Vec<prometheus::proto::MetricFamily>) -> String {
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out = String::new();
    if let Err(e) = TextEncoder::new().encode_utf8(&families, &mut out) {
        tracing::warn!(error = %e, "encoding metrics");
    }
    out
}

/// The whole exposition of this member: event metrics plus the views read now.
pub fn render(app: &crate::api::App) -> String {
    let view = scrape::read(app);
    touch_scheduling_series(
        view.state.vclusters.iter().map(String::as_str),
        view.state.pairs().map(|(t, v)| (v, t)),
    );
    let mut families = METRICS.registry.gather();
    families.extend(scrape::families(&view));
    let mut out = encode(families);
    out.push_str(&scrape::nodes_total_text(&view));
    out
}

#[cfg(test)]
mod tests;
