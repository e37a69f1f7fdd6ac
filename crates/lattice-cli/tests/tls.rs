//! HTTPS on the API port, through the real binary: `lattice tls init` makes a CA and a server
//! certificate, a member serves HTTPS with them, and then
//! - the CLI trusting that CA works; trusting another CA (or none) it fails with one clear line;
//! - plain HTTP to the port gets a 400 naming https://, and the member keeps serving;
//! - an agent trusting the CA registers its node, one trusting another CA says why it cannot;
//! - a member trusting the CA joins another over HTTPS (Raft RPCs, join, forwarding);
//! - `https://` to a member serving plain HTTP fails with a line saying so.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// `lattice tls init --dir DIR` for 127.0.0.1 and localhost; panics unless it succeeded.
fn tls_init(dir: &Path) {
    let out = Command::new(BIN)
        .args(["tls", "init", "--dir", &path_str(dir)])
        .args(["--host", "127.0.0.1", "--host", "localhost"])
        .output()
        .expect("run lattice tls init");
    assert!(
        out.status.success(),
        "tls init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A blocking HTTPS client that trusts only the CA in `ca`.
fn https(ca: &Path) -> reqwest::blocking::Client {
    let pem = std::fs::read(ca).expect("read CA");
    reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA PEM"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Starts a bootstrapped member on an ephemeral port serving HTTPS with the files `tls init`
/// wrote to `tls`; waits until `/healthz` answers over HTTPS. `url` is `https://127.0.0.1:PORT`.
fn start_tls_server(data_dir: &Path, tls: &Path) -> Proc {
    start_tls_member(data_dir, tls, &["--bootstrap"], &[])
}

/// Starts `lattice server ARGS` (plus an ephemeral port and `data_dir`) with `env`, serving
/// HTTPS as [`start_tls_server`] does.
fn start_tls_member(data_dir: &Path, tls: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let cert = path_str(&tls.join("server.pem"));
    let key = path_str(&tls.join("server-key.pem"));
    let data = path_str(data_dir);
    let mut all_args = vec!["server", "--api-addr", "127.0.0.1:0", "--data-dir", &data];
    all_args.extend_from_slice(args);
    let mut all_env = vec![
        ("LATTICE_SERVER__TLS_CERT_FILE", cert.as_str()),
        ("LATTICE_SERVER__TLS_KEY_FILE", key.as_str()),
        // TLS is what is tested here; tokens are the subject of the auth tests.
        ("LATTICE_SERVER__AUTH__ENABLED", "false"),
    ];
    all_env.extend_from_slice(env);
    let mut p = spawn(&all_args, &all_env, "lattice server listening on ");
    p.url = format!("https://{}", p.url);
    let client = https(&tls.join("ca.pem"));
    let health = format!("{}/healthz", p.url);
    wait_for(30, "healthz over HTTPS", || {
        let r = client.get(&health).send().ok()?;
        (r.status().as_u16() == 200).then_some(())
    });
    p
}

/// `lattice ARGS` with only `env` of the client settings; (exit code, stdout, stderr).
fn lattice(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("LATTICE_ENDPOINT")
        .env_remove("LATTICE_CA_FILE")
        .envs(env.iter().copied())
        .output()
        .expect("run lattice");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts that `lattice ARGS` failed with exit code 1 and one stderr line containing every
/// one of `want`.
fn fails_with(args: &[&str], env: &[(&str, &str)], want: &[&str]) {
    let (code, out, err) = lattice(args, env);
    assert_eq!(code, 1, "lattice {args:?} {env:?}: {out} {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for w in want {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
}

#[test]
fn the_cli_needs_the_right_ca_and_plain_http_is_refused_cleanly() {
    let dir = tempdir();
    let (tls, other) = (dir.path().join("tls"), dir.path().join("other"));
    tls_init(&tls);
    tls_init(&other);
    let server = start_tls_server(&dir.path().join("server"), &tls);
    assert!(
        server
            .output_text()
            .contains("advertised as https://127.0.0.1:"),
        "{}",
        server.output_text()
    );
    let ca = path_str(&tls.join("ca.pem"));
    let wrong_ca = path_str(&other.join("ca.pem"));
    let api = server.url.as_str();

    // The right CA, from the environment or the flag.
    let (code, out, err) = lattice(
        &["nodes"],
        &[("LATTICE_ENDPOINT", api), ("LATTICE_CA_FILE", &ca)],
    );
    assert_eq!(code, 0, "{out} {err}");
    let (code, out, err) = lattice(&["--endpoint", api, "--ca-file", &ca, "status"], &[]);
    assert_eq!(code, 0, "{out} {err}");

    // Another CA, or only the built-in web roots: one line saying what to set.
    let untrusted = ["not signed by a trusted CA", "--ca-file", "LATTICE_CA_FILE"];
    fails_with(
        &["nodes"],
        &[("LATTICE_ENDPOINT", api), ("LATTICE_CA_FILE", &wrong_ca)],
        &untrusted,
    );
    fails_with(&["nodes"], &[("LATTICE_ENDPOINT", api)], &untrusted);
    let (code, _, err) = lattice(
        &["nodes"],
        &[
            ("LATTICE_ENDPOINT", api),
            ("LATTICE_CA_FILE", "/nonexistent/ca.pem"),
        ],
    );
    assert_eq!(code, 2, "an unreadable CA file is a usage error: {err}");
    assert!(err.contains("--ca-file"), "{err}");

    // Plain HTTP to the HTTPS port: a 400 naming https://, from the CLI and a raw socket.
    let plain = api.replacen("https://", "http://", 1);
    fails_with(
        &["nodes"],
        &[("LATTICE_ENDPOINT", &plain)],
        &["this port serves HTTPS", "https://", "HTTP 400"],
    );
    let addr = api.trim_start_matches("https://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("the member answers");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(
        answer.contains(r#""error":"this port serves HTTPS"#),
        "{answer}"
    );

    // ... and the member keeps serving HTTPS.
    let r = https(&tls.join("ca.pem"))
        .get(format!("{api}/healthz"))
        .send()
        .expect("HTTPS after plain HTTP");
    assert_eq!(r.status().as_u16(), 200);
    let (code, out, err) = lattice(
        &["nodes"],
        &[("LATTICE_ENDPOINT", api), ("LATTICE_CA_FILE", &ca)],
    );
    assert_eq!(code, 0, "{out} {err}");
}

#[test]
fn an_agent_trusting_the_ca_registers_and_one_trusting_another_says_why_not() {
    let dir = tempdir();
    let (tls, other) = (dir.path().join("tls"), dir.path().join("other"));
    tls_init(&tls);
    tls_init(&other);
    let server = start_tls_server(&dir.path().join("server"), &tls);
    let ca = path_str(&tls.join("ca.pem"));
    let wrong_ca = path_str(&other.join("ca.pem"));

    let _good = start_agent(
        &server.url,
        "tls",
        1,
        &dir.path().join("agent"),
        &[("LATTICE_AGENT__TLS_CA_FILE", &ca)],
    );
    let bad = start_agent(
        &server.url,
        "untrusting",
        1,
        &dir.path().join("agent-bad"),
        &[("LATTICE_AGENT__TLS_CA_FILE", &wrong_ca)],
    );
    let client = https(&tls.join("ca.pem"));
    let nodes_url = format!("{}/api/v1/nodes", server.url);
    let nodes = || -> Option<serde_json::Value> { client.get(&nodes_url).send().ok()?.json().ok() };
    wait_for(30, "node `tls` ready", || {
        let v = nodes()?;
        let ready = v["nodes"]
            .as_array()?
            .iter()
            .any(|n| n["id"] == "tls" && n["state"] == "ready");
        ready.then_some(())
    });
    wait_for(
        30,
        "the untrusting agent to log why it cannot register",
        || {
            bad.output_text()
                .contains("not signed by a trusted CA")
                .then_some(())
        },
    );
    let v = nodes().expect("nodes");
    let ids: Vec<&str> = v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    assert_eq!(ids, ["tls"], "the untrusting agent registered nothing");
}

#[test]
fn https_to_a_member_serving_plain_http_says_it_does_not_speak_tls() {
    let dir = tempdir();
    let server = start_server(&dir.path().join("server"), "127.0.0.1:0", &[]);
    let endpoint = server.url.replacen("http://", "https://", 1);
    fails_with(
        &["nodes"],
        &[("LATTICE_ENDPOINT", &endpoint)],
        &["TLS: the server does not speak TLS"],
    );
}

#[test]
fn a_member_trusting_the_ca_joins_over_https_and_forwards_writes_to_the_leader() {
    let dir = tempdir();
    let tls = dir.path().join("tls");
    tls_init(&tls);
    let ca = path_str(&tls.join("ca.pem"));
    let env = [
        ("LATTICE_SERVER__CLUSTER_SECRET", "test-secret"),
        ("LATTICE_SERVER__TLS_CA_FILE", ca.as_str()),
    ];
    let m1 = start_tls_member(
        &dir.path().join("m1"),
        &tls,
        &["--node-id", "1", "--bootstrap"],
        &env,
    );
    let m2 = start_tls_member(
        &dir.path().join("m2"),
        &tls,
        &["--node-id", "2", "--join", &m1.url],
        &env,
    );
    let client = https(&tls.join("ca.pem"));
    let status = format!("{}/api/v1/raft/status", m2.url);
    wait_for(60, "member 2 to see 2 voters and leader 1", || {
        let s: serde_json::Value = client.get(&status).send().ok()?.json().ok()?;
        let voters = s["members"]
            .as_array()?
            .iter()
            .filter(|m| {
                let https = m["url"].as_str().is_some_and(|u| u.starts_with("https://"));
                m["voter"] == true && https
            })
            .count();
        (voters == 2 && s["leader"] == 1).then_some(())
    });
    // A write sent to the follower reaches the leader over HTTPS.
    let r = client
        .post(format!("{}/api/v1/allocations", m2.url))
        .json(&serde_json::json!({"command": ["true"]}))
        .send()
        .expect("submit through member 2");
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text());
    // The leader first: stopped last, it would wait out the write timeout of a write that can
    // no longer commit without member 2.
    drop(m1);
    drop(m2);
}
