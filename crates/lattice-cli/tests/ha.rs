//! A highly available control plane: real three-member clusters of `lattice server` processes
//! on loopback. Killing the leader loses no acknowledged write; members catch up (from the log
//! or by snapshot); a running job survives a leader change; membership changes under load.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::raft::*;
use common::*;
use serde_json::{json, Value};

fn all_allocations(url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut u = format!("{url}/api/v1/allocations?limit=1000");
        if let Some(c) = &cursor {
            u.push_str(&format!("&cursor={c}"));
        }
        let page = get(&u);
        out.extend(page["allocations"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// A submission answered 201.
#[derive(Debug)]
struct Ack {
    name: String,
    id: u64,
    client: usize,
    /// Index of the member that answered.
    member: usize,
}

/// Clients submitting continuously through all members; returns (name -> id) of every
/// submission answered 2xx.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Ack>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn start_load(urls: Vec<String>, clients: usize) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let threads = (0..clients)
        .map(|c| {
            let (stop, acked, urls) = (stop.clone(), acked.clone(), urls.clone());
            std::thread::spawn(move || {
                let mut headers = reqwest::header::HeaderMap::new();
                let bearer = format!("Bearer {}", &*common::ADMIN);
                headers.insert(reqwest::header::AUTHORIZATION, bearer.parse().unwrap());
                let http = reqwest::blocking::Client::builder()
                    .default_headers(headers)
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("c{c}-{i}");
                    let member = (c + i) % urls.len();
                    let url = &urls[member];
                    let body = json!({"name": name, "command": ["true"]});
                    let r = http
                        .post(format!("{url}/api/v1/allocations"))
                        .json(&body)
                        .send();
                    if let Ok(r) = r {
                        if r.status().as_u16() == 201 {
                            let v: Value = r.json().unwrap();
                            acked.lock().unwrap().push(Ack {
                                name,
                                id: v["id"].as_u64().unwrap(),
                                client: c,
                                member,
                            });
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect();
    Load {
        stop,
        acked,
        threads,
    }
}

impl Load {
    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn finish(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap()
    }
}

/// Every acknowledged submission is present exactly once, IDs are unique, and each client's
/// IDs increase in the order it was answered.
fn check_no_loss(url: &str, acked: &[Ack]) {
    let all = all_allocations(url);
    let mut by_name: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut ids = HashSet::new();
    for a in &all {
        assert!(
            ids.insert(a["id"].as_u64().unwrap()),
            "duplicate ID {}",
            a["id"]
        );
        by_name
            .entry(a["name"].as_str().unwrap().to_string())
            .or_default()
            .push(a["id"].as_u64().unwrap());
    }
    let mut last_per_client: BTreeMap<usize, u64> = BTreeMap::new();
    for Ack {
        name, id, client, ..
    } in acked
    {
        assert_eq!(
            by_name.get(name),
            Some(&vec![*id]),
            "acknowledged {name} (id {id}) must be present exactly once"
        );
        if let Some(prev) = last_per_client.insert(*client, *id) {
            assert!(*id > prev, "client {client}: id {id} after {prev}");
        }
    }
}

#[test]
fn killing_the_leader_under_load_loses_no_acknowledged_write_and_it_catches_up() {
    let dir = tempdir();
    let mut ms = three(dir.path(), &[]);
    let urls: Vec<String> = ms.iter().map(|m| m.url.clone()).collect();
    let load = start_load(urls.clone(), 8);
    wait_for(30, "some writes", || {
        (load.acked_count() >= 50).then_some(())
    });
    let li = leader_index(&ms);
    let dead_addr = ms[li].url.trim_start_matches("http://").to_string();
    ms[li].kill9();
    let survivors: Vec<String> = urls
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != li)
        .map(|(_, u)| u.clone())
        .collect();
    // A new leader is elected and writes flow again.
    wait_for(30, "a new leader", || {
        let l = status(&survivors[0])?["leader"].as_u64()?;
        (l != li as u64 + 1).then_some(())
    });
    let before = load.acked_count();
    wait_for(30, "writes after failover", || {
        (load.acked_count() >= before + 50).then_some(())
    });
    let acked = load.finish();
    // Followers forward writes: every member that stayed up acknowledged some.
    for (i, _) in urls.iter().enumerate().filter(|(i, _)| *i != li) {
        assert!(
            acked.iter().any(|a| a.member == i),
            "member {} acknowledged no write",
            i + 1
        );
    }
    check_no_loss(&survivors[0], &acked);
    check_no_loss(&survivors[1], &acked);

    // (b) The killed member restarts and catches up to the same applied index and state.
    let id = li as u64 + 1;
    let data = dir.path().join(format!("m{id}"));
    let id_s = id.to_string();
    let mut env = vec![SECRET];
    env.extend_from_slice(&FAST);
    let mut back = spawn(
        &[
            "server",
            "--node-id",
            &id_s,
            "--api-addr",
            &dead_addr,
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &env,
        "lattice server listening on ",
    );
    back.url = format!("http://{}", back.url);
    ms[li] = back;
    let s = wait_converged(&urls);
    assert!(s["applied_index"].as_u64().unwrap() > 0);
    check_no_loss(&urls[li], &acked);
}

#[test]
fn a_member_started_after_compaction_joins_by_snapshot_and_reads_are_linearizable_anywhere() {
    let dir = tempdir();
    let compact = [
        ("LATTICE_SERVER__SNAPSHOT_EVERY_ENTRIES", "5"),
        ("LATTICE_SERVER__LOG_ENTRIES_KEPT_AFTER_SNAPSHOT", "0"),
    ];
    let m1 = member(dir.path(), 1, "127.0.0.1:0", None, &compact);
    for i in 0..30 {
        submit(
            &m1.url,
            json!({"name": format!("pre{i}"), "command": ["true"]}),
        );
    }
    wait_for(30, "the log to be compacted", || {
        let s = status(&m1.url)?;
        (s["purged_index"].as_u64()? >= 20).then_some(())
    });
    let m2 = member(dir.path(), 2, "127.0.0.1:0", Some(&m1.url), &compact);
    wait_voters(&m1.url, 2);
    wait_converged(&[m1.url.clone(), m2.url.clone()]);
    wait_for(10, "snapshot install logged", || {
        m2.output_text()
            .contains("installed snapshot")
            .then_some(())
    });
    // A write through the follower is forwarded; a read right after it through the same
    // follower sees it (linearizable by default), and `stale=true` is accepted.
    let id = submit(
        &m2.url,
        json!({"name": "through-follower", "command": ["true"]}),
    );
    assert_eq!(id, 31);
    assert_eq!(allocation(&m2.url, id)["name"], "through-follower");
    assert_eq!(
        get(&format!("{}/api/v1/allocations/{id}?stale=true", m2.url))["id"],
        id
    );
}

#[test]
fn a_running_job_survives_a_leader_change_and_completes_once() {
    let dir = tempdir();
    let mut ms = three(
        dir.path(),
        &[("LATTICE_SERVER__NODE_DOWN_AFTER_SECONDS", "5")],
    );
    let all = ms
        .iter()
        .map(|m| m.url.clone())
        .collect::<Vec<_>>()
        .join(",");
    let work = dir.path().join("agent");
    let _agent = start_agent(&all, "w", 1, &work, &[]);
    wait_nodes_ready(&ms[0].url, 1);
    let marker = dir.path().join("runs");
    let script = format!(
        "echo run >> {m}\nsleep 4\necho done >> {m}\n",
        m = marker.display()
    );
    let id = submit(&ms[0].url, json!({"script": script}));
    wait_for(30, "the job to start", || {
        std::fs::read_to_string(&marker)
            .ok()
            .filter(|t| t.contains("run"))
    });
    let li = leader_index(&ms);
    ms[li].kill9();
    let alive = ms
        .iter()
        .enumerate()
        .find(|(i, _)| *i != li)
        .map(|(_, m)| m.url.clone())
        .unwrap();
    let a = wait_state(&alive, id, "completed", 60);
    assert_eq!(a["exit_code"], 0);
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "run\ndone\n",
        "the job ran exactly once"
    );
    // The node stayed up through the change (heartbeats reached the new leader).
    assert_eq!(get(&format!("{alive}/api/v1/nodes/w"))["state"], "ready");
}

#[test]
fn members_are_added_and_removed_while_writes_flow() {
    let dir = tempdir();
    let ms = three(dir.path(), &[]);
    let urls: Vec<String> = ms.iter().map(|m| m.url.clone()).collect();
    let load = start_load(vec![urls[0].clone(), urls[2].clone()], 4);
    wait_for(30, "some writes", || {
        (load.acked_count() >= 20).then_some(())
    });
    let m4 = member(dir.path(), 4, "127.0.0.1:0", Some(&urls[2]), &[]);
    wait_voters(&urls[0], 4);
    let (code, out, err) = cli(&urls[0], &["raft", "remove", "2"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_voters(&urls[0], 3);
    let before = load.acked_count();
    wait_for(30, "writes after the changes", || {
        (load.acked_count() >= before + 20).then_some(())
    });
    let acked = load.finish();
    let remaining = [urls[0].clone(), urls[2].clone(), m4.url.clone()];
    wait_converged(&remaining);
    for u in &remaining {
        check_no_loss(u, &acked);
    }
    let s = status(&urls[0]).unwrap();
    let ids: Vec<u64> = s["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 3, 4]);
    let (code, out, _) = cli(&urls[0], &["raft", "status"]);
    assert_eq!(code, 0);
    assert!(out.contains("leader") && out.contains("LAG"), "{out}");
}

#[test]
fn raft_rpcs_without_the_secret_are_refused() {
    let dir = tempdir();
    let m1 = member(dir.path(), 1, "127.0.0.1:0", None, &[]);
    let r = http()
        .post(format!("{}/raft/vote", m1.url))
        .body(vec![0u8; 16])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http()
        .post(format!("{}/raft/append", m1.url))
        .header("x-lattice-cluster-secret", "wrong")
        .body(vec![0u8; 16])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

/// Reserves `n` free loopback ports (bound and released; members bind them right after).
fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

#[test]
fn bootstrap_with_peers_forms_a_three_member_cluster() {
    let dir = tempdir();
    let ports = free_ports(3);
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=http://127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut env = vec![SECRET];
    env.extend_from_slice(&FAST);
    let ms: Vec<Proc> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let id = (i + 1).to_string();
            let addr = format!("127.0.0.1:{p}");
            let data = dir.path().join(format!("m{id}"));
            spawn(
                &[
                    "server",
                    "--node-id",
                    &id,
                    "--bootstrap",
                    "--peers",
                    &peers,
                    "--api-addr",
                    &addr,
                    "--data-dir",
                    data.to_str().unwrap(),
                ],
                &env,
                "lattice server listening on ",
            )
        })
        .collect();
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    wait_voters(&urls[0], 3);
    let id = wait_for(30, "a write", || {
        let (s, v) = call(
            "POST",
            &format!("{}/api/v1/allocations", urls[2]),
            Some(r#"{"command":["true"]}"#),
        );
        (s == 201).then(|| v["id"].as_u64().unwrap())
    });
    assert_eq!(id, 1);
    wait_converged(&urls);
    drop(ms);
}

#[test]
fn a_backup_restores_into_a_new_cluster() {
    let dir = tempdir();
    let m1 = member(dir.path(), 1, "127.0.0.1:0", None, &[]);
    for i in 0..5 {
        submit(
            &m1.url,
            json!({"name": format!("b{i}"), "command": ["true"]}),
        );
    }
    let before = wait_for(30, "the scheduler to settle", || {
        let v = all_allocations(&m1.url);
        v.iter().all(|a| a["reason"].is_string()).then_some(v)
    });
    let file = dir.path().join("backup.snap");
    let (code, out, err) = cli(
        &m1.url,
        &["raft", "snapshot", "save", file.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    drop(m1);
    let data = dir.path().join("restored");
    let mut env = vec![SECRET];
    env.extend_from_slice(&FAST);
    let mut p = spawn(
        &[
            "server",
            "--node-id",
            "7",
            "--api-addr",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--restore",
            file.to_str().unwrap(),
        ],
        &env,
        "lattice server listening on ",
    );
    p.url = format!("http://{}", p.url);
    wait_healthy(&p.url);
    wait_for(30, "the restored member to lead", || {
        (status(&p.url)?["leader"].as_u64()? == 7).then_some(())
    });
    assert_eq!(all_allocations(&p.url), before);
    assert_eq!(submit(&p.url, json!({"command": ["true"]})), 6);
    p.terminate(Duration::from_secs(15));
    // Restoring over existing state is refused.
    let (code, _, err) = {
        let out = std::process::Command::new(BIN)
            .args([
                "server",
                "--node-id",
                "7",
                "--api-addr",
                "127.0.0.1:0",
                "--data-dir",
                data.to_str().unwrap(),
                "--restore",
                file.to_str().unwrap(),
            ])
            .env(SECRET.0, SECRET.1)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_ne!(code, 0);
    assert!(err.contains("already holds Raft state"), "{err}");
}
