//! What a control-plane process uses, from `/proc/PID/status` (VmRSS, VmHWM) and
//! `/proc/PID/stat` (utime + stime): read before and after the bench by `--server-pid`.

use serde::Serialize;

/// `/proc/PID/stat` counts CPU time in USER_HZ ticks, which Linux fixes at 100 per second for
/// everything it exposes to user space (whatever the kernel's own HZ).
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ProcUsage {
    /// Resident set size now.
    pub rss_bytes: u64,
    /// Peak resident set size since the process started.
    pub peak_rss_bytes: u64,
    /// User plus system CPU time so far, in ticks.
    pub cpu_ticks: u64,
}

impl ProcUsage {
    pub fn cpu_seconds(&self) -> f64 {
        self.cpu_ticks as f64 / TICKS_PER_SECOND
    }
}

/// Reads process `pid`; the error names the file that could not be read or understood.
pub fn read(pid: u32) -> Result<ProcUsage, String> {
    let status_path = format!("/proc/{pid}/status");
    let stat_path = format!("/proc/{pid}/stat");
    let status =
        std::fs::read_to_string(&status_path).map_err(|e| format!("{status_path}: {e}"))?;
    let stat = std::fs::read_to_string(&stat_path).map_err(|e| format!("{stat_path}: {e}"))?;
    let (rss_bytes, peak_rss_bytes) =
        parse_status(&status).ok_or_else(|| format!("{status_path}: no VmRSS / VmHWM"))?;
    let cpu_ticks =
        parse_stat_cpu_ticks(&stat).ok_or_else(|| format!("{stat_path}: no utime / stime"))?;
    Ok(ProcUsage {
        rss_bytes,
        peak_rss_bytes,
        cpu_ticks,
    })
}

/// `(VmRSS, VmHWM)` in bytes from the text of `/proc/PID/status` (`VmRSS:   1234 kB`).
pub fn parse_status(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let mut words = line[name.len()..].split_whitespace();
        let n: u64 = words.next()?.parse().ok()?;
        match words.next() {
            Some("kB") => Some(n * 1024),
            None => Some(n),
            Some(_) => None,
        }
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// utime + stime (fields 14 and 15) from the text of `/proc/PID/stat`. The command name
/// (field 2) is in parentheses and may hold spaces or parentheses itself, so fields are
/// counted from the last `)`.
pub fn parse_stat_cpu_ticks(text: &str) -> Option<u64> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_and_peak_from_status() {
        let text = "Name:\tlattice\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t 2000000 kB\n\
                    VmSize:\t 1900000 kB\nVmHWM:\t   81234 kB\nVmRSS:\t   64512 kB\nThreads:\t12\n";
        assert_eq!(parse_status(text), Some((64512 * 1024, 81234 * 1024)));
        assert_eq!(parse_status("Name:\tx\nVmRSS:\t1 kB\n"), None, "no VmHWM");
        assert_eq!(parse_status("VmRSS:\tlots kB\nVmHWM:\t1 kB\n"), None);
    }

    #[test]
    fn cpu_ticks_from_stat_even_with_odd_command_names() {
        let text = "4242 (lattice) S 1 4242 4242 0 -1 4194560 5000 0 0 0 \
                    1234 567 0 0 20 0 12 0 100 2000000000 16000 18446744073709551615\n";
        assert_eq!(parse_stat_cpu_ticks(text), Some(1801));
        let odd = "4242 (a) b (c)) R 1 4242 4242 0 -1 4194560 5000 0 0 0 7 3 0 0 20 0 1 0\n";
        assert_eq!(parse_stat_cpu_ticks(odd), Some(10));
        assert_eq!(parse_stat_cpu_ticks("4242 (x) S 1 2"), None);
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let me = read(std::process::id()).unwrap();
        assert!(
            me.rss_bytes > 0 && me.peak_rss_bytes >= me.rss_bytes,
            "{me:?}"
        );
        assert!(read(u32::MAX).is_err());
        let u = ProcUsage {
            rss_bytes: 0,
            peak_rss_bytes: 0,
            cpu_ticks: 250,
        };
        assert_eq!(u.cpu_seconds(), 2.5);
    }
}
