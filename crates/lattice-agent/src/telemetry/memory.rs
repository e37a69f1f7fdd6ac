//! Node memory from `/proc/meminfo`: total, and used = total - available (`MemAvailable`, or
//! `MemFree + Buffers + Cached` on kernels without it).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    pub total_bytes: u64,
    pub used_bytes: u64,
}

/// Bytes of one `Key:   123 kB` line (`kB` means KiB; no unit means bytes).
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            None => Some(value),
            Some(u) if u.eq_ignore_ascii_case("kb") => value.checked_mul(1024),
            Some(_) => None,
        }
    })
}

pub fn parse_meminfo(text: &str) -> Option<Memory> {
    let total = field(text, "MemTotal")?;
    let available = match field(text, "MemAvailable") {
        Some(a) => a,
        None => field(text, "MemFree")?
            .saturating_add(field(text, "Buffers").unwrap_or(0))
            .saturating_add(field(text, "Cached").unwrap_or(0)),
    };
    Some(Memory {
        total_bytes: total,
        used_bytes: total.saturating_sub(available),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = include_str!("../../fixtures/proc_meminfo.txt");

    #[test]
    fn snapshot_of_this_machine() {
        // MemTotal: 24684092 kB, MemAvailable: 24274320 kB
        assert_eq!(
            parse_meminfo(MEMINFO),
            Some(Memory {
                total_bytes: 24_684_092 * 1024,
                used_bytes: (24_684_092 - 24_274_320) * 1024,
            })
        );
    }

    #[test]
    fn old_kernels_and_bad_input() {
        let old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n";
        assert_eq!(
            parse_meminfo(old),
            Some(Memory {
                total_bytes: 1000 * 1024,
                used_bytes: 600 * 1024
            })
        );
        // MemTotalX is not MemTotal.
        assert_eq!(parse_meminfo("MemTotalX: 5 kB\nMemAvailable: 1 kB\n"), None);
        assert_eq!(parse_meminfo("MemTotal: 5 MB\nMemAvailable: 1 kB\n"), None);
        assert_eq!(parse_meminfo(""), None);
        // More available than total (racy reads) is 0 used, not an underflow.
        assert_eq!(
            parse_meminfo("MemTotal: 5 kB\nMemAvailable: 9 kB\n").map(|m| m.used_bytes),
            Some(0)
        );
    }
}
