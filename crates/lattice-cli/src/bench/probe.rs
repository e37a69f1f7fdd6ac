//! What the bench observes besides its own requests: every member's `/metrics` (the leader's
//! scheduling-cycle histogram, the replicated allocation counters and queue depth) and the
//! `/proc` figures of the `--server-pid` processes, read at the edges of each phase.

use lattice_client::Client;

use super::procfs::{self, ProcUsage};
use super::prom::{self, Sample};
use super::stats::Histogram;

pub const CYCLE_METRIC: &str = "lattice_scheduling_cycle_duration_seconds";
const ALLOCATIONS_METRIC: &str = "lattice_allocations_total";
const QUEUE_METRIC: &str = "lattice_scheduling_queue_depth";
/// `lattice_allocations_total` states that mean an allocation ended.
const ENDED: [&str; 3] = ["completed", "failed", "cancelled"];

/// The members named by `--endpoint`, each with its own client so that each is scraped.
pub struct Members {
    clients: Vec<Client>,
}

/// One scrape of every member; `None` for a member that could not be read.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    members: Vec<Option<Vec<Sample>>>,
}

impl Members {
    pub fn new(endpoint: &str, token: Option<String>) -> Result<Self, lattice_client::ClientError> {
        let clients = endpoint
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                Client::new(&[e])
                    .and_then(|c| {
                        crate::ca_file::trust(c).map_err(lattice_client::ClientError::Config)
                    })
                    .map(|c| {
                        c.with_retry_for(std::time::Duration::from_secs(1))
                            .with_token(token.clone())
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Members { clients })
    }

    pub async fn scrape(&self) -> Scrape {
        let mut members = Vec::with_capacity(self.clients.len());
        for c in &self.clients {
            members.push(c.metrics_text().await.ok().map(|t| prom::parse(&t)));
        }
        Scrape { members }
    }
}

impl Scrape {
    /// Whether any member answered.
    pub fn any(&self) -> bool {
        self.members.iter().any(Option::is_some)
    }

    /// The scheduling cycles of `vcluster` observed between `before` and this scrape, summed
    /// over the members (a leader metric: only the leader's moves). Members missing from either
    /// scrape are left out.
    pub fn cycles_since(&self, before: &Scrape, vcluster: &str) -> Histogram {
        let filter = [("vcluster", vcluster)];
        let mut sum = Histogram::default();
        for (after, before) in self.members.iter().zip(&before.members) {
            if let (Some(a), Some(b)) = (after, before) {
                let a = prom::histogram(a, CYCLE_METRIC, &filter);
                let b = prom::histogram(b, CYCLE_METRIC, &filter);
                sum.add(&a.since(&b));
            }
        }
        sum
    }

    /// A replicated figure: the largest value over the members (a follower may lag).
    fn replicated(&self, name: &str, filter: &[(&str, &str)]) -> Option<f64> {
        self.members
            .iter()
            .flatten()
            .map(|s| prom::sum(s, name, filter))
            .reduce(f64::max)
    }

    /// Allocations of (`tenant`, `vcluster`) that ever ended (completed, failed, cancelled).
    pub fn ended(&self, tenant: &str, vcluster: &str) -> Option<f64> {
        ENDED
            .iter()
            .map(|state| {
                let filter = [
                    ("state", *state),
                    ("tenant", tenant),
                    ("vcluster", vcluster),
                ];
                self.replicated(ALLOCATIONS_METRIC, &filter)
            })
            .sum()
    }

    /// Pending allocations of `vcluster` that are not held.
    pub fn queue_depth(&self, vcluster: &str) -> Option<u64> {
        self.replicated(QUEUE_METRIC, &[("vcluster", vcluster)])
            .map(|v| v.max(0.0) as u64)
    }
}

/// `/proc` readings of every `--server-pid`.
#[derive(Clone, Debug)]
pub struct ProcReadings(pub Vec<(u32, ProcUsage)>);

impl ProcReadings {
    pub fn read(pids: &[u32]) -> Result<Self, String> {
        pids.iter()
            .map(|&pid| procfs::read(pid).map(|u| (pid, u)))
            .collect::<Result<Vec<_>, _>>()
            .map(ProcReadings)
    }
}
