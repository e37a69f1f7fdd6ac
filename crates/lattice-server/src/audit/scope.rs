//! Who sees which audit entries: [`filter_for`] narrows a parsed query to its caller.
//!
//! - `admin` (and every caller when ACLs are off): every entry;
//! - `tenant-admin`: every entry of the tenants its token names;
//! - `user`: the entries about itself (`user` is its subject) in the tenants its token names;
//! - `operator`, `agent`: nothing (the route refuses them with 403 before this).
//!
//! Asking about what one may not see (another tenant, another user) gives an empty answer,
//! not an error.

use lattice_core::acl::Role;

use super::params::AuditQuery;
use super::query::{Filter, Tenants};
use crate::auth::Caller;

/// Index rows one page may examine.
pub const MAX_SCAN: usize = 200_000;

/// The store filter for `q` as `caller` may see it.
pub fn filter_for(q: &AuditQuery, caller: &Caller) -> Filter {
    let mut f = Filter {
        tenants: match &q.tenant {
            Some(t) => Tenants::Only(vec![t.clone()]),
            None => Tenants::All,
        },
        from: q.from.map(|t| t.as_millis()),
        to: q.to.map(|t| t.as_millis()),
        user: q.user.clone(),
        allocation: q.allocation,
        node: q.node.clone(),
        action: q.action.map(|a| a.as_str().to_string()),
        after: q.cursor,
        limit: q.limit,
        max_scan: MAX_SCAN,
    };
    if caller.insecure {
        return f;
    }
    let nothing = Tenants::Only(Vec::new());
    match caller.role {
        Role::Admin => {}
        Role::TenantAdmin | Role::User => {
            let scope = caller.tenant_scope().unwrap_or_default();
            f.tenants = match &q.tenant {
                Some(t) if scope.contains(t) => Tenants::Only(vec![t.clone()]),
                Some(_) => nothing,
                None => {
                    let mut ts = scope.to_vec();
                    ts.sort();
                    ts.dedup();
                    Tenants::Only(ts)
                }
            };
            if caller.role == Role::User {
                match &q.user {
                    Some(u) if *u != caller.subject => f.tenants = Tenants::Only(Vec::new()),
                    _ => f.user = Some(caller.subject.clone()),
                }
            }
        }
        Role::Operator | Role::Agent => f.tenants = nothing,
    }
    f
}

/// Whether `caller` may see entry `e` (the same rule as [`filter_for`], for one entry).
pub fn sees(caller: &Caller, e: &lattice_core::audit::AuditEntry) -> bool {
    if caller.insecure {
        return true;
    }
    match caller.role {
        Role::Admin => true,
        Role::TenantAdmin => caller.sees_tenant(&e.tenant),
        Role::User => caller.sees_tenant(&e.tenant) && e.user == caller.subject,
        Role::Operator | Role::Agent => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lattice_core::acl::Token;

    fn caller(role: Role, subject: &str, tenants: &[&str]) -> Caller {
        Caller::from_token(&Token {
            id: "tok".into(),
            subject: subject.into(),
            role,
            hash: String::new(),
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            nodes: Vec::new(),
            description: String::new(),
            created_at: lattice_core::Timestamp(0),
            created_by: String::new(),
            expires_at: None,
            revoked_at: None,
            revoked_by: None,
        })
    }

    fn q(tenant: Option<&str>, user: Option<&str>) -> AuditQuery {
        AuditQuery {
            tenant: tenant.map(str::to_string),
            user: user.map(str::to_string),
            limit: 10,
            ..AuditQuery::default()
        }
    }

    fn only(ts: &[&str]) -> Tenants {
        Tenants::Only(ts.iter().map(|t| t.to_string()).collect())
    }

    #[test]
    fn each_role_sees_its_scope() {
        let admin = caller(Role::Admin, "root", &[]);
        let f = filter_for(&q(None, None), &admin);
        assert_eq!((f.tenants, f.user), (Tenants::All, None));
        let f = filter_for(&q(Some("med"), Some("ann")), &admin);
        assert_eq!(
            (f.tenants, f.user.as_deref()),
            (only(&["med"]), Some("ann"))
        );

        let ta = caller(Role::TenantAdmin, "boss", &["med", "bio"]);
        let f = filter_for(&q(None, None), &ta);
        assert_eq!((f.tenants, f.user), (only(&["bio", "med"]), None));
        assert_eq!(
            filter_for(&q(Some("med"), None), &ta).tenants,
            only(&["med"])
        );
        assert_eq!(filter_for(&q(Some("fin"), None), &ta).tenants, only(&[]));

        let user = caller(Role::User, "ann", &["med"]);
        let f = filter_for(&q(None, None), &user);
        assert_eq!(
            (f.tenants, f.user.as_deref()),
            (only(&["med"]), Some("ann"))
        );
        let f = filter_for(&q(Some("med"), Some("ann")), &user);
        assert_eq!(
            (f.tenants, f.user.as_deref()),
            (only(&["med"]), Some("ann"))
        );
        // Another user or another tenant: an empty answer.
        assert_eq!(
            filter_for(&q(Some("med"), Some("bob")), &user).tenants,
            only(&[])
        );
        assert_eq!(filter_for(&q(Some("fin"), None), &user).tenants, only(&[]));

        for role in [Role::Operator, Role::Agent] {
            assert_eq!(
                filter_for(&q(None, None), &caller(role, "x", &[])).tenants,
                only(&[])
            );
        }
        // ACLs off: everything.
        assert_eq!(
            filter_for(&q(None, None), &Caller::insecure()).tenants,
            Tenants::All
        );
    }

    #[test]
    fn one_entry_is_seen_by_the_same_rule() {
        let e = crate::audit::tests::chain(1, 1).remove(0);
        // chain() entries: tenant t0, user u1.
        assert!(sees(&caller(Role::Admin, "root", &[]), &e));
        assert!(sees(&caller(Role::TenantAdmin, "boss", &["t0"]), &e));
        assert!(!sees(&caller(Role::TenantAdmin, "boss", &["t1"]), &e));
        assert!(sees(&caller(Role::User, &e.user, &["t0"]), &e));
        assert!(!sees(&caller(Role::User, "bob", &["t0"]), &e));
        assert!(!sees(&caller(Role::Operator, "op", &[]), &e));
    }
}
