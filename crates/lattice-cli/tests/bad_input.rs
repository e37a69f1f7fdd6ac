//! Bad input never crashes the server and never changes state: each answer is a 4xx with a
//! JSON body `{"error", "detail"}` naming what is wrong.

mod common;

use common::*;
use serde_json::json;

#[test]
fn bad_requests_are_refused_with_clear_errors_and_change_nothing() {
    let dir = tempdir();
    let server = start_server(&dir.path().join("server"), "127.0.0.1:0", &[]);
    let api = server.url.clone();
    let first = submit(&api, json!({"command": ["true"]}));
    let before = get(&format!("{api}/api/v1/allocations"));
    let allocs = format!("{api}/api/v1/allocations");

    let cases: Vec<(&str, String, Option<String>, u16, &str)> = vec![
        (
            "POST",
            allocs.clone(),
            Some("{not json".into()),
            400,
            "malformed JSON",
        ),
        ("POST", allocs.clone(), Some("".into()), 400, "empty"),
        (
            "POST",
            allocs.clone(),
            Some(r#"{"command":["x"],"nodez":2}"#.into()),
            400,
            "nodez",
        ),
        (
            "POST",
            allocs.clone(),
            Some(r#"{"command":["x"],"nodes":0}"#.into()),
            400,
            "nodes",
        ),
        (
            "POST",
            allocs.clone(),
            Some(r#"{"command":["x"],"walltime_seconds":-5}"#.into()),
            400,
            "walltime_seconds",
        ),
        (
            "POST",
            allocs.clone(),
            Some(r#"{"command":["x"],"priority":"high"}"#.into()),
            400,
            "priority",
        ),
        (
            "POST",
            allocs.clone(),
            Some(r#"{"command":["x"],"constraints":{"gpu":1}}"#.into()),
            400,
            "gpu",
        ),
        (
            "POST",
            allocs.clone(),
            Some(r#"{"nodes":1}"#.into()),
            400,
            "command",
        ),
        (
            "POST",
            allocs.clone(),
            Some(format!(r#"{{"script":"{}"}}"#, "x".repeat(2 << 20))),
            413,
            "too large",
        ),
        ("GET", format!("{allocs}/999"), None, 404, "not found"),
        (
            "GET",
            format!("{allocs}/abc"),
            None,
            400,
            "not an allocation ID",
        ),
        (
            "GET",
            format!("{allocs}/-1"),
            None,
            400,
            "not an allocation ID",
        ),
        ("DELETE", format!("{allocs}/999"), None, 404, "not found"),
        ("GET", format!("{allocs}?state=bogus"), None, 400, "state"),
        ("GET", format!("{allocs}?limit=0"), None, 400, "limit"),
        ("GET", format!("{allocs}?colour=red"), None, 400, "colour"),
        (
            "GET",
            format!("{api}/api/v1/nodes/ghost"),
            None,
            404,
            "not found",
        ),
        (
            "POST",
            format!("{api}/api/v1/nodes/ghost/drain"),
            None,
            404,
            "not found",
        ),
        (
            "POST",
            format!("{api}/api/v1/agent/heartbeat"),
            Some(r#"{"nodes":[]}"#.into()),
            400,
            "nodes",
        ),
        (
            "POST",
            format!("{api}/raft/vote"),
            Some("junk".into()),
            401,
            "cluster secret",
        ),
        (
            "GET",
            format!("{api}/api/v1/nope"),
            None,
            404,
            "no such route",
        ),
        ("PUT", allocs.clone(), Some("{}".into()), 405, "not allowed"),
    ];
    for (method, url, body, want, needle) in cases {
        let (status, v) = call(method, &url, body.as_deref());
        assert_eq!(status, want, "{method} {url}: {v}");
        let err = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {url}: no JSON error: {v}"));
        assert!(
            err.contains(needle),
            "{method} {url}: error {err:?} should mention {needle:?}"
        );
        assert!(v.get("detail").is_some(), "{method} {url}: no detail: {v}");
    }
    // Nothing changed, and the server still serves.
    assert_eq!(get(&format!("{api}/api/v1/allocations")), before);
    assert_eq!(submit(&api, json!({"command": ["true"]})), first + 1);
}

#[test]
fn list_pages_follow_the_cursor() {
    let dir = tempdir();
    // Tenants are created on first use here (a plain server refuses unknown tenants).
    let server = start_server(
        &dir.path().join("server"),
        "127.0.0.1:0",
        &[("LATTICE_SERVER__AUTO_CREATE_TENANTS", "true")],
    );
    let api = server.url.clone();
    for _ in 0..5 {
        submit(&api, json!({"command": ["true"], "tenant": "physics"}));
    }
    submit(&api, json!({"command": ["true"], "tenant": "bio"}));
    let mut seen = Vec::new();
    let mut url = format!("{api}/api/v1/allocations?tenant=physics&limit=2");
    loop {
        let page = get(&url);
        for a in page["allocations"].as_array().unwrap() {
            assert_eq!(a["tenant"], "physics");
            seen.push(a["id"].as_u64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("{api}/api/v1/allocations?tenant=physics&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
}

/// Writes sent at the same time share Raft entries (`write_batch.rs`), yet each gets its own
/// answer: a refused submission among accepted ones is refused alone, with its own error,
/// and creates nothing.
#[test]
fn concurrent_submissions_get_their_own_answers() {
    let dir = tempdir();
    let server = start_server(&dir.path().join("server"), "127.0.0.1:0", &[]);
    let api = server.url.clone();
    let first = submit(&api, json!({"command": ["true"]}));
    let url = format!("{api}/api/v1/allocations");
    let answers: Vec<(usize, u16, serde_json::Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let url = url.clone();
                s.spawn(move || {
                    let body = if i % 4 == 3 {
                        json!({"command": ["true"], "name": format!("w{i}"), "vcluster": "nope"})
                    } else {
                        json!({"command": ["true"], "name": format!("w{i}")})
                    };
                    let (status, v) = call("POST", &url, Some(&body.to_string()));
                    (i, status, v)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ids = Vec::new();
    for (i, status, v) in &answers {
        if i % 4 == 3 {
            assert_eq!(*status, 400, "w{i}: {v}");
            let err = v["error"].as_str().unwrap_or_default();
            assert!(err.contains("unknown vCluster \"nope\""), "w{i}: {v}");
        } else {
            assert_eq!(*status, 201, "w{i}: {v}");
            assert_eq!(v["name"], format!("w{i}"), "w{i} got another's answer: {v}");
            ids.push(v["id"].as_u64().unwrap());
        }
    }
    ids.sort_unstable();
    let want: Vec<u64> = (first + 1..=first + 24).collect();
    assert_eq!(
        ids, want,
        "24 new allocations with distinct, consecutive IDs"
    );
    let listed = get(&format!("{url}?limit=100"));
    assert_eq!(listed["allocations"].as_array().unwrap().len(), 25);

    // Every write went into some entry, and entries never held more writes than were made.
    let metrics = common::http()
        .get(format!("{api}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    let (entries, commands) = (
        value("lattice_raft_write_batch_commands_count"),
        value("lattice_raft_write_batch_commands_sum"),
    );
    assert!(
        commands >= 33.0 && entries <= commands,
        "{entries} entries, {commands} commands"
    );
}
