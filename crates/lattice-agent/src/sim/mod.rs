//! The simulating agent (`lattice agent --simulate N`): one process presents N *virtual*
//! nodes that talk to the control plane through the same API as real agents and "run" the
//! allocations placed on them without spawning anything, so that a small machine can load a
//! control plane with thousands of nodes and measure it (issue 10).
//!
//! What each virtual node does, as a real agent of one node would:
//! - it registers (`POST /api/v1/agent/register`, retried until it succeeds; at most
//!   [`REGISTER_PARALLEL`] registrations are in flight, as if that many agents started at
//!   once), and again whenever the control plane says it does not know it;
//! - it heartbeats on its own (`POST /api/v1/agent/heartbeat` naming only itself) every
//!   `heartbeat_interval_seconds`, the N nodes' beats spread evenly over the interval (node
//!   `k`'s beat is due at `k/N` of it), never two at once for one node;
//! - its exit and checkpoint reports ride on its own heartbeats, and go out at once when
//!   queued (an extra heartbeat, as the real agent's report queue wakes its heartbeat loop),
//!   so a job's end reaches the control plane within milliseconds, one request per node;
//! - its ranks are reconciled by the real agent's pure `reconcile`; the [`engine`] carries
//!   the actions out on a table instead of processes: a rank runs for `sim_duration_seconds`
//!   (or the job's `LATTICE_SIM_DURATION` or `SIM_DURATION`: the control plane refuses
//!   `LATTICE_*` names in a submission), then exits with code 0; one that would outlive
//!   its walltime is killed at it (`walltime`); stop and preemption end it at once
//!   (`stopped`, `preempted`); checkpoints (preemption, on demand, periodic) succeed at once
//!   with duration 0. Every report carries its assignment's `run`;
//! - a wipe order (a node released by a sensitive tenant) is reported a success at once,
//!   detail "simulated" (`POST /api/v1/agent/wipes`, all the simulator's pending wipe
//!   reports in one request, retried until answered, like the real agent's).
//!
//! Deviations from N real agents, and what they mean for a measurement:
//! - **Work long-polls are batched**: one `POST /api/v1/agent/work` names `sim_poll_batch`
//!   nodes (default 100), so 10,000 nodes hold 100 polls, not 10,000. Per-node polls would
//!   cost this process (on a small machine, beside the control plane) more than the control
//!   plane it measures. The control plane therefore holds fewer open requests and wakes
//!   fewer waiters per state change (N/batch instead of N). Polls ask `changed_only`, as
//!   the real agent's do, so an answer carries the work of the batch's nodes that changed,
//!   what the polls of those nodes alone would have carried. A node still learns of its
//!   work as soon as it changes. Measured figures for
//!   open connections, long-poll wake-ups and answers per second are therefore lower than
//!   with real agents; scheduling, Raft, heartbeat and report figures are not affected.
//! - Requests share one HTTP connection pool: the control plane sees tens of keep-alive
//!   connections, not one per node. With one plain-HTTP control-plane endpoint (a
//!   benchmark's usual setup), heartbeats and work polls go through
//!   [`lattice_client::PlainClient`]: the same requests as the real agent's client sends,
//!   for about half the CPU in this process (the simulator shares the machine with the
//!   control plane it measures). HTTPS or several endpoints use the general client.
//! - Nothing is executed: no process, no output (log requests answer 404), no telemetry push
//!   (`telemetry:` is ignored), no agent restart recovery (a restarted simulator knows
//!   nothing of earlier runs; the control plane then retires or fails what it had placed).
//!   Answers from a member older than one already acted on (a lagging follower after a
//!   failover) are skipped instead of guarded by on-disk records as in the real agent.
//!
//! Memory: a node is a few hundred bytes (its ID, an empty rank table, flags); a running
//! rank about 150; every timer is one entry of one heap driven by one task.

mod beats;
mod engine;
mod job;
mod node;
mod poll;

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use lattice_client::{Client, ClientError, PlainClient};
use lattice_core::agent::{HeartbeatRequest, HeartbeatResponse, WorkRequest, WorkResponse};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::engine::Engine;
use self::node::NodeSpec;
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::metrics::SimMetrics;
use crate::register::Registrar;
use crate::telemetry::TelemetryConfig;
use crate::wipe::{self, Wipes};
use crate::{discovery, wait};

/// Registrations in flight at once while the nodes come up.
pub const REGISTER_PARALLEL: usize = 64;
/// Heartbeat requests in flight at once (a bound for when the control plane stalls).
const HEARTBEAT_PARALLEL: usize = 1024;
/// Bound on the last attempt to deliver reports at shutdown.
const FINAL_REPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Final-report heartbeats in flight at once.
const FINAL_REPORT_PARALLEL: usize = 64;
/// How long shutdown waits for the loops to notice it.
const LOOPS_DRAIN: Duration = Duration::from_secs(5);
/// How long shutdown lets in-flight HTTP requests finish.
const HTTP_DRAIN: Duration = Duration::from_secs(3);

/// The engine and the wake-ups of the tasks that act on its changes.
pub struct Shared {
    engine: Mutex<Engine>,
    /// Reports were queued: the reporter sends them.
    reports: Notify,
    /// An earlier timer was set: the timer task looks again.
    timer: Notify,
}

impl Shared {
    fn new(engine: Engine) -> Self {
        Shared {
            engine: Mutex::new(engine),
            reports: Notify::new(),
            timer: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Engine> {
        // Every engine operation leaves it consistent between statements that could panic,
        // so a poisoned lock is still usable.
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the engine and wakes the tasks its changes concern.
    pub fn update<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> R {
        let (r, wake) = {
            let mut e = self.lock();
            let r = f(&mut e);
            (r, e.take_wakeups())
        };
        if wake.reports {
            self.reports.notify_one();
        }
        if wake.timer {
            self.timer.notify_one();
        }
        r
    }
}

/// What the simulator's tasks share.
pub struct Ctx {
    shared: Shared,
    registrar: Registrar,
    /// For work polls (retries like the real agent's).
    client: Client,
    /// For heartbeats: gives up within one interval, like the real agent's.
    heartbeat_client: Client,
    /// The same two for a single plain-HTTP control plane (the usual case of a benchmark):
    /// the same requests through a leaner client, so that 10,000 nodes' calls cost this
    /// process, which shares the machine with the control plane it measures, less CPU.
    plain_polls: Option<PlainClient>,
    plain_beats: Option<PlainClient>,
    interval: Duration,
    metrics: SimMetrics,
    shutdown: watch::Receiver<bool>,
    register_slots: Semaphore,
    heartbeat_slots: Semaphore,
    /// Nodes being registered again.
    reregistering: Mutex<HashSet<u32>>,
    registered: AtomicUsize,
    /// Consecutive failed heartbeats (any node), for logging.
    heartbeat_failures: AtomicU32,
    started: Instant,
    /// Wipe orders seen and wipe reports to deliver.
    wipes: Arc<Wipes>,
}

impl Ctx {
    /// One heartbeat, through the plain client when there is one.
    async fn heartbeat(&self, req: &HeartbeatRequest) -> Result<HeartbeatResponse, ClientError> {
        match &self.plain_beats {
            Some(p) => p.heartbeat(req).await,
            None => self.heartbeat_client.heartbeat(req).await,
        }
    }

    /// One work poll, through the plain client when there is one.
    async fn work(&self, req: &WorkRequest) -> Result<WorkResponse, ClientError> {
        match &self.plain_polls {
            Some(p) => p.work(req).await,
            None => self.client.work(req).await,
        }
    }

    /// Registers node `idx`, retrying until it succeeds (or shutdown); marks it registered.
    async fn register(&self, idx: u32) -> bool {
        let id = self.shared.lock().node_id(idx).clone();
        let Ok(_slot) = self.register_slots.acquire().await else {
            return false;
        };
        let mut shutdown = self.shutdown.clone();
        if !self.registrar.register_one(&id, &mut shutdown).await {
            return false;
        }
        self.shared.update(|e| e.set_registered(idx));
        self.metrics.node_registered();
        let done = self.registered.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self.shared.lock().len();
        if done == total {
            tracing::info!(
                nodes = total,
                seconds = format!("{:.1}", self.started.elapsed().as_secs_f64()),
                "every virtual node registered"
            );
        }
        true
    }

    /// The control plane does not know node `idx`: register it again (once at a time).
    fn reregister(self: &Arc<Self>, idx: u32) {
        let first = self
            .reregistering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(idx);
        if !first {
            return;
        }
        let id = self.shared.lock().node_id(idx).clone();
        tracing::warn!(node = %id, "control plane does not know this node; registering again");
        let ctx = self.clone();
        tokio::spawn(async move {
            let mut shutdown = ctx.shutdown.clone();
            if ctx.registrar.register_one(&id, &mut shutdown).await {
                tracing::info!(node = %id, "node registered again");
            }
            ctx.reregistering
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&idx);
        });
    }
}

/// Runs the simulating agent until `shutdown` resolves (`config` is validated and has
/// `simulate > 0`).
pub async fn run(
    config: AgentConfig,
    telemetry: TelemetryConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let ids = config.node_ids();
    let n = ids.len();
    let default_duration = job::seconds(config.sim_duration_seconds).ok_or_else(|| {
        AgentError::Config("sim_duration_seconds: must be between 0 and one year".into())
    })?;
    if telemetry.enabled() {
        tracing::warn!("virtual nodes push no telemetry: the telemetry section is ignored");
    }
    let client = config.client()?;
    let (listener, bound, url) = crate::agent::listen(&config, &discovery::hostname()).await?;
    let interval = Duration::from_secs(config.heartbeat_interval_seconds);
    let batch = usize::try_from(config.sim_poll_batch).unwrap_or(usize::MAX);
    tracing::info!(
        agent_url = %url,
        listen = %bound,
        virtual_nodes = n,
        first = %ids[0],
        last = %ids[n - 1],
        duration_seconds = config.sim_duration_seconds,
        poll_batch = batch,
        "lattice agent listening on {url} (simulating {n} virtual nodes)"
    );

    let spec = NodeSpec::new(&config, url);
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = SimMetrics::default();
    metrics.nodes(n);
    let ctx = Arc::new(Ctx {
        shared: Shared::new(Engine::new(ids, default_duration)),
        registrar: Registrar::describing(client.clone(), move |id| spec.registration(id)),
        heartbeat_client: client.clone().with_retry_for(interval),
        plain_beats: client.clone().with_retry_for(interval).plain(),
        plain_polls: client.plain(),
        client: client.clone(),
        interval,
        metrics,
        shutdown: stop_rx.clone(),
        register_slots: Semaphore::new(REGISTER_PARALLEL),
        heartbeat_slots: Semaphore::new(HEARTBEAT_PARALLEL),
        reregistering: Mutex::default(),
        registered: AtomicUsize::new(0),
        heartbeat_failures: AtomicU32::new(0),
        started: Instant::now(),
        wipes: Arc::new(Wipes::default()),
    });

    let mut http_stop = stop_rx.clone();
    let app = router(ctx.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { wait::raised(&mut http_stop).await })
            .await
            .map_err(AgentError::Serve)
    });

    let mut loops = JoinSet::new();
    loops.spawn(timers(ctx.clone()));
    loops.spawn(beats::ticker(ctx.clone()));
    loops.spawn(beats::reporter(ctx.clone()));
    loops.spawn(wipe::deliver(
        client.clone(),
        ctx.wipes.clone(),
        stop_rx.clone(),
    ));
    let all: Vec<u32> = (0..u32::try_from(n).unwrap_or(u32::MAX)).collect();
    for chunk in all.chunks(batch.max(1)) {
        loops.spawn(poll::batch(ctx.clone(), chunk.to_vec()));
    }

    shutdown.await;
    let running = ctx.shared.lock().stats().running;
    tracing::info!(running, "shutting down: stopping simulated allocations");
    stop_tx.send_replace(true);
    if tokio::time::timeout(LOOPS_DRAIN, async {
        while loops.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        loops.abort_all();
    }
    let pending = ctx.shared.update(|e| {
        e.stop_all();
        e.all_pending()
    });
    if !pending.is_empty() {
        final_reports(&client, pending).await;
    }
    if !ctx.wipes.pending().is_empty() {
        let once = client.clone().with_retry_for(Duration::ZERO);
        match tokio::time::timeout(FINAL_REPORT_TIMEOUT, wipe::send(&once, &ctx.wipes)).await {
            Ok(Ok(n)) => tracing::info!(reports = n, "final wipe reports delivered"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot deliver final wipe reports"),
            Err(_) => tracing::warn!("final wipe reports timed out"),
        }
    }
    let abort = server.abort_handle();
    match tokio::time::timeout(HTTP_DRAIN, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "agent HTTP server failed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "agent HTTP server task failed"),
        Err(_) => abort.abort(),
    }
    tracing::info!("agent stopped");
    Ok(())
}

/// The timer task: fires what is due, then sleeps until the next timer or until an earlier
/// one is set.
async fn timers(ctx: Arc<Ctx>) {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let next = ctx.shared.update(|e| {
            e.fire(Instant::now());
            let next = e.next_timer();
            e.arm(next);
            next
        });
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => {}
            () = ctx.shared.timer.notified() => {}
            () = wait::raised(&mut shutdown) => return,
        }
    }
}

/// One last heartbeat per node with undelivered reports (no retries), bounded in time.
async fn final_reports(client: &Client, pending: Vec<(String, crate::ranks::Pending)>) {
    let once = client.clone().with_retry_for(Duration::ZERO);
    let nodes = pending.len();
    let sends = futures::stream::iter(pending)
        .map(|(node, p)| {
            let once = once.clone();
            async move {
                let req = HeartbeatRequest {
                    nodes: vec![node],
                    reports: p.reports,
                    checkpoints: p.checkpoints,
                };
                once.heartbeat(&req).await.is_ok()
            }
        })
        .buffer_unordered(FINAL_REPORT_PARALLEL)
        .fold(0usize, |ok, sent| async move { ok + usize::from(sent) });
    match tokio::time::timeout(FINAL_REPORT_TIMEOUT, sends).await {
        Ok(ok) if ok == nodes => tracing::info!(nodes, "final reports delivered"),
        Ok(ok) => tracing::warn!(nodes, delivered = ok, "some final reports not delivered"),
        Err(_) => tracing::warn!(nodes, "final reports timed out"),
    }
}

/// The simulator's HTTP server: `/healthz`, `/metrics` and a log endpoint that explains
/// there are none.
fn router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/metrics", get(metrics))
        .route("/allocations/{id}/logs", get(no_logs))
        .with_state(ctx)
}

async fn metrics(State(ctx): State<Arc<Ctx>>) -> Response {
    let running = ctx.shared.lock().stats().running;
    ctx.metrics.ranks_running(running);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ctx.metrics.render(),
    )
        .into_response()
}

async fn no_logs() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({
            "error": "simulated allocations on virtual nodes have no output"
        })),
    )
        .into_response()
}
