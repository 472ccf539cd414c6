#!/usr/bin/env bash
# Installs the real servers the production-path tests run against, if missing:
#   - Mosquitto (Debian package)            MQTT broker
#   - victoria-metrics (Debian package)     line-protocol (ILP) endpoint standing in for QuestDB
#   - tansu 0.6.0 (crates.io, sqlite engine) Kafka-API broker
#   - chromium + chromium-driver (Debian)   headless browser for the console's browser test
#     and fonts-wqy-zenhei, so its screenshots show Chinese text rather than empty boxes
#   - openssl (Debian)                      certificates for the MQTT and Kafka TLS tests
#   - stunnel4 (Debian)                     TLS terminator in front of tansu for the Kafka TLS test
#   - libssl-dev, pkg-config (Debian)       to build librdkafka with TLS, if missing
# tansu takes ~15 minutes to build cold, so it is installed once into a cache directory
# (RISKWATCH_CACHE, default ~/.cache/riskwatch) and reused by later runs and checkouts.
# Prints nothing but progress; the tests find the binaries on PATH or in the cache.
set -euo pipefail

CACHE="${RISKWATCH_CACHE:-$HOME/.cache/riskwatch}"
TANSU_VERSION=0.6.0
TANSU_ROOT="$CACHE/tools/tansu-$TANSU_VERSION"

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v victoria-metrics >/dev/null 2>&1 || need_apt+=(victoria-metrics)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
[ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || need_apt+=(fonts-wqy-zenhei)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)   # the TLS tests make their certificates
command -v stunnel >/dev/null 2>&1 || need_apt+=(stunnel4)  # TLS in front of tansu (Kafka TLS test)
command -v mosquitto_sub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)  # the broker-only ceiling in scripts/bench.sh
# librdkafka is built with TLS (OpenSSL): Debian's headers, usually already on a Rust machine.
[ -e /usr/include/openssl/ssl.h ] || need_apt+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "== installing ${need_apt[*]} (Debian)"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The Debian package starts a system-wide mosquitto on 1883; the tests use their own ports and
# configs, so it is left alone.

if [ ! -x "$TANSU_ROOT/bin/tansu" ]; then
    echo "== installing tansu $TANSU_VERSION into $TANSU_ROOT (cold: ~15 minutes, cached afterwards)"
    mkdir -p "$TANSU_ROOT"
    cargo install tansu --version "$TANSU_VERSION" --locked --features libsql --root "$TANSU_ROOT" --quiet
fi
echo "== test servers: $(command -v mosquitto || echo /usr/sbin/mosquitto), $(command -v victoria-metrics), $TANSU_ROOT/bin/tansu, $(command -v chromedriver)"
