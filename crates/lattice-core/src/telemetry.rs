//! Answers of the telemetry read endpoints (`GET /api/v1/allocations/{id}/metrics`,
//! `GET /api/v1/telemetry/nodes`), shared by the server that builds them and the client that
//! reads them. Figures are `None` when the TSDB had no recent sample.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuUse {
    pub gpu: String,
    pub model: String,
    pub utilization: Option<f64>,
    pub memory_used_bytes: Option<f64>,
    pub memory_total_bytes: Option<f64>,
}

/// An allocation's use of one node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeUse {
    pub node: String,
    /// CPU cores used (rate of CPU seconds over `rate_window_seconds`).
    pub cpu_cores: Option<f64>,
    pub cpu_seconds: Option<f64>,
    pub memory_bytes: Option<f64>,
    pub processes: Option<f64>,
    pub node_cpu_utilization: Option<f64>,
    pub node_memory_used_bytes: Option<f64>,
    pub node_memory_total_bytes: Option<f64>,
    #[serde(default)]
    pub gpus: Vec<GpuUse>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AllocationMetrics {
    pub allocation_id: u64,
    pub state: String,
    /// The TSDB that answered.
    pub tsdb: String,
    pub rate_window_seconds: u64,
    pub nodes: Vec<NodeUse>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeUtilization {
    pub node: String,
    pub cpu_utilization: Option<f64>,
    pub memory_used_bytes: Option<f64>,
    pub memory_total_bytes: Option<f64>,
    pub gpu_utilization: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeUtilizationList {
    /// False when the control plane has no TSDB configured (then `nodes` is empty).
    pub configured: bool,
    pub tsdb: Option<String>,
    pub nodes: Vec<NodeUtilization>,
}
