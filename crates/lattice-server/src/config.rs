//! [`ServerConfig`]: every setting of a control-plane member, with its default. Loaded from the
//! `server:` section of the YAML config file, environment overrides and flags (see the CLI's
//! `config` module and docs/configuration.md).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// This member's Raft ID (unique in the cluster).
    pub node_id: u64,
    /// Where the Raft log, vote and snapshots live (`lattice.redb`).
    pub data_dir: PathBuf,
    /// REST API (and Raft RPC) listen address.
    pub api_addr: SocketAddr,
    /// URL other members and agents use to reach this member; default derived from `api_addr`.
    pub advertise_url: Option<String>,
    /// Initialize a new cluster on first start (ignored once initialized): of `peers` when
    /// given, else of this member alone.
    pub bootstrap: bool,
    /// Initial members for `bootstrap`: member ID -> URL; must include this member.
    #[serde(deserialize_with = "member_map")]
    pub peers: BTreeMap<u64, String>,
    /// URL of a running member to join at start (added as learner, then voter).
    pub join: Option<String>,
    /// Shared secret that authenticates Raft RPCs between members.
    pub cluster_secret: String,
    /// Take a snapshot after this many log entries since the last one.
    pub snapshot_every_entries: u64,
    /// Log entries kept behind the latest snapshot (for followers that lag a little).
    pub log_entries_kept_after_snapshot: u64,
    /// The scheduler also runs on this interval when nothing wakes it.
    pub scheduler_interval_ms: u64,
    /// A node whose agent has not heartbeated for this long is marked `down`.
    pub node_down_after_seconds: u64,
    pub raft_heartbeat_interval_ms: u64,
    pub raft_election_timeout_min_ms: u64,
    pub raft_election_timeout_max_ms: u64,
    /// Largest accepted request body (413 above it).
    pub max_body_bytes: usize,
    /// Largest page of `GET /api/v1/allocations` (`limit` above it is clamped).
    pub max_page_size: usize,
    /// A write not committed within this many seconds answers 503 (outcome unknown): e.g. a
    /// leader cut off from its majority.
    pub write_timeout_seconds: u64,
    /// `user` recorded on submissions that name none.
    pub default_user: String,
    /// Submissions naming a tenant that does not exist create it (with share 1, no quotas);
    /// otherwise they are refused (400 naming the tenant). `lattice dev` turns this on.
    pub auto_create_tenants: bool,
    /// Token authentication and abuse limits (docs/security.md).
    pub auth: AuthConfig,
    /// The audit log of sensitive tenants: signing key, retention, archive (docs/audit.md).
    pub audit: AuditConfig,
    /// PEM certificate chain (leaf first) to serve HTTPS on `api_addr`, with `tls_key_file`;
    /// neither: plain HTTP. See docs/tls.md.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA bundle this member trusts, instead of the built-in web roots, when it calls
    /// other members over https:// (Raft RPCs, forwarding, join).
    pub tls_ca_file: Option<PathBuf>,
    /// Where `GET /api/v1/allocations/{id}/metrics` and `/api/v1/telemetry/nodes` query
    /// telemetry. Not a `server:` key: the binary fills it from the top-level `telemetry:`
    /// section (docs/telemetry.md); `None` when telemetry is not configured.
    #[serde(skip)]
    pub tsdb: Option<TsdbQuery>,
}

/// `server.auth`: who may call the API (docs/security.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Require a bearer token on every route but the open ones. `false` trusts every request
    /// (each acts as an admin): only for `lattice dev --insecure` and isolated test setups.
    pub enabled: bool,
    /// `GET /metrics` answers without a token (for Prometheus scrapers).
    pub open_metrics: bool,
    /// `GET /healthz` answers without a token (for load balancers and probes).
    pub open_healthz: bool,
    /// Submissions per second allowed per non-admin token (0: no limit).
    pub submit_rate_per_second: f64,
    /// Submissions a token may make at once before the rate applies.
    pub submit_burst: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: true,
            open_metrics: true,
            open_healthz: true,
            submit_rate_per_second: 50.0,
            submit_burst: 500,
        }
    }
}

/// `server.audit`: the audit log's signing key and retention (docs/audit.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// File holding the Ed25519 secret key (64 hex characters, mode 0600 or stricter) that
    /// signs the chain head. Unset: `data_dir/audit-signing.key`, generated on first start.
    pub signing_key_file: Option<PathBuf>,
    /// Entries older than this many days are pruned by the leader's retention pass.
    pub retention_days: u64,
    /// Where pruned entries are written first (`audit-<first>-<last>.jsonl`); unset: pruned
    /// entries are dropped.
    pub archive_dir: Option<PathBuf>,
    /// How often the leader runs the retention pass.
    pub prune_interval_seconds: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            signing_key_file: None,
            // Seven years.
            retention_days: 2557,
            archive_dir: None,
            prune_interval_seconds: 3600,
        }
    }
}

/// How this member reaches the Prometheus query API of the telemetry TSDB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsdbQuery {
    /// Base URL; queries go to `{url}/api/v1/query`.
    pub url: String,
    pub bearer_token: Option<String>,
    /// (username, password).
    pub basic_auth: Option<(String, String)>,
    /// Window of `rate()` over allocations' CPU seconds (a few push intervals).
    pub rate_window_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            node_id: 1,
            data_dir: PathBuf::from("./lattice-data"),
            api_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            advertise_url: None,
            bootstrap: false,
            peers: BTreeMap::new(),
            join: None,
            cluster_secret: String::new(),
            snapshot_every_entries: 10_000,
            log_entries_kept_after_snapshot: 1_000,
            scheduler_interval_ms: 1_000,
            node_down_after_seconds: 30,
            raft_heartbeat_interval_ms: 150,
            raft_election_timeout_min_ms: 600,
            raft_election_timeout_max_ms: 1_200,
            max_body_bytes: 1 << 20,
            max_page_size: 1_000,
            write_timeout_seconds: 10,
            default_user: "anonymous".into(),
            auto_create_tenants: false,
            auth: AuthConfig::default(),
            audit: AuditConfig::default(),
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            tsdb: None,
        }
    }
}

impl ServerConfig {
    /// Checks values that serde cannot: returns the first problem, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.node_id == 0 {
            return Err("server.node_id must be at least 1".into());
        }
        if self.snapshot_every_entries == 0 {
            return Err("server.snapshot_every_entries must be at least 1".into());
        }
        if self.scheduler_interval_ms == 0 {
            return Err("server.scheduler_interval_ms must be at least 1".into());
        }
        if self.node_down_after_seconds == 0 {
            return Err("server.node_down_after_seconds must be at least 1".into());
        }
        if self.raft_election_timeout_min_ms <= self.raft_heartbeat_interval_ms
            || self.raft_election_timeout_max_ms <= self.raft_election_timeout_min_ms
        {
            return Err("server.raft_*: need heartbeat_interval < election_timeout_min < election_timeout_max".into());
        }
        if self.max_body_bytes < 1024 {
            return Err("server.max_body_bytes must be at least 1024".into());
        }
        if !self.peers.is_empty() && !self.peers.contains_key(&self.node_id) {
            return Err(format!(
                "server.peers must include this member (node_id {})",
                self.node_id
            ));
        }
        for (id, url) in &self.peers {
            if *id == 0 || !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "server.peers: {id}={url:?} needs an ID >= 1 and an http(s) URL"
                ));
            }
        }
        if (self.peers.len() > 1 || self.join.is_some()) && self.cluster_secret.is_empty() {
            return Err(
                "server.cluster_secret is required for a multi-member cluster (peers or join)"
                    .into(),
            );
        }
        if self.write_timeout_seconds == 0 {
            return Err("server.write_timeout_seconds must be at least 1".into());
        }
        if !(self.auth.submit_rate_per_second.is_finite()
            && self.auth.submit_rate_per_second >= 0.0)
        {
            return Err("server.auth.submit_rate_per_second must be a number >= 0".into());
        }
        if self.max_page_size == 0 {
            return Err("server.max_page_size must be at least 1".into());
        }
        if self.audit.prune_interval_seconds == 0 {
            return Err("server.audit.prune_interval_seconds must be at least 1".into());
        }
        self.validate_tls()
    }

    /// Both or neither of the certificate and key; every TLS file given can be read (its
    /// content is checked when the member starts, see `crate::tls`).
    fn validate_tls(&self) -> Result<(), String> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => return Err("server.tls_cert_file needs server.tls_key_file".into()),
            (None, Some(_)) => return Err("server.tls_key_file needs server.tls_cert_file".into()),
            _ => {}
        }
        let files = [
            ("server.tls_cert_file", &self.tls_cert_file),
            ("server.tls_key_file", &self.tls_key_file),
            ("server.tls_ca_file", &self.tls_ca_file),
        ];
        for (key, file) in files {
            if let Some(path) = file {
                std::fs::File::open(path)
                    .map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
            }
        }
        Ok(())
    }

    /// `https` when this member serves TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert_file.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The URL this member advertises, given the address it actually bound.
    pub fn advertised(&self, bound: SocketAddr) -> String {
        if let Some(u) = &self.advertise_url {
            return u.trim_end_matches('/').to_string();
        }
        if bound.ip().is_unspecified() {
            let host = nix_hostname().unwrap_or_else(|| "127.0.0.1".into());
            format!("{}://{host}:{}", self.scheme(), bound.port())
        } else {
            format!("{}://{bound}", self.scheme())
        }
    }
}

fn nix_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// `peers` keys arrive as strings from YAML, environment variables and flags: parse them.
fn member_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<u64, String>, D::Error> {
    let raw = BTreeMap::<String, String>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match k.trim().parse::<u64>() {
            Ok(id) => Ok((id, v)),
            Err(_) => Err(serde::de::Error::custom(format!(
                "peers: {k:?} is not a member ID (a positive integer)"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_needs_both_files_and_names_an_unreadable_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("server.pem");
        std::fs::write(&file, "x").expect("write");
        let missing = dir.path().join("missing.pem");
        let with = |cert: Option<&PathBuf>, key: Option<&PathBuf>, ca: Option<&PathBuf>| {
            ServerConfig {
                tls_cert_file: cert.cloned(),
                tls_key_file: key.cloned(),
                tls_ca_file: ca.cloned(),
                ..ServerConfig::default()
            }
            .validate()
        };
        assert_eq!(with(None, None, None), Ok(()));
        assert_eq!(with(Some(&file), Some(&file), Some(&file)), Ok(()));
        let err = |r: Result<(), String>| r.expect_err("refused");
        assert!(err(with(Some(&file), None, None)).contains("server.tls_key_file"));
        assert!(err(with(None, Some(&file), None)).contains("server.tls_cert_file"));
        for (r, key) in [
            (
                with(Some(&missing), Some(&file), None),
                "server.tls_cert_file",
            ),
            (
                with(Some(&file), Some(&missing), None),
                "server.tls_key_file",
            ),
            (with(None, None, Some(&missing)), "server.tls_ca_file"),
        ] {
            let e = err(r);
            assert!(e.starts_with(key) && e.contains("missing.pem"), "{e}");
        }
    }

    #[test]
    fn a_member_serving_tls_advertises_https() {
        let bound: SocketAddr = "127.0.0.1:8443".parse().expect("addr");
        let mut cfg = ServerConfig::default();
        assert_eq!(cfg.advertised(bound), "http://127.0.0.1:8443");
        cfg.tls_cert_file = Some("server.pem".into());
        assert_eq!(cfg.advertised(bound), "https://127.0.0.1:8443");
        cfg.advertise_url = Some("https://lattice-01:8443/".into());
        assert_eq!(cfg.advertised(bound), "https://lattice-01:8443");
    }
}
