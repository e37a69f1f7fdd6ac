//! Audit log query benchmark (docs/benchmarks.md, "Audit log query").
//!
//! Fills a fresh redb store with `--entries` audit entries (default 10,000,000: 50 tenants,
//! 2,000 users, spread evenly over 12 months from 2025-06-01, realistic field sizes, a real
//! SHA-256 chain) through the store's real write path (`AuditStore::write_applied`, in apply
//! batches of `--batch`, with a durable commit every 100 batches as Raft log appends would
//! make), then times queries through the code the API uses (`params::parse_query`,
//! `scope::filter_for`, `query::page` in a fresh read transaction per page):
//! one tenant's month (first page of 100; every page of 100; every page of 10,000) and one
//! user within that tenant's month. The store lives in a temp dir, deleted at the end.
//!
//! `cargo bench -p lattice-server --bench audit_query [-- --entries N --batch B --dir D]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use lattice_core::audit::{AuditAction, AuditEntry, AuditRecord, GENESIS_HASH};
use lattice_core::Timestamp;
use lattice_server::audit::params::{encode_cursor, parse_query};
use lattice_server::audit::query::{page, Page};
use lattice_server::audit::scope::filter_for;
use lattice_server::audit::store::AuditStore;
use lattice_server::auth::Caller;
use lattice_server::raft::storage::Db;

const TENANTS: u64 = 50;
const USERS: u64 = 2_000;
const ACTIONS: [AuditAction; 8] = [
    AuditAction::Submitted,
    AuditAction::Started,
    AuditAction::Completed,
    AuditAction::StatusRead,
    AuditAction::LogsRead,
    AuditAction::NodeClaimed,
    AuditAction::NodeReleased,
    AuditAction::NodeWiped,
];

struct Args {
    entries: u64,
    batch: usize,
    dir: Option<std::path::PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        entries: 10_000_000,
        batch: 1_000,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        match k.as_str() {
            "--entries" => a.entries = it.next().and_then(|v| v.parse().ok()).expect("--entries N"),
            "--batch" => a.batch = it.next().and_then(|v| v.parse().ok()).expect("--batch N"),
            "--dir" => a.dir = it.next().map(Into::into),
            // `cargo bench` passes `--bench`.
            _ => {}
        }
    }
    a
}

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn record(rng: &mut Rng) -> AuditRecord {
    let action = ACTIONS[(rng.next() % ACTIONS.len() as u64) as usize];
    let nodes = (0..1 + rng.next() % 4)
        .map(|_| format!("node-{:05}", rng.next() % 10_000))
        .collect::<Vec<_>>();
    let detail = match action {
        AuditAction::Started => format!("on {} node(s)", nodes.len()),
        AuditAction::Completed => "exit code 0; reason completed".to_string(),
        AuditAction::StatusRead | AuditAction::LogsRead => {
            "GET /api/v1/allocations/{id} by a tenant member".to_string()
        }
        _ => format!(
            "claim {} for project p-{:04}",
            rng.next() % 100_000,
            rng.next() % 1000
        ),
    };
    AuditRecord {
        tenant: format!("tenant-{:02}", rng.next() % TENANTS),
        user: format!("user-{:04}", rng.next() % USERS),
        action,
        allocation: Some(1 + rng.next() % 5_000_000),
        nodes,
        detail,
    }
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Every page of `query`, each in a fresh read transaction; returns (entries, pages).
fn all_pages(store: &AuditStore, query: &str) -> (usize, usize, Duration) {
    let started = Instant::now();
    let mut cursor: Option<String> = None;
    let (mut entries, mut pages) = (0, 0);
    loop {
        let q = match &cursor {
            Some(c) => format!("{query}&cursor={c}"),
            None => query.to_string(),
        };
        let p = one_page(store, &q);
        entries += p.entries.len();
        pages += 1;
        match p.next {
            Some(k) => cursor = Some(encode_cursor(k)),
            None => return (entries, pages, started.elapsed()),
        }
    }
}

fn one_page(store: &AuditStore, query: &str) -> Page {
    let pairs: Vec<(String, String)> = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let q = parse_query(&pairs).expect("valid query");
    let f = filter_for(&q, &Caller::insecure());
    let tx = {
        let _barrier = store.barrier();
        store.begin_read().expect("read")
    };
    page(&tx, &f).expect("page")
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let a = args();
    let tmp = match &a.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("temp dir");
    let db = Arc::new(Db::open(&tmp.path().join("lattice.redb")).expect("db"));
    let store = AuditStore::open(db.clone()).expect("store");

    let start = Timestamp::parse("2025-06-01").expect("date").as_millis();
    let span = Timestamp::parse("2026-06-01").expect("date").as_millis() - start;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut prev = GENESIS_HASH.to_string();
    let mut seq = 0u64;
    let mut batches = 0u64;
    let mut bytes = 0u64;
    let filled = Instant::now();
    let mut in_store = Duration::ZERO;
    while seq < a.entries {
        let n = (a.entries - seq).min(a.batch as u64);
        let batch: Vec<AuditEntry> = (0..n)
            .map(|_| {
                seq += 1;
                let time = Timestamp(start + span * (seq - 1) / a.entries);
                let e = AuditEntry::chained(seq, time, &record(&mut rng), &prev);
                prev = e.hash.clone();
                bytes += bincode::serialize(&e).map(|b| b.len() as u64).unwrap_or(0);
                e
            })
            .collect();
        let t = Instant::now();
        store.write_applied(&batch, None).expect("write");
        batches += 1;
        if batches.is_multiple_of(100) {
            // What the interleaved Raft log appends do: a durable commit on the same file.
            db.put_meta("bench", &seq).expect("durable commit");
        }
        in_store += t.elapsed();
        if seq.is_multiple_of(1_000_000) {
            eprintln!("{seq} entries, {:.0} s", filled.elapsed().as_secs_f64());
        }
    }
    db.put_meta("bench", &seq).expect("durable commit");
    let fill = filled.elapsed();
    let size = dir_size(tmp.path());
    println!("entries: {}", a.entries);
    println!("fill: {:.1} s total, {:.1} s in the store's write path ({} batches of {}), {:.0} entries/s",
        fill.as_secs_f64(), in_store.as_secs_f64(), batches, a.batch, a.entries as f64 / fill.as_secs_f64());
    println!(
        "entry size (bincode): {:.0} B mean",
        bytes as f64 / a.entries as f64
    );
    println!(
        "db file: {:.2} GiB ({:.0} B per entry)",
        size as f64 / (1u64 << 30) as f64,
        size as f64 / a.entries as f64
    );

    let month = "tenant=tenant-07&from=2026-03-01&to=2026-03-31";
    // First page of 100: best and median of 20.
    let mut times: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            let p = one_page(&store, &format!("{month}&limit=100"));
            assert!(!p.entries.is_empty(), "the month has entries");
            t.elapsed()
        })
        .collect();
    let first = times[0];
    times.sort();
    println!(
        "tenant month, first page of 100: first run {}, median {}, best {}",
        ms(first),
        ms(times[10]),
        ms(times[0])
    );
    for limit in [100, 10_000] {
        let (entries, pages, took) = all_pages(&store, &format!("{month}&limit={limit}"));
        println!(
            "tenant month, all pages of {limit}: {entries} entries in {pages} pages, {}",
            ms(took)
        );
    }
    let (entries, pages, took) = all_pages(&store, &format!("{month}&user=user-0042&limit=100"));
    println!(
        "one user in the tenant month: {entries} entries in {pages} pages, {}",
        ms(took)
    );
    let (entries, pages, took) = all_pages(&store, "from=2026-03-01&to=2026-03-02&limit=10000");
    println!(
        "every tenant, two days (to is a plain date): {entries} entries in {pages} pages, {}",
        ms(took)
    );
    drop(store);
    drop(db);
    drop(tmp);
}
