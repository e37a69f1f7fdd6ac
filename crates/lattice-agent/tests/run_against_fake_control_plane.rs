//! End-to-end test of `lattice_agent::run` against a fake control plane (an in-process axum
//! server on loopback that speaks the agent protocol): registration, heartbeats with exit
//! reports, work long-polls, log serving, re-registration and shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use lattice_agent::AgentConfig;
use lattice_core::agent::{
    Assignment, Desired, ExitOutcome, ExitReport, HeartbeatRequest, HeartbeatResponse, WorkRequest,
    WorkResponse,
};
use lattice_core::{Node, NodeRegistration, Timestamp};
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Fake {
    registrations: Vec<NodeRegistration>,
    heartbeats: usize,
    reports: Vec<ExitReport>,
    assignments: Vec<Assignment>,
    revision: u64,
    /// Nodes the next heartbeat answer claims not to know.
    forget: Vec<String>,
}

type Shared = Arc<Mutex<Fake>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Fake> {
    s.lock().expect("fake lock")
}

async fn register(State(s): State<Shared>, Json(reg): Json<NodeRegistration>) -> Json<Node> {
    lock(&s).registrations.push(reg.clone());
    Json(Node::from_registration(reg, Timestamp(0), 0))
}

async fn heartbeat(
    State(s): State<Shared>,
    Json(hb): Json<HeartbeatRequest>,
) -> Json<HeartbeatResponse> {
    let mut f = lock(&s);
    f.heartbeats += 1;
    for r in hb.reports {
        // Like the real control plane: a report frees the node; duplicates are ignored.
        if !f.reports.contains(&r) {
            f.assignments
                .retain(|a| !(a.allocation_id == r.allocation_id && a.node_id == r.node_id));
            f.revision += 1;
            f.reports.push(r);
        }
    }
    Json(HeartbeatResponse {
        unknown_nodes: std::mem::take(&mut f.forget),
    })
}

async fn work(State(s): State<Shared>, Json(req): Json<WorkRequest>) -> Json<WorkResponse> {
    // A crude long-poll: hold an unchanged answer for a moment.
    let deadline = Instant::now() + Duration::from_millis(req.wait_ms.min(300));
    while lock(&s).revision == req.known_revision && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let f = lock(&s);
    Json(WorkResponse {
        revision: f.revision,
        assignments: f
            .assignments
            .iter()
            .filter(|a| req.nodes.contains(&a.node_id))
            .cloned()
            .collect(),
        unknown_nodes: vec![],
    })
}

async fn start_fake() -> (Shared, SocketAddr) {
    let shared = Shared::default();
    let app = Router::new()
        .route("/api/v1/agent/register", post(register))
        .route("/api/v1/agent/heartbeat", post(heartbeat))
        .route("/api/v1/agent/work", post(work))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (shared, addr)
}

fn assignment(id: u64, node: &str, command: &[&str]) -> Assignment {
    Assignment {
        allocation_id: id,
        node_id: node.into(),
        desired: Desired::Run,
        rank: 0,
        nodes: vec![node.into()],
        name: format!("job{id}"),
        tenant: "t".into(),
        vcluster: "default".into(),
        user: "u".into(),
        command: Some(command.iter().map(|s| s.to_string()).collect()),
        script: None,
        env: BTreeMap::new(),
        walltime_seconds: 60,
        started_at: None,
    }
}

fn add(s: &Shared, a: Assignment) {
    let mut f = lock(s);
    f.assignments.push(a);
    f.revision += 1;
}

async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn eventually_async<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn report_for(s: &Shared, id: u64) -> Option<ExitReport> {
    lock(s)
        .reports
        .iter()
        .find(|r| r.allocation_id == id)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_runs_reports_serves_logs_and_stops_on_shutdown() {
    let (fake, addr) = start_fake().await;
    let work_dir = tempfile::tempdir().expect("tempdir");
    let config = AgentConfig {
        servers: vec![format!("http://{addr}")],
        node_id: "t".into(),
        nodes: 2,
        features: vec!["test".into()],
        heartbeat_interval_seconds: 1,
        kill_grace_seconds: 1,
        work_dir: work_dir.path().to_path_buf(),
        listen_addr: "127.0.0.1:0".parse().expect("addr"),
        advertise_url: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(lattice_agent::run(config, Default::default(), async move {
        let _ = stop_rx.await;
    }));

    // Both nodes register, advertising the bound loopback address.
    let regs = eventually("two registrations", || {
        let f = lock(&fake);
        (f.registrations.len() >= 2).then(|| f.registrations.clone())
    })
    .await;
    let ids: Vec<&str> = regs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["t-1", "t-2"]);
    let url = regs[0].agent_url.clone();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(regs[0].features, vec!["test"]);
    assert!(regs[0].cpus >= 1 && regs[0].memory_bytes > 0);

    let http = reqwest::Client::new();
    let health: serde_json::Value = http
        .get(format!("{url}/healthz"))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("json");
    assert_eq!(health, serde_json::json!({"status": "ok"}));

    // A job runs, its exit is reported, its output is served.
    add(
        &fake,
        assignment(
            1,
            "t-1",
            &["sh", "-c", "echo hi from $LATTICE_NODE_ID; exit 2"],
        ),
    );
    let r = eventually("the report of job 1", || report_for(&fake, 1)).await;
    assert_eq!((r.outcome, r.exit_code), (ExitOutcome::Exited, Some(2)));
    let resp = http
        .get(format!("{url}/allocations/1/logs?stream=stdout"))
        .send()
        .await
        .expect("logs");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("text"), "hi from t-1\n");
    let missing = http
        .get(format!("{url}/allocations/99/logs"))
        .send()
        .await
        .expect("logs");
    assert_eq!(missing.status(), 404);

    // A node the control plane forgot is registered again.
    lock(&fake).forget = vec!["t-2".into()];
    eventually("re-registration of t-2", || {
        let f = lock(&fake);
        (f.registrations.iter().filter(|r| r.id == "t-2").count() >= 2).then_some(())
    })
    .await;

    // A cancelled job that never started here is reported gone.
    let mut never = assignment(3, "t-1", &["true"]);
    never.desired = Desired::Stop;
    add(&fake, never);
    let r = eventually("the report of job 3", || report_for(&fake, 3)).await;
    assert_eq!(r.outcome, ExitOutcome::Stopped);
    assert!(!work_dir.path().join("t-1").join("3").exists());

    // A long job is running when the agent is told to shut down.
    add(&fake, assignment(2, "t-2", &["sleep", "30"]));
    let pid_file = work_dir.path().join("t-2").join("2").join("pid");
    let pgid: i32 = eventually_async("job 2 to start", || {
        let p = pid_file.clone();
        async move { tokio::fs::read_to_string(p).await.ok()?.trim().parse().ok() }
    })
    .await;
    stop_tx.send(()).expect("agent alive");
    tokio::time::timeout(DEADLINE, agent)
        .await
        .expect("agent returns after shutdown")
        .expect("task")
        .expect("run ok");
    let r = report_for(&fake, 2).expect("final report delivered before run returned");
    assert_eq!(r.outcome, ExitOutcome::Stopped);
    assert_eq!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(-pgid), None),
        Err(nix::errno::Errno::ESRCH)
    );
}

#[tokio::test]
async fn invalid_configuration_is_an_error() {
    let config = AgentConfig {
        nodes: 0,
        listen_addr: "127.0.0.1:0".parse().expect("addr"),
        ..AgentConfig::default()
    };
    let err = lattice_agent::run(config, Default::default(), std::future::pending())
        .await
        .expect_err("nodes: 0 is refused");
    assert!(err.to_string().contains("nodes"), "{err}");
}
