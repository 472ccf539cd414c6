#!/usr/bin/env bash
# riskwatch's performance figures, measured and printed by one command (docs/benchmarks.md):
#
#   1. rule engine: readings/s on one core and state bytes per sensor (cargo bench);
#   1b. store writer: CPU per reading of the SQLite store's commits on one thread, with the
#      single-reading load's arrival order and commit size (cargo bench);
#   2. embedded end to end: simulated gateways → embedded broker → rules → SQLite and MQTT
#      alerts, at each offered rate in BENCH_RATES: stored readings/s, alert latency p50/p99
#      (publish → alert received by a subscriber), riskwatch's CPU µs per reading, RSS;
#      memory per sensor from the RSS at 10 000 and 100 000 sensors;
#   2a. embedded burst: single-reading messages as fast as the embedded wiring takes them;
#      CPU per reading, peak RSS and private memory (the gateway front's limits hold the burst
#      back at the gateways);
#   2b. single-reading messages (one reading per MQTT message, as most gateways publish) through
#      an external Mosquitto: the broker-only ceiling (publishers → Mosquitto → mosquitto_sub)
#      and riskwatch in the subscriber's place, in the same run, with the ratio; riskwatch's CPU,
#      write/read syscalls and context switches per reading, RSS; alert latency at half the
#      ceiling;
#   3. Kafka path on the local test servers (Mosquitto, tansu, victoria-metrics for QuestDB's
#      line protocol): ingest, rules and sink as separate processes; throughput, alert latency,
#      CPU of every process (the busiest names the bottleneck), riskwatch's µs per reading;
#   4. replay: a year of 5-minute readings from BENCH_STATIONS stations through the rules;
#   5. exact recovery: the longest pause saving the rules host's state makes, and start-up after
#      a crash with a 60-s journal tail, at 100 000 sensors (riskwatch bench recovery).
#
# Needs the test servers for part 3 (scripts/install-test-servers.sh installs them).
# Knobs: BENCH_DURATION (15s), BENCH_RATES ("40000 60000 100000"), BENCH_KAFKA_RATE (20000),
# BENCH_STATIONS (100), BENCH_SINGLE_COUNT (310000 messages in part 2b), BENCH_COMMIT_INTERVAL (the rules workers' commit_interval, default 1s),
# BENCH_NODELAY (part 2b's and 3's Mosquitto `set_tcp_nodelay`: true, as deploy/mosquitto/mosquitto.conf;
# false for Mosquitto's default, Nagle's algorithm), BENCH_READ_COALESCE (part 2b's `run --broker --read-coalesce`, 1ms as
# shipped; 0s reads every TCP segment as it arrives), BENCH_SKIP ("engine kafka …" to leave parts out), BENCH_PERF (a directory:
# record `perf` profiles of ingest, rules and sink during the Kafka-path load, for `perf report -i`).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${BENCH_DURATION:-15s}"
RATES="${BENCH_RATES:-40000 60000 100000}"
KAFKA_RATE="${BENCH_KAFKA_RATE:-20000}"
SINGLE_COUNT="${BENCH_SINGLE_COUNT:-310000}"
STATIONS="${BENCH_STATIONS:-100}"
SKIP=" ${BENCH_SKIP:-} "
NODELAY="${BENCH_NODELAY:-true}"
READ_COALESCE="${BENCH_READ_COALESCE:-1ms}"
CACHE="${RISKWATCH_CACHE:-$HOME/.cache/riskwatch}"
TANSU="$CACHE/tools/tansu-0.6.0/bin/tansu"
RW="$PWD/target/release/riskwatch"
WORK="$(mktemp -d /tmp/riskwatch-bench.XXXXXX)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

skipped() { [[ "$SKIP" == *" $1 "* ]]; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
cpu_ticks() { if [ -r "/proc/$1/stat" ]; then awk '{print $14+$15}' "/proc/$1/stat"; else echo "process $1 is gone" >&2; echo 0; fi; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# Private (anonymous) memory: RSS without the file pages SQLite maps (those are page cache).
anon_kib() { awk '/RssAnon/ {print $2}' "/proc/$1/status"; }
# Write and read system calls so far (all threads): "syscw syscr". File and pipe calls only:
# the kernel does not count socket calls there (sendto, recvfrom), see syscalls_during.
syscalls() { awk '/^syscw/ {w = $2} /^syscr/ {r = $2} END {print w, r}' "/proc/$1/io"; }
# Every write- and read-family system call of process $1 (socket calls included: ingest's
# PUBACKs go out with sendto, readings come in with recvfrom) while the rest of the arguments
# run, counted in the kernel by perf's syscall tracepoints: prints "writes reads", or nothing
# when perf cannot count them here (then the caller falls back to syscalls, files only).
WRITE_CALLS="write writev pwrite64 pwritev pwritev2 sendto sendmsg sendmmsg"
READ_CALLS="read readv pread64 preadv preadv2 recvfrom recvmsg recvmmsg"
syscalls_during() {
    local pid=$1; shift
    local events="" c
    for c in $WRITE_CALLS $READ_CALLS; do events="$events${events:+,}syscalls:sys_enter_$c"; done
    if ! command -v perf >/dev/null || ! perf stat -x, -e "$events" -- true >/dev/null 2>&1; then
        "$@"; return
    fi
    local out="$WORK/syscalls.$pid.csv"
    perf stat -x, -e "$events" -p "$pid" -o "$out" & local perf_pid=$!
    sleep 0.2
    "$@"
    kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
    awk -F, -v w=" $WRITE_CALLS " -v r=" $READ_CALLS " \
        '$3 ~ /^syscalls:sys_enter_/ { c = $3; sub(/^syscalls:sys_enter_/, "", c);
                                        if (index(w, " " c " ")) W += $1; else if (index(r, " " c " ")) R += $1 }
         END { print W + 0, R + 0 }' "$out" >"$WORK/syscalls.$pid"
}
# Context switches so far, voluntary and not, summed over the process's threads.
ctx_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}'; }
hz=$(getconf CLK_TCK)

echo "== riskwatch benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "   machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
cargo build --release --quiet

if ! skipped engine; then
    echo
    echo "== 1. rule engine (one core): cargo bench -p riskwatch-rules --bench engine -- hazard"
    cargo bench --quiet -p riskwatch-rules --bench engine -- hazard 2>/dev/null | grep -E "M readings/s|median|B/sensor|bytes|state" || true
fi

if ! skipped store; then
    echo
    echo "== 1b. store writer (one thread): cargo bench -p riskwatch-sinks --bench store"
    cargo bench --quiet -p riskwatch-sinks --bench store 2>/dev/null | grep -E "^store writer" || true
fi

# Starts `riskwatch run` on a registry of $1 gauges; sets RUN_PID, MQTT_PORT, METRICS_PORT.
start_embedded() {
    local dir="$WORK/embedded-$1"
    mkdir -p "$dir"
    # A fresh store each run: a store left by the previous run would restore its rule state
    # (the probe might already be red, so its first reading would raise nothing).
    rm -f "$dir"/store.db*
    "$RW" bench setup --sensors "$1" --out "$dir" >/dev/null
    MQTT_PORT=$(free_port); METRICS_PORT=$(free_port)
    "$RW" run --registry "$dir/registry.toml" --rules "$dir/rules.toml" --db "$dir/store.db" \
        --listen "127.0.0.1:$MQTT_PORT" --metrics "127.0.0.1:$METRICS_PORT" >"$dir/run.log" 2>&1 &
    RUN_PID=$!; PIDS+=("$RUN_PID")
    wait_port "$METRICS_PORT"; wait_port "$MQTT_PORT"
    REGISTRY="$dir/registry.toml"
}

stop() { kill -INT "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

if ! skipped embedded; then
    echo
    echo "== 2. embedded end to end: gateways → embedded broker → rules → SQLite + MQTT alerts ($DURATION per rate)"
    # A first run on a freshly booted or idle machine has a slower tail (page cache, CPU
    # frequency, first WAL growth); a short discarded run keeps that out of the figures.
    start_embedded 10000
    "$RW" bench load --mqtt "127.0.0.1:$MQTT_PORT" --registry "$REGISTRY" --duration 5s --rate "${RATES%% *}" >/dev/null
    stop "$RUN_PID"
    for rate in $RATES; do
        start_embedded 10000
        t0=$(cpu_ticks "$RUN_PID")
        out=$("$RW" bench load --mqtt "127.0.0.1:$MQTT_PORT" --registry "$REGISTRY" --duration "$DURATION" \
            --rate "$rate" --metrics "http://127.0.0.1:$METRICS_PORT/metrics")
        t1=$(cpu_ticks "$RUN_PID")
        stored=$(sed -n 's/^stored \([0-9]*\) readings.*/\1/p' <<<"$out")
        echo "-- offered $rate readings/s, 10 000 gauges"
        sed 's/^/   /' <<<"$out"
        awk -v t="$((t1 - t0))" -v hz="$hz" -v n="${stored:-0}" -v rss="$(rss_kib "$RUN_PID")" \
            'BEGIN { printf "   riskwatch CPU %.1f s = %.2f µs per stored reading; RSS %.0f MiB\n", t/hz, (n>0 ? t/hz/n*1e6 : 0), rss/1024 }'
        stop "$RUN_PID"
    done
    echo "-- memory per sensor (RSS after every gauge reported, at 40 000 readings/s for $DURATION)"
    declare -A RSS ANON
    for n in 10000 100000; do
        start_embedded "$n"
        "$RW" bench load --mqtt "127.0.0.1:$MQTT_PORT" --registry "$REGISTRY" --duration "$DURATION" --rate 40000 \
            --metrics "http://127.0.0.1:$METRICS_PORT/metrics" >/dev/null
        RSS[$n]=$(rss_kib "$RUN_PID"); ANON[$n]=$(anon_kib "$RUN_PID")
        echo "   $n gauges: RSS $((RSS[$n] / 1024)) MiB, of which private (heap) $((ANON[$n] / 1024)) MiB"
        stop "$RUN_PID"
    done
    awk -v a="${RSS[10000]}" -v b="${RSS[100000]}" -v c="${ANON[10000]}" -v d="${ANON[100000]}" \
        'BEGIN { printf "   marginal memory per sensor: RSS %.0f bytes, private %.0f bytes ((at 100k − at 10k) / 90 000; registry, rule state, broker and allocator overhead; RSS adds the store pages SQLite maps)\n", (b-a)*1024/90000, (d-c)*1024/90000 }'
fi

if ! skipped burst; then
    echo
    echo "== 2a. embedded burst: $SINGLE_COUNT single-reading QoS 1 messages from 2 connections, as fast as riskwatch takes them (10 000 gauges)"
    start_embedded 10000
    sleep 1
    base_rss=$(rss_kib "$RUN_PID"); base_anon=$(anon_kib "$RUN_PID")
    # Peak private memory, sampled every 50 ms (the kernel keeps the RSS peak itself: VmHWM).
    (peak=0; while kill -0 "$RUN_PID" 2>/dev/null && [ ! -e "$WORK/burst.stop" ]; do
        a=$(anon_kib "$RUN_PID"); [ "${a:-0}" -gt "$peak" ] && peak=$a && echo "$peak" >"$WORK/burst.anon"; sleep 0.05; done) &
    t0=$(cpu_ticks "$RUN_PID")
    out=$("$RW" bench load --mqtt "127.0.0.1:$MQTT_PORT" --registry "$REGISTRY" --single --connections 2 \
        --count "$SINGLE_COUNT" --metrics "http://127.0.0.1:$METRICS_PORT/metrics")
    t1=$(cpu_ticks "$RUN_PID"); touch "$WORK/burst.stop"; sleep 0.2
    stored=$(sed -n 's/^stored \([0-9]*\) readings.*/\1/p' <<<"$out")
    sed 's/^/   /' <<<"$out"
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$RUN_PID/status")
    awk -v t="$((t1 - t0))" -v hz="$hz" -v n="${stored:-0}" -v b="$base_rss" -v ba="$base_anon" -v h="$hwm" -v pa="$(cat "$WORK/burst.anon" 2>/dev/null || echo 0)" \
        'BEGIN { if (n == 0) n = 1;
                 printf "   riskwatch CPU %.2f µs per reading; RSS %.0f MiB before, peak %.0f MiB; private memory %.0f MiB before, peak %.0f MiB\n",
                        t / hz / n * 1e6, b / 1024, h / 1024, ba / 1024, pa / 1024 }'
    stop "$RUN_PID"
fi

if ! skipped single; then
    echo
    echo "== 2b. single-reading messages through Mosquitto (riskwatch run --broker --read-coalesce $READ_COALESCE, set_tcp_nodelay $NODELAY): $SINGLE_COUNT QoS 1 messages, one reading each, 10 000 gauges, 2 publishing connections"
    MOSQ=$(command -v mosquitto || echo /usr/sbin/mosquitto)
    if [ ! -x "$MOSQ" ] || ! command -v mosquitto_sub >/dev/null; then
        echo "   skipped: needs mosquitto and mosquitto_sub (scripts/install-test-servers.sh installs them)"
    else
        s="$WORK/single"; mkdir -p "$s"
        "$RW" bench setup --sensors 10000 --out "$s" >/dev/null
        MQ=$(free_port)
        # Both runs see the same broker settings: a deep queue per subscriber and 1000 messages
        # in flight to each (Mosquitto's default of 20 is tuned for small devices), and small
        # writes sent at once as in deploy/mosquitto/mosquitto.conf (without it, an alert queued
        # behind the broker's reply to the officer's keep-alive ping waited up to 40 ms, every
        # 30 s; with it, riskwatch gets the readings in more, smaller segments and spends more
        # CPU per reading at full speed: docs/benchmarks.md, twelfth round). BENCH_NODELAY=false
        # measures Mosquitto's default.
        printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 1000000\nmax_inflight_messages 1000\nset_tcp_nodelay %s\n' "$MQ" "$NODELAY" >"$s/mosquitto.conf"
        "$MOSQ" -c "$s/mosquitto.conf" >"$s/mosquitto.log" 2>&1 & PIDS+=($!); MOSQ_PID=$!
        wait_port "$MQ"
        load() { "$RW" bench load --mqtt "127.0.0.1:$MQ" --registry "$s/registry.toml" --single --connections 2 "$@"; }

        # The ceiling: the same publishers, and a C subscriber (mosquitto_sub, QoS 1, output to
        # /dev/null) in riskwatch's place; time from the first publish to the last delivery.
        (mosquitto_sub -h 127.0.0.1 -p "$MQ" -q 1 -i bench-ceiling -t 'riskwatch/v1/readings/#' -C "$SINGLE_COUNT" >/dev/null; date +%s%3N >"$s/sub.end"; times >"$s/sub.times") &
        SUB=$!
        sleep 0.5
        load --count "$SINGLE_COUNT" --no-probe >"$s/ceiling.out"
        wait "$SUB"
        began=$(sed -n 's/^publishing began at unix ms //p' "$s/ceiling.out")
        CEILING=$(awk -v n="$SINGLE_COUNT" -v b="$began" -v e="$(cat "$s/sub.end")" 'BEGIN { printf "%.0f", n / ((e - b) / 1000) }')
        sub_cpu=$(sed -n 2p "$s/sub.times" | tr 'ms' '  ' | awk '{ print $1 * 60 + $2 + $3 * 60 + $4 }')
        echo "-- broker-only ceiling (publishers → Mosquitto → mosquitto_sub): $CEILING messages/s; mosquitto_sub CPU $(awk -v c="$sub_cpu" -v n="$SINGLE_COUNT" 'BEGIN { printf "%.2f", c / n * 1e6 }') µs per message"

        # riskwatch in mosquitto_sub's place: every reading decoded, evaluated, stored in SQLite
        # and acknowledged; a probe gauge's alerts timed by an officer's subscription.
        METRICS_PORT=$(free_port)
        "$RW" run --registry "$s/registry.toml" --rules "$s/rules.toml" --db "$s/store.db" \
            --broker "127.0.0.1:$MQ" --read-coalesce "$READ_COALESCE" --metrics "127.0.0.1:$METRICS_PORT" >"$s/run.log" 2>&1 &
        RUN_PID=$!; PIDS+=("$RUN_PID")
        wait_port "$METRICS_PORT"
        for _ in $(seq 1 100); do grep -q "ready" "$s/run.log" && break; sleep 0.1; done
        sleep 1
        t0=$(cpu_ticks "$RUN_PID"); read -r w0 r0 < <(syscalls "$RUN_PID"); c0=$(ctx_switches "$RUN_PID")
        out=$(load --count "$SINGLE_COUNT" --metrics "http://127.0.0.1:$METRICS_PORT/metrics")
        t1=$(cpu_ticks "$RUN_PID"); read -r w1 r1 < <(syscalls "$RUN_PID"); c1=$(ctx_switches "$RUN_PID")
        stored=$(sed -n 's/^stored \([0-9]*\) readings.*/\1/p' <<<"$out")
        rate=$(sed -n 's/^stored [0-9]* readings: \([0-9]*\)\/s.*/\1/p' <<<"$out")
        # The system calls in a second pass of the same load: perf's syscall tracepoints put
        # every call of the traced process on the kernel's slow path (+0.5–2 µs per reading
        # here), so the CPU figure comes from the pass above, untraced.
        rm -f "$WORK/syscalls.$RUN_PID"
        traced=$(syscalls_during "$RUN_PID" load --count "$SINGLE_COUNT" --metrics "http://127.0.0.1:$METRICS_PORT/metrics")
        if [ -s "$WORK/syscalls.$RUN_PID" ]; then
            read -r w r <"$WORK/syscalls.$RUN_PID"; calls="syscalls (sockets included; perf, a second pass)"
            n_traced=$(sed -n 's/^stored \([0-9]*\) readings.*/\1/p' <<<"$traced")
        else
            w=$((w1 - w0)); r=$((r1 - r0)); calls="file syscalls (perf unavailable: socket calls not counted)"
            n_traced=$stored
        fi
        echo "-- riskwatch (as fast as it takes them)"
        sed 's/^/   /' <<<"$out"
        awk -v t="$((t1 - t0))" -v hz="$hz" -v n="${stored:-0}" -v nt="${n_traced:-0}" -v w="$w" -v r="$r" -v c="$((c1 - c0))" -v calls="$calls" \
            -v rss="$(rss_kib "$RUN_PID")" -v rate="${rate:-0}" -v ceil="$CEILING" \
            'BEGIN { if (n == 0) n = 1; if (nt == 0) nt = 1;
                     printf "   riskwatch: %.0f %% of the broker-only ceiling; CPU %.2f µs per reading; %.3f context switches per reading; RSS %.0f MiB\n",
                            rate / ceil * 100, t / hz / n * 1e6, c / n, rss / 1024;
                     printf "   per reading %.3f write and %.3f read %s\n", w / nt, r / nt, calls }'
        half=$((CEILING / 2))
        echo "-- alert latency at half the ceiling ($half readings/s offered, $DURATION)"
        load --rate "$half" --duration "$DURATION" --metrics "http://127.0.0.1:$METRICS_PORT/metrics" | sed 's/^/   /'
        stop "$RUN_PID"
    fi
fi

if ! skipped kafka; then
    echo
    echo "== 3. Kafka path on the local test servers: ingest, rules, sink as separate processes ($KAFKA_RATE readings/s offered, $DURATION)"
    if [ ! -x "$TANSU" ] || ! command -v victoria-metrics >/dev/null || ! { command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; }; then
        echo "   skipped: run scripts/install-test-servers.sh first"
    else
        k="$WORK/kafka"; mkdir -p "$k/mosq" "$k/vm"
        "$RW" bench setup --sensors 10000 --out "$k" >/dev/null
        MQ=$(free_port); KP=$(free_port); VP=$(free_port)
        printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 1000000\nmax_inflight_messages 1000\nset_tcp_nodelay %s\n' "$MQ" "$NODELAY" >"$k/mosquitto.conf"
        MOSQ=$(command -v mosquitto || echo /usr/sbin/mosquitto)
        "$MOSQ" -c "$k/mosquitto.conf" >"$k/mosquitto.log" 2>&1 & PIDS+=($!); MOSQ_PID=$!
        (cd "$k" && exec "$TANSU" broker --listener-url "tcp://127.0.0.1:$KP" --advertised-listener-url "tcp://127.0.0.1:$KP" \
            --storage-engine "sqlite://tansu.db" >"$k/tansu.log" 2>&1) & PIDS+=($!); TANSU_PID=$!
        victoria-metrics -httpListenAddr "127.0.0.1:$VP" -storageDataPath "$k/vm" -dedup.minScrapeInterval 1ms >"$k/vm.log" 2>&1 & PIDS+=($!); VM_PID=$!
        wait_port "$MQ"; wait_port "$KP"; wait_port "$VP"
        cat >"$k/riskwatch.toml" <<EOF
registry = "registry.toml"
rules = "rules.toml"
[mqtt]
host = "127.0.0.1"
port = $MQ
[kafka]
brokers = "127.0.0.1:$KP"
readings_partitions = 2
alerts_partitions = 1
[questdb]
conf = "http::addr=127.0.0.1:$VP;protocol_version=1;"
# victoria-metrics stands in for QuestDB's line protocol; it has no SQL endpoint to check.
tables = "unchecked"
[rules_worker]
commit_interval = "${BENCH_COMMIT_INTERVAL:-1s}"
EOF
        declare -A CPID
        for c in ingest rules sink; do
            port=$(free_port)
            RISKWATCH_INSTANCE="$c-1" RISKWATCH_METRICS_LISTEN="127.0.0.1:$port" "$RW" "$c" --config "$k/riskwatch.toml" >"$k/$c.log" 2>&1 &
            CPID[$c]=$!; PIDS+=($!)
            wait_port "$port"
            [ "$c" = sink ] && SINK_METRICS=$port
        done
        for _ in $(seq 1 300); do grep -q "ready:" "$k/ingest.log" && grep -q "ready:" "$k/rules.log" && grep -q "ready:" "$k/sink.log" && break; sleep 0.2; done
        declare -A T0
        for name in ingest rules sink; do T0[$name]=$(cpu_ticks "${CPID[$name]}"); done
        T0[mosquitto]=$(cpu_ticks "$MOSQ_PID"); T0[tansu]=$(cpu_ticks "$(pgrep -P "$TANSU_PID" tansu || echo "$TANSU_PID")"); T0[victoria-metrics]=$(cpu_ticks "$VM_PID")
        if [ -n "${BENCH_PERF:-}" ]; then
            mkdir -p "$BENCH_PERF"
            for name in ingest rules sink; do
                perf record -F 999 -g -p "${CPID[$name]}" -o "$BENCH_PERF/$name.perf.data" -- sleep 10 >/dev/null 2>&1 &
            done
        fi
        start=$(date +%s.%N)
        out=$("$RW" bench load --mqtt "127.0.0.1:$MQ" --registry "$k/registry.toml" --duration "$DURATION" --rate "$KAFKA_RATE" \
            --metrics "http://127.0.0.1:$SINK_METRICS/metrics")
        wall=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')
        sed 's/^/   /' <<<"$out"
        stored=$(sed -n 's/^stored \([0-9]*\) readings.*/\1/p' <<<"$out")
        echo "   CPU over the run ($wall s wall), share of one core:"
        best=""; bestv=0; ours=0
        for name in ingest rules sink mosquitto tansu victoria-metrics; do
            case $name in
                ingest|rules|sink) pid=${CPID[$name]} ;;
                mosquitto) pid=$MOSQ_PID ;;
                tansu) pid=$(pgrep -P "$TANSU_PID" tansu || echo "$TANSU_PID") ;;
                victoria-metrics) pid=$VM_PID ;;
            esac
            d=$(( $(cpu_ticks "$pid") - ${T0[$name]} ))
            case $name in ingest|rules|sink) ours=$((ours + d)) ;; esac
            pct=$(awk -v d="$d" -v hz="$hz" -v w="$wall" 'BEGIN { printf "%.0f", d/hz/w*100 }')
            echo "     $name: $pct %"
            if [ "$pct" -gt "$bestv" ]; then bestv=$pct; best=$name; fi
        done
        echo "   busiest process (the bottleneck): $best ($bestv % of a core)"
        awk -v t="$ours" -v hz="$hz" -v n="${stored:-0}" \
            'BEGIN { printf "   riskwatch (ingest + rules + sink) CPU: %.2f µs per stored reading\n", (n>0 ? t/hz/n*1e6 : 0) }'
    fi
fi

if ! skipped replay; then
    echo
    echo "== 4. replay: a year of 5-minute readings from $STATIONS stations through the rules"
    cargo run --quiet --release -p riskwatch-replay --example gen-flood -- --stations "$STATIONS" --days 365 --out "$WORK/flood" >/dev/null
    start=$(date +%s.%N)
    "$RW" replay --registry "$WORK/flood/registry.toml" --rules "$WORK/flood/rules.toml" \
        --input "$WORK/flood/levels.csv" --format yearbook --quiet >/dev/null
    awk -v s="$start" -v e="$(date +%s.%N)" -v n="$((STATIONS * 365 * 288))" \
        'BEGIN { printf "   %d readings in %.1f s: %.2f M readings/s (whole command: CSV parse, rules, timeline)\n", n, e-s, n/(e-s)/1e6 }'
fi

if ! skipped recovery; then
    echo
    echo "== 5. exact recovery: state-save pauses and start-up after a crash (riskwatch bench recovery)"
    echo "   100 000 sensors, every one reporting every second (100 000 readings/s), a 60-s journal tail:"
    "$RW" bench recovery --sensors 100000 --rate 100000 --tail 60s | sed 's/^/   /'
    echo "   100 000 sensors at 10 000 readings/s, a 60-s journal tail:"
    "$RW" bench recovery --sensors 100000 --rate 10000 --tail 60s | sed 's/^/   /'
fi
