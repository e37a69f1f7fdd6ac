//! Loading the TLS settings: what works, and errors that name the key.

use std::path::Path;

use super::*;

/// (CA PEM, server chain PEM, server key PEM) for 127.0.0.1.
fn pems() -> (String, String, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().expect("CA key"))
            .expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("signed");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn a_matching_pair_loads_and_a_ca_bundle_builds_a_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = pems();
    let cfg = server_config(
        &write(dir.path(), "c.pem", &cert),
        &write(dir.path(), "k.pem", &key),
    )
    .expect("loads");
    assert_eq!(cfg.alpn_protocols.len(), 2);
    let member = ServerConfig {
        tls_ca_file: Some(write(dir.path(), "ca.pem", &ca)),
        ..ServerConfig::default()
    };
    http_client(&member, Duration::from_secs(1)).expect("client");
}

#[test]
fn bad_files_are_errors_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, cert, key) = pems();
    let (_, _, other_key) = pems();
    let cert_file = write(dir.path(), "c.pem", &cert);
    let key_file = write(dir.path(), "k.pem", &key);
    let junk = write(dir.path(), "junk.pem", "not a certificate\n");
    let missing = dir.path().join("missing.pem");
    let cases = [
        (
            missing.clone(),
            key_file.clone(),
            "server.tls_cert_file: cannot read",
        ),
        (junk.clone(), key_file.clone(), "server.tls_cert_file"),
        (cert_file.clone(), junk.clone(), "server.tls_key_file"),
        (
            cert_file.clone(),
            missing.clone(),
            "server.tls_key_file: cannot read",
        ),
        // A key that does not belong to the certificate.
        (
            cert_file.clone(),
            write(dir.path(), "other.pem", &other_key),
            "server.tls_cert_file / server.tls_key_file",
        ),
        // The key file given as the certificate: no certificate in it.
        (
            key_file.clone(),
            key_file.clone(),
            "holds no PEM certificate",
        ),
    ];
    for (c, k, want) in cases {
        let e = server_config(&c, &k).expect_err("refused").to_string();
        assert!(e.contains(want), "{c:?} {k:?}: {e}");
    }
    let e = ca_bundle("server.tls_ca_file", &junk)
        .expect_err("no certificate")
        .to_string();
    assert!(e.starts_with("server.tls_ca_file: "), "{e}");
}

#[test]
fn an_error_chain_shows_every_cause_once() {
    let inner = std::io::Error::other("invalid peer certificate: UnknownIssuer");
    let outer = std::io::Error::new(std::io::ErrorKind::InvalidData, inner);
    assert_eq!(
        error_chain(&outer),
        "invalid peer certificate: UnknownIssuer"
    );
    #[derive(Debug, thiserror::Error)]
    #[error("error sending request")]
    struct Send(#[source] std::io::Error);
    let e = Send(std::io::Error::other("client error (Connect)"));
    assert_eq!(
        error_chain(&e),
        "error sending request: client error (Connect)"
    );
}
