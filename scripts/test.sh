#!/usr/bin/env bash
# Runs Lattice's whole test suite. Installs what the tests need when it is missing (Debian
# packages need root), then builds once and runs every test with cargo-nextest (tests run in
# parallel; each integration test uses its own ephemeral loopback ports and temp dirs).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages whose programs the tests run for real: victoria-metrics (telemetry tests,
# crates/lattice-cli/tests/telemetry.rs); prometheus (prometheus and promtool: the
# observability tests, crates/lattice-cli/tests/observability.rs, and the metrics unit tests);
# iproute2 and curl (the partition tests build a network of namespaces, tests/partition.rs);
# make (the build of jemalloc, the binary's allocator, runs it).
PKGS=(victoria-metrics prometheus iproute2 curl make)
need_pkgs=()
for pkg in "${PKGS[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
    else
        echo "missing packages: ${need_pkgs[*]} (run as root, or apt-get install them)" >&2
        exit 1
    fi
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi

cargo build --workspace --all-targets
# Doc tests are not run by nextest; run them first so nextest's summary closes the output.
cargo test --workspace --doc
cargo nextest run --workspace --no-fail-fast "$@"
