//! `lattice acl bootstrap`, `lattice token create|list|revoke` and `lattice whoami`.
//!
//! Secrets go to standard output alone (one line), everything else to standard error, so
//! `export LATTICE_TOKEN=$(lattice token create ...)` works.

use clap::{Args, Subcommand};
use lattice_client::TokenRequest;
use lattice_core::Timestamp;
use serde_json::Value;

use super::duration::parse_seconds;
use super::output::{out, out_json};
use super::table::{format_time, Align, Table};
use super::{connect, credentials, CmdError};

#[derive(Args, Debug)]
pub struct AclArgs {
    #[command(subcommand)]
    pub cmd: AclCmd,
}

#[derive(Subcommand, Debug)]
pub enum AclCmd {
    /// Create the cluster's first admin token (once per cluster) and print its secret.
    Bootstrap {
        /// Use the secret in this file instead of a generated one.
        #[arg(long)]
        token_file: Option<std::path::PathBuf>,
        /// Also write the secret to ~/.config/lattice/token (mode 0600).
        #[arg(long)]
        save: bool,
        #[arg(short = 'o', long, default_value = "secret", value_parser = ["secret", "json"])]
        output: String,
    },
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub cmd: TokenCmd,
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token and print its secret (shown once).
    Create {
        /// The user (or agent) name its requests act as.
        #[arg(long)]
        subject: String,
        /// admin, operator, user, tenant-admin (a user who also sees the tenants' whole audit
        /// log and may release their claims) or agent.
        #[arg(long, value_parser = ["admin", "operator", "user", "tenant-admin", "agent"])]
        role: String,
        /// For user and tenant-admin tokens: a tenant it may use (repeat for several).
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// For agent tokens: a node it may act for, or a prefix ending in * (repeatable).
        #[arg(long = "node")]
        nodes: Vec<String>,
        /// Lifetime, e.g. 3600, 90m, 12h, 30d.
        #[arg(long)]
        expires: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(short = 'o', long, default_value = "secret", value_parser = ["secret", "json"])]
        output: String,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(short = 'o', long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Revoke a token by its ID (tok-...).
    Revoke { id: String },
}

fn print_secret(v: &Value, output: &str) -> Result<(), CmdError> {
    if output == "json" {
        return out_json(v);
    }
    let secret = v["secret"].as_str().unwrap_or_default();
    eprintln!(
        "token {} for {} (role {}); the secret below is shown only once:",
        v["id"].as_str().unwrap_or("?"),
        v["subject"].as_str().unwrap_or("?"),
        v["role"].as_str().unwrap_or("?"),
    );
    out(&format!("{secret}\n"))
}

pub async fn run_acl(args: AclArgs, endpoint: &str) -> Result<(), CmdError> {
    match args.cmd {
        AclCmd::Bootstrap {
            token_file,
            save,
            output,
        } => {
            let chosen = match token_file {
                Some(p) => Some(
                    std::fs::read_to_string(&p)
                        .map_err(|e| {
                            CmdError::Usage(format!(
                                "cannot read --token-file {}: {e}",
                                p.display()
                            ))
                        })?
                        .trim()
                        .to_string(),
                ),
                None => None,
            };
            let v = connect(endpoint)?.acl_bootstrap(chosen.as_deref()).await?;
            if save {
                let path = credentials::save(v["secret"].as_str().unwrap_or_default())?;
                eprintln!("saved to {}", path.display());
            }
            print_secret(&v, &output)
        }
    }
}

pub async fn run_token(args: TokenArgs, endpoint: &str) -> Result<(), CmdError> {
    let client = connect(endpoint)?;
    match args.cmd {
        TokenCmd::Create {
            subject,
            role,
            tenants,
            nodes,
            expires,
            description,
            output,
        } => {
            let expires_in_seconds = match expires {
                Some(e) => Some(
                    parse_seconds(&e).map_err(|m| CmdError::Usage(format!("--expires: {m}")))?,
                ),
                None => None,
            };
            let v = client
                .create_token(&TokenRequest {
                    subject,
                    role,
                    tenants,
                    nodes,
                    description,
                    expires_in_seconds,
                })
                .await?;
            print_secret(&v, &output)
        }
        TokenCmd::List { output } => {
            let v = client.list_tokens().await?;
            if output == "json" {
                return out_json(&v);
            }
            out(&token_table(&v["tokens"], super::output::now()))
        }
        TokenCmd::Revoke { id } => {
            let v = client.revoke_token(&id).await?;
            out(&format!(
                "revoked {} ({})\n",
                v["id"].as_str().unwrap_or("?"),
                v["subject"].as_str().unwrap_or("?")
            ))
        }
    }
}

pub async fn run_whoami(endpoint: &str) -> Result<(), CmdError> {
    let v = connect(endpoint)?.whoami().await?;
    out_json(&v)
}

fn time(v: &Value) -> String {
    v.as_str()
        .and_then(Timestamp::parse)
        .map_or_else(|| "-".to_string(), format_time)
}

fn token_table(tokens: &Value, now: Timestamp) -> String {
    let mut t = Table::new(vec![
        ("ID", Align::Left),
        ("SUBJECT", Align::Left),
        ("ROLE", Align::Left),
        ("SCOPE", Align::Left),
        ("CREATED", Align::Left),
        ("EXPIRES", Align::Left),
        ("STATUS", Align::Left),
    ]);
    for tok in tokens.as_array().into_iter().flatten() {
        let list = |k: &str| -> Vec<String> {
            tok[k]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        };
        let scope = [list("tenants"), list("nodes")].concat().join(",");
        let expired = tok["expires_at"]
            .as_str()
            .and_then(Timestamp::parse)
            .is_some_and(|t| t <= now);
        let status = if !tok["revoked_at"].is_null() {
            format!("revoked by {}", tok["revoked_by"].as_str().unwrap_or("?"))
        } else if expired {
            "expired".to_string()
        } else {
            "active".to_string()
        };
        t.row(vec![
            tok["id"].as_str().unwrap_or("?").to_string(),
            tok["subject"].as_str().unwrap_or("?").to_string(),
            tok["role"].as_str().unwrap_or("?").to_string(),
            if scope.is_empty() { "*".into() } else { scope },
            time(&tok["created_at"]),
            time(&tok["expires_at"]),
            status,
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_token_table_shows_scope_and_status() {
        let now = Timestamp::parse("2026-11-24T12:00:00Z").unwrap();
        let tokens = json!([
            {"id": "tok-1", "subject": "alice", "role": "user", "tenants": ["physics"], "nodes": [],
             "created_at": "2026-11-01T00:00:00Z", "expires_at": null, "revoked_at": null},
            {"id": "tok-2", "subject": "old", "role": "operator", "tenants": [], "nodes": [],
             "created_at": "2026-11-01T00:00:00Z", "expires_at": "2026-11-02T00:00:00Z", "revoked_at": null},
            {"id": "tok-3", "subject": "rack", "role": "agent", "tenants": [], "nodes": ["r1-*"],
             "created_at": "2026-11-01T00:00:00Z", "expires_at": null,
             "revoked_at": "2026-11-03T00:00:00Z", "revoked_by": "admin"},
        ]);
        let t = token_table(&tokens, now);
        let line = |id: &str| t.lines().find(|l| l.starts_with(id)).unwrap().to_string();
        assert!(
            line("tok-1").contains("physics") && line("tok-1").ends_with("active"),
            "{t}"
        );
        assert!(
            line("tok-2").contains('*') && line("tok-2").ends_with("expired"),
            "{t}"
        );
        assert!(
            line("tok-3").contains("r1-*") && line("tok-3").ends_with("revoked by admin"),
            "{t}"
        );
    }
}
