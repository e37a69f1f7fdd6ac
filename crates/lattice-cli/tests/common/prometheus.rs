//! Helpers for tests that run the real Prometheus tools: `promtool` and a `prometheus`
//! server on a loopback port (killed on drop). Missing tools fail the test, never skip it.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{http, wait_for};

pub const MISSING: &str = "promtool/prometheus must be installed (Debian package `prometheus`; scripts/test.sh installs it)";

/// Runs `promtool ARGS` (stdin from `input`); returns (exit code, stdout + stderr).
pub fn promtool(args: &[&str], input: Option<&str>) -> (i32, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(MISSING);
    let mut stdin = child.stdin.take().unwrap();
    if let Some(text) = input {
        stdin.write_all(text.as_bytes()).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A running `prometheus`; SIGTERM on drop.
pub struct Prometheus {
    child: Child,
    pub url: String,
}

impl Prometheus {
    pub fn start(dir: &Path, config: &Path) -> Prometheus {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect(MISSING);
        let p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        wait_for(30, "prometheus ready", || {
            let r = http().get(format!("{}/-/ready", p.url)).send().ok()?;
            r.status().is_success().then_some(())
        });
        p
    }

    /// An instant query; panics unless Prometheus answers `success`.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let r: Value = http()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(r["status"], "success", "{promql}: {r}");
        match r["data"]["resultType"].as_str() {
            Some("vector") => r["data"]["result"].as_array().unwrap().clone(),
            Some("scalar") => vec![json!({"metric": {}, "value": r["data"]["result"]})],
            other => panic!("{promql}: result type {other:?}"),
        }
    }

    /// The value of a query that returns one sample.
    pub fn value(&self, promql: &str) -> Option<f64> {
        let v = self.query(promql);
        if v.len() != 1 {
            return None;
        }
        v[0]["value"][1].as_str()?.parse().ok()
    }

    pub fn alerts(&self) -> Vec<Value> {
        let r: Value = http()
            .get(format!("{}/api/v1/alerts", self.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        r["data"]["alerts"].as_array().unwrap().clone()
    }

    pub fn alert_state(&self, name: &str) -> Option<String> {
        self.alerts()
            .into_iter()
            .find(|a| a["labels"]["alertname"] == name)
            .map(|a| a["state"].as_str().unwrap().to_string())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `promql` (one sample) has the value `want`.
pub fn wait_value(prom: &Prometheus, secs: u64, promql: &str, want: f64) {
    let mut last = None;
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(secs, promql, || {
            last = prom.value(promql);
            (last == Some(want)).then_some(())
        })
    }));
    if res.is_err() {
        panic!("{promql}: wanted {want}, last {last:?}");
    }
}
