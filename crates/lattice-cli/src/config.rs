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
    fig.extract::<FileConfig>()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
        .with_context(|| match path {
            Some(p) => format!("loading {}", p.display()),
            None => "loading configuration from defaults, environment and flags".into(),
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
        let none = load(None, serde_json::json!({})).unwrap();
        assert!(!none.telemetry.enabled(), "absent section: telemetry off");
        let mut bad = tempfile::NamedTempFile::new().unwrap();
        writeln!(bad, "telemetry:\n  tsdb_endpiont: http://x").unwrap();
        let err = format!("{:#}", load(Some(bad.path()), serde_json::json!({})).unwrap_err());
        assert!(err.contains("tsdb_endpiont"), "{err}");
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
