//! The layer that records `lattice_api_request_duration_seconds` and
//! `lattice_api_requests_total` for every answer of the router, errors (401, 404, 413, 503...)
//! included. The route label is the template the request matched (`/api/v1/allocations/{id}`),
//! never the raw path; requests that matched no route are labelled `unmatched`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// The `route` label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Axum middleware (`axum::middleware::from_fn(track)`), added with `Router::layer` so that it
/// runs after routing and sees the matched template.
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    super::api_request(
        &method,
        &route,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}
