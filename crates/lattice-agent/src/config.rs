//! [`AgentConfig`]: everything an agent needs to know, loadable from the `agent:` section of
//! the YAML configuration (unknown keys are rejected, missing keys take their defaults). The
//! `simulate` and `sim_*` keys turn the agent into a simulator of virtual nodes (`sim`); the
//! `sensitive:` subsection ([`SensitiveConfig`]) says how a released sensitive node is wiped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use lattice_client::Client;
use lattice_core::NodeId;
use serde::{Deserialize, Serialize};

use crate::discovery;
use crate::error::AgentError;
use crate::layout;

/// Longest simulated duration (`sim_duration_seconds`, `SIM_DURATION`): a year.
pub const MAX_SIM_DURATION_SECONDS: f64 = 366.0 * 24.0 * 3600.0;
/// Longest `sensitive.wipe_timeout_seconds`: a day.
pub const MAX_WIPE_TIMEOUT_SECONDS: u64 = 24 * 3600;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Control-plane URLs, e.g. `http://10.0.0.1:8080`.
    pub servers: Vec<String>,
    /// PEM CA bundle trusted, instead of the built-in web roots, for https:// `servers`
    /// (docs/tls.md).
    pub tls_ca_file: Option<PathBuf>,
    /// File holding this agent's API token (an `agent` token for its nodes; mode 0600).
    pub token_file: Option<PathBuf>,
    /// The token itself (prefer `token_file`; `LATTICE_AGENT__TOKEN` sets it from the
    /// environment). `lattice dev` fills it in.
    pub token: Option<String>,
    /// Base node name; defaults to the hostname.
    pub node_id: String,
    /// How many nodes this agent presents. With more than one, node IDs are
    /// `{node_id}-1` .. `{node_id}-{nodes}`; with one, just `{node_id}`.
    pub nodes: u32,
    /// Features advertised for every presented node (matched by allocation constraints).
    pub features: Vec<String>,
    /// Heartbeat period, counted from the last successful heartbeat (exit reports go out at
    /// once, so a node that reports often sends no other heartbeats).
    pub heartbeat_interval_seconds: u64,
    /// Time between SIGTERM and SIGKILL when a rank is stopped or hits its walltime.
    pub kill_grace_seconds: u64,
    /// Per-rank output and records live under `{work_dir}/{node_id}/{allocation_id}/`, the
    /// allocations' working directories under `{work_dir}/allocations/` (see `layout`). Put
    /// it on a filesystem shared by the nodes so that a requeued allocation finds its files
    /// (its checkpoint) wherever it restarts.
    pub work_dir: PathBuf,
    /// Address of the agent's own HTTP server (health, logs).
    pub listen_addr: SocketAddr,
    /// URL the control plane uses to reach this agent; derived from the bound address when
    /// absent.
    pub advertise_url: Option<String>,
    /// Present this many *virtual* nodes (0: off, a real agent). They register, heartbeat and
    /// poll for work like real nodes but run nothing: a job "runs" for its simulated
    /// duration (see the `sim` module). Node IDs are named as with `nodes`.
    pub simulate: u32,
    /// How long a simulated job runs, in seconds (fractions allowed); 0 ends it at once. A
    /// job overrides it with `SIM_DURATION` in its environment.
    pub sim_duration_seconds: f64,
    /// CPUs, memory (GiB), GPUs and GPU model each virtual node registers with.
    pub sim_cpus: u32,
    pub sim_memory_gb: u64,
    pub sim_gpus: u32,
    pub sim_gpu_model: Option<String>,
    /// Features of every virtual node, on top of `features`.
    pub sim_features: Vec<String>,
    /// Topology groups: virtual node `i` (1-based) gets the feature `group=g{i % sim_groups}`;
    /// 0 for none.
    pub sim_groups: u32,
    /// Virtual nodes per work long-poll (real agents poll one node each; see `sim`).
    pub sim_poll_batch: u32,
    /// Nodes claimed by sensitive tenants: how the agent wipes one that is released.
    pub sensitive: SensitiveConfig,
}

/// `agent.sensitive`: the wipe a node gets when a sensitive tenant releases its claim, before
/// it returns to the shared pool (see `wipe`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SensitiveConfig {
    /// Run with `/bin/sh -c`, with `LATTICE_NODE_ID` and `LATTICE_WIPE_ID` set; exit 0 is a
    /// successful wipe. Absent: every wipe is reported successful at once ("no wipe command
    /// configured").
    pub wipe_command: Option<String>,
    /// A wipe still running after this long is killed (its process group: SIGTERM, SIGKILL
    /// after `kill_grace_seconds`) and reported failed.
    pub wipe_timeout_seconds: u64,
}

impl Default for SensitiveConfig {
    fn default() -> Self {
        SensitiveConfig {
            wipe_command: None,
            wipe_timeout_seconds: 600,
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            servers: vec!["http://127.0.0.1:8080".into()],
            tls_ca_file: None,
            token_file: None,
            token: None,
            node_id: discovery::hostname(),
            nodes: 1,
            features: Vec::new(),
            heartbeat_interval_seconds: 5,
            kill_grace_seconds: 10,
            work_dir: PathBuf::from("/var/lib/lattice/agent"),
            listen_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8081),
            advertise_url: None,
            simulate: 0,
            sim_duration_seconds: 0.0,
            sim_cpus: 64,
            sim_memory_gb: 256,
            sim_gpus: 0,
            sim_gpu_model: None,
            sim_features: Vec::new(),
            sim_groups: 0,
            sim_poll_batch: 100,
            sensitive: SensitiveConfig::default(),
        }
    }
}

impl AgentConfig {
    /// How many nodes this agent presents: `simulate` virtual ones, else `nodes` real ones.
    pub fn node_count(&self) -> u32 {
        if self.simulate > 0 {
            self.simulate
        } else {
            self.nodes
        }
    }

    /// IDs of the nodes this agent presents, in order: `{node_id}-1` .. `{node_id}-{N}`, or
    /// just `{node_id}` for one.
    pub fn node_ids(&self) -> Vec<NodeId> {
        let n = self.node_count();
        if n <= 1 {
            vec![self.node_id.clone()]
        } else {
            (1..=n).map(|i| format!("{}-{i}", self.node_id)).collect()
        }
    }

    /// The client to the control plane: `servers`, trusting `tls_ca_file` when given.
    pub fn client(&self) -> Result<Client, AgentError> {
        let client = Client::new(&self.servers)?.with_token(self.api_token()?);
        let Some(path) = &self.tls_ca_file else {
            return Ok(client);
        };
        let pem = std::fs::read(path).map_err(|e| {
            AgentError::Config(format!("tls_ca_file: cannot read {}: {e}", path.display()))
        })?;
        client
            .with_ca_pem(&pem)
            .map_err(|e| AgentError::Config(format!("tls_ca_file: {}: {e}", path.display())))
    }

    /// The API token: `token`, else the contents of `token_file` (refused when others may
    /// read it).
    pub fn api_token(&self) -> Result<Option<String>, AgentError> {
        if let Some(t) = self
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            return Ok(Some(t.to_string()));
        }
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        lattice_client::read_token_file(path)
            .map(Some)
            .map_err(|e| AgentError::Config(format!("token_file: {e}")))
    }

    /// Rejects settings the agent cannot work with.
    pub fn validate(&self) -> Result<(), AgentError> {
        let bad = |m: &str| Err(AgentError::Config(m.to_string()));
        if self.servers.iter().all(|s| s.trim().is_empty()) {
            return bad("servers: at least one control-plane URL is required");
        }
        if self.nodes == 0 {
            return bad("nodes: must be at least 1");
        }
        let id_ok = !self.node_id.is_empty()
            && self
                .node_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !self.node_id.starts_with('.');
        if !id_ok {
            return bad("node_id: use letters, digits, '-', '_' and '.' (not leading)");
        }
        if self.node_ids().iter().any(|n| n == layout::ALLOCATIONS_DIR) {
            return bad("node_id: \"allocations\" is reserved (work_dir/allocations holds the allocations' directories)");
        }
        if self.heartbeat_interval_seconds == 0 {
            return bad("heartbeat_interval_seconds: must be at least 1");
        }
        if let Some(u) = &self.advertise_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return bad("advertise_url: must start with http:// or https://");
            }
        }
        if self
            .sensitive
            .wipe_command
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            return bad("sensitive.wipe_command: empty; leave it out for no wipe command");
        }
        if !(1..=MAX_WIPE_TIMEOUT_SECONDS).contains(&self.sensitive.wipe_timeout_seconds) {
            return bad("sensitive.wipe_timeout_seconds: must be between 1 and 86400");
        }
        if self.simulate > 0 {
            if self.nodes > 1 {
                return bad(
                    "nodes: a simulating agent presents `simulate` nodes; leave `nodes` at 1",
                );
            }
            let d = self.sim_duration_seconds;
            if !d.is_finite() || !(0.0..=MAX_SIM_DURATION_SECONDS).contains(&d) {
                return bad("sim_duration_seconds: must be between 0 and one year");
            }
            if self.sim_poll_batch == 0 {
                return bad("sim_poll_batch: must be at least 1");
            }
            if self.sim_cpus == 0 {
                return bad("sim_cpus: must be at least 1");
            }
            if self.sim_memory_gb.checked_mul(1 << 30).is_none() {
                return bad("sim_memory_gb: too large");
            }
        }
        Ok(())
    }
}

/// The URL the control plane should use to reach the agent: the configured one, else
/// `http://{bound ip}:{port}`, with the hostname in place of an unspecified IP (`0.0.0.0`, `::`).
pub fn advertise_url(configured: Option<&str>, bound: SocketAddr, hostname: &str) -> String {
    if let Some(u) = configured {
        return u.trim_end_matches('/').to_string();
    }
    let host = match bound.ip() {
        ip if ip.is_unspecified() => hostname.to_string(),
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    format!("http://{host}:{}", bound.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_single_and_many() {
        let mut c = AgentConfig {
            node_id: "dev".into(),
            ..AgentConfig::default()
        };
        assert_eq!(c.node_ids(), vec!["dev"]);
        c.nodes = 3;
        assert_eq!(c.node_ids(), vec!["dev-1", "dev-2", "dev-3"]);
        // Virtual nodes are named the same way.
        c.nodes = 1;
        c.simulate = 2;
        assert_eq!(c.node_ids(), vec!["dev-1", "dev-2"]);
        c.simulate = 1;
        assert_eq!(c.node_ids(), vec!["dev"]);
    }

    #[test]
    fn deserializes_partial_section_and_rejects_unknown_keys() {
        let c: AgentConfig = serde_json::from_value(serde_json::json!({
            "servers": ["http://a:8080"],
            "nodes": 4,
            "listen_addr": "127.0.0.1:0"
        }))
        .expect("valid section");
        assert_eq!(c.nodes, 4);
        assert_eq!(c.heartbeat_interval_seconds, 5);
        assert_eq!(c.kill_grace_seconds, 10);
        assert_eq!(c.listen_addr, "127.0.0.1:0".parse().expect("addr"));
        assert_eq!(c.sensitive, SensitiveConfig::default());
        assert_eq!(c.sensitive.wipe_timeout_seconds, 600);
        let bad = serde_json::from_value::<AgentConfig>(serde_json::json!({"nodez": 4}));
        assert!(bad.is_err());
    }

    #[test]
    fn sensitive_section_takes_the_wipe_keys_only() {
        let c: AgentConfig = serde_json::from_value(serde_json::json!({
            "sensitive": {"wipe_command": "/usr/sbin/wipe --all"}
        }))
        .expect("valid section");
        assert_eq!(
            c.sensitive.wipe_command.as_deref(),
            Some("/usr/sbin/wipe --all")
        );
        assert_eq!(c.sensitive.wipe_timeout_seconds, 600);
        let bad = serde_json::from_value::<AgentConfig>(serde_json::json!({
            "sensitive": {"wipe_comand": "x"}
        }));
        assert!(bad.is_err());
    }

    #[test]
    fn validate_catches_bad_settings() {
        let ok = AgentConfig {
            node_id: "n1".into(),
            ..AgentConfig::default()
        };
        assert!(ok.validate().is_ok());
        let sim = AgentConfig {
            simulate: 10_000,
            sim_duration_seconds: 0.5,
            ..ok.clone()
        };
        assert!(sim.validate().is_ok());
        for bad in [
            AgentConfig {
                nodes: 0,
                ..ok.clone()
            },
            AgentConfig {
                node_id: "../etc".into(),
                ..ok.clone()
            },
            AgentConfig {
                servers: vec![],
                ..ok.clone()
            },
            AgentConfig {
                heartbeat_interval_seconds: 0,
                ..ok.clone()
            },
            AgentConfig {
                node_id: "allocations".into(),
                ..ok.clone()
            },
            AgentConfig {
                advertise_url: Some("agent:8081".into()),
                ..ok.clone()
            },
            AgentConfig {
                simulate: 10,
                nodes: 2,
                ..ok.clone()
            },
            AgentConfig {
                simulate: 10,
                sim_duration_seconds: -1.0,
                ..ok.clone()
            },
            AgentConfig {
                simulate: 10,
                sim_duration_seconds: f64::NAN,
                ..ok.clone()
            },
            AgentConfig {
                simulate: 10,
                sim_poll_batch: 0,
                ..ok.clone()
            },
            AgentConfig {
                simulate: 10,
                sim_memory_gb: u64::MAX,
                ..ok.clone()
            },
            AgentConfig {
                sensitive: SensitiveConfig {
                    wipe_command: Some("  ".into()),
                    ..SensitiveConfig::default()
                },
                ..ok.clone()
            },
            AgentConfig {
                sensitive: SensitiveConfig {
                    wipe_timeout_seconds: 0,
                    ..SensitiveConfig::default()
                },
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_client_trusts_a_readable_ca_file_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = AgentConfig {
            tls_ca_file: Some(dir.path().join("missing.pem")),
            ..AgentConfig::default()
        };
        let e = missing.client().expect_err("unreadable").to_string();
        assert!(
            e.contains("tls_ca_file") && e.contains("missing.pem"),
            "{e}"
        );
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").expect("write");
        let e = AgentConfig {
            tls_ca_file: Some(junk),
            ..AgentConfig::default()
        }
        .client()
        .expect_err("no certificate")
        .to_string();
        assert!(e.contains("tls_ca_file"), "{e}");
        assert!(AgentConfig::default().client().is_ok());
    }

    #[test]
    fn advertise_url_variants() {
        let v4: SocketAddr = "127.0.0.1:9000".parse().expect("addr");
        let any: SocketAddr = "0.0.0.0:8081".parse().expect("addr");
        let v6: SocketAddr = "[::1]:8081".parse().expect("addr");
        let any6: SocketAddr = "[::]:8081".parse().expect("addr");
        assert_eq!(advertise_url(None, v4, "h"), "http://127.0.0.1:9000");
        assert_eq!(advertise_url(None, any, "h"), "http://h:8081");
        assert_eq!(advertise_url(None, v6, "h"), "http://[::1]:8081");
        assert_eq!(advertise_url(None, any6, "h"), "http://h:8081");
        assert_eq!(advertise_url(Some("http://x:1/"), any, "h"), "http://x:1");
    }
}
