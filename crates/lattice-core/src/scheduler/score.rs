//! The score of a pending allocation: a weighted sum of four terms, each in [0, 1] (the
//! formula is documented in docs/scheduling.md):
//!
//! ```text
//! score = W_priority   * priority / 10
//!       + W_age        * min(1, ln(1 + wait / 1 min) / ln(1 + 7 days / 1 min))
//!       + W_fairshare  * clamp((1 + target - actual) / 2, 0, 1)
//!       + W_topology   * 1 / (fewest topology groups the allocation fits in)
//! ```
//!
//! `target` is the tenant's share over the shares of every tenant active in the vCluster
//! (pending, running or with recorded usage there); `actual` is the tenant's fraction of their
//! usage: decayed node-seconds of work that ended plus node-seconds of running work so far.

use std::collections::BTreeMap;

use crate::allocation::Allocation;
use crate::state::ClusterState;
use crate::time::Timestamp;
use crate::vcluster::{VCluster, Weights};

/// Wait-time aging reaches its full weight after a week.
const AGE_FULL_SECS: f64 = 7.0 * 24.0 * 3600.0;
/// The aging curve's time unit: the log grows by ~ln 2 in the first minute.
const AGE_UNIT_SECS: f64 = 60.0;

/// The wait-time term: log-shaped, so it breaks ties among equals and lets old work creep up
/// without ever outweighing a priority level by much.
pub fn age_term(submitted: Timestamp, now: Timestamp) -> f64 {
    let wait = now.millis_since(submitted) as f64 / 1000.0;
    ((1.0 + wait / AGE_UNIT_SECS).ln() / (1.0 + AGE_FULL_SECS / AGE_UNIT_SECS).ln()).min(1.0)
}

/// Fair-share terms of the tenants active in a vCluster. (Ordered maps: sums are taken in a
/// fixed order, so equal inputs give bit-equal scores.)
pub struct FairShare<'a> {
    terms: BTreeMap<&'a str, f64>,
}

/// A tenant's fair-share term when it has none computed (not active in the vCluster).
pub const NEUTRAL: f64 = 0.5;

impl<'a> FairShare<'a> {
    /// Computes the terms of every tenant active in the vCluster; `pending` is the
    /// vCluster's pending work.
    pub fn new(
        state: &'a ClusterState,
        vc: &VCluster,
        now: Timestamp,
        pending: &[&'a Allocation],
    ) -> Self {
        Self::for_tenants(state, vc, now, pending.iter().map(|a| a.tenant.as_str()))
    }

    /// As [`FairShare::new`], given the tenants with pending work in the vCluster (each
    /// named at least once).
    pub fn for_tenants(
        state: &'a ClusterState,
        vc: &VCluster,
        now: Timestamp,
        pending: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let half_life_ms = vc.fairshare_half_life_seconds.saturating_mul(1000);
        let mut usage: BTreeMap<&'a str, f64> = BTreeMap::new();
        if let Some(records) = state.usage().get(&vc.name) {
            for (t, u) in records {
                usage.insert(t.as_str(), u.at(now, half_life_ms) as f64);
            }
        }
        for id in state.running_ids() {
            let Some(a) = state.allocation(*id) else {
                continue;
            };
            if a.vcluster != vc.name {
                continue;
            }
            let ran = a.started_at.map_or(0, |s| now.millis_since(s));
            *usage.entry(a.tenant.as_str()).or_default() += ran as f64 * f64::from(a.nodes);
        }
        for t in pending {
            usage.entry(t).or_default();
        }
        let share = |t: &str| f64::from(state.tenant(t).map_or(1, |t| t.share));
        let shares: f64 = usage.keys().map(|t| share(t)).sum();
        let used: f64 = usage.values().sum();
        let n = usage.len().max(1) as f64;
        let terms = usage
            .iter()
            .map(|(&t, &u)| {
                let target = if shares > 0.0 {
                    share(t) / shares
                } else {
                    1.0 / n
                };
                let actual = if used > 0.0 { u / used } else { 0.0 };
                (t, ((1.0 + target - actual) / 2.0).clamp(0.0, 1.0))
            })
            .collect();
        FairShare { terms }
    }

    pub fn term(&self, tenant: &str) -> f64 {
        self.terms.get(tenant).copied().unwrap_or(NEUTRAL)
    }
}

/// The weighted sum for an allocation of `priority` submitted at `submitted_ms`;
/// `topology` is 1 / (fewest groups it fits in), 1 without groups.
pub fn score(
    w: &Weights,
    priority: u8,
    submitted_ms: u64,
    now: Timestamp,
    fairshare: f64,
    topology: f64,
) -> f64 {
    f64::from(w.priority) * f64::from(priority) / 10.0
        + f64::from(w.age) * age_term(Timestamp::from_millis(submitted_ms), now)
        + f64::from(w.fairshare) * fairshare
        + f64::from(w.topology) * topology
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aging_is_log_shaped_and_capped() {
        let t0 = Timestamp(1_000_000);
        let at = |s: u64| t0.plus_secs(s);
        assert_eq!(age_term(t0, t0), 0.0);
        let minute = age_term(t0, at(60));
        let hour = age_term(t0, at(3600));
        let day = age_term(t0, at(86400));
        assert!(0.07 < minute && minute < 0.08, "{minute}");
        assert!(0.44 < hour && hour < 0.45, "{hour}");
        assert!(0.78 < day && day < 0.80, "{day}");
        assert_eq!(age_term(t0, at(30 * 86400)), 1.0);
        // A clock behind the submission does not go negative.
        assert_eq!(age_term(at(10), t0), 0.0);
    }
}
