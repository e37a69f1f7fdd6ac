//! `/api/v1/claims`: node claims of sensitive tenants. `POST /api/v1/claims` claims nodes
//! for the caller (immediate or refused: 409 naming the holder of each conflicting node, and
//! the refusal is audited); `POST /api/v1/claims/release` gives them back (their agents wipe
//! them first); `GET /api/v1/claims` lists claimed nodes.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use lattice_core::acl::Role;
use lattice_core::audit::AuditAction;
use lattice_core::command::{ClaimSpec, ReleaseSpec};
use lattice_core::{Command, CommandOutcome, Node};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{consistent_read, ApiJson};
use super::{access, App};
use crate::auth::Caller;
use crate::clock;

/// Body of `POST /api/v1/claims`: `nodes` (a count) or `node_ids`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    pub tenant: String,
    #[serde(default)]
    pub nodes: Option<u32>,
    #[serde(default)]
    pub node_ids: Vec<String>,
    /// Admins only: claim for this user.
    #[serde(default)]
    pub user: Option<String>,
}

/// Body of `POST /api/v1/claims/release`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    pub tenant: String,
    /// The nodes to release; absent or empty: every node the holder claimed for the tenant.
    #[serde(default)]
    pub node_ids: Vec<String>,
    /// Whose claims (admins, operators and the tenant's admins may release others').
    #[serde(default)]
    pub user: Option<String>,
}

fn nodes_of(out: CommandOutcome) -> Result<Vec<Node>, ApiError> {
    match out {
        CommandOutcome::Nodes(n) => Ok(n),
        other => Err(ApiError::internal(format!(
            "unexpected apply outcome {other:?}"
        ))),
    }
}

fn forbid_tenant(caller: &Caller, tenant: &str) -> Result<(), ApiError> {
    if caller.sees_tenant(tenant) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "token {} may not act for tenant {tenant:?} (its tenants: {})",
            caller.token_id,
            caller.tenant_scope().unwrap_or_default().join(", ")
        ),
    )
    .with_detail(json!({ "field": "tenant" })))
}

/// Proposes a claim or release; a conflict on a sensitive tenant is audited before the 409.
async fn propose_audited(
    app: &App,
    caller: &Caller,
    cmd: Command,
    tenant: &str,
    nodes: Vec<String>,
    what: &str,
) -> Result<Vec<Node>, ApiError> {
    match app.propose(cmd).await {
        Ok(out) => nodes_of(out),
        Err(e) if e.status == StatusCode::CONFLICT => {
            if app.state.read().state.is_sensitive(tenant) {
                let detail = format!("{what} refused: {}", e.error);
                access::refused(
                    app,
                    caller,
                    tenant,
                    AuditAction::ClaimRefused,
                    nodes,
                    detail,
                )
                .await?;
            }
            Err(e)
        }
        Err(e) => Err(e),
    }
}

pub async fn claim(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    forbid_tenant(&caller, &req.tenant)?;
    let (user, by) = caller
        .submit_as(req.user.as_deref(), &app.cfg.default_user)
        .map_err(|e| {
            ApiError::new(StatusCode::FORBIDDEN, e).with_detail(json!({ "field": "user" }))
        })?;
    let count = match (req.nodes, req.node_ids.is_empty()) {
        (Some(0), _) => return Err(ApiError::bad_request("nodes", "must be at least 1")),
        (Some(_), false) => {
            return Err(ApiError::bad_request(
                "nodes",
                "give a count (nodes) or node_ids, not both",
            ))
        }
        (None, true) => {
            return Err(ApiError::bad_request(
                "nodes",
                "give a count (nodes) or node_ids",
            ))
        }
        (n, _) => n.unwrap_or(0),
    };
    let cmd = Command::ClaimNodes {
        now: clock::now(),
        claim: ClaimSpec {
            tenant: req.tenant.clone(),
            user,
            by,
            count,
            node_ids: req.node_ids.clone(),
        },
    };
    let nodes = propose_audited(&app, &caller, cmd, &req.tenant, req.node_ids, "claim").await?;
    Ok((StatusCode::CREATED, Json(json!({ "nodes": nodes }))))
}

pub async fn release(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<ReleaseRequest>,
) -> Result<Json<Value>, ApiError> {
    forbid_tenant(&caller, &req.tenant)?;
    let me = caller.by(&app.cfg.default_user);
    let may_force = matches!(
        caller.role,
        Role::Admin | Role::Operator | Role::TenantAdmin
    ) || caller.insecure;
    let force = match &req.user {
        Some(u) if *u != me && !may_force => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "a {} token releases only its own claims; admins, operators and the \
                     tenant's admins release others'",
                    caller.role.as_str()
                ),
            )
            .with_detail(json!({ "field": "user" })))
        }
        Some(u) => *u != me,
        // Naming nodes without a user: whoever holds them, if the caller may force.
        None => may_force && !req.node_ids.is_empty(),
    };
    let cmd = Command::ReleaseNodes {
        now: clock::now(),
        release: ReleaseSpec {
            tenant: req.tenant.clone(),
            user: req.user.clone().unwrap_or_else(|| me.clone()),
            node_ids: req.node_ids.clone(),
            by: me,
            force,
        },
    };
    let nodes = propose_audited(&app, &caller, cmd, &req.tenant, req.node_ids, "release").await?;
    Ok(Json(json!({ "nodes": nodes })))
}

pub async fn list(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Query(mut q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    consistent_read(&app, &mut q).await?;
    let tenant = q.remove("tenant");
    if let Some(k) = q.keys().next() {
        return Err(ApiError::bad_request(
            k,
            "unknown query parameter (known: tenant, stale)",
        ));
    }
    let d = app.state.read();
    let claims: Vec<Value> = d
        .state
        .nodes()
        .values()
        .filter_map(|n| n.claim.as_ref().map(|c| (n, c)))
        .filter(|(_, c)| tenant.as_ref().is_none_or(|t| *t == c.tenant))
        .filter(|(_, c)| caller.sees_tenant(&c.tenant))
        .map(|(n, c)| {
            json!({
                "node": n.id,
                "tenant": c.tenant,
                "user": c.user,
                "since": c.since,
                "by": c.by,
                "state": if c.wipe.is_some() { "wiping" } else { "claimed" },
                "wipe": c.wipe,
                "allocations": n.allocations,
            })
        })
        .collect();
    Ok(Json(json!({ "claims": claims })))
}
