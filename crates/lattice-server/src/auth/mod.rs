//! Authentication and authorization of API requests.
//!
//! - [`layer`]: one axum middleware that looks up the route's [`Access`] in the table of
//!   `routes.rs` (the same table as docs/security.md), authenticates the bearer token, checks
//!   the role, applies the submit rate limit and puts the [`Caller`] into the request's
//!   extensions. Answers 401 (no, unknown, revoked or expired token) or 403 (wrong role).
//! - Handlers then scope what they return with [`Caller::sees_tenant`] (another tenant's
//!   allocation answers 404, so IDs do not leak) and take identities from the caller, never
//!   from the body.
//!
//! With `server.auth.enabled: false` every request is an admin named by the request or
//! `server.default_user` (the `lattice dev --insecure` mode).

mod caller;
pub mod rate;
mod routes;
pub mod secret;

pub use caller::Caller;
pub use routes::{access, Access};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lattice_core::acl::{same_secret, secret_hash, Role, Unusable};
use serde_json::json;

use crate::api::error::ApiError;
use crate::api::App;
use crate::clock;
use crate::raft::network::SECRET_HEADER;

/// The middleware: authenticate, authorize by route, rate-limit submissions.
pub async fn layer(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let Some(template) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
    else {
        // No route matched: the 404 / 405 fallbacks reveal nothing.
        return next.run(req).await;
    };
    let access = access(req.method(), &template, &app.cfg.auth);
    match authorize(&app, req.method(), &template, access, req.headers()).await {
        Ok(Some(caller)) => {
            req.extensions_mut().insert(caller);
        }
        Ok(None) => {}
        Err(e) => return e.into_response(),
    }
    next.run(req).await
}

/// The caller for `access`, `None` for open routes; an error answer otherwise.
async fn authorize(
    app: &App,
    method: &Method,
    template: &str,
    access: Access,
    headers: &HeaderMap,
) -> Result<Option<Caller>, ApiError> {
    if access == Access::Open {
        return Ok(None);
    }
    if !app.cfg.auth.enabled {
        return Ok(Some(Caller::insecure()));
    }
    if access == Access::AdminOrClusterSecret && cluster_secret_ok(app, headers) {
        return Ok(Some(Caller::member()));
    }
    let caller = authenticate(app, headers).await?;
    if !access.allows(caller.role) {
        return Err(forbidden(&caller, method, template, access));
    }
    if *method == Method::POST && template == "/api/v1/allocations" && caller.role != Role::Admin {
        if let Err(wait) = app.submit_limiter.check(&caller.token_id) {
            return Err(ApiError {
                retry_after_secs: Some(wait.as_secs().max(1)),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "submission rate limit of token {} exceeded ({}/s, burst {}); retry later",
                        caller.token_id,
                        app.cfg.auth.submit_rate_per_second,
                        app.cfg.auth.submit_burst
                    ),
                )
            });
        }
    }
    Ok(Some(caller))
}

fn cluster_secret_ok(app: &App, headers: &HeaderMap) -> bool {
    let given = headers
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    !app.cfg.cluster_secret.is_empty() && same_secret(given, &app.cfg.cluster_secret)
}

/// The token's caller, or a 401 naming what is wrong.
pub async fn authenticate(app: &App, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(raw) = headers.get(header::AUTHORIZATION) else {
        let bootstrapped = app.state.read().state.acl().bootstrapped();
        return Err(unauthorized(if bootstrapped {
            "authentication required: send `Authorization: Bearer <token>` (the CLI reads LATTICE_TOKEN or ~/.config/lattice/token)".to_string()
        } else {
            "authentication required, and this cluster has no tokens yet: create the first admin token with `lattice acl bootstrap`".to_string()
        }));
    };
    let secret = raw
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| unauthorized("malformed Authorization header: expected `Bearer <token>`"))?;
    let hash = secret_hash(secret);
    let mut found = lookup(app, &hash);
    // The leader answered the token's creation after applying it: only a follower may lag.
    if found.is_none() && !app.is_leader() {
        // A token created a moment ago may not be applied on this member yet: catch up with
        // the leader once (only failures pay for this).
        if app.linearize(false).await.is_ok() {
            found = lookup(app, &hash);
        }
    }
    let Some(token) = found else {
        let bootstrapped = app.state.read().state.acl().bootstrapped();
        return Err(unauthorized(if bootstrapped {
            "invalid token: no such token"
        } else {
            "invalid token: this cluster has no tokens yet: create the first admin token with `lattice acl bootstrap`"
        }));
    };
    match token.usable(clock::now()) {
        Ok(()) => Ok(Caller::from_token(&token)),
        Err(Unusable::Revoked) => Err(unauthorized(format!("token {} was revoked", token.id))),
        Err(Unusable::Expired) => Err(unauthorized(format!(
            "token {} expired at {}",
            token.id,
            token.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default()
        ))),
    }
}

fn lookup(app: &App, hash: &str) -> Option<lattice_core::acl::Token> {
    app.state.read().state.acl().by_hash(hash).cloned()
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message).with_detail(json!({ "auth": "bearer" }))
}

fn forbidden(caller: &Caller, method: &Method, template: &str, access: Access) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "forbidden: {method} {template} needs {}; token {} has role {}",
            access.describe(),
            caller.token_id,
            caller.role.as_str()
        ),
    )
    .with_detail(json!({ "role": caller.role.as_str(), "needs": access.describe() }))
}
