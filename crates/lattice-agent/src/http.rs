//! The agent's own HTTP server: `GET /healthz`, `GET /metrics` (the agent's own metrics, in
//! the classic Prometheus text format) and
//! `GET /allocations/{id}/logs?node=&stream=stdout|stderr&tail_bytes=`, which streams a
//! rank's captured output as plain text (every run of the allocation on that node, in order:
//! runs append to the same files). Errors are JSON bodies `{"error": "..."}`.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lattice_core::{AllocId, NodeId};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::launch::{STDERR_FILE, STDOUT_FILE};
use crate::layout;
use crate::metrics::AgentMetrics;

/// Read size of the log stream.
const CHUNK: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("cannot read the log: {0}")]
    Io(#[from] std::io::Error),
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match &self {
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            HttpError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

#[derive(Clone)]
pub struct HttpState {
    pub work_dir: PathBuf,
    /// Presented nodes, in order; the only values `node=` accepts.
    pub nodes: Arc<Vec<NodeId>>,
    pub metrics: Arc<AgentMetrics>,
    /// SHA-256 (hex) of this agent's API token: the control plane sends it as
    /// [`NODE_KEY_HEADER`] to read logs. `None` when the agent runs without a token.
    pub node_key: Option<String>,
}

/// Header with which the control plane proves it knows this agent's token.
pub const NODE_KEY_HEADER: &str = "x-lattice-node-key";

/// The [`NODE_KEY_HEADER`] value for an API token: the hash the control plane stores for it.
pub fn node_key(token: &str) -> String {
    lattice_core::acl::secret_hash(token)
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/allocations/{id}/logs", get(logs))
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    node: Option<String>,
    stream: Option<String>,
    tail_bytes: Option<u64>,
}

async fn logs(
    State(state): State<HttpState>,
    headers: axum::http::HeaderMap,
    id: Result<Path<AllocId>, PathRejection>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    if let Some(want) = &state.node_key {
        let given = headers
            .get(NODE_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !lattice_core::acl::same_secret(given, want) {
            return Err(HttpError::Unauthorized(
                "logs are served to the control plane only (missing or wrong x-lattice-node-key)"
                    .into(),
            ));
        }
    }
    let Path(id) = id.map_err(|e| HttpError::BadRequest(format!("bad allocation id: {e}")))?;
    let Query(q) = query.map_err(|e| HttpError::BadRequest(e.body_text()))?;
    let file = match q.stream.as_deref().unwrap_or(STDOUT_FILE) {
        STDOUT_FILE => STDOUT_FILE,
        STDERR_FILE => STDERR_FILE,
        other => {
            return Err(HttpError::BadRequest(format!(
                "stream must be stdout or stderr, not {other:?}"
            )))
        }
    };
    let dir = match q.node {
        Some(node) => {
            if !state.nodes.contains(&node) {
                return Err(HttpError::NotFound(format!(
                    "node {node:?} is not served by this agent"
                )));
            }
            layout::output_dir(&state.work_dir, &node, id)
        }
        None => state
            .nodes
            .iter()
            .map(|n| layout::output_dir(&state.work_dir, n, id))
            .find(|d| d.is_dir())
            .ok_or_else(|| {
                HttpError::NotFound(format!("allocation {id} has no output on this agent"))
            })?,
    };
    let path = dir.join(file);
    let mut f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(HttpError::NotFound(format!(
                "allocation {id} has no {file} here"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let len = f.metadata().await?.len();
    let start = q.tail_bytes.map_or(0, |t| len.saturating_sub(t));
    f.seek(SeekFrom::Start(start)).await?;
    let body = Body::from_stream(chunks(f, len - start));
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

/// Up to `limit` bytes of `f` from its current position, in chunks (the length is fixed when
/// the request arrives, so a growing log does not make the answer endless).
fn chunks(
    f: tokio::fs::File,
    limit: u64,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures::stream::try_unfold((f, limit), |(mut f, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let want = usize::try_from(left.min(CHUNK)).unwrap_or(usize::MAX);
        let mut buf = vec![0u8; want];
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), (f, left - n as u64))))
    })
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    fn setup() -> (tempfile::TempDir, Router) {
        let dir = tempfile::tempdir().expect("tempdir");
        let rank = dir.path().join("n2").join("5");
        std::fs::create_dir_all(&rank).expect("mkdir");
        std::fs::write(rank.join("stdout"), "line1\nline2\n").expect("write");
        std::fs::write(rank.join("stderr"), "warn\n").expect("write");
        let state = HttpState {
            work_dir: dir.path().to_path_buf(),
            nodes: Arc::new(vec!["n1".into(), "n2".into()]),
            metrics: Arc::new(AgentMetrics::default()),
            node_key: None,
        };
        (dir, router(state))
    }

    async fn get(app: &Router, uri: &str) -> (StatusCode, String) {
        let resp = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn logs_need_the_node_key_when_the_agent_has_a_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rank = dir.path().join("n1").join("5");
        std::fs::create_dir_all(&rank).expect("mkdir");
        std::fs::write(rank.join("stdout"), "secret output\n").expect("write");
        let app = router(HttpState {
            work_dir: dir.path().to_path_buf(),
            nodes: Arc::new(vec!["n1".into()]),
            metrics: Arc::new(AgentMetrics::default()),
            node_key: Some(node_key("lat_agent_token")),
        });
        let (status, body) = get(&app, "/allocations/5/logs?node=n1").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(!body.contains("secret output"));
        let req = Request::get("/allocations/5/logs?node=n1")
            .header(NODE_KEY_HEADER, node_key("lat_agent_token"))
            .body(Body::empty())
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("call");
        assert_eq!(resp.status(), StatusCode::OK);
        let wrong = Request::get("/allocations/5/logs?node=n1")
            .header(NODE_KEY_HEADER, node_key("another"))
            .body(Body::empty())
            .expect("request");
        let resp = app.clone().oneshot(wrong).await.expect("call");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn healthz_is_ok() {
        let (_d, app) = setup();
        assert_eq!(
            get(&app, "/healthz").await,
            (StatusCode::OK, r#"{"status":"ok"}"#.to_string())
        );
    }

    #[tokio::test]
    async fn metrics_are_served_in_the_text_format() {
        let (_d, app) = setup();
        let (status, body) = get(&app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("lattice_telemetry_samples_dropped_total 0\n"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn serves_logs_with_defaults_and_tail() {
        let (_d, app) = setup();
        let ok = |s: &str| (StatusCode::OK, s.to_string());
        // Default node: the first presented node holding the allocation (n2); default stdout.
        assert_eq!(get(&app, "/allocations/5/logs").await, ok("line1\nline2\n"));
        assert_eq!(
            get(&app, "/allocations/5/logs?stream=stderr").await,
            ok("warn\n")
        );
        assert_eq!(
            get(
                &app,
                "/allocations/5/logs?node=n2&stream=stdout&tail_bytes=6"
            )
            .await,
            ok("line2\n")
        );
        assert_eq!(
            get(&app, "/allocations/5/logs?tail_bytes=1000").await,
            ok("line1\nline2\n")
        );
        assert_eq!(get(&app, "/allocations/5/logs?tail_bytes=0").await, ok(""));
    }

    #[tokio::test]
    async fn errors_are_json() {
        let (_d, app) = setup();
        for (uri, status) in [
            ("/allocations/6/logs", StatusCode::NOT_FOUND),
            ("/allocations/5/logs?node=n1", StatusCode::NOT_FOUND),
            ("/allocations/5/logs?node=..", StatusCode::NOT_FOUND),
            ("/allocations/5/logs?stream=stdin", StatusCode::BAD_REQUEST),
            ("/allocations/x/logs", StatusCode::BAD_REQUEST),
            ("/allocations/5/logs?tail_bytes=-1", StatusCode::BAD_REQUEST),
        ] {
            let (got, body) = get(&app, uri).await;
            assert_eq!(got, status, "{uri}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).expect("json body");
            assert!(
                v["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{uri}: {body}"
            );
        }
    }
}
