//! The pure statistics of `lattice bench`: quantiles of measured samples (nearest rank) and of
//! Prometheus histograms (cumulative buckets, interpolated within a bucket the way PromQL's
//! `histogram_quantile` does), and the difference of two scrapes of one histogram.

use std::collections::BTreeMap;

use serde::Serialize;

/// The `q`-quantile (0 < q <= 1) of `sorted` (ascending) by the nearest-rank method: the
/// smallest sample with at least `q` of the samples at or below it. `None` when empty.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50, p99 and the largest of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// `None` for no samples. NaNs are dropped.
    pub fn of(mut samples: Vec<f64>) -> Option<Summary> {
        samples.retain(|s| !s.is_nan());
        samples.sort_by(f64::total_cmp);
        Some(Summary {
            count: samples.len(),
            p50: quantile(&samples, 0.5)?,
            p99: quantile(&samples, 0.99)?,
            max: *samples.last()?,
        })
    }
}

/// One histogram series as its cumulative buckets: count of observations at or below each
/// upper bound `le`, the last bound being +Inf. Bounds are non-negative here (durations).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Keyed by the bound's bit pattern, which orders non-negative floats (and +Inf last)
    /// as their values; the value is the cumulative count.
    buckets: BTreeMap<u64, f64>,
}

impl Histogram {
    /// From `(le, cumulative count)` pairs in any order.
    #[cfg(test)]
    pub fn from_buckets(pairs: impl IntoIterator<Item = (f64, f64)>) -> Self {
        let mut h = Histogram::default();
        for (le, count) in pairs {
            h.add_bucket(le, count);
        }
        h
    }

    /// Adds `count` to the bucket `le` (series of several members or label sets add up).
    pub fn add_bucket(&mut self, le: f64, count: f64) {
        if le.is_nan() || le < 0.0 {
            return;
        }
        *self.buckets.entry(le.to_bits()).or_default() += count;
    }

    /// Adds every bucket of `other`.
    pub fn add(&mut self, other: &Histogram) {
        for (&le, &count) in &other.buckets {
            *self.buckets.entry(le).or_default() += count;
        }
    }

    /// What was observed between a scrape `before` and this later one. A series that went
    /// down (the member restarted) counts from zero, like a Prometheus counter reset.
    pub fn since(&self, before: &Histogram) -> Histogram {
        let reset = self.count() < before.count();
        let buckets = self
            .buckets
            .iter()
            .map(|(&le, &after)| {
                let b = if reset {
                    0.0
                } else {
                    before.buckets.get(&le).copied().unwrap_or(0.0)
                };
                (le, (after - b).max(0.0))
            })
            .collect();
        Histogram { buckets }
    }

    /// Observations in all (the +Inf bucket, else the largest cumulative count).
    pub fn count(&self) -> f64 {
        self.buckets.values().copied().fold(0.0, f64::max)
    }

    /// The `q`-quantile, interpolated linearly inside the bucket that holds it (the first
    /// bucket starting at 0); a quantile in the +Inf bucket is the largest finite bound, as in
    /// PromQL. `None` when nothing was observed.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let mut lower = 0.0;
        let mut below = 0.0;
        for (&bits, &cum) in &self.buckets {
            let le = f64::from_bits(bits);
            if cum >= rank && cum > below {
                if le.is_infinite() {
                    return Some(lower);
                }
                return Some(lower + (le - lower) * (rank - below) / (cum - below));
            }
            lower = le;
            below = cum.max(below);
        }
        Some(lower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&s, 0.5), Some(50.0));
        assert_eq!(quantile(&s, 0.99), Some(99.0));
        assert_eq!(quantile(&s, 1.0), Some(100.0));
        assert_eq!(quantile(&[7.0], 0.5), Some(7.0));
        assert_eq!(quantile(&[7.0], 0.99), Some(7.0));
        assert_eq!(quantile(&[1.0, 2.0], 0.5), Some(1.0));
        assert_eq!(quantile(&[1.0, 2.0], 0.99), Some(2.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn summary_sorts_and_ignores_nan() {
        let s = Summary::of(vec![5.0, 1.0, f64::NAN, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!(
            s,
            Summary {
                count: 5,
                p50: 3.0,
                p99: 5.0,
                max: 5.0
            }
        );
        assert_eq!(Summary::of(vec![]), None);
        assert_eq!(Summary::of(vec![f64::NAN]), None);
    }

    fn h(pairs: &[(f64, f64)]) -> Histogram {
        Histogram::from_buckets(pairs.iter().copied())
    }

    const INF: f64 = f64::INFINITY;

    #[test]
    fn histogram_quantile_interpolates_like_promql() {
        // 10 observations <= 1 ms, 10 more in (1, 5] ms, none above.
        let x = h(&[(0.001, 10.0), (0.005, 20.0), (0.01, 20.0), (INF, 20.0)]);
        assert_eq!(x.count(), 20.0);
        // rank 10 is the top of the first bucket.
        assert!((x.quantile(0.5).unwrap() - 0.001).abs() < 1e-12);
        // rank 19.8: 9.8 of the 10 in (1, 5] ms.
        let p99 = x.quantile(0.99).unwrap();
        assert!((p99 - (0.001 + 0.004 * 0.98)).abs() < 1e-12, "{p99}");
        // rank 5 in the first bucket, which starts at 0.
        assert!((x.quantile(0.25).unwrap() - 0.0005).abs() < 1e-12);
    }

    #[test]
    fn a_quantile_in_the_inf_bucket_is_the_largest_finite_bound() {
        let x = h(&[(0.5, 1.0), (1.0, 1.0), (INF, 4.0)]);
        assert_eq!(x.quantile(0.99), Some(1.0));
        assert_eq!(h(&[(INF, 3.0)]).quantile(0.5), Some(0.0));
    }

    #[test]
    fn nothing_observed_has_no_quantile() {
        assert_eq!(Histogram::default().quantile(0.5), None);
        assert_eq!(h(&[(0.1, 0.0), (INF, 0.0)]).quantile(0.5), None);
    }

    #[test]
    fn the_difference_of_two_scrapes_is_what_happened_in_between() {
        let before = h(&[(0.001, 100.0), (0.01, 150.0), (0.1, 150.0), (INF, 150.0)]);
        let after = h(&[(0.001, 100.0), (0.01, 160.0), (0.1, 170.0), (INF, 170.0)]);
        let d = after.since(&before);
        assert_eq!(
            d,
            h(&[(0.001, 0.0), (0.01, 10.0), (0.1, 20.0), (INF, 20.0)])
        );
        // half of the 20 were <= 10 ms: p50 is the top of that bucket, and the old
        // sub-millisecond cycles no longer pull it down.
        assert!((d.quantile(0.5).unwrap() - 0.01).abs() < 1e-12);
        assert!((d.quantile(0.99).unwrap() - (0.01 + 0.09 * 0.98)).abs() < 1e-12);
    }

    #[test]
    fn a_member_that_restarted_counts_from_zero() {
        let before = h(&[(0.01, 50.0), (INF, 50.0)]);
        let after = h(&[(0.01, 3.0), (INF, 4.0)]);
        assert_eq!(after.since(&before), after);
    }

    #[test]
    fn series_of_several_members_add_up() {
        let mut sum = h(&[(0.01, 1.0), (INF, 2.0)]);
        sum.add(&h(&[(0.01, 3.0), (INF, 3.0)]));
        assert_eq!(sum, h(&[(0.01, 4.0), (INF, 5.0)]));
        // a bucket one member lacks is simply added
        sum.add(&h(&[(0.1, 1.0)]));
        assert_eq!(sum.count(), 5.0);
    }
}
