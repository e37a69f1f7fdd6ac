//! `lattice audit`: the audit log of sensitive tenants.
//! - `query`: entries by tenant, time, user, allocation, node, action (table or JSON);
//! - `export`: every matching entry as JSON lines, ending with a line the member signed for
//!   the last entry (`{"signed_head": ...}`), for an auditor to keep and check offline;
//! - `verify`: checks an export (`--from-file`) or asks the member to check its whole store,
//!   and checks the Ed25519 signature over the chain head;
//! - `pubkey`: the cluster's audit public key; `prune`: run retention now (admins).

use std::io::Write;

use clap::{Args, Subcommand};
use lattice_core::audit::{entry_hash, head_message, AuditEntry, ChainBreak};
use lattice_core::Timestamp;
use serde_json::{json, Value};

use super::output::{out, out_json};
use super::table::{format_time, Align, Table};
use super::{connect, CmdError};

/// Entries per page when exporting.
const EXPORT_PAGE: u32 = 10_000;

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub cmd: AuditCmd,
}

/// Filters shared by `query` and `export` (the server validates them).
#[derive(Args, Debug, Default)]
pub struct Filters {
    #[arg(long)]
    pub tenant: Option<String>,
    /// From this time on: 2026-03-01 or RFC 3339.
    #[arg(long)]
    pub from: Option<String>,
    /// Before this time (a plain date: through the end of that day).
    #[arg(long)]
    pub to: Option<String>,
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub allocation: Option<String>,
    #[arg(long)]
    pub node: Option<String>,
    /// An action name, e.g. allocation.started, node.claimed, access.logs.
    #[arg(long)]
    pub action: Option<String>,
}

impl Filters {
    fn params(&self) -> Vec<(String, String)> {
        [
            ("tenant", &self.tenant),
            ("from", &self.from),
            ("to", &self.to),
            ("user", &self.user),
            ("allocation", &self.allocation),
            ("node", &self.node),
            ("action", &self.action),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone())))
        .collect()
    }
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Show entries (one page; --limit, --cursor for more).
    Query {
        #[command(flatten)]
        filters: Filters,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
        #[arg(short = 'o', long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Write every matching entry as JSON lines to standard output, then a signed trailer.
    Export {
        #[command(flatten)]
        filters: Filters,
    },
    /// Check the hash chain and the signature: of an export file, or of the member's store.
    Verify {
        /// An export written by `lattice audit export`.
        #[arg(long = "from-file")]
        from_file: Option<std::path::PathBuf>,
        /// The audit public key (hex) to check the signature with; default: the cluster's
        /// (`lattice audit pubkey`).
        #[arg(long)]
        pubkey: Option<String>,
    },
    /// Print the cluster's audit public key (Ed25519, hex).
    Pubkey,
    /// Run retention now: prune entries older than --before and than `audit.retention_days`.
    Prune {
        #[arg(long)]
        before: String,
    },
}

pub async fn run(args: AuditArgs, endpoint: &str) -> Result<(), CmdError> {
    match args.cmd {
        AuditCmd::Query {
            filters,
            limit,
            cursor,
            output,
        } => {
            let mut p = filters.params();
            if let Some(l) = limit {
                p.push(("limit".into(), l.to_string()));
            }
            if let Some(c) = cursor {
                p.push(("cursor".into(), c));
            }
            let v = connect(endpoint)?.audit_query(&p).await?;
            if output == "json" {
                return out_json(&v);
            }
            let mut text = entries_table(&v["entries"]);
            if let Some(c) = v["next_cursor"].as_str() {
                text.push_str(&format!("(more: --cursor {c})\n"));
            }
            out(&text)
        }
        AuditCmd::Export { filters } => export(filters, endpoint).await,
        AuditCmd::Verify { from_file, pubkey } => {
            // An export can be checked offline: then the cluster is only asked for its key.
            let offline = from_file.is_some();
            let client = match connect(endpoint) {
                Ok(c) => Some(c),
                Err(_) if offline => None,
                Err(e) => return Err(e),
            };
            let key = match (pubkey, &client) {
                (Some(k), _) => Some(k),
                (None, None) => None,
                (None, Some(c)) => match c.audit_pubkey().await {
                    Ok(v) => v["public_key"].as_str().map(String::from),
                    Err(_) if offline => None,
                    Err(e) => return Err(e.into()),
                },
            };
            match (from_file, client) {
                (Some(path), _) => verify_file(&path, key.as_deref()),
                (None, Some(c)) => verify_member(&c, key.as_deref()).await,
                (None, None) => Err(CmdError::Usage("no endpoint to verify".into())),
            }
        }
        AuditCmd::Pubkey => {
            let v = connect(endpoint)?.audit_pubkey().await?;
            out(&format!("{}\n", v["public_key"].as_str().unwrap_or("?")))
        }
        AuditCmd::Prune { before } => {
            let v = connect(endpoint)?.audit_prune(&before).await?;
            out_json(&v)
        }
    }
}

async fn export(filters: Filters, endpoint: &str) -> Result<(), CmdError> {
    let client = connect(endpoint)?;
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let mut cursor: Option<String> = None;
    let mut last: Option<u64> = None;
    let mut n = 0u64;
    loop {
        let mut p = filters.params();
        p.push(("limit".into(), EXPORT_PAGE.to_string()));
        if let Some(c) = &cursor {
            p.push(("cursor".into(), c.clone()));
        }
        let v = client.audit_query(&p).await?;
        for e in v["entries"].as_array().into_iter().flatten() {
            writeln!(w, "{e}").map_err(io)?;
            last = e["seq"].as_u64().or(last);
            n += 1;
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    if let Some(seq) = last {
        let signed = client.audit_sign(seq).await?;
        writeln!(w, "{}", json!({ "signed_head": signed })).map_err(io)?;
    }
    w.flush().map_err(io)?;
    eprintln!("exported {n} entries");
    Ok(())
}

fn io(e: std::io::Error) -> CmdError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        CmdError::Closed
    } else {
        CmdError::Io(format!("writing the export: {e}"))
    }
}

/// Checks an Ed25519 signature (all hex) over `head_message(seq, hash)`.
fn check_signature(key: &str, seq: u64, hash: &str, signature: &str) -> Result<(), String> {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let bytes = |s: &str, what: &str| -> Result<Vec<u8>, String> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(s.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<_, _>>()
            .map_err(|_| format!("the {what} is not hex"))
    };
    let key: [u8; 32] = bytes(key, "public key")?
        .try_into()
        .map_err(|_| "the public key is not 32 bytes".to_string())?;
    let sig: [u8; 64] = bytes(signature, "signature")?
        .try_into()
        .map_err(|_| "the signature is not 64 bytes".to_string())?;
    let key = VerifyingKey::from_bytes(&key).map_err(|e| format!("bad public key: {e}"))?;
    key.verify(&head_message(seq, hash), &Signature::from_bytes(&sig))
        .map_err(|_| format!("the signature over entry {seq} does not verify with this key"))
}

/// What checking an export found.
#[derive(Debug, PartialEq, Eq)]
struct FileCheck {
    entries: u64,
    /// Places where seq jumps (a filtered export): links across them are not checked.
    gaps: u64,
    /// The last entry's (seq, hash), if any.
    last: Option<(u64, String)>,
}

/// Checks every entry's hash and every link between consecutive entries of an export.
fn check_entries(text: &str) -> Result<(FileCheck, Option<Value>), ChainBreak> {
    let mut check = FileCheck {
        entries: 0,
        gaps: 0,
        last: None,
    };
    let mut trailer = None;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line).map_err(|e| ChainBreak {
            seq: 0,
            why: format!("line {} is not JSON: {e}", i + 1),
        })?;
        if let Some(h) = v.get("signed_head") {
            trailer = Some(h.clone());
            continue;
        }
        let e: AuditEntry = serde_json::from_value(v).map_err(|e| ChainBreak {
            seq: 0,
            why: format!("line {} is not an audit entry: {e}", i + 1),
        })?;
        if entry_hash(&e) != e.hash {
            return Err(ChainBreak {
                seq: e.seq,
                why: "its hash does not match its content (the entry was altered)".into(),
            });
        }
        match &check.last {
            Some((seq, _)) if e.seq <= *seq => {
                return Err(ChainBreak {
                    seq: e.seq,
                    why: format!("comes after entry {seq}: out of order or repeated"),
                })
            }
            Some((seq, hash)) if e.seq == seq + 1 && e.prev_hash != *hash => {
                return Err(ChainBreak {
                    seq: e.seq,
                    why: format!("prev_hash does not match the hash of entry {seq}"),
                })
            }
            Some((seq, _)) if e.seq != seq + 1 => check.gaps += 1,
            _ => {}
        }
        check.entries += 1;
        check.last = Some((e.seq, e.hash));
    }
    Ok((check, trailer))
}

fn verify_file(path: &std::path::Path, key: Option<&str>) -> Result<(), CmdError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CmdError::Usage(format!("cannot read {}: {e}", path.display())))?;
    let (check, trailer) =
        check_entries(&text).map_err(|b| CmdError::Failed(format!("verification failed: {b}")))?;
    let Some((seq, hash)) = check.last.clone() else {
        return Err(CmdError::Failed(format!(
            "{} holds no audit entries",
            path.display()
        )));
    };
    let Some(t) = trailer else {
        return Err(CmdError::Failed(format!(
            "{} has no signed trailer (was it cut short?); its {} entries' hashes and links are intact",
            path.display(),
            check.entries
        )));
    };
    if t["seq"].as_u64() != Some(seq) || t["hash"].as_str() != Some(hash.as_str()) {
        return Err(CmdError::Failed(format!(
            "verification failed: entry {seq}: the signed trailer is for entry {} with another hash (entries were removed or altered at the end)",
            t["seq"]
        )));
    }
    let key = match key {
        Some(k) => k.to_string(),
        None => {
            eprintln!("warning: no cluster key available; checking with the key in the file (give --pubkey to be sure)");
            t["public_key"].as_str().unwrap_or_default().to_string()
        }
    };
    check_signature(
        &key,
        seq,
        &hash,
        t["signature"].as_str().unwrap_or_default(),
    )
    .map_err(|m| CmdError::Failed(format!("verification failed: {m}")))?;
    let gaps = if check.gaps > 0 {
        format!(
            "; {} gap(s) in seq (a filtered export): links across them were not checked",
            check.gaps
        )
    } else {
        String::new()
    };
    out(&format!(
        "OK: {} entries, chain intact through entry {seq}, signature valid{gaps}\n",
        check.entries
    ))
}

async fn verify_member(client: &lattice_client::Client, key: Option<&str>) -> Result<(), CmdError> {
    let v = client.audit_verify().await?;
    if v["ok"].as_bool() != Some(true) {
        let e = &v["error"];
        return Err(CmdError::Failed(format!(
            "verification failed: entry {}: {}",
            e["seq"],
            e["why"].as_str().unwrap_or("?")
        )));
    }
    let head = &v["head"];
    let (seq, hash) = (
        head["seq"].as_u64().unwrap_or(0),
        head["hash"].as_str().unwrap_or_default(),
    );
    if seq > 0 {
        let key = key.or(head["public_key"].as_str()).unwrap_or_default();
        check_signature(
            key,
            seq,
            hash,
            head["signature"].as_str().unwrap_or_default(),
        )
        .map_err(|m| CmdError::Failed(format!("verification failed: {m}")))?;
    }
    out(&format!(
        "OK: {} stored entries ({}..{}), chain intact through the signed head {seq}\n",
        v["entries"], v["first_seq"], v["last_seq"]
    ))
}

fn entries_table(entries: &Value) -> String {
    let mut t = Table::new(vec![
        ("SEQ", Align::Right),
        ("TIME", Align::Left),
        ("TENANT", Align::Left),
        ("USER", Align::Left),
        ("ACTION", Align::Left),
        ("ALLOC", Align::Right),
        ("NODES", Align::Left),
        ("DETAIL", Align::Left),
    ]);
    for e in entries.as_array().into_iter().flatten() {
        let s = |k: &str| e[k].as_str().unwrap_or("-").to_string();
        let nodes: Vec<&str> = e["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        t.row(vec![
            e["seq"].to_string(),
            e["time"]
                .as_str()
                .and_then(Timestamp::parse)
                .map_or_else(|| "-".into(), format_time),
            s("tenant"),
            s("user"),
            s("action"),
            e["allocation"]
                .as_u64()
                .map_or_else(|| "-".into(), |a| a.to_string()),
            if nodes.is_empty() {
                "-".into()
            } else {
                nodes.join(",")
            },
            s("detail"),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lattice_core::audit::{AuditAction, AuditRecord, GENESIS_HASH};

    fn export_text(n: u64) -> Vec<String> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|i| {
                let r = AuditRecord {
                    tenant: "clinic".into(),
                    user: "alice".into(),
                    action: AuditAction::Started,
                    allocation: Some(i),
                    nodes: vec!["n1".into()],
                    detail: String::new(),
                };
                let e = AuditEntry::chained(i, Timestamp(i * 1000), &r, &prev);
                prev = e.hash.clone();
                serde_json::to_string(&e).unwrap()
            })
            .collect()
    }

    #[test]
    fn an_altered_entry_is_named() {
        let lines = export_text(4);
        let (c, _) = check_entries(&lines.join("\n")).unwrap();
        assert_eq!((c.entries, c.gaps), (4, 0));
        let mut bad = lines.clone();
        bad[2] = bad[2].replace("alice", "mallory");
        let e = check_entries(&bad.join("\n")).unwrap_err();
        assert_eq!(e.seq, 3);
        // A removed entry in the middle shows as a gap, not a break; the signed trailer
        // catches removals at the end.
        let mut gap = lines.clone();
        gap.remove(1);
        assert_eq!(check_entries(&gap.join("\n")).unwrap().0.gaps, 1);
    }

    #[test]
    fn signatures_check_against_the_key() {
        use ed25519_dalek::{Signer, SigningKey};
        let sk = SigningKey::from_bytes(&[7u8; 32]);
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let pk = hex(sk.verifying_key().as_bytes());
        let sig = hex(&sk.sign(&head_message(5, "ab")).to_bytes());
        assert!(check_signature(&pk, 5, "ab", &sig).is_ok());
        assert!(check_signature(&pk, 6, "ab", &sig).is_err());
        let other = hex(SigningKey::from_bytes(&[8u8; 32])
            .verifying_key()
            .as_bytes());
        assert!(check_signature(&other, 5, "ab", &sig).is_err());
        assert!(check_signature("zz", 5, "ab", &sig).is_err());
    }
}
