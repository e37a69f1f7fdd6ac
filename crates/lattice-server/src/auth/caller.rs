//! [`Caller`]: who a request acts as, once authenticated.

use lattice_core::acl::{node_matches, Role, Token};

/// The authenticated identity of a request (in the request's extensions).
#[derive(Clone, Debug)]
pub struct Caller {
    /// User name (or agent name) requests act as.
    pub subject: String,
    pub role: Role,
    /// The token's public ID (`insecure` or `member` for the two tokenless callers).
    pub token_id: String,
    tenants: Vec<String>,
    /// For agents: the node names and `prefix*` patterns it may act for.
    nodes: Vec<String>,
    /// ACLs are off: the caller may name any user (the old, trusting behaviour).
    pub insecure: bool,
}

impl Caller {
    pub fn from_token(t: &Token) -> Self {
        Caller {
            subject: t.subject.clone(),
            role: t.role,
            token_id: t.id.clone(),
            tenants: t.tenants.clone(),
            nodes: t.nodes.clone(),
            insecure: false,
        }
    }

    /// Every request when `server.auth.enabled` is false.
    pub fn insecure() -> Self {
        Caller {
            subject: String::new(),
            role: Role::Admin,
            token_id: "insecure".into(),
            tenants: Vec::new(),
            nodes: Vec::new(),
            insecure: true,
        }
    }

    /// A member authenticated by the cluster secret (joining the cluster).
    pub fn member() -> Self {
        Caller {
            subject: "member".into(),
            role: Role::Admin,
            token_id: "member".into(),
            tenants: Vec::new(),
            nodes: Vec::new(),
            insecure: false,
        }
    }

    /// Whether the caller may see and act on allocations of `tenant`.
    pub fn sees_tenant(&self, tenant: &str) -> bool {
        match self.role {
            Role::Admin | Role::Operator => true,
            Role::User | Role::TenantAdmin => self.tenants.iter().any(|t| t == tenant),
            Role::Agent => false,
        }
    }

    /// The tenants a user is limited to; `None` for roles that see every tenant.
    pub fn tenant_scope(&self) -> Option<&[String]> {
        self.role
            .is_tenant_scoped()
            .then_some(self.tenants.as_slice())
    }

    /// Whether an agent caller may act for `node` (admins may act for any node).
    pub fn covers_node(&self, node: &str) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Agent => node_matches(&self.nodes, node),
            Role::Operator | Role::User | Role::TenantAdmin => false,
        }
    }

    /// The user a submission runs as: the caller, or for an admin (or without ACLs) the user
    /// the request names. Returns (user, submitted_by) or the reason it is refused.
    pub fn submit_as(
        &self,
        requested: Option<&str>,
        default_user: &str,
    ) -> Result<(String, Option<String>), String> {
        if self.insecure {
            return Ok((requested.unwrap_or(default_user).to_string(), None));
        }
        match requested {
            None => Ok((self.subject.clone(), None)),
            Some(u) if u == self.subject => Ok((self.subject.clone(), None)),
            Some(u) if self.role == Role::Admin => Ok((u.to_string(), Some(self.subject.clone()))),
            Some(u) => Err(format!(
                "a {} token submits as its own user {:?}, not {u:?}; only admins submit on behalf of others",
                self.role.as_str(),
                self.subject
            )),
        }
    }

    /// Who an action is recorded as (`by` fields): the subject, or `fallback` without ACLs.
    pub fn by(&self, fallback: &str) -> String {
        if self.insecure || self.subject.is_empty() {
            fallback.to_string()
        } else {
            self.subject.clone()
        }
    }
}
