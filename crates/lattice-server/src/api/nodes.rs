//! `/api/v1/nodes`: list, get, drain and undrain. `last_heartbeat` shows the live value from
//! this member's heartbeat table when it has one (heartbeats do not go through Raft).

use axum::body::Bytes;
use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use lattice_core::{Command, CommandOutcome, Node};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{consistent_read, parse_json};
use super::App;
use crate::auth::Caller;
use crate::clock;

fn with_live_heartbeat(app: &App, mut n: Node) -> Node {
    if let Some(t) = app.heartbeats.last_seen_at(&n.id) {
        if n.last_heartbeat.is_none_or(|r| t > r) {
            n.last_heartbeat = Some(t);
        }
    }
    n
}

/// A user sees the nodes, but only the allocations on them that belong to its tenants (IDs
/// of other tenants' work do not leak).
fn scoped(app: &App, caller: &Caller, mut n: Node) -> Node {
    if caller.tenant_scope().is_some() {
        let d = app.state.read();
        n.allocations.retain(|id| {
            d.state
                .allocation(*id)
                .is_some_and(|a| caller.sees_tenant(&a.tenant))
        });
    }
    with_live_heartbeat(app, n)
}

pub async fn list(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Query(mut q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    consistent_read(&app, &mut q).await?;
    let nodes: Vec<Node> = {
        let d = app.state.read();
        d.state.nodes().values().cloned().collect()
    };
    let nodes: Vec<Node> = nodes
        .into_iter()
        .map(|n| scoped(&app, &caller, n))
        .collect();
    Ok(Json(json!({ "nodes": nodes })))
}

pub async fn get_one(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(mut q): Query<HashMap<String, String>>,
) -> Result<Json<Node>, ApiError> {
    consistent_read(&app, &mut q).await?;
    let n = app
        .state
        .read()
        .state
        .node(&id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("node", &id))?;
    Ok(Json(scoped(&app, &caller, n)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DrainBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn set_drain(app: App, id: String, drain: bool, body: Bytes) -> Result<Json<Node>, ApiError> {
    let body: DrainBody = if body.iter().all(u8::is_ascii_whitespace) {
        DrainBody::default()
    } else {
        parse_json(&body)?
    };
    if let Some(r) = &body.reason {
        if r.len() > 256 {
            return Err(ApiError::bad_request("reason", "at most 256 characters"));
        }
    }
    let out = app
        .propose(Command::SetNodeDrain {
            now: clock::now(),
            node_id: id,
            drain,
            reason: body.reason,
        })
        .await?;
    match out {
        CommandOutcome::Node(n) => Ok(Json(with_live_heartbeat(&app, *n))),
        other => Err(ApiError::internal(format!(
            "unexpected apply outcome {other:?}"
        ))),
    }
}

pub async fn drain(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Node>, ApiError> {
    set_drain(app, id, true, body).await
}

pub async fn undrain(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Node>, ApiError> {
    set_drain(app, id, false, body).await
}
