//! Virtual nodes through the real binaries: `lattice server` plus `lattice agent --simulate
//! 200` give 200 ready nodes that run an array of 1,000 short simulated jobs to completion,
//! kill a job that outlives its walltime (`walltime`), and send one heartbeat per node per
//! interval (not one for all of them).

mod common;

use std::time::Instant;

use common::*;
use serde_json::{json, Value};

const NODES: usize = 200;

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn agent_metrics(agent: &Proc) -> String {
    http()
        .get(format!("{}/metrics", agent.url))
        .send()
        .and_then(|r| r.text())
        .expect("agent metrics")
}

#[test]
fn two_hundred_virtual_nodes_run_a_thousand_jobs() {
    let dir = tempdir();
    let server = start_server(&dir.path().join("server"), "127.0.0.1:0", &[]);
    let api = server.url.clone();
    let agent = spawn(
        &[
            "agent",
            "--server",
            &api,
            "--node-id",
            "sim",
            "--simulate",
            &NODES.to_string(),
            "--sim-groups",
            "4",
            "--sim-cpus",
            "32",
            "--listen",
            "127.0.0.1:0",
        ],
        &[("LATTICE_AGENT__HEARTBEAT_INTERVAL_SECONDS", "1")],
        "agent listening on ",
    );
    let up = Instant::now();
    wait_nodes_ready(&api, NODES);
    let ready_at = Instant::now();
    eprintln!(
        "{NODES} virtual nodes ready in {:.1}s",
        up.elapsed().as_secs_f64()
    );
    let nodes = get(&format!("{api}/api/v1/nodes"));
    let nodes = nodes["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), NODES);
    let sim7 = nodes.iter().find(|n| n["id"] == "sim-7").expect("sim-7");
    assert_eq!(sim7["cpus"], 32);
    assert!(
        sim7["features"]
            .as_array()
            .is_some_and(|f| f.contains(&json!("group=g3"))),
        "{sim7}"
    );

    // An array of 1,000 jobs of 50 ms each (`SIM_DURATION`: the control plane refuses
    // `LATTICE_*` names in a submission).
    let t0 = Instant::now();
    let array = submit(
        &api,
        json!({
            "command": ["true"],
            "array": "0-999",
            "walltime_seconds": 60,
            "env": {"SIM_DURATION": "0.05"},
        }),
    );
    let mut last = Value::Null;
    wait_for(120, "1,000 simulated jobs to complete", || {
        last = get(&format!("{api}/api/v1/arrays/{array}"));
        (last["states"]["completed"] == 1000).then_some(())
    });
    let took = t0.elapsed();
    eprintln!(
        "1,000 jobs of 50 ms on {NODES} virtual nodes completed in {:.2}s",
        took.as_secs_f64()
    );
    assert_eq!(last["size"], 1000, "{last}");

    // A job that would run longer than its walltime is killed at it.
    let long = submit(
        &api,
        json!({
            "command": ["sleep", "1000"],
            "walltime_seconds": 1,
            "env": {"SIM_DURATION": "30"},
        }),
    );
    let a = wait_state(&api, long, "failed", 30);
    assert_eq!(a["reason"], "walltime", "{a}");

    // Every node stayed up, and each heartbeats on its own: about one request per node per
    // second, plus one per report.
    let nodes = get(&format!("{api}/api/v1/nodes"));
    let ready = nodes["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["state"] == "ready")
        .count();
    assert_eq!(ready, NODES);
    let m = agent_metrics(&agent);
    let (secs, since_ready) = (up.elapsed().as_secs_f64(), ready_at.elapsed().as_secs_f64());
    let beats = metric(&m, "lattice_sim_heartbeats_total");
    let reports = metric(&m, "lattice_sim_exit_reports_delivered_total");
    eprintln!("{beats} heartbeats and {reports} exit reports in {secs:.1}s");
    assert!(reports >= 1001.0, "{m}");
    let n = NODES as f64;
    assert!(
        beats >= (since_ready - 1.0) * n && beats <= (secs + 1.0) * n + reports,
        "{beats} heartbeats in {secs:.1}s for {NODES} nodes\n{m}"
    );
    assert_eq!(metric(&m, "lattice_sim_ranks_running"), 0.0);
    drop(agent);
    drop(server);
}

#[test]
fn dev_simulate_is_a_cluster_of_virtual_nodes_in_one_command() {
    let dir = tempdir();
    let dev = spawn(
        &[
            "dev",
            "--api-addr",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--simulate",
            "50",
            "--sim-duration",
            "0.2",
            "--sim-gpus",
            "8",
        ],
        &[],
        "control plane : ",
    );
    let ep = dev.url.clone();
    wait_healthy(&ep);
    wait_nodes_ready(&ep, 50);
    let nodes = get(&format!("{ep}/api/v1/nodes"));
    let nodes = nodes["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 50);
    assert!(nodes.iter().any(|n| n["id"] == "dev-50"));
    assert!(nodes.iter().all(|n| n["gpus"]["count"] == 8), "{nodes:?}");
    assert!(
        dev.output_text()
            .contains("50 virtual node(s): dev-1 .. dev-50"),
        "{}",
        dev.output_text()
    );
    // A job on 10 nodes runs the default simulated duration; nothing ran for real, so no
    // job output was written.
    let id = submit(&ep, json!({"command": ["true"], "nodes": 10}));
    let a = wait_state(&ep, id, "completed", 30);
    assert_eq!(a["exit_code"], 0, "{a}");
    assert!(!dir.path().join("agent").exists());
    let (code, out, _) = cli(&ep, &["nodes"]);
    assert_eq!(code, 0);
    assert!(out.contains("dev-1") && out.contains("ready"), "{out}");
}
