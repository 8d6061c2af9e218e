#!/usr/bin/env bash
# Runs the load generator's scenarios at the sizes BENCHMARKS.md reports, each against a fresh
# release server (SQLite in a new directory, or a new PostgreSQL database dropped afterwards),
# and prints each run's JSON line. Takes 15 to 25 minutes; run it on a quiet machine:
#
#     bash benches/loadgen.sh            # every scenario
#     bash benches/loadgen.sh chat idle  # only these
#
# The server runs with the rate limits lifted and room for every session at once (the defaults
# protect a public server from one client; here one client is the whole load).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source benches/setup.sh
port=18500

server_pid=
database=
stop_server() {
    if [[ -n $server_pid ]]; then
        kill -INT "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
    if [[ -n $database ]]; then
        psql -q "$pg_base/postgres" -c "DROP DATABASE IF EXISTS $database" >/dev/null
        database=
    fi
}
trap 'stop_server; rm -rf "$work"' EXIT

# start_server sqlite|postgres [extra flags]: a fresh server on the next port.
start_server() {
    local backend=$1
    shift
    port=$((port + 1))
    local storage=(--data-dir "$work/data-$port")
    if [[ $backend == postgres ]]; then
        database=fastchat_bench_$port
        psql -q "$pg_base/postgres" -c "CREATE DATABASE $database" >/dev/null
        storage=(--database-url "$pg_base/$database")
        if [[ -S $pg_socket/.s.PGSQL.5432 ]]; then
            storage=(--database-url "postgres://postgres@localhost/$database?host=$pg_socket")
        fi
    fi
    "$server_bin" --listen "127.0.0.1:$port" "${storage[@]}" \
        --rate-messages-per-minute 1000000 --rate-messages-burst 1000000 \
        --rate-sessions-per-minute 1000000 --rate-sessions-per-minute-per-ip 1000000 \
        --rate-claims-per-minute-per-ip 1000000 --rate-claims-burst-per-ip 1000000 \
        --rate-requests-per-minute 1000000 --rate-requests-burst 1000000 \
        --max-concurrent-requests 20000 --max-calls-per-ip 20000 "$@" >"$work/server-$port.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$port/health" >/dev/null && return
        sleep 0.1
    done
    echo "the server did not start; its log:" >&2
    cat "$work/server-$port.log" >&2
    exit 1
}

# run TITLE LOADGEN-ARGS...: one scenario against the running server; prints its JSON line.
run() {
    local title=$1
    shift
    echo "## $title"
    echo "\$ fastchat-loadgen $*"
    "$loadgen" --server "http://127.0.0.1:$port" --server-pid "$server_pid" "$@" | tail -n 1
}

scenarios=("$@")
[[ ${#scenarios[@]} -gt 0 ]] || scenarios=(baseline idle connect chat presence)
for scenario in "${scenarios[@]}"; do
    case $scenario in
    baseline)
        start_server sqlite
        run "loopback TCP echo" --duration-secs 5 baseline --connections 200 --message-bytes 100
        stop_server
        ;;
    idle)
        start_server sqlite
        run "idle: 100,000 sessions over 2,000 connections" --streams-per-connection 50 \
            --open-concurrency 1000 --duration-secs 40 idle --sessions 100000 --settle-secs 15
        stop_server
        start_server sqlite
        run "idle: 15,000 sessions, a connection each" --source-ips 127.0.0.1,127.0.0.2 \
            --open-concurrency 1000 --duration-secs 30 idle --sessions 15000
        stop_server
        ;;
    connect)
        start_server sqlite
        run "connect: 10,000 returning users at once" --source-ips 127.0.0.1,127.0.0.2 \
            --open-concurrency 1000 connect --sessions 10000 --returning
        stop_server
        start_server sqlite
        run "connect: 10,000 new users at once" --source-ips 127.0.0.1,127.0.0.2 \
            connect --sessions 10000
        stop_server
        ;;
    chat)
        for backend in sqlite postgres; do
            for pairs in 100 500; do
                start_server "$backend"
                run "chat on $backend: $pairs pairs, as fast as acks" --duration-secs 10 \
                    chat --pairs "$pairs"
                stop_server
            done
            start_server "$backend"
            run "chat on $backend: 100 pairs at 2,000 messages/s" --duration-secs 10 \
                chat --pairs 100 --rate 2000 --baseline-secs 0
            stop_server
        done
        start_server sqlite
        run "chat on sqlite over grpc-web: 100 pairs, as fast as acks" --transport grpc-web \
            --duration-secs 10 chat --pairs 100 --baseline-secs 0
        stop_server
        ;;
    presence)
        start_server sqlite
        run "presence: 10,000 joins in 10 s, 100 watchers" --source-ips 127.0.0.1,127.0.0.2 \
            --duration-secs 10 presence --users 10000 --watchers 100
        stop_server
        ;;
    *)
        echo "unknown scenario $scenario (baseline, idle, connect, chat, presence)" >&2
        exit 2
        ;;
    esac
done
