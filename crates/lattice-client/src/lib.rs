//! HTTP client for Lattice's REST API (`/api/v1`). The CLI and the agent talk to the control
//! plane only through this crate.
//!
//! A client holds one or more endpoint URLs. A request that gets `503 Service Unavailable` (no
//! leader yet) or cannot reach an endpoint is retried on the next one until `retry_for` runs
//! out; when no endpoint of a whole round can be reached it fails at once.

mod acl;
mod audit;
mod error;
mod plain;
mod policy;
pub mod telemetry;
mod tls;
mod token_file;

use std::time::{Duration, Instant};

use lattice_core::agent::{
    HeartbeatRequest, HeartbeatResponse, WipeReportRequest, WipeReportResponse, WorkRequest,
    WorkResponse,
};
use lattice_core::submit::SubmitRequest;
use lattice_core::{AllocId, Allocation, Node, NodeRegistration};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use acl::TokenRequest;
pub use audit::ClaimRequest;
pub use error::{ClientError, ErrorBody};
pub use plain::PlainClient;
pub use policy::{ArrayChange, TenantList, VClusterInfo, VClusterList};
pub use tls::TlsFailure;
pub use token_file::{read_token_file, write_token_file, TokenFileError};

/// One page of `GET /api/v1/allocations`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AllocationPage {
    pub allocations: Vec<Allocation>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeList {
    pub nodes: Vec<Node>,
}

/// Query of `GET /api/v1/allocations`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ListQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vcluster: Option<String>,
    /// Only elements of this array.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub array: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Client {
    endpoints: Vec<String>,
    http: reqwest::Client,
    retry_for: Duration,
    /// Bearer token sent with every request.
    token: Option<String>,
}

impl Client {
    /// `endpoints`: base URLs such as `http://127.0.0.1:8080` (a comma-separated list is split).
    pub fn new<S: AsRef<str>>(endpoints: &[S]) -> Result<Self, ClientError> {
        let endpoints: Vec<String> = endpoints
            .iter()
            .flat_map(|e| e.as_ref().split(','))
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(ClientError::Config("no endpoint given".into()));
        }
        for e in &endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(ClientError::Config(format!(
                    "endpoint {e:?} must start with http:// or https://"
                )));
            }
        }
        // `with_ca_pem` rebuilds it with the same settings.
        let http = tls::builder()
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(Client {
            endpoints,
            http,
            retry_for: Duration::from_secs(10),
            token: None,
        })
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// How long to keep retrying unreachable endpoints and 503 answers (default 10 s).
    pub fn with_retry_for(mut self, d: Duration) -> Self {
        self.retry_for = d;
        self
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// A [`PlainClient`] with this client's endpoint, token and retry window, for agent calls
    /// at a high rate; `None` unless this client has exactly one `http://` endpoint.
    pub fn plain(&self) -> Option<PlainClient> {
        match self.endpoints.as_slice() {
            [one] => PlainClient::new(one, self.token.as_deref(), self.retry_for),
            _ => None,
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: Option<&dyn erased::Query>,
        body: Option<&dyn erased::Body>,
        timeout: Duration,
    ) -> Result<reqwest::Response, ClientError> {
        let deadline = Instant::now() + self.retry_for;
        // Reads and the agent protocol (register, heartbeat with idempotent reports, work
        // long-poll) may be repeated safely, so they also move on after a timeout: a member
        // that hangs (e.g. cut off from the network) must not stall them.
        let idempotent = method == Method::GET || path.starts_with("/api/v1/agent/");
        let n = self.endpoints.len();
        let mut attempt = 0usize;
        // Endpoints that could not be reached in the current round; when every endpoint of a
        // round is unreachable the cluster is down (or the URL wrong): fail at once.
        let mut unreachable_in_round = 0usize;
        loop {
            let base = &self.endpoints[attempt % n];
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), format!("{base}{path}"))
                .timeout(timeout);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            if let Some(q) = query {
                req = q.apply(req);
            }
            if let Some(b) = body {
                req = b.apply(req);
            }
            match req.send().await {
                Ok(resp) if resp.status() == StatusCode::SERVICE_UNAVAILABLE => {
                    // No leader yet (election): worth waiting for, on any member.
                    if Instant::now() >= deadline {
                        return Err(ClientError::from_response(resp).await);
                    }
                }
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => return Err(ClientError::from_response(resp).await),
                // A connection that never opened carried nothing: safe to retry anything. A
                // timeout may have been applied: only reads are retried then.
                Err(e) if e.is_connect() || (e.is_timeout() && idempotent) => {
                    unreachable_in_round += 1;
                    if unreachable_in_round == n || Instant::now() >= deadline {
                        return Err(ClientError::transport(base, &e));
                    }
                }
                Err(e) => return Err(ClientError::transport(base, &e)),
            }
            if attempt.is_multiple_of(n) {
                unreachable_in_round = 0;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: Option<&dyn erased::Query>,
        body: Option<&dyn erased::Body>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let resp = self.send(method, path, query, body, timeout).await?;
        resp.json::<T>()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);
    /// Short: a heartbeat that hangs is retried on the next member well before the node
    /// could be judged down.
    pub(crate) const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);
    /// For calls that walk a large store (audit verify and prune).
    const SLOW_TIMEOUT: Duration = Duration::from_secs(600);

    pub async fn submit(&self, req: &SubmitRequest) -> Result<Allocation, ClientError> {
        self.json(
            Method::POST,
            "/api/v1/allocations",
            None,
            Some(req),
            Self::TIMEOUT,
        )
        .await
    }

    pub async fn list_allocations(&self, q: &ListQuery) -> Result<AllocationPage, ClientError> {
        self.json(
            Method::GET,
            "/api/v1/allocations",
            Some(q),
            None,
            Self::TIMEOUT,
        )
        .await
    }

    /// Every allocation matching `q`, following cursors.
    pub async fn list_all_allocations(
        &self,
        q: &ListQuery,
    ) -> Result<Vec<Allocation>, ClientError> {
        let mut q = q.clone();
        let mut out = Vec::new();
        loop {
            let page = self.list_allocations(&q).await?;
            out.extend(page.allocations);
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    pub async fn get_allocation(&self, id: AllocId) -> Result<Allocation, ClientError> {
        let path = format!("/api/v1/allocations/{id}");
        self.json(Method::GET, &path, None, None, Self::TIMEOUT)
            .await
    }

    pub async fn cancel(&self, id: AllocId) -> Result<Allocation, ClientError> {
        let path = format!("/api/v1/allocations/{id}");
        self.json(Method::DELETE, &path, None, None, Self::TIMEOUT)
            .await
    }

    /// Asks the agents of a running allocation (submitted with `checkpoint: signal`) to
    /// checkpoint it now. The answer (202) is the allocation with `checkpoint_requests` set to
    /// this request's number; `last_checkpoint.trigger` is `{"request": N}` once the round
    /// ended. 409 (`ClientError::Api`) if it is not running or not checkpointable.
    pub async fn checkpoint(&self, id: AllocId) -> Result<Allocation, ClientError> {
        self.checkpoint_ref(&id.to_string()).await
    }

    /// [`Client::checkpoint`] by reference: `42`, or `42_7` for task 7 of array 42.
    pub async fn checkpoint_ref(&self, r: &str) -> Result<Allocation, ClientError> {
        let path = format!("/api/v1/allocations/{r}/checkpoint");
        self.json(Method::POST, &path, None, None, Self::TIMEOUT)
            .await
    }

    /// The allocation's output; `stream` is `stdout` or `stderr`.
    pub async fn logs(&self, id: AllocId, stream: &str) -> Result<String, ClientError> {
        let path = format!("/api/v1/allocations/{id}/logs");
        let q = [("stream", stream)];
        let resp = self
            .send(Method::GET, &path, Some(&q), None, Self::TIMEOUT)
            .await?;
        resp.text()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn nodes(&self) -> Result<Vec<Node>, ClientError> {
        let list: NodeList = self
            .json(Method::GET, "/api/v1/nodes", None, None, Self::TIMEOUT)
            .await?;
        Ok(list.nodes)
    }

    pub async fn node(&self, id: &str) -> Result<Node, ClientError> {
        let path = format!("/api/v1/nodes/{id}");
        self.json(Method::GET, &path, None, None, Self::TIMEOUT)
            .await
    }

    pub async fn drain(&self, id: &str, reason: Option<&str>) -> Result<Node, ClientError> {
        let path = format!("/api/v1/nodes/{id}/drain");
        let body = serde_json::json!({ "reason": reason });
        self.json(Method::POST, &path, None, Some(&body), Self::TIMEOUT)
            .await
    }

    pub async fn undrain(&self, id: &str) -> Result<Node, ClientError> {
        let path = format!("/api/v1/nodes/{id}/undrain");
        self.json(Method::POST, &path, None, None, Self::TIMEOUT)
            .await
    }

    /// How long the telemetry reads retry members that answer 503: one without a TSDB says
    /// so with a 503, and waiting the full `retry_for` for that would only delay the error.
    const TELEMETRY_RETRY: Duration = Duration::from_secs(1);

    /// An allocation's current CPU, memory and GPU use per node, from the telemetry TSDB.
    pub async fn allocation_metrics(
        &self,
        id: AllocId,
    ) -> Result<telemetry::AllocationMetrics, ClientError> {
        let path = format!("/api/v1/allocations/{id}/metrics");
        let c = self
            .clone()
            .with_retry_for(Self::TELEMETRY_RETRY.min(self.retry_for));
        c.json(Method::GET, &path, None, None, Self::TIMEOUT).await
    }

    /// Current utilization of every node, from the telemetry TSDB.
    pub async fn node_utilization(&self) -> Result<telemetry::NodeUtilizationList, ClientError> {
        let c = self
            .clone()
            .with_retry_for(Self::TELEMETRY_RETRY.min(self.retry_for));
        c.json(
            Method::GET,
            "/api/v1/telemetry/nodes",
            None,
            None,
            Self::TIMEOUT,
        )
        .await
    }

    pub async fn health(&self) -> Result<serde_json::Value, ClientError> {
        self.json(Method::GET, "/healthz", None, None, Self::TIMEOUT)
            .await
    }

    /// `GET /metrics` of the member answering (the first reachable endpoint): its metrics in
    /// the Prometheus text format. Leader metrics are only on the leader: scrape each member
    /// with its own one-endpoint client and add them up.
    pub async fn metrics_text(&self) -> Result<String, ClientError> {
        let resp = self
            .send(Method::GET, "/metrics", None, None, Self::TIMEOUT)
            .await?;
        resp.text()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    // ---- Raft membership ----

    /// `GET /api/v1/raft/status` of the member answering.
    pub async fn raft_status(&self) -> Result<serde_json::Value, ClientError> {
        self.json(
            Method::GET,
            "/api/v1/raft/status",
            None,
            None,
            Self::TIMEOUT,
        )
        .await
    }

    /// Adds member `id` reachable at `url` (learner, then voter).
    pub async fn raft_add(&self, id: u64, url: &str) -> Result<serde_json::Value, ClientError> {
        let body = serde_json::json!({ "id": id, "url": url });
        self.json(
            Method::POST,
            "/api/v1/raft/members",
            None,
            Some(&body),
            Duration::from_secs(120),
        )
        .await
    }

    pub async fn raft_remove(&self, id: u64) -> Result<serde_json::Value, ClientError> {
        let path = format!("/api/v1/raft/members/{id}");
        self.json(Method::DELETE, &path, None, None, Self::TIMEOUT)
            .await
    }

    /// A backup of the replicated state (restore with `lattice server --restore FILE`).
    pub async fn raft_snapshot(&self) -> Result<Vec<u8>, ClientError> {
        let resp = self
            .send(
                Method::GET,
                "/api/v1/raft/snapshot",
                None,
                None,
                Duration::from_secs(300),
            )
            .await?;
        resp.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    // ---- agent protocol ----

    pub async fn register(&self, reg: &NodeRegistration) -> Result<Node, ClientError> {
        self.json(
            Method::POST,
            "/api/v1/agent/register",
            None,
            Some(reg),
            Self::TIMEOUT,
        )
        .await
    }

    pub async fn heartbeat(&self, hb: &HeartbeatRequest) -> Result<HeartbeatResponse, ClientError> {
        self.json(
            Method::POST,
            "/api/v1/agent/heartbeat",
            None,
            Some(hb),
            Self::HEARTBEAT_TIMEOUT,
        )
        .await
    }

    /// Long-polls for the work of `req.nodes`; waits up to `req.wait_ms` on the server.
    pub async fn work(&self, req: &WorkRequest) -> Result<WorkResponse, ClientError> {
        let timeout = Duration::from_millis(req.wait_ms) + Self::TIMEOUT;
        self.json(Method::POST, "/api/v1/agent/work", None, Some(req), timeout)
            .await
    }

    /// Reports wipes that ended on the agent's nodes (resending is safe: a report of a wipe
    /// no longer pending is ignored).
    pub async fn report_wipes(
        &self,
        req: &WipeReportRequest,
    ) -> Result<WipeReportResponse, ClientError> {
        self.json(
            Method::POST,
            "/api/v1/agent/wipes",
            None,
            Some(req),
            Self::TIMEOUT,
        )
        .await
    }
}

mod erased {
    /// Object-safe "something that can be a JSON body", serialized straight into the
    /// request's bytes (the agent protocol sends thousands of requests a second: no
    /// `serde_json::Value` in between).
    pub trait Body: Sync {
        fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder;
    }
    impl<T: serde::Serialize + Sync> Body for T {
        fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
            req.json(self)
        }
    }

    /// Object-safe "something that can be a query string".
    pub trait Query: Sync {
        fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder;
    }
    impl<T: serde::Serialize + Sync> Query for T {
        fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
            req.query(self)
        }
    }
}
