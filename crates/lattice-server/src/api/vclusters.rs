//! `/api/v1/vclusters`: list, get, create (POST, 409 if the name exists) and change (PUT, 404
//! if it does not; absent fields keep their value). `default` always exists and always holds
//! every node. Answers show how many nodes belong to the vCluster now and its queue length,
//! and `preemption` (whether pending work may preempt running work there).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use lattice_core::vcluster::VClusterRequest;
use lattice_core::views::VClusterView;
use lattice_core::{ClusterState, Command, CommandOutcome, VCluster};
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{consistent_read, ApiJson};
use super::App;
use crate::clock;

/// The answer for one vCluster.
fn answer(state: &ClusterState, v: &VCluster) -> Result<Value, ApiError> {
    serde_json::to_value(VClusterView::of(state, v)).map_err(ApiError::internal)
}

fn no_query(q: &HashMap<String, String>) -> Result<(), ApiError> {
    match q.keys().next() {
        Some(k) => Err(ApiError::bad_request(
            k,
            "unknown query parameter (known: stale)",
        )),
        None => Ok(()),
    }
}

pub async fn list(
    State(app): State<App>,
    Query(mut q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    consistent_read(&app, &mut q).await?;
    no_query(&q)?;
    let d = app.state.read();
    let vclusters = d
        .state
        .vclusters()
        .values()
        .map(|v| answer(&d.state, v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "vclusters": vclusters })))
}

pub async fn get_one(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(mut q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    consistent_read(&app, &mut q).await?;
    no_query(&q)?;
    let d = app.state.read();
    let v = d
        .state
        .vcluster(&name)
        .ok_or_else(|| ApiError::not_found("vCluster", &name))?;
    Ok(Json(answer(&d.state, v)?))
}

async fn put(
    app: &App,
    name: String,
    req: VClusterRequest,
    create: bool,
) -> Result<Value, ApiError> {
    let change = req.into_change()?;
    let out = app
        .propose(Command::PutVCluster {
            now: clock::now(),
            name,
            change,
            create,
        })
        .await?;
    match out {
        CommandOutcome::VCluster(v) => answer(&app.state.read().state, &v),
        other => Err(ApiError::internal(format!(
            "unexpected apply outcome {other:?}"
        ))),
    }
}

pub async fn create(
    State(app): State<App>,
    ApiJson(req): ApiJson<VClusterRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = req
        .name
        .clone()
        .ok_or_else(|| ApiError::bad_request("name", "is required"))?;
    Ok((StatusCode::CREATED, Json(put(&app, name, req, true).await?)))
}

pub async fn update(
    State(app): State<App>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<VClusterRequest>,
) -> Result<Json<Value>, ApiError> {
    if req.name.as_ref().is_some_and(|n| *n != name) {
        return Err(ApiError::bad_request("name", "cannot rename a vCluster"));
    }
    Ok(Json(put(&app, name, req, false).await?))
}
