//! Access control: API tokens with a role, kept in replicated state as hashes only.
//!
//! A token is a random secret the holder sends as `Authorization: Bearer <secret>`. The state
//! stores only its SHA-256 (hex, computed by the server before proposing), so neither a
//! snapshot nor the Raft log holds a usable credential. Each token has a public `id` (the
//! accessor shown in listings and used to revoke it), a `subject` (the user or node name its
//! requests act as) and a [`Role`]. What each role may do is decided by the server (the
//! authorization table in docs/security.md); this module only keeps the records.

use serde::{Deserialize, Serialize};

use crate::error::Rejection;
use crate::submit::validate_name;
use crate::time::Timestamp;

/// SHA-256 of a token secret, lower-case hex: what the state stores for a token, and what the
/// control plane presents to an agent's log endpoint as proof that it knows the agent's token.
pub fn secret_hash(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    // Every authenticated request hashes its token: no allocation per byte.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in Sha256::digest(secret.as_bytes()) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// Compares two secrets without an early exit, so the answer time does not leak them.
pub fn same_secret(given: &str, want: &str) -> bool {
    given.len() == want.len()
        && given
            .bytes()
            .zip(want.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Whether `node` matches one of `patterns`: a node name, or a prefix ending in `*`.
pub fn node_matches(patterns: &[String], node: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => node.starts_with(prefix),
        None => p == node,
    })
}

/// What a token may do, from most to least powerful (agents are a separate kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: tenants, vClusters, tokens, membership, any allocation.
    Admin,
    /// Any allocation, and node drain / undrain.
    Operator,
    /// Allocations of the tenants the token names.
    User,
    /// The agent protocol, for the nodes the token names.
    Agent,
    /// A user of the tenants the token names who also administers them: sees the whole
    /// tenants' audit log and may release any claim of theirs (appended: roles are encoded
    /// by index).
    #[serde(rename = "tenant-admin")]
    TenantAdmin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Operator,
        Role::User,
        Role::Agent,
        Role::TenantAdmin,
    ];

    /// Roles whose tokens name tenants and are limited to them.
    pub fn is_tenant_scoped(self) -> bool {
        matches!(self, Role::User | Role::TenantAdmin)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::User => "user",
            Role::TenantAdmin => "tenant-admin",
            Role::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A token as the state keeps it. Never carries the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Public accessor (`tok-` and 16 hex digits), chosen by the proposer.
    pub id: String,
    /// SHA-256 of the secret, lower-case hex (64 chars). Not shown by the API.
    pub hash: String,
    /// The user (or, for agents, the operator-chosen name) its requests act as.
    pub subject: String,
    pub role: Role,
    /// For `user` tokens: the tenants whose allocations it may submit, see and act on.
    pub tenants: Vec<String>,
    /// For `agent` tokens: the nodes it may register and report for. An entry ending in `*`
    /// matches every node name starting with what precedes it (for simulators and racks).
    pub nodes: Vec<String>,
    pub description: String,
    pub created_at: Timestamp,
    pub created_by: String,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub revoked_by: Option<String>,
}

/// Why a token cannot be used now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unusable {
    Revoked,
    Expired,
}

impl Token {
    /// Whether the token may be used at `now`.
    pub fn usable(&self, now: Timestamp) -> Result<(), Unusable> {
        if self.revoked_at.is_some() {
            return Err(Unusable::Revoked);
        }
        match self.expires_at {
            Some(t) if t <= now => Err(Unusable::Expired),
            _ => Ok(()),
        }
    }

    /// Whether an agent token covers node `node`.
    pub fn covers_node(&self, node: &str) -> bool {
        node_matches(&self.nodes, node)
    }

    /// Checks the record before it is stored (the server fills `id`, `hash` and times).
    pub fn validate(&self) -> Result<(), Rejection> {
        let id_ok = self
            .id
            .strip_prefix("tok-")
            .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !id_ok {
            return Err(Rejection::invalid("id", "must be tok- and 16 hex digits"));
        }
        if self.hash.len() != 64 || !self.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Rejection::invalid(
                "hash",
                "must be 64 hex digits (SHA-256)",
            ));
        }
        validate_name("subject", &self.subject)?;
        for t in &self.tenants {
            validate_name("tenants", t)?;
        }
        match self.role {
            Role::User | Role::TenantAdmin if self.tenants.is_empty() => {
                return Err(Rejection::invalid(
                    "tenants",
                    format!(
                        "a {} token must name at least one tenant",
                        self.role.as_str()
                    ),
                ))
            }
            Role::Agent if self.nodes.is_empty() => {
                return Err(Rejection::invalid(
                    "nodes",
                    "an agent token must name at least one node (or a prefix ending in *)",
                ))
            }
            Role::User | Role::TenantAdmin | Role::Agent => {}
            Role::Admin | Role::Operator => {
                if !self.tenants.is_empty() || !self.nodes.is_empty() {
                    return Err(Rejection::invalid(
                        "role",
                        format!(
                            "{} tokens act on every tenant and node; tenants and nodes are for user and agent tokens",
                            self.role.as_str()
                        ),
                    ));
                }
            }
        }
        if !self.role.is_tenant_scoped() && !self.tenants.is_empty() {
            return Err(Rejection::invalid(
                "tenants",
                "only user and tenant-admin tokens name tenants",
            ));
        }
        if self.role != Role::Agent && !self.nodes.is_empty() {
            return Err(Rejection::invalid("nodes", "only agent tokens name nodes"));
        }
        for n in &self.nodes {
            let name = n.strip_suffix('*').unwrap_or(n);
            let ok = (n.ends_with('*') && name.is_empty())
                || (!name.is_empty()
                    && name.len() <= 253
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
            if !ok {
                return Err(Rejection::invalid(
                    "nodes",
                    format!("{n:?} is not a node name or a prefix ending in *"),
                ));
            }
        }
        if self.description.len() > 256 {
            return Err(Rejection::invalid("description", "at most 256 bytes"));
        }
        if let Some(e) = self.expires_at {
            if e <= self.created_at {
                return Err(Rejection::invalid("expires_at", "must be in the future"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(role: Role) -> Token {
        Token {
            id: "tok-0123456789abcdef".into(),
            hash: "a".repeat(64),
            subject: "alice".into(),
            role,
            tenants: vec![],
            nodes: vec![],
            description: String::new(),
            created_at: Timestamp(1000),
            created_by: "root".into(),
            expires_at: None,
            revoked_at: None,
            revoked_by: None,
        }
    }

    #[test]
    fn scopes_belong_to_their_roles() {
        assert!(token(Role::Admin).validate().is_ok());
        let e = token(Role::User).validate().unwrap_err();
        assert!(e.to_string().contains("tenants"), "{e}");
        let mut u = token(Role::User);
        u.tenants = vec!["physics".into()];
        assert!(u.validate().is_ok());
        let mut a = token(Role::Agent);
        assert!(a.validate().is_err());
        a.nodes = vec!["n-1".into(), "sim-*".into()];
        assert!(a.validate().is_ok());
        a.tenants = vec!["x".into()];
        assert!(a.validate().is_err());
        let mut o = token(Role::Operator);
        o.nodes = vec!["n1".into()];
        assert!(o.validate().is_err());
    }

    #[test]
    fn node_patterns() {
        let mut a = token(Role::Agent);
        a.nodes = vec!["n-1".into(), "sim-*".into()];
        assert!(a.covers_node("n-1"));
        assert!(!a.covers_node("n-10"));
        assert!(a.covers_node("sim-00042"));
        assert!(!a.covers_node("si"));
        a.nodes = vec!["bad name".into()];
        assert!(a.validate().is_err());
    }

    #[test]
    fn hashes_and_comparisons() {
        assert_eq!(
            secret_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd") && !same_secret("abc", "abcd"));
    }

    #[test]
    fn expiry_and_revocation() {
        let mut t = token(Role::Admin);
        assert_eq!(t.usable(Timestamp(5000)), Ok(()));
        t.expires_at = Some(Timestamp(2000));
        assert_eq!(t.usable(Timestamp(1999)), Ok(()));
        assert_eq!(t.usable(Timestamp(2000)), Err(Unusable::Expired));
        t.revoked_at = Some(Timestamp(1500));
        assert_eq!(t.usable(Timestamp(1600)), Err(Unusable::Revoked));
        t.expires_at = Some(Timestamp(1000));
        t.revoked_at = None;
        assert!(t.validate().is_err(), "expiry before creation");
    }
}
