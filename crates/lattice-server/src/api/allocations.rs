//! `/api/v1/allocations`: submit, list, get, cancel, and logs (fetched from the agent that ran
//! the allocation).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lattice_core::state::AllocationFilter;
use lattice_core::submit::SubmitRequest;
use lattice_core::{AllocState, Allocation, Command, CommandOutcome};
use serde_json::json;

use super::error::ApiError;
use super::extract::{alloc_id, consistent_read, ApiJson};
use super::App;
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
    ApiJson(req): ApiJson<SubmitRequest>,
) -> Result<(StatusCode, Json<Allocation>), ApiError> {
    let spec = req.into_spec(&app.cfg.default_user)?;
    let out = app
        .propose(Command::SubmitAllocation {
            now: clock::now(),
            spec,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(outcome_allocation(out)?)))
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
                    ApiError::bad_request(
                        "state",
                        format!(
                            "{v:?} is not one of pending, running, completed, failed, cancelled"
                        ),
                    )
                })?)
            }
            "tenant" => f.tenant = Some(v),
            "user" => f.user = Some(v),
            "vcluster" => f.vcluster = Some(v),
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
                    "unknown query parameter (known: state, tenant, user, vcluster, limit, cursor, stale)",
                ))
            }
        }
    }
    Ok(f)
}

pub async fn list(
    State(app): State<App>,
    Query(mut q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    consistent_read(&app, &mut q).await?;
    let f = parse_filter(&app, q)?;
    let d = app.state.read();
    let (page, more) = d.state.list_allocations(&f);
    let next = if more {
        page.last().map(|a| a.id.to_string())
    } else {
        None
    };
    Ok(Json(json!({ "allocations": page, "next_cursor": next })))
}

pub async fn get_one(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(mut q): Query<HashMap<String, String>>,
) -> Result<Json<Allocation>, ApiError> {
    let id = alloc_id(&id)?;
    consistent_read(&app, &mut q).await?;
    if let Some(k) = q.keys().next() {
        return Err(ApiError::bad_request(
            k,
            "unknown query parameter (known: stale)",
        ));
    }
    let d = app.state.read();
    d.state
        .allocation(id)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::not_found("allocation", id))
}

pub async fn cancel(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Allocation>, ApiError> {
    let id = alloc_id(&id)?;
    let out = app
        .propose(Command::CancelAllocation {
            now: clock::now(),
            id,
            by: app.cfg.default_user.clone(),
        })
        .await?;
    Ok(Json(outcome_allocation(out)?))
}

pub async fn logs(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let id = alloc_id(&id)?;
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
    let (node_id, agent_url) = {
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
        let url = d
            .state
            .node(&node_id)
            .map(|n| n.agent_url.clone())
            .ok_or_else(|| ApiError::not_found("node", &node_id))?;
        (node_id, url)
    };
    let resp = app
        .http
        .get(format!("{agent_url}/allocations/{id}/logs"))
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
