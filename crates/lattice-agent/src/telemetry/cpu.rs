//! Whole-node CPU utilization from the aggregate `cpu` line of `/proc/stat`: the share of
//! non-idle time (everything but `idle` and `iowait`) between two readings.

/// Cumulative CPU time of all CPUs, in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTimes {
    pub busy: u64,
    pub total: u64,
}

/// The aggregate `cpu` line of `/proc/stat` text. `guest` and `guest_nice` are already part of
/// `user` and `nice`, so they are not added again.
pub fn parse_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if v.len() < 4 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total - idle,
        total,
    })
}

/// Utilization (0-1) between `prev` and `now`; without `prev`, the average since boot.
pub fn utilization(prev: Option<CpuTimes>, now: CpuTimes) -> f64 {
    let (busy, total) = match prev {
        Some(p) => (
            now.busy.saturating_sub(p.busy),
            now.total.saturating_sub(p.total),
        ),
        None => (now.busy, now.total),
    };
    if total == 0 {
        return 0.0;
    }
    (busy as f64 / total as f64).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = include_str!("../../fixtures/proc_stat.txt");

    #[test]
    fn snapshot_of_this_machine() {
        // cpu  180894 47964 31028 178115 1841 0 215 876 0 0
        let t = parse_stat(STAT).expect("cpu line");
        let total = 180894 + 47964 + 31028 + 178115 + 1841 + 215 + 876;
        assert_eq!(t.total, total);
        assert_eq!(t.busy, total - 178115 - 1841);
        let u = utilization(None, t);
        assert!((u - t.busy as f64 / total as f64).abs() < 1e-12);
    }

    #[test]
    fn deltas_and_edge_cases() {
        let a = CpuTimes {
            busy: 100,
            total: 400,
        };
        let b = CpuTimes {
            busy: 250,
            total: 600,
        };
        assert!((utilization(Some(a), b) - 0.75).abs() < 1e-12);
        assert_eq!(utilization(Some(a), a), 0.0);
        // A counter that went backwards (should not happen) gives 0, not garbage.
        assert_eq!(utilization(Some(b), a), 0.0);
        assert_eq!(parse_stat("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse_stat("cpu 1 2 x 4\n"), None);
        assert_eq!(parse_stat("cpu 1 2\n"), None);
        // Old kernels have only four fields.
        assert_eq!(
            parse_stat("cpu 1 2 3 4\n"),
            Some(CpuTimes { busy: 6, total: 10 })
        );
    }
}
