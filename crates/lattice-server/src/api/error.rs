//! [`ApiError`]: the one mapping from errors to HTTP answers. Every error is a JSON body
//! `{"error": "...", "detail": ...}`; business rejections keep the field they name.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lattice_core::Rejection;
use serde_json::{json, Value};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub detail: Value,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.into(),
            detail: Value::Null,
            retry_after_secs: None,
        }
    }

    pub fn with_detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }

    pub fn bad_request(field: &str, message: impl std::fmt::Display) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid {field}: {message}"),
        )
        .with_detail(json!({ "field": field }))
    }

    pub fn not_found(kind: &str, id: impl std::fmt::Display) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, format!("{kind} {id} not found"))
            .with_detail(json!({ "kind": kind, "id": id.to_string() }))
    }

    /// No leader is known (election in progress, or no quorum): retry shortly.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            retry_after_secs: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let message = r.to_string();
        match r {
            Rejection::Invalid { field, .. } => ApiError::new(StatusCode::BAD_REQUEST, message)
                .with_detail(json!({ "field": field })),
            Rejection::NotFound { kind, id } => ApiError::new(StatusCode::NOT_FOUND, message)
                .with_detail(json!({ "kind": kind, "id": id })),
            Rejection::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({ "error": self.error, "detail": self.detail })),
        )
            .into_response();
        if let Some(s) = self.retry_after_secs {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}
