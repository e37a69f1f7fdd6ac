//! The authorization table: what each route needs. docs/security.md shows the same table;
//! `tests/security.rs` exercises every row through the real binary.

use axum::http::Method;
use lattice_core::acl::Role;

use crate::config::AuthConfig;

/// What a route requires of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token (health, metrics when configured open, the one-time bootstrap, Raft RPCs,
    /// which check the cluster secret themselves).
    Open,
    /// Any valid token, agents included.
    AnyToken,
    /// Users, operators and admins (not agents); handlers scope users to their tenants.
    Person,
    Operator,
    Admin,
    /// An admin token, or the cluster secret header (members joining the cluster).
    AdminOrClusterSecret,
    /// An agent token (for its own nodes, checked by the handler) or an admin.
    Agent,
    /// Readers of the audit log: users (their own entries), tenant admins (their tenants'
    /// entries) and admins; the handler scopes (`audit::scope`).
    AuditReader,
}

impl Access {
    pub fn allows(self, role: Role) -> bool {
        match self {
            Access::Open | Access::AnyToken => true,
            Access::Person => role != Role::Agent,
            Access::Operator => matches!(role, Role::Admin | Role::Operator),
            Access::Admin | Access::AdminOrClusterSecret => role == Role::Admin,
            Access::Agent => matches!(role, Role::Admin | Role::Agent),
            Access::AuditReader => matches!(role, Role::Admin | Role::User | Role::TenantAdmin),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Access::Open => "no token",
            Access::AnyToken => "any valid token",
            Access::Person => "a user, operator or admin token",
            Access::Operator => "an operator or admin token",
            Access::Admin => "an admin token",
            Access::AdminOrClusterSecret => "an admin token or the cluster secret",
            Access::Agent => "an agent token for the node (or an admin token)",
            Access::AuditReader => "a user, tenant-admin or admin token",
        }
    }
}

/// The access `method` on route `template` requires.
pub fn access(method: &Method, template: &str, cfg: &AuthConfig) -> Access {
    let get = *method == Method::GET;
    match template {
        "/healthz" if cfg.open_healthz => Access::Open,
        "/metrics" if cfg.open_metrics => Access::Open,
        "/healthz" | "/metrics" => Access::AnyToken,
        "/api/v1/acl/bootstrap" => Access::Open,
        "/api/v1/acl/whoami" => Access::AnyToken,
        t if t.starts_with("/api/v1/acl/") => Access::Admin,
        t if t.starts_with("/raft/") => Access::Open,
        "/api/v1/raft/status" => Access::Person,
        "/api/v1/raft/snapshot" => Access::Admin,
        t if t.starts_with("/api/v1/raft/members") => Access::AdminOrClusterSecret,
        t if t.starts_with("/api/v1/agent/") => Access::Agent,
        "/api/v1/audit" | "/api/v1/audit/sign" => Access::AuditReader,
        "/api/v1/audit/pubkey" => Access::Person,
        t if t.starts_with("/api/v1/audit/") => Access::Admin,
        "/api/v1/nodes/{id}/drain" | "/api/v1/nodes/{id}/undrain" => Access::Operator,
        t if t.starts_with("/api/v1/tenants") || t.starts_with("/api/v1/vclusters") => {
            if get {
                Access::Person
            } else {
                Access::Admin
            }
        }
        // Allocations, arrays, nodes (read), telemetry: scoped per tenant by the handlers.
        _ => Access::Person,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let c = AuthConfig::default();
        let a = |m: Method, t: &str| access(&m, t, &c);
        assert_eq!(a(Method::GET, "/healthz"), Access::Open);
        assert_eq!(a(Method::POST, "/api/v1/acl/tokens"), Access::Admin);
        assert_eq!(a(Method::GET, "/api/v1/tenants"), Access::Person);
        assert_eq!(a(Method::PUT, "/api/v1/tenants/{name}"), Access::Admin);
        assert_eq!(
            a(Method::POST, "/api/v1/nodes/{id}/drain"),
            Access::Operator
        );
        assert_eq!(a(Method::POST, "/api/v1/agent/heartbeat"), Access::Agent);
        assert_eq!(
            a(Method::DELETE, "/api/v1/allocations/{id}"),
            Access::Person
        );
        assert_eq!(a(Method::GET, "/api/v1/audit"), Access::AuditReader);
        assert_eq!(a(Method::GET, "/api/v1/audit/sign"), Access::AuditReader);
        assert_eq!(a(Method::GET, "/api/v1/audit/pubkey"), Access::Person);
        assert_eq!(a(Method::GET, "/api/v1/audit/verify"), Access::Admin);
        assert_eq!(a(Method::POST, "/api/v1/audit/prune"), Access::Admin);
        assert_eq!(a(Method::GET, "/raft/audit"), Access::Open);
        assert!(!Access::AuditReader.allows(Role::Operator));
        assert!(!Access::AuditReader.allows(Role::Agent));
        assert!(Access::AuditReader.allows(Role::TenantAdmin));
        assert!(!Access::Person.allows(Role::Agent));
        assert!(!Access::Agent.allows(Role::Operator));
        assert!(Access::Agent.allows(Role::Admin));
        let closed = AuthConfig {
            open_metrics: false,
            ..AuthConfig::default()
        };
        assert_eq!(access(&Method::GET, "/metrics", &closed), Access::AnyToken);
    }
}
