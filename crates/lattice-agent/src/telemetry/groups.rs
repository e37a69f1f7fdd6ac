//! Per-allocation usage: CPU seconds and resident memory summed over the processes of each
//! running rank's process group, from one scan of `/proc/*/stat` per collection.
//!
//! CPU time counts `utime + stime` of every live member plus `cutime + cstime` (the time of
//! children they already reaped, which left `/proc` with it), so the sum only grows while the
//! group runs. A process that leaves the group (`setsid`, `setpgid`) is no longer counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The fields of `/proc/PID/stat` that telemetry uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub pgrp: i32,
    /// utime + stime + cutime + cstime, in clock ticks.
    pub cpu_ticks: u64,
    pub rss_pages: u64,
}

/// Parses one `/proc/PID/stat` line. The command name sits in parentheses and may itself hold
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_pid_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    // After ")": state(3) ppid(4) pgrp(5) ... utime(14) stime(15) cutime(16) cstime(17) ...
    // rss(24); index 0 here is field 3.
    let f: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let num = |i: usize| f.get(i)?.parse::<i64>().ok();
    let ticks = |i: usize| num(i).and_then(|v| u64::try_from(v).ok());
    Some(ProcStat {
        pid,
        pgrp: i32::try_from(num(2)?).ok()?,
        cpu_ticks: ticks(11)? + ticks(12)? + ticks(13)? + ticks(14)?,
        rss_pages: ticks(21)?,
    })
}

/// One group's usage.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GroupUsage {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub processes: u64,
}

/// Sums the processes of `stats` that belong to one of `pgids`; every asked group is in the
/// answer (all zero when none of its processes was seen).
pub fn sum_by_group(
    stats: impl IntoIterator<Item = ProcStat>,
    pgids: &BTreeSet<i32>,
    ticks_per_second: u64,
    page_bytes: u64,
) -> BTreeMap<i32, GroupUsage> {
    let mut ticks: BTreeMap<i32, (u64, u64, u64)> = pgids.iter().map(|p| (*p, (0, 0, 0))).collect();
    for s in stats {
        if let Some(t) = ticks.get_mut(&s.pgrp) {
            t.0 += s.cpu_ticks;
            t.1 += s.rss_pages;
            t.2 += 1;
        }
    }
    let hz = ticks_per_second.max(1) as f64;
    ticks
        .into_iter()
        .map(|(pgid, (cpu, rss, n))| {
            (
                pgid,
                GroupUsage {
                    cpu_seconds: cpu as f64 / hz,
                    resident_bytes: rss.saturating_mul(page_bytes),
                    processes: n,
                },
            )
        })
        .collect()
}

/// Reads `/proc/*/stat` under `proc_dir` (processes that vanish meanwhile are skipped).
pub fn scan(proc_dir: &Path) -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir(proc_dir) else {
        return Vec::new();
    };
    let mut buf = String::with_capacity(512);
    let mut out = Vec::new();
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        buf.clear();
        let path = e.path().join("stat");
        let Ok(mut f) = std::fs::File::open(&path) else {
            continue;
        };
        if std::io::Read::read_to_string(&mut f, &mut buf).is_ok() {
            if let Some(s) = parse_pid_stat(&buf) {
                out.push(s);
            }
        }
    }
    out
}

/// Clock ticks per second (`CLK_TCK`) and the page size, from sysconf (100 and 4096 when it
/// cannot say).
pub fn system_units() -> (u64, u64) {
    use nix::unistd::{sysconf, SysconfVar};
    let get = |v, default: u64| {
        sysconf(v)
            .ok()
            .flatten()
            .and_then(|x| u64::try_from(x).ok())
            .filter(|x| *x > 0)
            .unwrap_or(default)
    };
    (
        get(SysconfVar::CLK_TCK, 100),
        get(SysconfVar::PAGE_SIZE, 4096),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cat /proc/self/stat` on this machine.
    const CAT: &str = include_str!("../../fixtures/proc_pid_stat_cat.txt");
    /// A shell copied to `/tmp/x) (y z` that burnt 51 ticks, then printed its own stat.
    const ODD: &str = include_str!("../../fixtures/proc_pid_stat_odd_name.txt");

    #[test]
    fn snapshots_of_this_machine() {
        assert_eq!(
            parse_pid_stat(CAT),
            Some(ProcStat {
                pid: 18714,
                pgrp: 18689,
                cpu_ticks: 0,
                rss_pages: 379
            })
        );
        assert_eq!(
            parse_pid_stat(ODD),
            Some(ProcStat {
                pid: 18827,
                pgrp: 18824,
                cpu_ticks: 51,
                rss_pages: 400
            })
        );
    }

    #[test]
    fn bad_lines() {
        for bad in [
            "",
            "12 (x",
            "x (sh) S 1 2",
            "5 (sh) S 1 2 3",
            "5 (sh) S 1 -2 3 0 -1 0 0 0 0 0 -5 0 0 0 20 0 1 0 1 1 1",
        ] {
            assert_eq!(parse_pid_stat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sums_per_group_and_reports_empty_groups() {
        let p = |pid, pgrp, cpu_ticks, rss_pages| ProcStat {
            pid,
            pgrp,
            cpu_ticks,
            rss_pages,
        };
        let stats = [
            p(10, 10, 150, 100),
            p(11, 10, 50, 28),
            p(12, 99, 1000, 1000),
            p(13, 20, 0, 0),
        ];
        let got = sum_by_group(stats, &BTreeSet::from([10, 20, 30]), 100, 4096);
        assert_eq!(
            got[&10],
            GroupUsage {
                cpu_seconds: 2.0,
                resident_bytes: 128 * 4096,
                processes: 2
            }
        );
        assert_eq!(got[&20].processes, 1);
        assert_eq!(got[&30], GroupUsage::default());
        assert!(!got.contains_key(&99));
    }

    #[test]
    fn scanning_this_machine_finds_this_process_group() {
        let me = nix::unistd::getpgrp().as_raw();
        let (hz, page) = system_units();
        assert!(hz > 0 && page >= 4096);
        let usage = sum_by_group(scan(Path::new("/proc")), &BTreeSet::from([me]), hz, page);
        assert!(usage[&me].processes >= 1);
        assert!(usage[&me].resident_bytes > 0);
    }
}
