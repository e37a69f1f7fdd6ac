//! TLS of the client: trusting a private CA ([`Client::with_ca_pem`]) and telling a failed TLS
//! handshake apart from an unreachable server ([`TlsFailure::of`]), so that the caller can say
//! what to fix.
//!
//! Without a CA the client trusts the built-in web roots (Mozilla's, through webpki-roots);
//! with one it trusts that bundle *only*, as `curl --cacert` does: a cluster CA should not be
//! mixed with the public ones.

use std::error::Error as _;
use std::time::Duration;

use crate::{Client, ClientError};

/// The settings of every client's connection pool, with or without a CA.
pub(crate) fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .pool_idle_timeout(Duration::from_secs(60))
}

impl Client {
    /// The same client, trusting for https:// endpoints only the CA certificate(s) of the PEM
    /// bundle `pem` instead of the built-in roots. `ClientError::Config` when `pem` holds no
    /// certificate or an invalid one.
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<Self, ClientError> {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| ClientError::Config(format!("CA bundle: {e}")))?;
        if certs.is_empty() {
            return Err(ClientError::Config(
                "CA bundle: no PEM certificate in it".into(),
            ));
        }
        let mut b = builder().tls_built_in_root_certs(false);
        for c in certs {
            b = b.add_root_certificate(c);
        }
        self.http = b
            .build()
            .map_err(|e| ClientError::Config(format!("CA bundle: {e}")))?;
        Ok(self)
    }
}

/// Why a TLS connection could not be set up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsFailure {
    #[error("the server's certificate is not signed by a trusted CA")]
    UnknownCa,
    #[error("the server's certificate is not valid for this host name or address")]
    WrongName,
    #[error("the server's certificate has expired or is not valid yet")]
    Expired,
    /// An https:// URL to a server that answers in plain HTTP.
    #[error("the server does not speak TLS (an http:// endpoint?)")]
    NotTls,
    #[error("{0}")]
    Other(String),
}

impl TlsFailure {
    /// The TLS failure behind a reqwest error, if that is what it is.
    pub(crate) fn of(e: &reqwest::Error) -> Option<TlsFailure> {
        let mut next: Option<&(dyn std::error::Error + 'static)> = e.source();
        while let Some(err) = next {
            if let Some(t) = err.downcast_ref::<rustls::Error>() {
                return Some(Self::from_rustls(t));
            }
            next = cause(err);
        }
        None
    }

    fn from_rustls(e: &rustls::Error) -> TlsFailure {
        use rustls::CertificateError as C;
        match e {
            rustls::Error::InvalidCertificate(c) => match c {
                C::UnknownIssuer | C::BadSignature => TlsFailure::UnknownCa,
                C::NotValidForName | C::NotValidForNameContext { .. } => TlsFailure::WrongName,
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. } => TlsFailure::Expired,
                other => TlsFailure::Other(format!("invalid server certificate: {other:?}")),
            },
            rustls::Error::InvalidMessage(_) => TlsFailure::NotTls,
            other => TlsFailure::Other(other.to_string()),
        }
    }
}

/// The error behind `err`. An `io::Error`'s `source()` skips its payload (it returns the
/// payload's source), and tokio-rustls hands rustls errors on as such payloads: look inside.
fn cause<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    match err.downcast_ref::<std::io::Error>() {
        Some(io) => match io.get_ref() {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => io.source(),
        },
        None => err.source(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_errors_map_to_what_to_fix() {
        use rustls::CertificateError as C;
        let cases = [
            (C::UnknownIssuer, TlsFailure::UnknownCa),
            (C::NotValidForName, TlsFailure::WrongName),
            (C::Expired, TlsFailure::Expired),
        ];
        for (c, want) in cases {
            let e = rustls::Error::InvalidCertificate(c);
            assert_eq!(TlsFailure::from_rustls(&e), want);
            // Wrapped in io::Errors, as tokio-rustls and the connector hand it on.
            let io = std::io::Error::new(std::io::ErrorKind::InvalidData, e);
            let outer = std::io::Error::other(io);
            let inner = cause(&outer).expect("the payload");
            let found = cause(inner).and_then(|e| e.downcast_ref::<rustls::Error>());
            assert_eq!(found.map(TlsFailure::from_rustls), Some(want));
        }
        let plain = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert_eq!(TlsFailure::from_rustls(&plain), TlsFailure::NotTls);
    }

    #[test]
    fn a_ca_bundle_without_certificates_is_a_config_error() {
        let c = Client::new(&["https://127.0.0.1:1"]).expect("client");
        for junk in [&b""[..], b"not PEM", b"-----BEGIN CERTIFICATE-----\nxx\n"] {
            let e = c.clone().with_ca_pem(junk).expect_err("refused");
            assert!(matches!(e, ClientError::Config(_)), "{e:?}");
        }
    }
}
