#!/usr/bin/env bash
# compare-slurm.sh - N trivial real jobs (/bin/true) end to end through `lattice dev` and
# through a local Slurm on the same machine, A/B alternating, then both throughputs and
# the ratio (medians over REPS rounds).
#
# Lattice: a fresh `lattice dev --nodes NODES` (real processes, one agent presenting NODES
# nodes), the default vCluster's cycle interval set to CYCLE_MS, then
# `lattice bench --phases e2e --e2e N --clients 1` (N individual submissions from one client,
# each Raft-committed and fsynced before its answer, as sbatch is acknowledged by
# slurmctld), timed from the first submission to the last completion. With ARRAYS=1 a second
# Lattice row submits the N jobs as one array.
# Slurm: ../shared/bench/slurm-baseline.sh with PHASES=e2e REPS=1 (NODES slurmd, N x
# `sbatch --wrap true` from one client, first sbatch to empty queue), MODES=$SLURM_MODE.
#
# Where job output goes: Slurm's jobs are submitted with `-o /dev/null -e /dev/null` (no
# output files), while Lattice's agent always writes each rank's stdout and stderr files and
# a working directory under the dev cluster's temp dir. That temp dir is therefore on tmpfs
# (LATTICE_TMPDIR=/dev/shm): on this host's ext4 disk, after a few thousand jobs' files were
# created and deleted, ext4's inode allocator (find_inode_bit, recently_deleted) took most of
# the process's CPU time and made each round slower than the one before (docs/benchmarks.md).
# LATTICE_TMPDIR=/tmp measures on the disk.
#
# Needs root (the Slurm script installs and starts slurmctld/slurmd/munged). Loopback only.
# Env: N=2000 NODES=100 REPS=3 CYCLE_MS=10 LATTICE_TMPDIR=/dev/shm SLURM_MODE=tuned ARRAYS=1 PORT=18480
#      LATTICE=target/release/lattice SLURM_SCRIPT=../shared/bench/slurm-baseline.sh
set -euo pipefail
# `lattice dev` bootstraps its access control with this admin secret; curl and the CLI send it.
export LATTICE_TOKEN="${LATTICE_TOKEN:-lat_bench_$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')}"

cd "$(dirname "$0")/.."
N=${N:-2000}
NODES=${NODES:-100}
REPS=${REPS:-3}
CYCLE_MS=${CYCLE_MS:-10}
LATTICE_TMPDIR=${LATTICE_TMPDIR:-/dev/shm}
SLURM_MODE=${SLURM_MODE:-tuned}
ARRAYS=${ARRAYS:-1}
PORT=${PORT:-18480}
LATTICE=${LATTICE:-target/release/lattice}
SLURM_SCRIPT=${SLURM_SCRIPT:-../shared/bench/slurm-baseline.sh}
SLURM_BASE=${SLURM_BASE:-/tmp/slurm-bench}
OUT=${OUT:-/tmp/compare-slurm-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

[ -x "$LATTICE" ] || cargo build --release -p lattice-cli
[ -f "$SLURM_SCRIPT" ] || { echo "no Slurm script at $SLURM_SCRIPT" >&2; exit 1; }

DEV_PID=""
cleanup() {
    if [ -n "$DEV_PID" ] && kill -0 "$DEV_PID" 2>/dev/null; then
        kill -INT "$DEV_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$DEV_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DEV_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# Waits (up to QUIET_MAX_WAIT s) until the host's CPUs are less than QUIET_BUSY busy over a
# second: a run right after the other system's would otherwise pay for its teardown.
QUIET_BUSY=${QUIET_BUSY:-0.25}
QUIET_MAX_WAIT=${QUIET_MAX_WAIT:-60}
wait_quiet() {
    local t0=$SECONDS a b
    while [ $((SECONDS - t0)) -lt "$QUIET_MAX_WAIT" ]; do
        a=$(awk '/^cpu /{print $2+$3+$4+$6+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat)
        sleep 1
        b=$(awk '/^cpu /{print $2+$3+$4+$6+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat)
        awk -v a="$a" -v b="$b" -v q="$QUIET_BUSY" 'BEGIN{split(a,x," "); split(b,y," ");
            exit !((y[1]-x[1]) / (y[2]-x[2] + 1e-9) < q)}' && return 0
    done
    echo "host still busy after ${QUIET_MAX_WAIT}s; measuring anyway" >&2
}

# lattice_run ROUND MODE(single|array): prints jobs/s
lattice_run() {
    local round=$1 mode=$2 url="http://127.0.0.1:$PORT" log="$OUT/lattice-dev-$1-$2.log"
    wait_quiet
    TMPDIR=$LATTICE_TMPDIR "$LATTICE" dev --nodes "$NODES" --api-addr "127.0.0.1:$PORT" >"$log" 2>&1 &
    DEV_PID=$!
    for _ in $(seq 300); do
        curl -fsS "$url/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    for _ in $(seq 300); do
        ready=$(curl -fsS -H "authorization: Bearer $LATTICE_TOKEN" "$url/api/v1/nodes" 2>/dev/null | grep -o '"state":"ready"' | wc -l || true)
        [ "${ready:-0}" -ge "$NODES" ] && break
        sleep 0.1
    done
    "$LATTICE" --endpoint "$url" vclusters set default --cycle-interval "${CYCLE_MS}ms" >/dev/null
    local extra=()
    [ "$mode" = array ] && extra=(--e2e-array)
    "$LATTICE" bench --endpoint "$url" --phases e2e --e2e "$N" --clients 1 "${extra[@]}" \
        --server-pid "$DEV_PID" -o json >"$OUT/lattice-$round-$mode.json"
    cleanup
    DEV_PID=""
    python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["e2e"]["jobs_per_second"], 1))' \
        "$OUT/lattice-$round-$mode.json"
}

# slurm_run ROUND: prints jobs/s
slurm_run() {
    local round=$1 before after res
    before=$(ls -1d "$SLURM_BASE"/results/* 2>/dev/null | tail -1 || true)
    wait_quiet
    BASE=$SLURM_BASE NODES=$NODES N=$N REPS=1 MODES=$SLURM_MODE PHASES=e2e E2E_PAR=0 \
        bash "$SLURM_SCRIPT" >"$OUT/slurm-$round.log" 2>&1 || true
    res=$(ls -1d "$SLURM_BASE"/results/* 2>/dev/null | tail -1 || true)
    [ -n "$res" ] && [ "$res" != "$before" ] || { echo NA; return; }
    # e2e.tsv: mode clients rep N fails submit_s e2e_s ...
    awk -F'\t' 'NR==1 && $7 != "NA" && $7 > 0 {printf "%.1f\n", $4/$7; found=1} END{if(!found) print "NA"}' "$res/e2e.tsv"
}

median() { sort -g | awk '{a[NR]=$1} END{if(NR==0){print "NA"; exit} print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }

: >"$OUT/lattice-single.txt"; : >"$OUT/lattice-array.txt"; : >"$OUT/slurm.txt"
for round in $(seq "$REPS"); do
    # Alternate which system goes first.
    s=NA
    if [ $((round % 2)) = 0 ]; then s=$(slurm_run "$round"); fi
    l=$(lattice_run "$round" single); echo "$l" >>"$OUT/lattice-single.txt"
    a=NA
    if [ "$ARRAYS" = 1 ]; then a=$(lattice_run "$round" array); echo "$a" >>"$OUT/lattice-array.txt"; fi
    if [ $((round % 2)) = 1 ]; then s=$(slurm_run "$round"); fi
    [ "$s" != NA ] && echo "$s" >>"$OUT/slurm.txt"
    echo "round $round: lattice ${l} jobs/s (individual), ${a} jobs/s (array); slurm ${s} jobs/s" >&2
done

ls_=$(median <"$OUT/lattice-single.txt"); la=$(median <"$OUT/lattice-array.txt"); sl=$(median <"$OUT/slurm.txt")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a=="NA" || b=="NA" || b==0) print "NA"; else printf "%.1f", a/b }'; }
echo
echo "N=$N trivial jobs, $NODES nodes, Lattice temp dir in $LATTICE_TMPDIR, $(nproc) cores, $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(date -u +%Y-%m-%d)"
printf '%-44s %12s %8s\n' "system" "jobs/s" "ratio"
printf '%-44s %12s %8s\n' "slurm ($SLURM_MODE conf, N x sbatch, 1 client)" "$sl" "1.0"
printf '%-44s %12s %8s\n' "lattice dev (cycle ${CYCLE_MS} ms, N submits, 1 client)" "$ls_" "$(ratio "$ls_" "$sl")"
[ "$ARRAYS" = 1 ] && printf '%-44s %12s %8s\n' "lattice dev (cycle ${CYCLE_MS} ms, one array)" "$la" "$(ratio "$la" "$sl")"
echo "medians of $REPS A/B rounds; raw results in $OUT"
