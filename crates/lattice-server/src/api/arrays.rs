//! `/api/v1/arrays/{id}`: a job array as a whole: its summary and elements, cancel (DELETE),
//! hold, release and requeue of every element. (Single elements are allocations: use
//! `/api/v1/allocations/{id}_{index}`.)

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use lattice_core::audit::AuditAction;
use lattice_core::views::ArrayView;
use lattice_core::{AllocId, Command, CommandOutcome, Target};
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::consistent_read;
use super::App;
use crate::auth::Caller;
use crate::clock;

/// The array a path names, if `caller` may see it: another tenant's array answers 404 like a
/// missing one. (An array's ID is its first element's allocation ID.)
fn visible_array(app: &App, caller: &Caller, text: &str) -> Result<AllocId, ApiError> {
    let id = array_id(text)?;
    if caller.tenant_scope().is_some() {
        let d = app.state.read();
        let seen = d
            .state
            .allocation(id)
            .is_some_and(|a| caller.sees_tenant(&a.tenant));
        if !seen {
            return Err(ApiError::not_found("array", id));
        }
    }
    Ok(id)
}

fn array_id(text: &str) -> Result<AllocId, ApiError> {
    match text.parse::<u64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(ApiError::bad_request(
            "id",
            format!("{text:?} is not an array ID (a positive integer)"),
        )),
    }
}

/// The answer to an operation on a whole array: which allocations it changed.
fn changed(out: CommandOutcome) -> Result<Json<Value>, ApiError> {
    match out {
        CommandOutcome::Array { array_id, changed } => {
            Ok(Json(json!({ "array_id": array_id, "changed": changed })))
        }
        other => Err(ApiError::internal(format!(
            "unexpected apply outcome {other:?}"
        ))),
    }
}

pub async fn get_one(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(mut q): Query<HashMap<String, String>>,
) -> Result<Json<ArrayView>, ApiError> {
    consistent_read(&app, &mut q).await?;
    let id = visible_array(&app, &caller, &id)?;
    if let Some(k) = q.keys().next() {
        return Err(ApiError::bad_request(
            k,
            "unknown query parameter (known: stale)",
        ));
    }
    let detail = "array status".to_string();
    super::access::read(&app, &caller, id, AuditAction::StatusRead, detail).await?;
    let d = app.state.read();
    ArrayView::of(&d.state, id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("array", id))
}

pub async fn cancel(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let array_id = visible_array(&app, &caller, &id)?;
    let out = app
        .propose(Command::CancelArray {
            now: clock::now(),
            array_id,
            by: caller.by(&app.cfg.default_user),
        })
        .await?;
    changed(out)
}

async fn set_hold(
    app: App,
    caller: Caller,
    id: String,
    hold: bool,
) -> Result<Json<Value>, ApiError> {
    let id = visible_array(&app, &caller, &id)?;
    let out = app
        .propose(Command::SetHold {
            now: clock::now(),
            target: Target::Array(id),
            hold,
            by: caller.by(&app.cfg.default_user),
        })
        .await?;
    changed(out)
}

pub async fn hold(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_hold(app, caller, id, true).await
}

pub async fn release(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_hold(app, caller, id, false).await
}

/// Requeues every running or ended element; `changed` lists the new allocations.
pub async fn requeue(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = visible_array(&app, &caller, &id)?;
    let out = app
        .propose(Command::Requeue {
            now: clock::now(),
            target: Target::Array(id),
            by: caller.by(&app.cfg.default_user),
        })
        .await?;
    Ok((StatusCode::CREATED, changed(out)?))
}
