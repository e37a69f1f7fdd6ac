//! Request extractors that turn malformed input into [`ApiError`]s naming what is wrong:
//! [`ApiJson`] (JSON bodies with the failing field's path, 413 over the size limit) and ID
//! parsing helpers.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::error::ApiError;

/// A JSON body. Unknown fields, wrong types and syntax errors answer 400 naming the field;
/// bodies over `server.max_body_bytes` answer 413.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ApiBody(bytes) = ApiBody::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A raw body under the size limit; over it, a JSON 413.
pub struct ApiBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(ApiBody)
            .map_err(|r| {
                let status = r.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(status, "request body is too large")
                        .with_detail(json!({ "reason": r.body_text() }))
                } else {
                    ApiError::new(
                        status,
                        format!("cannot read request body: {}", r.body_text()),
                    )
                }
            })
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "request body is empty; expected JSON",
        ));
    }
    // The common case, a valid body, without the path tracking (agents send thousands a
    // second); only a body that fails is parsed again to name the field at fault. The
    // second parse decides exactly as before (it is the less strict of the two: it allows
    // trailing characters).
    if let Ok(v) = serde_json::from_slice(bytes) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // Syntax errors have no meaningful path ("?"); type errors name the field.
        let field = if inner.is_syntax() || inner.is_eof() || path == "." || path == "?" {
            String::new()
        } else {
            path
        };
        let msg = if field.is_empty() {
            format!("malformed JSON body: {inner}")
        } else {
            format!("invalid {field}: {inner}")
        };
        ApiError::new(StatusCode::BAD_REQUEST, msg).with_detail(json!({
            "field": if field.is_empty() { serde_json::Value::Null } else { json!(field) },
            "line": inner.line(),
            "column": inner.column(),
        }))
    })
}

/// Parses an allocation ID from a path segment.
pub fn alloc_id(text: &str) -> Result<u64, ApiError> {
    match text.parse::<u64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(ApiError::bad_request(
            "id",
            format!("{text:?} is not an allocation ID (a positive integer)"),
        )),
    }
}

/// Takes the `stale` query parameter out of `q` and, unless it is `true`, makes the read that
/// follows linearizable (read-index through the leader).
pub async fn consistent_read(
    app: &super::App,
    q: &mut std::collections::HashMap<String, String>,
) -> Result<(), ApiError> {
    let stale = match q.remove("stale").as_deref() {
        None | Some("false") => false,
        Some("true") | Some("") => true,
        Some(v) => {
            return Err(ApiError::bad_request(
                "stale",
                format!("{v:?} is not true or false"),
            ))
        }
    };
    app.linearize(stale).await
}
