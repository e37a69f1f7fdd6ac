//! End-to-end test of `lattice_agent::run` against a fake control plane (an in-process axum
//! server on loopback that speaks the agent protocol): registration, heartbeats with exit
//! and checkpoint reports, work long-polls, log serving, re-registration, preemption with a
//! checkpoint and the next run resuming from it, wipe orders run once with their reports
//! delivered, and shutdown.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use lattice_agent::{AgentConfig, SensitiveConfig};
use lattice_core::agent::{
    Assignment, Desired, ExitOutcome, ExitReport, HeartbeatRequest, HeartbeatResponse, WipeOrder,
    WipeReportRequest, WipeReportResponse, WorkRequest, WorkResponse,
};
use lattice_core::checkpoint::{
    CheckpointMode, CheckpointOutcome, CheckpointReport, CheckpointSpec, CheckpointTrigger,
};
use lattice_core::command::WipeReport;
use lattice_core::{Node, NodeRegistration, Timestamp};
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Fake {
    registrations: Vec<NodeRegistration>,
    heartbeats: usize,
    reports: Vec<ExitReport>,
    /// The heartbeat (by number) that first carried each report.
    report_beats: Vec<usize>,
    checkpoints: Vec<(usize, CheckpointReport)>,
    assignments: Vec<Assignment>,
    revision: u64,
    /// Nodes the next heartbeat answer claims not to know.
    forget: Vec<String>,
    /// Wipes ordered and not yet reported.
    wipes: Vec<WipeOrder>,
    /// Every wipe report received, duplicates included.
    wipe_reports: Vec<WipeReport>,
    /// Work answers that carried a wipe order.
    wipe_answers: usize,
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
    let beat = f.heartbeats;
    for c in hb.checkpoints {
        if !f.checkpoints.iter().any(|(_, seen)| *seen == c) {
            f.checkpoints.push((beat, c));
        }
    }
    for r in hb.reports {
        // Like the real control plane: a report frees the node (for that run); duplicates
        // are ignored.
        if !f.reports.contains(&r) {
            f.assignments.retain(|a| {
                !(a.allocation_id == r.allocation_id && a.node_id == r.node_id && a.run == r.run)
            });
            f.revision += 1;
            f.reports.push(r);
            f.report_beats.push(beat);
        }
    }
    Json(HeartbeatResponse {
        unknown_nodes: std::mem::take(&mut f.forget),
    })
}

async fn wipes(
    State(s): State<Shared>,
    Json(req): Json<WipeReportRequest>,
) -> Json<WipeReportResponse> {
    let f = &mut *lock(&s);
    let out = common::end_wipes(&mut f.wipes, &mut f.wipe_reports, req.reports);
    f.revision += u64::from(out.applied);
    Json(out)
}

async fn work(State(s): State<Shared>, Json(req): Json<WorkRequest>) -> Json<WorkResponse> {
    // A crude long-poll: hold an unchanged answer for a moment.
    let deadline = Instant::now() + Duration::from_millis(req.wait_ms.min(300));
    while lock(&s).revision == req.known_revision && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut f = lock(&s);
    let wipes: Vec<WipeOrder> = f
        .wipes
        .iter()
        .filter(|o| req.nodes.contains(&o.node_id))
        .cloned()
        .collect();
    f.wipe_answers += usize::from(!wipes.is_empty());
    Json(WorkResponse {
        revision: f.revision,
        assignments: f
            .assignments
            .iter()
            .filter(|a| req.nodes.contains(&a.node_id))
            .cloned()
            .collect(),
        unknown_nodes: vec![],
        wipes,
        // A complete answer, as from a server that ignores `changed_only`.
        changed_nodes: None,
    })
}

async fn start_fake() -> (Shared, SocketAddr) {
    let shared = Shared::default();
    let app = Router::new()
        .route("/api/v1/agent/register", post(register))
        .route("/api/v1/agent/heartbeat", post(heartbeat))
        .route("/api/v1/agent/work", post(work))
        .route("/api/v1/agent/wipes", post(wipes))
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
        run: 0,
        checkpoint: CheckpointSpec::default(),
        checkpoint_requests: 0,
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

type AgentTask = tokio::task::JoinHandle<anyhow::Result<()>>;

/// Starts an agent presenting nodes `t-1` and `t-2` to the fake at `addr`; it runs until the
/// returned sender fires.
fn start_agent(
    addr: SocketAddr,
    work_dir: &tempfile::TempDir,
) -> (AgentTask, tokio::sync::oneshot::Sender<()>) {
    start_agent_with(addr, work_dir, SensitiveConfig::default())
}

/// [`start_agent`] with the given `sensitive:` settings.
fn start_agent_with(
    addr: SocketAddr,
    work_dir: &tempfile::TempDir,
    sensitive: SensitiveConfig,
) -> (AgentTask, tokio::sync::oneshot::Sender<()>) {
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
        sensitive,
        ..AgentConfig::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(lattice_agent::run(config, Default::default(), async move {
        let _ = stop_rx.await;
    }));
    (agent, stop_tx)
}

async fn stop_agent(agent: AgentTask, stop_tx: tokio::sync::oneshot::Sender<()>) {
    stop_tx.send(()).expect("agent alive");
    tokio::time::timeout(DEADLINE, agent)
        .await
        .expect("agent returns after shutdown")
        .expect("task")
        .expect("run ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_runs_reports_serves_logs_and_stops_on_shutdown() {
    let (fake, addr) = start_fake().await;
    let work_dir = tempfile::tempdir().expect("tempdir");
    let (agent, stop_tx) = start_agent(addr, &work_dir);

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
    stop_agent(agent, stop_tx).await;
    let r = report_for(&fake, 2).expect("final report delivered before run returned");
    assert_eq!(r.outcome, ExitOutcome::Stopped);
    assert_eq!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(-pgid), None),
        Err(nix::errno::Errno::ESRCH)
    );
}

/// Run 0 is preempted: it saves a checkpoint into the allocation's directory and
/// acknowledges; the agent reports the checkpoint (no later than the exit) and `preempted`.
/// Run 1, placed on the other node, finds the checkpoint and resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preempted_allocation_checkpoints_and_its_next_run_resumes() {
    let (fake, addr) = start_fake().await;
    let work_dir = tempfile::tempdir().expect("tempdir");
    let (agent, stop_tx) = start_agent(addr, &work_dir);
    let script = "if [ -f checkpoint ]; then\n\
                  echo \"run $LATTICE_RESTART_COUNT resumes from $(cat checkpoint)\"; exit 0\n\
                  fi\n\
                  trap 'echo \"step $i\" > checkpoint; echo ok > \"$LATTICE_CHECKPOINT_ACK\"' USR1\n\
                  i=0\n\
                  echo ready\n\
                  while :; do i=$((i+1)); sleep 0.05; done\n";
    let mut first = assignment(10, "t-1", &[]);
    first.command = None;
    first.script = Some(script.into());
    first.checkpoint = CheckpointSpec {
        mode: CheckpointMode::Signal,
        signal: "SIGUSR1".into(),
        timeout_seconds: 10,
        interval_seconds: None,
    };
    add(&fake, first.clone());
    let stdout = work_dir.path().join("t-1/10/stdout");
    eventually("run 0 to be ready", || {
        let text = std::fs::read_to_string(&stdout).ok()?;
        text.contains("ready").then_some(())
    })
    .await;

    {
        let mut f = lock(&fake);
        f.assignments
            .iter_mut()
            .for_each(|a| a.desired = Desired::Preempt);
        f.revision += 1;
    }
    let r = eventually("the report of run 0", || report_for(&fake, 10)).await;
    assert_eq!((r.outcome, r.run), (ExitOutcome::Preempted, 0));
    let (checkpoint_beat, c) = {
        let f = lock(&fake);
        f.checkpoints.first().cloned().expect("a checkpoint report")
    };
    assert_eq!(
        (
            c.allocation_id,
            c.node_id.as_str(),
            c.run,
            c.trigger,
            c.outcome
        ),
        (
            10,
            "t-1",
            0,
            CheckpointTrigger::Preemption,
            CheckpointOutcome::Success
        )
    );
    let exit_beat = lock(&fake).report_beats[0];
    assert!(
        checkpoint_beat <= exit_beat,
        "{checkpoint_beat} > {exit_beat}"
    );

    // Requeued and placed on the other node of the same (shared) work_dir.
    let mut next = first;
    next.node_id = "t-2".into();
    next.nodes = vec!["t-2".into()];
    next.run = 1;
    add(&fake, next);
    let done = eventually("the report of run 1", || {
        lock(&fake).reports.iter().find(|r| r.run == 1).cloned()
    })
    .await;
    assert_eq!(
        (done.outcome, done.exit_code, done.node_id.as_str()),
        (ExitOutcome::Exited, Some(0), "t-2")
    );
    let out = std::fs::read_to_string(work_dir.path().join("t-2/10/stdout")).expect("stdout");
    assert!(out.starts_with("run 1 resumes from step "), "{out}");
    stop_agent(agent, stop_tx).await;
}

/// Wipe orders for both nodes: the wipe command runs once per order although every answer
/// repeats the order while it runs; t-1's succeeds, t-2's fails with its stderr, and both
/// reports reach the control plane, which then stops ordering them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wipe_orders_run_once_and_are_reported() {
    let (fake, addr) = start_fake().await;
    let work_dir = tempfile::tempdir().expect("tempdir");
    let log = work_dir.path().join("wipes.log");
    let command = format!(
        "echo \"$LATTICE_NODE_ID $LATTICE_WIPE_ID\" >> '{}'; sleep 1.5; \
         if [ \"$LATTICE_NODE_ID\" = t-2 ]; then echo 'scratch still mounted' >&2; exit 3; fi",
        log.display()
    );
    let (agent, stop_tx) = start_agent_with(
        addr,
        &work_dir,
        SensitiveConfig {
            wipe_command: Some(command),
            wipe_timeout_seconds: 30,
        },
    );
    eventually("two registrations", || {
        (lock(&fake).registrations.len() >= 2).then_some(())
    })
    .await;
    {
        let mut f = lock(&fake);
        f.wipes = vec![
            WipeOrder {
                node_id: "t-1".into(),
                wipe_id: 7,
            },
            WipeOrder {
                node_id: "t-2".into(),
                wipe_id: 8,
            },
        ];
        f.revision += 1;
    }
    let reports = eventually("both wipe reports", || {
        let f = lock(&fake);
        (f.wipes.is_empty()).then(|| f.wipe_reports.clone())
    })
    .await;
    let by_node = |n: &str| {
        reports
            .iter()
            .find(|r| r.node_id == n)
            .cloned()
            .expect("a report")
    };
    let ok = by_node("t-1");
    assert_eq!(
        (ok.wipe_id, ok.success, ok.detail.as_str()),
        (7, true, "exit 0")
    );
    let failed = by_node("t-2");
    assert_eq!(
        (failed.wipe_id, failed.success, failed.detail.as_str()),
        (8, false, "exit 3; stderr: scratch still mounted")
    );
    let mut runs: Vec<String> = std::fs::read_to_string(&log)
        .expect("the wipe log")
        .lines()
        .map(str::to_string)
        .collect();
    runs.sort();
    assert_eq!(runs, vec!["t-1 7", "t-2 8"], "each wipe ran once");
    let answers = lock(&fake).wipe_answers;
    assert!(
        answers >= 2,
        "the orders were repeated while they ran ({answers} answers)"
    );
    assert_eq!(reports.len(), 2, "each report sent once: {reports:?}");
    stop_agent(agent, stop_tx).await;
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
