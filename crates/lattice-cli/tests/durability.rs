//! Restarting the server keeps every committed allocation, node and the ID counter (through
//! snapshots and log replay); a silent agent gets its node marked `down`.

mod common;

use common::*;
use serde_json::json;

#[test]
fn restart_keeps_allocations_and_the_id_counter() {
    let dir = tempdir();
    let data = dir.path().join("server");
    // Snapshot every 3 entries so the restart goes through snapshot + log replay.
    let env = [
        ("LATTICE_SERVER__SNAPSHOT_EVERY_ENTRIES", "3"),
        ("LATTICE_SERVER__LOG_ENTRIES_KEPT_AFTER_SNAPSHOT", "1"),
    ];
    let mut server = start_server(&data, "127.0.0.1:0", &env);
    let api = server.url.clone();
    let ids: Vec<u64> = (0..7)
        .map(|i| {
            submit(
                &api,
                json!({"command": ["true"], "name": format!("job{i}")}),
            )
        })
        .collect();
    assert_eq!(ids, (1..=7).collect::<Vec<_>>());
    // Let the scheduler settle (it records why each job waits) so nothing moves under us.
    let before = wait_for(30, "every job to have a pending reason", || {
        let v = get(&format!("{api}/api/v1/allocations"));
        v["allocations"]
            .as_array()?
            .iter()
            .all(|a| a["reason"] == "unsatisfiable")
            .then_some(v)
    });
    wait_for(10, "a snapshot to be built", || {
        server
            .output_text()
            .contains("built snapshot")
            .then_some(())
    });
    server.kill9();

    let addr = api.trim_start_matches("http://");
    let server = start_server(&data, addr, &env);
    let after = get(&format!("{}/api/v1/allocations", server.url));
    assert_eq!(before, after, "allocations changed across a restart");
    let next = submit(&server.url, json!({"command": ["true"]}));
    assert_eq!(next, 8, "the ID counter must survive restarts");
    assert!(
        server.output_text().contains("built snapshot")
            || std::fs::metadata(data.join("lattice.redb")).is_ok(),
    );
}

#[test]
fn silent_agent_gets_its_node_marked_down_and_its_job_fails() {
    let dir = tempdir();
    let server = start_server(
        &dir.path().join("server"),
        "127.0.0.1:0",
        &[("LATTICE_SERVER__NODE_DOWN_AFTER_SECONDS", "2")],
    );
    let mut agent = start_agent(&server.url, "lonely", 1, &dir.path().join("agent"), &[]);
    wait_nodes_ready(&server.url, 1);
    let id = submit(&server.url, json!({"command": ["sleep", "300"]}));
    wait_state(&server.url, id, "running", 30);
    // SIGSTOP: the agent (and so its heartbeats) freezes, as on a hung or unplugged machine.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.pid()),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let n = wait_for(30, "node to be down", || {
        let n = get(&format!("{}/api/v1/nodes/lonely", server.url));
        (n["state"] == "down").then_some(n)
    });
    assert_eq!(n["allocations"], json!([]));
    let a = wait_state(&server.url, id, "failed", 10);
    assert_eq!(a["reason"], "node_lost");
    // The agent comes back: the node returns to service and the orphaned job is stopped.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.pid()),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    wait_nodes_ready(&server.url, 1);
    let id2 = submit(&server.url, json!({"command": ["true"]}));
    wait_state(&server.url, id2, "completed", 30);
    agent.terminate(std::time::Duration::from_secs(15));
}

#[test]
fn restarted_agent_keeps_its_nodes_drain_state() {
    let dir = tempdir();
    let server = start_server(&dir.path().join("server"), "127.0.0.1:0", &[]);
    let mut agent = start_agent(&server.url, "keep", 1, &dir.path().join("agent"), &[]);
    wait_nodes_ready(&server.url, 1);
    let (s, _) = call(
        "POST",
        &format!("{}/api/v1/nodes/keep/drain", server.url),
        None,
    );
    assert_eq!(s, 200);
    let first = get(&format!("{}/api/v1/nodes/keep", server.url))["registered_at"].clone();
    agent.terminate(std::time::Duration::from_secs(15));
    let _agent = start_agent(&server.url, "keep", 1, &dir.path().join("agent"), &[]);
    // Re-registration is visible as a newer registered_at; the drain flag must survive it.
    let n = wait_for(30, "re-registration", || {
        let n = get(&format!("{}/api/v1/nodes/keep", server.url));
        (n["registered_at"] != first).then_some(n)
    });
    assert_eq!(n["drain"], true, "{n}");
    assert_eq!(n["state"], "drained", "{n}");
}
