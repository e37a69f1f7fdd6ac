//! [`ClientError`]: what can go wrong talking to the API, with the server's JSON error body.

use serde::{Deserialize, Serialize};

use crate::tls::TlsFailure;

/// The JSON body of every non-2xx answer: `{"error": "...", "detail": ...}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default)]
    pub detail: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status.
    #[error("{message} (HTTP {status})")]
    Api {
        status: u16,
        message: String,
        detail: serde_json::Value,
    },
    /// No answer (connection refused, timeout, ...).
    #[error("cannot reach the server: {0}")]
    Transport(String),
    /// The TLS handshake with `endpoint` failed: nothing was sent.
    #[error("TLS: {reason} ({endpoint})")]
    Tls {
        endpoint: String,
        reason: TlsFailure,
    },
    /// An answer that is not what the API promises.
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// A request to `base` that got no answer: [`ClientError::Tls`] when the TLS handshake
    /// failed, else [`ClientError::Transport`].
    pub(crate) fn transport(base: &str, e: &reqwest::Error) -> Self {
        match TlsFailure::of(e) {
            Some(reason) => ClientError::Tls {
                endpoint: base.to_string(),
                reason,
            },
            None => ClientError::Transport(format!("{base}: {e}")),
        }
    }

    pub(crate) async fn from_response(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Self::from_status_text(status, &text)
    }

    /// An error answer: its status and body (the API's JSON error body, or any text).
    pub(crate) fn from_status_text(status: u16, text: &str) -> Self {
        match serde_json::from_str::<ErrorBody>(text) {
            Ok(b) => ClientError::Api {
                status,
                message: b.error,
                detail: b.detail,
            },
            Err(_) => ClientError::Api {
                status,
                message: if text.is_empty() {
                    "no error body".into()
                } else {
                    text.to_string()
                },
                detail: serde_json::Value::Null,
            },
        }
    }

    /// HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}
