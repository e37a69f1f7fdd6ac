//! [`Timestamp`]: wall-clock instants as Unix milliseconds, chosen by the leader and carried
//! inside commands so that `apply` never reads a clock.
//!
//! Human-readable encodings (JSON) show RFC 3339 strings; binary encodings (the Raft log,
//! snapshots) store the plain integer.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// Seconds since the epoch, as a float (for Prometheus-style timestamps).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// `self + secs` seconds, saturating.
    pub fn plus_secs(self, secs: u64) -> Self {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    /// Whole milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn millis_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// RFC 3339 with millisecond precision, e.g. `2026-03-01T12:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        match chrono::DateTime::from_timestamp_millis(self.0 as i64) {
            Some(dt) => dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            None => self.0.to_string(),
        }
    }

    /// Parses RFC 3339 (`2026-03-01T12:00:00Z`) or a plain date (`2026-03-01`, midnight UTC).
    pub fn parse(text: &str) -> Option<Timestamp> {
        if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(text) {
            return u64::try_from(dt.timestamp_millis()).ok().map(Timestamp);
        }
        let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        let dt = date.and_hms_opt(0, 0, 0)?.and_utc();
        u64::try_from(dt.timestamp_millis()).ok().map(Timestamp)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_rfc3339())
        } else {
            s.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp or Unix milliseconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).ok_or_else(|| E::custom(format!("invalid timestamp {v:?}")))
            }
        }
        if d.is_human_readable() {
            d.deserialize_any(V)
        } else {
            d.deserialize_u64(V)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_rfc3339_and_binary_is_integer() {
        let t = Timestamp(1_772_366_400_123);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2026-03-01T12:00:00.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        let bin = bincode::serialize(&t).unwrap();
        assert_eq!(bin.len(), 8);
        assert_eq!(bincode::deserialize::<Timestamp>(&bin).unwrap(), t);
    }

    #[test]
    fn parses_plain_dates() {
        assert_eq!(
            Timestamp::parse("2026-03-01"),
            Some(Timestamp(1_772_323_200_000))
        );
        assert_eq!(Timestamp::parse("yesterday"), None);
    }
}
