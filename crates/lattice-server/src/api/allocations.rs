//! `/api/v1/allocations`: submit (one allocation or a whole array, with dependencies, held),
//! list, get, cancel, hold / release / requeue, on-demand checkpoints, and logs (fetched from the agent that ran the
//! allocation). An allocation in a path is `42`, or `42_7` for task 7 of array 42.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use lattice_core::audit::AuditAction;
use lattice_core::state::AllocationFilter;
use lattice_core::submit::SubmitRequest;
use lattice_core::{AllocId, AllocState, Allocation, Command, CommandOutcome, JobRef, Target};
use serde_json::json;

use super::error::ApiError;
use super::extract::{consistent_read, ApiJson};
use super::{access, App};
use crate::auth::Caller;
use crate::clock;

const DEFAULT_PAGE: usize = 100;

fn outcome_allocation(o: CommandOutcome) -> Result<Allocation, ApiError> {
    match o {
        CommandOutcome::Allocation(a) => Ok(*a),
        other => Err(ApiError::internal(format!(
            "unexpected apply outcome {other:?}"
        ))),
    }
}

pub async fn submit(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<SubmitRequest>,
) -> Result<(StatusCode, Json<Allocation>), ApiError> {
    let mut req = req;
    let (user, submitted_by) = caller
        .submit_as(req.user.as_deref(), &app.cfg.default_user)
        .map_err(|e| {
            ApiError::new(StatusCode::FORBIDDEN, e).with_detail(json!({ "field": "user" }))
        })?;
    req.user = Some(user);
    let (spec, mut options) = req.into_submission(&app.cfg.default_user)?;
    if !caller.sees_tenant(&spec.tenant) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "token {} may not submit to tenant {:?} (its tenants: {})",
                caller.token_id,
                spec.tenant,
                caller.tenant_scope().unwrap_or_default().join(", ")
            ),
        )
        .with_detail(json!({ "field": "tenant" })));
    }
    options.submitted_by = submitted_by;
    // Only admins may create tenants by submitting to them.
    options.create_tenant = app.cfg.auto_create_tenants && caller.tenant_scope().is_none();
    let out = app
        .propose(Command::Submit {
            now: clock::now(),
            spec,
            options,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(outcome_allocation(out)?)))
}

/// Like [`resolve`], for `caller`: an allocation of a tenant the caller may not see answers
/// the same 404 as one that does not exist, so IDs do not leak across tenants.
/// The allocation a path names, if `caller` may see it: another tenant's answers 404 like a
/// missing one (and, for a sensitive tenant, the refused attempt `what` is audited first).
pub(super) async fn resolve_for(
    app: &App,
    caller: &Caller,
    text: &str,
    what: &str,
) -> Result<AllocId, ApiError> {
    let id = resolve(app, text)?;
    if caller.tenant_scope().is_none() {
        return Ok(id);
    }
    let visible = match app.state.read().state.allocation(id) {
        Some(a) if caller.sees_tenant(&a.tenant) => Some(true),
        Some(_) => Some(false),
        None => None,
    };
    match visible {
        Some(true) => Ok(id),
        Some(false) => {
            access::denied(app, caller, id, what).await?;
            Err(ApiError::not_found("allocation", text))
        }
        None => Err(ApiError::not_found("allocation", text)),
    }
}

/// The allocation a path segment names: `42`, or `42_7` (the current element of array 42
/// with task index 7; 404 if there is none).
pub(super) fn resolve(app: &App, text: &str) -> Result<AllocId, ApiError> {
    match JobRef::parse(text).map_err(|e| ApiError::bad_request("id", e))? {
        JobRef::Id(id) => Ok(id),
        r => app
            .state
            .read()
            .state
            .resolve_ref(r)
            .map(|a| a.id)
            .ok_or_else(|| ApiError::not_found("allocation", text)),
    }
}

fn parse_filter(app: &App, q: HashMap<String, String>) -> Result<AllocationFilter, ApiError> {
    let mut f = AllocationFilter {
        limit: DEFAULT_PAGE.min(app.cfg.max_page_size),
        ..Default::default()
    };
    for (k, v) in q {
        match k.as_str() {
            "state" => {
                f.state = Some(AllocState::parse(&v).ok_or_else(|| {
                    let known: Vec<&str> = AllocState::ALL.iter().map(|s| s.as_str()).collect();
                    ApiError::bad_request(
                        "state",
                        format!("{v:?} is not one of {}", known.join(", ")),
                    )
                })?)
            }
            "tenant" => f.tenant = Some(v),
            "user" => f.user = Some(v),
            "vcluster" => f.vcluster = Some(v),
            "array" => {
                f.array = Some(v.parse().map_err(|_| {
                    ApiError::bad_request("array", format!("{v:?} is not an array ID"))
                })?)
            }
            "limit" => {
                let n: usize = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ApiError::bad_request("limit", format!("{v:?} is not a positive integer"))
                })?;
                f.limit = n.min(app.cfg.max_page_size);
            }
            "cursor" => {
                f.after = Some(v.parse().map_err(|_| {
                    ApiError::bad_request(
                        "cursor",
                        format!("{v:?} is not a cursor from a previous page"),
                    )
                })?)
            }
            other => {
                return Err(ApiError::bad_request(
                    other,
                    "unknown query parameter (known: state, tenant, user, vcluster, array, limit, cursor, stale)",
                ))
            }
        }
    }
    Ok(f)
}

pub async fn list(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Query(mut q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    consistent_read(&app, &mut q).await?;
    let mut f = parse_filter(&app, q)?;
    f.tenants = caller.tenant_scope().map(<[String]>::to_vec);
    let (page, more): (Vec<Allocation>, bool) = {
        let d = app.state.read();
        let (page, more) = d.state.list_allocations(&f);
        (page.into_iter().cloned().collect(), more)
    };
    access::listed(&app, &caller, &page).await?;
    let next = if more {
        page.last().map(|a| a.id.to_string())
    } else {
        None
    };
    Ok(Json(json!({ "allocations": page, "next_cursor": next })))
}

pub async fn get_one(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(mut q): Query<HashMap<String, String>>,
) -> Result<Json<Allocation>, ApiError> {
    consistent_read(&app, &mut q).await?;
    let id = resolve_for(&app, &caller, &id, "GET /api/v1/allocations/{id}").await?;
    if let Some(k) = q.keys().next() {
        return Err(ApiError::bad_request(
            k,
            "unknown query parameter (known: stale)",
        ));
    }
    access::read(&app, &caller, id, AuditAction::StatusRead, "status".into()).await?;
    let d = app.state.read();
    d.state
        .allocation(id)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::not_found("allocation", id))
}

pub async fn cancel(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Allocation>, ApiError> {
    let id = resolve_for(&app, &caller, &id, "DELETE /api/v1/allocations/{id}").await?;
    let out = app
        .propose(Command::CancelAllocation {
            now: clock::now(),
            id,
            by: caller.by(&app.cfg.default_user),
        })
        .await?;
    Ok(Json(outcome_allocation(out)?))
}

pub async fn logs(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let id = resolve_for(&app, &caller, &id, "GET /api/v1/allocations/{id}/logs").await?;
    let mut stream = "stdout".to_string();
    let mut node: Option<String> = None;
    for (k, v) in q {
        match k.as_str() {
            "stream" if v == "stdout" || v == "stderr" => stream = v,
            "stream" => {
                return Err(ApiError::bad_request(
                    "stream",
                    format!("{v:?} is not stdout or stderr"),
                ))
            }
            "node" => node = Some(v),
            other => {
                return Err(ApiError::bad_request(
                    other,
                    "unknown query parameter (known: stream, node)",
                ))
            }
        }
    }
    let (node_id, agent_url, node_key) = {
        let d = app.state.read();
        let a = d
            .state
            .allocation(id)
            .ok_or_else(|| ApiError::not_found("allocation", id))?;
        let node_id = match node {
            Some(n) if a.assigned_nodes.contains(&n) => n,
            Some(n) => {
                return Err(ApiError::bad_request(
                    "node",
                    format!("allocation {id} did not run on node {n:?}"),
                ))
            }
            None => a.assigned_nodes.first().cloned().ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    format!("allocation {id} has not started; it has no output yet"),
                )
            })?,
        };
        let node = d
            .state
            .node(&node_id)
            .ok_or_else(|| ApiError::not_found("node", &node_id))?;
        // The agent serves logs to whoever knows its token's hash: the control plane.
        let key = node
            .agent_token
            .as_deref()
            .and_then(|t| d.state.acl().get(t))
            .map(|t| t.hash.clone());
        (node_id, node.agent_url.clone(), key)
    };
    let detail = format!("{stream} of node {node_id}");
    access::read(&app, &caller, id, AuditAction::LogsRead, detail).await?;
    let mut req = app.http.get(format!("{agent_url}/allocations/{id}/logs"));
    if let Some(k) = node_key {
        req = req.header("x-lattice-node-key", k);
    }
    let resp = req
        .query(&[("node", node_id.as_str()), ("stream", stream.as_str())])
        .send()
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("cannot reach the agent of node {node_id} at {agent_url}: {e}"),
            )
        })?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("reading logs from node {node_id}: {e}"),
        )
    })?;
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("node {node_id} has no {stream} for allocation {id}"),
        ));
    }
    if !status.is_success() {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("agent of node {node_id} answered {status}"),
        ));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

/// `POST /api/v1/allocations/{id}/hold` and `/release`.
async fn set_hold(
    app: App,
    caller: Caller,
    id: String,
    hold: bool,
) -> Result<Json<Allocation>, ApiError> {
    let id = resolve_for(&app, &caller, &id, "hold or release of allocation").await?;
    let out = app
        .propose(Command::SetHold {
            now: clock::now(),
            target: Target::Allocation(id),
            hold,
            by: caller.by(&app.cfg.default_user),
        })
        .await?;
    Ok(Json(outcome_allocation(out)?))
}

pub async fn hold(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Allocation>, ApiError> {
    set_hold(app, caller, id, true).await
}

pub async fn release(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Allocation>, ApiError> {
    set_hold(app, caller, id, false).await
}

/// `POST /api/v1/allocations/{id}/requeue`: answers the NEW allocation (201).
pub async fn requeue(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Allocation>), ApiError> {
    let id = resolve_for(&app, &caller, &id, "POST /api/v1/allocations/{id}/requeue").await?;
    let out = app
        .propose(Command::Requeue {
            now: clock::now(),
            target: Target::Allocation(id),
            by: caller.by(&app.cfg.default_user),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(outcome_allocation(out)?)))
}

/// `POST /api/v1/allocations/{id}/checkpoint`: asks the agents of a running allocation
/// submitted with `checkpoint: signal` to checkpoint it now. Answers 202 with the allocation:
/// the checkpoint itself happens later, on the nodes; its `checkpoint_requests` is the number
/// of this request, which `last_checkpoint.trigger` names (`{"request": N}`) once the round
/// ended. 409 if it is not running or not checkpointable.
pub async fn checkpoint(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Allocation>), ApiError> {
    let id = resolve_for(
        &app,
        &caller,
        &id,
        "POST /api/v1/allocations/{id}/checkpoint",
    )
    .await?;
    let out = app
        .propose(Command::RequestCheckpoint {
            now: clock::now(),
            id,
            by: caller.by(&app.cfg.default_user),
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(outcome_allocation(out)?)))
}
