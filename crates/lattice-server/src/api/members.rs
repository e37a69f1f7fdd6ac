//! `/api/v1/raft/*`: cluster membership and health of the Raft group. `status` answers from
//! this member's view (with per-follower lag on the leader); adding and removing members is
//! done by the leader (followers proxy the request to it); `snapshot` streams a consistent
//! copy of the state machine for backups (`lattice raft snapshot save FILE`).

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use openraft::{BasicNode, ChangeMembers};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::extract::{parse_json, ApiBody};
use super::App;
use crate::forward;
use crate::raft::restore::SNAPSHOT_FILE_MAGIC;

/// Adding a member waits until it caught up as a learner (possibly a snapshot install).
const MEMBERSHIP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

#[derive(Serialize)]
pub struct MemberStatus {
    id: u64,
    url: String,
    voter: bool,
    /// Leader only: last log index known replicated to this member.
    matched_index: Option<u64>,
    /// Leader only: how many entries this member is behind the leader's log.
    lag: Option<u64>,
}

/// SHA-256 of the replicated state (hex): equal on members that applied the same log.
pub fn state_digest(app: &App) -> String {
    let d = app.state.read();
    let bytes = bincode::serialize(&d.state).unwrap_or_default();
    let hash = Sha256::digest(&bytes);
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn status(State(app): State<App>) -> Json<serde_json::Value> {
    let m = app.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let last = m.last_log_index;
    let members: Vec<MemberStatus> = membership
        .nodes()
        .map(|(id, n)| {
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(id))
                .map(|l| l.map_or(0, |l| l.index));
            MemberStatus {
                id: *id,
                url: n.addr.clone(),
                voter: voters.contains(id),
                matched_index: matched,
                lag: matched.map(|x| last.unwrap_or(0).saturating_sub(x)),
            }
        })
        .collect();
    let revision = app.state.read().state.revision();
    Json(json!({
        "id": app.cfg.node_id,
        "state": format!("{:?}", m.state).to_lowercase(),
        "leader": m.current_leader,
        "term": m.current_term,
        "last_log_index": m.last_log_index,
        "commit_index": app.committed.get(),
        "applied_index": m.last_applied.map(|l| l.index),
        "snapshot_index": m.snapshot.map(|l| l.index),
        "purged_index": m.purged.map(|l| l.index),
        "members": members,
        "state_revision": revision,
        "state_digest": state_digest(&app),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMember {
    id: u64,
    url: String,
}

pub async fn add(
    State(app): State<App>,
    headers: axum::http::HeaderMap,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    if let Some(r) = forward::to_leader(
        &app,
        Method::POST,
        "/api/v1/raft/members",
        &headers,
        body.clone(),
        MEMBERSHIP_TIMEOUT,
    )
    .await
    {
        return r;
    }
    let req: AddMember = parse_json(&body)?;
    if req.id == 0 {
        return Err(ApiError::bad_request("id", "member IDs start at 1"));
    }
    if !(req.url.starts_with("http://") || req.url.starts_with("https://")) {
        return Err(ApiError::bad_request(
            "url",
            "must be an http:// or https:// URL",
        ));
    }
    let node = BasicNode {
        addr: req.url.trim_end_matches('/').to_string(),
    };
    tracing::info!(member = req.id, url = %node.addr, "adding member: learner first, then voter");
    app.raft
        .add_learner(req.id, node, true)
        .await
        .map_err(|e| {
            ApiError::unavailable(format!("could not add member {} as learner: {e}", req.id))
        })?;
    app.raft
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([req.id])), false)
        .await
        .map_err(|e| {
            ApiError::unavailable(format!("could not make member {} a voter: {e}", req.id))
        })?;
    Ok(status(State(app)).await.into_response())
}

pub async fn remove(
    State(app): State<App>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let path = format!("/api/v1/raft/members/{id}");
    if let Some(r) = forward::to_leader(
        &app,
        Method::DELETE,
        &path,
        &headers,
        Default::default(),
        MEMBERSHIP_TIMEOUT,
    )
    .await
    {
        return r;
    }
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request("id", format!("{id:?} is not a member ID")))?;
    let known: BTreeMap<u64, String> = {
        let m = app.raft.metrics().borrow().clone();
        m.membership_config
            .membership()
            .nodes()
            .map(|(i, n)| (*i, n.addr.clone()))
            .collect()
    };
    if !known.contains_key(&id) {
        return Err(ApiError::not_found("member", id));
    }
    tracing::info!(member = id, "removing member");
    app.raft
        .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
        .await
        .map_err(|e| ApiError::unavailable(format!("could not remove member {id}: {e}")))?;
    Ok(status(State(app)).await.into_response())
}

/// A consistent copy of the state machine, for backups. Restore with `lattice server --restore`.
pub async fn snapshot(State(app): State<App>) -> Result<Response, ApiError> {
    app.linearize(false).await?;
    let bytes = {
        let d = app.state.read();
        bincode::serialize(&*d).map_err(ApiError::internal)?
    };
    let mut out = Vec::with_capacity(bytes.len() + SNAPSHOT_FILE_MAGIC.len());
    out.extend_from_slice(SNAPSHOT_FILE_MAGIC);
    out.extend_from_slice(&bytes);
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], out).into_response())
}
