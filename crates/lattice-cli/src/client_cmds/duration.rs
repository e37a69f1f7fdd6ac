//! Walltime parsing: Slurm's time formats (`MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`,
//! `D-HH:MM:SS`; a bare number is minutes, as with `sbatch --time`) and unit forms (`30s`,
//! `90m`, `2h`, `1d`, `1h30m`). Every value is a whole number of seconds.

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// What every error message says a walltime may look like.
pub const EXPECTED: &str =
    "expected minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]] or units such as 30s, 90m, 2h, 1h30m, 1d";

/// Parses a walltime into seconds. The error is a short phrase (without the value or the flag)
/// that the caller puts into its own message.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("empty duration: {EXPECTED}"));
    }
    let lower = t.to_ascii_lowercase();
    if matches!(lower.as_str(), "unlimited" | "infinite" | "inf") {
        return Err("unlimited walltimes are not supported: give a length".to_string());
    }
    if t.starts_with('-') || t.starts_with('+') {
        return Err(format!("a duration cannot be signed: {EXPECTED}"));
    }
    let parsed = if t.bytes().any(|b| b.is_ascii_alphabetic()) {
        parse_units(&lower)
    } else {
        parse_slurm(t)
    };
    parsed.ok_or_else(|| EXPECTED.to_string())
}

/// What every error message of [`parse_seconds`] says a value may look like.
pub const EXPECTED_SECONDS: &str = "expected seconds, or units such as 90s, 5m, 1h, 1h30m";

/// Parses a length given in seconds (`--checkpoint-timeout 120`): a bare number is seconds
/// (not minutes, as with a walltime), and unit forms (`90s`, `5m`, `1h30m`, `1d`) are
/// accepted too.
pub fn parse_seconds(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if let Some(n) = number(t) {
        return Ok(n);
    }
    if t.starts_with('-') || t.starts_with('+') {
        return Err(format!("a duration cannot be signed: {EXPECTED_SECONDS}"));
    }
    if t.bytes().any(|b| b.is_ascii_alphabetic()) {
        if let Some(n) = parse_units(&t.to_ascii_lowercase()) {
            return Ok(n);
        }
    }
    Err(EXPECTED_SECONDS.to_string())
}

/// `[D-]...` Slurm forms; `None` if malformed or overflowing.
fn parse_slurm(t: &str) -> Option<u64> {
    let (days, rest) = match t.split_once('-') {
        Some((d, rest)) => (Some(number(d)?), rest),
        None => (None, t),
    };
    let fields: Vec<&str> = rest.split(':').collect();
    let nums: Vec<u64> = fields.iter().map(|f| number(f)).collect::<Option<_>>()?;
    // Only the leading field may exceed its unit (`90:00` is 90 minutes, `48:00:00` two days).
    let sixty = |n: &u64| *n < 60;
    let secs = match (days, nums.as_slice()) {
        (None, [m]) => m.checked_mul(MINUTE)?,
        (None, [m, s]) if sixty(s) => m.checked_mul(MINUTE)?.checked_add(*s)?,
        (None, [h, m, s]) if sixty(m) && sixty(s) => {
            h.checked_mul(HOUR)?.checked_add(m * MINUTE + s)?
        }
        (Some(_), [h]) if *h < 24 => h * HOUR,
        (Some(_), [h, m]) if *h < 24 && sixty(m) => h * HOUR + m * MINUTE,
        (Some(_), [h, m, s]) if *h < 24 && sixty(m) && sixty(s) => h * HOUR + m * MINUTE + s,
        _ => return None,
    };
    match days {
        Some(d) => d.checked_mul(DAY)?.checked_add(secs),
        None => Some(secs),
    }
}

/// `1h30m`-style forms: one or more `<number><unit>` with units d, h, m, s, each at most once
/// and from largest to smallest.
fn parse_units(t: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut last_rank = usize::MAX;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (rank, scale) = match &rest[..unit_len] {
            "d" | "day" | "days" => (3, DAY),
            "h" | "hr" | "hrs" | "hour" | "hours" => (2, HOUR),
            "m" | "min" | "mins" | "minute" | "minutes" => (1, MINUTE),
            "s" | "sec" | "secs" | "second" | "seconds" => (0, 1),
            _ => return None,
        };
        if rank >= last_rank {
            return None;
        }
        last_rank = rank;
        total = total.checked_add(n.checked_mul(scale)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(t: &str) -> u64 {
        parse_duration(t).unwrap_or_else(|e| panic!("{t:?}: {e}"))
    }

    #[test]
    fn slurm_forms() {
        assert_eq!(secs("30"), 30 * 60, "a bare number is minutes");
        assert_eq!(secs("0"), 0);
        assert_eq!(secs("90:00"), 90 * 60);
        assert_eq!(secs("5:30"), 5 * 60 + 30);
        assert_eq!(secs("1:00:00"), 3600);
        assert_eq!(secs("48:00:00"), 48 * 3600);
        assert_eq!(secs("02:03:04"), 2 * 3600 + 3 * 60 + 4);
        assert_eq!(secs("2-12"), 2 * 86400 + 12 * 3600);
        assert_eq!(secs("1-02:30"), 86400 + 2 * 3600 + 30 * 60);
        assert_eq!(secs("1-00:00:10"), 86400 + 10);
        assert_eq!(secs(" 10 "), 600, "surrounding spaces are ignored");
    }

    #[test]
    fn unit_forms() {
        assert_eq!(secs("30s"), 30);
        assert_eq!(secs("90m"), 90 * 60);
        assert_eq!(secs("2h"), 7200);
        assert_eq!(secs("1d"), 86400);
        assert_eq!(secs("1h30m"), 5400);
        assert_eq!(secs("1d2h3m4s"), 86400 + 7200 + 180 + 4);
        assert_eq!(secs("2H"), 7200, "units are case-insensitive");
        assert_eq!(secs("45min"), 45 * 60);
        assert_eq!(secs("3hours"), 3 * 3600);
    }

    #[test]
    fn bad_inputs_are_refused() {
        for bad in [
            "",
            "  ",
            "abc",
            "-5",
            "+5",
            "1:2:3:4",
            "1:60",
            "1:60:00",
            "1:00:60",
            "1-24",
            "1-",
            "-1",
            "1-2:3:4:5",
            "1--2",
            ":30",
            "30:",
            "1.5",
            "1.5h",
            "1h30",
            "h",
            "5x",
            "1m1h",
            "1h1h",
            "1 h",
            "1-2h",
            "99999999999999999999",
            "99999999999999999d",
            "307445734561825861:00:00",
            "1_000",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn seconds_are_seconds() {
        assert_eq!(parse_seconds("120"), Ok(120), "a bare number is seconds");
        assert_eq!(parse_seconds(" 0 "), Ok(0));
        assert_eq!(parse_seconds("90s"), Ok(90));
        assert_eq!(parse_seconds("5m"), Ok(300));
        assert_eq!(parse_seconds("1H30M"), Ok(5400));
        assert_eq!(parse_seconds("1d"), Ok(86400));
        for bad in [
            "",
            "-5",
            "+5",
            "1:30",
            "1.5",
            "soon",
            "1h1h",
            "99999999999999999999",
        ] {
            let e = parse_seconds(bad).unwrap_err();
            assert!(e.contains("seconds"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn unlimited_gets_its_own_message() {
        let e = parse_duration("UNLIMITED").unwrap_err();
        assert!(e.contains("unlimited"), "{e}");
        assert!(parse_duration("garbage").unwrap_err().contains("HH:MM:SS"));
    }
}
