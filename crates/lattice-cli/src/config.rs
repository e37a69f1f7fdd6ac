//! The configuration file (`--config lattice.yaml`): a `server:` section (control plane), an
//! `agent:` section (node agent) and a `telemetry:` section (read by both: the agent pushes,
//! the server queries). Precedence, lowest first: built-in defaults, the YAML file,
//! environment variables `LATTICE_<SECTION>__<KEY>` (e.g. `LATTICE_SERVER__API_ADDR`), flags.
//! Unknown keys are errors naming the key. Every key is documented in docs/configuration.md.

use std::path::Path;

use anyhow::Context;
use figment::providers::{Env, Format, Serialized, Yaml};
use figment::Figment;
use lattice_agent::{AgentConfig, TelemetryConfig};
use lattice_server::config::TsdbQuery;
use lattice_server::ServerConfig;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub server: ServerConfig,
    pub agent: AgentConfig,
    pub telemetry: TelemetryConfig,
}

/// Loads the configuration. `overrides` holds flags given on the command line, as a partial
/// document with the same shape as the file.
pub fn load(path: Option<&Path>, overrides: serde_json::Value) -> anyhow::Result<FileConfig> {
    let mut fig = Figment::from(Serialized::defaults(FileConfig::default()));
    if let Some(p) = path {
        if !p.is_file() {
            anyhow::bail!("config file {} does not exist", p.display());
        }
        fig = fig.merge(Yaml::file(p));
    }
    fig = fig
        .merge(
            Env::prefixed("LATTICE_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        )
        .merge(Serialized::defaults(overrides));
    let mut cfg = fig
        .extract::<FileConfig>()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
        .and_then(|c| {
            c.telemetry.validate()?;
            Ok(c)
        })
        .with_context(|| match path {
            Some(p) => format!("loading {}", p.display()),
            None => "loading configuration from defaults, environment and flags".into(),
        })?;
    cfg.server.tsdb = tsdb_query(&cfg.telemetry);
    Ok(cfg)
}

/// What the control plane needs of the `telemetry:` section to query the TSDB: the query URL,
/// the credentials, and a `rate()` window of four push intervals.
pub fn tsdb_query(t: &TelemetryConfig) -> Option<TsdbQuery> {
    Some(TsdbQuery {
        url: t.query_url()?,
        bearer_token: t.bearer_token.clone(),
        basic_auth: t
            .basic_auth
            .as_ref()
            .map(|b| (b.username.clone(), b.password.clone())),
        rate_window_seconds: 4 * t.prod_interval_seconds.max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn file_then_flags() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "server:\n  api_addr: 127.0.0.1:9999\n  node_down_after_seconds: 7\nagent:\n  nodes: 3"
        )
        .unwrap();
        let cfg = load(
            Some(f.path()),
            serde_json::json!({"server": {"api_addr": "127.0.0.1:7777"}}),
        )
        .unwrap();
        assert_eq!(cfg.server.api_addr.to_string(), "127.0.0.1:7777");
        assert_eq!(cfg.server.node_down_after_seconds, 7);
        assert_eq!(cfg.agent.nodes, 3);
    }

    #[test]
    fn telemetry_section_with_the_seed_keys_and_env_overrides() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "telemetry:\n  tsdb_endpoint: \"http://victoriametrics:8428\"\n  prod_interval_seconds: 30"
        )
        .unwrap();
        let cfg = load(Some(f.path()), serde_json::json!({})).unwrap();
        assert_eq!(
            cfg.telemetry.tsdb_endpoint.as_deref(),
            Some("http://victoriametrics:8428")
        );
        assert_eq!(cfg.telemetry.prod_interval_seconds, 30);
        let q = cfg.server.tsdb.expect("the server queries the same host");
        assert_eq!(q.url, "http://victoriametrics:8428");
        assert_eq!(q.rate_window_seconds, 120);
        let none = load(None, serde_json::json!({})).unwrap();
        assert!(!none.telemetry.enabled(), "absent section: telemetry off");
        assert_eq!(none.server.tsdb, None);
        let mut bad = tempfile::NamedTempFile::new().unwrap();
        writeln!(bad, "telemetry:\n  tsdb_endpiont: http://x").unwrap();
        let err = format!(
            "{:#}",
            load(Some(bad.path()), serde_json::json!({})).unwrap_err()
        );
        assert!(err.contains("tsdb_endpiont"), "{err}");
    }

    #[test]
    fn simulation_keys_in_the_agent_section_and_flags_over_them() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "agent:\n  simulate: 100\n  sim_duration_seconds: 0.5\n  sim_features: [a, b]\n  sim_groups: 4"
        )
        .unwrap();
        let cfg = load(
            Some(f.path()),
            serde_json::json!({"agent": {"sim_poll_batch": 25, "sim_duration_seconds": 2}}),
        )
        .unwrap();
        assert_eq!(cfg.agent.simulate, 100);
        assert_eq!(cfg.agent.sim_duration_seconds, 2.0);
        assert_eq!(cfg.agent.sim_features, vec!["a", "b"]);
        assert_eq!((cfg.agent.sim_groups, cfg.agent.sim_poll_batch), (4, 25));
        assert_eq!(cfg.agent.node_ids().len(), 100);
        let none = load(None, serde_json::json!({})).unwrap();
        assert_eq!(none.agent.simulate, 0, "off by default");
    }

    #[test]
    fn unknown_keys_are_named() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "server:\n  api_adr: 127.0.0.1:9999").unwrap();
        let err = format!(
            "{:#}",
            load(Some(f.path()), serde_json::json!({})).unwrap_err()
        );
        assert!(err.contains("api_adr"), "{err}");
    }
}
