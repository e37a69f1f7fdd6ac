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
    /// Where `GET /api/v1/allocations/{id}/metrics` and `/api/v1/telemetry/nodes` query
    /// telemetry. Not a `server:` key: the binary fills it from the top-level `telemetry:`
    /// section (docs/telemetry.md); `None` when telemetry is not configured.
    #[serde(skip)]
    pub tsdb: Option<TsdbQuery>,
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
        if self.max_page_size == 0 {
            return Err("server.max_page_size must be at least 1".into());
        }
        Ok(())
    }

    /// The URL this member advertises, given the address it actually bound.
    pub fn advertised(&self, bound: SocketAddr) -> String {
        if let Some(u) = &self.advertise_url {
            return u.trim_end_matches('/').to_string();
        }
        if bound.ip().is_unspecified() {
            let host = nix_hostname().unwrap_or_else(|| "127.0.0.1".into());
            format!("http://{host}:{}", bound.port())
        } else {
            format!("http://{bound}")
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
