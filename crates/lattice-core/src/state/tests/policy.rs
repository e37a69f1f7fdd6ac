//! Apply tests for tenants, vClusters, arrays, dependencies, hold / release, requeue, usage
//! accounting and the policy checks of plan re-validation.

use super::*;
use crate::array::parse_array;
use crate::command::Target;
use crate::dependency::{parse_dependencies, DepKind, DepStatus, Dependency};
use crate::submit::SubmitOptions;
use crate::tenant::TenantChange;
use crate::vcluster::VClusterChange;

fn options(array: Option<&str>, deps: Option<&str>, hold: bool) -> SubmitOptions {
    SubmitOptions {
        array: array.map(|a| parse_array(a).unwrap()),
        depends_on: deps.map_or(Vec::new(), |d| parse_dependencies(d).unwrap()),
        hold,
        create_tenant: true,
        submitted_by: None,
    }
}

fn submit_with(s: &mut ClusterState, spec: AllocationSpec, o: SubmitOptions) -> AllocId {
    match ok(
        s,
        Command::Submit {
            now: at(0),
            spec,
            options: o,
        },
    ) {
        CommandOutcome::Allocation(a) => a.id,
        other => panic!("unexpected outcome {other:?}"),
    }
}

fn submit_rejected(s: &mut ClusterState, spec: AllocationSpec, o: SubmitOptions) -> Rejection {
    rejected(
        s,
        Command::Submit {
            now: at(0),
            spec,
            options: o,
        },
    )
}

fn field_of(r: &Rejection) -> &str {
    match r {
        Rejection::Invalid { field, .. } => field,
        other => panic!("expected an invalid field, got {other:?}"),
    }
}

/// Reports every rank of `id` exited with `code` at `t` seconds.
fn end(s: &mut ClusterState, id: AllocId, code: i32, t: u64) {
    let nodes = s.allocations()[&id].assigned_nodes.clone();
    let reports = nodes.iter().map(|n| exited(id, n, code)).collect();
    report(s, at(t), reports);
}

fn put_tenant(
    s: &mut ClusterState,
    name: &str,
    change: TenantChange,
    create: bool,
) -> CommandResult {
    let before = s.clone();
    let res = s.apply(&Command::PutTenant {
        now: at(1),
        name: name.into(),
        change,
        create,
    });
    if res.is_err() {
        assert_unchanged_but_revision(&before, s);
    }
    check_invariants(s);
    res
}

#[test]
fn a_new_cluster_has_the_default_tenant_and_vcluster() {
    let s = ClusterState::default();
    assert_eq!(s.tenants().keys().collect::<Vec<_>>(), ["default"]);
    assert_eq!(s.vclusters().keys().collect::<Vec<_>>(), ["default"]);
    assert_eq!(s.tenant("default").unwrap().share, 1);
}

#[test]
fn tenants_are_created_and_changed() {
    let mut s = ClusterState::default();
    let change = TenantChange {
        share: Some(3),
        max_nodes: Some(Some(10)),
        ..Default::default()
    };
    let t = match put_tenant(&mut s, "physics", change.clone(), true) {
        Ok(CommandOutcome::Tenant(t)) => t,
        other => panic!("{other:?}"),
    };
    assert_eq!((t.share, t.max_nodes, t.max_running), (3, Some(10), None));
    assert!(matches!(
        put_tenant(&mut s, "physics", change.clone(), true),
        Err(Rejection::Conflict { .. })
    ));
    assert!(matches!(
        put_tenant(&mut s, "bio", change, false),
        Err(Rejection::NotFound { .. })
    ));
    let lift = TenantChange {
        max_nodes: Some(None),
        sensitive: Some(true),
        ..Default::default()
    };
    put_tenant(&mut s, "physics", lift, false).unwrap();
    let t = s.tenant("physics").unwrap();
    assert_eq!((t.share, t.max_nodes, t.sensitive), (3, None, true));
    assert_eq!(t.updated_at, at(1));
    let bad = put_tenant(&mut s, "a b", TenantChange::default(), true).unwrap_err();
    assert_eq!(field_of(&bad), "name");
}

#[test]
fn vclusters_are_created_and_default_keeps_every_node() {
    let mut s = ClusterState::default();
    let gpu = VClusterChange {
        features: Some(vec!["gpu".into()]),
        ..Default::default()
    };
    ok(
        &mut s,
        Command::PutVCluster {
            now: at(1),
            name: "gpu".into(),
            change: gpu.clone(),
            create: true,
        },
    );
    assert_eq!(s.vcluster("gpu").unwrap().features, ["gpu"]);
    let err = rejected(
        &mut s,
        Command::PutVCluster {
            now: at(1),
            name: "default".into(),
            change: gpu,
            create: false,
        },
    );
    assert_eq!(field_of(&err), "features");
    ok(
        &mut s,
        Command::PutVCluster {
            now: at(2),
            name: "default".into(),
            change: VClusterChange {
                policy: Some(crate::vcluster::Policy::Fifo),
                ..Default::default()
            },
            create: false,
        },
    );
    assert_eq!(
        s.vcluster("default").unwrap().policy,
        crate::vcluster::Policy::Fifo
    );
}

#[test]
fn unknown_vclusters_and_tenants_are_refused_by_name() {
    let mut s = ClusterState::default();
    let err = submit_rejected(
        &mut s,
        AllocationSpec {
            vcluster: "gpu".into(),
            ..spec(1)
        },
        options(None, None, false),
    );
    assert_eq!(field_of(&err), "vcluster");
    assert!(err.to_string().contains("\"gpu\""), "{err}");
    let no_create = SubmitOptions::default();
    let err = submit_rejected(
        &mut s,
        AllocationSpec {
            tenant: "physics".into(),
            ..spec(1)
        },
        no_create,
    );
    assert_eq!(field_of(&err), "tenant");
    assert!(err.to_string().contains("\"physics\""), "{err}");
    // Allowed to create it: the tenant appears with default settings.
    submit_with(
        &mut s,
        AllocationSpec {
            tenant: "physics".into(),
            ..spec(1)
        },
        options(None, None, false),
    );
    assert_eq!(s.tenant("physics").unwrap().share, 1);
    // The original command always creates the tenant.
    submit(
        &mut s,
        at(1),
        AllocationSpec {
            tenant: "bio".into(),
            ..spec(1)
        },
    );
    assert!(s.tenant("bio").is_some());
}

#[test]
fn an_array_is_created_in_one_command() {
    let mut s = cluster(&["n1", "n2"]);
    let before = s.revision();
    let first = submit_with(&mut s, spec(1), options(Some("0-9%3"), None, false));
    assert_eq!(s.revision(), before + 1, "one Raft entry");
    let info = s.array(first).unwrap();
    assert_eq!((info.size, info.max_running), (10, Some(3)));
    let ids: Vec<AllocId> = s.array_members(first).map(|a| a.id).collect();
    assert_eq!(ids, (first..first + 10).collect::<Vec<_>>());
    for (i, id) in ids.iter().enumerate() {
        let a = &s.allocations()[id];
        assert_eq!((a.array_id, a.array_index), (Some(first), Some(i as u32)));
        assert_eq!(a.state, AllocState::Pending);
    }
    assert_eq!(s.array_task(first, 7).unwrap().id, first + 7);
    assert_eq!(
        s.array_task(first, 7).unwrap().job_ref(),
        format!("{first}_7")
    );
    assert_eq!(s.array_tally(first)[AllocState::Pending as usize], 10);

    // Elements learn their array and index from the environment.
    place(&mut s, first + 7, &["n2"]);
    let work = s.work_for(&["n2".to_string()]);
    let env = &work.assignments[0].env;
    assert_eq!(env["LATTICE_ARRAY_ID"], first.to_string());
    assert_eq!(env["LATTICE_TASK_INDEX"], "7");
}

#[test]
fn dependencies_must_name_earlier_allocations() {
    let mut s = ClusterState::default();
    let a = submit(&mut s, at(0), spec(1));
    let arr = submit_with(&mut s, spec(1), options(Some("0-2"), None, false));
    // The ID the submission itself would get, and a later one: refused (no cycles).
    for id in [s.next_allocation_id(), 999] {
        let err = submit_rejected(&mut s, spec(1), options(None, Some(&id.to_string()), false));
        assert_eq!(field_of(&err), "depends_on");
        assert!(err.to_string().contains(&id.to_string()), "{err}");
    }
    let err = submit_rejected(
        &mut s,
        spec(1),
        options(None, Some(&format!("{arr}_9")), false),
    );
    assert!(err.to_string().contains(&format!("{arr}_9")), "{err}");

    let b = submit_with(
        &mut s,
        spec(1),
        options(None, Some(&format!("{a}:any,{arr}_1,{arr},{a}:any")), false),
    );
    assert_eq!(
        s.allocations()[&b].depends_on,
        vec![
            Dependency {
                on: a,
                array: false,
                kind: DepKind::Any
            },
            Dependency {
                on: arr + 1,
                array: false,
                kind: DepKind::Success
            },
            Dependency {
                on: arr,
                array: true,
                kind: DepKind::Success
            },
        ]
    );
}

#[test]
fn a_failed_success_dependency_cancels_dependents_transitively() {
    let mut s = cluster(&["n1"]);
    let a = submit(&mut s, at(0), spec(1));
    let b = submit_with(&mut s, spec(1), options(None, Some(&format!("{a}")), false));
    let c = submit_with(
        &mut s,
        spec(1),
        options(None, Some(&format!("{b}:success")), false),
    );
    let d = submit_with(
        &mut s,
        spec(1),
        options(None, Some(&format!("{a}:any")), false),
    );
    place(&mut s, a, &["n1"]);
    end(&mut s, a, 3, 20);
    for id in [b, c] {
        let x = &s.allocations()[&id];
        assert_eq!(x.state, AllocState::Cancelled, "{id}");
        assert_eq!(x.reason.as_deref(), Some("dependency_failed"));
    }
    assert!(s.allocations()[&b]
        .reason_detail
        .as_deref()
        .unwrap()
        .contains(&format!("dependency {a} failed")));
    assert_eq!(s.allocations()[&d].state, AllocState::Pending);
    assert_eq!(
        s.dependency_status(&s.allocations()[&d].depends_on[0]),
        DepStatus::Met
    );
    // Submitting after the failure: cancelled at once.
    let e = submit_with(&mut s, spec(1), options(None, Some(&format!("{a}")), false));
    assert_eq!(s.allocations()[&e].state, AllocState::Cancelled);
    assert_eq!(
        s.allocations()[&e].reason.as_deref(),
        Some("dependency_failed")
    );
}

#[test]
fn array_dependencies_wait_for_every_element() {
    let mut s = cluster(&["n1", "n2"]);
    let arr = submit_with(&mut s, spec(1), options(Some("0-1"), None, false));
    let ok_dep = submit_with(
        &mut s,
        spec(1),
        options(None, Some(&format!("{arr}")), false),
    );
    let any_dep = submit_with(
        &mut s,
        spec(1),
        options(None, Some(&format!("afterany:{arr}")), false),
    );
    let status =
        |s: &ClusterState, id: AllocId| s.dependency_status(&s.allocations()[&id].depends_on[0]);
    place(&mut s, arr, &["n1"]);
    place(&mut s, arr + 1, &["n2"]);
    end(&mut s, arr, 0, 10);
    assert_eq!(status(&s, ok_dep), DepStatus::Waiting);
    assert_eq!(status(&s, any_dep), DepStatus::Waiting);
    end(&mut s, arr + 1, 1, 11);
    assert_eq!(s.allocations()[&ok_dep].state, AllocState::Cancelled);
    assert_eq!(status(&s, any_dep), DepStatus::Met);
}

#[test]
fn hold_and_release() {
    let mut s = cluster(&["n1"]);
    let held = submit_with(&mut s, spec(1), options(None, None, true));
    let a = &s.allocations()[&held];
    assert!(a.held);
    assert_eq!(a.reason.as_deref(), Some("held"));
    let set = |id: AllocId, hold: bool| Command::SetHold {
        now: at(2),
        target: Target::Allocation(id),
        hold,
        by: "alice".into(),
    };
    ok(&mut s, set(held, false));
    assert!(!s.allocations()[&held].held);
    assert_eq!(s.allocations()[&held].reason, None);
    let err = rejected(&mut s, set(held, false));
    assert!(err.to_string().contains("not held"), "{err}");
    let running = submit(&mut s, at(0), spec(1));
    place(&mut s, running, &["n1"]);
    let err = rejected(&mut s, set(running, true));
    assert!(err.to_string().contains("running"), "{err}");
    ok(&mut s, set(held, true));
    assert_eq!(
        s.allocations()[&held].reason_detail.as_deref(),
        Some("held by alice")
    );

    // A whole array: every pending element.
    let arr = submit_with(&mut s, spec(1), options(Some("0-3"), None, false));
    let out = ok(
        &mut s,
        Command::SetHold {
            now: at(3),
            target: Target::Array(arr),
            hold: true,
            by: "bob".into(),
        },
    );
    assert!(matches!(out, CommandOutcome::Array { ref changed, .. } if changed.len() == 4));
    assert!(s.array_members(arr).all(|a| a.held));
}

#[test]
fn cancel_a_whole_array() {
    let mut s = cluster(&["n1", "n2"]);
    let arr = submit_with(&mut s, spec(1), options(Some("0-4"), None, false));
    place(&mut s, arr, &["n1"]);
    place(&mut s, arr + 1, &["n2"]);
    end(&mut s, arr + 1, 0, 5);
    let out = ok(
        &mut s,
        Command::CancelArray {
            now: at(6),
            array_id: arr,
            by: "alice".into(),
        },
    );
    let CommandOutcome::Array { changed, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(changed, vec![arr, arr + 2, arr + 3, arr + 4]);
    assert_eq!(s.allocations()[&(arr + 1)].state, AllocState::Completed);
    assert!(s
        .array_members(arr)
        .filter(|a| a.id != arr + 1)
        .all(|a| a.state == AllocState::Cancelled));
    // The running element's node keeps it until its agent reports it gone.
    assert_eq!(desired(&s, "n1"), vec![(arr, Desired::Stop)]);
    let again = rejected(
        &mut s,
        Command::CancelArray {
            now: at(7),
            array_id: arr,
            by: "alice".into(),
        },
    );
    assert!(matches!(again, Rejection::Conflict { .. }));
    let unknown = rejected(
        &mut s,
        Command::CancelArray {
            now: at(7),
            array_id: 999,
            by: "alice".into(),
        },
    );
    assert!(matches!(unknown, Rejection::NotFound { .. }));
}

#[test]
fn requeue_runs_the_work_again_as_a_new_allocation() {
    let mut s = cluster(&["n1", "n2"]);
    let a = submit(&mut s, at(0), spec(1));
    let dep = submit_with(&mut s, spec(1), options(None, Some(&a.to_string()), false));
    let err = rejected(
        &mut s,
        Command::Requeue {
            now: at(1),
            target: Target::Allocation(a),
            by: "alice".into(),
        },
    );
    assert!(err.to_string().contains("pending"), "{err}");
    place(&mut s, a, &["n1"]);
    let out = ok(
        &mut s,
        Command::Requeue {
            now: at(5),
            target: Target::Allocation(a),
            by: "alice".into(),
        },
    );
    let CommandOutcome::Allocation(new) = out else {
        panic!("{out:?}")
    };
    assert_eq!(new.state, AllocState::Pending);
    assert_eq!(new.requeued_from, Some(a));
    assert_eq!((new.command.clone(), new.nodes), (spec(1).command, 1));
    let old = &s.allocations()[&a];
    assert_eq!(old.state, AllocState::Cancelled);
    assert_eq!(old.reason.as_deref(), Some("requeued"));
    assert_eq!(old.requeued_as, Some(new.id));
    assert_eq!(desired(&s, "n1"), vec![(a, Desired::Stop)]);
    // The dependent follows the work to its new run instead of failing.
    assert_eq!(s.allocations()[&dep].state, AllocState::Pending);
    let err = rejected(
        &mut s,
        Command::Requeue {
            now: at(6),
            target: Target::Allocation(a),
            by: "alice".into(),
        },
    );
    assert!(err.to_string().contains("already requeued"), "{err}");
    place(&mut s, new.id, &["n2"]);
    end(&mut s, new.id, 0, 9);
    assert_eq!(
        s.dependency_status(&s.allocations()[&dep].depends_on[0]),
        DepStatus::Met
    );
}

#[test]
fn a_requeued_array_element_keeps_its_index_and_counts_once() {
    let mut s = cluster(&["n1"]);
    let arr = submit_with(&mut s, spec(1), options(Some("0-1%1"), None, false));
    let dependent = submit_with(
        &mut s,
        spec(1),
        options(None, Some(&arr.to_string()), false),
    );
    place(&mut s, arr, &["n1"]);
    end(&mut s, arr, 1, 3);
    // The failed element broke the dependent; requeue the failed element.
    assert_eq!(s.allocations()[&dependent].state, AllocState::Cancelled);
    let out = ok(
        &mut s,
        Command::Requeue {
            now: at(4),
            target: Target::Allocation(arr),
            by: "x".into(),
        },
    );
    let CommandOutcome::Allocation(new) = out else {
        panic!("{out:?}")
    };
    assert_eq!((new.array_id, new.array_index), (Some(arr), Some(0)));
    assert_eq!(s.array_task(arr, 0).unwrap().id, new.id);
    let tally = s.array_tally(arr);
    assert_eq!(tally[AllocState::Pending as usize], 2);
    assert_eq!(
        tally[AllocState::Failed as usize],
        0,
        "superseded: not counted"
    );
}

#[test]
fn usage_is_charged_when_work_that_ran_ends() {
    let mut s = cluster(&["n1", "n2"]);
    ok(
        &mut s,
        Command::PutVCluster {
            now: at(0),
            name: "default".into(),
            change: VClusterChange {
                fairshare_half_life_seconds: Some(100),
                ..Default::default()
            },
            create: false,
        },
    );
    let a = submit(&mut s, at(0), spec(2));
    let out = apply_plan(&mut s, at(10), placement(a, &["n1", "n2"]));
    assert_eq!(out.placed, vec![a]);
    end(&mut s, a, 0, 110);
    let u = s.usage()["default"]["default"];
    assert_eq!(u.node_ms, 200_000, "2 nodes x 100 s");
    assert_eq!(u.as_of, at(110));
    assert_eq!(
        u.at(at(210), 100_000),
        100_000,
        "halved after one half-life"
    );
    // Work that never ran costs nothing.
    let b = submit(&mut s, at(111), spec(1));
    ok(
        &mut s,
        Command::CancelAllocation {
            now: at(112),
            id: b,
            by: "x".into(),
        },
    );
    assert_eq!(s.usage()["default"]["default"], u);
}

#[test]
fn plans_cannot_break_quotas_caps_holds_dependencies_or_vclusters() {
    let mut s = cluster(&["n1", "n2", "n3", "n4"]);
    put_tenant(
        &mut s,
        "small",
        TenantChange {
            max_nodes: Some(Some(2)),
            max_running: Some(Some(2)),
            ..Default::default()
        },
        true,
    )
    .unwrap();
    let small = |n| AllocationSpec {
        tenant: "small".into(),
        ..spec(n)
    };
    let q1 = submit(&mut s, at(0), small(2));
    let q2 = submit(&mut s, at(0), small(1));
    let out = apply_plan(
        &mut s,
        at(1),
        Plan {
            placements: vec![
                Placement {
                    allocation: q1,
                    nodes: vec!["n1".into(), "n2".into()],
                },
                Placement {
                    allocation: q2,
                    nodes: vec!["n3".into()],
                },
            ],
            ..Default::default()
        },
    );
    assert_eq!(out.placed, vec![q1]);
    assert!(
        out.rejected[0].1.contains("max_nodes"),
        "{:?}",
        out.rejected
    );

    let held = submit_with(&mut s, spec(1), options(None, None, true));
    let out = apply_plan(&mut s, at(2), placement(held, &["n3"]));
    assert!(out.rejected[0].1.contains("held"));

    let first = submit(&mut s, at(0), spec(1));
    let waits = submit_with(
        &mut s,
        spec(1),
        options(None, Some(&first.to_string()), false),
    );
    let out = apply_plan(&mut s, at(2), placement(waits, &["n3"]));
    assert!(out.rejected[0].1.contains("dependency"));

    let arr = submit_with(&mut s, spec(1), options(Some("0-1%1"), None, false));
    place(&mut s, arr, &["n3"]);
    let out = apply_plan(&mut s, at(2), placement(arr + 1, &["n4"]));
    assert!(out.rejected[0].1.contains("cap"), "{:?}", out.rejected);

    ok(
        &mut s,
        Command::PutVCluster {
            now: at(0),
            name: "gpu".into(),
            change: VClusterChange {
                nodes: Some(vec!["n1".into()]),
                ..Default::default()
            },
            create: true,
        },
    );
    let g = submit(
        &mut s,
        at(0),
        AllocationSpec {
            vcluster: "gpu".into(),
            ..spec(1)
        },
    );
    let out = apply_plan(&mut s, at(2), placement(g, &["n4"]));
    assert!(
        out.rejected[0].1.contains("not in vCluster gpu"),
        "{:?}",
        out.rejected
    );
}

#[test]
fn estimates_from_a_plan_only_touch_pending_allocations() {
    let mut s = cluster(&["n1"]);
    let running = submit(&mut s, at(0), spec(1));
    place(&mut s, running, &["n1"]);
    let pending = submit(&mut s, at(0), spec(1));
    apply_plan(
        &mut s,
        at(2),
        Plan {
            estimates: vec![(running, Some(at(9))), (pending, Some(at(61)))],
            ..Default::default()
        },
    );
    assert_eq!(s.allocations()[&running].estimated_start, None);
    assert_eq!(s.allocations()[&pending].estimated_start, Some(at(61)));
}

/// An array's elements share their environment map instead of a copy each, also after a
/// snapshot round trip (which holds a copy per element); the serialized form is the map
/// itself, as before the sharing.
#[test]
fn array_elements_share_one_environment_map() {
    let mut s = cluster(&["n1"]);
    let mut sp = spec(1);
    sp.env = std::sync::Arc::new([("SIM_DURATION".to_string(), "0".to_string())].into());
    let first = submit_with(&mut s, sp.clone(), options(Some("0-99"), None, false));
    let other = submit_with(&mut s, sp, options(None, None, false));
    let elements: Vec<&crate::allocation::Allocation> = s
        .allocations()
        .values()
        .filter(|a| a.array_id == Some(first))
        .map(|a| &**a)
        .collect();
    assert_eq!(elements.len(), 100);
    let env = &elements[0].env;
    assert_eq!(env.get("SIM_DURATION").map(String::as_str), Some("0"));
    assert!(elements.iter().all(|a| std::sync::Arc::ptr_eq(&a.env, env)));

    let bytes = bincode::serialize(&s).unwrap();
    let back: ClusterState = bincode::deserialize(&bytes).unwrap();
    assert_eq!(back, s);
    let envs: Vec<&crate::allocation::Env> = back.allocations().values().map(|a| &a.env).collect();
    assert!(
        envs.iter().all(|e| std::sync::Arc::ptr_eq(e, envs[0])),
        "equal maps are shared again after loading, the other submission's too"
    );
    assert!(back.allocations()[&other].env.len() == 1);

    // Submissions without variables share one empty map from the start.
    let a = crate::allocation::env_of(Default::default());
    let b = crate::allocation::env_of(Default::default());
    assert!(a.is_empty() && std::sync::Arc::ptr_eq(&a, &b));
    let set = crate::allocation::env_of([("A".to_string(), "1".to_string())].into());
    assert!(!std::sync::Arc::ptr_eq(&set, &a) && set.len() == 1);

    // Serialized as the map: the API's JSON and the snapshot's bincode are unchanged.
    let map: std::collections::BTreeMap<String, String> = (**env).clone();
    assert_eq!(
        serde_json::to_string(env).unwrap(),
        serde_json::to_string(&map).unwrap()
    );
    assert_eq!(
        bincode::serialize(env).unwrap(),
        bincode::serialize(&map).unwrap()
    );
}
