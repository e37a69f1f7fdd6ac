//! Metrics read at scrape time: the replicated state (identical on every member that applied
//! the same log), this member's Raft status, its storage and the heartbeat table. [`read`]
//! takes one consistent copy under the state lock; [`families`] turns it into metric
//! families in a registry of its own, so a series that disappears from the state (a tenant
//! with nothing running) disappears from the exposition.

use std::collections::BTreeMap;

use lattice_core::state::MetricsView;
use lattice_core::{AllocState, Timestamp};
use prometheus::proto::MetricFamily;
use prometheus::{
    Counter, CounterVec, Gauge, GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use super::fs;
use crate::api::App;
use crate::clock;

/// This member's view of Raft.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RaftView {
    /// Leads, and a quorum acknowledged it within the election timeout.
    pub is_leader: bool,
    pub term: u64,
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub last_log_index: Option<u64>,
    pub purged_index: Option<u64>,
}

/// The member's storage.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StorageView {
    /// Size of `data_dir/lattice.redb`.
    pub db_bytes: u64,
    /// (capacity, available to the server) of the filesystem holding `data_dir`.
    pub filesystem: Option<(u64, u64)>,
}

/// Everything the scrape-time families are made of.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    pub state: MetricsView,
    /// Node -> wall-clock time of its last heartbeat, in seconds since the epoch.
    pub heartbeats: BTreeMap<String, f64>,
    /// Entries ever committed to the audit log of sensitive operations, pruned ones included
    /// (the replicated chain head's count, so identical on every member).
    pub sensitive_audit_entries: u64,
    pub raft: RaftView,
    pub storage: StorageView,
}

fn secs(t: Timestamp) -> f64 {
    t.0 as f64 / 1000.0
}

/// Reads the view now.
pub fn read(app: &App) -> View {
    let now = clock::now();
    let (state, mut heartbeats, sensitive_audit_entries) = {
        let d = app.state.read();
        let heartbeats: BTreeMap<String, f64> = d
            .state
            .nodes()
            .values()
            .filter_map(|n| Some((n.id.clone(), secs(n.last_heartbeat?))))
            .collect();
        (
            d.state.metrics_view(now),
            heartbeats,
            d.state.audit_head().count(),
        )
    };
    // The live table (complete on the leader, which receives every heartbeat) is newer than
    // the replicated registration and liveness times.
    for (node, t) in heartbeats.iter_mut() {
        if let Some(live) = app.heartbeats.last_seen_at(node) {
            *t = t.max(secs(live));
        }
    }
    let raft = {
        let m = app.raft.metrics();
        let m = m.borrow();
        let fresh_quorum = m
            .millis_since_quorum_ack
            .is_some_and(|ms| ms <= app.cfg.raft_election_timeout_max_ms);
        RaftView {
            is_leader: m.current_leader == Some(app.cfg.node_id) && fresh_quorum,
            term: m.current_term,
            commit_index: app.committed.get(),
            applied_index: m.last_applied.map(|l| l.index),
            last_log_index: m.last_log_index,
            purged_index: m.purged.map(|l| l.index),
        }
    };
    let storage = StorageView {
        db_bytes: app.db.file_size(),
        filesystem: fs::usage(&app.cfg.data_dir),
    };
    View {
        state,
        heartbeats,
        sensitive_audit_entries,
        raft,
        storage,
    }
}

fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    r.register(Box::new(c.clone()))
        .expect("scrape metrics are registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, v: f64) {
    reg(r, Gauge::new(name, help).expect("valid gauge")).set(v);
}

fn int_gauge(r: &Registry, name: &str, help: &str, v: i64) {
    reg(r, IntGauge::new(name, help).expect("valid gauge")).set(v);
}

fn index(i: Option<u64>) -> i64 {
    i.map_or(0, |i| i as i64)
}

/// Entries in the log: those after the purged (compacted) index up to the last one.
fn log_entries(last: Option<u64>, purged: Option<u64>) -> u64 {
    match (last, purged) {
        (None, _) => 0,
        (Some(l), None) => l + 1,
        (Some(l), Some(p)) => l.saturating_sub(p),
    }
}

/// The scrape-time metric families of `v`.
pub fn families(v: &View) -> Vec<MetricFamily> {
    let r = Registry::new();
    let s = &v.state;

    let totals = reg(
        &r,
        IntCounterVec::new(
            Opts::new(
                "lattice_allocations_total",
                "Allocations that ever entered each state (replicated; every member exports the same).",
            ),
            &["state", "tenant", "vcluster"],
        )
        .expect("valid counter"),
    );
    for ((tenant, vc), t) in &s.totals {
        for st in AllocState::ALL {
            totals
                .with_label_values(&[st.as_str(), tenant, vc])
                .inc_by(t.entered[st as usize]);
        }
    }

    let active = reg(
        &r,
        IntGaugeVec::new(
            Opts::new(
                "lattice_allocations_active",
                "Running allocations (replicated).",
            ),
            &["tenant", "vcluster"],
        )
        .expect("valid gauge"),
    );
    let in_use = reg(
        &r,
        IntGaugeVec::new(
            Opts::new(
                "lattice_tenant_nodes_in_use",
                "Nodes held by the tenant's running allocations (replicated).",
            ),
            &["tenant", "vcluster"],
        )
        .expect("valid gauge"),
    );
    // Every pair that ever had work is present (0 when nothing runs), so panels and sums see
    // tenants go idle instead of vanish.
    for (tenant, vc) in s.totals.keys() {
        let run = s
            .running
            .get(&(tenant.clone(), vc.clone()))
            .copied()
            .unwrap_or_default();
        active
            .with_label_values(&[tenant, vc])
            .set(run.allocations as i64);
        in_use
            .with_label_values(&[tenant, vc])
            .set(run.nodes as i64);
    }

    let node_seconds = reg(
        &r,
        CounterVec::new(
            Opts::new(
                "lattice_tenant_node_seconds_total",
                "Node-seconds used by the tenant's allocations that ran and ended (replicated; charged when an allocation ends).",
            ),
            &["tenant", "vcluster"],
        )
        .expect("valid counter"),
    );
    for ((tenant, vc), t) in &s.totals {
        node_seconds
            .with_label_values(&[tenant, vc])
            .inc_by(t.ended_node_ms as f64 / 1000.0);
    }

    let deficit = reg(
        &r,
        GaugeVec::new(
            Opts::new(
                "lattice_tenant_fair_share_deficit",
                "Tenant's fair-share target minus its actual share of the vCluster's decayed usage; positive means under-served (replicated).",
            ),
            &["tenant", "vcluster"],
        )
        .expect("valid gauge"),
    );
    for ((tenant, vc), d) in &s.fair_share_deficit {
        deficit.with_label_values(&[tenant, vc]).set(*d);
    }

    let queue = reg(
        &r,
        IntGaugeVec::new(
            Opts::new(
                "lattice_scheduling_queue_depth",
                "Pending allocations that are not held, per vCluster (replicated).",
            ),
            &["vcluster"],
        )
        .expect("valid gauge"),
    );
    for (vc, n) in &s.queued {
        queue.with_label_values(&[vc]).set(*n as i64);
    }

    let hb = reg(
        &r,
        GaugeVec::new(
            Opts::new(
                "lattice_node_last_heartbeat_timestamp_seconds",
                "When the node's agent last heartbeated, as this member knows it (the leader receives every heartbeat: aggregate with max).",
            ),
            &["node"],
        )
        .expect("valid gauge"),
    );
    for (node, t) in &v.heartbeats {
        hb.with_label_values(&[node]).set(*t);
    }

    reg(
        &r,
        Counter::new(
            "lattice_raft_sensitive_audit_entries_total",
            "Entries of the Raft-committed audit log of sensitive operations (replicated).",
        )
        .expect("valid counter"),
    )
    .inc_by(v.sensitive_audit_entries as f64);

    let raft = &v.raft;
    int_gauge(
        &r,
        "lattice_raft_is_leader",
        "1 while this member leads and a quorum acknowledged it within the election timeout.",
        i64::from(raft.is_leader),
    );
    int_gauge(
        &r,
        "lattice_raft_term",
        "This member's current Raft term.",
        raft.term as i64,
    );
    int_gauge(
        &r,
        "lattice_raft_commit_index",
        "Highest log index this member knows committed.",
        index(raft.commit_index),
    );
    int_gauge(
        &r,
        "lattice_raft_applied_index",
        "Highest log index this member applied to its state machine.",
        index(raft.applied_index),
    );
    int_gauge(
        &r,
        "lattice_raft_log_entries",
        "Log entries this member holds (last index minus the index compacted into a snapshot).",
        log_entries(raft.last_log_index, raft.purged_index) as i64,
    );
    int_gauge(
        &r,
        "lattice_raft_storage_size_bytes",
        "Size of this member's database file (data_dir/lattice.redb).",
        v.storage.db_bytes as i64,
    );
    if let Some((capacity, available)) = v.storage.filesystem {
        gauge(
            &r,
            "lattice_raft_storage_capacity_bytes",
            "Size of the filesystem holding data_dir.",
            capacity as f64,
        );
        gauge(
            &r,
            "lattice_raft_storage_available_bytes",
            "Bytes the server may still write on the filesystem holding data_dir.",
            available as f64,
        );
    }
    r.gather()
}

/// `lattice_nodes_total`, in text. The seed names this gauge with a `_total` suffix, which
/// `promtool check metrics` refuses on a gauge ("non-counter metrics should not have _total
/// suffix") but accepts on an untyped metric; PromQL treats an untyped series exactly like a
/// gauge. The `prometheus` crate cannot encode untyped families, so this one is written here
/// (its label values are the fixed node states: nothing to escape).
pub fn nodes_total_text(v: &View) -> String {
    let mut out = String::from(
        "# HELP lattice_nodes_total Nodes in each state (replicated; a gauge, exposed as untyped).\n\
         # TYPE lattice_nodes_total untyped\n",
    );
    for (st, n) in &v.state.nodes {
        out.push_str(&format!(
            "lattice_nodes_total{{state=\"{}\"}} {n}\n",
            st.as_str()
        ));
    }
    out
}
