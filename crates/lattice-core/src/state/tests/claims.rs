//! Node claims of sensitive tenants and the audit chain apply writes for them.

use super::*;
use crate::audit::{verify_chain, AuditAction, AuditEntry, AuditRecord, GENESIS_HASH};
use crate::command::{ClaimSpec, ReleaseSpec, WipeReport};
use crate::tenant::TenantChange;

fn sensitive_cluster(ids: &[&str]) -> ClusterState {
    let mut s = cluster(ids);
    for (name, sensitive) in [("clinic", true), ("physics", false)] {
        ok(
            &mut s,
            Command::PutTenant {
                now: at(0),
                name: name.into(),
                change: TenantChange {
                    sensitive: Some(sensitive),
                    ..Default::default()
                },
                create: true,
            },
        );
    }
    s
}

fn claim(tenant: &str, user: &str, count: u32, ids: &[&str]) -> Command {
    Command::ClaimNodes {
        now: at(1),
        claim: ClaimSpec {
            tenant: tenant.into(),
            user: user.into(),
            by: None,
            count,
            node_ids: ids.iter().map(|s| s.to_string()).collect(),
        },
    }
}

fn release(user: &str, ids: &[&str], force: bool) -> Command {
    Command::ReleaseNodes {
        now: at(50),
        release: ReleaseSpec {
            tenant: "clinic".into(),
            user: user.into(),
            node_ids: ids.iter().map(|s| s.to_string()).collect(),
            by: user.into(),
            force,
        },
    }
}

fn work(tenant: &str, user: &str) -> AllocationSpec {
    AllocationSpec {
        tenant: tenant.into(),
        user: user.into(),
        ..spec(1)
    }
}

fn actions(entries: &[AuditEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.action.as_str()).collect()
}

#[test]
fn claims_are_immediate_exclusive_and_name_the_holder() {
    let mut s = sensitive_cluster(&["n1", "n2", "n3"]);
    ok(&mut s, claim("clinic", "alice", 2, &[]));
    let held: Vec<&str> = s
        .nodes()
        .values()
        .filter(|n| n.claim.is_some())
        .map(|n| n.id.as_str())
        .collect();
    assert_eq!(held, ["n1", "n2"]);
    let e = rejected(&mut s, claim("clinic", "bob", 0, &["n2", "n3"]));
    assert!(
        e.to_string()
            .contains("n2 is claimed by alice (tenant clinic)"),
        "{e}"
    );
    let e = rejected(&mut s, claim("clinic", "bob", 2, &[]));
    assert!(e.to_string().contains("only 1 of the 2"), "{e}");
    assert!(e.to_string().contains("n1 by alice"), "{e}");
    let e = rejected(&mut s, claim("physics", "bob", 1, &[]));
    assert!(e.to_string().contains("not sensitive"), "{e}");
    assert!(matches!(
        rejected(&mut s, claim("clinic", "bob", 0, &["nope"])),
        Rejection::NotFound { .. }
    ));
    let e = rejected(&mut s, claim("clinic", "bob", 1, &["n3"]));
    assert!(e.to_string().contains("not both"), "{e}");
    // Refusals wrote nothing; the claim wrote one entry naming both nodes.
    let entries = s.take_audit();
    assert_eq!(actions(&entries), ["node.claimed"]);
    assert_eq!(entries[0].nodes, ["n1", "n2"]);
    assert_eq!(entries[0].user, "alice");
}

#[test]
fn claimed_nodes_run_only_their_holders_work_of_that_tenant() {
    let mut s = sensitive_cluster(&["n1", "n2", "n3"]);
    ok(&mut s, claim("clinic", "alice", 0, &["n1", "n2"]));
    let other = submit(&mut s, at(2), work("physics", "carol"));
    let other2 = submit(&mut s, at(2), work("physics", "carol"));
    let mine = submit(&mut s, at(2), work("clinic", "alice"));
    let bobs = submit(&mut s, at(2), work("clinic", "bob"));
    let plan = crate::scheduler::schedule(&s, at(3));
    let placed: BTreeMap<AllocId, Vec<String>> = plan
        .placements
        .iter()
        .map(|p| (p.allocation, p.nodes.clone()))
        .collect();
    // Carol's first job takes n3; her second waits although n1/n2 are idle.
    assert_eq!(placed.get(&other), Some(&vec!["n3".to_string()]));
    assert!(!placed.contains_key(&other2));
    assert_eq!(placed.get(&mine), Some(&vec!["n1".to_string()]));
    assert!(!placed.contains_key(&bobs), "bob holds no claim");
    let why = |id| plan.reasons.iter().find(|r| r.0 == id).map(|r| r.1.clone());
    assert_eq!(why(bobs).as_deref(), Some("claim"));
    assert_eq!(why(other2).as_deref(), Some("resources"));
    apply_plan(&mut s, at(3), plan);
    // Still only n2 idle and claimed: carol's second job keeps waiting.
    let plan = crate::scheduler::schedule(&s, at(4));
    assert!(plan.placements.iter().all(|p| p.allocation != other2));
    // A forged plan putting carol on a claimed node is refused on apply.
    let out = apply_plan(&mut s, at(5), placement(other2, &["n2"]));
    assert!(out.placed.is_empty());
    assert!(out.rejected[0].1.contains("claimed by alice"), "{out:?}");
    // And one putting bob's sensitive job on an unclaimed node.
    let n4 = Command::RegisterNode {
        now: at(5),
        registration: reg("n4"),
    };
    ok(&mut s, n4);
    let out = apply_plan(&mut s, at(5), placement(bobs, &["n4"]));
    assert!(out.rejected[0]
        .1
        .contains("not an idle node claimed by bob"));
}

#[test]
fn lifecycle_release_and_wipe_are_chained_in_order() {
    let mut s = sensitive_cluster(&["n1", "n2"]);
    ok(&mut s, claim("clinic", "alice", 1, &[]));
    let id = submit(&mut s, at(2), work("clinic", "alice"));
    let _ = submit(&mut s, at(2), work("physics", "carol")); // not audited
    let plan = crate::scheduler::schedule(&s, at(3));
    apply_plan(&mut s, at(3), plan);
    assert_eq!(s.allocation(id).unwrap().state, AllocState::Running);
    let e = rejected(&mut s, release("alice", &[], false));
    assert!(e.to_string().contains("still runs allocation(s)"), "{e}");
    report(&mut s, at(9), vec![exited(id, "n1", 0)]);
    let e = rejected(&mut s, release("bob", &["n1"], false));
    assert!(e.to_string().contains("claimed by alice, not bob"), "{e}");
    ok(&mut s, release("alice", &[], false));
    let wipe = s.node("n1").unwrap().claim.clone().unwrap().wipe.unwrap();
    assert_eq!(s.work_for(&["n1".into()]).revision, s.revision());
    // Still out of the pool while it is wiped.
    let c = submit(&mut s, at(51), work("physics", "carol"));
    let plan = crate::scheduler::schedule(&s, at(52));
    assert!(plan.placements.iter().all(|p| p.allocation != c));
    let wiped = |ok_: bool, wipe_id| Command::ReportWipes {
        now: at(60),
        reports: vec![WipeReport {
            node_id: "n1".into(),
            wipe_id,
            success: ok_,
            detail: "scrubbed".into(),
        }],
    };
    // A report of another wipe is ignored.
    assert!(matches!(
        ok(&mut s, wiped(true, wipe.id + 1)),
        CommandOutcome::Reports { applied: 0, .. }
    ));
    ok(&mut s, wiped(true, wipe.id));
    assert!(s.node("n1").unwrap().claim.is_none());
    assert!(s.node("n1").unwrap().is_free());
    let entries = s.take_audit();
    assert_eq!(
        actions(&entries),
        [
            "node.claimed",
            "allocation.submitted",
            "allocation.started",
            "allocation.completed",
            "node.released",
            "node.wiped"
        ]
    );
    assert_eq!(entries[2].nodes, ["n1"]);
    assert!(
        entries[3].detail.contains("exit code 0"),
        "{:?}",
        entries[3]
    );
    assert!(entries.iter().all(|e| e.tenant == "clinic"));
    assert_eq!(
        verify_chain(&entries, Some(GENESIS_HASH)).unwrap(),
        Some(s.audit_head().head_hash.clone())
    );
    assert_eq!(s.audit_head().count(), 6);
}

#[test]
fn a_failed_wipe_leaves_the_node_drained() {
    let mut s = sensitive_cluster(&["n1"]);
    ok(&mut s, claim("clinic", "alice", 1, &[]));
    ok(&mut s, release("alice", &["n1"], false));
    let wipe = s.node("n1").unwrap().claim.clone().unwrap().wipe.unwrap();
    ok(
        &mut s,
        Command::ReportWipes {
            now: at(60),
            reports: vec![WipeReport {
                node_id: "n1".into(),
                wipe_id: wipe.id,
                success: false,
                detail: "exit 3: disk busy".into(),
            }],
        },
    );
    let n = s.node("n1").unwrap();
    assert!(n.claim.is_none());
    assert_eq!(n.state, NodeState::Drained);
    assert_eq!(n.state_reason.as_deref(), Some("wipe_failed"));
    let entries = s.take_audit();
    assert_eq!(entries.last().unwrap().action, "node.wipe_failed");
    assert_eq!(entries.last().unwrap().detail, "exit 3: disk busy");
}

#[test]
fn access_records_and_pruning() {
    let mut s = sensitive_cluster(&["n1"]);
    let read = |tenant: &str, action| AuditRecord {
        tenant: tenant.into(),
        user: "auditor".into(),
        action,
        allocation: Some(1),
        nodes: Vec::new(),
        detail: String::new(),
    };
    let record = |records| Command::RecordAudit {
        now: at(5),
        records,
    };
    ok(
        &mut s,
        record(vec![read("clinic", AuditAction::StatusRead)]),
    );
    ok(&mut s, record(vec![read("*", AuditAction::AuditQueried)]));
    let e = rejected(&mut s, record(vec![read("physics", AuditAction::LogsRead)]));
    assert!(e.to_string().contains("not sensitive"), "{e}");
    let e = rejected(&mut s, record(vec![read("clinic", AuditAction::Started)]));
    assert!(
        e.to_string().contains("recorded by the action itself"),
        "{e}"
    );
    let entries = s.take_audit();
    assert_eq!(actions(&entries), ["access.status", "access.audit"]);
    let prune = |through, anchor: &str| Command::PruneAudit {
        now: at(9),
        through,
        anchor: anchor.into(),
    };
    assert!(matches!(
        rejected(&mut s, prune(3, &entries[0].hash)),
        Rejection::Invalid { .. }
    ));
    ok(&mut s, prune(1, &entries[0].hash));
    assert_eq!(s.audit_head().pruned_through, 1);
    assert_eq!(s.audit_head().anchor_hash, entries[0].hash);
    rejected(&mut s, prune(1, &entries[0].hash));
    // The kept suffix verifies from the anchor.
    assert!(verify_chain(&entries[1..], Some(&s.audit_head().anchor_hash)).is_ok());
}

#[test]
fn replay_produces_the_same_entries_and_snapshots_keep_the_head() {
    let build = || {
        let mut s = sensitive_cluster(&["n1", "n2"]);
        ok(&mut s, claim("clinic", "alice", 2, &[]));
        let a = submit(&mut s, at(2), work("clinic", "alice"));
        let plan = crate::scheduler::schedule(&s, at(3));
        apply_plan(&mut s, at(3), plan);
        ok(
            &mut s,
            Command::CancelAllocation {
                now: at(4),
                id: a,
                by: "operator1".into(),
            },
        );
        s
    };
    let (mut a, mut b) = (build(), build());
    let (ea, eb) = (a.take_audit(), b.take_audit());
    assert_eq!(ea, eb);
    assert!(ea.last().unwrap().detail.contains("cancelled by operator1"));
    let bytes = bincode::serialize(&a).unwrap();
    let mut back: ClusterState = bincode::deserialize(&bytes).unwrap();
    assert_eq!(back.audit_head(), a.audit_head());
    assert!(
        back.take_audit().is_empty(),
        "loading a snapshot records nothing"
    );
    assert_eq!(back, a);
}
