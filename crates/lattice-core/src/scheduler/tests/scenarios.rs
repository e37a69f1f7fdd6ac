//! Scenario tests on the pure scheduler in virtual time ([`sim`]): outcomes, not internals.
//!
//! - two tenants with shares 3:1 on a saturated vCluster converge to ~3:1 node-seconds;
//! - a 64-node job at the head of the queue starts at its reservation time while small jobs
//!   backfill around it;
//! - on the same trace, backfill keeps the cluster busier than FIFO (both figures printed);
//! - one vCluster's blocked queue does not block another's;
//! - arrays respect their cap, dependencies chain, quotas hold.

use super::sim::Sim;
use super::*;
use crate::array::parse_array;
use crate::dependency::parse_dependencies;
use crate::submit::SubmitOptions;
use crate::tenant::TenantChange;
use crate::vcluster::{Policy, VClusterChange};

fn job(tenant: &str, nodes: u32, walltime: u64) -> AllocationSpec {
    AllocationSpec {
        tenant: tenant.into(),
        walltime_seconds: walltime,
        ..spec(nodes)
    }
}

fn tenant(sim: &mut Sim, name: &str, change: TenantChange) {
    sim.command(Command::PutTenant {
        now: at(0),
        name: name.into(),
        change,
        create: true,
    });
}

/// Deterministic pseudo-random numbers (xorshift), so traces are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

#[test]
fn shares_of_3_to_1_converge_to_3_to_1_node_seconds() {
    let nodes = 16;
    let days = 2;
    let mut sim = Sim::new(nodes, |_| Vec::new(), 300);
    for (name, share) in [("alpha", 3), ("beta", 1)] {
        tenant(
            &mut sim,
            name,
            TenantChange {
                share: Some(share),
                ..Default::default()
            },
        );
    }
    // More work than the run can do for either tenant alone, so both queues stay full. Jobs
    // run 30-90 minutes (walltime 2 h), so nodes free up at scattered times.
    let mut rng = Rng(42);
    for i in 0..900 {
        for t in ["alpha", "beta"] {
            let run = rng.range(30, 90) * 60;
            let n = if i % 10 == 0 { 2 } else { 1 };
            sim.submit_at(0, job(t, n, 7200), Some(run));
        }
    }
    sim.run_until(days * 24 * 3600);
    let u = sim.usage();
    let (a, b) = (u["alpha"] as f64, u["beta"] as f64);
    let ratio = a / b;
    let total = nodes as f64 * days as f64 * 24.0 * 3600.0;
    println!(
        "fair share over {days} days on {nodes} nodes: alpha {:.0} node-h, beta {:.0} node-h, \
         ratio {ratio:.3}, utilization {:.1}%",
        a / 3600.0,
        b / 3600.0,
        100.0 * (a + b) / total
    );
    assert!(
        !sim.s.pending_ids().is_empty(),
        "still saturated at the end"
    );
    assert!((2.7..=3.3).contains(&ratio), "ratio {ratio}");
    assert!((a + b) / total > 0.9, "the vCluster stayed busy");
}

#[test]
fn a_64_node_job_starts_at_its_reservation_while_small_jobs_backfill() {
    let mut sim = Sim::new(80, |_| Vec::new(), 60);
    // 60 nodes busy with work ending every 2 minutes over two hours (runs = walltimes).
    for i in 0..60u64 {
        sim.submit_at(0, job("default", 1, 600 + 120 * i), None);
    }
    sim.run_until(0);
    assert_eq!(sim.s.running_ids().len(), 60);
    // The big job, top priority; then many small, short jobs at low priority.
    let big = AllocationSpec {
        priority: 10,
        ..job("default", 64, 3600)
    };
    sim.submit_at(60, big, None);
    let mut rng = Rng(7);
    for _ in 0..200 {
        let small = AllocationSpec {
            priority: 1,
            ..job("default", rng.range(1, 2) as u32, rng.range(5, 40) * 60)
        };
        sim.submit_at(60, small, None);
    }
    sim.run_until(60);
    let big_id = sim.submitted[60];
    let b = sim.s.allocation(big_id).unwrap();
    assert_eq!(b.state, AllocState::Pending);
    assert_eq!(b.reason.as_deref(), Some(REASON_RESOURCES));
    let reserved = Sim::secs(b.estimated_start.expect("the head has an estimated start"));
    // 64 nodes: the 20 idle ones and 44 of the busy ones, the 44th of which ends at
    // 600 + 120 * 43 seconds.
    assert_eq!(reserved, 600 + 120 * 43);

    sim.run_until(reserved + 60);
    let b = sim.s.allocation(big_id).unwrap();
    assert_eq!(b.state, AllocState::Running, "{b:?}");
    let started = Sim::secs(b.started_at.unwrap());
    println!("64-node job: reserved for {reserved}s, started at {started}s");
    assert_eq!(started, reserved, "started exactly at its reservation");
    // Small jobs ran in the meantime, around it.
    let backfilled = sim.submitted[61..]
        .iter()
        .filter(|id| {
            sim.s
                .allocation(**id)
                .unwrap()
                .started_at
                .is_some_and(|t| Sim::secs(t) < reserved)
        })
        .count();
    println!("{backfilled} small jobs started before it");
    assert!(backfilled >= 20, "{backfilled}");
}

/// A trace of mixed big and small jobs arriving over time; returns utilization.
fn utilization(policy: Policy) -> f64 {
    let nodes = 64;
    let mut sim = Sim::new(nodes, |_| Vec::new(), 60);
    sim.command(Command::PutVCluster {
        now: at(0),
        name: "default".into(),
        change: VClusterChange {
            policy: Some(policy),
            ..Default::default()
        },
        create: false,
    });
    let mut rng = Rng(2024);
    let mut t = 0;
    for _ in 0..400 {
        t += rng.range(0, 240);
        let big = rng.range(0, 9) < 2;
        let n = if big {
            rng.range(16, 48)
        } else {
            rng.range(1, 4)
        };
        let walltime = rng.range(10, 120) * 60;
        let run = walltime * rng.range(50, 100) / 100;
        sim.submit_at(t, job("default", n as u32, walltime), Some(run));
    }
    sim.run_to_completion(30 * 24 * 3600);
    let used: u64 = sim.usage().values().sum();
    used as f64 / (nodes as f64 * sim.now as f64)
}

#[test]
fn backfill_keeps_the_cluster_busier_than_fifo_on_the_same_trace() {
    let backfill = utilization(Policy::Backfill);
    let fifo = utilization(Policy::Fifo);
    println!(
        "utilization on the same trace: backfill {:.1}%, fifo {:.1}%",
        100.0 * backfill,
        100.0 * fifo
    );
    assert!(backfill > fifo + 0.05, "backfill {backfill} fifo {fifo}");
}

#[test]
fn a_blocked_vcluster_does_not_block_another() {
    let mut sim = Sim::new(8, |i| vec![if i < 4 { "a" } else { "b" }.to_string()], 60);
    for name in ["a", "b"] {
        sim.command(Command::PutVCluster {
            now: at(0),
            name: name.into(),
            change: VClusterChange {
                features: Some(vec![name.into()]),
                policy: Some(Policy::Fifo),
                ..Default::default()
            },
            create: true,
        });
    }
    let in_vc = |vc: &str, nodes: u32| AllocationSpec {
        vcluster: vc.into(),
        priority: 10,
        ..job("default", nodes, 600)
    };
    // `a` is full and its head cannot start for a long time; `b`'s work still starts.
    sim.submit_at(0, in_vc("a", 4), Some(600));
    sim.submit_at(0, in_vc("a", 4), None);
    sim.submit_at(0, in_vc("a", 1), None);
    sim.submit_at(0, in_vc("b", 2), None);
    sim.submit_at(0, in_vc("b", 1), None);
    sim.run_until(0);
    let ids = sim.submitted.clone();
    let state = |id: AllocId| sim.s.allocation(id).unwrap().state;
    assert_eq!(state(ids[0]), AllocState::Running);
    assert_eq!(state(ids[1]), AllocState::Pending);
    assert_eq!(
        sim.s.allocation(ids[2]).unwrap().reason.as_deref(),
        Some(REASON_RESOURCES),
        "fifo: behind the head, and no node is free"
    );
    assert_eq!(state(ids[3]), AllocState::Running);
    assert_eq!(state(ids[4]), AllocState::Running);
}

#[test]
fn arrays_dependencies_and_quotas_in_virtual_time() {
    let mut sim = Sim::new(16, |_| Vec::new(), 60);
    tenant(
        &mut sim,
        "capped",
        TenantChange {
            max_nodes: Some(Some(3)),
            ..Default::default()
        },
    );
    // An array of 20 with at most 4 at once, and a job that waits for all of it.
    sim.submit_with_at(
        0,
        job("default", 1, 300),
        SubmitOptions {
            array: Some(parse_array("0-19%4").unwrap()),
            ..Default::default()
        },
        None,
    );
    sim.submit_with_at(
        0,
        job("default", 1, 60),
        SubmitOptions {
            depends_on: parse_dependencies("afterok:1").unwrap(),
            ..Default::default()
        },
        None,
    );
    for _ in 0..6 {
        sim.submit_at(0, job("capped", 1, 600), None);
    }
    let mut max_array = 0;
    let mut max_capped = 0;
    let mut t = 0;
    while t < 3 * 3600 {
        sim.run_until(t);
        max_array = max_array.max(sim.s.array_tally(1)[AllocState::Running as usize]);
        max_capped = max_capped.max(sim.s.tenant_load("capped").nodes);
        t += 60;
    }
    assert_eq!(max_array, 4, "the array ran 4 at once, never more");
    assert_eq!(max_capped, 3, "the tenant ran 3 nodes at once, never more");
    let last = sim.s.allocation(21).unwrap();
    assert_eq!(last.state, AllocState::Completed);
    let array_end = sim
        .s
        .array_members(1)
        .map(|a| Sim::secs(a.finished_at.unwrap()))
        .max()
        .unwrap();
    assert!(Sim::secs(last.started_at.unwrap()) >= array_end);
    println!("array of 20 (cap 4) done at {array_end}s; its dependent started after it");
}
