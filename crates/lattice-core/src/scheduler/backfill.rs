//! EASY backfill's arithmetic: the shadow time of a blocked allocation (the earliest time
//! enough of its nodes will be free, from walltimes), the reservation it gets, and the
//! conservative estimated starts of the allocations behind it.
//!
//! Each computation is O(matching nodes) for one allocation (a selection, not a sort); it is
//! done for the reserved head and for the first [`ESTIMATE_DEPTH`] blocked allocations of a
//! vCluster, never for every pending allocation.

use crate::allocation::AllocId;
use crate::scheduler::cycle::NEVER;

/// Blocked allocations per vCluster that get an estimated start.
pub const ESTIMATE_DEPTH: usize = 16;

/// The reservation of a vCluster's best-scored blocked allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub allocation: AllocId,
    /// Its constraint set (interned in the vCluster's feasibility).
    pub constraints: usize,
    pub need: usize,
    /// Shadow time, Unix ms: when enough matching nodes will be free.
    pub start: u64,
    /// Matching nodes free by `start` beyond what it needs: backfill may keep this many busy
    /// past `start`.
    pub extra: usize,
}

/// The earliest time `need` of `nodes` are free given `avail` (see `Cycle::avail`), and how
/// many are free by then; `None` if they never are.
pub fn shadow(
    avail: &[u64],
    nodes: &[u32],
    need: usize,
    scratch: &mut Vec<u64>,
) -> Option<(u64, usize)> {
    if need == 0 || nodes.len() < need {
        return None;
    }
    scratch.clear();
    scratch.extend(nodes.iter().map(|&i| avail[i as usize]));
    let (_, &mut start, _) = scratch.select_nth_unstable(need - 1);
    if start == NEVER {
        return None;
    }
    let free_by_then = scratch.iter().filter(|&&t| t <= start).count();
    Some((start, free_by_then))
}

/// Conservative estimate: the earliest time `need` of `nodes` are free in `avail`; those
/// nodes are then booked until that time plus `walltime_ms`, so that the next estimate
/// queues behind this one.
pub fn estimate(
    avail: &mut [u64],
    nodes: &[u32],
    need: usize,
    walltime_ms: u64,
    scratch: &mut Vec<(u64, u32)>,
) -> Option<u64> {
    if need == 0 || nodes.len() < need {
        return None;
    }
    scratch.clear();
    scratch.extend(nodes.iter().map(|&i| (avail[i as usize], i)));
    scratch.select_nth_unstable(need - 1);
    let start = scratch[..need].iter().map(|p| p.0).max()?;
    if start == NEVER {
        return None;
    }
    for &(_, i) in &scratch[..need] {
        avail[i as usize] = start.saturating_add(walltime_ms);
    }
    Some(start)
}

/// Rounds Unix ms up to a whole second.
pub fn ceil_second(ms: u64) -> u64 {
    ms.div_ceil(1000).saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_is_the_need_th_release() {
        let avail = [0, 500, 100, NEVER, 100, 900];
        let mut s = Vec::new();
        let all = [0, 1, 2, 3, 4, 5];
        assert_eq!(shadow(&avail, &all, 1, &mut s), Some((0, 1)));
        assert_eq!(shadow(&avail, &all, 3, &mut s), Some((100, 3)));
        assert_eq!(shadow(&avail, &all, 5, &mut s), Some((900, 5)));
        assert_eq!(
            shadow(&avail, &all, 6, &mut s),
            None,
            "one node never frees"
        );
        assert_eq!(shadow(&avail, &[0, 1], 3, &mut s), None);
    }

    #[test]
    fn estimates_queue_behind_each_other() {
        let mut avail = vec![0, 0, 100, 200];
        let mut s = Vec::new();
        let all = [0, 1, 2, 3];
        assert_eq!(estimate(&mut avail, &all, 3, 50, &mut s), Some(100));
        assert_eq!(avail, [150, 150, 150, 200]);
        assert_eq!(estimate(&mut avail, &all, 2, 10, &mut s), Some(150));
        assert_eq!(ceil_second(1001), 2000);
        assert_eq!(ceil_second(2000), 2000);
    }
}
