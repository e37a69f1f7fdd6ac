//! `lattice tls init --dir DIR [--host H ...]`: a test CA and a server certificate signed by
//! it, for trying HTTPS (docs/tls.md has the `openssl` equivalent). Writes `ca.pem`,
//! `ca-key.pem`, `server.pem` and `server-key.pem` (keys mode 0600). A convenience for tests
//! and labs, not a PKI: a production cluster takes its certificates from its own CA.
//!
//! Exit codes: 0 written, 1 the files could not be written, 2 bad flags or files that exist
//! (without `--force`); nothing is written then.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

#[derive(clap::Args, Debug)]
pub struct TlsArgs {
    #[command(subcommand)]
    cmd: TlsCmd,
}

#[derive(clap::Subcommand, Debug)]
enum TlsCmd {
    /// Write a test CA (ca.pem, ca-key.pem) and a server certificate signed by it (server.pem,
    /// server-key.pem) into DIR.
    Init(InitArgs),
}

#[derive(clap::Args, Debug)]
struct InitArgs {
    /// Directory to write into (created if missing).
    #[arg(long)]
    dir: PathBuf,
    /// Host name or IP address the server certificate is valid for (repeatable); list every
    /// name and address members, agents and users reach the members by.
    #[arg(long = "host", default_values = ["localhost", "127.0.0.1", "::1"])]
    hosts: Vec<String>,
    /// Days both certificates are valid.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// Replace files that exist.
    #[arg(long)]
    force: bool,
}

/// Why `tls init` wrote nothing, or not everything.
#[derive(Debug, thiserror::Error)]
enum InitError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate the certificates: {0}")]
    Cert(#[from] rcgen::Error),
}

const CA_PEM: &str = "ca.pem";
const CA_KEY: &str = "ca-key.pem";
const SERVER_PEM: &str = "server.pem";
const SERVER_KEY: &str = "server-key.pem";

/// The four PEM texts.
struct Generated {
    ca: String,
    ca_key: String,
    server: String,
    server_key: String,
}

pub fn run(args: TlsArgs) -> i32 {
    let TlsCmd::Init(a) = args.cmd;
    match init(&a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            if matches!(e, InitError::Usage(_)) {
                2
            } else {
                1
            }
        }
    }
}

fn init(a: &InitArgs) -> Result<(), InitError> {
    for h in &a.hosts {
        check_host(h)?;
    }
    let files = [CA_PEM, CA_KEY, SERVER_PEM, SERVER_KEY].map(|f| a.dir.join(f));
    let existing: Vec<String> = files
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !a.force && !existing.is_empty() {
        return Err(InitError::Usage(format!(
            "{} already exist(s); pass --force to replace",
            existing.join(", ")
        )));
    }
    let g = generate(&a.hosts, a.days, time::OffsetDateTime::now_utc())?;
    std::fs::create_dir_all(&a.dir).map_err(|source| InitError::Io {
        path: a.dir.clone(),
        source,
    })?;
    let [ca, ca_key, server, server_key] = files;
    write(&ca, &g.ca, 0o644)?;
    write(&ca_key, &g.ca_key, 0o600)?;
    write(&server, &g.server, 0o644)?;
    write(&server_key, &g.server_key, 0o600)?;
    let show = |p: &Path| p.display().to_string();
    println!(
        "wrote {}, {}, {}, {} (server certificate for {}; valid {} days)",
        show(&ca),
        show(&ca_key),
        show(&server),
        show(&server_key),
        a.hosts.join(", "),
        a.days
    );
    println!("serve HTTPS:   LATTICE_SERVER__TLS_CERT_FILE={} LATTICE_SERVER__TLS_KEY_FILE={} lattice server ...", show(&server), show(&server_key));
    println!("trust it:      LATTICE_CA_FILE={} (CLI), LATTICE_AGENT__TLS_CA_FILE (agents), LATTICE_SERVER__TLS_CA_FILE (members)", show(&ca));
    Ok(())
}

/// An IP address or a DNS name (letters, digits, '-', '.', a leading "*." wildcard).
fn check_host(h: &str) -> Result<(), InitError> {
    if h.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let name = h.strip_prefix("*.").unwrap_or(h);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(InitError::Usage(format!(
            "--host {h:?}: not an IP address or a DNS name"
        )))
    }
}

/// A CA (ECDSA P-256, may sign end-entity certificates only) and a server certificate for
/// `hosts`, both valid from an hour before `now` (clock skew) for `days` days.
fn generate(
    hosts: &[String],
    days: u32,
    now: time::OffsetDateTime,
) -> Result<Generated, InitError> {
    let not_before = now - time::Duration::hours(1);
    let not_after = now + time::Duration::days(i64::from(days));

    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::OrganizationName, "Lattice");
    ca.distinguished_name
        .push(DnType::CommonName, "Lattice test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

    let mut server = CertificateParams::new(hosts.to_vec())?;
    let first = hosts.first().map(String::as_str).unwrap_or("lattice");
    server
        .distinguished_name
        .push(DnType::OrganizationName, "Lattice");
    server.distinguished_name.push(DnType::CommonName, first);
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    server.not_before = not_before;
    server.not_after = not_after;
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &ca)?;

    Ok(Generated {
        ca: ca.pem(),
        ca_key: ca.key().serialize_pem(),
        server: server_cert.pem(),
        server_key: server_key.serialize_pem(),
    })
}

/// Writes `text` to `path` with permissions `mode` (also when the file existed).
fn write(path: &Path, text: &str, mode: u32) -> Result<(), InitError> {
    let io = |source| InitError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path, hosts: &[&str], force: bool) -> InitArgs {
        InitArgs {
            dir: dir.to_path_buf(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            days: 30,
            force,
        }
    }

    #[test]
    fn init_writes_a_pair_the_server_loads_with_private_keys() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("tls");
        init(&args(&dir, &["127.0.0.1", "localhost"], false)).expect("init");
        for (f, mode) in [
            (CA_PEM, 0o644),
            (CA_KEY, 0o600),
            (SERVER_PEM, 0o644),
            (SERVER_KEY, 0o600),
        ] {
            let meta = std::fs::metadata(dir.join(f)).expect("written");
            assert_eq!(meta.permissions().mode() & 0o777, mode, "{f}");
        }
        lattice_server::tls::server_config(&dir.join(SERVER_PEM), &dir.join(SERVER_KEY))
            .expect("the server loads the pair");
        let ca = std::fs::read(dir.join(CA_PEM)).expect("ca");
        lattice_client::Client::new(&["https://127.0.0.1:1"])
            .expect("client")
            .with_ca_pem(&ca)
            .expect("the client takes the CA");
    }

    #[test]
    fn existing_files_and_bad_hosts_are_usage_errors_and_write_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        for bad in ["", "a b", "-x.example", "host:8443", "x..y"] {
            let e = init(&args(dir, &[bad], false)).expect_err(bad);
            assert!(matches!(e, InitError::Usage(_)), "{bad}: {e}");
        }
        assert!(!dir.join(CA_PEM).exists());
        init(&args(dir, &["localhost"], false)).expect("first");
        let before = std::fs::read(dir.join(CA_PEM)).expect("ca");
        let e = init(&args(dir, &["localhost"], false)).expect_err("exists");
        assert!(e.to_string().contains("--force"), "{e}");
        assert_eq!(std::fs::read(dir.join(CA_PEM)).expect("ca"), before);
        init(&args(dir, &["localhost"], true)).expect("forced");
        assert_ne!(std::fs::read(dir.join(CA_PEM)).expect("ca"), before);
    }
}
