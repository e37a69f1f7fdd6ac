//! [`NodeSpec`]: what every virtual node registers with (pure). Node `i` (1-based, its ID
//! `{node_id}-{i}`, or `{node_id}` when there is one) offers the configured CPUs, memory and
//! GPUs, the configured features and, with `sim_groups = G`, the topology feature
//! `group=g{i % G}`. Its hostname is its ID.

use lattice_core::{GpuInfo, NodeRegistration};

use crate::config::AgentConfig;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// `node_id` of the configuration: the IDs are `{base}-{i}`.
    base: String,
    cpus: u32,
    memory_bytes: u64,
    gpus: GpuInfo,
    features: Vec<String>,
    groups: u32,
    agent_url: String,
}

impl NodeSpec {
    /// From a validated configuration; `agent_url` is the agent's own HTTP server.
    pub fn new(config: &AgentConfig, agent_url: String) -> Self {
        let mut features = config.features.clone();
        for f in &config.sim_features {
            if !features.contains(f) {
                features.push(f.clone());
            }
        }
        NodeSpec {
            base: config.node_id.clone(),
            cpus: config.sim_cpus,
            memory_bytes: config.sim_memory_gb.saturating_mul(1 << 30),
            gpus: GpuInfo {
                count: config.sim_gpus,
                model: config.sim_gpu_model.clone().filter(|m| !m.is_empty()),
            },
            features,
            groups: config.sim_groups,
            agent_url,
        }
    }

    /// The 1-based number of node `id` (1 when it is not `{base}-{i}`: a lone node).
    fn number(&self, id: &str) -> u32 {
        id.strip_prefix(self.base.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|i| i.parse().ok())
            .unwrap_or(1)
    }

    /// The topology group of node `id`, if groups are configured.
    pub fn group(&self, id: &str) -> Option<String> {
        (self.groups > 0).then(|| format!("g{}", self.number(id) % self.groups))
    }

    pub fn registration(&self, id: &str) -> NodeRegistration {
        let mut features = self.features.clone();
        if let Some(g) = self.group(id) {
            features.push(format!(
                "{}{g}",
                lattice_core::scheduler::cycle::GROUP_PREFIX
            ));
        }
        NodeRegistration {
            id: id.to_string(),
            hostname: id.to_string(),
            cpus: self.cpus,
            memory_bytes: self.memory_bytes,
            gpus: self.gpus.clone(),
            features,
            agent_url: self.agent_url.clone(),
            agent_token: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AgentConfig {
        AgentConfig {
            node_id: "sim".into(),
            simulate: 10,
            features: vec!["ib".into()],
            sim_features: vec!["nvme".into(), "ib".into()],
            sim_cpus: 32,
            sim_memory_gb: 2,
            sim_gpus: 4,
            sim_gpu_model: Some("NVIDIA H100".into()),
            sim_groups: 3,
            ..AgentConfig::default()
        }
    }

    #[test]
    fn registration_carries_the_configured_capabilities_and_group() {
        let spec = NodeSpec::new(&config(), "http://h:1".into());
        let r = spec.registration("sim-7");
        assert_eq!((r.id.as_str(), r.hostname.as_str()), ("sim-7", "sim-7"));
        assert_eq!((r.cpus, r.memory_bytes), (32, 2 << 30));
        assert_eq!(
            (r.gpus.count, r.gpus.model.as_deref()),
            (4, Some("NVIDIA H100"))
        );
        assert_eq!(r.features, vec!["ib", "nvme", "group=g1"]);
        assert_eq!(r.agent_url, "http://h:1");
    }

    #[test]
    fn groups_follow_the_node_number() {
        let spec = NodeSpec::new(&config(), "http://h:1".into());
        let groups: Vec<String> = (1..=6)
            .filter_map(|i| spec.group(&format!("sim-{i}")))
            .collect();
        assert_eq!(groups, vec!["g1", "g2", "g0", "g1", "g2", "g0"]);
        assert_eq!(spec.group("sim").as_deref(), Some("g1"), "a lone node is 1");
        let none = NodeSpec::new(
            &AgentConfig {
                sim_groups: 0,
                ..config()
            },
            "http://h:1".into(),
        );
        assert_eq!(none.group("sim-3"), None);
        assert_eq!(none.registration("sim-3").features, vec!["ib", "nvme"]);
    }
}
