//! `/api/v1/agent/*`: the agent protocol. Registration goes through Raft; heartbeats only
//! refresh this member's in-memory table (nothing per-heartbeat is replicated) unless they
//! carry checkpoint or exit reports; the work long-poll answers as soon as the work of the
//! asking agent's nodes changes (new assignments, stops, wipe orders); wipe reports go
//! through Raft.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use lattice_core::agent::{
    HeartbeatRequest, HeartbeatResponse, WipeReportRequest, WipeReportResponse, WorkRequest,
    WorkResponse,
};
use lattice_core::{Command, CommandOutcome, Node, NodeId, NodeRegistration};

use super::error::ApiError;
use super::extract::{parse_json, ApiBody, ApiJson};
use super::report_batch;
use super::App;
use crate::auth::Caller;
use crate::{clock, forward};

/// A heartbeat forwarded to a leader that does not answer fails fast, so the agent retries
/// (another member, or the new leader) well before its node could be judged down.
const HEARTBEAT_FORWARD_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest long-poll a client may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Most nodes one agent request may name.
const MAX_NODES_PER_REQUEST: usize = 100_000;
/// Longest `detail` of a wipe report, in bytes (the agent sends a few hundred).
const MAX_WIPE_DETAIL_BYTES: usize = 4096;

fn check_nodes(nodes: &[String]) -> Result<(), ApiError> {
    if nodes.is_empty() {
        return Err(ApiError::bad_request(
            "nodes",
            "must name at least one node",
        ));
    }
    if nodes.len() > MAX_NODES_PER_REQUEST {
        return Err(ApiError::bad_request(
            "nodes",
            format!("at most {MAX_NODES_PER_REQUEST} nodes per request"),
        ));
    }
    Ok(())
}

/// An agent token acts only for its own nodes: 403 naming the first node it does not cover.
fn check_scope<'a>(
    caller: &Caller,
    nodes: impl IntoIterator<Item = &'a String>,
) -> Result<(), ApiError> {
    for n in nodes {
        if !caller.covers_node(n) {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                format!(
                    "forbidden: token {} ({}) may not act for node {n:?}",
                    caller.token_id, caller.subject
                ),
            )
            .with_detail(serde_json::json!({ "field": "node", "node": n })));
        }
    }
    Ok(())
}

pub async fn register(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    ApiJson(mut reg): ApiJson<NodeRegistration>,
) -> Result<Json<Node>, ApiError> {
    check_scope(&caller, [&reg.id])?;
    // Never from the body: the token this request authenticated with.
    reg.agent_token = (!caller.insecure).then(|| caller.token_id.clone());
    if !(reg.agent_url.starts_with("http://") || reg.agent_url.starts_with("https://")) {
        return Err(ApiError::bad_request(
            "agent_url",
            "must be an http:// or https:// URL",
        ));
    }
    // Heard from now, before the proposal: once it commits, the failure detector must not
    // find a registered node it never heard from (it would mark it down until its first
    // heartbeat).
    app.heartbeats.seen(std::slice::from_ref(&reg.id));
    let out = app
        .propose(Command::RegisterNode {
            now: clock::now(),
            registration: reg,
        })
        .await?;
    match out {
        CommandOutcome::Node(n) => Ok(Json(*n)),
        other => Err(ApiError::internal(format!(
            "unexpected apply outcome {other:?}"
        ))),
    }
}

pub async fn heartbeat(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    headers: axum::http::HeaderMap,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    let hb: HeartbeatRequest = parse_json(&body)?;
    check_nodes(&hb.nodes)?;
    check_scope(
        &caller,
        hb.nodes
            .iter()
            .chain(hb.reports.iter().map(|r| &r.node_id))
            .chain(hb.checkpoints.iter().map(|c| &c.node_id)),
    )?;
    // The leader owns the heartbeat table (it runs the failure detector): forward to it.
    if let Some(r) = forward::to_leader(
        &app,
        Method::POST,
        "/api/v1/agent/heartbeat",
        &headers,
        body.clone(),
        HEARTBEAT_FORWARD_TIMEOUT,
    )
    .await
    {
        return r;
    }
    let unknown: Vec<String> = {
        let d = app.state.read();
        hb.nodes
            .iter()
            .filter(|n| d.state.node(n).is_none())
            .cloned()
            .collect()
    };
    app.heartbeats.seen(&hb.nodes);
    // Checkpoints first: a rank that checkpointed and then stopped for a preemption reports
    // both in one heartbeat, and its round must conclude before its exit moves the allocation.
    if !hb.checkpoints.is_empty() {
        let out = app
            .propose(Command::ReportCheckpoints {
                now: clock::now(),
                reports: hb.checkpoints,
            })
            .await?;
        report_batch::observe(&out);
    }
    if !hb.reports.is_empty() {
        // Committed together with other agents' reports (one Raft entry per batch).
        report_batch::submit(&app, hb.reports).await?;
    }
    Ok(Json(HeartbeatResponse {
        unknown_nodes: unknown,
    })
    .into_response())
}

pub async fn work(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<WorkRequest>,
) -> Result<Json<WorkResponse>, ApiError> {
    check_nodes(&req.nodes)?;
    check_scope(&caller, &req.nodes)?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(req.wait_ms).min(MAX_WAIT);
    let mut stop = app.stop.clone();
    // Shared with the poll's registration below (no copy of the names).
    let nodes: Arc<[NodeId]> = req.nodes.into();
    let answer = |d: &crate::raft::state_machine::SmData| {
        if req.changed_only {
            d.state.work_changed_since(&nodes, req.known_revision)
        } else {
            d.state.work_for(&nodes)
        }
    };
    // Woken only when one of these nodes' work changes (not at every applied entry). A poll
    // answered at once registers nothing.
    let mut watch = None;
    loop {
        let w = {
            let d = app.state.read();
            if d.state.work_stale(&nodes, req.known_revision)
                || tokio::time::Instant::now() >= deadline
                || app.is_shutting_down()
            {
                return Ok(Json(answer(&d)));
            }
            // Registered while the state is read-locked: apply (which takes the write lock,
            // then wakes the changed nodes' polls) cannot change these nodes' work between the
            // look above and the registration, so no change goes unnoticed.
            &*watch.get_or_insert_with(|| app.state.work_waiters().watch(nodes.clone()))
        };
        tokio::select! {
            () = w.changed() => {}
            _ = stop.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// `POST /api/v1/agent/wipes`: wipes that ended on the agent's nodes, committed in one Raft
/// entry. Reports of wipes no longer pending are counted as ignored, so agents resend safely.
pub async fn wipes(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<WipeReportRequest>,
) -> Result<Json<WipeReportResponse>, ApiError> {
    if req.reports.is_empty() {
        return Err(ApiError::bad_request(
            "reports",
            "must carry at least one report",
        ));
    }
    if req.reports.len() > MAX_NODES_PER_REQUEST {
        return Err(ApiError::bad_request(
            "reports",
            format!("at most {MAX_NODES_PER_REQUEST} reports per request"),
        ));
    }
    if req
        .reports
        .iter()
        .any(|r| r.detail.len() > MAX_WIPE_DETAIL_BYTES)
    {
        return Err(ApiError::bad_request(
            "detail",
            format!("at most {MAX_WIPE_DETAIL_BYTES} bytes"),
        ));
    }
    check_scope(&caller, req.reports.iter().map(|r| &r.node_id))?;
    let out = app
        .propose(Command::ReportWipes {
            now: clock::now(),
            reports: req.reports,
        })
        .await?;
    match out {
        CommandOutcome::Reports {
            applied, ignored, ..
        } => Ok(Json(WipeReportResponse { applied, ignored })),
        other => Err(ApiError::internal(format!(
            "unexpected apply outcome {other:?}"
        ))),
    }
}
