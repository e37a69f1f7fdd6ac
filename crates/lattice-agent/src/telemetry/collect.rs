//! [`Collector`]: one collection of the whole host — CPU, memory, GPUs, network, disks — and
//! of every running rank's process group, as a [`Batch`]. The host is measured once and its
//! figures are reported for every node the agent presents (like its registration does).
//! Blocking (reads `/proc` and `/sys`, calls NVML): run it on a blocking thread.

use std::collections::BTreeSet;
use std::path::PathBuf;

use lattice_core::NodeId;

use super::cpu::{self, CpuTimes};
use super::disk;
use super::gpu::GpuCollector;
use super::groups;
use super::memory;
use super::net;
use super::series::{self as s, Batch};
use crate::ranks::RunningGroup;

/// Where the kernel's files are (the real ones, except in tests).
#[derive(Clone, Debug)]
pub struct Sources {
    pub proc_dir: PathBuf,
    pub sys_block: PathBuf,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            proc_dir: PathBuf::from("/proc"),
            sys_block: PathBuf::from("/sys/block"),
        }
    }
}

pub struct Collector {
    nodes: Vec<NodeId>,
    sources: Sources,
    gpus: GpuCollector,
    prev_cpu: Option<CpuTimes>,
    ticks_per_second: u64,
    page_bytes: u64,
    /// Whether a missing or unreadable kernel file was logged already.
    warned: BTreeSet<&'static str>,
}

impl Collector {
    pub fn new(nodes: Vec<NodeId>, sources: Sources, gpus: GpuCollector) -> Self {
        let (ticks_per_second, page_bytes) = groups::system_units();
        Collector {
            nodes,
            sources,
            gpus,
            prev_cpu: None,
            ticks_per_second,
            page_bytes,
            warned: BTreeSet::new(),
        }
    }

    fn read(&mut self, what: &'static str, path: PathBuf) -> Option<String> {
        match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) => {
                if self.warned.insert(what) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read {what}; its series are skipped");
                }
                None
            }
        }
    }

    /// One collection stamped `timestamp_ms`, for the given running ranks.
    pub fn collect(&mut self, running: &[RunningGroup], timestamp_ms: i64) -> Batch {
        // Host samples without the `node` label, added per presented node below.
        let mut host = Batch::new(timestamp_ms);
        let proc_dir = self.sources.proc_dir.clone();
        if let Some(now) = self
            .read("CPU times", proc_dir.join("stat"))
            .as_deref()
            .and_then(cpu::parse_stat)
        {
            host.push(
                s::NODE_CPU_UTILIZATION,
                vec![],
                cpu::utilization(self.prev_cpu, now),
            );
            self.prev_cpu = Some(now);
        }
        if let Some(m) = self
            .read("memory", proc_dir.join("meminfo"))
            .as_deref()
            .and_then(memory::parse_meminfo)
        {
            host.push(s::NODE_MEMORY_USED, vec![], m.used_bytes as f64);
            host.push(s::NODE_MEMORY_TOTAL, vec![], m.total_bytes as f64);
        }
        for g in self.gpus.read() {
            let labels = vec![("gpu", g.index.to_string()), ("model", g.model.clone())];
            host.push(s::NODE_GPU_UTILIZATION, labels.clone(), g.utilization);
            host.push(
                s::NODE_GPU_MEMORY_USED,
                labels.clone(),
                g.memory_used_bytes as f64,
            );
            host.push(
                s::NODE_GPU_MEMORY_TOTAL,
                labels,
                g.memory_total_bytes as f64,
            );
        }
        if let Some(text) = self.read("network counters", proc_dir.join("net/dev")) {
            for d in net::parse_net_dev(&text) {
                let labels = vec![("device", d.device)];
                host.push(
                    s::NODE_NETWORK_RECEIVE,
                    labels.clone(),
                    d.receive_bytes as f64,
                );
                host.push(s::NODE_NETWORK_TRANSMIT, labels, d.transmit_bytes as f64);
            }
        }
        if let Some(text) = self.read("disk counters", proc_dir.join("diskstats")) {
            let links = disk::read_sys_block(&self.sources.sys_block);
            let physical =
                disk::physical_disks(links.iter().map(|(n, t)| (n.as_str(), t.as_str())));
            for d in disk::physical_io(&text, &physical) {
                let labels = vec![("device", d.device)];
                host.push(s::NODE_DISK_READ, labels.clone(), d.read_bytes as f64);
                host.push(s::NODE_DISK_WRITTEN, labels, d.written_bytes as f64);
            }
        }

        let mut batch = Batch::new(timestamp_ms);
        for node in &self.nodes {
            for h in &host.samples {
                let mut l = Vec::with_capacity(h.labels.len() + 1);
                l.push(("node", node.clone()));
                l.extend(h.labels.iter().cloned());
                batch.push(h.name, l, h.value);
            }
        }
        if !running.is_empty() {
            let pgids: BTreeSet<i32> = running.iter().map(|r| r.group.pgid).collect();
            let usage = groups::sum_by_group(
                groups::scan(&proc_dir),
                &pgids,
                self.ticks_per_second,
                self.page_bytes,
            );
            for r in running {
                let Some(u) = usage.get(&r.group.pgid) else {
                    continue;
                };
                let labels = vec![
                    ("node", r.key.node_id.clone()),
                    ("allocation", r.key.allocation_id.to_string()),
                    ("tenant", r.group.tenant.clone()),
                    ("vcluster", r.group.vcluster.clone()),
                ];
                batch.push(s::ALLOCATION_CPU, labels.clone(), u.cpu_seconds);
                batch.push(
                    s::ALLOCATION_MEMORY,
                    labels.clone(),
                    u.resident_bytes as f64,
                );
                batch.push(s::ALLOCATION_PROCESSES, labels, u.processes as f64);
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranks::Group;
    use crate::reconcile::RankKey;

    /// A fake `/proc` and `/sys/block` made of this machine's recorded files.
    fn fake_root() -> (tempfile::TempDir, Sources) {
        let dir = tempfile::tempdir().expect("tempdir");
        let proc_dir = dir.path().join("proc");
        let sys_block = dir.path().join("sys/block");
        std::fs::create_dir_all(proc_dir.join("net")).expect("mkdir");
        std::fs::create_dir_all(&sys_block).expect("mkdir");
        let fixture = |name: &str| {
            std::fs::read_to_string(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR")))
                .expect("fixture")
        };
        std::fs::write(proc_dir.join("stat"), fixture("proc_stat.txt")).expect("write");
        std::fs::write(proc_dir.join("meminfo"), fixture("proc_meminfo.txt")).expect("write");
        std::fs::write(proc_dir.join("net/dev"), fixture("proc_net_dev.txt")).expect("write");
        std::fs::write(proc_dir.join("diskstats"), fixture("proc_diskstats.txt")).expect("write");
        for line in fixture("sys_block_links.txt").lines() {
            let (name, target) = line.split_once(' ').expect("name target");
            std::os::unix::fs::symlink(target, sys_block.join(name)).expect("symlink");
        }
        for (pid, file) in [
            (18714, "proc_pid_stat_cat.txt"),
            (18827, "proc_pid_stat_odd_name.txt"),
        ] {
            std::fs::create_dir_all(proc_dir.join(pid.to_string())).expect("mkdir");
            std::fs::write(proc_dir.join(format!("{pid}/stat")), fixture(file)).expect("write");
        }
        (
            dir,
            Sources {
                proc_dir,
                sys_block,
            },
        )
    }

    fn value(b: &Batch, name: &str, node: &str) -> Vec<f64> {
        b.samples
            .iter()
            .filter(|x| x.name == name && x.labels.contains(&("node", node.to_string())))
            .map(|x| x.value)
            .collect()
    }

    #[test]
    fn every_node_series_for_every_presented_node() {
        let (_d, src) = fake_root();
        let mut c = Collector::new(vec!["n-1".into(), "n-2".into()], src, GpuCollector::none());
        let b = c.collect(&[], 42);
        assert_eq!(b.timestamp_ms, 42);
        for node in ["n-1", "n-2"] {
            assert_eq!(
                value(&b, s::NODE_MEMORY_TOTAL, node),
                [24_684_092.0 * 1024.0]
            );
            assert_eq!(value(&b, s::NODE_CPU_UTILIZATION, node).len(), 1);
            // eth0, ifb0, ifb1; never lo.
            assert_eq!(value(&b, s::NODE_NETWORK_RECEIVE, node).len(), 3);
            assert_eq!(value(&b, s::NODE_DISK_READ, node), [8_396_562.0 * 512.0]);
        }
        assert!(b
            .samples
            .iter()
            .all(|x| x.labels.iter().all(|(_, v)| v != "lo")));
        // No GPU series without NVML, no allocation series without ranks.
        assert!(b
            .samples
            .iter()
            .all(|x| !x.name.contains("gpu") && !x.name.starts_with("lattice_allocation")));
        // Unchanged /proc/stat: zero utilization since the previous collection.
        assert_eq!(
            value(&c.collect(&[], 43), s::NODE_CPU_UTILIZATION, "n-1"),
            [0.0]
        );
    }

    #[test]
    fn allocation_series_per_running_rank() {
        let (_d, src) = fake_root();
        let mut c = Collector::new(vec!["n-1".into()], src, GpuCollector::none());
        c.ticks_per_second = 100;
        c.page_bytes = 4096;
        let running = vec![RunningGroup {
            key: RankKey::new(7, "n-1"),
            group: Group {
                pgid: 18824,
                tenant: "physics".into(),
                vcluster: "gpu".into(),
            },
        }];
        let b = c.collect(&running, 1);
        let cpu: Vec<_> = b
            .samples
            .iter()
            .filter(|x| x.name == s::ALLOCATION_CPU)
            .collect();
        assert_eq!(cpu.len(), 1);
        assert_eq!(cpu[0].value, 0.51);
        assert_eq!(
            cpu[0].labels,
            vec![
                ("node", "n-1".to_string()),
                ("allocation", "7".to_string()),
                ("tenant", "physics".to_string()),
                ("vcluster", "gpu".to_string())
            ]
        );
        assert_eq!(value(&b, s::ALLOCATION_MEMORY, "n-1"), [400.0 * 4096.0]);
        assert_eq!(value(&b, s::ALLOCATION_PROCESSES, "n-1"), [1.0]);
    }

    #[test]
    fn missing_files_skip_their_series() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = Sources {
            proc_dir: dir.path().join("none"),
            sys_block: dir.path().join("none"),
        };
        let mut c = Collector::new(vec!["n".into()], src, GpuCollector::none());
        assert!(c.collect(&[], 1).is_empty());
        assert!(c.collect(&[], 2).is_empty());
    }
}
