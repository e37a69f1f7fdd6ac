//! `GET /healthz`: `{"status": "ok"}` while this member can serve. It checks that the process
//! is not shutting down, that Raft is running, and that the embedded database answers a read.
//! It does not check that a leader exists (a follower without a leader still serves stale
//! reads and forwards nothing), so load balancers keep routing to live members during elections.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::App;

pub async fn healthz(State(app): State<App>) -> impl IntoResponse {
    let problem = if app.is_shutting_down() {
        Some("shutting down".to_string())
    } else if let Err(e) = app.raft.metrics().borrow().running_state.clone() {
        Some(format!("raft stopped: {e}"))
    } else if let Err(e) = app.db.check() {
        Some(format!("storage failed: {e}"))
    } else {
        None
    };
    match problem {
        None => (StatusCode::OK, Json(json!({ "status": "ok" }))),
        Some(p) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "error": p })),
        ),
    }
}
