//! [`Bench`]: one bench run against a cluster. Runs the chosen phases in order, scraping
//! `/metrics` and reading `/proc` around each, and keeps the IDs of everything it created so
//! that [`Bench::cleanup`] can cancel what is left pending or running.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use lattice_client::Client;
use lattice_core::submit::SubmitRequest;
use lattice_core::AllocId;

use super::e2e::E2e;
use super::interrupt;
use super::probe::{Members, ProcReadings, Scrape};
use super::readback::cancel_leftovers;
use super::report::{ArraysRow, CleanupRow, CycleRow, Report, ServerRow, SubmitRow};
use super::stats::Summary;
use super::submit::{rate, submit_many, Submitted};
use super::{BenchArgs, Phase, Stop, SIM_DURATION_ENV};

pub struct Bench {
    client: Client,
    members: Members,
    template: SubmitRequest,
    tenant: String,
    vcluster: String,
    pids: Vec<u32>,
    procs_before: ProcReadings,
    /// CPU seconds each `--server-pid` spent inside the phases (cleanup excluded).
    cpu_seconds: BTreeMap<u32, f64>,
    /// What the bench created and has not cleaned up yet: single allocations and arrays.
    singles: BTreeSet<AllocId>,
    arrays: Vec<AllocId>,
    /// Concurrent requests of the e2e submissions and the cleanup.
    max_clients: usize,
    pub report: Report,
}

impl Bench {
    /// Checks the flags and that the cluster answers; sends nothing else.
    pub async fn new(args: &BenchArgs, endpoint: &str) -> Result<Self, Stop> {
        let usage = |flag: &str, e: &dyn std::fmt::Display| Stop::Usage(format!("{flag}: {e}"));
        let token = crate::client_cmds::credentials::token_text().map_err(Stop::Usage)?;
        let client = Client::new(&[endpoint]).map_err(|e| usage("--endpoint", &e))?;
        let client = crate::ca_file::trust(client)
            .map_err(Stop::Usage)?
            .with_token(token.clone());
        let members = Members::new(endpoint, token).map_err(|e| usage("--endpoint", &e))?;
        let procs_before =
            ProcReadings::read(&args.server_pids).map_err(|e| usage("--server-pid", &e))?;
        client.health().await?;

        let mut env = BTreeMap::new();
        if let Some(s) = args.sim_duration {
            env.insert(SIM_DURATION_ENV.to_string(), s.to_string());
        }
        let user = args
            .user
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .or_else(|| std::env::var("LOGNAME").ok());
        // The server's defaults for both.
        let tenant = args.tenant.clone().unwrap_or_else(|| "default".into());
        let vcluster = args.vcluster.clone().unwrap_or_else(|| "default".into());
        let phases: BTreeSet<Phase> = args.phases.iter().copied().collect();
        Ok(Bench {
            template: SubmitRequest {
                tenant: args.tenant.clone(),
                vcluster: args.vcluster.clone(),
                user,
                command: Some(vec!["true".into()]),
                env: (!env.is_empty()).then_some(env),
                ..Default::default()
            },
            client,
            members,
            report: Report {
                endpoint: endpoint.to_string(),
                tenant: Some(tenant.clone()),
                vcluster: Some(vcluster.clone()),
                phases: phases.iter().map(|p| p.name().to_string()).collect(),
                ..Default::default()
            },
            tenant,
            vcluster,
            pids: args.server_pids.clone(),
            procs_before,
            cpu_seconds: BTreeMap::new(),
            singles: BTreeSet::new(),
            arrays: Vec::new(),
            max_clients: args.clients.iter().copied().max().unwrap_or(1) as usize,
        })
    }

    /// The chosen phases, in order; stops early when interrupted. What the submission phases
    /// leave is cancelled before `e2e` (unless `--keep`) so that its jobs do not queue behind it.
    pub async fn run(&mut self, args: &BenchArgs) -> Result<(), Stop> {
        let phases: BTreeSet<Phase> = args.phases.iter().copied().collect();
        for phase in phases {
            if interrupt::requested() {
                break;
            }
            if phase == Phase::E2e && !args.keep {
                self.cleanup().await?;
            }
            let before = self.mark().await?;
            match phase {
                Phase::Submit => self.submit(args).await?,
                Phase::Arrays => self.arrays(args).await?,
                Phase::Cycle => observe(Duration::from_secs_f64(args.observe)).await,
                Phase::E2e => self.e2e(args).await?,
            }
            self.end(phase, before).await?;
        }
        Ok(())
    }

    /// A job of the bench named `name`.
    fn job(&self, name: &str) -> SubmitRequest {
        SubmitRequest {
            name: Some(name.into()),
            ..self.template.clone()
        }
    }

    fn read_procs(&self) -> Result<ProcReadings, Stop> {
        ProcReadings::read(&self.pids).map_err(|e| Stop::Failed(format!("--server-pid: {e}")))
    }

    /// What a phase starts from: a scrape of `/metrics` and the `/proc` readings.
    async fn mark(&self) -> Result<(Scrape, ProcReadings), Stop> {
        Ok((self.members.scrape().await, self.read_procs()?))
    }

    /// Ends `phase` begun at `before`: its scheduling-cycle row and the servers' CPU time.
    async fn end(&mut self, phase: Phase, before: (Scrape, ProcReadings)) -> Result<(), Stop> {
        let (scrape, procs) = self.mark().await?;
        self.report
            .cycles
            .push(cycle_row(phase, &before.0, &scrape, &self.vcluster));
        for ((pid, b), (_, a)) in before.1 .0.iter().zip(&procs.0) {
            *self.cpu_seconds.entry(*pid).or_default() +=
                (a.cpu_seconds() - b.cpu_seconds()).max(0.0);
        }
        Ok(())
    }

    async fn submit(&mut self, args: &BenchArgs) -> Result<(), Stop> {
        let req = self.job("bench-submit");
        for &clients in &args.clients {
            let clients = clients as usize;
            let s = submit_many(&self.client, &req, clients, args.submits).await;
            self.singles.extend(&s.ids);
            self.report.allocations += s.ids.len() as u64;
            self.note_errors(&format!("submit, {clients} clients"), &s);
            check(&s, "submit")?;
            self.report.submit.push(SubmitRow {
                clients,
                submitted: s.ids.len(),
                errors: s.errors,
                seconds: s.seconds,
                per_second: rate(s.ids.len() as f64, s.seconds),
                latency_ms: Summary::of(s.latencies_ms),
            });
            if interrupt::requested() {
                break;
            }
        }
        Ok(())
    }

    async fn arrays(&mut self, args: &BenchArgs) -> Result<(), Stop> {
        let size = args.array_size;
        let mut req = self.job("bench-array");
        req.array = Some(format!("0-{}", size - 1));
        let s = submit_many(&self.client, &req, 1, args.arrays).await;
        let tasks = s.ids.len() as u64 * u64::from(size);
        self.arrays.extend(&s.ids);
        self.report.allocations += tasks;
        self.note_errors("arrays", &s);
        check(&s, "array submit")?;
        self.report.arrays = Some(ArraysRow {
            arrays: s.ids.len(),
            size,
            allocations: tasks,
            errors: s.errors,
            seconds: s.seconds,
            allocations_per_second: rate(tasks as f64, s.seconds),
            latency_ms: Summary::of(s.latencies_ms),
        });
        Ok(())
    }

    async fn e2e(&mut self, args: &BenchArgs) -> Result<(), Stop> {
        let out = E2e {
            client: &self.client,
            members: &self.members,
            req: self.job("bench-e2e"),
            jobs: args.e2e as usize,
            as_array: args.e2e_array,
            clients: self.max_clients,
            timeout: Duration::from_secs(args.timeout),
            tenant: &self.tenant,
            vcluster: &self.vcluster,
        }
        .run()
        .await?;
        if args.e2e_array {
            self.arrays.extend(out.ids.first());
        } else {
            self.singles.extend(&out.ids);
        }
        self.report.allocations += out.ids.len() as u64;
        self.note_errors("e2e", &out.submitted);
        check(&out.submitted, "e2e submit")?;
        let r = &out.row;
        if r.failed > 0 || r.cancelled > 0 {
            self.report.notes.push(format!(
                "e2e: {} failed and {} cancelled of {} jobs (`lattice status --all -A {}`)",
                r.failed, r.cancelled, r.jobs, self.tenant
            ));
        }
        if r.timed_out {
            self.report.notes.push(format!(
                "e2e: {} of {} jobs had not ended {}",
                r.unfinished,
                r.jobs,
                if interrupt::requested() {
                    "when interrupted".to_string()
                } else {
                    format!("after --timeout {}s", args.timeout)
                }
            ));
        }
        self.report.e2e = Some(out.row);
        Ok(())
    }

    fn note_errors(&mut self, what: &str, s: &Submitted) {
        if s.errors > 0 {
            self.report.notes.push(format!(
                "{what}: {} failed submissions; the first: {}",
                s.errors,
                s.first_error.as_deref().unwrap_or("?")
            ));
        }
    }

    /// Cancels what the bench created and left pending or running, and forgets it.
    pub async fn cleanup(&mut self) -> Result<(), Stop> {
        if self.singles.is_empty() && self.arrays.is_empty() {
            return Ok(());
        }
        let c = cancel_leftovers(
            &self.client,
            &self.singles,
            &self.arrays,
            Some(&self.tenant),
            self.max_clients,
        )
        .await?;
        self.singles.clear();
        self.arrays.clear();
        let total = self.report.cleanup.get_or_insert(CleanupRow {
            cancelled: 0,
            seconds: 0.0,
        });
        total.cancelled += c.cancelled;
        total.seconds += c.seconds;
        Ok(())
    }

    /// Adds the rows of the `--server-pid` processes (read now) and the final notes.
    pub async fn finish(&mut self) -> Result<(), Stop> {
        let after = self.read_procs()?;
        let allocations = self.report.allocations;
        self.report.servers = self
            .procs_before
            .0
            .iter()
            .zip(&after.0)
            .map(|((pid, before), (_, after))| {
                let cpu_seconds = self.cpu_seconds.get(pid).copied().unwrap_or(0.0);
                ServerRow {
                    pid: *pid,
                    rss_before_bytes: before.rss_bytes,
                    rss_after_bytes: after.rss_bytes,
                    peak_rss_bytes: after.peak_rss_bytes,
                    cpu_seconds,
                    cpu_seconds_per_1000_allocations: (allocations > 0)
                        .then(|| cpu_seconds * 1000.0 / allocations as f64),
                }
            })
            .collect();
        if !self.members.scrape().await.any() {
            self.report
                .notes
                .push("no member's /metrics could be read: no scheduling-cycle figures".into());
        }
        if interrupt::requested() {
            self.report
                .notes
                .push("interrupted: the phases after the current one did not run".into());
        }
        Ok(())
    }
}

/// Waits `d` (or until interrupted) while the scheduler runs its cycles over the queue.
async fn observe(d: Duration) {
    let until = Instant::now() + d;
    while !interrupt::requested() && Instant::now() < until {
        let left = until.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_millis(100))).await;
    }
}

fn cycle_row(phase: Phase, before: &Scrape, after: &Scrape, vcluster: &str) -> CycleRow {
    let h = after.cycles_since(before, vcluster);
    let ms = |q: f64| h.quantile(q).map(|s| s * 1000.0);
    CycleRow {
        phase: phase.name().into(),
        cycles: h.count() as u64,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        queue_depth: after.queue_depth(vcluster),
    }
}

/// Stops with the first error when nothing got through, or when the server refused the
/// request itself (a 4xx: every other submission would be refused too).
fn check(s: &Submitted, what: &str) -> Result<(), Stop> {
    match &s.first_error {
        Some(e) if s.refused || s.ids.is_empty() => Err(Stop::Failed(format!("{what}: {e}"))),
        _ => Ok(()),
    }
}
