//! The audit API on a real single-member App (Raft over redb in a temp dir, tokens in the
//! replicated state), through the router with its authorization layer.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use lattice_core::acl::{secret_hash, Role, Token};
use lattice_core::audit::{AuditAction, AuditRecord};
use lattice_core::{Command, Timestamp};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::api::{self, App};
use crate::audit::signing::verify_head;
use crate::audit::store::overwrite_row;
use crate::clock;
use crate::config::ServerConfig;

struct Member {
    app: App,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn member(archive: bool) -> Member {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig {
        data_dir: dir.path().to_path_buf(),
        api_addr: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    if archive {
        cfg.audit.archive_dir = Some(dir.path().join("archive"));
    }
    let (app, tx) = App::single_member(cfg).await.unwrap();
    let m = Member {
        app,
        _dir: dir,
        _stop: tx,
    };
    for name in ["med", "fin"] {
        let change = lattice_core::tenant::TenantChange {
            sensitive: Some(true),
            ..Default::default()
        };
        m.app
            .propose(Command::PutTenant {
                now: clock::now(),
                name: name.into(),
                change,
                create: true,
            })
            .await
            .unwrap();
    }
    let tokens = [
        ("admin", "root", Role::Admin, vec![]),
        ("operator", "op", Role::Operator, vec![]),
        ("agent", "n1", Role::Agent, vec![]),
        ("ann", "ann", Role::User, vec!["med".to_string()]),
        ("boss", "boss", Role::TenantAdmin, vec!["med".to_string()]),
    ];
    for (i, (secret, subject, role, tenants)) in tokens.into_iter().enumerate() {
        let token = Token {
            id: format!("tok-{i:016x}"),
            hash: secret_hash(&secret_of(secret)),
            subject: subject.into(),
            role,
            tenants,
            nodes: if role == Role::Agent {
                vec!["n1".into()]
            } else {
                vec![]
            },
            description: String::new(),
            created_at: clock::now(),
            created_by: "test".into(),
            expires_at: None,
            revoked_at: None,
            revoked_by: None,
        };
        let now = clock::now();
        let cmd = if i == 0 {
            Command::BootstrapAcl { now, token }
        } else {
            Command::CreateToken { now, token }
        };
        m.app.propose(cmd).await.unwrap();
    }
    m
}

fn secret_of(name: &str) -> String {
    format!("lat_test_secret_of_{name}_0123456789")
}

/// Records access entries (tenant, user) at `now`.
async fn record(m: &Member, now: Timestamp, who: &[(&str, &str)]) {
    let records = who
        .iter()
        .map(|(tenant, user)| AuditRecord {
            tenant: tenant.to_string(),
            user: user.to_string(),
            action: AuditAction::AuditQueried,
            allocation: None,
            nodes: vec![],
            detail: "seed".into(),
        })
        .collect();
    m.app
        .propose(Command::RecordAudit { now, records })
        .await
        .unwrap();
}

async fn call(
    m: &Member,
    token: &str,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {}", secret_of(token)))
        .header("content-type", "application/json")
        .body(match body {
            Some(b) => Body::from(b.to_string()),
            None => Body::empty(),
        })
        .unwrap();
    let resp = api::router(m.app.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn get(m: &Member, token: &str, uri: &str) -> (StatusCode, Value) {
    call(m, token, "GET", uri, None).await
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["tenant"].as_str().unwrap().to_string(),
                e["user"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn count(m: &Member) -> u64 {
    m.app.state.read().state.audit_head().count()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_bad_parameter_is_a_400_naming_it_and_is_not_recorded() {
    let m = member(false).await;
    let before = count(&m);
    for (query, param) in [
        ("action=node.nope", "action"),
        ("from=2026-02-30", "from"),
        ("to=soon", "to"),
        ("from=2026-03-02&to=2026-03-01", "from"),
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("cursor=garbage", "cursor"),
        ("allocation=x", "allocation"),
        ("tenant=a&tenant=b", "tenant"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = get(&m, "admin", &format!("/api/v1/audit?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["detail"]["field"], param, "{query}: {body}");
        assert!(body["error"].as_str().unwrap().contains(param), "{body}");
    }
    for (query, param) in [("", "seq"), ("?seq=0", "seq"), ("?seq=1&x=2", "x")] {
        let (status, body) = get(&m, "admin", &format!("/api/v1/audit/sign{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["detail"]["field"], param, "{body}");
    }
    let (status, body) = call(
        &m,
        "admin",
        "POST",
        "/api/v1/audit/prune",
        Some(json!({"before": "later"})),
    )
    .await;
    assert_eq!(
        (status, &body["detail"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("before"))
    );
    let (status, _) = call(
        &m,
        "admin",
        "POST",
        "/api/v1/audit/prune",
        Some(json!({"after": "2026-01-01"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(count(&m), before, "refused queries are not recorded");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_role_sees_its_scope_and_every_query_is_recorded_first() {
    let m = member(false).await;
    let t = clock::now();
    record(&m, t, &[("med", "ann"), ("med", "bob"), ("fin", "ann")]).await;

    // Admin: everything, its own query included (tenant `*`, the query string as detail).
    let (status, body) = get(&m, "admin", "/api/v1/audit").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got = pairs(&body);
    assert_eq!(
        got[..3],
        [
            ("med".into(), "ann".into()),
            ("med".into(), "bob".into()),
            ("fin".into(), "ann".into())
        ]
    );
    assert_eq!(got[3], ("*".to_string(), "root".to_string()));
    assert_eq!(body["entries"][3]["action"], "access.audit");
    assert_eq!(body["next_cursor"], Value::Null);
    let head = &body["head"];
    assert_eq!(head["seq"], 4);
    assert_eq!(head["hash"], body["entries"][3]["hash"]);

    // Tenant admin of med: every med entry, and its own query (tenant med) once it names it.
    let (_, body) = get(&m, "boss", "/api/v1/audit?tenant=med").await;
    assert_eq!(
        pairs(&body),
        [
            ("med".into(), "ann".into()),
            ("med".into(), "bob".into()),
            ("med".into(), "boss".into())
        ]
    );
    // User ann of med: only its own med entries (its query names med, so it is one).
    let (_, body) = get(&m, "ann", "/api/v1/audit?tenant=med").await;
    assert_eq!(
        pairs(&body),
        [("med".into(), "ann".into()), ("med".into(), "ann".into())]
    );
    let (_, body) = get(&m, "ann", "/api/v1/audit").await;
    assert_eq!(pairs(&body).len(), 2);
    // Another tenant or another user: an empty answer, not an error.
    for q in ["tenant=fin", "tenant=med&user=bob"] {
        let (status, body) = get(&m, "ann", &format!("/api/v1/audit?{q}")).await;
        assert_eq!((status, pairs(&body).len()), (StatusCode::OK, 0), "{q}");
    }
    // Operators and agents: 403 naming what is needed.
    for who in ["operator", "agent"] {
        let (status, body) = get(&m, who, "/api/v1/audit").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("a user, tenant-admin or admin token"),
            "{body}"
        );
    }
    // Five answered queries, five more entries; the refused ones left none.
    assert_eq!(count(&m), 3 + 6);
    let (status, _) = get(&m, "ann", "/api/v1/audit/verify").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn heads_and_entries_are_signed_with_the_published_key() {
    let m = member(false).await;
    record(&m, clock::now(), &[("med", "ann"), ("med", "bob")]).await;
    let (status, key) = get(&m, "operator", "/api/v1/audit/pubkey").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(key["algorithm"], "ed25519");
    let pk = key["public_key"].as_str().unwrap();

    let (_, body) = get(&m, "admin", "/api/v1/audit?limit=1").await;
    let head = &body["head"];
    assert_eq!(head["public_key"], pk);
    let seq = head["seq"].as_u64().unwrap();
    assert!(verify_head(
        pk,
        seq,
        head["hash"].as_str().unwrap(),
        head["signature"].as_str().unwrap()
    ));
    assert!(!verify_head(
        pk,
        seq + 1,
        head["hash"].as_str().unwrap(),
        head["signature"].as_str().unwrap()
    ));

    let (status, s) = get(&m, "ann", "/api/v1/audit/sign?seq=1").await;
    assert_eq!(status, StatusCode::OK, "{s}");
    let e1 = m.app.audit.store.get(1).unwrap().unwrap();
    assert_eq!(
        (s["seq"].as_u64(), s["hash"].as_str()),
        (Some(1), Some(e1.hash.as_str()))
    );
    assert!(verify_head(
        pk,
        1,
        &e1.hash,
        s["signature"].as_str().unwrap()
    ));
    // Bob's entry is not ann's to see; an unknown entry is the same 404.
    assert_eq!(
        get(&m, "ann", "/api/v1/audit/sign?seq=2").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&m, "admin", "/api/v1/audit/sign?seq=999").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&m, "boss", "/api/v1/audit/sign?seq=2").await.0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_follow_next_cursor() {
    let m = member(false).await;
    let who: Vec<(&str, &str)> = (0..23)
        .map(|i| {
            if i % 2 == 0 {
                ("med", "ann")
            } else {
                ("fin", "ann")
            }
        })
        .collect();
    record(&m, clock::now(), &who).await;
    let mut seen = Vec::new();
    let mut uri = "/api/v1/audit?user=ann&limit=5".to_string();
    let mut pages = 0;
    loop {
        let (status, body) = get(&m, "admin", &uri).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages += 1;
        for e in body["entries"].as_array().unwrap() {
            seen.push(e["seq"].as_u64().unwrap());
        }
        match body["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/v1/audit?user=ann&limit=5&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, (1..=23).collect::<Vec<u64>>());
    assert_eq!(pages, 5);
    // Time bounds: a plain `to` date includes that day; `from` after everything: nothing.
    let (_, body) = get(&m, "admin", "/api/v1/audit?user=ann&to=2999-12-31").await;
    assert_eq!(body["entries"].as_array().unwrap().len(), 23);
    let (_, body) = get(
        &m,
        "admin",
        "/api/v1/audit?user=ann&from=2999-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(body["entries"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_finds_a_modified_row() {
    let m = member(false).await;
    record(
        &m,
        clock::now(),
        &[("med", "ann"), ("med", "bob"), ("med", "cy")],
    )
    .await;
    let (status, body) = get(&m, "admin", "/api/v1/audit/verify").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            &body["ok"],
            &body["entries"],
            &body["first_seq"],
            &body["last_seq"],
            &body["error"]
        ),
        (&json!(true), &json!(3), &json!(1), &json!(3), &Value::Null)
    );
    assert_eq!(body["head"]["seq"], 3);

    let mut e = m.app.audit.store.get(2).unwrap().unwrap();
    e.user = "mallory".into();
    overwrite_row(&m.app.audit.store, &e).unwrap();
    let (_, body) = get(&m, "admin", "/api/v1/audit/verify").await;
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["error"]["seq"], 2, "{body}");
    assert_eq!(body["entries"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_archives_and_removes_old_entries_on_every_read_path() {
    let m = member(true).await;
    let old = Timestamp::parse("2015-06-01").unwrap();
    record(&m, old, &[("med", "ann"), ("med", "bob")]).await;
    record(
        &m,
        Timestamp::parse("2016-06-01").unwrap(),
        &[("med", "cy")],
    )
    .await;
    record(&m, clock::now(), &[("med", "dee")]).await;

    // `before` only narrows the retention cutoff: 2016-01-01 prunes the 2015 entries.
    let (status, body) = call(
        &m,
        "admin",
        "POST",
        "/api/v1/audit/prune",
        Some(json!({"before": "2016-01-01"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["pruned_through"], &body["pruned"]),
        (&json!(2), &json!(2))
    );
    let archive = body["archive"].as_str().unwrap().to_string();
    assert!(archive.ends_with("archive/audit-1-2.jsonl"), "{archive}");
    let text = std::fs::read_to_string(&archive).unwrap();
    let users: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["user"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(users, ["ann", "bob"]);

    assert_eq!(m.app.audit.store.get(2).unwrap(), None);
    let (_, body) = get(&m, "admin", "/api/v1/audit?tenant=med").await;
    assert_eq!(body["entries"][0]["user"], "cy", "{body}");
    assert_eq!(
        get(&m, "admin", "/api/v1/audit/sign?seq=1").await.0,
        StatusCode::NOT_FOUND
    );
    let (_, body) = get(&m, "admin", "/api/v1/audit/verify").await;
    assert_eq!(
        (&body["ok"], &body["first_seq"]),
        (&json!(true), &json!(3)),
        "{body}"
    );

    // Without `before`, the retention (7 years) prunes the 2016 entry too; a second run
    // finds nothing.
    let (_, body) = call(&m, "admin", "POST", "/api/v1/audit/prune", Some(json!({}))).await;
    assert_eq!(
        (&body["pruned_through"], &body["pruned"]),
        (&json!(3), &json!(1)),
        "{body}"
    );
    let (_, body) = call(&m, "admin", "POST", "/api/v1/audit/prune", Some(json!({}))).await;
    assert_eq!(
        (&body["pruned"], &body["archive"]),
        (&json!(0), &Value::Null),
        "{body}"
    );
    // The metric counts every entry ever committed, pruned ones included.
    assert_eq!(
        crate::metrics::scrape::read(&m.app).sensitive_audit_entries,
        count(&m)
    );
    assert_eq!(
        call(&m, "boss", "POST", "/api/v1/audit/prune", Some(json!({})))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
}
