#!/usr/bin/env bash
# compare-etcd.sh - issue 10's write goal: Lattice's committed writes per second against
# etcd's on the same machine, with the same client and the same number of clients, A/B
# alternating, then both and the ratio (medians over REPS rounds).
#
# etcd: ../shared/bench/etcd-baseline.sh with REPS=1 (1 and 3 members, 1 client x PUTS and
# 16 clients x CONC_PUTS sequential puts each, Python `requests` over HTTP keep-alive, every
# put committed and fsynced on a quorum before its answer).
# Lattice: bench/raft-bench.py with the same counts (`POST /api/v1/allocations`, the same
# Python client, answered 201 once committed on a quorum and applied), also at 64 clients.
# The Python client costs about as much CPU per request as the servers on this 2-core
# machine, so only figures measured side by side compare.
#
# Needs root (the etcd script installs etcd-server and etcd-client with apt-get). Loopback only.
# Env: REPS=3 PUTS=2000 CONC_PUTS=250 LATTICE=target/release/lattice
#      ETCD_SCRIPT=../shared/bench/etcd-baseline.sh OUT=/tmp/compare-etcd
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
PUTS=${PUTS:-2000}
CONC_PUTS=${CONC_PUTS:-250}
LATTICE=${LATTICE:-target/release/lattice}
ETCD_SCRIPT=${ETCD_SCRIPT:-../shared/bench/etcd-baseline.sh}
OUT=${OUT:-/tmp/compare-etcd}

[ -x "$LATTICE" ] || cargo build --release -p lattice-cli
[ -r "$ETCD_SCRIPT" ] || { echo "no etcd script at $ETCD_SCRIPT" >&2; exit 1; }
rm -rf "$OUT" && mkdir -p "$OUT"

for r in $(seq 1 "$REPS"); do
    echo "round $r/$REPS: lattice" >&2
    python3 bench/raft-bench.py --binary "$LATTICE" --puts "$PUTS" --conc-puts "$CONC_PUTS" \
        --failover-trials 0 --json "$OUT/lattice-$r.json" >"$OUT/lattice-$r.log" 2>&1
    echo "round $r/$REPS: etcd" >&2
    REPS=1 PUTS="$PUTS" CONC=16 CONC_PUTS="$CONC_PUTS" PERF_LOADS="" FAILOVER_TRIALS=1 \
        TERM_TRIALS=1 bash "$ETCD_SCRIPT" >"$OUT/etcd-$r.log" 2>&1 || true
    res=$(grep -o 'raw results: [^ ]*results.jsonl' "$OUT/etcd-$r.log" | tail -1 | cut -d' ' -f3)
    [ -n "$res" ] && [ -r "$res" ] || { echo "etcd round $r left no results (see $OUT/etcd-$r.log)" >&2; exit 1; }
    cp "$res" "$OUT/etcd-$r.jsonl"
done

python3 - "$OUT" "$REPS" <<'PY'
import json, statistics, sys
out, reps = sys.argv[1], int(sys.argv[2])
cells = {}  # (members, clients) -> {"etcd": [...], "lattice": [...]}
for r in range(1, reps + 1):
    for row in json.load(open(f"{out}/lattice-{r}.json"))["rows"]:
        for c in (1, 16, 64):
            cells.setdefault((row["members"], c), {}).setdefault("lattice", []).append(
                row[f"writes_per_s_{c}"])
    for line in open(f"{out}/etcd-{r}.jsonl"):
        d = json.loads(line)
        if d.get("mode") == "put" and d.get("errors", 1) == 0:
            members = 1 if d["target"] == "single" else 3
            cells.setdefault((members, d["clients"]), {}).setdefault("etcd", []).append(
                d["writes_per_s"])
print(f"{'members':>7} {'clients':>7} {'etcd w/s':>9} {'lattice w/s':>12} {'ratio':>6}   (medians of {reps} rounds)")
for (m, c), v in sorted(cells.items()):
    e = statistics.median(v["etcd"]) if v.get("etcd") else None
    l = statistics.median(v["lattice"]) if v.get("lattice") else None
    ratio = f"{l / e:.2f}x" if e and l else "-"
    show = lambda x: "-" if x is None else str(round(x))
    print(f"{m:>7} {c:>7} {show(e):>9} {show(l):>12} {ratio:>6}")
print(f"raw: {out}")
PY
