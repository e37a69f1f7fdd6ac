//! TLS of a member: HTTPS on the API port and this member's own HTTPS clients.
//!
//! - [`server_config`] loads `server.tls_cert_file` (PEM chain, leaf first) and
//!   `server.tls_key_file` (PEM PKCS#8, PKCS#1 or SEC1 key) into a rustls configuration;
//!   [`serve`] serves the API with it through axum-server, with the same graceful shutdown as
//!   the plain path (`axum::serve`), and answers plain HTTP on that port with a 400
//!   ([`plain_http`]).
//! - [`http_client`] builds the reqwest clients this member uses to call other members (Raft
//!   RPCs, forwarding to the leader, join): with `server.tls_ca_file` they trust that CA bundle
//!   *instead of* the built-in web roots.
//!
//! docs/tls.md is the operator's side of this.

pub mod plain_http;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ServerConfig;

/// Why the TLS settings cannot be used; each names the configuration key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {}: {source}", path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{key}: {} holds no PEM {what}", path.display())]
    Empty {
        key: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error("{key}: {} is not valid PEM: {detail}", path.display())]
    Pem {
        key: &'static str,
        path: PathBuf,
        detail: String,
    },
    /// The key does not belong to the certificate, or rustls refuses them.
    #[error("server.tls_cert_file / server.tls_key_file: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot build the HTTPS client: {0}")]
    Client(String),
}

/// How long a new connection may take to send its first byte and finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

/// The rustls server configuration for `cert` (chain) and `key`, with rustls's safe defaults
/// (TLS 1.2 and 1.3) and ALPN for HTTP/2 and HTTP/1.1.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    const CERT: &str = "server.tls_cert_file";
    const KEY: &str = "server.tls_key_file";
    let pem_error =
        |key: &'static str, path: &Path, e: rustls::pki_types::pem::Error| TlsError::Pem {
            key,
            path: path.to_path_buf(),
            detail: e.to_string(),
        };
    let chain = CertificateDer::pem_slice_iter(&read(CERT, cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(CERT, cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::Empty {
            key: CERT,
            path: cert.to_path_buf(),
            what: "certificate",
        });
    }
    let private = match PrivateKeyDer::from_pem_slice(&read(KEY, key)?) {
        Ok(k) => k,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            return Err(TlsError::Empty {
                key: KEY,
                path: key.to_path_buf(),
                what: "private key",
            })
        }
        Err(e) => return Err(pem_error(KEY, key, e)),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, private)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The certificates of the PEM bundle `path` (for the key `key`), at least one.
pub fn ca_bundle(key: &'static str, path: &Path) -> Result<Vec<reqwest::Certificate>, TlsError> {
    let certs =
        reqwest::Certificate::from_pem_bundle(&read(key, path)?).map_err(|e| TlsError::Pem {
            key,
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            key,
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// A client for calls to other members: `connect_timeout`, and with `server.tls_ca_file` only
/// that CA bundle trusted for https:// URLs (plain http:// URLs, e.g. agents, work as before).
pub fn http_client(
    cfg: &ServerConfig,
    connect_timeout: Duration,
) -> Result<reqwest::Client, TlsError> {
    let mut b = reqwest::Client::builder().connect_timeout(connect_timeout);
    if let Some(path) = &cfg.tls_ca_file {
        b = b.tls_built_in_root_certs(false);
        for c in ca_bundle("server.tls_ca_file", path)? {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| TlsError::Client(e.to_string()))
}

/// `e` and its causes, `: `-separated. reqwest's own message omits them, and they are what
/// says why a call failed (e.g. `invalid peer certificate: UnknownIssuer`).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let more = cause.to_string();
        if !text.ends_with(&more) {
            text = format!("{text}: {more}");
        }
        next = cause.source();
    }
    text
}

/// Serves `router` over TLS on `listener` until `shutdown` resolves, then stops accepting and
/// waits for open requests to finish (as `axum::serve(..).with_graceful_shutdown` does).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    config: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::<SocketAddr>::new();
    let acceptor = RustlsAcceptor::new(RustlsConfig::from_config(config))
        .handshake_timeout(HANDSHAKE_TIMEOUT)
        .acceptor(plain_http::RefusePlainHttp);
    let server = axum_server::Server::from_listener(listener)
        .acceptor(acceptor)
        .handle(handle.clone())
        .accept_error_handler(|peer: Option<&SocketAddr>, e: &std::io::Error| {
            // Failed handshakes (an untrusted certificate, plain HTTP) are the client's
            // problem, not the member's; they are worth a line for whoever debugs the client.
            let peer = peer.map(ToString::to_string).unwrap_or_default();
            if e.kind() == std::io::ErrorKind::InvalidData {
                tracing::info!(%peer, error = %e, "TLS connection refused");
            } else {
                tracing::debug!(%peer, error = %e, "TLS connection failed");
            }
        });
    let serving = server.serve(router.into_make_service());
    tokio::pin!(serving);
    tokio::select! {
        r = &mut serving => return r,
        () = shutdown => {}
    }
    handle.graceful_shutdown(None);
    serving.await
}

#[cfg(test)]
mod tests;
