//! How allocations are shown: the squeue-like table of `lattice status` and the `key: value`
//! detail view of `lattice status ID`. Pure functions of the allocations and the local clock.

use std::collections::BTreeMap;

use lattice_core::array::compress;
use lattice_core::checkpoint::{CheckpointRecord, CheckpointSpec, CheckpointTrigger};
use lattice_core::{AllocId, AllocState, Allocation, Timestamp};

use super::constraint::describe;
use super::output::one_line;
use super::table::{format_elapsed, format_time, Align, Table};

/// Seconds the allocation has run: up to now while running, up to its end once finished.
pub fn elapsed_secs(a: &Allocation, now: Timestamp) -> u64 {
    match (a.started_at, a.finished_at) {
        (Some(start), Some(end)) => end.millis_since(start) / 1000,
        (Some(start), None) => now.millis_since(start) / 1000,
        (None, _) => 0,
    }
}

/// `NODELIST(REASON)`: the assigned nodes, or `(reason)` while there are none.
fn nodelist_or_reason(a: &Allocation) -> String {
    if a.assigned_nodes.is_empty() || a.state == AllocState::Pending {
        format!("({})", a.reason.as_deref().unwrap_or("None"))
    } else {
        a.assigned_nodes.join(",")
    }
}

/// The allocation table; `wide` adds VCLUSTER, PRIORITY, SUBMITTED and EXIT. Job arrays
/// are folded into one line each.
#[cfg(test)]
pub fn table(allocs: &[Allocation], now: Timestamp, wide: bool) -> String {
    table_view(
        allocs,
        now,
        View {
            wide,
            ..Default::default()
        },
    )
}

/// How `lattice status` shows its table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// Extra columns: VCLUSTER, PRIORITY, SUBMITTED, EXIT.
    pub wide: bool,
    /// One line per array task instead of one per array.
    pub expand: bool,
    /// A START column with pending allocations' estimated starts.
    pub start: bool,
}

/// What one line of the table shows: an allocation, or the listed tasks of one array.
enum Line<'a> {
    One(&'a Allocation),
    Array(Vec<&'a Allocation>),
}

fn lines(allocs: &[Allocation], expand: bool) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut arrays: BTreeMap<AllocId, usize> = BTreeMap::new();
    for a in allocs {
        match a.array_id {
            Some(array) if !expand => match arrays.get(&array) {
                Some(&i) => {
                    if let Line::Array(v) = &mut out[i] {
                        v.push(a);
                    }
                }
                None => {
                    arrays.insert(array, out.len());
                    out.push(Line::Array(vec![a]));
                }
            },
            _ => out.push(Line::One(a)),
        }
    }
    out
}

/// `START`: the estimated start of a pending allocation (`now` once it has passed).
fn start_text(a: &Allocation, now: Timestamp) -> String {
    match (a.state, a.estimated_start) {
        (AllocState::Pending, Some(t)) if t <= now => "now".into(),
        (AllocState::Pending, Some(t)) => format_time(t),
        _ => "-".into(),
    }
}

pub fn table_view(allocs: &[Allocation], now: Timestamp, v: View) -> String {
    use Align::{Left, Right};
    let wide = v.wide;
    let mut cols = vec![("ID", Right), ("NAME", Left), ("TENANT", Left)];
    if wide {
        cols.push(("VCLUSTER", Left));
    }
    cols.extend([("USER", Left), ("STATE", Left)]);
    if wide {
        cols.extend([("PRIORITY", Right), ("SUBMITTED", Left)]);
    }
    cols.extend([("TIME", Right), ("NODES", Right)]);
    if wide {
        cols.push(("EXIT", Right));
    }
    if v.start {
        cols.push(("START", Left));
    }
    cols.push(("NODELIST(REASON)", Left));

    let mut t = Table::new(cols);
    for line in lines(allocs, v.expand) {
        let (a, id, state, time, exit, start, last) = match &line {
            Line::One(a) => (
                *a,
                a.job_ref(),
                a.state.as_str().to_string(),
                elapsed_secs(a, now),
                a.exit_code.map_or("-".into(), |c| c.to_string()),
                start_text(a, now),
                nodelist_or_reason(a),
            ),
            Line::Array(tasks) => {
                let a = tasks[0];
                let indices: Vec<u32> = tasks.iter().filter_map(|x| x.array_index).collect();
                let array = a.array_id.unwrap_or(a.id);
                let mut counts: BTreeMap<AllocState, usize> = BTreeMap::new();
                for x in tasks {
                    *counts.entry(x.state).or_default() += 1;
                }
                let state = if counts.contains_key(&AllocState::Running) {
                    AllocState::Running
                } else {
                    a.state
                };
                let mut summary: Vec<String> =
                    counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
                if let Some(r) = tasks
                    .iter()
                    .find(|x| x.state == AllocState::Pending)
                    .and_then(|x| x.reason.as_deref())
                {
                    summary.push(format!("({r})"));
                }
                let start = tasks
                    .iter()
                    .filter(|x| x.state == AllocState::Pending)
                    .filter_map(|x| x.estimated_start)
                    .min()
                    .map_or("-".into(), |s| {
                        if s <= now {
                            "now".into()
                        } else {
                            format_time(s)
                        }
                    });
                (
                    a,
                    format!("{array}_[{}]", compress(&indices)),
                    state.as_str().to_string(),
                    tasks
                        .iter()
                        .map(|x| elapsed_secs(x, now))
                        .max()
                        .unwrap_or(0),
                    "-".into(),
                    start,
                    summary.join(", ").replacen(", (", " (", 1),
                )
            }
        };
        let mut row = vec![id, a.name.clone(), a.tenant.clone()];
        if wide {
            row.push(a.vcluster.clone());
        }
        row.extend([a.user.clone(), state]);
        if wide {
            row.extend([a.priority.to_string(), format_time(a.submitted_at)]);
        }
        row.extend([format_elapsed(time), a.nodes.to_string()]);
        if wide {
            row.push(exit);
        }
        if v.start {
            row.push(start);
        }
        row.push(last);
        t.row(row);
    }
    t.render()
}

/// Every field of one allocation as aligned `key: value` lines; the script, if any, follows
/// indented.
pub fn detail(a: &Allocation, now: Timestamp) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let time = |t: Option<Timestamp>| opt(t.map(format_time));
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(" ")
        }
    };
    let fields: Vec<(&str, String)> = vec![
        ("id", a.id.to_string()),
        ("name", a.name.clone()),
        ("state", a.state.as_str().to_string()),
        ("reason", opt(a.reason.clone())),
        ("reason_detail", opt(a.reason_detail.clone())),
        (
            "estimated_start",
            match (a.state, a.estimated_start) {
                (AllocState::Pending, Some(t)) => format_time(t),
                _ => "-".into(),
            },
        ),
        ("held", if a.held { "yes" } else { "no" }.into()),
        (
            "array",
            opt(a
                .array_id
                .map(|arr| format!("{arr} (task {})", a.array_index.unwrap_or(0)))),
        ),
        (
            "depends_on",
            list(
                a.depends_on
                    .iter()
                    .map(|d| {
                        let what = if d.array {
                            format!("{} (array)", d.on)
                        } else {
                            d.on.to_string()
                        };
                        format!("{what}:{}", d.kind.as_str())
                    })
                    .collect(),
            ),
        ),
        ("requeued_from", opt(a.requeued_from.map(|x| x.to_string()))),
        ("requeued_as", opt(a.requeued_as.map(|x| x.to_string()))),
        (
            "preemptible",
            if a.preemptible { "yes" } else { "no" }.into(),
        ),
        ("checkpoint", checkpoint_text(&a.checkpoint)),
        ("preempt_count", a.preempt_count.to_string()),
        (
            "preempted_by",
            opt(a
                .preemption
                .as_ref()
                .map(|p| format!("{} (since {})", p.by, format_time(p.since)))),
        ),
        (
            "claimed_nodes",
            opt((!a.claimed_nodes.is_empty()).then(|| a.claimed_nodes.join(","))),
        ),
        (
            "checkpoints",
            match a.last_checkpoint_at {
                Some(t) => format!(
                    "{} (last successful {})",
                    a.checkpoint_count,
                    format_time(t)
                ),
                None => a.checkpoint_count.to_string(),
            },
        ),
        (
            "last_checkpoint",
            opt(a.last_checkpoint.as_ref().map(record_text)),
        ),
        ("tenant", a.tenant.clone()),
        ("vcluster", a.vcluster.clone()),
        ("user", a.user.clone()),
        ("priority", a.priority.to_string()),
        ("nodes", a.nodes.to_string()),
        (
            "assigned_nodes",
            opt((!a.assigned_nodes.is_empty()).then(|| a.assigned_nodes.join(","))),
        ),
        ("constraints", describe(&a.constraints)),
        (
            "walltime",
            format!(
                "{} ({} s)",
                format_elapsed(a.walltime_seconds),
                a.walltime_seconds
            ),
        ),
        ("submitted_at", format_time(a.submitted_at)),
        ("started_at", time(a.started_at)),
        ("finished_at", time(a.finished_at)),
        ("elapsed", format_elapsed(elapsed_secs(a, now))),
        ("exit_code", opt(a.exit_code.map(|c| c.to_string()))),
        (
            "node_exit_codes",
            list(
                a.node_exit_codes
                    .iter()
                    .map(|(n, c)| format!("{n}={}", exit_text(*c)))
                    .collect(),
            ),
        ),
        (
            "env",
            list(
                a.env
                    .iter()
                    .map(|(k, v)| format!("{k}={}", shell_quote(v)))
                    .collect(),
            ),
        ),
        (
            "command",
            opt(a.command.as_ref().map(|argv| {
                argv.iter()
                    .map(|w| shell_quote(w))
                    .collect::<Vec<_>>()
                    .join(" ")
            })),
        ),
    ];
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (key, value) in fields {
        out.push_str(&format!(
            "{:<width$} {}\n",
            format!("{key}:"),
            one_line(&value)
        ));
    }
    if let Some(script) = &a.script {
        out.push_str("script:\n");
        for line in script.lines() {
            let line: String = line
                .chars()
                .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
                .collect();
            out.push_str(format!("    {line}").trim_end());
            out.push('\n');
        }
    }
    out
}

/// An allocation's checkpoint settings: `none`, or
/// `signal SIGUSR1, timeout 60 s, every 1:00:00`.
pub fn checkpoint_text(c: &CheckpointSpec) -> String {
    if !c.enabled() {
        return c.mode.as_str().to_string();
    }
    let mut text = format!(
        "{} {}, timeout {} s",
        c.mode.as_str(),
        c.signal,
        c.timeout_seconds
    );
    if let Some(i) = c.interval_seconds {
        text.push_str(&format!(", every {}", format_elapsed(i)));
    }
    text
}

/// What started a checkpoint round: `preemption`, `request 3`, `periodic 2`.
pub fn trigger_text(t: CheckpointTrigger) -> String {
    match t {
        CheckpointTrigger::Preemption => "preemption".into(),
        CheckpointTrigger::Request(n) => format!("request {n}"),
        CheckpointTrigger::Periodic(n) => format!("periodic {n}"),
    }
}

/// A round's duration in seconds with two decimals: `0.84s`.
pub fn duration_text(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

/// `success in 0.84s (request 2, 2026-03-01T12:00:10Z)`, with `: message` when there is one.
fn record_text(r: &CheckpointRecord) -> String {
    let mut text = format!(
        "{} in {} ({}, {})",
        r.outcome.as_str(),
        duration_text(r.duration_ms),
        trigger_text(r.trigger),
        format_time(r.at)
    );
    if let Some(m) = &r.message {
        text.push_str(&format!(": {m}"));
    }
    text
}

/// An exit code, with the signal spelled out for negative codes (`-9 (signal 9)`).
fn exit_text(code: i32) -> String {
    if code < 0 {
        format!("{code} (signal {})", code.unsigned_abs())
    } else {
        code.to_string()
    }
}

/// A word as a POSIX shell would need it written.
fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use lattice_core::{AllocationSpec, Constraints};

    use super::*;

    const T0: u64 = 1_772_366_400_000;

    fn alloc(id: u64, name: &str) -> Allocation {
        let spec = AllocationSpec {
            name: name.into(),
            tenant: "physics".into(),
            vcluster: "default".into(),
            user: "alice".into(),
            command: Some(vec!["sleep".into(), "60".into()]),
            script: None,
            nodes: 1,
            walltime_seconds: 3600,
            priority: 5,
            constraints: Constraints::default(),
            env: Default::default(),
            preemptible: true,
            checkpoint: Default::default(),
        };
        Allocation::new(id, spec, Timestamp::from_millis(T0))
    }

    fn secs(s: u64) -> Timestamp {
        Timestamp::from_millis(T0 + s * 1000)
    }

    fn sample() -> Vec<Allocation> {
        let mut pending = alloc(7, "wait");
        pending.reason = Some("resources".into());
        pending.nodes = 16;
        let mut running = alloc(12, "train-big");
        running.state = AllocState::Running;
        running.started_at = Some(secs(10));
        running.assigned_nodes = vec!["nid001".into(), "nid002".into()];
        running.nodes = 2;
        vec![pending, running]
    }

    #[test]
    fn squeue_like_table() {
        let now = secs(10 + 3725);
        assert_eq!(
            table(&sample(), now, false),
            "ID  NAME       TENANT   USER   STATE       TIME  NODES  NODELIST(REASON)\n\
             \x207  wait       physics  alice  pending     0:00     16  (resources)\n\
             12  train-big  physics  alice  running  1:02:05      2  nid001,nid002\n"
        );
    }

    #[test]
    fn wide_table_adds_columns() {
        let mut allocs = sample();
        allocs[1].state = AllocState::Failed;
        allocs[1].finished_at = Some(secs(70));
        allocs[1].exit_code = Some(3);
        let text = table(&allocs, secs(99_999), true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "ID  NAME       TENANT   VCLUSTER  USER   STATE    PRIORITY  SUBMITTED             \
             TIME  NODES  EXIT  NODELIST(REASON)"
        );
        assert_eq!(
            lines[2],
            "12  train-big  physics  default   alice  failed          5  2026-03-01T12:00:00Z  \
             1:00      2     3  nid001,nid002"
        );
        assert!(lines[1].contains("  -  (resources)"), "{}", lines[1]);
    }

    #[test]
    fn arrays_fold_into_one_line_unless_expanded() {
        let mut tasks: Vec<Allocation> = (0..3)
            .map(|i| {
                let mut a = alloc(10 + i, "sweep");
                a.array_id = Some(10);
                a.array_index = Some(i as u32);
                a.reason = Some("array_limit".into());
                a
            })
            .collect();
        tasks[0].state = AllocState::Running;
        tasks[0].started_at = Some(secs(10));
        tasks[0].reason = None;
        tasks[2].estimated_start = Some(secs(600));
        let mut all = vec![alloc(7, "solo")];
        all.extend(tasks);
        let folded = table_view(
            &all,
            secs(70),
            View {
                start: true,
                ..Default::default()
            },
        );
        let lines: Vec<&str> = folded.lines().collect();
        assert_eq!(lines.len(), 3, "{folded}");
        assert!(lines[0].contains("START"), "{folded}");
        assert_eq!(
            lines[2],
            "10_[0-2]  sweep  physics  alice  running  1:00      1  2026-03-01T12:10:00Z  \
             2 pending, 1 running (array_limit)"
        );
        let expanded = table_view(
            &all,
            secs(70),
            View {
                expand: true,
                ..Default::default()
            },
        );
        let ids: Vec<&str> = expanded
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(ids, ["7", "10_0", "10_1", "10_2"]);
    }

    #[test]
    fn pending_without_reason_and_empty_list() {
        let a = alloc(1, "x");
        assert!(table(&[a], secs(5), false).ends_with("(None)\n"));
        assert_eq!(
            table(&[], secs(0), false),
            "ID  NAME  TENANT  USER  STATE  TIME  NODES  NODELIST(REASON)\n"
        );
    }

    #[test]
    fn elapsed_uses_the_right_ends() {
        let mut a = alloc(1, "x");
        assert_eq!(elapsed_secs(&a, secs(50)), 0);
        a.started_at = Some(secs(10));
        assert_eq!(elapsed_secs(&a, secs(50)), 40);
        a.finished_at = Some(secs(20));
        assert_eq!(elapsed_secs(&a, secs(50)), 10);
        assert_eq!(elapsed_secs(&a, secs(0)), 10);
        a.finished_at = None;
        assert_eq!(
            elapsed_secs(&a, secs(0)),
            0,
            "local clock behind the server's"
        );
    }

    #[test]
    fn detail_shows_every_field() {
        let mut a = sample().remove(1);
        a.state = AllocState::Failed;
        a.finished_at = Some(secs(40));
        a.exit_code = Some(137);
        a.reason = Some("exit_code".into());
        a.reason_detail = Some("rank 1 on nid002\nwas killed".into());
        a.node_exit_codes = [("nid001".to_string(), 0), ("nid002".to_string(), -9)].into();
        a.env = std::sync::Arc::new([("GREETING".to_string(), "hello world".to_string())].into());
        a.command = Some(vec!["echo".into(), "it's".into()]);
        let text = detail(&a, secs(1000));
        for want in [
            "id:              12\n",
            "state:           failed\n",
            "reason:          exit_code\n",
            "reason_detail:   rank 1 on nid002 was killed\n",
            "assigned_nodes:  nid001,nid002\n",
            "constraints:     -\n",
            "walltime:        1:00:00 (3600 s)\n",
            "started_at:      2026-03-01T12:00:10Z\n",
            "elapsed:         0:30\n",
            "exit_code:       137\n",
            "node_exit_codes: nid001=0 nid002=-9 (signal 9)\n",
            "env:             GREETING='hello world'\n",
            "command:         echo 'it'\\''s'\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("script:"));
    }

    #[test]
    fn preempting_allocations_render() {
        let mut allocs = sample();
        allocs[1].state = AllocState::Preempting;
        let text = table(&allocs, secs(70), false);
        assert!(
            text.lines().nth(2).unwrap().contains("  preempting  ")
                && text.ends_with("nid001,nid002\n"),
            "{text}"
        );
        // The preemptor waits with its claim; the victim, back to pending, with its reason.
        allocs[0].reason = Some("preempting".into());
        allocs[0].claimed_nodes = vec!["nid001".into()];
        assert!(table(&allocs, secs(70), false).contains("(preempting)"));
    }

    #[test]
    fn detail_shows_preemption_and_checkpoints() {
        use lattice_core::allocation::Preemption;
        use lattice_core::checkpoint::{CheckpointMode, CheckpointOutcome, CheckpointRecord};

        let plain = detail(&alloc(1, "x"), secs(0));
        for want in [
            "preemptible:     yes\n",
            "checkpoint:      none\n",
            "preempt_count:   0\n",
            "preempted_by:    -\n",
            "claimed_nodes:   -\n",
            "checkpoints:     0\n",
            "last_checkpoint: -\n",
        ] {
            assert!(plain.contains(want), "missing {want:?} in\n{plain}");
        }

        let mut a = sample().remove(1);
        a.state = AllocState::Preempting;
        a.preemptible = false;
        a.checkpoint.mode = CheckpointMode::Signal;
        a.checkpoint.signal = "SIGUSR2".into();
        a.checkpoint.interval_seconds = Some(3600);
        a.preempt_count = 2;
        a.preemption = Some(Preemption {
            by: 14,
            since: secs(30),
            stopped_ranks: 0,
        });
        a.checkpoint_count = 3;
        a.last_checkpoint_at = Some(secs(20));
        a.last_checkpoint = Some(CheckpointRecord {
            trigger: CheckpointTrigger::Request(2),
            outcome: CheckpointOutcome::Failure,
            duration_ms: 1234,
            at: secs(25),
            message: Some("nid002: disk full".into()),
        });
        let text = detail(&a, secs(40));
        for want in [
            "state:           preempting\n",
            "preemptible:     no\n",
            "checkpoint:      signal SIGUSR2, timeout 60 s, every 1:00:00\n",
            "preempt_count:   2\n",
            "preempted_by:    14 (since 2026-03-01T12:00:30Z)\n",
            "checkpoints:     3 (last successful 2026-03-01T12:00:20Z)\n",
            "last_checkpoint: failure in 1.23s (request 2, 2026-03-01T12:00:25Z): \
             nid002: disk full\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        let mut p = alloc(3, "big");
        p.claimed_nodes = vec!["nid001".into(), "nid002".into()];
        assert!(detail(&p, secs(0)).contains("claimed_nodes:   nid001,nid002\n"));
    }

    #[test]
    fn detail_shows_the_script_indented() {
        let mut a = alloc(3, "s");
        a.command = None;
        a.script = Some("#!/bin/sh\necho \x1b[31mred\n\nexit 0\n".into());
        let text = detail(&a, secs(0));
        assert!(text.contains("command:         -\n"), "{text}");
        assert!(
            text.ends_with("script:\n    #!/bin/sh\n    echo ?[31mred\n\n    exit 0\n"),
            "{text}"
        );
    }
}
