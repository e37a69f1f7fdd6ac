//! `/raft/*`: the receiving side of member-to-member Raft RPCs (bincode bodies), refused
//! without the cluster secret; also `GET /raft/audit`, which serves stored audit entries to a
//! member catching up after a snapshot install (`audit::catch_up`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ApiError;
use super::App;
use crate::raft::network::SECRET_HEADER;

fn authorize(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if app.cfg.cluster_secret.is_empty() {
        // A member without a secret (the single-member default) never needs Raft RPCs.
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Raft RPC refused: this member has no cluster secret configured (server.cluster_secret)",
        ));
    }
    if lattice_core::acl::same_secret(given, &app.cfg.cluster_secret) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Raft RPC refused: missing or wrong cluster secret",
        ))
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    bincode::deserialize(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed Raft RPC: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Response {
    match bincode::serialize(value) {
        Ok(bytes) => ([("content-type", "application/octet-stream")], bytes).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// Authorizes, decodes the bincode request, runs `handle` and encodes its answer.
async fn rpc<Req, Resp, F, Fut>(
    app: App,
    headers: HeaderMap,
    body: Bytes,
    handle: F,
) -> Result<Response, ApiError>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(App, Req) -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    authorize(&app, &headers)?;
    let req = decode(&body)?;
    Ok(encode(&handle(app, req).await))
}

pub async fn append(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    rpc(app, headers, body, |app, req| async move {
        app.raft.append_entries(req).await
    })
    .await
}

pub async fn vote(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    rpc(app, headers, body, |app, req| async move {
        app.raft.vote(req).await
    })
    .await
}

pub async fn snapshot(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    rpc(app, headers, body, |app, req| async move {
        app.raft.install_snapshot(req).await
    })
    .await
}

/// A follower forwards a client write: propose it here (the leader) and answer its result.
pub async fn propose(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    rpc(app, headers, body, |app, cmd| async move {
        crate::forward::propose_local(&app, cmd).await
    })
    .await
}

/// A follower asks for a read index before serving a linearizable read.
pub async fn read_index(State(app): State<App>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&app, &headers)?;
    Ok(encode(&crate::forward::read_index_local(&app).await))
}

/// `GET /raft/audit?from=&to=&limit=`: stored audit entries with `from <= seq <= to`, in `seq`
/// order, at most `limit` (bincode `Vec<AuditEntry>`). The caller verifies what it gets.
pub async fn audit(
    State(app): State<App>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers)?;
    let num = |k: &str| -> Result<u64, ApiError> {
        q.get(k)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| ApiError::bad_request(k, "expected a non-negative integer"))
    };
    let (from, to) = (num("from")?, num("to")?);
    let limit = usize::try_from(num("limit")?)
        .unwrap_or(usize::MAX)
        .min(crate::audit::params::MAX_LIMIT);
    let store = app.audit.store.clone();
    let run = tokio::task::spawn_blocking(move || store.run(from..=to, limit))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(encode(&run))
}
