//! `/api/v1/tenants`: list, get, create (POST, 409 if the name exists) and change (PUT, 404 if
//! it does not; absent fields keep their value, `null` lifts a quota). Answers show the
//! tenant's running load and decayed fair-share usage per vCluster.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use lattice_core::tenant::TenantRequest;
use lattice_core::views::TenantView;
use lattice_core::{Command, CommandOutcome};
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{consistent_read, ApiJson};
use super::App;
use crate::clock;

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
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    Query(mut q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    consistent_read(&app, &mut q).await?;
    no_query(&q)?;
    let now = clock::now();
    let d = app.state.read();
    let tenants: Vec<TenantView> = d
        .state
        .tenants()
        .values()
        .filter(|t| caller.sees_tenant(&t.name))
        .map(|t| TenantView::of(&d.state, t, now))
        .collect();
    Ok(Json(json!({ "tenants": tenants })))
}

pub async fn get_one(
    State(app): State<App>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    Path(name): Path<String>,
    Query(mut q): Query<HashMap<String, String>>,
) -> Result<Json<TenantView>, ApiError> {
    consistent_read(&app, &mut q).await?;
    no_query(&q)?;
    let d = app.state.read();
    let t = d
        .state
        .tenant(&name)
        .filter(|t| caller.sees_tenant(&t.name))
        .ok_or_else(|| ApiError::not_found("tenant", &name))?;
    Ok(Json(TenantView::of(&d.state, t, clock::now())))
}

async fn put(
    app: &App,
    name: String,
    req: TenantRequest,
    create: bool,
) -> Result<TenantView, ApiError> {
    let change = req.into_change()?;
    let out = app
        .propose(Command::PutTenant {
            now: clock::now(),
            name,
            change,
            create,
        })
        .await?;
    match out {
        CommandOutcome::Tenant(t) => Ok(TenantView::of(&app.state.read().state, &t, clock::now())),
        other => Err(ApiError::internal(format!(
            "unexpected apply outcome {other:?}"
        ))),
    }
}

pub async fn create(
    State(app): State<App>,
    ApiJson(req): ApiJson<TenantRequest>,
) -> Result<(StatusCode, Json<TenantView>), ApiError> {
    let name = req
        .name
        .clone()
        .ok_or_else(|| ApiError::bad_request("name", "is required"))?;
    Ok((StatusCode::CREATED, Json(put(&app, name, req, true).await?)))
}

pub async fn update(
    State(app): State<App>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<TenantRequest>,
) -> Result<Json<TenantView>, ApiError> {
    if req.name.as_ref().is_some_and(|n| *n != name) {
        return Err(ApiError::bad_request("name", "cannot rename a tenant"));
    }
    Ok(Json(put(&app, name, req, false).await?))
}
