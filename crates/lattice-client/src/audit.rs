//! Client calls for sensitive tenants: node claims (`claim`, `release`, list) and the audit
//! log (query, pubkey, sign, verify, prune). Answers are JSON values as the server sends them.

use reqwest::Method;
use serde_json::{json, Value};

use crate::{Client, ClientError};

/// What `lattice claim` asks for: a count of nodes or named nodes.
#[derive(Clone, Debug, Default)]
pub struct ClaimRequest {
    pub tenant: String,
    pub count: Option<u32>,
    pub node_ids: Vec<String>,
    /// Admins: claim for this user.
    pub user: Option<String>,
}

impl Client {
    pub async fn claim_nodes(&self, r: &ClaimRequest) -> Result<Value, ClientError> {
        let mut body = json!({ "tenant": r.tenant });
        if let Some(n) = r.count {
            body["nodes"] = json!(n);
        }
        if !r.node_ids.is_empty() {
            body["node_ids"] = json!(r.node_ids);
        }
        if let Some(u) = &r.user {
            body["user"] = json!(u);
        }
        self.json(
            Method::POST,
            "/api/v1/claims",
            None,
            Some(&body),
            Self::TIMEOUT,
        )
        .await
    }

    /// Releases `node_ids` (empty: every node `user`, or the caller, claimed for `tenant`).
    pub async fn release_nodes(
        &self,
        tenant: &str,
        node_ids: &[String],
        user: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut body = json!({ "tenant": tenant, "node_ids": node_ids });
        if let Some(u) = user {
            body["user"] = json!(u);
        }
        self.json(
            Method::POST,
            "/api/v1/claims/release",
            None,
            Some(&body),
            Self::TIMEOUT,
        )
        .await
    }

    pub async fn list_claims(&self, tenant: Option<&str>) -> Result<Value, ClientError> {
        let q: Vec<(&str, &str)> = tenant.map(|t| ("tenant", t)).into_iter().collect();
        self.json(Method::GET, "/api/v1/claims", Some(&q), None, Self::TIMEOUT)
            .await
    }

    /// One page of `GET /api/v1/audit` with the given parameters (`cursor` included).
    pub async fn audit_query(&self, params: &[(String, String)]) -> Result<Value, ClientError> {
        self.json(
            Method::GET,
            "/api/v1/audit",
            Some(&params),
            None,
            Self::TIMEOUT,
        )
        .await
    }

    pub async fn audit_pubkey(&self) -> Result<Value, ClientError> {
        self.json(
            Method::GET,
            "/api/v1/audit/pubkey",
            None,
            None,
            Self::TIMEOUT,
        )
        .await
    }

    /// The member's signature over stored entry `seq`'s hash.
    pub async fn audit_sign(&self, seq: u64) -> Result<Value, ClientError> {
        let q = [("seq", seq.to_string())];
        self.json(
            Method::GET,
            "/api/v1/audit/sign",
            Some(&q),
            None,
            Self::TIMEOUT,
        )
        .await
    }

    /// The member checks its whole stored chain.
    pub async fn audit_verify(&self) -> Result<Value, ClientError> {
        self.json(
            Method::GET,
            "/api/v1/audit/verify",
            None,
            None,
            Self::SLOW_TIMEOUT,
        )
        .await
    }

    /// Runs retention now, pruning entries older than `before` (and than the retention).
    pub async fn audit_prune(&self, before: &str) -> Result<Value, ClientError> {
        let body = json!({ "before": before });
        self.json(
            Method::POST,
            "/api/v1/audit/prune",
            None,
            Some(&body),
            Self::SLOW_TIMEOUT,
        )
        .await
    }
}
