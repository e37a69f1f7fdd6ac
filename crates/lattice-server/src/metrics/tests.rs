//! Unit tests of the metrics module: names, types and labels of the exposition, bucket
//! layouts, the route label of the HTTP layer, and `promtool check metrics` on a full
//! exposition. Tests share the process-wide event metrics, so they assert on series of their
//! own (unique routes, vClusters) or on deltas.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use lattice_core::state::{MetricsView, Running, Totals};
use lattice_core::NodeState;
use tower::ServiceExt;

use super::scrape::{families, RaftView, StorageView, View};
use super::*;

/// A view of a small busy cluster.
fn sample_view() -> View {
    let key = |t: &str, v: &str| (t.to_string(), v.to_string());
    let state = MetricsView {
        vclusters: vec!["default".into(), "gpu".into()],
        tenants: vec!["alice".into(), "bob".into()],
        totals: BTreeMap::from([
            (
                key("alice", "default"),
                Totals {
                    entered: [5, 3, 1, 1, 1, 2],
                    ended_node_ms: 7_500,
                },
            ),
            (
                key("bob", "gpu"),
                Totals {
                    entered: [2, 0, 0, 0, 0, 0],
                    ended_node_ms: 0,
                },
            ),
        ]),
        running: BTreeMap::from([(
            key("alice", "default"),
            Running {
                allocations: 1,
                nodes: 4,
            },
        )]),
        queued: BTreeMap::from([("default".into(), 2), ("gpu".into(), 2)]),
        nodes: NodeState::ALL.into_iter().map(|s| (s, 1)).collect(),
        fair_share_deficit: BTreeMap::from([
            (key("alice", "default"), -0.25),
            (key("bob", "gpu"), 0.5),
        ]),
    };
    View {
        state,
        heartbeats: BTreeMap::from([("n1".into(), 1_772_366_400.5)]),
        sensitive_audit_entries: 0,
        raft: RaftView {
            is_leader: true,
            term: 3,
            commit_index: Some(41),
            applied_index: Some(40),
            last_log_index: Some(41),
            purged_index: Some(9),
        },
        storage: StorageView {
            db_bytes: 1 << 20,
            filesystem: Some((100 << 30, 30 << 30)),
        },
    }
}

/// The exposition of the event metrics plus `view`'s families.
fn exposition(view: &View) -> String {
    touch_scheduling_series(
        view.state.vclusters.iter().map(String::as_str),
        view.state.pairs().map(|(t, v)| (v, t)),
    );
    let mut f = METRICS.registry.gather();
    f.extend(families(view));
    encode(f) + &scrape::nodes_total_text(view)
}

/// `# TYPE` of every family in a text exposition.
fn types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}

/// The value of the sample line that starts with `series` (name and labels, as encoded).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn every_metric_has_its_documented_type() {
    // Labelled families appear once they have a series.
    api_request("GET", "/types-test", 200, 0.001);
    commit_latency(0.001);
    write_batch(3);
    let text = exposition(&sample_view());
    let t = types(&text);
    let want = [
        ("lattice_allocations_total", "counter"),
        ("lattice_allocations_active", "gauge"),
        ("lattice_scheduling_cycle_duration_seconds", "histogram"),
        ("lattice_scheduling_placements_total", "counter"),
        ("lattice_scheduling_preemptions_total", "counter"),
        ("lattice_scheduling_queue_depth", "gauge"),
        ("lattice_raft_commit_latency_seconds", "histogram"),
        ("lattice_raft_write_batch_commands", "histogram"),
        ("lattice_raft_sensitive_audit_entries_total", "counter"),
        ("lattice_api_request_duration_seconds", "histogram"),
        ("lattice_api_requests_total", "counter"),
        // A gauge, exposed as untyped so that promtool accepts its seed-given `_total` name.
        ("lattice_nodes_total", "untyped"),
        ("lattice_checkpoint_duration_seconds", "histogram"),
        ("lattice_raft_is_leader", "gauge"),
        ("lattice_raft_term", "gauge"),
        ("lattice_raft_leader_changes_total", "counter"),
        ("lattice_raft_commit_index", "gauge"),
        ("lattice_raft_applied_index", "gauge"),
        ("lattice_raft_log_entries", "gauge"),
        ("lattice_raft_snapshots_total", "counter"),
        ("lattice_raft_storage_size_bytes", "gauge"),
        ("lattice_raft_storage_capacity_bytes", "gauge"),
        ("lattice_raft_storage_available_bytes", "gauge"),
        ("lattice_node_last_heartbeat_timestamp_seconds", "gauge"),
        ("lattice_tenant_nodes_in_use", "gauge"),
        ("lattice_tenant_node_seconds_total", "counter"),
        ("lattice_tenant_fair_share_deficit", "gauge"),
    ];
    for (name, ty) in want {
        assert_eq!(
            t.get(name).map(String::as_str),
            Some(ty),
            "{name} in:\n{text}"
        );
    }
    // Nothing exported that this list (and docs/monitoring.md) does not name.
    // (API metrics appear only once a request was recorded; the HTTP test records some.)
    let known: Vec<&str> = want.iter().map(|(n, _)| *n).collect();
    for name in t.keys() {
        assert!(known.contains(&name.as_str()), "undocumented metric {name}");
    }
}

#[test]
fn replicated_views_become_the_documented_series() {
    let text = exposition(&sample_view());
    let cases = [
        (
            r#"lattice_allocations_total{state="pending",tenant="alice",vcluster="default"}"#,
            5.0,
        ),
        (
            r#"lattice_allocations_total{state="cancelled",tenant="alice",vcluster="default"}"#,
            1.0,
        ),
        (
            r#"lattice_allocations_total{state="running",tenant="bob",vcluster="gpu"}"#,
            0.0,
        ),
        (
            r#"lattice_allocations_total{state="preempting",tenant="alice",vcluster="default"}"#,
            2.0,
        ),
        (
            r#"lattice_allocations_total{state="preempting",tenant="bob",vcluster="gpu"}"#,
            0.0,
        ),
        (
            r#"lattice_allocations_active{tenant="alice",vcluster="default"}"#,
            1.0,
        ),
        (
            r#"lattice_allocations_active{tenant="bob",vcluster="gpu"}"#,
            0.0,
        ),
        (
            r#"lattice_tenant_nodes_in_use{tenant="alice",vcluster="default"}"#,
            4.0,
        ),
        (
            r#"lattice_tenant_node_seconds_total{tenant="alice",vcluster="default"}"#,
            7.5,
        ),
        (
            r#"lattice_tenant_fair_share_deficit{tenant="bob",vcluster="gpu"}"#,
            0.5,
        ),
        (r#"lattice_scheduling_queue_depth{vcluster="gpu"}"#, 2.0),
        (r#"lattice_nodes_total{state="down"}"#, 1.0),
        (
            r#"lattice_node_last_heartbeat_timestamp_seconds{node="n1"}"#,
            1_772_366_400.5,
        ),
        ("lattice_raft_is_leader", 1.0),
        ("lattice_raft_term", 3.0),
        ("lattice_raft_commit_index", 41.0),
        ("lattice_raft_applied_index", 40.0),
        ("lattice_raft_log_entries", 32.0),
        ("lattice_raft_storage_capacity_bytes", (100u64 << 30) as f64),
        ("lattice_raft_storage_available_bytes", (30u64 << 30) as f64),
        ("lattice_raft_sensitive_audit_entries_total", 0.0),
        // Pre-created at 0 for every pair the state knows.
        (
            r#"lattice_scheduling_placements_total{tenant="bob",vcluster="gpu"}"#,
            0.0,
        ),
        (
            r#"lattice_scheduling_preemptions_total{tenant="alice",vcluster="default"}"#,
            0.0,
        ),
        (
            r#"lattice_checkpoint_duration_seconds_count{result="timeout"}"#,
            0.0,
        ),
        (r#"lattice_raft_snapshots_total{kind="installed"}"#, 0.0),
    ];
    for (series, want) in cases {
        assert_eq!(sample(&text, series), Some(want), "{series} in:\n{text}");
    }
}

#[test]
fn typed_functions_move_their_series() {
    let vc = "typed-fn-test";
    let before = |text: &str, s: &str| sample(text, s).unwrap_or(0.0);
    let text0 = encode(METRICS.registry.gather());
    let placed = format!(r#"lattice_scheduling_placements_total{{tenant="t",vcluster="{vc}"}}"#);
    let preempted =
        format!(r#"lattice_scheduling_preemptions_total{{tenant="t",vcluster="{vc}"}}"#);
    let cycles = format!(r#"lattice_scheduling_cycle_duration_seconds_count{{vcluster="{vc}"}}"#);
    let fast = format!(
        r#"lattice_scheduling_cycle_duration_seconds_bucket{{vcluster="{vc}",le="0.001"}}"#
    );
    let ckpt = r#"lattice_checkpoint_duration_seconds_count{result="failure"}"#;
    let commits = "lattice_raft_commit_latency_seconds_count";
    let (p0, x0, c0, k0, m0) = (
        before(&text0, &placed),
        before(&text0, &preempted),
        before(&text0, &cycles),
        before(&text0, ckpt),
        before(&text0, commits),
    );
    placements(vc, "t", 3);
    preemption(vc, "t");
    cycle(vc, 0.001);
    cycle(vc, 20.0);
    checkpoint(CheckpointOutcome::Failure, 12.0);
    commit_latency(0.004);
    let text = encode(METRICS.registry.gather());
    assert_eq!(sample(&text, &placed), Some(p0 + 3.0));
    assert_eq!(sample(&text, &preempted), Some(x0 + 1.0));
    assert_eq!(sample(&text, &cycles), Some(c0 + 2.0));
    assert_eq!(
        sample(&text, &fast),
        Some(1.0),
        "1 ms lands in the le=0.001 bucket"
    );
    assert_eq!(sample(&text, ckpt), Some(k0 + 1.0));
    assert!(sample(&text, commits).unwrap() >= m0 + 1.0);
}

#[test]
fn preempted_allocations_count_under_their_own_vcluster_and_tenant() {
    use lattice_core::allocation::{AllocationSpec, Constraints};
    use lattice_core::{Command as Cmd, Timestamp};
    let vc = "preempted-fn-test";
    let mut s = ClusterState::default();
    s.apply(&Cmd::PutVCluster {
        now: Timestamp(0),
        name: vc.into(),
        change: Default::default(),
        create: true,
    })
    .unwrap();
    for tenant in ["default", "default", "other"] {
        s.apply(&Cmd::Submit {
            now: Timestamp(1),
            spec: AllocationSpec {
                name: "x".into(),
                tenant: tenant.into(),
                vcluster: vc.into(),
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
            },
            options: lattice_core::submit::SubmitOptions {
                create_tenant: true,
                ..Default::default()
            },
        })
        .unwrap();
    }
    let series = |t: &str| {
        format!(r#"lattice_scheduling_preemptions_total{{tenant="{t}",vcluster="{vc}"}}"#)
    };
    let ids: Vec<AllocId> = s.allocations().keys().copied().collect();
    // An unknown ID (already gone from the view) is skipped, not counted.
    preempted(&s, &[ids[0], ids[1], ids[2], 999_999]);
    let text = encode(METRICS.registry.gather());
    assert_eq!(sample(&text, &series("default")), Some(2.0), "{text}");
    assert_eq!(sample(&text, &series("other")), Some(1.0), "{text}");
}

/// Every value the layout is meant for lands in a bucket no wider than 2.5x the value, with a
/// smaller bucket below it (so quantiles interpolate between real boundaries).
#[test]
fn bucket_layouts_resolve_the_range_of_their_quantity() {
    let cases: [(&[f64], &[f64]); 4] = [
        (CYCLE_BUCKETS, &[0.001, 0.01, 0.2, 1.0, 5.0, 20.0, 45.0]),
        (API_BUCKETS, &[0.001, 0.02, 0.3, 4.0, 25.0]),
        (COMMIT_BUCKETS, &[0.001, 0.003, 0.05, 0.4, 3.0]),
        (CHECKPOINT_BUCKETS, &[1.0, 20.0, 90.0, 500.0, 2000.0]),
    ];
    for (buckets, values) in cases {
        assert!(
            buckets.windows(2).all(|w| w[0] < w[1]),
            "{buckets:?} ascending"
        );
        for x in values {
            let upper = buckets
                .iter()
                .find(|b| **b >= *x)
                .unwrap_or_else(|| panic!("{x} above {buckets:?}"));
            assert!(*upper <= x * 2.5, "{x} lands in le={upper} of {buckets:?}");
            assert!(buckets[0] < *x, "{x} has a bucket below it in {buckets:?}");
        }
    }
}

#[test]
fn methods_are_folded_to_a_fixed_set() {
    assert_eq!(method_label("GET"), "GET");
    assert_eq!(method_label("DELETE"), "DELETE");
    assert_eq!(method_label("BREW"), "OTHER");
    assert_eq!(method_label("get"), "OTHER");
}

#[tokio::test]
async fn the_http_layer_labels_route_templates_and_every_status() {
    let app = Router::new()
        .route("/layer-test/{id}", get(|| async { "ok" }))
        .route(
            "/layer-test/{id}/denied",
            get(|| async { (StatusCode::UNAUTHORIZED, "no") }),
        )
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(axum::middleware::from_fn(http::track));
    for uri in [
        "/layer-test/1",
        "/layer-test/2",
        "/layer-test/3/denied",
        "/layer-test-nothing",
    ] {
        let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
        app.clone().oneshot(req).await.unwrap();
    }
    let text = encode(METRICS.registry.gather());
    let ok = r#"lattice_api_requests_total{method="GET",route="/layer-test/{id}",status="200"}"#;
    let denied =
        r#"lattice_api_requests_total{method="GET",route="/layer-test/{id}/denied",status="401"}"#;
    assert_eq!(sample(&text, ok), Some(2.0), "{text}");
    assert_eq!(sample(&text, denied), Some(1.0), "{text}");
    assert!(
        sample(
            &text,
            r#"lattice_api_requests_total{method="GET",route="unmatched",status="404"}"#
        )
        .is_some(),
        "{text}"
    );
    assert!(
        !text.contains("route=\"/layer-test/1\""),
        "raw paths never become labels"
    );
    let count =
        r#"lattice_api_request_duration_seconds_count{method="GET",route="/layer-test/{id}"}"#;
    assert_eq!(sample(&text, count), Some(2.0));
}

/// `promtool check metrics` (the linter the seed's operators run) accepts the exposition.
#[test]
fn promtool_accepts_the_exposition() {
    api_request("GET", "/promtool-test", 200, 0.01);
    let text = exposition(&sample_view());
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "promtool must be installed (Debian package `prometheus`; scripts/test.sh installs it)",
        );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
