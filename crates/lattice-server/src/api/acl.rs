//! `/api/v1/acl/*`: the one-time bootstrap, token create / list / revoke (admins), and
//! `whoami`. Secrets are generated here, shown once in the create answer, and only their
//! hashes are proposed.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use lattice_core::acl::{secret_hash, Role, Token};
use lattice_core::{Command, CommandOutcome, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{parse_json, ApiBody};
use super::App;
use crate::auth::{secret, Caller};
use crate::clock;

/// A token as the API shows it: everything but the hash.
#[derive(Debug, Serialize)]
pub struct TokenView {
    pub id: String,
    pub subject: String,
    pub role: Role,
    pub tenants: Vec<String>,
    pub nodes: Vec<String>,
    pub description: String,
    pub created_at: Timestamp,
    pub created_by: String,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub revoked_by: Option<String>,
    /// Only in the answer that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl TokenView {
    fn of(t: Token, secret: Option<String>) -> Self {
        TokenView {
            id: t.id,
            subject: t.subject,
            role: t.role,
            tenants: t.tenants,
            nodes: t.nodes,
            description: t.description,
            created_at: t.created_at,
            created_by: t.created_by,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            revoked_by: t.revoked_by,
            secret,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapRequest {
    /// Use this secret instead of a generated one (e.g. from a secrets manager).
    pub token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub subject: String,
    pub role: String,
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// Lifetime from now, in seconds.
    pub expires_in_seconds: Option<u64>,
}

fn token_outcome(o: CommandOutcome) -> Result<Token, ApiError> {
    match o {
        CommandOutcome::Token(t) => Ok(*t),
        other => Err(ApiError::internal(format!(
            "unexpected apply outcome {other:?}"
        ))),
    }
}

fn random<T>(r: Result<T, getrandom::Error>) -> Result<T, ApiError> {
    r.map_err(|e| ApiError::internal(format!("no randomness from the OS: {e}")))
}

/// `POST /api/v1/acl/bootstrap`: the first admin token, once per cluster (409 after).
pub async fn bootstrap(
    State(app): State<App>,
    ApiBody(body): ApiBody,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    let req: BootstrapRequest = if body.iter().all(u8::is_ascii_whitespace) {
        BootstrapRequest::default()
    } else {
        parse_json(&body)?
    };
    if !app.cfg.auth.enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "authentication is disabled on this member (server.auth.enabled: false); there is nothing to bootstrap",
        ));
    }
    if app.state.read().state.acl().bootstrapped() {
        return Err(already());
    }
    let secret = match req.token {
        Some(t) => {
            secret::check_chosen(&t).map_err(|e| ApiError::bad_request("token", e))?;
            t
        }
        None => random(secret::generate())?,
    };
    let now = clock::now();
    let token = Token {
        id: random(secret::new_id())?,
        hash: secret_hash(&secret),
        subject: "admin".into(),
        role: Role::Admin,
        tenants: vec![],
        nodes: vec![],
        description: "bootstrap token".into(),
        created_at: now,
        created_by: "bootstrap".into(),
        expires_at: None,
        revoked_at: None,
        revoked_by: None,
    };
    let out = app
        .propose(Command::BootstrapAcl { now, token })
        .await
        .map_err(|e| {
            if e.status == StatusCode::CONFLICT {
                already()
            } else {
                e
            }
        })?;
    Ok((
        StatusCode::CREATED,
        Json(TokenView::of(token_outcome(out)?, Some(secret))),
    ))
}

fn already() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "the ACL system is already bootstrapped; an admin creates further tokens with `lattice token create`",
    )
}

/// `POST /api/v1/acl/tokens`.
pub async fn create(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    ApiBody(body): ApiBody,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    let req: CreateRequest = parse_json(&body)?;
    let role = Role::parse(&req.role).ok_or_else(|| {
        ApiError::bad_request(
            "role",
            format!("{:?} is not admin, operator, user or agent", req.role),
        )
    })?;
    let now = clock::now();
    let expires_at = match req.expires_in_seconds {
        Some(0) => {
            return Err(ApiError::bad_request(
                "expires_in_seconds",
                "must be at least 1",
            ))
        }
        Some(s) if s > 100 * 365 * 86_400 => {
            return Err(ApiError::bad_request(
                "expires_in_seconds",
                "at most 100 years",
            ))
        }
        Some(s) => Some(now.plus_secs(s)),
        None => None,
    };
    let secret = random(secret::generate())?;
    let token = Token {
        id: random(secret::new_id())?,
        hash: secret_hash(&secret),
        subject: req.subject,
        role,
        tenants: req.tenants,
        nodes: req.nodes,
        description: req.description,
        created_at: now,
        created_by: caller.by("admin"),
        expires_at,
        revoked_at: None,
        revoked_by: None,
    };
    let out = app.propose(Command::CreateToken { now, token }).await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenView::of(token_outcome(out)?, Some(secret))),
    ))
}

/// `GET /api/v1/acl/tokens`: every token, revoked and expired ones included.
pub async fn list(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    app.linearize(false).await?;
    let tokens: Vec<TokenView> = app
        .state
        .read()
        .state
        .acl()
        .tokens()
        .map(|t| TokenView::of(t.clone(), None))
        .collect();
    Ok(Json(json!({ "tokens": tokens })))
}

/// `DELETE /api/v1/acl/tokens/{id}`.
pub async fn revoke(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    let out = app
        .propose(Command::RevokeToken {
            now: clock::now(),
            id,
            by: caller.by("admin"),
        })
        .await?;
    Ok(Json(TokenView::of(token_outcome(out)?, None)))
}

/// `GET /api/v1/acl/whoami`: the caller as the server sees it.
pub async fn whoami(Extension(caller): Extension<Caller>) -> Json<Value> {
    Json(json!({
        "subject": caller.subject,
        "role": caller.role.as_str(),
        "token_id": caller.token_id,
        "tenants": caller.tenant_scope(),
        "acl_enabled": !caller.insecure,
    }))
}
