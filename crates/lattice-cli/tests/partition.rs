//! A real network partition of a three-member control plane. The test builds a private network
//! of Linux network namespaces (a switch namespace holding a bridge, one namespace per member
//! wired to it by a veth pair), runs each `lattice server` inside its own namespace so Raft
//! traffic crosses the bridge, and cuts one member off by taking its bridge port down.
//!
//! The test process stays in the root namespace and never routes to the private addresses: it
//! reaches each member through `ip netns exec <member> curl http://127.0.0.1:8080/...`, a
//! management path that the partition does not cut.
//!
//! Needs root, iproute2 (`ip netns`) and curl: without them the tests fail, they do not skip.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const API_PORT: u16 = 8080;
const ENV: [(&str, &str); 5] = [
    ("LATTICE_SERVER__CLUSTER_SECRET", "test-secret"),
    ("LATTICE_SERVER__RAFT_HEARTBEAT_INTERVAL_MS", "100"),
    ("LATTICE_SERVER__RAFT_ELECTION_TIMEOUT_MIN_MS", "500"),
    ("LATTICE_SERVER__RAFT_ELECTION_TIMEOUT_MAX_MS", "1000"),
    ("RUST_LOG", "info,openraft=warn"),
];
/// How long the minority side is probed with writes, at least, after the cut.
const MINORITY_WINDOW: Duration = Duration::from_secs(5);
/// How long the patient client waits for its write on the cut-off member.
const PATIENT_TIMEOUT: Duration = Duration::from_secs(45);
/// Namespaces are named `lattice-part-<pid>-<seq>-<role>`.
const NS_PREFIX: &str = "lattice-part-";

/// Runs `ip ARGS`; panics with its stderr when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (iproute2 is required): {e}"));
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// The private network: a switch namespace with bridge `br0`, and member namespaces whose
/// `eth0` is wired to bridge port `p<i>`. Member `i` (1-based) has address `10.199.<x>.<i>`.
/// Everything is created from inside these namespaces; the root namespace is never touched.
/// Dropping it deletes the namespaces (and with them the bridge and veth pairs).
struct Net {
    switch: String,
    members: Vec<String>,
    subnet: String,
}

impl Net {
    fn create(n: usize) -> Net {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        sweep_stale_namespaces();
        let pid = std::process::id();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("{NS_PREFIX}{pid}-{seq}");
        // Each run's switch is its own layer-2 domain; the subnet differs per run anyway so
        // that leftovers and logs of parallel runs are never confused.
        let subnet = format!("10.199.{}", (pid as usize + seq) % 250 + 1);
        let mut net = Net {
            switch: format!("{base}-sw"),
            members: Vec::new(),
            subnet,
        };
        let add = Command::new("ip")
            .args(["netns", "add", &net.switch])
            .output();
        match add {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "this test needs root and working network namespaces (`ip netns add` failed: {}); \
                 run it as root on a Linux host (CI does)",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("this test needs iproute2 (`ip`) and root: cannot run `ip`: {e}"),
        }
        ip(&["-n", &net.switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &net.switch, "link", "set", "br0", "up"]);
        for i in 1..=n {
            let ns = format!("{base}-m{i}");
            ip(&["netns", "add", &ns]);
            net.members.push(ns.clone());
            let port = format!("p{i}");
            #[rustfmt::skip]
            ip(&["-n", &net.switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
            ip(&["-n", &net.switch, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &net.switch, "link", "set", &port, "up"]);
            let addr = format!("{}/24", net.addr(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    /// Member `i`'s address on the cluster network (1-based).
    fn addr(&self, i: usize) -> String {
        format!("{}.{i}", self.subnet)
    }

    fn ns(&self, i: usize) -> &str {
        &self.members[i - 1]
    }

    /// Cuts member `i` off the cluster network: its bridge port goes down, so nothing it sends
    /// reaches the others and nothing reaches it. Its loopback (the management path) stays.
    fn cut(&self, i: usize) {
        ip(&["-n", &self.switch, "link", "set", &format!("p{i}"), "down"]);
    }

    fn heal(&self, i: usize) {
        ip(&["-n", &self.switch, "link", "set", &format!("p{i}"), "up"]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.members.iter().chain(std::iter::once(&self.switch)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Deletes namespaces left by earlier runs that were killed before they could clean up (their
/// PID is gone). Their servers died with them (parent-death signal).
fn sweep_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let pid: Option<i32> = rest.split('-').next().and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| !pid_alive(p)) {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

/// An HTTP answer from inside `ns`: `(status, JSON body or Null)`, or `None` when no answer
/// came within `timeout` (or the connection failed).
/// [`curl_once`] as the admin; a cluster without tokens is bootstrapped first.
fn curl(
    ns: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Option<(u16, Value)> {
    let r = curl_once(ns, method, path, body, timeout)?;
    let no_tokens = r.0 == 401
        && r.1["error"]
            .as_str()
            .is_some_and(|e| e.contains("no tokens yet"));
    if !no_tokens {
        return Some(r);
    }
    let boot = serde_json::json!({ "token": &*common::ADMIN });
    let (code, _) = curl_once(ns, "POST", "/api/v1/acl/bootstrap", Some(&boot), timeout)?;
    (code == 201 || code == 409).then_some(())?;
    curl_once(ns, method, path, body, timeout)
}

fn curl_once(
    ns: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Option<(u16, Value)> {
    let url = format!("http://127.0.0.1:{API_PORT}{path}");
    let secs = format!("{:.1}", timeout.as_secs_f64());
    let mut cmd = Command::new("ip");
    #[rustfmt::skip]
    cmd.args(["netns", "exec", ns, "curl", "-sS", "--noproxy", "*", "-m", &secs, "-X", method, "-o", "-", "-w", "\n%{http_code}"]);
    cmd.args(["-H", &format!("authorization: Bearer {}", &*common::ADMIN)]);
    if let Some(b) = body {
        cmd.args(["-H", "content-type: application/json", "--data-binary"])
            .arg(b.to_string());
    }
    let out = cmd
        .arg(&url)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip netns exec {ns} curl`: {e}"));
    if !out.status.success() {
        // 28: timed out; 7: connection refused; both mean "no answer".
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n')?;
    let code: u16 = code.trim().parse().ok()?;
    let v = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    Some((code, v))
}

fn submit_body(name: &str) -> Value {
    json!({"name": name, "command": ["true"]})
}

/// Three `lattice server` members, one per namespace, bootstrapped together with `--peers`.
/// Field order is drop order: processes, then the network, then the data directories.
struct Cluster {
    /// (what it is, the process), members first.
    procs: Vec<(String, Proc)>,
    net: Net,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start(env: &[(&str, &str)]) -> Cluster {
        let curl_ok = Command::new("curl").arg("--version").output();
        assert!(
            curl_ok.is_ok_and(|o| o.status.success()),
            "this test needs curl (it talks to each member from inside the member's namespace)"
        );
        let net = Net::create(3);
        let dir = tempdir();
        let peers = (1..=3)
            .map(|i| format!("{i}=http://{}:{API_PORT}", net.addr(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            procs: Vec::new(),
            net,
            dir,
        };
        for i in 1..=3 {
            let data = c.dir.path().join(format!("m{i}"));
            let p = start_member(&c.net, i, &peers, &data, env);
            c.procs.push((format!("member {i}"), p));
        }
        for i in 1..=3 {
            wait_for(30, &format!("member {i} to be healthy"), || {
                let (s, _) = c.call(i, "GET", "/healthz", None)?;
                (s == 200).then_some(())
            });
        }
        c
    }

    fn call(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Option<(u16, Value)> {
        curl(self.net.ns(i), method, path, body, Duration::from_secs(5))
    }

    fn status(&self, i: usize) -> Option<Value> {
        let (s, v) = curl(
            self.net.ns(i),
            "GET",
            "/api/v1/raft/status",
            None,
            Duration::from_secs(2),
        )?;
        (s == 200).then_some(v)
    }

    /// Waits until every member in `ids` names the same leader, one of `ids`, with three voters,
    /// in a term after `after_term`; returns (leader, term).
    fn wait_leader(&self, ids: &[usize], after_term: u64) -> (usize, u64) {
        wait_for(
            30,
            &format!("members {ids:?} to agree on a leader among them"),
            || {
                let ss: Vec<Value> = ids.iter().map(|i| self.status(*i)).collect::<Option<_>>()?;
                let leader = ss[0]["leader"].as_u64()? as usize;
                let term = ss[0]["term"].as_u64()?;
                let agree = ss.iter().all(|s| {
                    s["leader"].as_u64() == Some(leader as u64)
                        && s["term"].as_u64() == Some(term)
                        && s["members"].as_array().map(|m| m.len()) == Some(3)
                });
                (agree && ids.contains(&leader) && term > after_term).then_some((leader, term))
            },
        )
    }

    /// Waits until the members in `ids` have applied the same entries and hold the same
    /// state; returns (applied_index, state_digest).
    fn wait_converged(&self, ids: &[usize]) -> (u64, String) {
        wait_for(60, &format!("members {ids:?} to converge"), || {
            let ss: Vec<Value> = ids.iter().map(|i| self.status(*i)).collect::<Option<_>>()?;
            let first = &ss[0];
            let same = ss.iter().all(|s| {
                s["applied_index"] == first["applied_index"]
                    && s["state_digest"] == first["state_digest"]
            });
            let applied = first["applied_index"].as_u64()?;
            let digest = first["state_digest"].as_str()?.to_string();
            same.then_some((applied, digest))
        })
    }

    /// Submits through member `i` and requires 201; returns the allocation ID.
    fn submit(&self, i: usize, name: &str) -> u64 {
        let r = self.call(i, "POST", "/api/v1/allocations", Some(&submit_body(name)));
        match r {
            Some((201, v)) => v["id"].as_u64().expect("id"),
            other => panic!("submit {name} through member {i}: expected 201, got {other:?}"),
        }
    }

    /// Submits through member `i` until an attempt answers 201 (while, e.g., a leader is being
    /// elected), naming attempt `n` `{prefix}.{n}`: an attempt that got no answer may still have
    /// been applied, so no name is reused. Records every name tried in `tried`; returns
    /// (ID, name) of the acknowledged one.
    fn submit_until_acked(&self, i: usize, prefix: &str, tried: &mut Vec<String>) -> (u64, String) {
        let mut n = 0;
        wait_for(
            30,
            &format!("{prefix} to be acknowledged by member {i}"),
            || {
                let name = format!("{prefix}.{n}");
                n += 1;
                tried.push(name.clone());
                let r = self.call(i, "POST", "/api/v1/allocations", Some(&submit_body(&name)));
                match r {
                    Some((201, v)) => Some((v["id"].as_u64().expect("id"), name)),
                    _ => None,
                }
            },
        )
    }

    /// Every allocation name on member `i` (its local copy when `stale`).
    fn names(&self, i: usize, stale: bool) -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/allocations?limit=1000&stale={stale}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = match self.call(i, "GET", &path, None) {
                Some((200, v)) => v,
                other => panic!("list allocations on member {i}: {other:?}"),
            };
            for a in page["allocations"].as_array().expect("allocations") {
                out.push(a["name"].as_str().unwrap_or("").to_string());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        out.sort();
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (what, p) in &self.procs {
                let out = p.output_text();
                let lines: Vec<&str> = out.lines().collect();
                let tail = &lines[lines.len().saturating_sub(60)..];
                let n = tail.len();
                eprintln!("--- {what} (last {n} lines) ---\n{}", tail.join("\n"));
            }
        }
        // Teardown needs no graceful stop, and a member cut off could take a while to stop.
        for (_, p) in &mut self.procs {
            p.kill9();
        }
    }
}

/// Starts member `i` inside its namespace.
fn start_member(net: &Net, i: usize, peers: &str, data: &Path, env: &[(&str, &str)]) -> Proc {
    let id = i.to_string();
    let advertise = format!("http://{}:{API_PORT}", net.addr(i));
    let api_addr = format!("0.0.0.0:{API_PORT}");
    #[rustfmt::skip]
    let args = ["server", "--node-id", &id, "--bootstrap", "--peers", peers, "--api-addr", &api_addr,
        "--advertise-url", &advertise, "--data-dir", data.to_str().unwrap()];
    let mut p = spawn_in(net.ns(i), &args, env);
    p.url = advertise;
    p
}

/// Runs `lattice ARGS` inside namespace `ns` (`ip netns exec` execs it in place, so the
/// child's PID is lattice's), with the Raft settings in [`ENV`] plus `env`, output collected.
/// The process gets SIGKILL if the thread that started it (the test's thread) dies.
fn spawn_in(ns: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, BIN])
        .args(args)
        .envs(ENV)
        .envs(env.iter().copied())
        .env("LATTICE_AGENT__TOKEN", &*common::ADMIN)
        .env_remove("LATTICE_ENDPOINT")
        .env_remove("LATTICE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn ip netns exec {ns} lattice {args:?}: {e}"));
    let output = Arc::new(Mutex::new(Vec::new()));
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let out = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                out.lock().unwrap().push(line);
            }
        });
    }
    Proc {
        child,
        url: String::new(),
        output,
    }
}

/// A write attempted on the cut-off member: (name, status or None when no answer came in time).
type Attempt = (String, Option<u16>);

/// Writes attempted on the cut-off member from a background thread until stopped.
struct MinorityWriter {
    stop: Arc<AtomicBool>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    thread: std::thread::JoinHandle<()>,
}

impl MinorityWriter {
    fn start(ns: &str) -> MinorityWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let (s, a, ns) = (stop.clone(), attempts.clone(), ns.to_string());
        let thread = std::thread::spawn(move || {
            let mut k = 0;
            while !s.load(Ordering::Relaxed) {
                let name = format!("minority-{k}");
                let body = submit_body(&name);
                let r = curl(
                    &ns,
                    "POST",
                    "/api/v1/allocations",
                    Some(&body),
                    Duration::from_secs(2),
                );
                a.lock().unwrap().push((name, r.map(|(code, _)| code)));
                k += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        MinorityWriter {
            stop,
            attempts,
            thread,
        }
    }

    fn count(&self) -> usize {
        self.attempts.lock().unwrap().len()
    }

    fn finish(self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        Arc::try_unwrap(self.attempts)
            .unwrap()
            .into_inner()
            .unwrap()
    }
}

/// Which member the partition isolates.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cut {
    Leader,
    Follower,
}

fn partition_and_heal(which: Cut) {
    let c = Cluster::start(&[]);
    let all = [1, 2, 3];
    // Names of writes the test sent outside the minority (acknowledged or not), and the
    // acknowledged ones: (ID, name).
    let mut tried = Vec::new();
    let mut acked = Vec::new();

    // 1. The cluster forms and replicates a few writes to every member.
    let (leader, term) = c.wait_leader(&all, 0);
    for k in 0..6 {
        acked.push(c.submit_until_acked(all[k % 3], &format!("before-{k}"), &mut tried));
    }
    c.wait_converged(&all);

    // 2. Cut one member off.
    let cut = match which {
        Cut::Leader => leader,
        Cut::Follower => *all.iter().find(|i| **i != leader).unwrap(),
    };
    let majority: Vec<usize> = all.iter().copied().filter(|i| *i != cut).collect();
    eprintln!("leader {leader} (term {term}); cutting member {cut} off; majority {majority:?}");
    let cut_at = Instant::now();
    c.net.cut(cut);
    let minority = MinorityWriter::start(c.net.ns(cut));
    // And one write to the cut-off member from a patient client, likely still waiting when the
    // partition heals: (answer, when it came).
    let patient = {
        let ns = c.net.ns(cut).to_string();
        std::thread::spawn(move || {
            let body = submit_body("patient");
            let r = curl(
                &ns,
                "POST",
                "/api/v1/allocations",
                Some(&body),
                PATIENT_TIMEOUT,
            );
            (r, Instant::now())
        })
    };
    tried.push("patient".to_string());

    // 3. The majority has (or elects) a leader among itself and keeps accepting writes through
    //    both of its members: once it has acknowledged one, every later one is acknowledged.
    let after_term = if which == Cut::Leader { term } else { 0 };
    let (new_leader, new_term) = c.wait_leader(&majority, after_term);
    eprintln!(
        "majority leader {new_leader} (term {new_term}) after {:?}",
        cut_at.elapsed()
    );
    let mut majority_acked = vec![c.submit_until_acked(majority[0], "majority-0", &mut tried)];
    for k in 1..10 {
        let name = format!("majority-{k}");
        tried.push(name.clone());
        majority_acked.push((c.submit(majority[k % 2], &name), name));
    }
    acked.extend(majority_acked.iter().cloned());
    c.wait_converged(&majority);

    // 4. The cut-off member has none of it: its local copy lacks the majority's writes, and a
    //    linearizable read there is refused rather than answered from that stale copy.
    let (probe_id, probe_name) = majority_acked.last().unwrap().clone();
    let path = format!("/api/v1/allocations/{probe_id}");
    let stale = c.call(cut, "GET", &format!("{path}?stale=true"), None);
    assert_eq!(
        stale.as_ref().map(|r| r.0),
        Some(404),
        "the cut-off member's local copy must not have {probe_name} (id {probe_id}): {stale:?}"
    );
    let linear = curl(c.net.ns(cut), "GET", &path, None, Duration::from_secs(3));
    assert!(
        matches!(linear, None | Some((503, _))),
        "a linearizable read on the cut-off member must be refused (503) or unanswered, got {linear:?}"
    );
    if let Some(v) = c.status(cut) {
        eprintln!(
            "cut-off member's own view: state {}, leader {}, term {}, applied {}",
            v["state"], v["leader"], v["term"], v["applied_index"]
        );
    }

    // 5. For the whole window, no write attempted on the cut-off member was acknowledged.
    wait_for(60, "the minority probe window", || {
        (cut_at.elapsed() >= MINORITY_WINDOW && minority.count() >= 3).then_some(())
    });
    let attempts = minority.finish();
    let refused = attempts.iter().filter(|a| a.1 == Some(503)).count();
    let unanswered = attempts.iter().filter(|a| a.1.is_none()).count();
    eprintln!(
        "minority writes over {:?}: {} attempts, {refused} answered 503, {unanswered} unanswered",
        cut_at.elapsed(),
        attempts.len()
    );
    for (name, code) in &attempts {
        assert!(
            matches!(code, None | Some(503)),
            "write {name} on the cut-off member must be refused (503) or unanswered, got {code:?}"
        );
    }

    // 6. Heal. The former minority member serves writes again (forwarded to the leader).
    c.net.heal(cut);
    let healed_at = Instant::now();
    acked.push(c.submit_until_acked(cut, "after-heal", &mut tried));

    // The patient write is never acknowledged while the partition lasts. (A leader that was cut
    // off keeps it pending; once healed, its entry is replaced by the new leader's log and the
    // write is forwarded there, so it may be acknowledged after the heal.)
    let (patient, answered_at) = patient.join().unwrap();
    let patient_code = patient.as_ref().map(|r| r.0);
    eprintln!(
        "patient write: {patient_code:?} {}, {} the heal",
        patient.as_ref().map_or(&Value::Null, |r| &r.1["error"]),
        if answered_at < healed_at {
            "before"
        } else {
            "after"
        }
    );
    if let Some(code @ 200..=299) = patient_code {
        assert!(
            answered_at >= healed_at,
            "the cut-off member acknowledged a write ({code}) during the partition"
        );
    }

    // 7. All three converge to the same applied index and state.
    let (applied, digest) = c.wait_converged(&all);
    eprintln!(
        "converged at applied index {applied} ({digest}) {:?} after healing",
        healed_at.elapsed()
    );
    // (`wait_converged` compared the healed member's index and digest with the others'; the
    // cluster keeps working, e.g. the scheduler or a late forwarded write, so a later read may
    // only be further along.)
    let s = c.status(cut).expect("status of the healed member");
    assert!(s["applied_index"].as_u64() >= Some(applied), "{s}");

    // 8. The majority's writes are on the former minority member (linearizable and local
    //    reads), its copy lists exactly what the others list, every acknowledged write is there
    //    once, and nothing written on the minority side is anywhere.
    for (id, name) in &majority_acked {
        for stale in [false, true] {
            let r = c.call(
                cut,
                "GET",
                &format!("/api/v1/allocations/{id}?stale={stale}"),
                None,
            );
            match r {
                Some((200, a)) => assert_eq!(a["name"], name.as_str()),
                other => panic!("{name} (id {id}) on the healed member (stale={stale}): {other:?}"),
            }
        }
    }
    let names = c.names(cut, true);
    for i in &majority {
        assert_eq!(
            c.names(*i, true),
            names,
            "members {i} and {cut} list different allocations"
        );
    }
    for (id, name) in &acked {
        let n = names.iter().filter(|x| *x == name).count();
        assert_eq!(
            n, 1,
            "acknowledged write {name} (id {id}) must be present exactly once"
        );
    }
    let patients = names.iter().filter(|n| *n == "patient").count();
    match &patient {
        Some((201, v)) => {
            assert_eq!(
                patients, 1,
                "the acknowledged patient write must be present once"
            );
            let id = v["id"].as_u64().expect("id");
            let r = c.call(cut, "GET", &format!("/api/v1/allocations/{id}"), None);
            assert_eq!(
                r.map(|(s, a)| (s, a["name"].clone())),
                Some((200, json!("patient")))
            );
        }
        // Refused or unanswered: not acknowledged, so nothing to require beyond "not twice".
        _ => assert!(
            patients <= 1,
            "the patient write was applied {patients} times"
        ),
    }
    let leaked: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("minority-"))
        .collect();
    assert!(
        leaked.is_empty(),
        "writes attempted on the minority side were applied: {leaked:?}"
    );
    let unknown: Vec<&String> = names.iter().filter(|n| !tried.contains(n)).collect();
    assert!(
        unknown.is_empty(),
        "allocations nobody submitted: {unknown:?}"
    );
}

#[test]
fn a_leader_cut_off_from_the_majority_acknowledges_no_write_and_catches_up_after_healing() {
    partition_and_heal(Cut::Leader);
}

#[test]
fn a_follower_cut_off_from_the_majority_acknowledges_no_write_and_catches_up_after_healing() {
    partition_and_heal(Cut::Follower);
}

/// Reads allocation `id` through member `i` (linearizable); its state, or None without a 200.
fn alloc_state(c: &Cluster, i: usize, id: u64) -> Option<String> {
    match c.call(i, "GET", &format!("/api/v1/allocations/{id}"), None)? {
        (200, a) => Some(a["state"].as_str()?.to_string()),
        _ => None,
    }
}

/// A partition that cuts off only the old leader must not fail work on a node that stays
/// connected to the majority. The node's agent runs next to a majority member and talks only to
/// the majority; a job runs on it; the leader is cut off for longer than
/// `node_down_after_seconds`, then healed. The job must stay `running` and the node `ready`
/// throughout, on every member.
///
/// Guards two failure modes found with this test:
/// - during the partition, heartbeats forwarded by a follower to the silent old leader must fail
///   fast (connect timeout, short forward and heartbeat timeouts) so the agent retries and the
///   new leader keeps hearing the node;
/// - the cut-off leader, still leading in its own view, must neither judge nodes without a
///   quorum nor have a stale verdict re-sent to the new leader after healing (leader-only
///   loops never forward their proposals).
#[test]
fn a_partition_of_the_old_leader_does_not_fail_jobs_on_a_node_connected_to_the_majority() {
    const DOWN_AFTER: u64 = 5;
    let down_after = DOWN_AFTER.to_string();
    let mut c = Cluster::start(&[("LATTICE_SERVER__NODE_DOWN_AFTER_SECONDS", &down_after)]);
    let all = [1, 2, 3];
    let (leader, term) = c.wait_leader(&all, 0);
    let majority: Vec<usize> = all.iter().copied().filter(|i| *i != leader).collect();
    let a = majority[0];

    // An agent next to member `a`, talking to the majority members only.
    let servers = majority
        .iter()
        .map(|i| format!("http://{}:{API_PORT}", c.net.addr(*i)))
        .collect::<Vec<_>>()
        .join(",");
    let work = c.dir.path().join("agent");
    #[rustfmt::skip]
    let args = ["agent", "--server", &servers, "--node-id", "w", "--nodes", "1",
        "--listen", "127.0.0.1:0", "--work-dir", work.to_str().unwrap()];
    let agent_env = [
        ("LATTICE_AGENT__HEARTBEAT_INTERVAL_SECONDS", "1"),
        ("LATTICE_AGENT__KILL_GRACE_SECONDS", "2"),
    ];
    let agent = spawn_in(c.net.ns(a), &args, &agent_env);
    c.procs.push(("agent".into(), agent));
    wait_for(30, "node w to be ready", || {
        let (s, n) = c.call(a, "GET", "/api/v1/nodes/w", None)?;
        (s == 200 && n["state"] == "ready").then_some(())
    });
    let body = json!({"name": "long", "command": ["sleep", "600"]});
    let id = match c.call(a, "POST", "/api/v1/allocations", Some(&body)) {
        Some((201, v)) => v["id"].as_u64().expect("id"),
        other => panic!("submit: {other:?}"),
    };
    wait_for(30, "the job to run", || {
        (alloc_state(&c, a, id)? == "running").then_some(())
    });

    // Cut the leader off for longer than the failure detector's timeout.
    let cut_at = Instant::now();
    c.net.cut(leader);
    c.wait_leader(&majority, term);
    let window = Duration::from_secs(DOWN_AFTER + 3);
    wait_for(60, "the partition window to pass", || {
        let st = c.call(a, "GET", &format!("/api/v1/allocations/{id}"), None);
        if let Some((200, v)) = &st {
            assert_eq!(v["state"], "running", "during the partition: {v}");
        }
        (cut_at.elapsed() >= window).then_some(())
    });

    // Heal; for a while afterwards, and once converged, the job still runs on every member.
    c.net.heal(leader);
    let healed_at = Instant::now();
    wait_for(60, "the post-heal window to pass", || {
        for i in all {
            let st = c.call(
                i,
                "GET",
                &format!("/api/v1/allocations/{id}?stale=true"),
                None,
            );
            if let Some((200, v)) = &st {
                assert_eq!(v["state"], "running", "member {i} after the heal: {v}");
            }
        }
        (healed_at.elapsed() >= window).then_some(())
    });
    c.wait_converged(&all);
    for i in all {
        assert_eq!(
            alloc_state(&c, i, id).as_deref(),
            Some("running"),
            "member {i}"
        );
        let n = c.call(i, "GET", "/api/v1/nodes/w", None);
        assert_eq!(
            n.map(|(s, v)| (s, v["state"].clone())),
            Some((200, json!("ready")))
        );
    }
}
