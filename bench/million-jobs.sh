#!/usr/bin/env bash
# million-jobs.sh - issue 10's scale goal: 10,000 virtual nodes and 1,000,000 short jobs
# submitted as arrays, all placed (and all completed) against the clock, on one machine.
#
# Starts `lattice dev --simulate NODES` (one process: control plane + virtual nodes that
# register, heartbeat and report like real agents, see docs/configuration.md), sets the
# default vCluster's cycle interval to CYCLE_MS, submits ARRAYS arrays of SIZE jobs
# (`true`, SIM_DURATION=DUR seconds each; DUR= empty: no env at all, the virtual nodes'
# default of 0 s) from PAR concurrent clients, and watches the
# leader's /metrics until every job was placed and completed. Prints the times, the rates and
# the process's peak RSS and CPU seconds (control plane and virtual nodes together).
#
# With SPLIT=1 the control plane (`lattice server`, data in a temp dir) and the virtual nodes
# (`lattice agent --simulate NODES`) run as two processes on the same machine, and the
# control plane's own peak RSS and CPU seconds are printed apart from the nodes', and its RSS
# again SETTLE seconds after the last completion; KEEP_DATA=1 keeps its data dir.
#
# Env: NODES=10000 ARRAYS=100 SIZE=10000 DUR=0 CYCLE_MS=100 PAR=4 PORT=18481 TIMEOUT=600
#      SPLIT=0 SETTLE=15 LATTICE=target/release/lattice
set -euo pipefail
# `lattice dev` bootstraps its access control with this admin secret; curl and the CLI send it.
export LATTICE_TOKEN="${LATTICE_TOKEN:-lat_bench_$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')}"

cd "$(dirname "$0")/.."
NODES=${NODES:-10000}
ARRAYS=${ARRAYS:-100}
SIZE=${SIZE:-10000}
DUR=${DUR-0}
CYCLE_MS=${CYCLE_MS:-100}
PAR=${PAR:-4}
PORT=${PORT:-18481}
TIMEOUT=${TIMEOUT:-600}
SPLIT=${SPLIT:-0}
SETTLE=${SETTLE:-15}
LATTICE=${LATTICE:-target/release/lattice}
URL="http://127.0.0.1:$PORT"
TOTAL=$((ARRAYS * SIZE))
LOG=${LOG:-/tmp/million-jobs-dev.log}

[ -x "$LATTICE" ] || cargo build --release -p lattice-cli

if [ "$SPLIT" = 1 ]; then
    DATA=$(mktemp -d /tmp/million-jobs-data.XXXXXX)
    "$LATTICE" server --bootstrap --api-addr "127.0.0.1:$PORT" --data-dir "$DATA" >"$LOG" 2>&1 &
    DEV=$!
    AGENT=""
    trap 'kill -INT $DEV $AGENT 2>/dev/null; sleep 2; kill -KILL $DEV $AGENT 2>/dev/null || true; [ -n "${KEEP_DATA:-}" ] || rm -rf "$DATA"' EXIT
    until curl -fsS "$URL/healthz" >/dev/null 2>&1; do sleep 0.2; done
    curl -fsS -o /dev/null -X POST -H 'content-type: application/json' \
        -d "{\"token\":\"$LATTICE_TOKEN\"}" "$URL/api/v1/acl/bootstrap"
    LATTICE_AGENT__TOKEN="$LATTICE_TOKEN" "$LATTICE" agent --server "$URL" --node-id sim \
        --simulate "$NODES" --listen 127.0.0.1:0 >"$LOG.agent" 2>&1 &
    AGENT=$!
else
    "$LATTICE" dev --simulate "$NODES" --api-addr "127.0.0.1:$PORT" >"$LOG" 2>&1 &
    DEV=$!
    trap 'kill -INT $DEV 2>/dev/null; sleep 2; kill -KILL $DEV 2>/dev/null || true' EXIT
fi

sum_of() {  # sum_of 'PROMQL-ish prefix' < exposition : sum of the matching sample lines
    awk -v p="$1" 'index($0, p) == 1 {s += $NF} END {printf "%d\n", s}'
}
metric() {  # metric 'PROMQL-ish prefix' : the sum, from a fresh scrape
    curl -fsS "$URL/metrics" 2>/dev/null | sum_of "$1"
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b - a}'; }

t=$(now)
until curl -fsS "$URL/healthz" >/dev/null 2>&1; do sleep 0.2; done
until [ "$(metric 'lattice_nodes_total{state="ready"}')" -ge "$NODES" ]; do
    if awk -v a="$(since "$t")" -v t="$TIMEOUT" 'BEGIN{exit !(a > t)}'; then
        echo "nodes not ready" >&2; exit 1
    fi
    sleep 0.5
done
echo "$NODES virtual nodes ready in $(since "$t") s"
"$LATTICE" --endpoint "$URL" vclusters set default --cycle-interval "${CYCLE_MS}ms" >/dev/null

# DUR= (empty): no env at all; the virtual nodes' own default duration (0 s) applies.
env_json=""
[ -n "$DUR" ] && env_json=",\"env\":{\"SIM_DURATION\":\"$DUR\"}"
body="{\"command\":[\"true\"],\"array\":\"0-$((SIZE - 1))\",\"walltime_seconds\":600$env_json}"
t0=$(now)
seq "$ARRAYS" | xargs -P "$PAR" -I{} curl -fsS -o /dev/null -X POST \
    -H 'content-type: application/json' -H "authorization: Bearer $LATTICE_TOKEN" -d "$body" "$URL/api/v1/allocations"
submitted=$(since "$t0")
echo "$TOTAL jobs submitted as $ARRAYS arrays of $SIZE in $submitted s"

# One scrape a second, both figures from it (a Prometheus scrapes every 15 s; rendering
# /metrics with 10,000 nodes' series costs the control plane CPU the watcher should not take).
placed_at=""
at120=""
while :; do
    page=$(curl -fsS "$URL/metrics" 2>/dev/null || true)
    placed=$(sum_of 'lattice_scheduling_placements_total' <<<"$page")
    done_=$(sum_of 'lattice_allocations_total{state="completed"' <<<"$page")
    if [ -z "$placed_at" ] && [ "$placed" -ge "$TOTAL" ]; then placed_at=$(since "$t0"); fi
    if [ -z "$at120" ] && awk -v a="$(since "$t0")" 'BEGIN{exit !(a >= 120)}'; then at120=$placed; fi
    [ "$done_" -ge "$TOTAL" ] && break
    if awk -v a="$(since "$t0")" -v t="$TIMEOUT" 'BEGIN{exit !(a > t)}'; then
        echo "timeout: $placed placed, $done_ completed" >&2; break
    fi
    sleep 1
done
completed_at=$(since "$t0")
placed=$(metric 'lattice_scheduling_placements_total')
done_=$(metric 'lattice_allocations_total{state="completed"')
peak_rss() { awk '/VmHWM/{printf "%.0f", $2/1024}' "/proc/$1/status"; }
now_rss() { awk '/VmRSS/{printf "%.0f", $2/1024}' "/proc/$1/status"; }
# CPU time of a process (user + system; fields 14 and 15 of /proc/PID/stat, after the
# parenthesized name): less sensitive than wall time to what else the machine is doing.
cpu_of() { sed 's/.*) //' "/proc/$1/stat" | awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($12 + $13) / hz}'; }
rss=$(peak_rss "$DEV")
cpu=$(cpu_of "$DEV")
# Finished before 120 s: everything was placed by then.
if [ -z "$at120" ] && [ "$done_" -ge "$TOTAL" ]; then at120=$placed; fi
echo "placed: $placed of $TOTAL; all placed after ${placed_at:-NA} s; ${at120:-NA} placed 120 s after the first submission"
echo "completed: $done_ of $TOTAL after $completed_at s ($(awk -v n="$done_" -v t="$completed_at" 'BEGIN{printf "%.0f", n/t}') jobs/s since the first submission)"
if [ "$SPLIT" = 1 ]; then
    echo "lattice server (control plane alone) peak RSS ${rss} MiB, RSS now $(now_rss "$DEV") MiB, CPU ${cpu} s"
    sleep "$SETTLE"
    echo "lattice server RSS ${SETTLE} s later $(now_rss "$DEV") MiB; data dir $(du -sm "$DATA" | cut -f1) MiB${KEEP_DATA:+ (kept: $DATA)}"
    echo "lattice agent --simulate $NODES peak RSS $(peak_rss "$AGENT") MiB, CPU $(cpu_of "$AGENT") s"
else
    echo "lattice dev peak RSS ${rss} MiB, CPU ${cpu} s (control plane + $NODES virtual nodes, one process)"
fi
