//! The CA bundle that client commands (and `bench`) trust for https:// endpoints:
//! `--ca-file` / `LATTICE_CA_FILE`. `main` sets it once from the global flag; every client this
//! process builds reads it here. A process-wide setting, so that the client subcommands keep
//! taking just the endpoint.

use std::path::PathBuf;
use std::sync::OnceLock;

use lattice_client::{Client, ClientError, TlsFailure};

static CA_FILE: OnceLock<PathBuf> = OnceLock::new();

/// Sets the CA file for the rest of the process (the first call wins).
pub fn set(path: PathBuf) {
    let _ = CA_FILE.set(path);
}

/// `client` trusting the CA file when one is set; the error is a one-line usage message.
pub fn trust(client: Client) -> Result<Client, String> {
    let Some(path) = CA_FILE.get() else {
        return Ok(client);
    };
    let pem = std::fs::read(path)
        .map_err(|e| format!("--ca-file: cannot read {}: {e}", path.display()))?;
    client
        .with_ca_pem(&pem)
        .map_err(|e| format!("--ca-file: {}: {e}", path.display()))
}

/// The one line to print for a client error: a TLS failure says what to set.
pub fn explain(e: &ClientError) -> String {
    match e {
        ClientError::Tls {
            reason: TlsFailure::UnknownCa,
            ..
        } => format!("{e}; set --ca-file / LATTICE_CA_FILE to the cluster's CA bundle"),
        ClientError::Tls {
            reason: TlsFailure::WrongName,
            ..
        } => format!("{e}; the --endpoint host must be one the certificate names"),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_ca_names_the_flag_and_the_variable() {
        let e = ClientError::Tls {
            endpoint: "https://127.0.0.1:8443".into(),
            reason: TlsFailure::UnknownCa,
        };
        let line = explain(&e);
        assert!(line.starts_with("TLS: the server's certificate is not signed by a trusted CA"));
        assert!(
            line.contains("--ca-file") && line.contains("LATTICE_CA_FILE"),
            "{line}"
        );
        assert!(!line.contains('\n'));
        let other = ClientError::Transport("down".into());
        assert_eq!(explain(&other), other.to_string());
    }
}
