//! [`Rejection`]: a business refusal from validation or from `apply` (unknown ID, conflicting
//! state, invalid field). It is a normal, typed answer returned to the caller, never a crash and
//! never a partial change: `apply` checks everything before it mutates anything.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    /// A field of the request is invalid; `field` names it (dotted path for nested fields).
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// The named object does not exist.
    #[error("{kind} {id} not found")]
    NotFound { kind: String, id: String },
    /// The request is valid but conflicts with the current state.
    #[error("{message}")]
    Conflict { message: String },
}

impl Rejection {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Rejection::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(kind: &str, id: impl ToString) -> Self {
        Rejection::NotFound {
            kind: kind.to_string(),
            id: id.to_string(),
        }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Rejection::Conflict {
            message: message.into(),
        }
    }
}
