//! End to end through the real binaries: `lattice server` and `lattice agent` as separate
//! processes; jobs run as real processes and complete, fail, get cancelled or hit walltime.

mod common;

use common::*;
use serde_json::json;

// Fields drop in order: the agent stops (and reports) before its server.
struct Cluster {
    api: String,
    _agent: Proc,
    _server: Proc,
    _dir: tempfile::TempDir,
    work: std::path::PathBuf,
}

fn cluster(nodes: u32) -> Cluster {
    let dir = tempdir();
    let server = start_server(&dir.path().join("server"), "127.0.0.1:0", &[]);
    let work = dir.path().join("agent");
    let agent = start_agent(&server.url, "n", nodes, &work, &[]);
    wait_nodes_ready(&server.url, nodes as usize);
    Cluster {
        api: server.url.clone(),
        _agent: agent,
        _server: server,
        _dir: dir,
        work,
    }
}

#[test]
fn echo_hello_completes_with_its_output() {
    let c = cluster(1);
    let id = submit(&c.api, json!({"command": ["echo", "hello"]}));
    let a = wait_state(&c.api, id, "completed", 30);
    assert_eq!(a["exit_code"], 0);
    assert_eq!(a["assigned_nodes"], json!(["n"]));
    assert!(
        a["started_at"].is_string() && a["finished_at"].is_string(),
        "{a}"
    );
    let (s, logs) = call(
        "GET",
        &format!("{}/api/v1/allocations/{id}/logs?stream=stdout", c.api),
        None,
    );
    assert_eq!(s, 200);
    assert_eq!(logs, serde_json::Value::String("hello\n".into()));
}

#[test]
fn failing_command_reports_its_exit_code_and_stderr() {
    let c = cluster(1);
    let id = submit(&c.api, json!({"script": "echo oops >&2\nexit 3\n"}));
    let a = wait_state(&c.api, id, "failed", 30);
    assert_eq!(a["exit_code"], 3);
    assert_eq!(a["reason"], "exit_code");
    let (_, err) = call(
        "GET",
        &format!("{}/api/v1/allocations/{id}/logs?stream=stderr", c.api),
        None,
    );
    assert_eq!(err, serde_json::Value::String("oops\n".into()));
}

#[test]
fn job_environment_names_its_nodes_and_rank() {
    let c = cluster(2);
    let id = submit(
        &c.api,
        json!({"nodes": 2, "script": "echo \"$LATTICE_ALLOCATION_ID $LATTICE_NODE_ID $LATTICE_NODES $LATTICE_NODE_RANK $GREETING\"", "env": {"GREETING": "hi"}}),
    );
    let a = wait_state(&c.api, id, "completed", 30);
    assert_eq!(a["assigned_nodes"], json!(["n-1", "n-2"]));
    for (rank, node) in ["n-1", "n-2"].iter().enumerate() {
        let (_, out) = call(
            "GET",
            &format!("{}/api/v1/allocations/{id}/logs?node={node}", c.api),
            None,
        );
        assert_eq!(
            out,
            serde_json::Value::String(format!("{id} {node} n-1,n-2 {rank} hi\n"))
        );
    }
}

#[test]
fn cancel_kills_the_whole_process_group() {
    let c = cluster(1);
    let pids = c.work.join("pids");
    let script = format!(
        "sleep 300 &\necho $! > {p}.tmp\necho $$ >> {p}.tmp\nmv {p}.tmp {p}\nwait\n",
        p = pids.display()
    );
    let id = submit(&c.api, json!({"script": script}));
    wait_state(&c.api, id, "running", 30);
    let pids: Vec<i32> = wait_for(30, "job to write its pids", || {
        let text = std::fs::read_to_string(&pids).ok()?;
        let v: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        (v.len() == 2).then_some(v)
    });
    assert!(pids.iter().all(|p| pid_alive(*p)));
    let (s, v) = call(
        "DELETE",
        &format!("{}/api/v1/allocations/{id}", c.api),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "cancelled");
    wait_for(30, "the job's processes to be gone", || {
        pids.iter().all(|p| !pid_alive(*p)).then_some(())
    });
    // The node is released once the agent reports the processes gone.
    wait_for(30, "node to be empty", || {
        let n = get(&format!("{}/api/v1/nodes/n", c.api));
        n["allocations"]
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    });
    // Cancelling again is a conflict, not a change.
    let (s, v) = call(
        "DELETE",
        &format!("{}/api/v1/allocations/{id}", c.api),
        None,
    );
    assert_eq!(s, 409, "{v}");
}

#[test]
fn walltime_kills_and_fails_with_reason_walltime() {
    let c = cluster(1);
    let id = submit(
        &c.api,
        json!({"command": ["sleep", "300"], "walltime_seconds": 1}),
    );
    let a = wait_state(&c.api, id, "failed", 30);
    assert_eq!(a["reason"], "walltime", "{a}");
}

#[test]
fn drained_nodes_get_no_work_and_pending_jobs_say_why() {
    let c = cluster(1);
    let (s, n) = call(
        "POST",
        &format!("{}/api/v1/nodes/n/drain", c.api),
        Some(r#"{"reason":"maintenance"}"#),
    );
    assert_eq!(s, 200, "{n}");
    assert_eq!(n["state"], "drained");
    let id = submit(&c.api, json!({"command": ["true"]}));
    let a = wait_for(30, "a pending reason", || {
        let a = allocation(&c.api, id);
        a["reason"].is_string().then_some(a)
    });
    assert_eq!(a["state"], "pending");
    assert_eq!(a["reason"], "resources");
    let big = submit(&c.api, json!({"command": ["true"], "nodes": 5}));
    let b = wait_for(30, "an unsatisfiable reason", || {
        let a = allocation(&c.api, big);
        (a["reason"] == "unsatisfiable").then_some(a)
    });
    assert!(
        b["reason_detail"]
            .as_str()
            .unwrap()
            .contains("needs 5 nodes"),
        "{b}"
    );
    let (s, _) = call("POST", &format!("{}/api/v1/nodes/n/undrain", c.api), None);
    assert_eq!(s, 200);
    wait_state(&c.api, id, "completed", 30);
    assert_eq!(allocation(&c.api, big)["state"], "pending");
}

/// The work long-poll as an agent of several nodes uses it: `changed_only` answers name and
/// cover only the nodes whose work changed after `known_revision`; a complete answer (the
/// default) covers them all.
#[test]
fn work_polls_answer_only_the_nodes_that_changed() {
    let dir = tempdir();
    let server = start_server(&dir.path().join("server"), "127.0.0.1:0", &[]);
    let api = server.url.clone();
    for n in ["w-1", "w-2", "w-3"] {
        let reg = json!({"id": n, "hostname": n, "cpus": 1, "memory_bytes": 1,
                         "agent_url": "http://127.0.0.1:1"});
        let (st, v) = call(
            "POST",
            &format!("{api}/api/v1/agent/register"),
            Some(&reg.to_string()),
        );
        assert_eq!(st, 200, "{v}");
    }
    let poll = |body: serde_json::Value| {
        let (st, v) = call(
            "POST",
            &format!("{api}/api/v1/agent/work"),
            Some(&body.to_string()),
        );
        assert_eq!(st, 200, "{v}");
        v
    };
    let all = json!(["w-1", "w-2", "w-3"]);
    let first = poll(json!({"nodes": all, "changed_only": true, "wait_ms": 0}));
    assert_eq!(
        first["changed_nodes"], all,
        "every node is new to this agent: {first}"
    );
    let known = first["revision"].as_u64().unwrap();

    // A held poll answers with the one node the placement changed.
    let held = {
        let api = api.clone();
        let all = all.clone();
        std::thread::spawn(move || {
            call(
                "POST",
                &format!("{api}/api/v1/agent/work"),
                Some(
                    &json!({"nodes": all, "known_revision": known, "wait_ms": 20000,
                            "changed_only": true})
                    .to_string(),
                ),
            )
        })
    };
    let id = submit(&api, json!({"command": ["true"], "walltime_seconds": 60}));
    let job = wait_state(&api, id, "running", 30);
    let placed = job["assigned_nodes"][0].as_str().unwrap().to_string();
    let (st, v) = held.join().unwrap();
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["changed_nodes"], json!([placed]), "{v}");
    let assignments = v["assignments"].as_array().unwrap();
    assert_eq!(assignments.len(), 1, "{v}");
    assert_eq!(assignments[0]["allocation_id"], id);
    assert_eq!(assignments[0]["node_id"], placed.as_str());
    assert_eq!(assignments[0]["desired"], "run");
    let revision = v["revision"].as_u64().unwrap();
    assert!(revision > known, "{v}");

    // Nothing changed since: the poll waits out its time and covers no node.
    let quiet = poll(
        json!({"nodes": all, "known_revision": revision, "wait_ms": 300,
                            "changed_only": true}),
    );
    assert_eq!(quiet["changed_nodes"], json!([]), "{quiet}");
    assert_eq!(quiet["assignments"], json!([]), "{quiet}");
    assert_eq!(quiet["revision"].as_u64(), Some(revision));

    // Without `changed_only` the answer is complete, whatever the known revision.
    let full = poll(json!({"nodes": all, "known_revision": revision, "wait_ms": 0}));
    assert!(full.get("changed_nodes").is_none(), "{full}");
    assert_eq!(full["assignments"].as_array().unwrap().len(), 1, "{full}");
}
