//! Lattice control-plane member: Raft (openraft) over an embedded database (redb), the REST API
//! (axum), and the leader-only scheduler and failure detector.
//!
//! [`start`] binds the API port, opens storage under `data_dir`, starts Raft (initializing a
//! single-member cluster when `bootstrap` is set and the member is new) and serves until the
//! shutdown future resolves.

pub mod api;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod forward;
pub mod leader;
pub mod metrics;
pub mod raft;
pub mod tls;
pub mod write_batch;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use openraft::BasicNode;
use tokio::task::JoinHandle;

pub use config::ServerConfig;

/// A started member.
pub struct RunningServer {
    /// The address the API actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    /// The URL this member advertises to peers and agents.
    pub url: String,
    /// Resolves when the member has stopped.
    pub handle: JoinHandle<anyhow::Result<()>>,
}

/// Starts a member. It runs until `shutdown` resolves, then stops serving, stops Raft and
/// returns.
pub async fn start(
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<RunningServer> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    let tls = match (&cfg.tls_cert_file, &cfg.tls_key_file) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(cfg.api_addr)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.api_addr))?;
    let local_addr = listener.local_addr()?;
    let url = cfg.advertised(local_addr);

    let data_dir = cfg.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data_dir {}", data_dir.display()))?;
    // Before Raft starts: a member without a usable audit signing key does not start.
    let signer = audit::signing::AuditSigner::load_or_create(&cfg.audit, &data_dir)?;
    let parts = raft::new_raft(&cfg, &data_dir)
        .await
        .with_context(|| format!("cannot open Raft storage in {}", data_dir.display()))?;

    if cfg.bootstrap && cfg.join.is_none() && !parts.raft.is_initialized().await? {
        let members: BTreeMap<u64, BasicNode> = if cfg.peers.is_empty() {
            BTreeMap::from([(cfg.node_id, BasicNode { addr: url.clone() })])
        } else {
            cfg.peers
                .iter()
                .map(|(id, u)| {
                    (
                        *id,
                        BasicNode {
                            addr: u.trim_end_matches('/').to_string(),
                        },
                    )
                })
                .collect()
        };
        let ids: Vec<u64> = members.keys().copied().collect();
        match parts.raft.initialize(members).await {
            Ok(()) => tracing::info!(member = cfg.node_id, ?ids, "initialized a new cluster"),
            // Another member initialized the same cluster first: fine.
            Err(e) => tracing::info!(error = %e, "cluster already initialized"),
        }
    }

    let cfg_auth = cfg.auth.clone();
    // Peers and agents that vanish must not stall forwarding: connect fast or fail.
    let http = tls::http_client(&cfg, std::time::Duration::from_secs(1))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (exit_reports, exit_report_rx) = api::report_batch::channel();
    let app = api::App::new(api::AppParts {
        raft: parts.raft.clone(),
        committed: parts.committed,
        state: parts.state,
        db: parts.db,
        audit: Arc::new(audit::Audit::new(parts.audit, signer)),
        cfg: Arc::new(cfg),
        heartbeats: Arc::new(leader::heartbeats::Heartbeats::default()),
        http,
        shutting_down: Arc::new(AtomicBool::new(false)),
        stop: stop_rx.clone(),
        exit_reports,
        writes: Arc::default(),
        submit_limiter: Arc::new(auth::rate::RateLimiter::new(
            cfg_auth.submit_rate_per_second,
            cfg_auth.submit_burst,
        )),
    });
    tokio::spawn(api::report_batch::run(app.clone(), exit_report_rx));
    let mut loops = leader::spawn(app.clone(), stop_rx.clone());
    loops.push(metrics::watch_leader(app.raft.clone(), stop_rx.clone()));
    loops.push(tokio::spawn(audit::catch_up::run(
        app.clone(),
        stop_rx.clone(),
    )));
    let router = api::router(app.clone());
    tracing::info!(%local_addr, %url, member = app.cfg.node_id, "control plane listening");

    if let Some(target) = app.cfg.join.clone() {
        if !app.raft.is_initialized().await? {
            tokio::spawn(join_cluster(app.clone(), target, url.clone()));
        }
    }
    let handle = tokio::spawn(async move {
        let flag = app.shutting_down.clone();
        let stop_signal = async move {
            shutdown.await;
            flag.store(true, Ordering::Relaxed);
            let _ = stop_tx.send(true);
        };
        let served = match tls {
            None => {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stop_signal)
                    .await
            }
            Some(tls) => tls::serve(listener, router, tls, stop_signal).await,
        };
        for l in loops {
            let _ = l.await;
        }
        if let Err(e) = app.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        served.context("API server failed")
    });
    Ok(RunningServer {
        local_addr,
        url,
        handle,
    })
}

/// Asks a running member to add this one (learner, then voter), retrying until it succeeds or
/// the member shuts down.
async fn join_cluster(app: api::App, target: String, url: String) {
    let body = serde_json::json!({ "id": app.cfg.node_id, "url": url });
    let endpoint = format!("{}/api/v1/raft/members", target.trim_end_matches('/'));
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        if app.is_shutting_down() {
            return;
        }
        let req = app
            .http
            .post(&endpoint)
            .header(raft::network::SECRET_HEADER, &app.cfg.cluster_secret)
            .json(&body);
        match req.send().await {
            Ok(r) if r.status().is_success() => {
                tracing::info!(%target, member = app.cfg.node_id, "joined the cluster as a voter");
                return;
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                tracing::warn!(%target, %status, %text, "join refused; retrying");
            }
            Err(e) => {
                let error = tls::error_chain(&e);
                tracing::warn!(%target, %error, "cannot reach the member to join; retrying")
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(5));
    }
}
