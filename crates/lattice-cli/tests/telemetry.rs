//! Telemetry against a real VictoriaMetrics (the Debian package `victoria-metrics`; the tests
//! fail, not skip, without it): a dev cluster whose agent pushes every second, a CPU-burning
//! job, and what VictoriaMetrics's query API then holds; an outage of several intervals that
//! loses no sample; and reading it back through the API, `lattice top` and `lattice nodes -o
//! wide`. VictoriaMetrics decoding the agent's requests is the independent check of the
//! remote-write encoding (protobuf + block snappy + headers).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

const VM_BIN: &str = "victoria-metrics";

/// A `victoria-metrics` process on 127.0.0.1, stopped on drop.
struct Vm {
    child: Option<Child>,
    port: u16,
    data: PathBuf,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Vm {
    fn start(data: &Path) -> Vm {
        let mut vm = Vm {
            child: None,
            port: free_port(),
            data: data.to_path_buf(),
        };
        vm.launch();
        vm
    }

    fn launch(&mut self) {
        let child = Command::new(VM_BIN)
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg(format!("-storageDataPath={}", self.data.display()))
            .arg("-retentionPeriod=1d")
            .arg("-search.latencyOffset=0s")
            .arg("-loggerLevel=ERROR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {VM_BIN} ({e}): install it with `apt-get install victoria-metrics` (scripts/test.sh does)")
            });
        self.child = Some(child);
        let url = format!("{}/health", self.url());
        wait_for(30, "VictoriaMetrics /health", || {
            let r = http().get(&url).send().ok()?;
            (r.status().as_u16() == 200).then_some(())
        });
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGTERM by PID and wait for the exit.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn flush(&self) {
        let _ = http()
            .get(format!("{}/internal/force_flush", self.url()))
            .send();
    }

    /// An instant query's result vector (after a flush, bypassing the cache).
    fn query(&self, promql: &str) -> Vec<Value> {
        self.flush();
        let v: Value = http()
            .get(format!("{}/api/v1/query", self.url()))
            .query(&[("query", promql), ("nocache", "1")])
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("query {promql}: {e}"));
        assert_eq!(v["status"], "success", "{promql}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The single value of an instant query, if it has one.
    fn value(&self, promql: &str) -> Option<f64> {
        let r = self.query(promql);
        assert!(r.len() <= 1, "{promql} has several series: {r:?}");
        r.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Raw (timestamp ms, value) samples of the series matching `selector`, from the export API.
    fn raw_samples(&self, selector: &str) -> Vec<(i64, f64)> {
        self.flush();
        let text = http()
            .get(format!("{}/api/v1/export", self.url()))
            .query(&[("match[]", selector)])
            .send()
            .and_then(|r| r.text())
            .expect("export");
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).expect("export line");
            let ts = v["timestamps"].as_array().expect("timestamps");
            let vals = v["values"].as_array().expect("values");
            for (t, x) in ts.iter().zip(vals) {
                out.push((t.as_i64().expect("ts"), x.as_f64().unwrap_or(f64::NAN)));
            }
        }
        out.sort_by_key(|(t, _)| *t);
        out
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.stop();
    }
}

fn start_dev(dir: &Path, vm: &Vm, nodes: u32) -> Proc {
    let nodes = nodes.to_string();
    let endpoint = vm.url();
    let dev = spawn(
        &[
            "dev",
            "--api-addr",
            "127.0.0.1:0",
            "--nodes",
            &nodes,
            "--data-dir",
            dir.to_str().unwrap(),
        ],
        &[
            ("LATTICE_TELEMETRY__TSDB_ENDPOINT", endpoint.as_str()),
            ("LATTICE_TELEMETRY__PROD_INTERVAL_SECONDS", "1"),
        ],
        "control plane : ",
    );
    wait_healthy(&dev.url);
    dev
}

/// The agent's URL, as its nodes registered it.
fn agent_url(api: &str) -> String {
    let v = get(&format!("{api}/api/v1/nodes"));
    v["nodes"][0]["agent_url"]
        .as_str()
        .expect("agent_url")
        .to_string()
}

/// One unlabelled sample of the agent's own `/metrics`.
fn agent_metric(agent: &str, name: &str) -> f64 {
    let text = http()
        .get(format!("{agent}/metrics"))
        .send()
        .and_then(|r| r.text())
        .expect("agent /metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn mem_total_bytes() -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("MemTotal");
    kb * 1024.0
}

/// Interfaces of this machine other than loopback.
fn interfaces() -> Vec<String> {
    std::fs::read_to_string("/proc/net/dev")
        .expect("net/dev")
        .lines()
        .filter_map(|l| Some(l.split_once(':')?.0.trim().to_string()))
        .filter(|n| n != "lo" && !n.contains('|'))
        .collect()
}

/// Physical whole disks of this machine.
fn disks() -> Vec<String> {
    std::fs::read_dir("/sys/block")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|t| !t.to_string_lossy().contains("/devices/virtual/"))
                })
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn node_and_job_telemetry_reaches_victoriametrics_and_reads_back() {
    let dir = tempdir();
    let vm = Vm::start(&dir.path().join("vm"));
    let dev = start_dev(&dir.path().join("dev"), &vm, 2);
    let ep = dev.url.clone();
    wait_nodes_ready(&ep, 2);

    // Every node series arrives, for both presented nodes, with the machine's real figures.
    let mem = mem_total_bytes();
    for node in ["dev-1", "dev-2"] {
        let got = wait_for(20, &format!("memory total of {node}"), || {
            vm.value(&format!(
                "lattice_node_memory_total_bytes{{node=\"{node}\"}}"
            ))
        });
        assert_eq!(got, mem, "MemTotal of /proc/meminfo");
        let used = vm
            .value(&format!(
                "lattice_node_memory_used_bytes{{node=\"{node}\"}}"
            ))
            .expect("memory used");
        assert!(used > 0.0 && used < mem, "{used}");
        let cpu = vm
            .value(&format!(
                "lattice_node_cpu_utilization_ratio{{node=\"{node}\"}}"
            ))
            .expect("cpu utilization");
        assert!((0.0..=1.0).contains(&cpu), "{cpu}");
        for (series, devices) in [
            ("lattice_node_network_receive_bytes_total", interfaces()),
            ("lattice_node_network_transmit_bytes_total", interfaces()),
            ("lattice_node_disk_read_bytes_total", disks()),
            ("lattice_node_disk_written_bytes_total", disks()),
        ] {
            let r = vm.query(&format!("{series}{{node=\"{node}\"}}"));
            let mut got: Vec<String> = r
                .iter()
                .map(|s| s["metric"]["device"].as_str().unwrap_or("").to_string())
                .collect();
            got.sort();
            let mut want = devices.clone();
            want.sort();
            assert_eq!(got, want, "{series}");
        }
        assert!(
            vm.query(&format!(
                "lattice_node_network_receive_bytes_total{{node=\"{node}\",device=\"lo\"}}"
            ))
            .is_empty(),
            "loopback is excluded"
        );
        // GPU series exist exactly when the host has an NVIDIA GPU.
        let gpus = vm.query(&format!(
            "lattice_node_gpu_utilization_ratio{{node=\"{node}\"}}"
        ));
        assert_eq!(
            !gpus.is_empty(),
            Path::new("/dev/nvidia0").exists(),
            "{gpus:?}"
        );
    }
    let before = vm
        .value("min_over_time(lattice_node_cpu_utilization_ratio{node=\"dev-1\"}[1m])")
        .expect("baseline");

    // A job that keeps every CPU of this machine busy.
    let ncpu = std::thread::available_parallelism().map_or(2, |n| n.get());
    let burn = format!("for i in $(seq {ncpu}); do (while :; do :; done) & done; wait");
    let body = serde_json::json!({
        "command": ["sh", "-c", burn],
        "tenant": "physics",
        "walltime_seconds": 600,
    });
    let id = submit(&ep, body);
    let a = wait_state(&ep, id, "running", 30);
    let node = a["assigned_nodes"][0].as_str().expect("node").to_string();
    let sel = format!("{{allocation=\"{id}\",node=\"{node}\"}}");

    // The job's own CPU seconds grow, at about the cores it burns.
    let first = wait_for(20, "the job's CPU seconds", || {
        vm.value(&format!("lattice_allocation_cpu_seconds_total{sel}"))
    });
    let later = wait_for(20, "the job's CPU seconds to grow by 2", || {
        let v = vm.value(&format!("lattice_allocation_cpu_seconds_total{sel}"))?;
        (v >= first + 2.0).then_some(v)
    });
    assert!(later > first);
    let series = vm.query(&format!("lattice_allocation_cpu_seconds_total{sel}"));
    let labels = &series[0]["metric"];
    assert_eq!(labels["tenant"], "physics", "{labels}");
    assert_eq!(labels["vcluster"], "default", "{labels}");
    let procs = vm
        .value(&format!("lattice_allocation_processes{sel}"))
        .expect("processes");
    assert!(procs > ncpu as f64, "sh and its {ncpu} loops: {procs}");
    let rss = vm
        .value(&format!("lattice_allocation_resident_memory_bytes{sel}"))
        .expect("rss");
    assert!(rss > 0.0 && rss < mem, "{rss}");

    // The node's CPU utilization rises while the job runs, and accounts for the job's use.
    let busy = wait_for(20, "node CPU utilization to rise", || {
        let v = vm.value(&format!(
            "max_over_time(lattice_node_cpu_utilization_ratio{{node=\"{node}\"}}[3s])"
        ))?;
        (v >= 0.85).then_some(v)
    });
    assert!(
        busy > before || before >= 0.85,
        "before {before}, during {busy}"
    );
    // Both windows must cover only busy samples; poll until they do (the job keeps burning).
    let (job_cores, node_cores) = wait_for(20, "node CPU use to cover the job's", || {
        let job = vm.value(&format!(
            "rate(lattice_allocation_cpu_seconds_total{sel}[5s])"
        ))?;
        let node = vm.value(&format!(
            "avg_over_time(lattice_node_cpu_utilization_ratio{{node=\"{node}\"}}[5s])"
        ))? * ncpu as f64;
        (job > 0.3 && node >= 0.8 * job).then_some((job, node))
    });
    assert!(
        job_cores > 0.3 && node_cores >= 0.8 * job_cores,
        "node {node_cores} job {job_cores}"
    );

    // Read back through the control plane: the API, `lattice top`, `lattice nodes -o wide`.
    let m = get(&format!("{ep}/api/v1/allocations/{id}/metrics"));
    assert_eq!(m["tsdb"], vm.url());
    let n = &m["nodes"][0];
    assert_eq!(n["node"], node.as_str());
    assert!(n["cpu_cores"].as_f64().expect("cpu_cores") > 0.3, "{m}");
    assert!(n["memory_bytes"].as_f64().expect("memory") > 0.0, "{m}");
    assert_eq!(n["node_memory_total_bytes"].as_f64(), Some(mem), "{m}");
    assert_eq!(
        n["gpus"].as_array().map(Vec::len),
        Some(gpus_on_host()),
        "{m}"
    );
    let (code, out, err) = cli(&ep, &["top", &id.to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with(&node))
        .unwrap_or_else(|| panic!("{out}"));
    let cores: f64 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(cores > 0.3, "{out}");
    let (code, out, err) = cli(&ep, &["nodes", "-o", "wide"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.lines().next().unwrap().contains("CPU%"), "{out}");
    let row = out.lines().find(|l| l.starts_with(&node)).unwrap();
    assert!(row.contains('%'), "{out}");
    assert!(err.is_empty(), "{err}");
    let (code, _, err) = cli(&ep, &["top", "999"]);
    assert_ne!(code, 0);
    assert!(err.contains("999") && err.contains("not found"), "{err}");

    // The agent's own health.
    let agent = agent_url(&ep);
    assert!(agent_metric(&agent, "lattice_telemetry_samples_sent_total") > 0.0);
    assert_eq!(
        agent_metric(&agent, "lattice_telemetry_samples_dropped_total"),
        0.0
    );
    let _ = cli(&ep, &["cancel", &id.to_string()]);
}

fn gpus_on_host() -> usize {
    (0..64)
        .take_while(|i| Path::new(&format!("/dev/nvidia{i}")).exists())
        .count()
}

#[test]
fn a_tsdb_outage_of_several_intervals_loses_no_sample() {
    let dir = tempdir();
    let mut vm = Vm::start(&dir.path().join("vm"));
    let dev = start_dev(&dir.path().join("dev"), &vm, 1);
    let ep = dev.url.clone();
    wait_nodes_ready(&ep, 1);
    let series = "lattice_node_memory_total_bytes{node=\"dev\"}";
    wait_for(20, "the first samples", || {
        (vm.raw_samples(series).len() >= 2).then_some(())
    });
    let agent = agent_url(&ep);
    // One collection has one sample of every series of the node (no job runs).
    let per_batch = vm.value("count({node=\"dev\"})").expect("series count");
    assert!(per_batch >= 3.0, "{per_batch}");

    let outage_start = now_ms();
    vm.stop();
    // The agent keeps collecting into its queue: wait until it holds 5 collections (4 whole
    // intervals) or more.
    wait_for(30, "five collections queued during the outage", || {
        let q = agent_metric(&agent, "lattice_telemetry_queue_length");
        (q >= 5.0 * per_batch
            && agent_metric(&agent, "lattice_telemetry_push_failures_total") >= 1.0)
            .then_some(())
    });
    vm.launch();
    let outage_end = now_ms();
    assert!(
        outage_end - outage_start >= 3900,
        "outage too short to mean anything"
    );

    // The backlog drains, oldest first, and new samples follow.
    wait_for(60, "the queue to drain", || {
        (agent_metric(&agent, "lattice_telemetry_queue_length") == 0.0
            && vm
                .raw_samples(series)
                .last()
                .is_some_and(|(t, _)| *t > outage_end))
        .then_some(())
    });
    let samples = vm.raw_samples(series);
    let stamps: Vec<i64> = samples.iter().map(|(t, _)| *t).collect();
    let across: Vec<i64> = stamps
        .iter()
        .copied()
        .filter(|t| *t >= outage_start - 3000 && *t <= outage_end + 3000)
        .collect();
    assert!(
        across.len() as i64 >= (outage_end - outage_start) / 1000 + 4,
        "samples around the outage: {across:?}"
    );
    for w in stamps.windows(2) {
        assert!(
            w[1] - w[0] < 1900,
            "a gap of {} ms between {} and {}: {stamps:?}",
            w[1] - w[0],
            w[0],
            w[1]
        );
    }
    assert!(stamps.first().unwrap() < &outage_start && stamps.last().unwrap() > &outage_end);
    assert!(samples.iter().all(|(_, v)| *v == mem_total_bytes()));
    assert_eq!(
        agent_metric(&agent, "lattice_telemetry_samples_dropped_total"),
        0.0
    );
    assert!(agent_metric(&agent, "lattice_telemetry_push_failures_total") >= 1.0);
}

#[test]
fn without_a_tsdb_the_read_endpoints_say_so() {
    let dir = tempdir();
    let dev = spawn(
        &[
            "dev",
            "--api-addr",
            "127.0.0.1:0",
            "--nodes",
            "1",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[],
        "control plane : ",
    );
    let ep = dev.url.clone();
    wait_nodes_ready(&ep, 1);
    let id = submit(&ep, serde_json::json!({"command": ["sleep", "300"]}));
    wait_state(&ep, id, "running", 30);
    let (status, v) = call(
        "GET",
        &format!("{ep}/api/v1/allocations/{id}/metrics"),
        None,
    );
    assert_eq!(status, 503, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("telemetry.tsdb_endpoint"),
        "{v}"
    );
    let (status, v) = call("GET", &format!("{ep}/api/v1/telemetry/nodes"), None);
    assert_eq!(
        (status, &v["configured"]),
        (200, &Value::Bool(false)),
        "{v}"
    );
    let (code, out, err) = cli(&ep, &["top", &id.to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("telemetry is not configured"), "{err}");
    // The node list still works, with dashes for utilization and no warning.
    let (code, out, err) = cli(&ep, &["nodes", "-o", "wide"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("CPU%") && err.is_empty(), "{out}{err}");
    let agent = agent_url(&ep);
    assert_eq!(
        agent_metric(&agent, "lattice_telemetry_samples_sent_total"),
        0.0
    );
    let _ = cli(&ep, &["cancel", &id.to_string()]);

    // An unreachable TSDB is a 502 naming it.
    drop(dev);
    let dir = tempdir();
    let port = free_port();
    let tsdb = format!("http://127.0.0.1:{port}");
    let dev = spawn(
        &[
            "dev",
            "--api-addr",
            "127.0.0.1:0",
            "--nodes",
            "1",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[("LATTICE_TELEMETRY__TSDB_ENDPOINT", tsdb.as_str())],
        "control plane : ",
    );
    let ep = dev.url.clone();
    wait_nodes_ready(&ep, 1);
    let id = submit(&ep, serde_json::json!({"command": ["sleep", "300"]}));
    wait_state(&ep, id, "running", 30);
    let (status, v) = call(
        "GET",
        &format!("{ep}/api/v1/allocations/{id}/metrics"),
        None,
    );
    assert_eq!(status, 502, "{v}");
    assert!(v["error"].as_str().unwrap().contains(&tsdb), "{v}");
    let (code, _, err) = cli(&ep, &["nodes", "-o", "wide"]);
    assert_eq!(code, 0);
    assert!(
        err.contains("warning: node utilization unavailable"),
        "{err}"
    );
    let _ = cli(&ep, &["cancel", &id.to_string()]);
}
