//! Random and malformed requests against a live server (proptest): random methods, paths
//! (known routes with mangled segments, and garbage), query strings, headers (missing, broken,
//! revoked and wrongly scoped tokens) and bodies (random bytes, truncated and random JSON).
//!
//! Checked for every request: no 5xx other than 503; a refused request (4xx) changes nothing
//! (the state revision stays put); and the server keeps serving.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

#[derive(Clone, Debug)]
struct Req {
    method: &'static str,
    path: String,
    query: Vec<(String, String)>,
    auth: usize,
    content_type: Option<String>,
    body: Vec<u8>,
}

const TEMPLATES: &[&str] = &[
    "/api/v1/allocations",
    "/api/v1/allocations/{}",
    "/api/v1/allocations/{}/logs",
    "/api/v1/allocations/{}/metrics",
    "/api/v1/allocations/{}/checkpoint",
    "/api/v1/allocations/{}/hold",
    "/api/v1/allocations/{}/release",
    "/api/v1/allocations/{}/requeue",
    "/api/v1/arrays/{}",
    "/api/v1/arrays/{}/hold",
    "/api/v1/nodes",
    "/api/v1/nodes/{}",
    "/api/v1/nodes/{}/drain",
    "/api/v1/nodes/{}/undrain",
    "/api/v1/tenants",
    "/api/v1/tenants/{}",
    "/api/v1/vclusters",
    "/api/v1/vclusters/{}",
    "/api/v1/acl/bootstrap",
    "/api/v1/acl/tokens",
    "/api/v1/acl/tokens/{}",
    "/api/v1/acl/whoami",
    "/api/v1/agent/register",
    "/api/v1/agent/heartbeat",
    "/api/v1/agent/work",
    "/api/v1/raft/status",
    "/api/v1/raft/members",
    "/api/v1/raft/members/{}",
    "/api/v1/raft/snapshot",
    "/api/v1/telemetry/nodes",
    "/raft/append",
    "/raft/vote",
    "/raft/propose",
    "/healthz",
    "/metrics",
];

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        (1u64..5).prop_map(|n| n.to_string()),
        Just("1_0".to_string()),
        Just("-1".to_string()),
        Just("%2e%2e%2f%2e%2e".to_string()),
        Just("n-1".to_string()),
        Just("default".to_string()),
        Just("tok-0123456789abcdef".to_string()),
        "[a-zA-Z0-9_.%-]{0,40}",
        "\\PC{1,8}".prop_map(|s| urlencode(&s)),
    ]
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (prop::sample::select(TEMPLATES), segment()).prop_map(|(t, s)| t.replace("{}", &s)),
        1 => "(/[a-z0-9%._-]{0,12}){1,5}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
        prop::sample::select(vec![
            "physics", "default", "n-1", "true", "SIGUSR1", "admin"
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "command",
                    "script",
                    "nodes",
                    "tenant",
                    "user",
                    "name",
                    "priority",
                    "walltime",
                    "array",
                    "depends_on",
                    "subject",
                    "role",
                    "tenants",
                    "token",
                    "id",
                    "url",
                    "reports",
                    "hostname",
                    "cpus",
                    "reason",
                    "share",
                    "policy",
                    "hold",
                    "x",
                ])
                .prop_map(String::from),
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..200),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (json_value(), any::<prop::sample::Index>()).prop_map(|(v, i)| {
            let t = v.to_string().into_bytes();
            let cut = i.index(t.len() + 1);
            t[..cut].to_vec()
        }),
        Just(br#"{"command":["true"],"tenant":"physics"}"#.to_vec()),
        Just(br#"{"command":["true"],"tenant":"physics","user":"mallory"}"#.to_vec()),
        Just(br#"{"nodes":["n-1"]}"#.to_vec()),
    ]
}

fn request() -> impl Strategy<Value = Req> {
    (
        prop::sample::select(vec![
            "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD",
        ]),
        path(),
        prop::collection::vec(("[a-z_]{0,8}", "\\PC{0,12}"), 0..4),
        0usize..7,
        prop::option::of(prop::sample::select(vec![
            "application/json".to_string(),
            "text/plain".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ])),
        body(),
    )
        .prop_map(|(method, path, query, auth, content_type, body)| Req {
            method,
            path,
            query,
            auth,
            content_type,
            body,
        })
}

fn revision(api: &str) -> u64 {
    let (s, v) = call("GET", &format!("{api}/api/v1/raft/status"), None);
    assert_eq!(s, 200, "{v}");
    v["state_revision"].as_u64().expect("state_revision")
}

/// Waits until the revision stops moving (the scheduler reacted to an accepted request): the
/// same value over three reads 150 ms apart, well past the vCluster's 10 ms cycle interval.
fn settled(api: &str) -> u64 {
    let mut last = revision(api);
    let mut same = 0;
    wait_for(20, "the state to settle", || {
        std::thread::sleep(std::time::Duration::from_millis(150));
        let now = revision(api);
        same = if now == last { same + 1 } else { 0 };
        last = now;
        (same >= 3).then_some(now)
    })
}

/// What the state holds, as the API shows it (tenants without their time-decayed usage).
fn fingerprint(api: &str) -> Value {
    let read = |path: &str| {
        let (s, v) = call("GET", &format!("{api}{path}"), None);
        assert_eq!(s, 200, "{path}: {v}");
        v
    };
    let tenants: Vec<Value> = read("/api/v1/tenants")["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let keep = [
                "name",
                "share",
                "max_nodes",
                "max_running",
                "sensitive",
                "updated_at",
            ];
            Value::Object(
                t.as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| keep.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        })
        .collect();
    json!({
        "allocations": read("/api/v1/allocations?limit=1000"),
        "nodes": read("/api/v1/nodes"),
        "tenants": tenants,
        "vclusters": read("/api/v1/vclusters"),
        "tokens": read("/api/v1/acl/tokens"),
    })
}

#[test]
fn random_and_malformed_requests_never_5xx_and_refusals_change_nothing() {
    let dir = tempdir();
    // No agent (nothing moves by itself) and a scheduler that runs only when woken.
    let server = start_server(
        &dir.path().join("server"),
        "127.0.0.1:0",
        &[("LATTICE_SERVER__SCHEDULER_INTERVAL_MS", "3600000")],
    );
    let api = server.url.clone();
    let (s, v) = call(
        "POST",
        &format!("{api}/api/v1/tenants"),
        Some(r#"{"name":"physics"}"#),
    );
    assert_eq!(s, 201, "{v}");
    // A woken scheduler cycles at once (not up to 500 ms later), so `settled` sees its entry.
    let (s, v) = call(
        "PUT",
        &format!("{api}/api/v1/vclusters/default"),
        Some(r#"{"cycle_interval_ms":10}"#),
    );
    assert_eq!(s, 200, "{v}");
    let mk = |body: Value| -> (String, String) {
        let (s, v) = call(
            "POST",
            &format!("{api}/api/v1/acl/tokens"),
            Some(&body.to_string()),
        );
        assert_eq!(s, 201, "{v}");
        (
            v["secret"].as_str().unwrap().into(),
            v["id"].as_str().unwrap().into(),
        )
    };
    let (user, _) = mk(json!({"subject": "alice", "role": "user", "tenants": ["physics"]}));
    let (agent, _) = mk(json!({"subject": "rack", "role": "agent", "nodes": ["n-1"]}));
    let (operator, _) = mk(json!({"subject": "olga", "role": "operator"}));
    let (revoked, rid) = mk(json!({"subject": "old", "role": "operator"}));
    let (s, _) = call("DELETE", &format!("{api}/api/v1/acl/tokens/{rid}"), None);
    assert_eq!(s, 200);
    let auths: Vec<Option<String>> = vec![
        None,
        Some("Bearer lat_garbage_garbage_garbage".into()),
        Some(format!("Bearer {revoked}")),
        Some(format!("Bearer {user}")),
        Some(format!("Bearer {agent}")),
        Some(format!("Basic {user}")),
        Some(format!("Bearer {operator}")),
    ];
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();

    // `run` takes an `Fn`: the running state lives in cells.
    settled(&api);
    let before = std::cell::RefCell::new(fingerprint(&api));
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u32>::new());
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&request(), |r| {
        let method = reqwest::Method::from_bytes(r.method.as_bytes()).unwrap();
        let mut req = client
            .request(method, format!("{api}{}", r.path))
            .query(&r.query)
            .body(r.body.clone());
        if let Some(a) = &auths[r.auth] {
            req = req.header("authorization", a);
        }
        if let Some(ct) = &r.content_type {
            req = req.header("content-type", ct);
        }
        let resp = req
            .send()
            .map_err(|e| TestCaseError::fail(format!("the server stopped answering: {e}")))?;
        let status = resp.status().as_u16();
        *statuses.borrow_mut().entry(status).or_default() += 1;
        if status >= 500 && status != 503 {
            return Err(TestCaseError::fail(format!(
                "{status} for {r:?}: {}",
                resp.text().unwrap_or_default()
            )));
        }
        if status >= 400 {
            // Content, not the revision: a refusal by the state machine (say, draining a node
            // that does not exist) is a committed entry that bumps the revision alone.
            let after = fingerprint(&api);
            prop_assert_eq!(
                &after,
                &*before.borrow(),
                "a refused request ({}) changed the state: {:?}",
                status,
                r
            );
        } else {
            settled(&api);
            *before.borrow_mut() = fingerprint(&api);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let statuses = statuses.into_inner();
    eprintln!("answers by status: {statuses:?}");
    assert!(statuses.keys().any(|s| *s == 401), "{statuses:?}");
    assert!(statuses.keys().any(|s| *s == 404), "{statuses:?}");
    assert!(
        statuses.keys().any(|s| (200..300).contains(s)),
        "{statuses:?}"
    );
    wait_healthy(&api);
    assert!(pid_alive(server.pid()));
}
