//! Client calls for access control: the one-time bootstrap, tokens, `whoami`. Tokens are
//! JSON values as the server answers them (`secret` appears only in create answers).

use reqwest::Method;
use serde_json::{json, Value};

use crate::{Client, ClientError};

/// What `lattice token create` asks for.
#[derive(Clone, Debug, Default)]
pub struct TokenRequest {
    pub subject: String,
    pub role: String,
    pub tenants: Vec<String>,
    pub nodes: Vec<String>,
    pub description: String,
    pub expires_in_seconds: Option<u64>,
}

impl Client {
    /// Creates the first admin token (with `token` as its secret when given).
    pub async fn acl_bootstrap(&self, token: Option<&str>) -> Result<Value, ClientError> {
        let body = match token {
            Some(t) => json!({ "token": t }),
            None => json!({}),
        };
        self.json(
            Method::POST,
            "/api/v1/acl/bootstrap",
            None,
            Some(&body),
            Self::TIMEOUT,
        )
        .await
    }

    pub async fn create_token(&self, r: &TokenRequest) -> Result<Value, ClientError> {
        let body = json!({
            "subject": r.subject,
            "role": r.role,
            "tenants": r.tenants,
            "nodes": r.nodes,
            "description": r.description,
            "expires_in_seconds": r.expires_in_seconds,
        });
        self.json(
            Method::POST,
            "/api/v1/acl/tokens",
            None,
            Some(&body),
            Self::TIMEOUT,
        )
        .await
    }

    pub async fn list_tokens(&self) -> Result<Value, ClientError> {
        self.json(Method::GET, "/api/v1/acl/tokens", None, None, Self::TIMEOUT)
            .await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<Value, ClientError> {
        let path = format!("/api/v1/acl/tokens/{id}");
        self.json(Method::DELETE, &path, None, None, Self::TIMEOUT)
            .await
    }

    pub async fn whoami(&self) -> Result<Value, ClientError> {
        self.json(Method::GET, "/api/v1/acl/whoami", None, None, Self::TIMEOUT)
            .await
    }
}
