#!/usr/bin/env bash
# Runs every riskwatch test on a fresh machine: installs what is missing, builds, runs the
# tests, and stops whatever it started. CI (.ci/run) calls exactly this script.
#
# The embedded-mode tests need nothing but the Rust toolchain. The production-path tests
# (tests/kafka_path.rs) start and stop their own Mosquitto, tansu (Kafka API) and
# victoria-metrics (line protocol) processes on free ports; this script installs them first.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install the Rust toolchain (rustup) first" >&2
    exit 1
fi

scripts/install-test-servers.sh
export RISKWATCH_CACHE="${RISKWATCH_CACHE:-$HOME/.cache/riskwatch}"

# A clean build and test run needs about 4 GB under target/ (debug info is line tables only,
# see Cargo.toml); say so plainly rather than fail later with "No space left on device".
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ -n "$free_kib" ] && [ "$free_kib" -lt $((6 * 1024 * 1024)) ]; then
    echo "warning: only $((free_kib / 1024)) MiB free on $(df -P . | awk 'NR == 2 { print $6 }');" \
        "the build and tests need about 4 GB (target/) plus room for test data" >&2
fi

echo "== build"
cargo build --workspace --all-targets --locked

if cargo fmt --version >/dev/null 2>&1; then
    echo "== format"
    cargo fmt --all -- --check
fi

if cargo clippy --version >/dev/null 2>&1; then
    echo "== clippy"
    cargo clippy --workspace --all-targets --locked -- -D warnings
fi

echo "== tests"
cargo test --workspace --locked
