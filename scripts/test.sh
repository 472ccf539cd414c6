#!/usr/bin/env bash
# Runs every riskwatch test on a fresh machine: installs what is missing, builds, runs the
# tests, and stops whatever it started. CI (.ci/run) calls exactly this script.
#
# Today the whole suite runs against real in-process parts (embedded rumqttd broker, SQLite),
# so the Rust toolchain is all it needs. When the production-path tests arrive they add their
# servers here (Mosquitto from Debian, tansu from crates.io, victoria-metrics from Debian).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install the Rust toolchain (rustup) first" >&2
    exit 1
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
