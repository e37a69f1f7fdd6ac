//! `GET /metrics`: this member's metrics in the classic Prometheus text format (see the
//! `metrics` module and docs/monitoring.md). Open, like `/healthz`: it carries counts, never
//! job contents. Answers from this member's state as it is (no read through the leader), so a
//! member cut off from the others still reports what it knows.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::App;
use crate::metrics;

pub async fn metrics(State(app): State<App>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(&app),
    )
}
