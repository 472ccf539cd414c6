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
