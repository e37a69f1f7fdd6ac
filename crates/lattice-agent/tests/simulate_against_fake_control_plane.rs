//! End-to-end test of the simulating agent (`simulate: N`) against a fake control plane that
//! records every request: each virtual node registers with the simulated capabilities and
//! its topology group, heartbeats on its own (one node per request, about once per
//! interval), work is polled in batches, and simulated jobs end as real ones would (exit 0
//! after their duration, walltime, stop, preemption with an instant checkpoint), reported
//! promptly with their run; a wipe order is reported a success at once; a shutdown stops and
//! reports what still runs.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use lattice_agent::AgentConfig;
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
const INTERVAL_SECONDS: u64 = 2;

#[derive(Default)]
struct Fake {
    registrations: Vec<NodeRegistration>,
    /// (when, the nodes it named) of every heartbeat.
    heartbeats: Vec<(Instant, Vec<String>)>,
    /// Every report with when it arrived (duplicates dropped).
    reports: Vec<(Instant, ExitReport)>,
    checkpoints: Vec<(usize, CheckpointReport)>,
    /// The heartbeat (by number) that first carried each report.
    report_beats: Vec<usize>,
    /// Nodes named by each work request.
    polls: Vec<usize>,
    /// (nodes, known revision) of each work request: what the agent had acted on.
    acted: Vec<(Vec<String>, u64)>,
    assignments: Vec<Assignment>,
    revision: u64,
    /// Wipes ordered and not yet reported.
    wipes: Vec<WipeOrder>,
    /// Every wipe report received, duplicates included.
    wipe_reports: Vec<WipeReport>,
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
    f.heartbeats.push((Instant::now(), hb.nodes.clone()));
    let beat = f.heartbeats.len();
    for c in hb.checkpoints {
        if !f.checkpoints.iter().any(|(_, seen)| *seen == c) {
            f.checkpoints.push((beat, c));
        }
    }
    for r in hb.reports {
        if !f.reports.iter().any(|(_, seen)| *seen == r) {
            // Like the real control plane: a report frees the node for that run.
            f.assignments.retain(|a| {
                !(a.allocation_id == r.allocation_id && a.node_id == r.node_id && a.run == r.run)
            });
            f.revision += 1;
            f.reports.push((Instant::now(), r));
            f.report_beats.push(beat);
        }
    }
    Json(HeartbeatResponse::default())
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
    {
        let mut f = lock(&s);
        f.polls.push(req.nodes.len());
        f.acted.push((req.nodes.clone(), req.known_revision));
    }
    let deadline = Instant::now() + Duration::from_millis(req.wait_ms.min(300));
    while lock(&s).revision == req.known_revision && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
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
        wipes: f
            .wipes
            .iter()
            .filter(|o| req.nodes.contains(&o.node_id))
            .cloned()
            .collect(),
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

fn assignment(id: u64, node: &str, sim_duration: &str) -> Assignment {
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
        command: Some(vec!["sleep".into(), "1000".into()]),
        script: None,
        env: BTreeMap::from([("SIM_DURATION".to_string(), sim_duration.to_string())]),
        walltime_seconds: 60,
        started_at: None,
        run: 0,
        checkpoint: CheckpointSpec::default(),
        checkpoint_requests: 0,
    }
}

/// Waits until the agent polled again for `node` after acting on the answer that carried the
/// fake's current revision (so an assignment added before is running there).
async fn acted_on(s: &Shared, node: &str) {
    let rev = lock(s).revision;
    eventually(&format!("{node}'s poll to act on revision {rev}"), || {
        lock(s)
            .acted
            .iter()
            .any(|(nodes, known)| *known >= rev && nodes.iter().any(|n| n == node))
            .then_some(())
    })
    .await;
}

fn add(s: &Shared, a: Assignment) -> Instant {
    let mut f = lock(s);
    f.assignments.push(a);
    f.revision += 1;
    Instant::now()
}

fn set_desired(s: &Shared, id: u64, desired: Desired) {
    let mut f = lock(s);
    for a in f.assignments.iter_mut().filter(|a| a.allocation_id == id) {
        a.desired = desired;
    }
    f.revision += 1;
}

async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn report_for(s: &Shared, id: u64) -> Option<(Instant, ExitReport)> {
    lock(s)
        .reports
        .iter()
        .find(|(_, r)| r.allocation_id == id)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_nodes_register_heartbeat_each_and_run_simulated_jobs() {
    let (fake, addr) = start_fake().await;
    let config = AgentConfig {
        servers: vec![format!("http://{addr}")],
        node_id: "v".into(),
        simulate: 5,
        heartbeat_interval_seconds: INTERVAL_SECONDS,
        listen_addr: "127.0.0.1:0".parse().expect("addr"),
        sim_duration_seconds: 0.3,
        sim_cpus: 8,
        sim_memory_gb: 16,
        sim_gpus: 2,
        sim_gpu_model: Some("H100".into()),
        sim_features: vec!["ib".into()],
        sim_groups: 2,
        sim_poll_batch: 2,
        // Never touched by a simulating agent.
        work_dir: "/nonexistent/lattice-sim".into(),
        ..AgentConfig::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(lattice_agent::run(config, Default::default(), async move {
        let _ = stop_rx.await;
    }));

    // Every virtual node registers with the simulated capabilities and its group.
    let mut regs = eventually("five registrations", || {
        let f = lock(&fake);
        (f.registrations.len() >= 5).then(|| f.registrations.clone())
    })
    .await;
    regs.sort_by(|a, b| a.id.cmp(&b.id));
    let ids: Vec<&str> = regs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["v-1", "v-2", "v-3", "v-4", "v-5"]);
    let r3 = &regs[2];
    assert_eq!((r3.cpus, r3.memory_bytes), (8, 16 << 30));
    assert_eq!((r3.gpus.count, r3.gpus.model.as_deref()), (2, Some("H100")));
    assert_eq!(r3.features, vec!["ib", "group=g1"]);
    assert_eq!(regs[1].features, vec!["ib", "group=g0"]);
    let url = r3.agent_url.clone();
    let logs = reqwest::get(format!("{url}/allocations/1/logs"))
        .await
        .expect("logs");
    assert_eq!(logs.status(), 404, "virtual nodes have no output");

    // A job runs its simulated duration (the default here), exits 0, and is reported at once,
    // not on the next heartbeat tick.
    let placed = add(&fake, assignment(1, "v-1", "0.3"));
    let (at, r) = eventually("the report of job 1", || report_for(&fake, 1)).await;
    assert_eq!(
        (r.outcome, r.exit_code, r.run, r.node_id.as_str()),
        (ExitOutcome::Exited, Some(0), 0, "v-1")
    );
    let took = at - placed;
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1200),
        "job 1 reported {took:?} after it was placed"
    );

    // Longer than its walltime: killed at it.
    let mut a = assignment(2, "v-2", "30");
    a.walltime_seconds = 1;
    add(&fake, a);
    let (_, r) = eventually("the report of job 2", || report_for(&fake, 2)).await;
    assert_eq!((r.outcome, r.run), (ExitOutcome::Walltime, 0));

    // Stopped while running, in run 1.
    let mut a = assignment(3, "v-3", "30");
    a.run = 1;
    add(&fake, a);
    acted_on(&fake, "v-3").await; // started; it runs 30 s
    set_desired(&fake, 3, Desired::Stop);
    let (_, r) = eventually("the report of job 3", || report_for(&fake, 3)).await;
    assert_eq!((r.outcome, r.run), (ExitOutcome::Stopped, 1));

    // Preempted with a checkpoint: an instant successful checkpoint is reported no later
    // than the exit.
    let mut a = assignment(4, "v-4", "30");
    a.checkpoint = CheckpointSpec {
        mode: CheckpointMode::Signal,
        ..CheckpointSpec::default()
    };
    a.run = 2;
    add(&fake, a);
    acted_on(&fake, "v-4").await;
    set_desired(&fake, 4, Desired::Preempt);
    let (_, r) = eventually("the report of job 4", || report_for(&fake, 4)).await;
    assert_eq!((r.outcome, r.run), (ExitOutcome::Preempted, 2));
    {
        let f = lock(&fake);
        let (beat, c) = f
            .checkpoints
            .iter()
            .find(|(_, c)| c.allocation_id == 4)
            .cloned()
            .expect("checkpoint of job 4");
        assert_eq!(
            (
                c.trigger,
                c.outcome,
                c.duration_ms,
                c.run,
                c.node_id.as_str()
            ),
            (
                CheckpointTrigger::Preemption,
                CheckpointOutcome::Success,
                0,
                2,
                "v-4"
            )
        );
        let exit_beat = f.reports.iter().position(|(_, r)| r.allocation_id == 4);
        let exit_beat = f.report_beats[exit_beat.expect("exit of job 4")];
        assert!(beat <= exit_beat);
    }

    // Every heartbeat names one node; each node beats about once per interval; work is
    // polled in batches of at most two nodes.
    let window = Duration::from_secs(2 * INTERVAL_SECONDS);
    tokio::time::sleep(window).await;
    {
        let f = lock(&fake);
        assert!(f.heartbeats.iter().all(|(_, nodes)| nodes.len() == 1));
        let since = Instant::now() - window;
        for node in ["v-1", "v-2", "v-3", "v-4", "v-5"] {
            let beats = f
                .heartbeats
                .iter()
                .filter(|(at, nodes)| *at >= since && nodes[0] == node)
                .count();
            assert!(
                (1..=4).contains(&beats),
                "{node}: {beats} beats in {window:?}"
            );
        }
        assert!(!f.polls.is_empty());
        assert!(f.polls.iter().all(|n| (1..=2).contains(n)), "{:?}", f.polls);
    }

    // A released node's wipe is reported a success at once, and only once.
    {
        let mut f = lock(&fake);
        f.wipes.push(WipeOrder {
            node_id: "v-2".into(),
            wipe_id: 11,
        });
        f.revision += 1;
    }
    let reports = eventually("the wipe report of v-2", || {
        let f = lock(&fake);
        f.wipes.is_empty().then(|| f.wipe_reports.clone())
    })
    .await;
    assert_eq!(
        reports,
        vec![WipeReport {
            node_id: "v-2".into(),
            wipe_id: 11,
            success: true,
            detail: "simulated".into(),
        }]
    );

    // Shutdown stops what still runs and reports it.
    add(&fake, assignment(5, "v-5", "60"));
    acted_on(&fake, "v-5").await;
    stop_tx.send(()).expect("agent alive");
    tokio::time::timeout(DEADLINE, agent)
        .await
        .expect("agent returns after shutdown")
        .expect("task")
        .expect("run ok");
    let (_, r) = report_for(&fake, 5).expect("job 5 reported at shutdown");
    assert_eq!(r.outcome, ExitOutcome::Stopped);
    assert_eq!(r.message.as_deref(), Some("stopped: the agent shut down"));
    // Every job was reported, each with the outcome checked above.
    let f = lock(&fake);
    let mut ids: Vec<u64> = f.reports.iter().map(|(_, r)| r.allocation_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
}
