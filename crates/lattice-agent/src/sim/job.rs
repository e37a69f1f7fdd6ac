//! What a simulated job does (pure): how long it "runs" ([`duration_of`]: the agent's
//! default, or `LATTICE_SIM_DURATION` / `SIM_DURATION` from the job's environment) and how
//! it ends
//! ([`plan`]: on its own with exit code 0, or killed at its walltime when it would run
//! longer).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::MAX_SIM_DURATION_SECONDS;

/// The environment variable through which a job sets its own simulated duration (seconds,
/// fractions allowed).
pub const DURATION_ENV: &str = "LATTICE_SIM_DURATION";
/// The same without the prefix: the control plane refuses `LATTICE_*` names in a submission
/// (they are the agent's), so this is the one a job can actually carry today. The first of
/// the two that is set wins.
pub const DURATION_ENV_SHORT: &str = "SIM_DURATION";

/// How a simulated run ends if nothing stops it first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It exits on its own with code 0.
    Exits,
    /// The agent kills it at its walltime of this many seconds.
    Walltime(u64),
}

/// A number of seconds as a duration: finite, between 0 and a year.
pub fn seconds(value: f64) -> Option<Duration> {
    if value.is_finite() && (0.0..=MAX_SIM_DURATION_SECONDS).contains(&value) {
        Some(Duration::from_secs_f64(value))
    } else {
        None
    }
}

/// The simulated duration of a job with environment `env`: its `LATTICE_SIM_DURATION` or
/// `SIM_DURATION`, else `default`. An unusable value is an error naming it (the rank then
/// fails to launch, as a real job with a bad command would).
pub fn duration_of(env: &BTreeMap<String, String>, default: Duration) -> Result<Duration, String> {
    let Some((name, text)) = [DURATION_ENV, DURATION_ENV_SHORT]
        .into_iter()
        .find_map(|name| Some((name, env.get(name)?)))
    else {
        return Ok(default);
    };
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(seconds)
        .ok_or_else(|| format!("{name}={text:?} is not a number of seconds between 0 and one year"))
}

/// How long a run of `duration` lasts under a walltime of `walltime_seconds` (0: none), and
/// how it ends. A run exactly as long as its walltime exits on its own.
pub fn plan(duration: Duration, walltime_seconds: u64) -> (Duration, Ending) {
    let limit = Duration::from_secs(walltime_seconds);
    if walltime_seconds > 0 && duration > limit {
        (limit, Ending::Walltime(walltime_seconds))
    } else {
        (duration, Ending::Exits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(DURATION_ENV.to_string(), value.to_string())])
    }

    #[test]
    fn duration_comes_from_the_job_or_the_default() {
        let d = Duration::from_secs(3);
        assert_eq!(duration_of(&BTreeMap::new(), d), Ok(d));
        assert_eq!(duration_of(&env("0.05"), d), Ok(Duration::from_millis(50)));
        assert_eq!(duration_of(&env(" 2 "), d), Ok(Duration::from_secs(2)));
        assert_eq!(duration_of(&env("0"), d), Ok(Duration::ZERO));
        for bad in ["", "soon", "-1", "NaN", "inf", "1e12"] {
            let e = duration_of(&env(bad), d).unwrap_err();
            assert!(e.contains(DURATION_ENV), "{bad}: {e}");
        }
        let short = |v: &str| BTreeMap::from([(DURATION_ENV_SHORT.to_string(), v.to_string())]);
        assert_eq!(
            duration_of(&short("1.5"), d),
            Ok(Duration::from_millis(1500))
        );
        let e = duration_of(&short("x"), d).unwrap_err();
        assert!(e.starts_with("SIM_DURATION="), "{e}");
        let mut both = env("1");
        both.extend(short("2"));
        assert_eq!(duration_of(&both, d), Ok(Duration::from_secs(1)));
    }

    #[test]
    fn seconds_are_bounded() {
        assert_eq!(seconds(0.5), Some(Duration::from_millis(500)));
        assert_eq!(seconds(-0.1), None);
        assert_eq!(seconds(f64::INFINITY), None);
        assert!(seconds(MAX_SIM_DURATION_SECONDS).is_some());
    }

    #[test]
    fn a_run_longer_than_its_walltime_is_killed_at_the_walltime() {
        let s = Duration::from_secs;
        assert_eq!(plan(s(5), 0), (s(5), Ending::Exits));
        assert_eq!(plan(s(5), 5), (s(5), Ending::Exits));
        assert_eq!(plan(s(5), 60), (s(5), Ending::Exits));
        assert_eq!(plan(s(61), 60), (s(60), Ending::Walltime(60)));
        assert_eq!(
            plan(Duration::from_millis(1001), 1),
            (s(1), Ending::Walltime(1))
        );
        assert_eq!(plan(Duration::ZERO, 1), (Duration::ZERO, Ending::Exits));
    }
}
