//! The operator's probes of a real control-plane member (Raft over redb in a temp dir):
//! `/healthz` answers ok while the member serves and a JSON 503 when it cannot; `/metrics`
//! serves the classic text format that `promtool check metrics` accepts, with the counters
//! moved by what the member did.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use lattice_server::api::{self, App};
use lattice_server::ServerConfig;
use serde_json::Value;
use tower::ServiceExt;

fn config(dir: &Path) -> ServerConfig {
    ServerConfig {
        data_dir: dir.to_path_buf(),
        api_addr: "127.0.0.1:0".parse().unwrap(),
        bootstrap: true,
        // The probes submit as tenant `probe` without creating it first.
        auto_create_tenants: true,
        ..Default::default()
    }
}

/// A single-member App (not listening): Raft initialized, leader elected.
async fn member(dir: &Path) -> (App, tokio::sync::watch::Sender<bool>) {
    App::single_member(config(dir)).await.unwrap()
}

async fn healthz(app: &App) -> (StatusCode, Value) {
    let req = Request::builder()
        .uri("/healthz")
        .body(Body::empty())
        .unwrap();
    let resp = api::router(app.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_is_ok_while_serving_and_a_json_503_when_shutting_down_or_raft_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _stop) = member(dir.path()).await;
    assert_eq!(
        healthz(&app).await,
        (StatusCode::OK, serde_json::json!({"status": "ok"}))
    );

    app.shutting_down.store(true, Ordering::Relaxed);
    let (status, body) = healthz(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["error"], "shutting down");
    app.shutting_down.store(false, Ordering::Relaxed);

    app.raft.shutdown().await.unwrap();
    let (status, body) = healthz(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("raft stopped"),
        "{body}"
    );
}

/// The value of the sample line that starts with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_of_a_real_member_pass_promtool_and_count_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = lattice_server::start(config(dir.path()), async {
        let _ = stop_rx.await;
    })
    .await
    .unwrap();
    let base = format!("http://{}", server.local_addr);
    // Bootstrap the ACLs (retrying while the single member elects itself), then act as admin.
    const ADMIN: &str = "probe-admin-token-0123456789";
    let anonymous = reqwest::Client::new();
    let mut booted = false;
    for _ in 0..200 {
        let r = anonymous
            .post(format!("{base}/api/v1/acl/bootstrap"))
            .json(&serde_json::json!({ "token": ADMIN }))
            .send()
            .await
            .unwrap();
        if r.status() == 201 {
            booted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(booted, "a leader within 10 s");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    // Refused: no token.
    let r = anonymous
        .get(format!("{base}/api/v1/allocations"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Submit, then cancel it.
    let mut id = None;
    for _ in 0..200 {
        let r = http
            .post(format!("{base}/api/v1/allocations"))
            .json(&serde_json::json!({"command": ["true"], "tenant": "probe"}))
            .send()
            .await
            .unwrap();
        if r.status() == 201 {
            id = r.json::<Value>().await.unwrap()["id"].as_u64();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = id.expect("a leader within 10 s");
    let r = http
        .delete(format!("{base}/api/v1/allocations/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        http.get(format!("{base}/api/v1/allocations/999"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.get(format!("{base}/no/such/route"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"status": "ok"})
    );

    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();

    let want = [
        (
            r#"lattice_allocations_total{state="pending",tenant="probe",vcluster="default"}"#,
            1.0,
        ),
        (
            r#"lattice_allocations_total{state="running",tenant="probe",vcluster="default"}"#,
            0.0,
        ),
        (
            r#"lattice_allocations_total{state="cancelled",tenant="probe",vcluster="default"}"#,
            1.0,
        ),
        (
            r#"lattice_allocations_active{tenant="probe",vcluster="default"}"#,
            0.0,
        ),
        (r#"lattice_scheduling_queue_depth{vcluster="default"}"#, 0.0),
        (r#"lattice_nodes_total{state="ready"}"#, 0.0),
        ("lattice_raft_is_leader", 1.0),
        (
            r#"lattice_api_requests_total{method="POST",route="/api/v1/allocations",status="201"}"#,
            1.0,
        ),
        (
            r#"lattice_api_requests_total{method="DELETE",route="/api/v1/allocations/{id}",status="200"}"#,
            1.0,
        ),
        (
            r#"lattice_api_requests_total{method="GET",route="/api/v1/allocations/{id}",status="404"}"#,
            1.0,
        ),
        (
            r#"lattice_api_requests_total{method="GET",route="unmatched",status="404"}"#,
            1.0,
        ),
        (
            r#"lattice_api_requests_total{method="GET",route="/healthz",status="200"}"#,
            1.0,
        ),
        (
            r#"lattice_api_requests_total{method="GET",route="/api/v1/allocations",status="401"}"#,
            1.0,
        ),
        (
            r#"lattice_scheduling_placements_total{tenant="probe",vcluster="default"}"#,
            0.0,
        ),
        (
            r#"lattice_checkpoint_duration_seconds_count{result="success"}"#,
            0.0,
        ),
        ("lattice_raft_sensitive_audit_entries_total", 0.0),
    ];
    for (series, value) in want {
        assert_eq!(sample(&text, series), Some(value), "{series} in:\n{text}");
    }
    // Submit and cancel committed here, on the leader.
    assert!(sample(&text, "lattice_raft_commit_latency_seconds_count").unwrap() >= 2.0);
    // Every command proposed here went into some entry: the batch sizes add up to at least
    // the two writes, in at most as many entries.
    let entries = sample(&text, "lattice_raft_write_batch_commands_count").unwrap();
    let commands = sample(&text, "lattice_raft_write_batch_commands_sum").unwrap();
    assert!(
        commands >= 2.0 && entries >= 1.0 && entries <= commands,
        "{entries} {commands}"
    );
    assert!(sample(&text, "lattice_raft_leader_changes_total").unwrap() >= 1.0);
    assert!(sample(&text, "lattice_raft_storage_size_bytes").unwrap() > 0.0);
    let capacity = sample(&text, "lattice_raft_storage_capacity_bytes").unwrap();
    let available = sample(&text, "lattice_raft_storage_available_bytes").unwrap();
    assert!(
        capacity > 0.0 && available <= capacity,
        "{capacity} {available}"
    );
    assert!(
        !text.contains("/api/v1/allocations/1\""),
        "raw paths never become labels"
    );

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

    let _ = stop_tx.send(());
    server.handle.await.unwrap().unwrap();
}
