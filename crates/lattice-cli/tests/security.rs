//! Authentication and authorization through the real binary: every row of the table in
//! docs/security.md, with the negative cases (no token, expired, revoked, wrong tenant, an
//! agent token used for another node, a user on admin routes, a forged Raft request).

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use serde_json::{json, Value};

/// A cluster with tenants `physics` and `chem` and one token per kind of caller.
struct Secured {
    c: PolicyCluster,
    alice: String,
    bob: String,
    op: String,
    agent_n1: String,
}

fn token(c: &PolicyCluster, body: Value) -> (String, Value) {
    let (s, v) = c.call("POST", "/api/v1/acl/tokens", Some(&body.to_string()));
    assert_eq!(s, 201, "create token {body}: {v}");
    (v["secret"].as_str().unwrap().to_string(), v)
}

fn secured(server_env: &[(&str, &str)]) -> Secured {
    let c = PolicyCluster::start(2, server_env);
    for t in ["physics", "chem"] {
        let (s, v) = c.call(
            "POST",
            "/api/v1/tenants",
            Some(&json!({ "name": t }).to_string()),
        );
        assert_eq!(s, 201, "{v}");
    }
    let alice = token(
        &c,
        json!({"subject": "alice", "role": "user", "tenants": ["physics"]}),
    )
    .0;
    let bob = token(
        &c,
        json!({"subject": "bob", "role": "user", "tenants": ["chem"]}),
    )
    .0;
    let op = token(&c, json!({"subject": "olga", "role": "operator"})).0;
    let agent_n1 = token(
        &c,
        json!({"subject": "rack1", "role": "agent", "nodes": ["n-1"]}),
    )
    .0;
    Secured {
        c,
        alice,
        bob,
        op,
        agent_n1,
    }
}

impl Secured {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.c.api)
    }

    fn as_(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let b = body.map(|b| b.to_string());
        call_as(Some(token), method, &self.url(path), b.as_deref())
    }

    fn submit_as(&self, token: &str, body: Value) -> u64 {
        let (s, v) = self.as_(token, "POST", "/api/v1/allocations", Some(body));
        assert_eq!(s, 201, "{v}");
        v["id"].as_u64().unwrap()
    }
}

fn error_of(v: &Value) -> String {
    v["error"].as_str().unwrap_or_default().to_string()
}

#[test]
fn users_see_and_act_on_their_own_tenants_only() {
    let s = secured(&[]);
    // Identity comes from the token, never from the body.
    let a = s.submit_as(
        &s.alice,
        json!({"command": ["sleep", "30"], "tenant": "physics"}),
    );
    let alloc = s.c.get(&format!("/api/v1/allocations/{a}"));
    assert_eq!(alloc["user"], "alice");
    assert_eq!(alloc["submitted_by"], Value::Null);
    let (st, v) = s.as_(
        &s.alice,
        "POST",
        "/api/v1/allocations",
        Some(json!({"command": ["true"], "tenant": "physics", "user": "mallory"})),
    );
    assert_eq!(st, 403, "{v}");
    assert!(error_of(&v).contains("mallory"), "{v}");
    let (st, v) = s.as_(
        &s.alice,
        "POST",
        "/api/v1/allocations",
        Some(json!({"command": ["true"], "tenant": "chem"})),
    );
    assert_eq!(st, 403, "{v}");
    assert!(error_of(&v).contains("chem"), "{v}");
    // An admin may submit on a user's behalf, recorded as such.
    let (st, v) = s.c.call(
        "POST",
        "/api/v1/allocations",
        Some(&json!({"command": ["true"], "tenant": "chem", "user": "bob"}).to_string()),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["user"], "bob");
    assert_eq!(v["submitted_by"], "admin");
    let b = v["id"].as_u64().unwrap();

    // Another tenant's allocation is 404, exactly like a missing one, on every route.
    wait_state(&s.c.api, a, "running", 30);
    for (method, template) in [
        ("GET", "/api/v1/allocations/ID"),
        ("DELETE", "/api/v1/allocations/ID"),
        ("GET", "/api/v1/allocations/ID/logs"),
        ("GET", "/api/v1/allocations/ID/metrics"),
        ("POST", "/api/v1/allocations/ID/hold"),
        ("POST", "/api/v1/allocations/ID/release"),
        ("POST", "/api/v1/allocations/ID/requeue"),
        ("POST", "/api/v1/allocations/ID/checkpoint"),
        ("GET", "/api/v1/arrays/ID"),
        ("DELETE", "/api/v1/arrays/ID"),
    ] {
        let path = template.replace("ID", &a.to_string());
        let (st, v) = s.as_(&s.bob, method, &path, None);
        assert_eq!(st, 404, "bob {method} {path}: {v}");
        let (st2, v2) = s.as_(&s.bob, method, &template.replace("ID", "999999"), None);
        assert_eq!(st2, 404, "{v2}");
        assert_eq!(
            error_of(&v).replace(&a.to_string(), "N"),
            error_of(&v2).replace("999999", "N"),
            "the answer must not tell an existing ID from a missing one"
        );
    }
    assert_eq!(
        s.c.get(&format!("/api/v1/allocations/{a}"))["state"],
        "running"
    );

    // Lists and node views only show the caller's tenants.
    let (_, mine) = s.as_(&s.alice, "GET", "/api/v1/allocations?state=running", None);
    let ids: Vec<u64> = mine["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![a]);
    let (_, theirs) = s.as_(&s.bob, "GET", "/api/v1/allocations?tenant=physics", None);
    assert_eq!(theirs["allocations"], json!([]));
    let (_, nodes) = s.as_(&s.bob, "GET", "/api/v1/nodes", None);
    for n in nodes["nodes"].as_array().unwrap() {
        assert!(
            !n["allocations"].as_array().unwrap().contains(&json!(a)),
            "{n}"
        );
    }
    let (_, tenants) = s.as_(&s.bob, "GET", "/api/v1/tenants", None);
    let names: Vec<&str> = tenants["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["chem"]);
    assert_eq!(s.as_(&s.bob, "GET", "/api/v1/tenants/physics", None).0, 404);

    // The owner acts: cancel is recorded as by alice.
    let (st, v) = s.as_(
        &s.alice,
        "DELETE",
        &format!("/api/v1/allocations/{a}"),
        None,
    );
    assert_eq!(st, 200, "{v}");
    let done = wait_state(&s.c.api, a, "cancelled", 30);
    assert!(
        done["reason_detail"]
            .as_str()
            .unwrap_or_default()
            .contains("alice"),
        "{done}"
    );
    // The operator acts on any tenant's work.
    let (st, v) = s.as_(&s.op, "DELETE", &format!("/api/v1/allocations/{b}"), None);
    assert!(st == 200 || st == 409, "{v}");
}

#[test]
fn roles_gate_the_admin_operator_and_agent_routes() {
    let s = secured(&[]);
    let admin_only: Vec<(&str, &str, Option<Value>)> = vec![
        ("POST", "/api/v1/tenants", Some(json!({"name": "x1"}))),
        ("PUT", "/api/v1/tenants/physics", Some(json!({"share": 2}))),
        ("POST", "/api/v1/vclusters", Some(json!({"name": "v1"}))),
        (
            "PUT",
            "/api/v1/vclusters/default",
            Some(json!({"policy": "fifo"})),
        ),
        (
            "POST",
            "/api/v1/acl/tokens",
            Some(json!({"subject": "eve", "role": "admin"})),
        ),
        ("GET", "/api/v1/acl/tokens", None),
        ("DELETE", "/api/v1/acl/tokens/tok-0000000000000000", None),
        (
            "POST",
            "/api/v1/raft/members",
            Some(json!({"id": 9, "url": "http://127.0.0.1:1"})),
        ),
        ("DELETE", "/api/v1/raft/members/9", None),
        ("GET", "/api/v1/raft/snapshot", None),
    ];
    for (who, tok) in [
        ("user", &s.alice),
        ("operator", &s.op),
        ("agent", &s.agent_n1),
    ] {
        for (m, p, b) in &admin_only {
            let (st, v) = s.as_(tok, m, p, b.clone());
            assert_eq!(st, 403, "{who} {m} {p}: {v}");
            assert!(error_of(&v).contains("admin"), "{v}");
        }
    }
    // Drain is for operators and admins.
    let (st, v) = s.as_(&s.alice, "POST", "/api/v1/nodes/n-2/drain", None);
    assert_eq!(st, 403, "{v}");
    let (st, v) = s.as_(
        &s.op,
        "POST",
        "/api/v1/nodes/n-2/drain",
        Some(json!({"reason": "fan"})),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["drain"], true);
    let (st, _) = s.as_(&s.op, "POST", "/api/v1/nodes/n-2/undrain", None);
    assert_eq!(st, 200);
    // Agents use the agent protocol only, and only for their own nodes.
    for (m, p) in [
        ("GET", "/api/v1/allocations"),
        ("GET", "/api/v1/nodes"),
        ("GET", "/api/v1/raft/status"),
    ] {
        assert_eq!(s.as_(&s.agent_n1, m, p, None).0, 403, "agent {m} {p}");
    }
    for (tok, p) in [
        (&s.alice, "/api/v1/agent/heartbeat"),
        (&s.op, "/api/v1/agent/work"),
    ] {
        assert_eq!(
            s.as_(tok, "POST", p, Some(json!({"nodes": ["n-1"]}))).0,
            403,
            "{p}"
        );
    }
    let (st, v) = s.as_(
        &s.agent_n1,
        "POST",
        "/api/v1/agent/heartbeat",
        Some(json!({"nodes": ["n-1"]})),
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = s.as_(
        &s.agent_n1,
        "POST",
        "/api/v1/agent/heartbeat",
        Some(json!({"nodes": ["n-1", "n-2"]})),
    );
    assert_eq!(st, 403, "{v}");
    assert!(error_of(&v).contains("n-2"), "{v}");
    let report = json!({"nodes": ["n-1"], "reports": [{
        "allocation_id": 1, "node_id": "n-2", "outcome": "exited", "exit_code": 0, "run": 0
    }]});
    let (st, v) = s.as_(&s.agent_n1, "POST", "/api/v1/agent/heartbeat", Some(report));
    assert_eq!(st, 403, "an exit report for another node: {v}");
    let (st, v) = s.as_(
        &s.agent_n1,
        "POST",
        "/api/v1/agent/work",
        Some(json!({"nodes": ["n-2"], "wait_ms": 0})),
    );
    assert_eq!(st, 403, "{v}");
    let reg = json!({"id": "n-2", "hostname": "evil", "cpus": 1, "memory_bytes": 1, "agent_url": "http://127.0.0.1:1"});
    let (st, v) = s.as_(&s.agent_n1, "POST", "/api/v1/agent/register", Some(reg));
    assert_eq!(st, 403, "{v}");
    assert_ne!(s.c.get("/api/v1/nodes/n-2")["hostname"], "evil");
    // whoami answers every valid token.
    let (st, v) = s.as_(&s.agent_n1, "GET", "/api/v1/acl/whoami", None);
    assert_eq!((st, v["role"].as_str()), (200, Some("agent")), "{v}");
}

#[test]
fn missing_bad_expired_and_revoked_tokens_are_refused_and_counted() {
    let s = secured(&[]);
    let before = s.c.get("/api/v1/allocations")["allocations"].clone();
    let (short, _) = token(
        &s.c,
        json!({"subject": "temp", "role": "operator", "expires_in_seconds": 1}),
    );
    let (gone, gone_v) = token(
        &s.c,
        json!({"subject": "ex", "role": "user", "tenants": ["physics"]}),
    );
    let (st, v) = s.c.call(
        "DELETE",
        &format!("/api/v1/acl/tokens/{}", gone_v["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["revoked_by"], "admin");
    let body = json!({"command": ["true"], "tenant": "physics"});
    for (what, tok, needle) in [
        ("no token", None, "authentication required"),
        ("garbage", Some("lat_not_a_token_at_all"), "no such token"),
        ("revoked", Some(gone.as_str()), "revoked"),
    ] {
        let (st, v) = call_as(
            tok,
            "POST",
            &s.url("/api/v1/allocations"),
            Some(&body.to_string()),
        );
        assert_eq!(st, 401, "{what}: {v}");
        assert!(error_of(&v).contains(needle), "{what}: {v}");
    }
    let (st, v) = call_as(None, "GET", &s.url("/api/v1/nodes"), None);
    assert_eq!(st, 401, "{v}");
    // Malformed headers are a 401 too, never a 5xx.
    let r = http()
        .get(s.url("/api/v1/nodes"))
        .header("authorization", "Basic YWxpY2U6cHc=")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    wait_for(10, "the short token to expire", || {
        let (st, v) = call_as(Some(&short), "GET", &s.url("/api/v1/nodes"), None);
        (st == 401).then_some(v)
    });
    let (_, v) = call_as(Some(&short), "GET", &s.url("/api/v1/nodes"), None);
    assert!(error_of(&v).contains("expired"), "{v}");
    // Refused requests changed nothing.
    assert_eq!(s.c.get("/api/v1/allocations")["allocations"], before);
    // Open routes stay open; failed authentications are counted by status.
    assert_eq!(call_as(None, "GET", &s.url("/healthz"), None).0, 200);
    let text = http_raw_get(&s.url("/metrics"));
    let count: f64 = text
        .lines()
        .filter(|l| l.starts_with("lattice_api_requests_total{") && l.contains("status=\"401\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(count >= 6.0, "401s counted: {count}\n{text}");
    // The bootstrap happens once.
    let (st, v) = call_as(None, "POST", &s.url("/api/v1/acl/bootstrap"), Some("{}"));
    assert_eq!(st, 409, "{v}");
    // Listings never show secrets or hashes.
    let list = s.c.get("/api/v1/acl/tokens").to_string();
    assert!(
        !list.contains(&s.alice) && !list.contains("hash") && !list.contains("secret"),
        "{list}"
    );
}

fn http_raw_get(url: &str) -> String {
    reqwest::blocking::Client::new()
        .get(url)
        .send()
        .unwrap()
        .text()
        .unwrap()
}

#[test]
fn raft_rpcs_need_the_cluster_secret() {
    let s = secured(&[("LATTICE_SERVER__CLUSTER_SECRET", "the-real-secret-123")]);
    for headers in [vec![], vec![("x-lattice-cluster-secret", "guess")]] {
        for path in [
            "/raft/append",
            "/raft/vote",
            "/raft/propose",
            "/raft/snapshot",
        ] {
            let mut r = reqwest::blocking::Client::new()
                .post(s.url(path))
                .header("authorization", format!("Bearer {}", &*ADMIN))
                .body(vec![0u8; 16]);
            for (k, v) in &headers {
                r = r.header(*k, *v);
            }
            let r = r.send().unwrap();
            assert_eq!(r.status().as_u16(), 401, "{path} {headers:?}");
        }
    }
    // A joining member authenticates with the secret, not a token; a wrong secret is refused.
    let body = json!({"id": 7, "url": "http://127.0.0.1:1"}).to_string();
    let r = reqwest::blocking::Client::new()
        .post(s.url("/api/v1/raft/members"))
        .header("x-lattice-cluster-secret", "wrong-secret-000000")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let members = s.c.get("/api/v1/raft/status")["members"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(members, 1);
}

#[test]
fn submissions_are_rate_limited_per_token() {
    let s = secured(&[
        ("LATTICE_SERVER__AUTH__SUBMIT_RATE_PER_SECOND", "0.5"),
        ("LATTICE_SERVER__AUTH__SUBMIT_BURST", "3"),
    ]);
    let body = json!({"command": ["true"], "tenant": "physics"});
    for _ in 0..3 {
        s.submit_as(&s.alice, body.clone());
    }
    let r = http()
        .post(s.url("/api/v1/allocations"))
        .bearer_auth(&s.alice)
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().get("retry-after").is_some());
    // Another token has its own bucket; admins are not limited.
    s.submit_as(&s.bob, json!({"command": ["true"], "tenant": "chem"}));
    for _ in 0..5 {
        submit(&s.c.api, json!({"command": ["true"]}));
    }
}

#[test]
fn logs_are_served_through_the_control_plane_only() {
    let s = secured(&[]);
    let id = s.submit_as(
        &s.alice,
        json!({"command": ["echo", "private words"], "tenant": "physics"}),
    );
    let a = wait_state(&s.c.api, id, "completed", 30);
    let (st, text) = s.as_(
        &s.alice,
        "GET",
        &format!("/api/v1/allocations/{id}/logs"),
        None,
    );
    assert_eq!(st, 200);
    assert!(
        text.as_str().unwrap_or_default().contains("private words"),
        "{text}"
    );
    // The agent's own port refuses whoever does not know its token.
    let node = a["assigned_nodes"][0].as_str().unwrap();
    let agent_url = s.c.get(&format!("/api/v1/nodes/{node}"))["agent_url"]
        .as_str()
        .unwrap()
        .to_string();
    let r = reqwest::blocking::Client::new()
        .get(format!("{agent_url}/allocations/{id}/logs?node={node}"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(!r.text().unwrap().contains("private words"));
}

#[test]
fn the_cli_uses_tokens_from_the_environment_or_a_private_file() {
    let s = secured(&[]);
    let api = &s.c.api;
    // `lattice token create` prints the secret alone on stdout.
    let (code, out, err) = cli(
        api,
        &[
            "token",
            "create",
            "--subject",
            "carol",
            "--role",
            "user",
            "--tenant",
            "physics",
            "--expires",
            "1h",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let carol = out.trim().to_string();
    assert!(carol.starts_with("lat_") && !carol.contains('\n'), "{out}");
    let (code, out, err) = cli_as(&carol, api, &["whoami"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("\"carol\"") && out.contains("\"user\""),
        "{out}"
    );
    let (code, _, err) = cli_as(&carol, api, &["tenants", "create", "nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("admin"), "{err}");
    // The token file must be private.
    let home = tempdir();
    let file = home.path().join("lattice").join("token");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, format!("{carol}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = || {
        let out = std::process::Command::new(BIN)
            .args(["whoami"])
            .env("LATTICE_ENDPOINT", api)
            .env_remove("LATTICE_TOKEN")
            .env("XDG_CONFIG_HOME", home.path())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out, err) = run();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("carol"), "{out}");
    // List, then revoke: the token stops working at once.
    let (code, out, _) = cli(api, &["token", "list"]);
    assert_eq!(code, 0);
    let line = out
        .lines()
        .find(|l| l.contains("carol"))
        .expect("carol listed")
        .to_string();
    let id = line.split_whitespace().next().unwrap();
    assert!(!out.contains(&carol), "secrets are never listed");
    let (code, _, err) = cli(api, &["token", "revoke", id]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli_as(&carol, api, &["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("revoked"), "{err}");
}

/// The control-plane URL a `lattice dev` banner names.
fn dev_endpoint(dev: &Proc) -> String {
    wait_for(10, "the endpoint line", || {
        dev.output_text().lines().find_map(|l| {
            let rest = l.trim().strip_prefix("control plane : ")?;
            Some(rest.split_whitespace().next()?.to_string())
        })
    })
}

#[test]
fn dev_mode_prints_an_admin_token_or_says_loudly_that_access_control_is_off() {
    let dir = tempdir();
    let dev = spawn(
        &[
            "dev",
            "--api-addr",
            "127.0.0.1:0",
            "--nodes",
            "1",
            "--data-dir",
            dir.path().join("d").to_str().unwrap(),
        ],
        &[("LATTICE_TOKEN", "")],
        "export LATTICE_TOKEN=",
    );
    let secret = dev.url.clone();
    assert!(secret.starts_with("lat_"), "{secret}");
    let api = dev_endpoint(&dev);
    wait_for(30, "the dev node", || {
        let (st, v) = call_as(Some(&secret), "GET", &format!("{api}/api/v1/nodes"), None);
        (st == 200 && v["nodes"].as_array()?.len() == 1).then_some(())
    });
    assert_eq!(
        call_as(None, "GET", &format!("{api}/api/v1/nodes"), None).0,
        401
    );
    drop(dev);

    let insecure = spawn(
        &[
            "dev",
            "--insecure",
            "--api-addr",
            "127.0.0.1:0",
            "--nodes",
            "1",
        ],
        &[],
        "ACCESS CONTROL IS OFF",
    );
    let api = dev_endpoint(&insecure);
    let (st, v) = call_as(
        None,
        "POST",
        &format!("{api}/api/v1/allocations"),
        Some(r#"{"command":["true"],"user":"zed"}"#),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["user"], "zed");
}
