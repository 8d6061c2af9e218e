#!/usr/bin/env bash
# The cost of delivery receipts, side by side: the server built before them (OLD_BIN) with the
# load generator's receipts off, this tree's server with them off, and with them on, one after
# the other for ROUNDS rounds, each run on a fresh server. Prints each run's JSON line, then the
# medians with their range: delivered/s, p99, the server's CPU per message (/proc/PID/stat) and
# the bytes it wrote per message (/proc/PID/io; PostgreSQL's own writes are not the server's).
#
#     git worktree add /tmp/before c8697dd && (cd /tmp/before && cargo build --release --bin fastchat)
#     bash benches/receipts-ab.sh /tmp/before/target/release/fastchat sqlite 100 3 [grpc-web]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
old=$1 backend=$2 pairs=$3 rounds=$4 transport=${5:-grpc}

source benches/setup.sh
trap 'rm -rf "$work"' EXIT
# The limits benches/loadgen.sh lifts; the old binary has no claim or per-address limits.
lift=(--rate-messages-per-minute 1000000 --rate-messages-burst 1000000
    --rate-sessions-per-minute 1000000 --rate-sessions-per-minute-per-ip 1000000
    --rate-requests-per-minute 1000000 --rate-requests-burst 1000000
    --max-concurrent-requests 20000)
lift_new=(--rate-claims-per-minute-per-ip 1000000 --rate-claims-burst-per-ip 1000000
    --max-calls-per-ip 20000)

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
written() { awk '/^write_bytes/ { print $2 }' "/proc/$1/io"; }

port=19100
for round in $(seq 1 "$rounds"); do
    for variant in old off on; do
        port=$((port + 1))
        server=("$server_bin" "${lift[@]}" "${lift_new[@]}")
        [[ $variant == old ]] && server=("$old" "${lift[@]}")
        storage=(--data-dir "$work/data-$port")
        database=
        if [[ $backend == postgres ]]; then
            database=fastchat_ab_$port
            psql -q "$pg_base/postgres" -c "DROP DATABASE IF EXISTS $database" \
                -c "CREATE DATABASE $database" >/dev/null 2>&1
            storage=(--database-url "postgres://postgres@localhost/$database?host=$pg_socket")
        fi
        "${server[@]}" --listen "127.0.0.1:$port" "${storage[@]}" >"$work/server-$port.log" 2>&1 &
        pid=$!
        for _ in $(seq 1 100); do
            curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
            sleep 0.1
        done
        receipts=()
        [[ $variant == on ]] || receipts=(--no-receipts)
        cpu_before=$(cpu_ticks "$pid") written_before=$(written "$pid")
        report=$("$loadgen" --server "http://127.0.0.1:$port" --server-pid "$pid" \
            --transport "$transport" --duration-secs 10 \
            chat --pairs "$pairs" --baseline-secs 0 "${receipts[@]}" | tail -n 1)
        cpu=$(($(cpu_ticks "$pid") - cpu_before)) bytes=$(($(written "$pid") - written_before))
        kill -INT "$pid"
        wait "$pid" || true
        [[ -z $database ]] || psql -q "$pg_base/postgres" -c "DROP DATABASE $database" >/dev/null
        echo "{\"variant\":\"$variant\",\"round\":$round,\"server_cpu_ticks\":$cpu,\"server_written\":$bytes,\"chat\":$report}" |
            tee -a "$work/runs.jsonl"
    done
done

python3 - "$work/runs.jsonl" "$(getconf CLK_TCK)" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
tick_us = 1e6 / int(sys.argv[2])
def figure(rows, get):
    values = sorted(get(r) for r in rows)
    return f"{statistics.median(values):,.1f} ({values[0]:,.1f} to {values[-1]:,.1f})"
for variant, what in [("old", "before receipts"), ("off", "receipts off"), ("on", "receipts on")]:
    rows = [r for r in runs if r["variant"] == variant]
    print(f"{what}: delivered/s {figure(rows, lambda r: r['chat']['delivered_per_sec'])}, "
          f"p99 ms {figure(rows, lambda r: r['chat']['latency']['p99_ms'])}, "
          f"server CPU us/message {figure(rows, lambda r: r['server_cpu_ticks'] * tick_us / r['chat']['delivered'])}, "
          f"server KiB written/message {figure(rows, lambda r: r['server_written'] / 1024 / r['chat']['delivered'])}, "
          f"lost {sum(r['chat']['lost'] for r in rows)}, duplicates {sum(r['chat']['duplicates'] for r in rows)}")
PY
