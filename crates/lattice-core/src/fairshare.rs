//! Fair-share usage: node-seconds a tenant used in a vCluster, decayed with the vCluster's
//! half-life. Apply records it when an allocation that ran ends (nodes x run time, at the
//! command's `now`); the scheduler adds what running allocations used so far.
//!
//! The decay is integer arithmetic (whole half-lives are shifts, the fraction a product of
//! fixed-point constants), so every Raft member computes exactly the same value.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Decayed usage as of `as_of`, in node-milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub node_ms: u64,
    pub as_of: Timestamp,
}

impl Usage {
    /// The usage decayed to `now` (never negative time: a `now` before `as_of` decays nothing).
    pub fn at(&self, now: Timestamp, half_life_ms: u64) -> u64 {
        decay(self.node_ms, now.millis_since(self.as_of), half_life_ms)
    }

    /// Decays to `now` and adds `node_ms`.
    pub fn add(&mut self, now: Timestamp, node_ms: u64, half_life_ms: u64) {
        let base = self.at(now, half_life_ms);
        self.node_ms = base.saturating_add(node_ms);
        self.as_of = self.as_of.max(now);
    }
}

/// round(2^32 * 2^(-2^-i)) for i = 1..=24.
const HALVES: [u64; 24] = [
    3037000500, 3611622603, 3938502376, 4112874773, 4202935003, 4248701965, 4271771996, 4283353945,
    4289156690, 4292061010, 4293513907, 4294240540, 4294603903, 4294785595, 4294876445, 4294921870,
    4294944583, 4294955939, 4294961618, 4294964457, 4294965876, 4294966586, 4294966941, 4294967119,
];

/// `value * 2^(-elapsed / half_life)`, in integers. A zero half-life means no decay.
pub fn decay(value: u64, elapsed_ms: u64, half_life_ms: u64) -> u64 {
    if half_life_ms == 0 || value == 0 {
        return value;
    }
    let halvings = elapsed_ms / half_life_ms;
    if halvings >= 64 {
        return 0;
    }
    let value = value >> halvings;
    // The remaining fraction of a half-life, in 2^-32 units (bits below 2^-24 are dropped).
    let frac = (u128::from(elapsed_ms % half_life_ms) << 32) / u128::from(half_life_ms);
    let mut factor: u128 = 1 << 32;
    for (i, h) in HALVES.iter().enumerate() {
        if frac & (1u128 << (31 - i)) != 0 {
            factor = (factor * u128::from(*h)) >> 32;
        }
    }
    ((u128::from(value) * factor) >> 32) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_per_half_life() {
        let h = 1000;
        assert_eq!(decay(1 << 20, 0, h), 1 << 20);
        assert_eq!(decay(1 << 20, 1000, h), 1 << 19);
        assert_eq!(decay(1 << 20, 3000, h), 1 << 17);
        assert_eq!(decay(1 << 20, 64_000, h), 0);
        assert_eq!(decay(77, 123, 0), 77);
        // Half a half-life is 1/sqrt(2), to within rounding.
        let v = decay(1_000_000_000, 500, h);
        assert!((707_106_700..=707_106_790).contains(&v), "{v}");
        // Monotonic in elapsed time.
        let mut last = u64::MAX;
        for t in (0..5000).step_by(37) {
            let v = decay(1_000_000_000_000, t, h);
            assert!(v <= last);
            last = v;
        }
    }

    #[test]
    fn add_decays_then_adds() {
        let mut u = Usage::default();
        u.add(Timestamp(1000), 500, 1000);
        assert_eq!(
            u,
            Usage {
                node_ms: 500,
                as_of: Timestamp(1000)
            }
        );
        u.add(Timestamp(2000), 100, 1000);
        assert_eq!(u.node_ms, 350);
        assert_eq!(u.at(Timestamp(3000), 1000), 175);
        // A command stamped before the record (another leader's clock) decays nothing.
        u.add(Timestamp(1500), 10, 1000);
        assert_eq!(
            u,
            Usage {
                node_ms: 360,
                as_of: Timestamp(2000)
            }
        );
    }
}
