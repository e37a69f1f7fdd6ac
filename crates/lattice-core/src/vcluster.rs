//! vClusters: named pools of nodes (Slurm's partitions), each with its own scheduling policy,
//! cycle interval, score weights and fair-share half-life. `default` always exists and holds
//! every node.
//!
//! A node belongs to a vCluster when it is in the vCluster's explicit `nodes` list, or when
//! `features` is non-empty and the node has all of them; a vCluster with neither holds every
//! node. Pools may overlap.

use serde::{Deserialize, Serialize};

use crate::error::Rejection;
use crate::node::{Node, NodeId};
use crate::submit::{validate_name, DEFAULT_VCLUSTER};
use crate::tenant::present;
use crate::time::Timestamp;

pub const DEFAULT_CYCLE_INTERVAL_MS: u64 = 500;
pub const MIN_CYCLE_INTERVAL_MS: i64 = 10;
pub const MAX_CYCLE_INTERVAL_MS: i64 = 3_600_000;
/// Seven days.
pub const DEFAULT_HALF_LIFE_SECONDS: u64 = 7 * 24 * 3600;
pub const MAX_HALF_LIFE_SECONDS: i64 = 366 * 24 * 3600;
pub const MAX_WEIGHT: i64 = 1_000_000;
pub const MAX_SELECTOR_ITEMS: usize = 10_000;

/// How a vCluster's queue is worked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// EASY backfill: the best-scored allocation that cannot start gets a reservation; lower
    /// ones start now only if they do not delay it.
    #[default]
    Backfill,
    /// Strict order: nothing starts past the first allocation that cannot.
    Fifo,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Backfill => "backfill",
            Policy::Fifo => "fifo",
        }
    }
}

/// Weights of the terms of an allocation's score (see docs/scheduling.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    pub priority: u32,
    pub age: u32,
    pub fairshare: u32,
    pub topology: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            priority: 1000,
            age: 100,
            fairshare: 500,
            topology: 10,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VCluster {
    pub name: String,
    /// Nodes with all of these features belong to the vCluster.
    pub features: Vec<String>,
    /// These nodes belong to the vCluster.
    pub nodes: Vec<NodeId>,
    pub policy: Policy,
    /// The vCluster's scheduling cycle runs at most this often (changes in between are
    /// batched into the next cycle) and, while work is pending, at least this often.
    pub cycle_interval_ms: u64,
    pub weights: Weights,
    /// Half-life of the fair-share usage recorded in this vCluster.
    pub fairshare_half_life_seconds: u64,
    /// Whether pending work may preempt lower-priority running work here.
    pub preemption: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl VCluster {
    pub fn new(name: &str, now: Timestamp) -> Self {
        VCluster {
            name: name.to_string(),
            features: Vec::new(),
            nodes: Vec::new(),
            policy: Policy::Backfill,
            cycle_interval_ms: DEFAULT_CYCLE_INTERVAL_MS,
            weights: Weights::default(),
            fairshare_half_life_seconds: DEFAULT_HALF_LIFE_SECONDS,
            preemption: true,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether `node` belongs to this vCluster.
    pub fn contains(&self, node: &Node) -> bool {
        if self.features.is_empty() && self.nodes.is_empty() {
            return true;
        }
        (!self.features.is_empty() && self.features.iter().all(|f| node.features.contains(f)))
            || self.nodes.contains(&node.id)
    }

    /// Applies a validated change (absent fields stay as they are).
    pub fn apply_change(&mut self, c: &VClusterChange, now: Timestamp) {
        if let Some(v) = &c.features {
            self.features = v.clone();
        }
        if let Some(v) = &c.nodes {
            self.nodes = v.clone();
        }
        if let Some(v) = c.policy {
            self.policy = v;
        }
        if let Some(v) = c.cycle_interval_ms {
            self.cycle_interval_ms = v;
        }
        let w = &mut self.weights;
        for (slot, v) in [
            (&mut w.priority, c.weight_priority),
            (&mut w.age, c.weight_age),
            (&mut w.fairshare, c.weight_fairshare),
            (&mut w.topology, c.weight_topology),
        ] {
            if let Some(v) = v {
                *slot = v;
            }
        }
        if let Some(v) = c.fairshare_half_life_seconds {
            self.fairshare_half_life_seconds = v;
        }
        if let Some(v) = c.preemption {
            self.preemption = v;
        }
        self.updated_at = now;
    }
}

/// A validated change of a vCluster; `None` leaves a setting as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VClusterChange {
    pub features: Option<Vec<String>>,
    pub nodes: Option<Vec<NodeId>>,
    pub policy: Option<Policy>,
    pub cycle_interval_ms: Option<u64>,
    pub weight_priority: Option<u32>,
    pub weight_age: Option<u32>,
    pub weight_fairshare: Option<u32>,
    pub weight_topology: Option<u32>,
    pub fairshare_half_life_seconds: Option<u64>,
    pub preemption: Option<bool>,
}

impl VClusterChange {
    /// Whether the change touches which nodes belong (refused for `default`).
    pub fn changes_selector(&self) -> bool {
        self.features.is_some() || self.nodes.is_some()
    }
}

/// Score weights in a request; absent weights stay as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fairshare: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<i64>,
}

/// Body of `POST /api/v1/vclusters` (with `name`) and `PUT /api/v1/vclusters/{name}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VClusterRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub features: Option<Option<Vec<String>>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub nodes: Option<Option<Vec<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_interval_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<WeightsRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fairshare_half_life_seconds: Option<i64>,
    /// Whether higher-priority pending work may preempt running work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemption: Option<bool>,
}

fn in_range(field: &str, v: i64, min: i64, max: i64) -> Result<i64, Rejection> {
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(Rejection::invalid(
            field,
            format!("{v} is out of range {min}..={max}"),
        ))
    }
}

fn names(field: &str, v: Option<Option<Vec<String>>>) -> Result<Option<Vec<String>>, Rejection> {
    let Some(list) = v else { return Ok(None) };
    let mut list = list.unwrap_or_default();
    if list.len() > MAX_SELECTOR_ITEMS {
        return Err(Rejection::invalid(
            field,
            format!("at most {MAX_SELECTOR_ITEMS} entries"),
        ));
    }
    for item in &list {
        if item.is_empty() || item.len() > 63 || item.chars().any(char::is_control) {
            return Err(Rejection::invalid(
                field,
                format!("{item:?} must be 1-63 printable characters"),
            ));
        }
    }
    list.sort();
    list.dedup();
    Ok(Some(list))
}

impl VClusterRequest {
    pub fn into_change(self) -> Result<VClusterChange, Rejection> {
        if let Some(n) = &self.name {
            validate_name("name", n)?;
        }
        let w = self.weights.unwrap_or_default();
        let weight = |field: &str, v: Option<i64>| {
            v.map(|v| in_range(field, v, 0, MAX_WEIGHT).map(|v| v as u32))
                .transpose()
        };
        Ok(VClusterChange {
            features: names("features", self.features)?,
            nodes: names("nodes", self.nodes)?,
            policy: self.policy,
            cycle_interval_ms: self
                .cycle_interval_ms
                .map(|v| {
                    in_range(
                        "cycle_interval_ms",
                        v,
                        MIN_CYCLE_INTERVAL_MS,
                        MAX_CYCLE_INTERVAL_MS,
                    )
                    .map(|v| v as u64)
                })
                .transpose()?,
            weight_priority: weight("weights.priority", w.priority)?,
            weight_age: weight("weights.age", w.age)?,
            weight_fairshare: weight("weights.fairshare", w.fairshare)?,
            weight_topology: weight("weights.topology", w.topology)?,
            fairshare_half_life_seconds: self
                .fairshare_half_life_seconds
                .map(|v| {
                    in_range("fairshare_half_life_seconds", v, 1, MAX_HALF_LIFE_SECONDS)
                        .map(|v| v as u64)
                })
                .transpose()?,
            preemption: self.preemption,
        })
    }
}

/// Whether `name` is the built-in vCluster that holds every node.
pub fn is_default(name: &str) -> bool {
    name == DEFAULT_VCLUSTER
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeRegistration;

    fn node(id: &str, features: &[&str]) -> Node {
        Node::from_registration(
            NodeRegistration {
                id: id.into(),
                hostname: id.into(),
                cpus: 1,
                memory_bytes: 1,
                gpus: Default::default(),
                features: features.iter().map(|f| f.to_string()).collect(),
                agent_url: String::new(),
                agent_token: None,
            },
            Timestamp(0),
            0,
        )
    }

    #[test]
    fn membership_by_features_or_list() {
        let mut v = VCluster::new("gpu", Timestamp(0));
        assert!(v.contains(&node("a", &[])), "no selector: every node");
        v.features = vec!["gpu".into(), "ib".into()];
        assert!(v.contains(&node("a", &["ib", "gpu"])));
        assert!(!v.contains(&node("b", &["gpu"])));
        v.nodes = vec!["b".into()];
        assert!(v.contains(&node("b", &["gpu"])));
        v.features.clear();
        assert!(!v.contains(&node("a", &["ib", "gpu"])));
    }

    #[test]
    fn requests_validate_and_apply() {
        let r: VClusterRequest = serde_json::from_str(
            r#"{"name":"gpu","features":["ib","gpu","ib"],"policy":"fifo",
                "cycle_interval_ms":2000,"weights":{"fairshare":7}}"#,
        )
        .unwrap();
        let c = r.into_change().unwrap();
        assert_eq!(c.features, Some(vec!["gpu".to_string(), "ib".to_string()]));
        assert!(c.changes_selector());
        let mut v = VCluster::new("gpu", Timestamp(0));
        v.apply_change(&c, Timestamp(9));
        assert_eq!(v.policy, Policy::Fifo);
        assert_eq!(v.cycle_interval_ms, 2000);
        assert_eq!(v.weights.fairshare, 7);
        assert_eq!(v.weights.priority, Weights::default().priority);

        let bad = |json: &str| match serde_json::from_str::<VClusterRequest>(json)
            .unwrap()
            .into_change()
        {
            Err(Rejection::Invalid { field, .. }) => field,
            other => panic!("{json}: {other:?}"),
        };
        assert_eq!(bad(r#"{"cycle_interval_ms":1}"#), "cycle_interval_ms");
        assert_eq!(bad(r#"{"weights":{"age":-1}}"#), "weights.age");
        assert_eq!(bad(r#"{"nodes":[""]}"#), "nodes");
        assert_eq!(
            bad(r#"{"fairshare_half_life_seconds":0}"#),
            "fairshare_half_life_seconds"
        );
        assert!(serde_json::from_str::<VClusterRequest>(r#"{"policy":"lifo"}"#).is_err());
    }
}
