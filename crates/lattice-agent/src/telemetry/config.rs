//! [`TelemetryConfig`]: the top-level `telemetry:` section of the YAML configuration. The
//! agent pushes to `tsdb_endpoint`; the control plane reads back from `tsdb_query_endpoint`.
//! Without `tsdb_endpoint` telemetry is off (not an error).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// The remote-write path appended to an endpoint given as a bare base URL.
pub const WRITE_PATH: &str = "/api/v1/write";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Prometheus remote-write receiver, e.g. `http://victoriametrics:8428` (then
    /// `/api/v1/write` is appended) or a full URL with a path (used as given). Absent: no
    /// telemetry.
    pub tsdb_endpoint: Option<String>,
    /// Seconds between two collections (each is one remote-write request).
    pub prod_interval_seconds: u64,
    /// Base URL of the Prometheus query API (`/api/v1/query`) the control plane reads from;
    /// default: the scheme, host and port of `tsdb_endpoint`.
    pub tsdb_query_endpoint: Option<String>,
    /// Most samples kept while the endpoint cannot be reached; the oldest are dropped (and
    /// counted) beyond it.
    pub queue_max_samples: usize,
    /// Per-request timeout of a push.
    pub push_timeout_seconds: u64,
    /// Sent as `Authorization: Bearer ...` (push and query).
    pub bearer_token: Option<String>,
    /// HTTP basic authentication (push and query).
    pub basic_auth: Option<BasicAuth>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    #[serde(default)]
    pub password: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            tsdb_endpoint: None,
            prod_interval_seconds: 30,
            tsdb_query_endpoint: None,
            queue_max_samples: 100_000,
            push_timeout_seconds: 10,
            bearer_token: None,
            basic_auth: None,
        }
    }
}

fn is_http_url(u: &str) -> bool {
    (u.starts_with("http://") || u.starts_with("https://"))
        && u.split("://").nth(1).is_some_and(|rest| !rest.is_empty())
}

/// `scheme://host[:port]` of an http(s) URL.
fn origin(url: &str) -> &str {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url;
    };
    match rest.find(['/', '?', '#']) {
        Some(i) => &url[..scheme.len() + 3 + i],
        None => url,
    }
}

impl TelemetryConfig {
    /// Whether the agent pushes at all.
    pub fn enabled(&self) -> bool {
        self.tsdb_endpoint
            .as_deref()
            .is_some_and(|e| !e.trim().is_empty())
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.prod_interval_seconds.max(1))
    }

    /// Rejects settings telemetry cannot work with (only checked when it is enabled, except
    /// the URLs, which are always checked when given).
    pub fn validate(&self) -> Result<(), AgentError> {
        let bad = |m: &str| Err(AgentError::Config(format!("telemetry.{m}")));
        for (key, url) in [
            ("tsdb_endpoint", &self.tsdb_endpoint),
            ("tsdb_query_endpoint", &self.tsdb_query_endpoint),
        ] {
            if let Some(u) = url.as_deref().filter(|u| !u.trim().is_empty()) {
                if !is_http_url(u.trim()) {
                    return bad(&format!(
                        "{key}: must be an http:// or https:// URL, not {u:?}"
                    ));
                }
            }
        }
        if self.prod_interval_seconds == 0 {
            return bad("prod_interval_seconds: must be at least 1");
        }
        if self.queue_max_samples == 0 {
            return bad("queue_max_samples: must be at least 1");
        }
        if self.push_timeout_seconds == 0 {
            return bad("push_timeout_seconds: must be at least 1");
        }
        if self.bearer_token.is_some() && self.basic_auth.is_some() {
            return bad("bearer_token and basic_auth: give at most one");
        }
        Ok(())
    }

    /// The URL remote-write requests go to: `tsdb_endpoint` + `/api/v1/write` when it has no
    /// path, else `tsdb_endpoint` as given. `None` when telemetry is off.
    pub fn write_url(&self) -> Option<String> {
        let e = self.tsdb_endpoint.as_deref()?.trim();
        if e.is_empty() {
            return None;
        }
        let base = e.trim_end_matches('/');
        if origin(base) == base {
            Some(format!("{base}{WRITE_PATH}"))
        } else {
            Some(e.to_string())
        }
    }

    /// Base URL of the query API: `tsdb_query_endpoint`, else the origin of `tsdb_endpoint`.
    pub fn query_url(&self) -> Option<String> {
        if let Some(q) = self.tsdb_query_endpoint.as_deref().map(str::trim) {
            if !q.is_empty() {
                return Some(q.trim_end_matches('/').to_string());
            }
        }
        let e = self.tsdb_endpoint.as_deref()?.trim();
        (!e.is_empty()).then(|| origin(e).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_endpoint(e: &str) -> TelemetryConfig {
        TelemetryConfig {
            tsdb_endpoint: Some(e.into()),
            ..TelemetryConfig::default()
        }
    }

    #[test]
    fn seed_yaml_keys_are_accepted_and_defaults_fill_the_rest() {
        let c: TelemetryConfig = serde_json::from_value(serde_json::json!({
            "tsdb_endpoint": "http://victoriametrics:8428",
            "prod_interval_seconds": 30
        }))
        .expect("seed keys");
        assert!(c.enabled());
        assert_eq!(c.queue_max_samples, 100_000);
        assert!(c.validate().is_ok());
        assert!(serde_json::from_value::<TelemetryConfig>(
            serde_json::json!({"tsdb_endpont": "x"})
        )
        .is_err());
        let off = TelemetryConfig::default();
        assert!(!off.enabled());
        assert!(off.validate().is_ok());
        assert_eq!(off.write_url(), None);
        assert_eq!(off.query_url(), None);
    }

    #[test]
    fn write_and_query_urls() {
        let c = with_endpoint("http://victoriametrics:8428");
        assert_eq!(
            c.write_url().as_deref(),
            Some("http://victoriametrics:8428/api/v1/write")
        );
        assert_eq!(
            c.query_url().as_deref(),
            Some("http://victoriametrics:8428")
        );
        let c = with_endpoint("https://vm.example.org/");
        assert_eq!(
            c.write_url().as_deref(),
            Some("https://vm.example.org/api/v1/write")
        );
        // A full URL with a path is used as given; queries go to its origin.
        let c = with_endpoint("http://prom:9090/api/v1/write");
        assert_eq!(
            c.write_url().as_deref(),
            Some("http://prom:9090/api/v1/write")
        );
        assert_eq!(c.query_url().as_deref(), Some("http://prom:9090"));
        let c = with_endpoint("https://gw:443/insert/0/prometheus/api/v1/write?extra_label=dc=1");
        assert_eq!(
            c.write_url().as_deref(),
            Some("https://gw:443/insert/0/prometheus/api/v1/write?extra_label=dc=1")
        );
        let c = TelemetryConfig {
            tsdb_query_endpoint: Some("http://vmselect:8481/select/0/prometheus/".into()),
            ..with_endpoint("http://vminsert:8480/insert/0/prometheus/api/v1/write")
        };
        assert_eq!(
            c.query_url().as_deref(),
            Some("http://vmselect:8481/select/0/prometheus")
        );
    }

    #[test]
    fn validate_catches_bad_settings() {
        let ok = with_endpoint("http://vm:8428");
        for bad in [
            with_endpoint("vm:8428"),
            with_endpoint("http://"),
            TelemetryConfig {
                prod_interval_seconds: 0,
                ..ok.clone()
            },
            TelemetryConfig {
                queue_max_samples: 0,
                ..ok.clone()
            },
            TelemetryConfig {
                tsdb_query_endpoint: Some("ftp://x".into()),
                ..ok.clone()
            },
            TelemetryConfig {
                bearer_token: Some("t".into()),
                basic_auth: Some(BasicAuth {
                    username: "u".into(),
                    password: "p".into(),
                }),
                ..ok.clone()
            },
        ] {
            let e = bad.validate().expect_err("must be refused");
            assert!(e.to_string().contains("telemetry."), "{e}");
        }
    }
}
