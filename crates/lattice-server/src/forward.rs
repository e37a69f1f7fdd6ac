//! Any member serves any client. This module routes what only the leader can do:
//! - writes: a follower sends the command to the leader's `/raft/propose` (bincode, with the
//!   cluster secret) and relays the leader's answer, so the client sees one answer;
//! - linearizable reads: a follower asks the leader for a read index (`/raft/read_index`),
//!   waits until it has applied that far, then reads its own copy (read-index protocol);
//! - leader-only HTTP endpoints (heartbeats, membership): proxied to the leader as they are.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use lattice_core::{Command, CommandOutcome, CommandResult};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::error::ApiError;
use crate::api::App;
use crate::raft::network::SECRET_HEADER;
use crate::raft::MemberId;

/// How long a read may wait for this member to catch up with the leader's read index.
const READ_CATCH_UP: Duration = Duration::from_secs(10);

/// Who leads, as this member knows it.
pub enum Leader {
    Me,
    Other { id: MemberId, url: String },
    Unknown,
}

pub fn leader(app: &App) -> Leader {
    let m = app.raft.metrics();
    let m = m.borrow();
    match m.current_leader {
        Some(id) if id == app.cfg.node_id => Leader::Me,
        Some(id) => match m.membership_config.membership().get_node(&id) {
            Some(n) => Leader::Other {
                id,
                url: n.addr.trim_end_matches('/').to_string(),
            },
            None => Leader::Unknown,
        },
        None => Leader::Unknown,
    }
}

fn no_leader() -> ApiError {
    ApiError::unavailable(
        "no Raft leader is known (election in progress or no quorum); retry shortly",
    )
}

/// Proposes `cmd` on the leader (this member or another) and returns the applied result.
/// Here it is proposed together with the writes proposed at the same time (`write_batch.rs`).
///
/// A write that is not committed within `server.write_timeout_seconds` (e.g. this member leads
/// but lost its quorum) answers 503; its outcome is then unknown to the client, as with any
/// timed-out request.
pub async fn propose(app: &App, cmd: Command) -> Result<CommandOutcome, ApiError> {
    match crate::write_batch::write(app, cmd.clone()).await {
        Ok(data) => data.map_err(ApiError::from),
        Err(e) => match e.forward_to() {
            Some(Some(node)) => {
                let res: Result<CommandResult, String> =
                    leader_rpc(app, &node.addr, "propose", &cmd).await?;
                match res {
                    Ok(r) => r.map_err(ApiError::from),
                    Err(e) => Err(ApiError::unavailable(format!(
                        "the leader could not commit: {e}"
                    ))),
                }
            }
            Some(None) => Err(no_leader()),
            None => Err(e.into()),
        },
    }
}

/// Proposes a command decided by this member's leader-only loops (scheduler, failure
/// detector). Never forwarded: a decision taken as leader is stale once leadership is lost, so
/// if this member turns out not to lead (or cannot commit in time) the command is dropped.
pub async fn propose_as_leader(app: &App, cmd: Command) -> Result<CommandOutcome, ApiError> {
    match crate::write_batch::write(app, cmd).await {
        Ok(data) => data.map_err(ApiError::from),
        Err(e) if e.forward_to().is_some() => Err(ApiError::unavailable(
            "dropped: this member is no longer the leader",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Why a local proposal failed.
#[derive(Clone, Debug)]
pub enum WriteError {
    Raft(Box<RaftError<MemberId, ClientWriteError<MemberId, BasicNode>>>),
    /// Not committed within the write deadline (no quorum reachable?).
    Timeout(Duration),
    /// Committed, but apply answered something this member cannot relate to the proposal.
    Unexpected(String),
}

impl WriteError {
    /// `Some(leader)` when the write must go to the leader (`Some(None)`: none is known).
    fn forward_to(&self) -> Option<Option<BasicNode>> {
        match self {
            WriteError::Raft(e) => match e.as_ref() {
                RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                    Some(f.leader_node.clone())
                }
                _ => None,
            },
            WriteError::Timeout(_) | WriteError::Unexpected(_) => None,
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Raft(e) => match *e {
                RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => no_leader(),
                RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                    ApiError::new(StatusCode::CONFLICT, e.to_string())
                }
                RaftError::Fatal(f) => ApiError::unavailable(format!("Raft stopped: {f}")),
            },
            WriteError::Timeout(d) => ApiError::unavailable(format!(
                "the write was not committed within {}s (this member may have lost its quorum); its outcome is unknown",
                d.as_secs()
            )),
            WriteError::Unexpected(e) => ApiError::internal(e),
        }
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Raft(e) => e.fmt(f),
            WriteError::Timeout(d) => write!(f, "not committed within {}s", d.as_secs()),
            WriteError::Unexpected(e) => f.write_str(e),
        }
    }
}

/// Leader side of a forwarded write.
pub async fn propose_local(app: &App, cmd: Command) -> Result<CommandResult, String> {
    match crate::write_batch::write(app, cmd).await {
        Ok(data) => Ok(data),
        Err(e) => Err(e.to_string()),
    }
}

/// Makes the next local read linearizable, unless `stale` (serve the local copy as it is).
pub async fn linearize(app: &App, stale: bool) -> Result<(), ApiError> {
    if stale {
        return Ok(());
    }
    let index = match app.raft.ensure_linearizable().await {
        Ok(_) => return Ok(()),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => match f.leader_node {
            Some(node) => {
                let r: Result<Option<u64>, String> =
                    leader_rpc(app, &node.addr, "read_index", &()).await?;
                r.map_err(|e| {
                    ApiError::unavailable(format!("leader could not confirm a read index: {e}"))
                })?
            }
            None => return Err(no_leader()),
        },
        Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
            return Err(ApiError::unavailable(format!(
                "leader lost its quorum: {e}"
            )))
        }
        Err(RaftError::Fatal(f)) => {
            return Err(ApiError::unavailable(format!("Raft stopped: {f}")))
        }
    };
    app.raft
        .wait(Some(READ_CATCH_UP))
        .applied_index_at_least(index, "linearizable read")
        .await
        .map_err(|e| {
            ApiError::unavailable(format!(
                "this member could not catch up with the leader: {e}"
            ))
        })?;
    Ok(())
}

/// Leader side of a read-index request: the index a follower must apply before reading.
pub async fn read_index_local(app: &App) -> Result<Option<u64>, String> {
    app.raft
        .ensure_linearizable()
        .await
        .map(|l| l.map(|l| l.index))
        .map_err(|e| e.to_string())
}

/// Calls the leader's `/raft/{path}` with a bincode body and the cluster secret.
async fn leader_rpc<Req: Serialize, Resp: DeserializeOwned>(
    app: &App,
    addr: &str,
    path: &str,
    req: &Req,
) -> Result<Resp, ApiError> {
    let body = bincode::serialize(req).map_err(ApiError::internal)?;
    let resp = app
        .http
        .post(format!("{}/raft/{path}", addr.trim_end_matches('/')))
        .header(SECRET_HEADER, &app.cfg.cluster_secret)
        .timeout(Duration::from_secs(app.cfg.write_timeout_seconds + 5))
        .body(body)
        .send()
        .await
        .map_err(|e| {
            ApiError::unavailable(format!(
                "cannot reach the leader at {addr}: {}",
                crate::tls::error_chain(&e)
            ))
        })?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(ApiError::unavailable(format!(
            "leader at {addr} answered {status}: {text}"
        )));
    }
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ApiError::unavailable(format!("reading the leader's answer: {e}")))?;
    bincode::deserialize(&bytes).map_err(|e| ApiError::internal(format!("leader's answer: {e}")))
}

/// Proxies an HTTP request unchanged (with its `Authorization` header, so the leader checks
/// the same token) to the leader's same path; `None` when this member leads.
pub async fn to_leader(
    app: &App,
    method: Method,
    path_and_query: &str,
    headers: &axum::http::HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Option<Result<Response, ApiError>> {
    let url = match leader(app) {
        Leader::Me => return None,
        Leader::Unknown => return Some(Err(no_leader())),
        Leader::Other { url, .. } => url,
    };
    let method =
        reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap_or(reqwest::Method::POST);
    let mut req = app
        .http
        .request(method, format!("{url}{path_and_query}"))
        .header("content-type", "application/json");
    if let Some(auth) = headers.get(axum::http::header::AUTHORIZATION) {
        req = req.header(reqwest::header::AUTHORIZATION, auth.as_bytes());
    }
    if let Some(secret) = headers.get(SECRET_HEADER) {
        req = req.header(SECRET_HEADER, secret.as_bytes());
    }
    let res = req.timeout(timeout).body(body).send().await;
    Some(match res {
        Err(e) => Err(ApiError::unavailable(format!(
            "cannot reach the leader at {url}: {}",
            crate::tls::error_chain(&e)
        ))),
        Ok(r) => {
            let status =
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            match r.bytes().await {
                Ok(b) => Ok((status, [("content-type", "application/json")], b).into_response()),
                Err(e) => Err(ApiError::unavailable(format!(
                    "reading the leader's answer: {e}"
                ))),
            }
        }
    })
}
