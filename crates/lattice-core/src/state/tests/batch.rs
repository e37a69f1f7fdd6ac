//! `Command::Batch`: the commands of one Raft entry apply exactly as if each had its own.

use super::*;

fn cancel(now: Timestamp, id: AllocId) -> Command {
    Command::CancelAllocation {
        now,
        id,
        by: "alice".into(),
    }
}

#[test]
fn a_batch_applies_like_its_commands_one_by_one() {
    let mut base = cluster(&["n1", "n2"]);
    let running = submit(&mut base, at(0), spec(1));
    place(&mut base, running, &["n1"]);
    let next = running + 1;
    let commands = vec![
        Command::SubmitAllocation {
            now: at(1),
            spec: spec(1),
        },
        // Refused in the middle: nothing of it applies, the rest still does.
        cancel(at(1), 99),
        Command::SubmitAllocation {
            now: at(2),
            spec: spec(2),
        },
        // Sees the allocation the first command of the same entry created.
        cancel(at(2), next),
        Command::ReportExits {
            now: at(3),
            reports: vec![exited(running, "n1", 0)],
        },
    ];

    let mut one_by_one = base.clone();
    let want: Vec<CommandResult> = commands.iter().map(|c| one_by_one.apply(c)).collect();
    assert!(want[1].is_err() && want.iter().filter(|r| r.is_err()).count() == 1);

    let mut batched = base.clone();
    let out = batched
        .apply(&Command::Batch {
            now: at(3),
            commands,
        })
        .expect("a batch is never refused as a whole");
    check_invariants(&batched);
    assert_eq!(out, CommandOutcome::Batch(want));
    // Revisions (the nodes' work revisions included) count as if each command had its own
    // entry.
    assert_eq!(one_by_one, batched);
    assert_eq!(
        batched.allocation(next).map(|a| a.state),
        Some(AllocState::Cancelled)
    );
}

#[test]
fn an_empty_or_all_refused_batch_changes_nothing_but_the_revisions() {
    let mut s = cluster(&["n1"]);
    for commands in [vec![], vec![cancel(at(1), 7), cancel(at(1), 8)]] {
        let before = s.clone();
        let out = s
            .apply(&Command::Batch {
                now: at(1),
                commands: commands.clone(),
            })
            .expect("a batch is never refused as a whole");
        let CommandOutcome::Batch(results) = out else {
            panic!("not a batch outcome: {out:?}");
        };
        assert_eq!(results.len(), commands.len());
        assert!(results.iter().all(|r| r.is_err()));
        // One revision per (refused) command, as if each had its own entry.
        assert_eq!(s.revision(), before.revision() + commands.len() as u64);
        let mut normalised = before.clone();
        normalised.revision = s.revision;
        assert_eq!(normalised, s);
        check_invariants(&s);
    }
}
