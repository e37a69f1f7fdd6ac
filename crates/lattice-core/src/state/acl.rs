//! Apply handlers for tokens: the one-time ACL bootstrap, create and revoke. Tokens are indexed
//! by their hash so that authenticating a request is one map lookup.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::acl::{Role, Token};
use crate::command::{CommandOutcome, CommandResult};
use crate::error::Rejection;
use crate::state::ClusterState;
use crate::time::Timestamp;

/// The serialized part of the token table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclData {
    /// Set by the first (and only) bootstrap.
    pub bootstrapped: bool,
    /// By token ID.
    pub tokens: BTreeMap<String, Token>,
}

/// The token table with its hash index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acl {
    data: AclData,
    /// Token hash -> token ID.
    by_hash: HashMap<String, String>,
}

impl From<AclData> for Acl {
    fn from(data: AclData) -> Self {
        let by_hash = data
            .tokens
            .values()
            .map(|t| (t.hash.clone(), t.id.clone()))
            .collect();
        Acl { data, by_hash }
    }
}

impl From<Acl> for AclData {
    fn from(a: Acl) -> Self {
        a.data
    }
}

impl Acl {
    pub fn bootstrapped(&self) -> bool {
        self.data.bootstrapped
    }

    /// The token whose secret hashes to `hash` (revoked and expired ones included).
    pub fn by_hash(&self, hash: &str) -> Option<&Token> {
        self.by_hash
            .get(hash)
            .and_then(|id| self.data.tokens.get(id))
    }

    pub fn get(&self, id: &str) -> Option<&Token> {
        self.data.tokens.get(id)
    }

    pub fn tokens(&self) -> impl Iterator<Item = &Token> {
        self.data.tokens.values()
    }

    fn insert(&mut self, token: Token) {
        self.by_hash.insert(token.hash.clone(), token.id.clone());
        self.data.tokens.insert(token.id.clone(), token);
    }
}

impl ClusterState {
    pub fn acl(&self) -> &Acl {
        &self.acl
    }

    /// Creates the first admin token; refused once the cluster has been bootstrapped.
    pub(super) fn bootstrap_acl(&mut self, token: &Token) -> CommandResult {
        if self.acl.bootstrapped() {
            return Err(Rejection::conflict(
                "the ACL system is already bootstrapped; an admin creates further tokens",
            ));
        }
        if token.role != Role::Admin {
            return Err(Rejection::invalid(
                "role",
                "the bootstrap token is an admin token",
            ));
        }
        self.check_new_token(token)?;
        self.acl.data.bootstrapped = true;
        self.acl.insert(token.clone());
        Ok(CommandOutcome::Token(Box::new(token.clone())))
    }

    pub(super) fn create_token(&mut self, token: &Token) -> CommandResult {
        self.check_new_token(token)?;
        for t in &token.tenants {
            if !self.tenants.contains_key(t) {
                return Err(Rejection::not_found("tenant", t));
            }
        }
        self.acl.insert(token.clone());
        Ok(CommandOutcome::Token(Box::new(token.clone())))
    }

    fn check_new_token(&self, token: &Token) -> Result<(), Rejection> {
        token.validate()?;
        if self.acl.get(&token.id).is_some() || self.acl.by_hash(&token.hash).is_some() {
            return Err(Rejection::conflict(format!(
                "token {} already exists",
                token.id
            )));
        }
        Ok(())
    }

    /// Revokes a token (kept, marked revoked, so listings show who revoked it and when).
    pub(super) fn revoke_token(&mut self, now: Timestamp, id: &str, by: &str) -> CommandResult {
        let t = self
            .acl
            .data
            .tokens
            .get_mut(id)
            .ok_or_else(|| Rejection::not_found("token", id))?;
        if t.revoked_at.is_none() {
            t.revoked_at = Some(now);
            t.revoked_by = Some(by.to_string());
        }
        Ok(CommandOutcome::Token(Box::new(t.clone())))
    }
}
