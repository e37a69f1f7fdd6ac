//! Tenants: the accounts allocations are charged to (Slurm's accounts). A tenant has a
//! fair-share target ([`Tenant::share`]), hard quotas on what it may run at once, and a
//! `sensitive` flag for the audit trail.
//!
//! [`TenantRequest`] is the JSON body of `POST /api/v1/tenants` and `PUT /api/v1/tenants/{name}`;
//! it validates into a [`TenantChange`], which is what the Raft command carries.

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::Rejection;
use crate::submit::{validate_name, MAX_NODES};
use crate::time::Timestamp;

pub const DEFAULT_SHARE: u32 = 1;
pub const MAX_SHARE: i64 = 1_000_000;
pub const MAX_RUNNING: i64 = 10_000_000;

/// A tenant as the cluster keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub name: String,
    /// Fair-share weight: the tenant's target fraction of a vCluster is its share divided by
    /// the shares of every tenant active there.
    pub share: u32,
    /// Hard quota: nodes held by the tenant's running allocations (`None`: unlimited).
    pub max_nodes: Option<u32>,
    /// Hard quota: the tenant's running allocations (`None`: unlimited).
    pub max_running: Option<u32>,
    /// Work of this tenant is audited (used by the audit trail).
    pub sensitive: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Tenant {
    /// A tenant with every setting at its default.
    pub fn new(name: &str, now: Timestamp) -> Self {
        Tenant {
            name: name.to_string(),
            share: DEFAULT_SHARE,
            max_nodes: None,
            max_running: None,
            sensitive: false,
            created_at: now,
            updated_at: now,
        }
    }

    /// Applies a validated change (absent fields stay as they are).
    pub fn apply_change(&mut self, c: &TenantChange, now: Timestamp) {
        if let Some(v) = c.share {
            self.share = v;
        }
        if let Some(v) = c.max_nodes {
            self.max_nodes = v;
        }
        if let Some(v) = c.max_running {
            self.max_running = v;
        }
        if let Some(v) = c.sensitive {
            self.sensitive = v;
        }
        self.updated_at = now;
    }
}

/// A validated change of a tenant's settings; `None` leaves a setting as it is, and for the
/// quotas `Some(None)` removes the limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantChange {
    pub share: Option<u32>,
    pub max_nodes: Option<Option<u32>>,
    pub max_running: Option<Option<u32>>,
    pub sensitive: Option<bool>,
}

/// Deserializes a present field (even `null`) as `Some(value)`, so that an absent field
/// (`None`, by `#[serde(default)]`) and an explicit `null` (`Some(None)`) differ.
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Body of `POST /api/v1/tenants` (with `name`) and `PUT /api/v1/tenants/{name}` (without).
/// Absent fields keep their value (on create: their default); `"max_nodes": null` removes
/// the limit.
/// (A JSON request type, never part of a command: absent fields are skipped when a client
/// serializes it, so that "absent" and `null` stay distinct.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<i64>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_nodes: Option<Option<i64>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_running: Option<Option<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive: Option<bool>,
}

fn range(field: &str, v: i64, min: i64, max: i64) -> Result<u32, Rejection> {
    if (min..=max).contains(&v) {
        Ok(v as u32)
    } else {
        Err(Rejection::invalid(
            field,
            format!("{v} is out of range {min}..={max}"),
        ))
    }
}

impl TenantRequest {
    /// Validates the request; `name` is the tenant's name (from the body on create, from the
    /// path on update).
    pub fn into_change(self) -> Result<TenantChange, Rejection> {
        if let Some(n) = &self.name {
            validate_name("name", n)?;
        }
        let quota = |field: &str, v: Option<Option<i64>>, max: i64| -> Result<_, Rejection> {
            match v {
                None => Ok(None),
                Some(None) => Ok(Some(None)),
                Some(Some(n)) => Ok(Some(Some(range(field, n, 0, max)?))),
            }
        };
        Ok(TenantChange {
            share: self
                .share
                .map(|s| range("share", s, 0, MAX_SHARE))
                .transpose()?,
            max_nodes: quota("max_nodes", self.max_nodes, MAX_NODES)?,
            max_running: quota("max_running", self.max_running, MAX_RUNNING)?,
            sensitive: self.sensitive,
        })
    }
}

/// What the tenant's running allocations hold right now (for quotas).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantLoad {
    pub nodes: u64,
    pub running: u64,
}

impl TenantLoad {
    pub fn is_zero(&self) -> bool {
        self.nodes == 0 && self.running == 0
    }
}

/// Which quota, if any, starting `nodes` more nodes (one more allocation) would break.
pub fn quota_exceeded(t: &Tenant, load: TenantLoad, nodes: u32) -> Option<&'static str> {
    if t.max_nodes
        .is_some_and(|m| load.nodes + u64::from(nodes) > u64::from(m))
    {
        return Some("max_nodes");
    }
    if t.max_running
        .is_some_and(|m| load.running + 1 > u64::from(m))
    {
        return Some("max_running");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Result<TenantChange, Rejection> {
        serde_json::from_str::<TenantRequest>(json)
            .map_err(|e| Rejection::invalid("json", e.to_string()))?
            .into_change()
    }

    #[test]
    fn absent_null_and_values_differ() {
        let c = req(r#"{"share": 3, "max_nodes": null, "max_running": 4}"#).unwrap();
        assert_eq!(c.share, Some(3));
        assert_eq!(c.max_nodes, Some(None));
        assert_eq!(c.max_running, Some(Some(4)));
        assert_eq!(c.sensitive, None);
        let mut t = Tenant::new("a", Timestamp(0));
        t.max_nodes = Some(9);
        t.apply_change(&c, Timestamp(5));
        assert_eq!((t.share, t.max_nodes, t.max_running), (3, None, Some(4)));
        assert_eq!(t.updated_at, Timestamp(5));
        assert_eq!(req("{}").unwrap(), TenantChange::default());
    }

    #[test]
    fn bad_values_name_the_field() {
        let field = |json: &str| match req(json) {
            Err(Rejection::Invalid { field, .. }) => field,
            other => panic!("{json}: {other:?}"),
        };
        assert_eq!(field(r#"{"share": -1}"#), "share");
        assert_eq!(field(r#"{"max_nodes": 100001}"#), "max_nodes");
        assert_eq!(field(r#"{"max_running": -2}"#), "max_running");
        assert_eq!(field(r#"{"name": "a b"}"#), "name");
        assert_eq!(field(r#"{"shares": 2}"#), "json");
    }

    #[test]
    fn quotas() {
        let mut t = Tenant::new("a", Timestamp(0));
        let load = TenantLoad {
            nodes: 8,
            running: 2,
        };
        assert_eq!(quota_exceeded(&t, load, 100), None);
        t.max_nodes = Some(10);
        assert_eq!(quota_exceeded(&t, load, 2), None);
        assert_eq!(quota_exceeded(&t, load, 3), Some("max_nodes"));
        t.max_running = Some(2);
        assert_eq!(quota_exceeded(&t, load, 1), Some("max_running"));
    }
}
