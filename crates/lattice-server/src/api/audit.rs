//! `/api/v1/audit`: the audit log of sensitive tenants (docs/audit.md).
//!
//! - `GET /api/v1/audit`: a page of entries in `(time, seq)` order, scoped to the caller
//!   (`audit::scope`), with the signed chain head. The query is itself recorded
//!   (`access.audit`) before it is answered, and the read is linearized after that, so the
//!   answer includes it.
//! - `GET /api/v1/audit/pubkey`: the member's Ed25519 public key.
//! - `GET /api/v1/audit/sign?seq=N`: a signature over stored entry N's hash (the trailer of
//!   `lattice audit export`).
//! - `GET /api/v1/audit/verify` (admin): this member walks its stored chain.
//! - `POST /api/v1/audit/prune` (admin): the retention pass, now (on the leader).
//!
//! A member that still lacks entries after a snapshot install forwards queries and
//! signatures to the leader, so answers are the same from every member.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use lattice_core::audit::{AuditAction, AuditRecord};
use lattice_core::Command;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::parse_json;
use super::App;
use crate::audit::params::{self, encode_cursor, ParamError};
use crate::audit::retention;
use crate::audit::scope::{filter_for, sees};
use crate::audit::verify::verify_stored;
use crate::audit::{query, AuditError};
use crate::auth::Caller;
use crate::{clock, forward};

/// How long a forwarded query or prune may take on the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(600);

type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        ApiError::bad_request(&e.param, e.why)
    }
}

impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Propose(m) => ApiError::unavailable(m),
            other => ApiError::internal(other),
        }
    }
}

fn pairs(q: Pairs) -> Result<Vec<(String, String)>, ApiError> {
    q.map(|Query(p)| p).map_err(|r| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("malformed query string: {}", r.body_text()),
        )
    })
}

/// Runs store work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AuditError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)??)
}

/// Forwards the request to the leader when this member still lacks entries (and the leader
/// is another member); `None`: answer here.
async fn forward_if_missing(
    app: &App,
    needs: impl Fn(crate::audit::gap::Gap) -> bool,
    method: Method,
    uri: &OriginalUri,
    headers: &HeaderMap,
    body: Bytes,
) -> Option<Result<Response, ApiError>> {
    let gap = app.audit.store.gap().filter(|g| needs(*g))?;
    tracing::debug!(
        from = gap.from,
        to = gap.to,
        "audit request forwarded to the leader"
    );
    let path = uri.path_and_query().map_or("/api/v1/audit", |p| p.as_str());
    forward::to_leader(app, method, path, headers, body, FORWARD_TIMEOUT).await
}

pub async fn query(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    uri: OriginalUri,
    headers: HeaderMap,
    q: Pairs,
) -> Result<Response, ApiError> {
    let q = params::parse_query(&pairs(q)?)?;
    if let Some(r) =
        forward_if_missing(&app, |_| true, Method::GET, &uri, &headers, Bytes::new()).await
    {
        return r;
    }
    let record = AuditRecord {
        tenant: q.tenant.clone().unwrap_or_else(|| "*".to_string()),
        user: caller.by(&app.cfg.default_user),
        action: AuditAction::AuditQueried,
        allocation: None,
        nodes: Vec::new(),
        detail: uri.query().unwrap_or("").to_string(),
    };
    app.propose(Command::RecordAudit {
        now: clock::now(),
        records: vec![record],
    })
    .await?;
    app.linearize(false).await?;
    let filter = filter_for(&q, &caller);
    let a = app.clone();
    let (head, page) = blocking(move || {
        let (head, tx) = a.audit.consistent_read(&a.state)?;
        let page = query::page(&tx, &filter)?;
        Ok((head, page))
    })
    .await?;
    let signed = app.audit.signer.sign_head(head.count(), &head.head_hash);
    Ok(Json(json!({
        "entries": page.entries,
        "next_cursor": page.next.map(encode_cursor),
        "head": signed,
    }))
    .into_response())
}

pub async fn pubkey(State(app): State<App>) -> Json<serde_json::Value> {
    Json(json!({
        "algorithm": "ed25519",
        "public_key": app.audit.signer.public_key(),
    }))
}

pub async fn sign(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    uri: OriginalUri,
    headers: HeaderMap,
    q: Pairs,
) -> Result<Response, ApiError> {
    let seq = params::parse_seq(&pairs(q)?)?;
    if let Some(r) = forward_if_missing(
        &app,
        |g| g.contains(seq),
        Method::GET,
        &uri,
        &headers,
        Bytes::new(),
    )
    .await
    {
        return r;
    }
    app.linearize(false).await?;
    let store = app.audit.store.clone();
    let entry = blocking(move || Ok(store.get(seq)?)).await?;
    // Another user's or tenant's entry answers like a missing one.
    let Some(e) = entry.filter(|e| sees(&caller, e)) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("audit entry {seq} not found (pruned, not yet written, or not visible to this token)"),
        )
        .with_detail(json!({ "kind": "audit entry", "id": seq.to_string() })));
    };
    Ok(Json(app.audit.signer.sign_head(e.seq, &e.hash)).into_response())
}

/// Answers from this member's own rows (no leader needed: it checks this member's copy).
pub async fn verify(State(app): State<App>) -> Result<Json<serde_json::Value>, ApiError> {
    let a = app.clone();
    let (head, report) = blocking(move || {
        let (head, tx) = a.audit.consistent_read(&a.state)?;
        let report = verify_stored(&tx, &head, a.audit.store.gap())?;
        Ok((head, report))
    })
    .await?;
    if let Some(e) = &report.error {
        tracing::warn!(seq = e.seq, why = %e.why, "the stored audit chain does not verify");
    }
    Ok(Json(json!({
        "ok": report.error.is_none(),
        "entries": report.entries,
        "first_seq": report.first_seq,
        "last_seq": report.last_seq,
        "head": app.audit.signer.sign_head(head.count(), &head.head_hash),
        "error": report.error,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PruneBody {
    /// Prune only entries older than this (a date or RFC 3339); never younger than the
    /// retention allows.
    before: Option<String>,
}

pub async fn prune(
    State(app): State<App>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: super::extract::ApiBody,
) -> Result<Response, ApiError> {
    let b: PruneBody = parse_json(&body.0)?;
    let before = b.before.as_deref().map(params::parse_before).transpose()?;
    let path = uri
        .path_and_query()
        .map_or("/api/v1/audit/prune", |p| p.as_str());
    if let Some(r) =
        forward::to_leader(&app, Method::POST, path, &headers, body.0, FORWARD_TIMEOUT).await
    {
        return r;
    }
    let out = retention::pass(&app, before).await?;
    Ok(Json(out).into_response())
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
