//! [`run`]: the agent's lifetime. It discovers the host, binds its HTTP server, registers its
//! nodes (retrying until the control plane answers), then runs the heartbeat and work loops
//! and the delivery of wipe reports until `shutdown` resolves; at shutdown it stops every
//! running rank and wipe (SIGTERM, SIGKILL after the grace period), tries once to report the
//! ranks and the finished wipes, and returns. Telemetry, when configured, runs
//! beside them from the start. With `simulate: N` it runs the simulator of N virtual nodes
//! (`sim`) instead.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{advertise_url, AgentConfig};
use crate::error::AgentError;
use crate::executor::Executor;
use crate::heartbeat::{self, Heartbeat};
use crate::http::{self, HttpState};
use crate::metrics::AgentMetrics;
use crate::ranks::Ranks;
use crate::register::Registrar;
use crate::telemetry::{self, TelemetryConfig};
use crate::wipe::run::WipeCommand;
use crate::wipe::{self, Wiper, Wipes};
use crate::work::WorkLoop;
use crate::{discovery, process, wait};

/// Extra time, beyond the kill grace, that shutdown waits for ranks to be gone.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(10);
/// Bound on the one report attempt at shutdown.
const FINAL_REPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown lets in-flight HTTP requests finish.
const HTTP_DRAIN: Duration = Duration::from_secs(3);

/// Runs the agent until `shutdown` resolves. `telemetry` is the `telemetry:` section (off
/// without an endpoint).
pub async fn run(
    config: AgentConfig,
    telemetry: TelemetryConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    config.validate()?;
    telemetry.validate()?;
    if config.simulate > 0 {
        return crate::sim::run(config, telemetry, shutdown).await;
    }
    let nodes = config.node_ids();
    std::fs::create_dir_all(&config.work_dir).map_err(|source| AgentError::WorkDir {
        path: config.work_dir.clone(),
        source,
    })?;
    let work_dir =
        std::fs::canonicalize(&config.work_dir).map_err(|source| AgentError::WorkDir {
            path: config.work_dir.clone(),
            source,
        })?;
    process::become_subreaper();
    let host = tokio::task::spawn_blocking(discovery::discover).await?;
    let client = config.client()?;

    let (listener, bound, url) = listen(&config, &host.hostname).await?;
    tracing::info!(
        agent_url = %url,
        listen = %bound,
        nodes = ?nodes,
        cpus = host.cpus,
        memory_bytes = host.memory_bytes,
        gpus = host.gpus.count,
        work_dir = %work_dir.display(),
        "lattice agent listening on {url}"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = Arc::new(AgentMetrics::default());
    let app = http::router(HttpState {
        work_dir: work_dir.clone(),
        nodes: Arc::new(nodes.clone()),
        metrics: metrics.clone(),
        node_key: config.api_token()?.as_deref().map(http::node_key),
    });
    let mut http_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { wait::raised(&mut http_stop).await })
            .await
            .map_err(AgentError::Serve)
    });

    let ranks = Arc::new(Ranks::default());
    let telemetry = telemetry::spawn(
        &telemetry,
        nodes.clone(),
        ranks.clone(),
        metrics,
        stop_rx.clone(),
    )?;
    let grace = Duration::from_secs(config.kill_grace_seconds);
    let executor = Executor::new(ranks.clone(), work_dir, grace, stop_rx.clone());
    let registrar = Arc::new(Registrar::new(
        client.clone(),
        host,
        config.features.clone(),
        url,
    ));
    let heartbeat = Heartbeat::new(
        client.clone(),
        ranks.clone(),
        registrar.clone(),
        nodes.clone(),
        Duration::from_secs(config.heartbeat_interval_seconds),
    );
    let wipes = Arc::new(Wipes::default());
    let wiper = Wiper::new(
        wipes.clone(),
        WipeCommand::new(&config.sensitive, grace),
        stop_rx.clone(),
    );
    let work = WorkLoop::new(
        client.clone(),
        ranks.clone(),
        executor,
        wiper,
        registrar.clone(),
        nodes.clone(),
    );
    let deliver = wipe::deliver(client.clone(), wipes.clone(), stop_rx.clone());
    let mut loops_stop = stop_rx.clone();
    let loops = tokio::spawn(async move {
        if registrar.register(&nodes, &mut loops_stop).await {
            tokio::join!(
                heartbeat.run(loops_stop.clone()),
                work.run(loops_stop),
                deliver
            );
        }
    });

    shutdown.await;
    tracing::info!(
        running = ranks.running_count(),
        "shutting down: stopping running allocations"
    );
    stop_tx.send_replace(true);
    if let Err(e) = loops.await {
        tracing::warn!(error = %e, "agent loop ended abnormally");
    }
    if tokio::time::timeout(grace + SHUTDOWN_SLACK, ranks.idle())
        .await
        .is_err()
    {
        tracing::warn!(
            running = ranks.running_count(),
            "some allocations did not stop in time"
        );
    }
    if tokio::time::timeout(grace + SHUTDOWN_SLACK, wipes.idle())
        .await
        .is_err()
    {
        tracing::warn!("some wipes did not stop in time");
    }
    let pending = {
        let p = ranks.pending();
        p.reports.len() + p.checkpoints.len()
    };
    if pending > 0 {
        let once = client.clone().with_retry_for(Duration::ZERO);
        let nodes = config.node_ids();
        match tokio::time::timeout(FINAL_REPORT_TIMEOUT, heartbeat::send(&once, &ranks, &nodes))
            .await
        {
            Ok(Ok(_)) => tracing::info!(reports = pending, "final reports delivered"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, reports = pending, "cannot deliver final reports")
            }
            Err(_) => tracing::warn!(reports = pending, "final reports timed out"),
        }
    }
    // Wipes cut short by the shutdown are not reported (they run again after a restart);
    // those that ended are, once.
    let wiped = wipes.pending().len();
    if wiped > 0 {
        let once = client.clone().with_retry_for(Duration::ZERO);
        match tokio::time::timeout(FINAL_REPORT_TIMEOUT, wipe::send(&once, &wipes)).await {
            Ok(Ok(_)) => tracing::info!(reports = wiped, "final wipe reports delivered"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, reports = wiped, "cannot deliver final wipe reports")
            }
            Err(_) => tracing::warn!(reports = wiped, "final wipe reports timed out"),
        }
    }
    if let Some(t) = telemetry {
        // It ends at once, after a bounded last push of what is queued.
        if let Err(e) = t.await {
            tracing::warn!(error = %e, "telemetry task ended abnormally");
        }
    }
    // In-flight log downloads may finish; a slow one does not hold the agent up.
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

/// Binds the agent's HTTP listener and returns it with its bound address and the URL the
/// control plane should use to reach it (real and simulated agents alike).
pub(crate) async fn listen(
    config: &AgentConfig,
    hostname: &str,
) -> Result<(TcpListener, std::net::SocketAddr, String), AgentError> {
    let bind_error = |source| AgentError::Bind {
        addr: config.listen_addr,
        source,
    };
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    let url = advertise_url(config.advertise_url.as_deref(), bound, hostname);
    Ok((listener, bound, url))
}
