//! `lattice bench` against the real binaries: a `lattice server` and a `lattice agent`
//! presenting 4 nodes, jobs running as real processes (`true`). Checks that the figures are
//! there and sane and that the bench cleans up after itself; the figures themselves are what
//! the bench is for, not what a test can pin down.

mod common;

use common::*;
use serde_json::Value;

fn positive(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x > 0.0 && x.is_finite(), "{what} = {x}");
    x
}

/// p50 <= p99 <= max, all finite and not negative; answers p50.
fn quantiles(v: &Value, what: &str) -> f64 {
    let (p50, p99, max) = (
        v["p50"].as_f64().unwrap_or(-1.0),
        v["p99"].as_f64().unwrap_or(-1.0),
        v["max"].as_f64().unwrap_or(-1.0),
    );
    assert!(
        0.0 <= p50 && p50 <= p99 && p99 <= max && max.is_finite(),
        "{what}: {v}"
    );
    p50
}

#[test]
fn bench_measures_a_real_cluster_and_cleans_up() {
    let dir = tempdir();
    let server = start_server(&dir.path().join("server"), "127.0.0.1:0", &[]);
    let _agent = start_agent(&server.url, "n", 4, &dir.path().join("agent"), &[]);
    wait_nodes_ready(&server.url, 4);
    let pid = server.pid().to_string();

    let args = [
        "bench",
        "--phases",
        "submit,e2e",
        "--clients",
        "1,4",
        "--submits",
        "50",
        "--e2e",
        "20",
        "-o",
        "json",
        "--server-pid",
        &pid,
    ];
    let (code, out, err) = cli(&server.url, &args);
    assert_eq!(code, 0, "lattice bench failed:\n{out}\n{err}");
    let v: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}\n{err}"));
    eprintln!("{out}");

    assert_eq!(v["phases"], serde_json::json!(["submit", "e2e"]));
    assert!(v.get("arrays").is_none(), "arrays did not run: {v}");
    assert_eq!(v["allocations"], 50 + 50 + 20);

    let submit = v["submit"].as_array().expect("submit rows");
    assert_eq!(submit.len(), 2, "{v}");
    for (row, clients) in submit.iter().zip([1, 4]) {
        assert_eq!(row["clients"], clients);
        assert_eq!(row["submitted"], 50, "{row}");
        assert_eq!(row["errors"], 0, "{row}");
        positive(&row["per_second"], "submissions/s");
        positive(&row["seconds"], "submit seconds");
        assert_eq!(row["latency_ms"]["count"], 50);
        positive(&row["latency_ms"]["max"], "submit latency");
        quantiles(&row["latency_ms"], "submit latency");
    }

    let e = &v["e2e"];
    assert_eq!(e["jobs"], 20, "{e}");
    assert_eq!(e["submitted_as"], "individual");
    assert_eq!(e["completed"], 20, "every e2e job completed: {e}");
    for k in ["failed", "cancelled", "unfinished"] {
        assert_eq!(e[k], 0, "{k}: {e}");
    }
    assert_eq!(e["timed_out"], false);
    assert_eq!(e["started"], 20);
    positive(&e["jobs_per_second"], "e2e jobs/s");
    positive(&e["placements_per_second"], "placements/s");
    assert_eq!(e["submit_to_running_ms"]["count"], 20);
    quantiles(&e["submit_to_running_ms"], "submit to running");
    positive(&e["seconds"], "e2e seconds");

    let cycles = v["cycles"].as_array().expect("cycle rows");
    let phases: Vec<&str> = cycles.iter().filter_map(|c| c["phase"].as_str()).collect();
    assert_eq!(phases, ["submit", "e2e"], "{v}");
    let e2e_cycles = &cycles[1];
    assert!(
        e2e_cycles["cycles"].as_u64().unwrap_or(0) >= 5,
        "20 jobs on 4 nodes take at least 5 placing cycles: {e2e_cycles}"
    );
    let p50 = positive(&e2e_cycles["p50_ms"], "cycle p50");
    assert!(p50 <= e2e_cycles["p99_ms"].as_f64().unwrap_or(0.0));
    assert_eq!(e2e_cycles["queue_depth"], 0, "nothing left queued");

    let s = &v["servers"][0];
    assert_eq!(s["pid"].as_i64(), Some(server.pid() as i64));
    positive(&s["rss_before_bytes"], "RSS before");
    let after = positive(&s["rss_after_bytes"], "RSS after");
    assert!(positive(&s["peak_rss_bytes"], "peak RSS") >= after, "{s}");
    positive(&s["cpu_seconds"], "server CPU seconds");
    positive(&s["cpu_seconds_per_1000_allocations"], "CPU per 1000");

    // What the submit phase left was cancelled before e2e: nothing of the bench is left
    // pending or running, and every submit-phase job either ran or was cancelled.
    let cancelled = v["cleanup"]["cancelled"].as_u64().expect("cleanup ran");
    assert!(cancelled <= 100, "{v}");
    for state in ["pending", "running"] {
        let page = get(&format!("{}/api/v1/allocations?state={state}", server.url));
        assert_eq!(page["allocations"], serde_json::json!([]), "{state}");
    }
    let all = get(&format!("{}/api/v1/allocations?limit=1000", server.url));
    let all = all["allocations"].as_array().expect("allocations");
    assert_eq!(all.len(), 120);
    let count = |name: &str, state: &str| {
        all.iter()
            .filter(|a| a["name"] == name && a["state"] == state)
            .count()
    };
    assert_eq!(count("bench-e2e", "completed"), 20);
    assert_eq!(
        count("bench-submit", "cancelled") as u64,
        cancelled,
        "cancelled by the cleanup"
    );
    assert_eq!(
        count("bench-submit", "completed") + count("bench-submit", "cancelled"),
        100
    );

    // The table, on a small run: the header, a row per level, the server table.
    let (code, out, err) = cli(
        &server.url,
        &[
            "bench",
            "--phases",
            "submit",
            "--clients",
            "2",
            "--submits",
            "5",
            "--server-pid",
            &pid,
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    eprintln!("{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("MEASURE") && lines[0].ends_with("NOTE"),
        "{out}"
    );
    assert!(lines[1].starts_with("submit, 2 clients"), "{out}");
    assert!(
        lines[2].starts_with("scheduling cycle, during submit"),
        "{out}"
    );
    assert!(out.contains("\nSERVER PID "), "{out}");
}

#[test]
fn bench_refuses_bad_input_before_sending_anything() {
    let (code, _, err) = cli("http://127.0.0.1:9", &["bench", "--phases", "nope"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = cli("http://127.0.0.1:9", &["bench", "--clients", "0"]);
    assert_eq!(code, 2, "{err}");
    // a process that does not exist
    let (code, _, err) = cli(
        "http://127.0.0.1:9",
        &["bench", "--server-pid", "4294967295"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--server-pid"), "{err}");
    // nothing listens there
    let (code, _, err) = cli("http://127.0.0.1:9", &["bench", "--phases", "submit"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
}
