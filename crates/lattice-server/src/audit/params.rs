//! The query parameters of `GET /api/v1/audit` (and of `…/sign`), parsed strictly: an
//! unknown parameter, a repeated one, an empty or invalid value, `from` not before `to`, a
//! `limit` of 0 or above [`MAX_LIMIT`], or a cursor this server did not write is a
//! [`ParamError`] naming the parameter; nothing is silently ignored.

use lattice_core::audit::AuditAction;
use lattice_core::Timestamp;

use super::query::Key;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 10_000;
/// Longest accepted `tenant`, `user` or `node` value (bytes).
pub const MAX_TEXT: usize = 256;

const DAY_MS: u64 = 86_400_000;

/// The parameters `GET /api/v1/audit` accepts.
pub const QUERY_PARAMS: [&str; 9] = [
    "tenant",
    "from",
    "to",
    "user",
    "allocation",
    "node",
    "action",
    "limit",
    "cursor",
];

/// A query parameter that cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {param}: {why}")]
pub struct ParamError {
    pub param: String,
    pub why: String,
}

fn err(param: &str, why: impl Into<String>) -> ParamError {
    ParamError {
        param: param.to_string(),
        why: why.into(),
    }
}

/// A parsed `GET /api/v1/audit`, before it is scoped to the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub tenant: Option<String>,
    /// Inclusive.
    pub from: Option<Timestamp>,
    /// Exclusive (a plain date is already moved to the next midnight).
    pub to: Option<Timestamp>,
    pub user: Option<String>,
    pub allocation: Option<u64>,
    pub node: Option<String>,
    pub action: Option<AuditAction>,
    pub limit: usize,
    pub cursor: Option<Key>,
}

/// Checks that every parameter is one of `known`, given once, and not empty.
fn check_names<'a>(
    pairs: &'a [(String, String)],
    known: &[&str],
) -> Result<Vec<(&'a str, &'a str)>, ParamError> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for (k, v) in pairs {
        if !known.contains(&k.as_str()) {
            return Err(err(
                k,
                format!("unknown query parameter (known: {})", known.join(", ")),
            ));
        }
        if seen.contains(&k.as_str()) {
            return Err(err(k, "given more than once"));
        }
        if v.is_empty() {
            return Err(err(k, "empty value"));
        }
        seen.push(k);
        out.push((k.as_str(), v.as_str()));
    }
    Ok(out)
}

fn text(param: &str, v: &str) -> Result<String, ParamError> {
    if v.len() > MAX_TEXT {
        return Err(err(param, format!("longer than {MAX_TEXT} bytes")));
    }
    Ok(v.to_string())
}

/// A `from` / `to` value: RFC 3339, or a plain date (midnight UTC; for `to`, the midnight
/// after it, so that `to=2026-03-31` includes that day).
fn time(param: &str, v: &str, end_of_day: bool) -> Result<Timestamp, ParamError> {
    let t = Timestamp::parse(v).ok_or_else(|| {
        err(
            param,
            format!("{v:?} is not a date (2026-03-01) or an RFC 3339 time (2026-03-01T12:00:00Z)"),
        )
    })?;
    let plain_date = v.len() == 10;
    Ok(if end_of_day && plain_date {
        Timestamp(t.0.saturating_add(DAY_MS))
    } else {
        t
    })
}

fn positive(param: &str, v: &str, what: &str) -> Result<u64, ParamError> {
    match v.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(err(param, format!("{v:?} is not {what}"))),
    }
}

/// Parses the parameters of `GET /api/v1/audit`.
pub fn parse_query(pairs: &[(String, String)]) -> Result<AuditQuery, ParamError> {
    let mut q = AuditQuery {
        limit: DEFAULT_LIMIT,
        ..AuditQuery::default()
    };
    for (k, v) in check_names(pairs, &QUERY_PARAMS)? {
        match k {
            "tenant" => q.tenant = Some(text(k, v)?),
            "user" => q.user = Some(text(k, v)?),
            "node" => q.node = Some(text(k, v)?),
            "from" => q.from = Some(time(k, v, false)?),
            "to" => q.to = Some(time(k, v, true)?),
            "allocation" => q.allocation = Some(positive(k, v, "an allocation ID")?),
            "action" => {
                q.action = Some(AuditAction::parse(v).ok_or_else(|| {
                    let names: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
                    err(
                        k,
                        format!("{v:?} is not an action (one of {})", names.join(", ")),
                    )
                })?)
            }
            "limit" => {
                q.limit = match v.parse::<usize>() {
                    Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                    _ => {
                        return Err(err(
                            k,
                            format!("{v:?} is not a number from 1 to {MAX_LIMIT}"),
                        ))
                    }
                }
            }
            "cursor" => {
                q.cursor = Some(decode_cursor(v).ok_or_else(|| {
                    err(k, "not a cursor of this API (pass next_cursor as it came)")
                })?)
            }
            _ => unreachable!("check_names admits only known parameters"),
        }
    }
    if let (Some(from), Some(to)) = (q.from, q.to) {
        // `to` is exclusive (a plain date already moved to the next midnight): a `from` at
        // or after it leaves nothing to ask for.
        if from >= to {
            return Err(err(
                "from",
                format!("{from} is not before the end of the range ({to}, exclusive)"),
            ));
        }
    }
    Ok(q)
}

/// Parses the one parameter of `GET /api/v1/audit/sign`.
pub fn parse_seq(pairs: &[(String, String)]) -> Result<u64, ParamError> {
    let checked = check_names(pairs, &["seq"])?;
    match checked.first() {
        Some((k, v)) => positive(k, v, "an entry's seq (a positive integer)"),
        None => Err(err("seq", "missing")),
    }
}

/// Parses `before` of `POST /api/v1/audit/prune` (a date or an RFC 3339 time).
pub fn parse_before(v: &str) -> Result<Timestamp, ParamError> {
    time("before", v, false)
}

/// The opaque cursor of a position: 32 hex digits.
pub fn encode_cursor((time, seq): Key) -> String {
    format!("{time:016x}{seq:016x}")
}

pub fn decode_cursor(v: &str) -> Option<Key> {
    if v.len() != 32 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let time = u64::from_str_radix(&v[..16], 16).ok()?;
    let seq = u64::from_str_radix(&v[16..], 16).ok()?;
    Some((time, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<AuditQuery, ParamError> {
        let pairs: Vec<(String, String)> = s
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (p.to_string(), String::new()),
            })
            .collect();
        parse_query(&pairs)
    }

    #[test]
    fn valid_parameters_parse() {
        let a = q("").unwrap();
        assert_eq!(a.limit, DEFAULT_LIMIT);
        let a = q("tenant=med&from=2026-03-01&to=2026-03-31&user=ann&allocation=7&node=n1&action=node.claimed&limit=10000")
            .unwrap();
        assert_eq!(a.tenant.as_deref(), Some("med"));
        assert_eq!(a.from, Timestamp::parse("2026-03-01"));
        // A plain `to` date includes that whole day.
        assert_eq!(a.to, Timestamp::parse("2026-04-01"));
        assert_eq!(a.allocation, Some(7));
        assert_eq!(a.action, Some(AuditAction::NodeClaimed));
        assert_eq!(a.limit, 10_000);
        // One plain date as both ends: that whole day.
        let a = q("from=2026-03-01&to=2026-03-01").unwrap();
        assert_eq!(a.to.unwrap().0 - a.from.unwrap().0, DAY_MS);
        // An RFC 3339 `to` is exclusive as given.
        let a = q("to=2026-03-31T00:00:00Z").unwrap();
        assert_eq!(a.to, Timestamp::parse("2026-03-31"));
        let c = encode_cursor((1_772_323_200_000, 42));
        assert_eq!(
            q(&format!("cursor={c}")).unwrap().cursor,
            Some((1_772_323_200_000, 42))
        );
    }

    #[test]
    fn each_bad_parameter_is_named() {
        let long = "x".repeat(MAX_TEXT + 1);
        let cases = [
            ("action=node.nope", "action"),
            ("from=2026-13-01", "from"),
            ("to=yesterday", "to"),
            ("from=2026-03-02&to=2026-03-01T00:00:00Z", "from"),
            ("from=2026-03-02&to=2026-03-01", "from"),
            ("from=2026-03-01T10:00:00Z&to=2026-03-01T10:00:00Z", "from"),
            ("limit=0", "limit"),
            ("limit=10001", "limit"),
            ("limit=ten", "limit"),
            ("cursor=zz", "cursor"),
            ("cursor=0000000000000000000000000000000g", "cursor"),
            ("allocation=0", "allocation"),
            ("allocation=-1", "allocation"),
            ("tenant=", "tenant"),
            (&format!("user={long}"), "user"),
            ("tenant=a&tenant=b", "tenant"),
            ("stale=true", "stale"),
            ("bogus=1", "bogus"),
        ];
        for (s, param) in cases {
            let e = q(s).expect_err(s);
            assert_eq!(e.param, param, "{s}: {e}");
        }
        assert_eq!(parse_seq(&[]).unwrap_err().param, "seq");
        let p = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert_eq!(parse_seq(&p("seq", "0")).unwrap_err().param, "seq");
        assert_eq!(parse_seq(&p("sek", "1")).unwrap_err().param, "sek");
        assert_eq!(parse_seq(&p("seq", "12")), Ok(12));
        assert_eq!(parse_before("soon").unwrap_err().param, "before");
    }
}
