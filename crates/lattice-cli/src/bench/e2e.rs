//! The end-to-end phase: `n` trivial jobs submitted (individually or as one array), waited for
//! until every one ended or `--timeout` ran out, then read back once: the jobs' own
//! `submitted_at`, `started_at` and `finished_at` (the leader's clock) give the throughput, the
//! submit-to-running latency and the placement rate, with no polling error in them.
//!
//! Waiting is cheap for the server: the replicated `lattice_allocations_total` counters on
//! `/metrics` say when enough allocations of the bench's tenant and vCluster ended; only then
//! (or every few seconds, in case other work shares the counters or `/metrics` cannot be
//! read) are the jobs themselves listed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use lattice_client::{Client, ClientError};
use lattice_core::submit::SubmitRequest;
use lattice_core::{AllocId, AllocState, Allocation};

use super::interrupt;
use super::probe::{Members, Scrape};
use super::readback::read_back;
use super::report::E2eRow;
use super::stats::Summary;
use super::submit::{rate, submit_many, Submitted};

/// How often the counters are scraped while waiting.
const POLL: Duration = Duration::from_millis(200);
/// The longest wait between two listings of the jobs.
const LIST_EVERY: Duration = Duration::from_secs(3);

pub struct E2e<'a> {
    pub client: &'a Client,
    pub members: &'a Members,
    pub req: SubmitRequest,
    pub jobs: usize,
    pub as_array: bool,
    pub clients: usize,
    pub timeout: Duration,
    pub tenant: &'a str,
    pub vcluster: &'a str,
}

/// What the phase did: its row, the IDs it created, and how the submission went.
pub struct E2eOutcome {
    pub row: E2eRow,
    pub ids: BTreeSet<AllocId>,
    pub submitted: Submitted,
}

impl E2e<'_> {
    pub async fn run(self) -> Result<E2eOutcome, ClientError> {
        let before = self.members.scrape().await;
        let (submitted, ids) = if self.as_array {
            let mut req = self.req.clone();
            req.array = Some(format!("0-{}", self.jobs.saturating_sub(1)));
            let s = submit_many(self.client, &req, 1, 1).await;
            let ids = s
                .ids
                .first()
                .map(|&first| (first..first + self.jobs as u64).collect())
                .unwrap_or_default();
            (s, ids)
        } else {
            let s = submit_many(self.client, &self.req, self.clients, self.jobs).await;
            let ids: BTreeSet<AllocId> = s.ids.iter().copied().collect();
            (s, ids)
        };
        let deadline = Instant::now() + self.timeout;
        let (jobs, timed_out) = self.wait(&ids, &before, deadline).await?;
        Ok(E2eOutcome {
            row: row(&jobs, ids.len(), self.as_array, timed_out),
            ids,
            submitted,
        })
    }

    /// Waits until every job in `ids` ended, `deadline` or an interrupt; answers their last
    /// reading and whether it stopped waiting before they all ended.
    async fn wait(
        &self,
        ids: &BTreeSet<AllocId>,
        before: &Scrape,
        deadline: Instant,
    ) -> Result<(Vec<Allocation>, bool), ClientError> {
        let base = before.ended(self.tenant, self.vcluster);
        let mut listed_at: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let counters_say_done = match (
                base,
                self.members
                    .scrape()
                    .await
                    .ended(self.tenant, self.vcluster),
            ) {
                (Some(b), Some(n)) => n - b >= ids.len() as f64,
                _ => false,
            };
            let overdue = listed_at.is_none_or(|t| now >= t + LIST_EVERY);
            let give_up = now >= deadline || interrupt::requested();
            if counters_say_done || overdue || give_up {
                let jobs = read_back(self.client, ids, Some(self.tenant)).await?;
                listed_at = Some(Instant::now());
                let open = jobs.iter().filter(|a| !a.state.is_terminal()).count();
                if open == 0 && jobs.len() == ids.len() {
                    return Ok((jobs, false));
                }
                if give_up {
                    return Ok((jobs, true));
                }
            }
            tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }
}

/// The phase's figures from the jobs as read back (`expected` were submitted).
pub fn row(jobs: &[Allocation], expected: usize, as_array: bool, timed_out: bool) -> E2eRow {
    let count = |s: AllocState| jobs.iter().filter(|a| a.state == s).count();
    let completed = count(AllocState::Completed);
    let first_submit = jobs.iter().map(|a| a.submitted_at).min();
    let last_finish = jobs.iter().filter_map(|a| a.finished_at).max();
    let last_start = jobs.iter().filter_map(|a| a.started_at).max();
    let secs = |from: Option<lattice_core::Timestamp>, to: Option<lattice_core::Timestamp>| {
        match (from, to) {
            // At least a millisecond: the clock's resolution.
            (Some(f), Some(t)) => Some(t.millis_since(f).max(1) as f64 / 1000.0),
            _ => None,
        }
    };
    let latencies: Vec<f64> = jobs
        .iter()
        .filter_map(|a| a.started_at.map(|s| s.millis_since(a.submitted_at) as f64))
        .collect();
    let started = latencies.len();
    let seconds = secs(first_submit, last_finish);
    E2eRow {
        jobs: expected,
        submitted_as: if as_array { "array" } else { "individual" }.into(),
        completed,
        failed: count(AllocState::Failed),
        cancelled: count(AllocState::Cancelled),
        unfinished: jobs.iter().filter(|a| !a.state.is_terminal()).count()
            + expected.saturating_sub(jobs.len()),
        timed_out,
        seconds: seconds.unwrap_or(0.0),
        jobs_per_second: seconds
            .filter(|_| completed > 0)
            .map(|s| rate(completed as f64, s)),
        started,
        submit_to_running_ms: Summary::of(latencies),
        placements_per_second: secs(first_submit, last_start)
            .filter(|_| started > 0)
            .map(|s| rate(started as f64, s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lattice_core::{AllocationSpec, Timestamp};

    /// An allocation in `state`, with its times in ms from an arbitrary origin.
    fn job(id: u64, state: &str, sub: u64, start: Option<u64>, end: Option<u64>) -> Allocation {
        let t = |ms: u64| Timestamp::from_millis(1_800_000_000_000 + ms);
        let spec = AllocationSpec {
            name: "bench-e2e".into(),
            tenant: "default".into(),
            vcluster: "default".into(),
            user: "u".into(),
            command: Some(vec!["true".into()]),
            script: None,
            nodes: 1,
            walltime_seconds: 3600,
            priority: 5,
            constraints: Default::default(),
            env: Default::default(),
            preemptible: true,
            checkpoint: Default::default(),
        };
        let mut a = Allocation::new(id, spec, t(sub));
        a.state = AllocState::parse(state).expect("a state");
        a.started_at = start.map(t);
        a.finished_at = end.map(t);
        a
    }

    #[test]
    fn figures_come_from_the_jobs_own_timestamps() {
        let jobs = vec![
            job(1, "completed", 0, Some(100), Some(1000)),
            job(2, "completed", 10, Some(210), Some(1500)),
            job(3, "failed", 20, Some(520), Some(1900)),
            job(4, "cancelled", 30, None, Some(40)),
            job(5, "completed", 40, Some(1040), Some(2000)),
        ];
        let r = row(&jobs, 5, false, false);
        assert_eq!(
            (r.completed, r.failed, r.cancelled, r.unfinished),
            (3, 1, 1, 0)
        );
        assert_eq!(r.started, 4);
        // first submission (0) to last completion (2000 ms): 3 completed in 2 s
        assert_eq!(r.seconds, 2.0);
        assert_eq!(r.jobs_per_second, Some(1.5));
        // latencies 100, 200, 500, 1000 ms
        let l = r.submit_to_running_ms.unwrap();
        assert_eq!((l.count, l.p50, l.p99, l.max), (4, 200.0, 1000.0, 1000.0));
        // 4 started between the first submission and the last start (1040 ms)
        assert!((r.placements_per_second.unwrap() - 4.0 / 1.04).abs() < 1e-9);
    }

    #[test]
    fn jobs_not_ended_or_not_seen_are_unfinished() {
        let jobs = vec![
            job(1, "completed", 0, Some(5), Some(9)),
            job(2, "running", 0, Some(7), None),
            job(3, "pending", 0, None, None),
        ];
        let r = row(&jobs, 4, true, true);
        assert_eq!(r.unfinished, 3, "running, pending and one never read back");
        assert!(r.timed_out);
        assert_eq!(r.submitted_as, "array");
        assert_eq!(r.seconds, 0.009);
    }

    #[test]
    fn nothing_done_has_no_rates() {
        let r = row(&[job(1, "pending", 0, None, None)], 1, false, true);
        assert_eq!(r.jobs_per_second, None);
        assert_eq!(r.placements_per_second, None);
        assert!(r.submit_to_running_ms.is_none());
        let r = row(&[], 0, false, false);
        assert_eq!((r.jobs, r.seconds, r.unfinished), (0, 0.0, 0));
    }
}
