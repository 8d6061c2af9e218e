#!/usr/bin/env bash
# The message path, old build beside new: OTHER_BIN (an earlier build of the server) and this
# tree's, one after the other for ROUNDS rounds, each run against a new database. Each run is
# `chat` closed loop (one message in flight per user) at each of PAIRS (default 100 500), then
# 500 pairs at each rate of RATES (messages/s offered, default 2000; empty: none). Environment:
# BACKENDS (default "sqlite postgres") the databases; STREAMS (default 1) sessions sharing one
# connection as HTTP/2 streams (5 puts 5,000 pairs on 2,000 connections). Prints one line a run:
# delivered/s, p99, the server's CPU per delivered message (/proc/PID/stat), the bytes the
# database wrote per delivered message (SQLite: the server's write_bytes in /proc/PID/io;
# PostgreSQL: WAL bytes, pg_current_wal_lsn() before and after), the load generator's own CPU per
# message (it shares the two cores), lost and duplicates.
#
#     git worktree add /tmp/before a2d2dcd
#     (cd /tmp/before && CARGO_TARGET_DIR=/tmp/before/target cargo build --release --bin fastchat)
#     bash benches/message-path-ab.sh /tmp/before/target/release/fastchat 3 100 500
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
other=$1 rounds=$2
shift 2
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(100 500)
read -ra rates <<<"${RATES-2000}"
read -ra backends <<<"${BACKENDS:-sqlite postgres}"
streams=${STREAMS:-1}

source benches/setup.sh
trap 'rm -rf "$work"' EXIT

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
written() { awk '/^write_bytes/ { print $2 }' "/proc/$1/io"; }
wal_lsn() { psql -qtA "$pg_base/postgres" -c "SELECT pg_current_wal_lsn() - '0/0'"; }

port=19700
# one BIN BACKEND LABEL LOADGEN-CHAT-ARGS...: one run on a new database; prints its line.
one() {
    local bin=$1 backend=$2 label=$3
    shift 3
    port=$((port + 1))
    local storage=(--data-dir "$work/data-$port") database=
    if [[ $backend == postgres ]]; then
        database=fastchat_path_$port
        psql -q "$pg_base/postgres" -c "CREATE DATABASE $database" >/dev/null
        storage=(--database-url "$pg_base/$database")
    fi
    "$bin" --listen "127.0.0.1:$port" "${storage[@]}" "${lift[@]}" >"$work/server-$port.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
        sleep 0.1
    done
    local ticks=$(cpu_ticks "$pid") bytes=$(written "$pid") wal=0
    [[ $backend == postgres ]] && wal=$(wal_lsn)
    local report
    report=$(/usr/bin/time -f "%U %S" -o "$work/loadgen-cpu" "$loadgen" \
        --server "http://127.0.0.1:$port" --server-pid "$pid" \
        --duration-secs 10 --streams-per-connection "$streams" chat --baseline-secs 0 "$@" |
        tail -n 1)
    ticks=$(($(cpu_ticks "$pid") - ticks))
    bytes=$(($(written "$pid") - bytes))
    [[ $backend == postgres ]] && bytes=$(($(wal_lsn) - wal))
    kill -INT "$pid"
    wait "$pid" 2>/dev/null || true
    [[ -n $database ]] && psql -q "$pg_base/postgres" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null
    echo -n "$label: "
    REPORT=$report TICKS=$ticks BYTES=$bytes LOADGEN_CPU=$(cat "$work/loadgen-cpu") python3 - <<'PY'
import json, os
report = json.loads(os.environ["REPORT"])
delivered = max(report["delivered"], 1)
cpu_us = int(os.environ["TICKS"]) / os.sysconf("SC_CLK_TCK") * 1e6 / delivered
loadgen_us = sum(map(float, os.environ["LOADGEN_CPU"].split())) * 1e6 / delivered
written = int(os.environ["BYTES"]) / delivered
print(f"{report['delivered_per_sec']:.0f}/s, p99 {report['latency']['p99_ms']} ms, "
      f"{cpu_us:.0f} us CPU/message (load generator {loadgen_us:.0f}), "
      f"{written / 1024:.1f} KiB written/message, "
      f"lost {report['lost']}, duplicates {report['duplicates']}")
PY
}

for round in $(seq 1 "$rounds"); do
    for build in other this; do
        bin=$server_bin
        [[ $build == other ]] && bin=$other
        for backend in "${backends[@]}"; do
            for pairs in "${sizes[@]}"; do
                one "$bin" "$backend" "round $round $build $backend $pairs pairs" --pairs "$pairs"
            done
            for rate in "${rates[@]}"; do
                one "$bin" "$backend" "round $round $build $backend 500 pairs at $rate/s" \
                    --pairs 500 --rate "$rate"
            done
        done
    done
done
