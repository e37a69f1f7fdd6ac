//! Host discovery: hostname, CPU count and memory size, plus the GPUs from the `gpu` module.
//! The parsers of `/proc` text are pure functions, tested on snapshots of a real machine.

use std::num::NonZeroUsize;

use lattice_core::GpuInfo;

use crate::gpu;

/// What this host offers; every node the agent presents reports these figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    pub hostname: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub gpus: GpuInfo,
}

/// Discovers the host. Blocking (reads `/proc`, may load NVML): call from a blocking context.
pub fn discover() -> HostInfo {
    HostInfo {
        hostname: hostname(),
        cpus: cpu_count(),
        memory_bytes: memory_bytes(),
        gpus: gpu::probe(),
    }
}

/// The kernel's hostname, or `localhost` when it cannot be read.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// CPUs this process may use (honours affinity and cgroup quotas), else the processors listed
/// in `/proc/cpuinfo`, else 1.
fn cpu_count() -> u32 {
    if let Ok(n) = std::thread::available_parallelism().map(NonZeroUsize::get) {
        return u32::try_from(n).unwrap_or(u32::MAX);
    }
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| parse_cpuinfo_processors(&t))
        .unwrap_or(1)
}

/// `MemTotal` from `/proc/meminfo`, or 0 when unreadable.
fn memory_bytes() -> u64 {
    match std::fs::read_to_string("/proc/meminfo") {
        Ok(t) => parse_meminfo_total(&t).unwrap_or_else(|| {
            tracing::warn!("no MemTotal line in /proc/meminfo; reporting 0 bytes of memory");
            0
        }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read /proc/meminfo; reporting 0 bytes of memory");
            0
        }
    }
}

/// Bytes of `MemTotal` in `/proc/meminfo` text (which states it in kB, meaning KiB).
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        let factor = match parts.next() {
            None => 1,
            Some(u) if u.eq_ignore_ascii_case("kb") => 1024,
            Some(u) if u.eq_ignore_ascii_case("mb") => 1024 * 1024,
            Some(u) if u.eq_ignore_ascii_case("gb") => 1024 * 1024 * 1024,
            Some(_) => return None,
        };
        value.checked_mul(factor)
    })
}

/// Number of `processor` entries in `/proc/cpuinfo` text; `None` when there are none.
pub fn parse_cpuinfo_processors(text: &str) -> Option<u32> {
    let n = text
        .lines()
        .filter(|l| {
            l.split(':')
                .next()
                .is_some_and(|key| key.trim() == "processor")
        })
        .count();
    u32::try_from(n).ok().filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = include_str!("../fixtures/proc_meminfo.txt");
    const CPUINFO: &str = include_str!("../fixtures/proc_cpuinfo.txt");

    #[test]
    fn meminfo_snapshot_total() {
        // The snapshot says `MemTotal:       24684092 kB`.
        assert_eq!(parse_meminfo_total(MEMINFO), Some(24_684_092 * 1024));
    }

    #[test]
    fn meminfo_edge_cases() {
        assert_eq!(parse_meminfo_total("MemFree: 10 kB\n"), None);
        assert_eq!(parse_meminfo_total("MemTotal: lots kB\n"), None);
        assert_eq!(parse_meminfo_total("MemTotal: 5 parsecs\n"), None);
        assert_eq!(parse_meminfo_total("MemTotal: 7\n"), Some(7));
        assert_eq!(
            parse_meminfo_total("MemTotal: 18446744073709551615 kB\n"),
            None
        );
        assert_eq!(parse_meminfo_total(""), None);
    }

    #[test]
    fn cpuinfo_snapshot_and_edge_cases() {
        assert_eq!(parse_cpuinfo_processors(CPUINFO), Some(2));
        assert_eq!(parse_cpuinfo_processors(""), None);
        // Keys that merely start with "processor" do not count.
        assert_eq!(
            parse_cpuinfo_processors("processor\t: 0\nprocessors_total : 9\nprocessor : 1\n"),
            Some(2)
        );
    }

    #[test]
    fn hostname_is_never_empty() {
        assert!(!hostname().is_empty());
    }
}
