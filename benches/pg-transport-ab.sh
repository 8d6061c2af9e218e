#!/usr/bin/env bash
# PostgreSQL over TCP and over its Unix socket, side by side: another build of the server (OTHER_BIN,
# for example one with an older sqlx) and this tree's, one after the other for ROUNDS rounds, at
# 100 and 500 pairs, each run on a new database. Prints one line a run: delivered/s, p99 and the
# server's CPU per delivered message (/proc/PID/stat).
#
#     git worktree add /tmp/before 1a931d5 && (cd /tmp/before && cargo build --release --bin fastchat)
#     bash benches/pg-transport-ab.sh /tmp/before/target/release/fastchat 3
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
other=$1 rounds=$2

source benches/setup.sh
trap 'rm -rf "$work"' EXIT

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

port=19500
for round in $(seq 1 "$rounds"); do
    for build in other this; do
        bin=$server_bin
        [[ $build == other ]] && bin=$other
        for connection in tcp socket; do
            for pairs in 100 500; do
                port=$((port + 1))
                database=fastchat_transport_$port
                psql -q "$pg_base/postgres" -c "CREATE DATABASE $database" >/dev/null
                url=$pg_base/$database
                [[ $connection == socket ]] && url="postgres://postgres@localhost/$database?host=$pg_socket"
                "$bin" --listen "127.0.0.1:$port" --database-url "$url" "${lift[@]}" \
                    >"$work/server-$port.log" 2>&1 &
                pid=$!
                for _ in $(seq 1 100); do
                    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
                    sleep 0.1
                done
                before=$(cpu_ticks "$pid")
                report=$("$loadgen" --server "http://127.0.0.1:$port" --server-pid "$pid" \
                    --duration-secs 10 chat --pairs "$pairs" --baseline-secs 0 | tail -n 1)
                after=$(cpu_ticks "$pid")
                kill -INT "$pid"
                wait "$pid" 2>/dev/null || true
                psql -q "$pg_base/postgres" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null
                echo -n "round $round $build $connection $pairs pairs: "
                REPORT=$report TICKS=$((after - before)) python3 - <<'PY'
import json, os
report = json.loads(os.environ["REPORT"])
cpu_us = int(os.environ["TICKS"]) / os.sysconf("SC_CLK_TCK") * 1e6 / report["delivered"]
print(f"{report['delivered_per_sec']:.0f}/s, p99 {report['latency']['p99_ms']} ms, "
      f"{cpu_us:.0f} us CPU/message, lost {report['lost']}, duplicates {report['duplicates']}")
PY
            done
        done
    done
done
