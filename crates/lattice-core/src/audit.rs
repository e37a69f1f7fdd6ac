//! The audit log of sensitive tenants: [`AuditEntry`] records, their hash chain and its
//! verification.
//!
//! Entries are produced by `apply` (in the same Raft entry as the action they record, see
//! `state/audit.rs`), numbered by `seq` from 1 and chained: each entry's `hash` is SHA-256
//! over its `prev_hash` and the canonical encoding of its other fields ([`entry_hash`]). The
//! first entry's `prev_hash` is [`GENESIS_HASH`]; after a retention prune, the first kept
//! entry's `prev_hash` is the pruned tail's last hash (the chain's anchor).
//!
//! The canonical encoding (docs/audit.md gives it for outside verifiers): the fields `seq`,
//! `time` (Unix milliseconds), `tenant`, `user`, `action`, `allocation` (0 for none), every
//! node, then `detail`, each integer as 8 bytes big-endian and each string as its length (8
//! bytes big-endian) and its UTF-8 bytes; the node list is preceded by its count.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::allocation::AllocId;
use crate::node::NodeId;
use crate::time::Timestamp;

/// `prev_hash` of the first entry ever: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One committed audit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub time: Timestamp,
    pub tenant: String,
    /// Whom the entry is about: the reader for access entries, the claimant for claims, the
    /// owner for an allocation's lifecycle (`detail` names another actor, e.g. who cancelled).
    pub user: String,
    /// One of [`AuditAction`]'s names.
    pub action: String,
    pub allocation: Option<AllocId>,
    pub nodes: Vec<NodeId>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// What an entry records. The names are the `action` field of entries and of queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AuditAction {
    NodeClaimed,
    ClaimRefused,
    NodeReleased,
    NodeWiped,
    WipeFailed,
    Submitted,
    Started,
    Checkpointed,
    Preempted,
    Requeued,
    Completed,
    Failed,
    Cancelled,
    Held,
    Unheld,
    StatusRead,
    LogsRead,
    MetricsRead,
    AuditQueried,
    AccessDenied,
    Refused,
}

impl AuditAction {
    pub const ALL: [AuditAction; 21] = [
        AuditAction::NodeClaimed,
        AuditAction::ClaimRefused,
        AuditAction::NodeReleased,
        AuditAction::NodeWiped,
        AuditAction::WipeFailed,
        AuditAction::Submitted,
        AuditAction::Started,
        AuditAction::Checkpointed,
        AuditAction::Preempted,
        AuditAction::Requeued,
        AuditAction::Completed,
        AuditAction::Failed,
        AuditAction::Cancelled,
        AuditAction::Held,
        AuditAction::Unheld,
        AuditAction::StatusRead,
        AuditAction::LogsRead,
        AuditAction::MetricsRead,
        AuditAction::AuditQueried,
        AuditAction::AccessDenied,
        AuditAction::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::NodeClaimed => "node.claimed",
            AuditAction::ClaimRefused => "node.claim_refused",
            AuditAction::NodeReleased => "node.released",
            AuditAction::NodeWiped => "node.wiped",
            AuditAction::WipeFailed => "node.wipe_failed",
            AuditAction::Submitted => "allocation.submitted",
            AuditAction::Started => "allocation.started",
            AuditAction::Checkpointed => "allocation.checkpointed",
            AuditAction::Preempted => "allocation.preempted",
            AuditAction::Requeued => "allocation.requeued",
            AuditAction::Completed => "allocation.completed",
            AuditAction::Failed => "allocation.failed",
            AuditAction::Cancelled => "allocation.cancelled",
            AuditAction::Held => "allocation.held",
            AuditAction::Unheld => "allocation.released",
            AuditAction::StatusRead => "access.status",
            AuditAction::LogsRead => "access.logs",
            AuditAction::MetricsRead => "access.metrics",
            AuditAction::AuditQueried => "access.audit",
            AuditAction::AccessDenied => "access.denied",
            AuditAction::Refused => "request.refused",
        }
    }

    pub fn parse(s: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Access entries are proposed by the API layer ([`AuditRecord`]); the others only by
    /// `apply` itself.
    pub fn is_access(self) -> bool {
        matches!(
            self,
            AuditAction::StatusRead
                | AuditAction::LogsRead
                | AuditAction::MetricsRead
                | AuditAction::AuditQueried
                | AuditAction::AccessDenied
                | AuditAction::Refused
                | AuditAction::ClaimRefused
        )
    }
}

/// An entry before the state machine numbers and chains it: what the API proposes for an
/// access or a refusal (`Command::RecordAudit`), and what apply produces for an action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub tenant: String,
    pub user: String,
    pub action: AuditAction,
    pub allocation: Option<AllocId>,
    pub nodes: Vec<NodeId>,
    pub detail: String,
}

/// Where the chain stands: replicated state, so every member numbers and chains alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// `seq` of the next entry (entries so far: `next_seq - 1`).
    pub next_seq: u64,
    /// `hash` of the last entry ([`GENESIS_HASH`] before the first).
    pub head_hash: String,
    /// Entries with `seq <= pruned_through` were removed by retention.
    pub pruned_through: u64,
    /// `hash` of entry `pruned_through` (the `prev_hash` of the first kept entry).
    pub anchor_hash: String,
}

impl Default for AuditHead {
    fn default() -> Self {
        AuditHead {
            next_seq: 1,
            head_hash: GENESIS_HASH.to_string(),
            pruned_through: 0,
            anchor_hash: GENESIS_HASH.to_string(),
        }
    }
}

impl AuditHead {
    /// Entries committed so far, pruned ones included.
    pub fn count(&self) -> u64 {
        self.next_seq - 1
    }
}

fn put_u64(h: &mut Sha256, v: u64) {
    h.update(v.to_be_bytes());
}

fn put_str(h: &mut Sha256, s: &str) {
    put_u64(h, s.len() as u64);
    h.update(s.as_bytes());
}

/// SHA-256 (lower-case hex) of `prev_hash` (its hex text) followed by the canonical encoding
/// of the entry's other fields (see the module header).
pub fn entry_hash(e: &AuditEntry) -> String {
    let mut h = Sha256::new();
    put_str(&mut h, &e.prev_hash);
    put_u64(&mut h, e.seq);
    put_u64(&mut h, e.time.as_millis());
    put_str(&mut h, &e.tenant);
    put_str(&mut h, &e.user);
    put_str(&mut h, &e.action);
    put_u64(&mut h, e.allocation.unwrap_or(0));
    put_u64(&mut h, e.nodes.len() as u64);
    for n in &e.nodes {
        put_str(&mut h, n);
    }
    put_str(&mut h, &e.detail);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl AuditEntry {
    /// Numbers and chains `r` after `prev_hash`.
    pub fn chained(seq: u64, time: Timestamp, r: &AuditRecord, prev_hash: &str) -> Self {
        let mut e = AuditEntry {
            seq,
            time,
            tenant: r.tenant.clone(),
            user: r.user.clone(),
            action: r.action.as_str().to_string(),
            allocation: r.allocation,
            nodes: r.nodes.clone(),
            detail: r.detail.clone(),
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        e.hash = entry_hash(&e);
        e
    }
}

/// The first entry that breaks a chain, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: u64,
    pub why: String,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "entry {}: {}", self.seq, self.why)
    }
}

/// Checks a contiguous run of entries: each `hash` matches its content, each `prev_hash` is
/// the previous entry's `hash`, and `seq` increases by one. `anchor` (if known) is the
/// expected `prev_hash` of the first entry. Returns the last entry's hash (or `anchor`).
pub fn verify_chain<'a>(
    entries: impl IntoIterator<Item = &'a AuditEntry>,
    anchor: Option<&str>,
) -> Result<Option<String>, ChainBreak> {
    let mut prev: Option<(u64, String)> = None;
    let mut first = true;
    for e in entries {
        let brk = |why: String| ChainBreak { seq: e.seq, why };
        if entry_hash(e) != e.hash {
            return Err(brk(
                "its hash does not match its content (the entry was altered)".into(),
            ));
        }
        match (&prev, first, anchor) {
            (Some((seq, hash)), _, _) => {
                if e.seq != seq + 1 {
                    return Err(brk(format!("follows entry {seq}: entries are missing")));
                }
                if &e.prev_hash != hash {
                    return Err(brk(format!(
                        "prev_hash does not match the hash of entry {seq}"
                    )));
                }
            }
            (None, true, Some(a)) if e.prev_hash != a => {
                return Err(brk("prev_hash does not match the chain's anchor".into()));
            }
            _ => {}
        }
        first = false;
        prev = Some((e.seq, e.hash.clone()));
    }
    Ok(prev.map(|(_, h)| h).or_else(|| anchor.map(str::to_string)))
}

/// Bytes the audit key signs for a chain head: `lattice-audit-head:<seq>:<hash>`.
pub fn head_message(seq: u64, hash: &str) -> Vec<u8> {
    format!("lattice-audit-head:{seq}:{hash}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u32) -> AuditRecord {
        AuditRecord {
            tenant: "t".into(),
            user: format!("u{n}"),
            action: AuditAction::Submitted,
            allocation: Some(u64::from(n)),
            nodes: vec!["n1".into()],
            detail: String::new(),
        }
    }

    fn chain(n: u32) -> Vec<AuditEntry> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|i| {
                let e = AuditEntry::chained(u64::from(i), Timestamp(i.into()), &rec(i), &prev);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn a_chain_verifies_and_any_change_breaks_it_at_that_entry() {
        let c = chain(5);
        assert_eq!(
            verify_chain(&c, Some(GENESIS_HASH)).unwrap(),
            Some(c[4].hash.clone())
        );
        let mut bad = c.clone();
        bad[2].user = "mallory".into();
        assert_eq!(verify_chain(&bad, Some(GENESIS_HASH)).unwrap_err().seq, 3);
        let mut gap = c.clone();
        gap.remove(1);
        assert_eq!(verify_chain(&gap, None).unwrap_err().seq, 3);
        // Rehashing the altered entry moves the break to the next one.
        let mut rehashed = c.clone();
        rehashed[2].detail = "x".into();
        rehashed[2].hash = entry_hash(&rehashed[2]);
        assert_eq!(verify_chain(&rehashed, None).unwrap_err().seq, 4);
        // A suffix verifies from its anchor.
        assert!(verify_chain(&c[2..], Some(&c[1].hash)).is_ok());
        assert!(verify_chain(&c[2..], Some(GENESIS_HASH)).is_err());
    }

    #[test]
    fn every_field_is_hashed() {
        let base = chain(1).remove(0);
        type Change = Box<dyn Fn(&mut AuditEntry)>;
        let variants: Vec<Change> = vec![
            Box::new(|e| e.seq += 1),
            Box::new(|e| e.time = Timestamp(99)),
            Box::new(|e| e.tenant.push('x')),
            Box::new(|e| e.user.push('x')),
            Box::new(|e| e.action.push('x')),
            Box::new(|e| e.allocation = None),
            Box::new(|e| e.nodes.push("n2".into())),
            Box::new(|e| e.detail.push('x')),
            Box::new(|e| e.prev_hash = "1".repeat(64)),
        ];
        for change in variants {
            let mut e = base.clone();
            change(&mut e);
            assert_ne!(entry_hash(&e), base.hash);
        }
        // Field boundaries are unambiguous: moving a character between fields changes it.
        let mut a = base.clone();
        a.tenant = "tu".into();
        a.user = "1".into();
        let mut b = base.clone();
        b.tenant = "t".into();
        b.user = "u1".into();
        assert_ne!(entry_hash(&a), entry_hash(&b));
    }

    #[test]
    fn action_names_round_trip() {
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(AuditAction::parse("nope"), None);
    }
}
