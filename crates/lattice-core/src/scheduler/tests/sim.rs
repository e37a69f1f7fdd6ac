//! A virtual-time simulator for scenario tests: the real state machine and the real
//! scheduler, driven by commands as the leader would send them. Submissions happen at given
//! times; a scheduling cycle runs every `tick` seconds; each started allocation ends (exit 0
//! on every node) after its scripted run time. Outcomes are read from the state.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::submit::SubmitOptions;

pub struct Sim {
    pub s: ClusterState,
    /// Seconds since `at(0)`.
    pub now: u64,
    pub tick: u64,
    /// Run time of each allocation once started (default: its walltime).
    runtime: HashMap<AllocId, u64>,
    /// End time -> allocations ending then.
    ends: BTreeMap<u64, Vec<AllocId>>,
    /// Submission time -> (spec, options, run time).
    arrivals: BTreeMap<u64, Vec<(AllocationSpec, SubmitOptions, Option<u64>)>>,
    /// Submission index -> IDs, in submission order.
    pub submitted: Vec<AllocId>,
    /// Busy node-seconds per tenant, counted at each end (and for running work at `report`).
    busy: BTreeMap<String, u64>,
}

impl Sim {
    /// `nodes` nodes named `n000`.. with the given features per node.
    pub fn new(nodes: usize, features: impl Fn(usize) -> Vec<String>, tick: u64) -> Self {
        let mut s = ClusterState::default();
        for i in 0..nodes {
            register(
                &mut s,
                NodeRegistration {
                    features: features(i),
                    ..reg(&format!("n{i:03}"))
                },
            );
        }
        Sim {
            s,
            now: 0,
            tick,
            runtime: HashMap::new(),
            ends: BTreeMap::new(),
            arrivals: BTreeMap::new(),
            submitted: Vec::new(),
            busy: BTreeMap::new(),
        }
    }

    pub fn command(&mut self, cmd: Command) -> CommandOutcome {
        apply(&mut self.s, cmd)
    }

    /// Queues a submission at `t` seconds; `runtime` defaults to the walltime.
    pub fn submit_at(&mut self, t: u64, spec: AllocationSpec, runtime: Option<u64>) {
        self.submit_with_at(t, spec, SubmitOptions::default(), runtime);
    }

    pub fn submit_with_at(
        &mut self,
        t: u64,
        spec: AllocationSpec,
        options: SubmitOptions,
        runtime: Option<u64>,
    ) {
        self.arrivals
            .entry(t)
            .or_default()
            .push((spec, options, runtime));
    }

    fn arrive(&mut self, t: u64) {
        for (spec, options, runtime) in self.arrivals.remove(&t).unwrap_or_default() {
            let first = self.s.next_allocation_id();
            let options = SubmitOptions {
                create_tenant: true,
                ..options
            };
            apply(
                &mut self.s,
                Command::Submit {
                    now: at(t),
                    spec: spec.clone(),
                    options,
                },
            );
            for id in first..self.s.next_allocation_id() {
                self.runtime
                    .insert(id, runtime.unwrap_or(spec.walltime_seconds));
                self.submitted.push(id);
            }
        }
    }

    fn finish(&mut self, t: u64) {
        for id in self.ends.remove(&t).unwrap_or_default() {
            let a = self.s.allocation(id).unwrap().clone();
            if a.state != AllocState::Running {
                continue;
            }
            let reports = a
                .assigned_nodes
                .iter()
                .map(|n| ExitReport {
                    run: 0,
                    allocation_id: id,
                    node_id: n.clone(),
                    outcome: ExitOutcome::Exited,
                    exit_code: Some(0),
                    signal: None,
                    message: None,
                })
                .collect();
            apply(
                &mut self.s,
                Command::ReportExits {
                    now: at(t),
                    reports,
                },
            );
            let ran = t - (a.started_at.unwrap().as_millis() - at(0).as_millis()) / 1000;
            *self.busy.entry(a.tenant.clone()).or_default() += ran * u64::from(a.nodes);
        }
    }

    /// One scheduling cycle at the current time; returns the plan.
    pub fn cycle(&mut self) -> Plan {
        let now = at(self.now);
        let plan = cycle(&mut self.s, now);
        for p in &plan.placements {
            let run = self.runtime.get(&p.allocation).copied().unwrap_or(0);
            self.ends
                .entry(self.now + run)
                .or_default()
                .push(p.allocation);
        }
        plan
    }

    /// Advances to `until` seconds: at each second with an event, ends, then arrivals; a
    /// cycle on every tick.
    pub fn run_until(&mut self, until: u64) {
        while self.now <= until {
            let t = self.now;
            self.finish(t);
            self.arrive(t);
            if t.is_multiple_of(self.tick) {
                self.cycle();
            }
            let next_tick = (t / self.tick + 1) * self.tick;
            let next_end = self.ends.keys().next().copied().unwrap_or(u64::MAX);
            let next_arrival = self.arrivals.keys().next().copied().unwrap_or(u64::MAX);
            self.now = next_tick.min(next_end).min(next_arrival).max(t + 1);
        }
    }

    /// Runs until nothing is pending or running (or `limit` seconds).
    pub fn run_to_completion(&mut self, limit: u64) {
        while self.now <= limit {
            let busy = !self.s.pending_ids().is_empty()
                || !self.s.running_ids().is_empty()
                || !self.arrivals.is_empty();
            if !busy {
                return;
            }
            let next = self.now + self.tick;
            self.run_until(next - 1);
        }
        panic!("work left at {limit}s");
    }

    /// Node-seconds used per tenant up to now (running work counted so far).
    pub fn usage(&self) -> BTreeMap<String, u64> {
        let mut u = self.busy.clone();
        for id in self.s.running_ids() {
            let a = self.s.allocation(*id).unwrap();
            let started = (a.started_at.unwrap().as_millis() - at(0).as_millis()) / 1000;
            *u.entry(a.tenant.clone()).or_default() +=
                self.now.saturating_sub(started) * u64::from(a.nodes);
        }
        u
    }

    /// Seconds since `at(0)` of a timestamp.
    pub fn secs(t: Timestamp) -> u64 {
        (t.as_millis() - at(0).as_millis()) / 1000
    }
}
