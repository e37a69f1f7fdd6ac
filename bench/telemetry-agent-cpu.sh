#!/usr/bin/env bash
# CPU that telemetry costs a whole running agent: runs `lattice dev --nodes 1` with one
# `sleep` job for SECONDS, once without telemetry and once pushing every INTERVAL seconds to a
# VictoriaMetrics started here on 127.0.0.1, and prints the process's CPU time (utime+stime
# from /proc/PID/stat) for each. Figures: docs/benchmarks.md ("Telemetry").
#
#   bench/telemetry-agent-cpu.sh [SECONDS=60] [INTERVAL=1]    (LATTICE_BIN=target/debug/lattice)
set -euo pipefail
# `lattice dev` bootstraps its access control with this admin secret; curl and the CLI send it.
export LATTICE_TOKEN="${LATTICE_TOKEN:-lat_bench_$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')}"
cd "$(dirname "$0")/.."
SECS=${1:-60}
INTERVAL=${2:-1}
BIN=${LATTICE_BIN:-target/debug/lattice}
HZ=$(getconf CLK_TCK)
WORK=$(mktemp -d)
VM_PID=""
cleanup() {
    if [ -n "$VM_PID" ]; then
        kill "$VM_PID" 2>/dev/null || true
        wait "$VM_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
victoria-metrics -httpListenAddr=127.0.0.1:$PORT -storageDataPath="$WORK/vm" -retentionPeriod=1d \
    -loggerLevel=ERROR >/dev/null 2>&1 &
VM_PID=$!
until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 0.1; done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # $1: label; telemetry env already exported or not
    local dir="$WORK/$1"
    mkdir -p "$dir"
    "$BIN" dev --api-addr 127.0.0.1:0 --nodes 1 --data-dir "$dir/data" >"$dir/out.log" 2>&1 &
    local pid=$!
    local ep=""
    until [ -n "$ep" ]; do
        sleep 0.2
        ep=$(grep -o 'control plane : http://[0-9.:]*' "$dir/out.log" | awk '{print $4}' || true)
    done
    until curl -sf "$ep/healthz" >/dev/null; do sleep 0.2; done
    curl -sf -XPOST -H 'content-type: application/json' -H "authorization: Bearer $LATTICE_TOKEN" -d '{"command":["sleep","3600"]}' \
        "$ep/api/v1/allocations" >/dev/null
    sleep 3
    local t0 t1
    t0=$(ticks "$pid")
    sleep "$SECS"
    t1=$(ticks "$pid")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    python3 -c "t=($t1-$t0)/$HZ; print(f'$1: {t:.2f} CPU seconds over ${SECS} s = {100*t/$SECS:.2f}% of one core')"
}

run "telemetry-off"
export LATTICE_TELEMETRY__TSDB_ENDPOINT="http://127.0.0.1:$PORT"
export LATTICE_TELEMETRY__PROD_INTERVAL_SECONDS="$INTERVAL"
run "telemetry-every-${INTERVAL}s"
