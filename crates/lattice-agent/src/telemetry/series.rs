//! The pushed series: the one list of their names, kinds, label sets and meanings (the table
//! in docs/telemetry.md is this list), and [`Batch`], one collection's samples.

/// Name, kind, labels (besides `node`), help.
pub type SeriesDoc = (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
);

pub const NODE_CPU_UTILIZATION: &str = "lattice_node_cpu_utilization_ratio";
pub const NODE_MEMORY_USED: &str = "lattice_node_memory_used_bytes";
pub const NODE_MEMORY_TOTAL: &str = "lattice_node_memory_total_bytes";
pub const NODE_GPU_UTILIZATION: &str = "lattice_node_gpu_utilization_ratio";
pub const NODE_GPU_MEMORY_USED: &str = "lattice_node_gpu_memory_used_bytes";
pub const NODE_GPU_MEMORY_TOTAL: &str = "lattice_node_gpu_memory_total_bytes";
pub const NODE_NETWORK_RECEIVE: &str = "lattice_node_network_receive_bytes_total";
pub const NODE_NETWORK_TRANSMIT: &str = "lattice_node_network_transmit_bytes_total";
pub const NODE_DISK_READ: &str = "lattice_node_disk_read_bytes_total";
pub const NODE_DISK_WRITTEN: &str = "lattice_node_disk_written_bytes_total";
pub const ALLOCATION_CPU: &str = "lattice_allocation_cpu_seconds_total";
pub const ALLOCATION_MEMORY: &str = "lattice_allocation_resident_memory_bytes";
pub const ALLOCATION_PROCESSES: &str = "lattice_allocation_processes";

const ALLOC_LABELS: &[&str] = &["allocation", "tenant", "vcluster"];

/// Every pushed series.
pub const ALL: &[SeriesDoc] = &[
    (
        NODE_CPU_UTILIZATION,
        "gauge",
        &[],
        "share of CPU time not idle, all CPUs, since the previous collection (0-1)",
    ),
    (NODE_MEMORY_USED, "gauge", &[], "MemTotal - MemAvailable"),
    (NODE_MEMORY_TOTAL, "gauge", &[], "MemTotal"),
    (
        NODE_GPU_UTILIZATION,
        "gauge",
        &["gpu", "model"],
        "NVML utilization.gpu (0-1)",
    ),
    (
        NODE_GPU_MEMORY_USED,
        "gauge",
        &["gpu", "model"],
        "NVML memory used",
    ),
    (
        NODE_GPU_MEMORY_TOTAL,
        "gauge",
        &["gpu", "model"],
        "NVML memory total",
    ),
    (
        NODE_NETWORK_RECEIVE,
        "counter",
        &["device"],
        "bytes received since boot, per interface, loopback excluded",
    ),
    (
        NODE_NETWORK_TRANSMIT,
        "counter",
        &["device"],
        "bytes sent since boot, per interface, loopback excluded",
    ),
    (
        NODE_DISK_READ,
        "counter",
        &["device"],
        "bytes read since boot, per physical whole disk",
    ),
    (
        NODE_DISK_WRITTEN,
        "counter",
        &["device"],
        "bytes written since boot, per physical whole disk",
    ),
    (
        ALLOCATION_CPU,
        "counter",
        ALLOC_LABELS,
        "user + system CPU seconds of the rank's process group",
    ),
    (
        ALLOCATION_MEMORY,
        "gauge",
        ALLOC_LABELS,
        "resident memory summed over the rank's process group",
    ),
    (
        ALLOCATION_PROCESSES,
        "gauge",
        ALLOC_LABELS,
        "processes in the rank's process group",
    ),
];

/// One sample: a series (name and labels, `node` included) and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// One collection: every sample, all stamped with the collection time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub samples: Vec<Sample>,
}

impl Batch {
    pub fn new(timestamp_ms: i64) -> Self {
        Batch {
            timestamp_ms,
            samples: Vec::new(),
        }
    }

    pub fn push(&mut self, name: &'static str, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push(Sample {
            name,
            labels,
            value,
        });
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = std::collections::BTreeSet::new();
        for (name, kind, labels, help) in ALL {
            assert!(seen.insert(*name), "{name} listed twice");
            assert!(name.starts_with("lattice_node_") || name.starts_with("lattice_allocation_"));
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
            assert_eq!(*kind == "counter", name.ends_with("_total"), "{name}");
            assert!(!help.is_empty());
            assert!(!labels.contains(&"node"), "node is on every series already");
        }
    }
}
