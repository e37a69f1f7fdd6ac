//! Test harness: starts the real `lattice` binary (server, agent, dev) on 127.0.0.1 ephemeral
//! ports, talks HTTP to it, and waits on conditions with deadlines (never fixed sleeps).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod prometheus;
pub mod raft;

pub const BIN: &str = env!("CARGO_BIN_EXE_lattice");

/// This test process's admin token: every cluster a test starts is bootstrapped with it (see
/// [`ensure_bootstrapped`]), `call` and `cli` send it, and spawned agents use it.
pub static ADMIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("lat_test_{}_{nanos:x}", std::process::id())
});

/// Endpoints this process has bootstrapped (or found bootstrapped).
static BOOTSTRAPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// `scheme://host:port` of a URL.
pub fn base_of(url: &str) -> String {
    let url = url.split(',').next().unwrap_or(url).trim();
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let host = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{host}")
}

/// Makes sure the cluster behind `endpoint` has [`ADMIN`] as its bootstrap token: bootstraps
/// it unless already done (retrying while no leader is elected).
pub fn ensure_bootstrapped(endpoint: &str) {
    let base = base_of(endpoint);
    if BOOTSTRAPPED.lock().unwrap().contains(&base) {
        return;
    }
    let body = serde_json::json!({ "token": &*ADMIN }).to_string();
    let done = wait_for(30, &format!("ACL bootstrap of {base}"), || {
        let r = http()
            .post(format!("{base}/api/v1/acl/bootstrap"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send();
        match r {
            // Nothing listens there (a test of an unreachable endpoint): nothing to do.
            Err(e) if e.is_connect() => Some(false),
            Err(_) => None,
            Ok(r) => match r.status().as_u16() {
                201 | 409 => Some(true),
                _ => None,
            },
        }
    });
    if done {
        BOOTSTRAPPED.lock().unwrap().push(base);
    }
}

/// A running `lattice` process. Dropping it stops it (SIGTERM, then SIGKILL).
pub struct Proc {
    pub child: Child,
    /// The URL printed on start (API for servers, agent URL for agents).
    pub url: String,
    pub output: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for exit (SIGKILL after `grace`).
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
        None
    }

    pub fn output_text(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate(Duration::from_secs(15));
        }
    }
}

/// Spawns `lattice ARGS`, merging stdout and stderr into `output`, and waits until a line
/// contains `marker`; returns the text after the marker on that line (trimmed) as `url`.
pub fn spawn(args: &[&str], env: &[(&str, &str)], marker: &str) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("RUST_LOG", "info,openraft=warn")
        // Agents act with the admin token (admins may act for any node); `lattice dev`
        // bootstraps with LATTICE_TOKEN.
        .env("LATTICE_AGENT__TOKEN", &*ADMIN)
        .env("LATTICE_TOKEN", &*ADMIN)
        .env_remove("LATTICE_ENDPOINT")
        .env_remove("LATTICE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn lattice");
    let output = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let out = output.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                out.lock().unwrap().push(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(pos) = line.find(marker) {
                    let rest = line[pos + marker.len()..].trim();
                    let url = rest.split_whitespace().next().unwrap_or("").to_string();
                    return Proc { child, url, output };
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "lattice {args:?} did not print {marker:?} within 30s; output:\n{}",
                    output.lock().unwrap().join("\n")
                );
            }
        }
    }
}

/// Starts `lattice server --bootstrap` on `addr` (use `127.0.0.1:0` for an ephemeral port).
pub fn start_server(data_dir: &Path, addr: &str, env: &[(&str, &str)]) -> Proc {
    let mut p = spawn(
        &[
            "server",
            "--bootstrap",
            "--api-addr",
            addr,
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        env,
        "lattice server listening on ",
    );
    p.url = format!("http://{}", p.url);
    wait_healthy(&p.url);
    ensure_bootstrapped(&p.url);
    p
}

/// Starts `lattice agent` presenting `nodes` nodes named `name-1..` (or `name` when 1).
pub fn start_agent(
    server: &str,
    name: &str,
    nodes: u32,
    work_dir: &Path,
    env: &[(&str, &str)],
) -> Proc {
    let mut all_env = vec![
        ("LATTICE_AGENT__HEARTBEAT_INTERVAL_SECONDS", "1"),
        ("LATTICE_AGENT__KILL_GRACE_SECONDS", "2"),
    ];
    all_env.extend_from_slice(env);
    let nodes = nodes.to_string();
    spawn(
        &[
            "agent",
            "--server",
            server,
            "--node-id",
            name,
            "--nodes",
            &nodes,
            "--listen",
            "127.0.0.1:0",
            "--work-dir",
            work_dir.to_str().unwrap(),
        ],
        &all_env,
        "agent listening on ",
    )
}

/// A client that sends [`ADMIN`] as its bearer token (requests that set their own
/// `Authorization` header replace it).
pub fn http() -> reqwest::blocking::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", &*ADMIN).parse().unwrap(),
    );
    reqwest::blocking::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// (status, JSON body or Null), as the admin ([`ADMIN`]); a cluster that has no tokens yet
/// is bootstrapped first.
pub fn call(method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let (status, v) = call_as(Some(&ADMIN), method, url, body);
    if status == 401
        && v["error"]
            .as_str()
            .is_some_and(|e| e.contains("no tokens yet"))
    {
        ensure_bootstrapped(url);
        return call_as(Some(&ADMIN), method, url, body);
    }
    (status, v)
}

/// (status, JSON body or Null) with `token` as the bearer (none: no Authorization header).
pub fn call_as(token: Option<&str>, method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    // Not `http()`: that one sends the admin token by default.
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = c.request(m, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn get(url: &str) -> Value {
    let (s, v) = call("GET", url, None);
    assert_eq!(s, 200, "GET {url}: {v}");
    v
}

pub fn submit(api: &str, body: Value) -> u64 {
    let (s, v) = call(
        "POST",
        &format!("{api}/api/v1/allocations"),
        Some(&body.to_string()),
    );
    assert_eq!(s, 201, "submit {body}: {v}");
    v["id"].as_u64().expect("id")
}

pub fn allocation(api: &str, id: u64) -> Value {
    get(&format!("{api}/api/v1/allocations/{id}"))
}

/// Polls `f` every 50 ms until it returns Some, or panics after `secs` naming `what`.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `/healthz` answers, then bootstraps the cluster's ACLs with [`ADMIN`] in the
/// background (members of a cluster still forming have no leader yet).
pub fn wait_healthy(api: &str) {
    wait_for(30, "healthz", || {
        let r = http().get(format!("{api}/healthz")).send().ok()?;
        (r.status().as_u16() == 200).then_some(())
    });
    let api = api.to_string();
    std::thread::spawn(move || {
        let _ = std::panic::catch_unwind(|| ensure_bootstrapped(&api));
    });
}

/// Waits until allocation `id` is in `state` and returns it.
pub fn wait_state(api: &str, id: u64, state: &str, secs: u64) -> Value {
    let mut last = Value::Null;
    let what = format!("allocation {id} to be {state}");
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(secs, &what, || {
            // Not 200 (e.g. 503 while a new leader is elected): not yet.
            let (status, a) = call("GET", &format!("{api}/api/v1/allocations/{id}"), None);
            if status != 200 {
                return None;
            }
            let done = a["state"] == state;
            last = a.clone();
            done.then_some(a)
        })
    }));
    match res {
        Ok(v) => v,
        Err(_) => panic!("allocation {id} never became {state}; last seen: {last:#}"),
    }
}

/// Waits until the agent registered `n` ready nodes.
pub fn wait_nodes_ready(api: &str, n: usize) {
    wait_for(30, &format!("{n} ready nodes"), || {
        let v = get(&format!("{api}/api/v1/nodes"));
        let ready = v["nodes"]
            .as_array()?
            .iter()
            .filter(|x| x["state"] == "ready")
            .count();
        (ready >= n).then_some(())
    });
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("lattice-test-")
        .tempdir()
        .unwrap()
}

/// Runs the CLI (`lattice ARGS`) against `endpoint`; returns (exit code, stdout, stderr).
pub fn cli(endpoint: &str, args: &[&str]) -> (i32, String, String) {
    ensure_bootstrapped(endpoint);
    cli_as(&ADMIN, endpoint, args)
}

/// Runs the CLI with `token` as `LATTICE_TOKEN`; returns (exit code, stdout, stderr).
pub fn cli_as(token: &str, endpoint: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("LATTICE_TOKEN", token)
        .env("HOME", "/nonexistent-lattice-test-home")
        .env_remove("XDG_CONFIG_HOME")
        .env("LATTICE_ENDPOINT", endpoint)
        .output()
        .expect("run lattice");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether a process with this PID exists (and is not a zombie).
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            // state is the field after the parenthesised command name
            let state = s
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

pub fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

pub fn pathbuf(p: &Path, rest: &str) -> PathBuf {
    p.join(rest)
}

// ---- helpers for the scheduling-policy tests (policy_*.rs) ----

/// Starts `lattice agent` like [`start_agent`], presenting nodes with `features`.
pub fn start_agent_with_features(
    server: &str,
    name: &str,
    nodes: u32,
    work_dir: &Path,
    features: &[&str],
) -> Proc {
    let nodes = nodes.to_string();
    let mut args = vec![
        "agent",
        "--server",
        server,
        "--node-id",
        name,
        "--nodes",
        &nodes,
        "--listen",
        "127.0.0.1:0",
        "--work-dir",
        work_dir.to_str().unwrap(),
    ];
    for f in features {
        args.extend(["--feature", f]);
    }
    spawn(
        &args,
        &[
            ("LATTICE_AGENT__HEARTBEAT_INTERVAL_SECONDS", "1"),
            ("LATTICE_AGENT__KILL_GRACE_SECONDS", "2"),
        ],
        "agent listening on ",
    )
}

/// A server and agents for policy tests; fields drop in order: agents stop (and report)
/// before the server.
pub struct PolicyCluster {
    pub api: String,
    pub agents: Vec<Proc>,
    pub server: Proc,
    pub dir: tempfile::TempDir,
}

impl PolicyCluster {
    /// A server (with `server_env`) and one agent presenting `nodes` nodes `n-1..`.
    pub fn start(nodes: u32, server_env: &[(&str, &str)]) -> Self {
        let dir = tempdir();
        let server = start_server(&dir.path().join("server"), "127.0.0.1:0", server_env);
        let agent = start_agent(&server.url, "n", nodes, &dir.path().join("agent"), &[]);
        wait_nodes_ready(&server.url, nodes as usize);
        PolicyCluster {
            api: server.url.clone(),
            agents: vec![agent],
            server,
            dir,
        }
    }

    /// The CLI against this cluster; asserts it succeeded and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = cli(&self.api, args);
        assert_eq!(code, 0, "lattice {args:?} failed: {out} {err}");
        out
    }

    /// The CLI against this cluster; asserts it failed and returns (code, stderr).
    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let (code, out, err) = cli(&self.api, args);
        assert_ne!(code, 0, "lattice {args:?} succeeded: {out}");
        (code, err)
    }

    pub fn get(&self, path: &str) -> Value {
        get(&format!("{}{path}", self.api))
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        call(method, &format!("{}{path}", self.api), body)
    }

    /// Waits until allocation `id` has `reason` while pending, and returns it.
    pub fn wait_reason(&self, id: u64, reason: &str) -> Value {
        wait_for(
            30,
            &format!("allocation {id} to wait with reason {reason}"),
            || {
                let a = allocation(&self.api, id);
                (a["state"] == "pending" && a["reason"] == reason).then_some(a)
            },
        )
    }
}
