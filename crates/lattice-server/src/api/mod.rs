//! The REST API (axum): the router, the shared [`App`] handle, and one module per resource.
//! All user-facing routes live under `/api/v1`; `/healthz` is for probes and `/metrics` for
//! Prometheus; `/raft/*` carries member-to-member Raft traffic.

mod access;
mod acl;
mod agent;
mod allocations;
mod arrays;
mod audit;
mod claims;
pub mod error;
pub mod extract;
mod health;
mod members;
mod metrics;
mod nodes;
mod raft;
pub mod report_batch;
mod telemetry;
mod tenants;
mod vclusters;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::delete;
use axum::routing::{get, post};
use axum::Router;
use lattice_core::{Command, CommandOutcome};

use crate::config::ServerConfig;
use crate::leader::heartbeats::Heartbeats;
use crate::raft::state_machine::SharedState;
use crate::raft::storage::Db;
use crate::raft::Raft;
use error::ApiError;

/// Everything a request handler can reach: one shared allocation, so a clone (axum makes
/// several per request) is one reference count, not one per part.
#[derive(Clone)]
pub struct App(Arc<AppParts>);

impl App {
    pub fn new(parts: AppParts) -> Self {
        App(Arc::new(parts))
    }
}

impl std::ops::Deref for App {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts of an [`App`].
pub struct AppParts {
    pub raft: Raft,
    pub committed: crate::raft::log_store::CommitIndex,
    pub state: SharedState,
    pub db: Arc<Db>,
    /// The audit log's store and signing key (`crate::audit`).
    pub audit: Arc<crate::audit::Audit>,
    pub cfg: Arc<ServerConfig>,
    pub heartbeats: Arc<Heartbeats>,
    pub http: reqwest::Client,
    pub shutting_down: Arc<AtomicBool>,
    /// Turns `true` when the member starts shutting down (wakes long-polls).
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// Agents' exit reports, batched into Raft entries (`report_batch.rs`).
    pub exit_reports: report_batch::Sender,
    /// Proposals waiting to be committed together (`write_batch.rs`).
    pub writes: Arc<crate::write_batch::Writes>,
    /// Per-token submission rate limit (`server.auth.submit_rate_per_second`).
    pub submit_limiter: Arc<crate::auth::rate::RateLimiter>,
}

impl App {
    /// A member that is not listening, for tests: a fresh Raft member in `cfg.data_dir`,
    /// initialized as a cluster of one and elected, a generated audit signing key, no
    /// submission rate limit, and no background loops (no scheduler, no exit-report batcher).
    /// Dropping the returned sender is the member's stop signal.
    #[doc(hidden)]
    pub async fn single_member(
        cfg: ServerConfig,
    ) -> anyhow::Result<(App, tokio::sync::watch::Sender<bool>)> {
        let parts = crate::raft::new_raft(&cfg, &cfg.data_dir).await?;
        parts
            .raft
            .initialize(std::collections::BTreeMap::from([(
                cfg.node_id,
                openraft::BasicNode {
                    addr: "http://127.0.0.1:1".into(),
                },
            )]))
            .await?;
        parts
            .raft
            .wait(Some(std::time::Duration::from_secs(10)))
            .current_leader(cfg.node_id, "single member leads")
            .await?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        let app = App::new(AppParts {
            raft: parts.raft,
            committed: parts.committed,
            state: parts.state,
            db: parts.db,
            audit: Arc::new(crate::audit::Audit::new(
                parts.audit,
                crate::audit::signing::AuditSigner::generate()?,
            )),
            cfg: Arc::new(cfg),
            heartbeats: Arc::new(Heartbeats::default()),
            http: reqwest::Client::new(),
            shutting_down: Arc::new(AtomicBool::new(false)),
            stop: rx,
            exit_reports: report_batch::channel().0,
            writes: Arc::default(),
            submit_limiter: Arc::new(crate::auth::rate::RateLimiter::new(0.0, 1)),
        });
        Ok((app, tx))
    }

    /// Proposes a command through Raft (forwarded to the leader when this member follows) and
    /// returns its applied result.
    pub async fn propose(&self, cmd: Command) -> Result<CommandOutcome, ApiError> {
        crate::forward::propose(self, cmd).await
    }

    /// Makes the next local read linearizable unless `stale` is asked for.
    pub async fn linearize(&self, stale: bool) -> Result<(), ApiError> {
        crate::forward::linearize(self, stale).await
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Whether this member currently leads the cluster.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.current_leader == Some(self.cfg.node_id)
    }
}

pub fn router(app: App) -> Router {
    let max_body = app.cfg.max_body_bytes;
    let public = Router::new()
        .route(
            "/api/v1/allocations",
            post(allocations::submit).get(allocations::list),
        )
        .route(
            "/api/v1/allocations/{id}",
            get(allocations::get_one).delete(allocations::cancel),
        )
        .route("/api/v1/allocations/{id}/logs", get(allocations::logs))
        .route(
            "/api/v1/allocations/{id}/checkpoint",
            post(allocations::checkpoint),
        )
        .route(
            "/api/v1/allocations/{id}/metrics",
            get(telemetry::allocation_metrics),
        )
        .route("/api/v1/telemetry/nodes", get(telemetry::nodes_utilization))
        .route("/api/v1/claims", get(claims::list).post(claims::claim))
        .route("/api/v1/claims/release", post(claims::release))
        .route("/api/v1/nodes", get(nodes::list))
        .route("/api/v1/nodes/{id}", get(nodes::get_one))
        .route("/api/v1/nodes/{id}/drain", post(nodes::drain))
        .route("/api/v1/nodes/{id}/undrain", post(nodes::undrain))
        .route("/api/v1/agent/register", post(agent::register))
        .route("/api/v1/agent/heartbeat", post(agent::heartbeat))
        .route("/api/v1/agent/work", post(agent::work))
        .route("/api/v1/agent/wipes", post(agent::wipes))
        .route("/api/v1/raft/status", get(members::status))
        .route("/api/v1/raft/members", post(members::add))
        .route("/api/v1/raft/members/{id}", delete(members::remove))
        .route("/api/v1/raft/snapshot", get(members::snapshot))
        .route("/api/v1/acl/bootstrap", post(acl::bootstrap))
        .route("/api/v1/acl/tokens", post(acl::create).get(acl::list))
        .route("/api/v1/acl/tokens/{id}", delete(acl::revoke))
        .route("/api/v1/acl/whoami", get(acl::whoami))
        .route("/api/v1/audit", get(audit::query))
        .route("/api/v1/audit/pubkey", get(audit::pubkey))
        .route("/api/v1/audit/sign", get(audit::sign))
        .route("/api/v1/audit/verify", get(audit::verify))
        .route("/api/v1/audit/prune", post(audit::prune))
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(metrics::metrics))
        .layer(DefaultBodyLimit::max(max_body));
    // Scheduling policy: tenants, vClusters, arrays, hold / release / requeue.
    let policy = Router::new()
        .route("/api/v1/tenants", get(tenants::list).post(tenants::create))
        .route(
            "/api/v1/tenants/{name}",
            get(tenants::get_one).put(tenants::update),
        )
        .route(
            "/api/v1/vclusters",
            get(vclusters::list).post(vclusters::create),
        )
        .route(
            "/api/v1/vclusters/{name}",
            get(vclusters::get_one).put(vclusters::update),
        )
        .route(
            "/api/v1/arrays/{id}",
            get(arrays::get_one).delete(arrays::cancel),
        )
        .route("/api/v1/arrays/{id}/hold", post(arrays::hold))
        .route("/api/v1/arrays/{id}/release", post(arrays::release))
        .route("/api/v1/arrays/{id}/requeue", post(arrays::requeue))
        .route("/api/v1/allocations/{id}/hold", post(allocations::hold))
        .route(
            "/api/v1/allocations/{id}/release",
            post(allocations::release),
        )
        .route(
            "/api/v1/allocations/{id}/requeue",
            post(allocations::requeue),
        )
        .layer(DefaultBodyLimit::max(max_body));
    let raft_routes = Router::new()
        .route("/raft/append", post(raft::append))
        .route("/raft/vote", post(raft::vote))
        .route("/raft/snapshot", post(raft::snapshot))
        .route("/raft/propose", post(raft::propose))
        .route("/raft/read_index", post(raft::read_index))
        .route("/raft/audit", get(raft::audit))
        .layer(DefaultBodyLimit::max(256 << 20));
    public
        .merge(policy)
        .merge(raft_routes)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        // After routing (it needs the matched template), inside the metrics layer (refused
        // requests are counted, e.g. `status="401"`).
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::auth::layer,
        ))
        // Last, so it wraps every route and both fallbacks and sees each matched template.
        .layer(axum::middleware::from_fn(crate::metrics::http::track))
        .with_state(app)
}
