//! What `lattice bench` measured ([`Report`], also its `-o json` form) and its text tables.

use serde::Serialize;

use super::stats::Summary;

/// Every figure of one bench run. Sections of phases that did not run are absent in JSON.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub endpoint: String,
    /// Tenant and vCluster of the bench's allocations, as the server answered them.
    pub tenant: Option<String>,
    pub vcluster: Option<String>,
    pub phases: Vec<String>,
    /// One row per `--clients` level.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub submit: Vec<SubmitRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arrays: Option<ArraysRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e: Option<E2eRow>,
    /// Scheduling cycles observed by the leader during each phase.
    pub cycles: Vec<CycleRow>,
    /// One row per `--server-pid`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerRow>,
    /// Allocations the bench created (array tasks included).
    pub allocations: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<CleanupRow>,
    /// Errors, failed or cancelled jobs, timeouts: what makes a figure less than it seems.
    pub notes: Vec<String>,
}

/// Individual submissions by `clients` concurrent clients.
#[derive(Clone, Debug, Serialize)]
pub struct SubmitRow {
    pub clients: usize,
    /// Submissions answered 201.
    pub submitted: usize,
    pub errors: usize,
    /// From the first request sent to the last answer.
    pub seconds: f64,
    pub per_second: f64,
    /// Per request, as the client saw it.
    pub latency_ms: Option<Summary>,
}

/// Whole arrays, one submission each.
#[derive(Clone, Debug, Serialize)]
pub struct ArraysRow {
    pub arrays: usize,
    pub size: u32,
    /// Array tasks created.
    pub allocations: u64,
    pub errors: usize,
    pub seconds: f64,
    pub allocations_per_second: f64,
    /// Per array submission.
    pub latency_ms: Option<Summary>,
}

/// Trivial jobs submitted and waited for until they ended.
#[derive(Clone, Debug, Serialize)]
pub struct E2eRow {
    pub jobs: usize,
    /// `individual` or `array`.
    pub submitted_as: String,
    pub completed: usize,
    pub failed: usize,
    pub cancelled: usize,
    /// Not ended when `--timeout` ran out.
    pub unfinished: usize,
    pub timed_out: bool,
    /// From the first job's `submitted_at` to the last one's `finished_at`.
    pub seconds: f64,
    /// Completed jobs over `seconds`.
    pub jobs_per_second: Option<f64>,
    /// Jobs that started (have a `started_at`).
    pub started: usize,
    /// `started_at - submitted_at` of each started job.
    pub submit_to_running_ms: Option<Summary>,
    /// Started jobs over the time from the first `submitted_at` to the last `started_at`.
    pub placements_per_second: Option<f64>,
}

/// The leader's `lattice_scheduling_cycle_duration_seconds` over one phase.
#[derive(Clone, Debug, Serialize)]
pub struct CycleRow {
    pub phase: String,
    pub cycles: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// `lattice_scheduling_queue_depth` of the vCluster at the end of the phase.
    pub queue_depth: Option<u64>,
}

/// One control-plane process, before and after the bench.
#[derive(Clone, Debug, Serialize)]
pub struct ServerRow {
    pub pid: u32,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    /// VmHWM: the peak since the process started.
    pub peak_rss_bytes: u64,
    /// User plus system CPU seconds spent during the bench.
    pub cpu_seconds: f64,
    pub cpu_seconds_per_1000_allocations: Option<f64>,
}

/// Cancelling what the bench left pending or running (unless `--keep`).
#[derive(Clone, Debug, Serialize)]
pub struct CleanupRow {
    pub cancelled: u64,
    pub seconds: f64,
}

/// `0.42 ms`, `12.3 ms`, `1.25 s`.
pub fn fmt_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// `8.25/s`, `287.4/s`, `25000/s`.
pub fn fmt_rate(r: f64) -> String {
    if r < 10.0 {
        format!("{r:.2}/s")
    } else if r < 1000.0 {
        format!("{r:.1}/s")
    } else {
        format!("{r:.0}/s")
    }
}

/// `81.2 MiB`.
pub fn fmt_bytes(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Left-aligned first column, the others right-aligned, except a last `NOTE` column.
fn table(header: &[&str], rows: &[Vec<String>], left_last: bool) -> String {
    let n = header.len();
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&head).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = " ".repeat(widths[i] - cell.chars().count());
            if i > 0 {
                line.push_str("  ");
            }
            if i == 0 || (left_last && i == n - 1) {
                line.push_str(cell);
                line.push_str(&pad);
            } else {
                line.push_str(&pad);
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn latency_cells(s: &Option<Summary>) -> [String; 2] {
    [opt(s.map(|s| s.p50), fmt_ms), opt(s.map(|s| s.p99), fmt_ms)]
}

impl Report {
    /// The default output: the measures, then the server processes, then the notes.
    pub fn render(&self) -> String {
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut row = |measure: String, n: String, rate: String, lat: [String; 2], note: String| {
            let [p50, p99] = lat;
            rows.push(vec![measure, n, rate, p50, p99, note]);
        };
        let none = || ["-".to_string(), "-".to_string()];
        for s in &self.submit {
            let errors = if s.errors > 0 {
                plural(s.errors, "error", "errors")
            } else {
                String::new()
            };
            row(
                format!("submit, {}", plural(s.clients, "client", "clients")),
                s.submitted.to_string(),
                fmt_rate(s.per_second),
                latency_cells(&s.latency_ms),
                errors,
            );
        }
        if let Some(a) = &self.arrays {
            let mut note = "allocations/s; latency per array".to_string();
            if a.errors > 0 {
                note = format!("{note}; {}", plural(a.errors, "error", "errors"));
            }
            row(
                format!("arrays, {} x {}", a.arrays, a.size),
                a.allocations.to_string(),
                fmt_rate(a.allocations_per_second),
                latency_cells(&a.latency_ms),
                note,
            );
        }
        if let Some(e) = &self.e2e {
            row(
                "submit -> running".into(),
                e.started.to_string(),
                "-".into(),
                latency_cells(&e.submit_to_running_ms),
                String::new(),
            );
            row(
                "placements".into(),
                e.started.to_string(),
                opt(e.placements_per_second, fmt_rate),
                none(),
                "sustained: first submit to last start".into(),
            );
            let mut note = format!(
                "{} completed, {} as {}",
                e.completed,
                e.jobs,
                if e.submitted_as == "array" {
                    "one array"
                } else {
                    "individual submissions"
                }
            );
            for (n, what) in [(e.failed, "failed"), (e.cancelled, "cancelled")] {
                if n > 0 {
                    note.push_str(&format!("; {n} {what}"));
                }
            }
            if e.timed_out {
                note.push_str(&format!("; {} unfinished at the timeout", e.unfinished));
            }
            row(
                format!("end-to-end, {}", plural(e.jobs, "job", "jobs")),
                e.completed.to_string(),
                opt(e.jobs_per_second, fmt_rate),
                none(),
                note,
            );
        }
        for c in &self.cycles {
            let note = c
                .queue_depth
                .map(|q| format!("queue {q} at the end"))
                .unwrap_or_default();
            let during = match c.phase.as_str() {
                "cycle" => "no submissions".to_string(),
                p => format!("during {p}"),
            };
            row(
                format!("scheduling cycle, {during}"),
                c.cycles.to_string(),
                "-".into(),
                [opt(c.p50_ms, fmt_ms), opt(c.p99_ms, fmt_ms)],
                note,
            );
        }
        let mut out = table(&["MEASURE", "N", "RATE", "P50", "P99", "NOTE"], &rows, true);
        if !self.servers.is_empty() {
            let rows: Vec<Vec<String>> = self
                .servers
                .iter()
                .map(|s| {
                    vec![
                        s.pid.to_string(),
                        fmt_bytes(s.rss_before_bytes),
                        fmt_bytes(s.rss_after_bytes),
                        fmt_bytes(s.peak_rss_bytes),
                        format!("{:.2}", s.cpu_seconds),
                        opt(s.cpu_seconds_per_1000_allocations, |v| format!("{v:.3}")),
                    ]
                })
                .collect();
            out.push('\n');
            out.push_str(&table(
                &[
                    "SERVER PID",
                    "RSS BEFORE",
                    "RSS AFTER",
                    "RSS PEAK",
                    "CPU S",
                    "CPU S / 1000 ALLOCS",
                ],
                &rows,
                false,
            ));
        }
        if let Some(c) = self.cleanup.as_ref().filter(|c| c.cancelled > 0) {
            out.push_str(&format!(
                "\ncleanup: cancelled {} left pending or running ({:.1} s)\n",
                plural(c.cancelled as usize, "allocation", "allocations"),
                c.seconds
            ));
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lat(p50: f64, p99: f64) -> Option<Summary> {
        Some(Summary {
            count: 10,
            p50,
            p99,
            max: p99,
        })
    }

    fn sample() -> Report {
        Report {
            endpoint: "http://127.0.0.1:8080".into(),
            tenant: Some("default".into()),
            vcluster: Some("default".into()),
            phases: vec!["submit".into(), "arrays".into(), "e2e".into()],
            submit: vec![
                SubmitRow {
                    clients: 1,
                    submitted: 2000,
                    errors: 0,
                    seconds: 6.9,
                    per_second: 289.9,
                    latency_ms: lat(3.3, 8.02),
                },
                SubmitRow {
                    clients: 64,
                    submitted: 1998,
                    errors: 2,
                    seconds: 3.3,
                    per_second: 605.45,
                    latency_ms: lat(101.0, 1250.0),
                },
            ],
            arrays: Some(ArraysRow {
                arrays: 10,
                size: 1000,
                allocations: 10000,
                errors: 0,
                seconds: 0.4,
                allocations_per_second: 25000.0,
                latency_ms: lat(40.0, 45.5),
            }),
            e2e: Some(E2eRow {
                jobs: 200,
                submitted_as: "individual".into(),
                completed: 198,
                failed: 1,
                cancelled: 1,
                unfinished: 0,
                timed_out: false,
                seconds: 25.0,
                jobs_per_second: Some(7.92),
                started: 199,
                submit_to_running_ms: lat(512.0, 1020.0),
                placements_per_second: Some(8.1),
            }),
            cycles: vec![
                CycleRow {
                    phase: "submit".into(),
                    cycles: 41,
                    p50_ms: Some(2.1),
                    p99_ms: None,
                    queue_depth: Some(5996),
                },
                CycleRow {
                    phase: "cycle".into(),
                    cycles: 10,
                    p50_ms: Some(40.0),
                    p99_ms: Some(98.0),
                    queue_depth: Some(15996),
                },
            ],
            servers: vec![ServerRow {
                pid: 4242,
                rss_before_bytes: 30 * 1024 * 1024,
                rss_after_bytes: 80 * 1024 * 1024 + 512 * 1024,
                peak_rss_bytes: 85 * 1024 * 1024,
                cpu_seconds: 12.345,
                cpu_seconds_per_1000_allocations: Some(0.7716),
            }],
            allocations: 16000,
            cleanup: Some(CleanupRow {
                cancelled: 5990,
                seconds: 21.04,
            }),
            notes: vec!["e2e: 1 failed".into()],
        }
    }

    #[test]
    fn the_table_shows_every_measure_aligned() {
        let text = sample().render();
        let expected = "\
MEASURE                               N     RATE       P50      P99  NOTE
submit, 1 client                   2000  289.9/s   3.30 ms  8.02 ms
submit, 64 clients                 1998  605.5/s  101.0 ms   1.25 s  2 errors
arrays, 10 x 1000                 10000  25000/s   40.0 ms  45.5 ms  allocations/s; latency per array
submit -> running                   199        -  512.0 ms   1.02 s
placements                          199   8.10/s         -        -  sustained: first submit to last start
end-to-end, 200 jobs                198   7.92/s         -        -  198 completed, 200 as individual submissions; 1 failed; 1 cancelled
scheduling cycle, during submit      41        -   2.10 ms        -  queue 5996 at the end
scheduling cycle, no submissions     10        -   40.0 ms  98.0 ms  queue 15996 at the end

SERVER PID  RSS BEFORE  RSS AFTER  RSS PEAK  CPU S  CPU S / 1000 ALLOCS
4242          30.0 MiB   80.5 MiB  85.0 MiB  12.35                0.772

cleanup: cancelled 5990 allocations left pending or running (21.0 s)
note: e2e: 1 failed
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn json_has_the_documented_keys_and_omits_phases_not_run() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["submit"][1]["clients"], 64);
        assert_eq!(v["submit"][0]["latency_ms"]["p99"], 8.02);
        assert_eq!(v["arrays"]["allocations_per_second"], 25000.0);
        assert_eq!(v["e2e"]["submit_to_running_ms"]["p50"], 512.0);
        assert_eq!(v["e2e"]["placements_per_second"], 8.1);
        assert_eq!(v["cycles"][0]["p99_ms"], serde_json::Value::Null);
        assert_eq!(v["servers"][0]["cpu_seconds_per_1000_allocations"], 0.7716);
        assert_eq!(v["cleanup"]["cancelled"], 5990);

        let mut r = sample();
        r.submit.clear();
        r.arrays = None;
        r.e2e = None;
        r.servers.clear();
        r.cleanup = None;
        let v = serde_json::to_value(&r).unwrap();
        for key in ["submit", "arrays", "e2e", "servers", "cleanup"] {
            assert!(v.get(key).is_none(), "{key} in {v}");
        }
        let text = r.render();
        assert!(
            !text.contains("SERVER PID") && !text.contains("cleanup"),
            "{text}"
        );
    }

    #[test]
    fn units() {
        assert_eq!(fmt_ms(0.4242), "0.42 ms");
        assert_eq!(fmt_ms(12.34), "12.3 ms");
        assert_eq!(fmt_ms(1234.0), "1.23 s");
        assert_eq!(fmt_rate(8.254), "8.25/s");
        assert_eq!(fmt_rate(287.44), "287.4/s");
        assert_eq!(fmt_rate(25000.4), "25000/s");
        assert_eq!(fmt_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}
