#!/usr/bin/env bash
# Cluster mode on this one machine, for BENCHMARKS.md: one node (no NATS) beside two and three
# nodes in cluster mode on the same PostgreSQL and the local NATS, alternating, ROUNDS times
# (default 3). Each run gets a fresh database; every line printed is one run's JSON report.
#
#     bash benches/cluster.sh [ROUNDS]
#
# - chat, 100 pairs as fast as acks: one node; two nodes with each pair's users on different
#   nodes; the same through HAProxy (deploy/haproxy.cfg, which puts them where it likes); three
#   nodes. The server CPU per delivered message adds up every node.
# - chat at a fixed 4,000 messages/s (about half one node's rate): the latency a hop between
#   nodes adds.
# - presence, 2,000 joins in 10 s, 50 watchers: with two nodes, half the watchers are on the
#   other node from each joiner.
# - a SIGKILLed node: how long until the survivor has cleaned up after it (its `nodes` row
#   claimed) and until no user of it is listed online (the 5 s of silence plus the offline
#   grace, 5 s by default).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source benches/setup.sh
rounds=${1:-3}
nats_url=${FASTCHAT_BENCH_NATS_URL:-nats://127.0.0.1:4222}
port=18700
pids=()
proxy_pid=
database=

stop_all() {
    if [[ -n $proxy_pid ]]; then
        kill "$proxy_pid" 2>/dev/null || true
        wait "$proxy_pid" 2>/dev/null || true
        proxy_pid=
    fi
    for pid in "${pids[@]}"; do
        kill -INT "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    pids=()
    if [[ -n $database ]]; then
        psql -q "$pg_base/postgres" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null
        database=
    fi
}
trap 'stop_all; rm -rf "$work"' EXIT

# start NODES: a fresh database and NODES nodes on ports port+1..; 1 runs without NATS.
start() {
    local nodes=$1
    database=fastchat_cluster_bench_$port
    psql -q "$pg_base/postgres" -c "CREATE DATABASE $database" >/dev/null
    local url="postgres://postgres@localhost/$database?host=$pg_socket"
    local cluster=()
    if ((nodes > 1)); then
        cluster=(--nats-url "$nats_url" --cluster-name "bench-$port")
    fi
    urls=()
    for i in $(seq 1 "$nodes"); do
        local p=$((port + i))
        "$server_bin" --listen "127.0.0.1:$p" --database-url "$url" --node-id "node-$i" \
            "${cluster[@]}" "${lift[@]}" >"$work/node-$p.log" 2>&1 &
        pids+=($!)
        urls+=("http://127.0.0.1:$p")
        for _ in $(seq 1 100); do
            curl -sf "http://127.0.0.1:$p/health" >/dev/null && break
            sleep 0.1
        done
    done
    port=$((port + 10))
}

# proxy: HAProxy in front of the first two nodes; its URL in proxy_url.
proxy() {
    local front=$((port + 5))
    FASTCHAT_PROXY_BIND="127.0.0.1:$front" FASTCHAT_NODE_A="${urls[0]#http://}" \
        FASTCHAT_NODE_B="${urls[1]#http://}" haproxy -db -f deploy/haproxy.cfg \
        >"$work/proxy.log" 2>&1 &
    proxy_pid=$!
    proxy_url="http://127.0.0.1:$front"
    for _ in $(seq 1 100); do
        curl -sf "$proxy_url/health" >/dev/null && return
        sleep 0.1
    done
}

# run TITLE SERVERS LOADGEN-ARGS...: one scenario; prints its title and JSON line.
run() {
    local title=$1 servers=$2
    shift 2
    local pid_list
    pid_list=$(
        IFS=,
        echo "${pids[*]}"
    )
    echo "## $title"
    "$loadgen" --server "$servers" --server-pid "$pid_list" "$@" | tail -n 1
}

joined() {
    local IFS=,
    echo "$*"
}

# killed: two nodes, 200 users held on the second, which is then SIGKILLed; prints how long
# until the first has claimed it and until it lists none of its users.
killed() {
    start 2
    "$loadgen" --server "${urls[1]}" --duration-secs 60 idle --sessions 200 >/dev/null 2>&1 &
    local held=$!
    for _ in $(seq 1 100); do
        [[ $(curl -sf "${urls[0]}/presence/online" | grep -o '"user_id"' | wc -l) -ge 200 ]] && break
        sleep 0.1
    done
    local start_ns claimed_ns gone_ns
    start_ns=$(date +%s%N)
    kill -KILL "${pids[1]}"
    until curl -sf "${urls[0]}/metrics" | grep -q '^fastchat_dead_nodes_cleaned_total 1'; do
        sleep 0.05
    done
    claimed_ns=$(date +%s%N)
    until [[ $(curl -sf "${urls[0]}/presence/online" | grep -o '"user_id"' | wc -l) -eq 0 ]]; do
        sleep 0.05
    done
    gone_ns=$(date +%s%N)
    kill "$held" 2>/dev/null || true
    wait "$held" 2>/dev/null || true
    echo "## SIGKILLed node"
    printf '{"claimed_after_ms":%d,"users_offline_after_ms":%d}\n' \
        $(((claimed_ns - start_ns) / 1000000)) $(((gone_ns - start_ns) / 1000000))
    unset 'pids[1]'
    stop_all
}

for round in $(seq 1 "$rounds"); do
    echo "# round $round"
    start 1
    run "chat, one node" "${urls[0]}" --duration-secs 10 chat --pairs 100 --baseline-secs 0
    stop_all
    start 2
    run "chat, two nodes, pairs across them" "$(joined "${urls[@]}")" --duration-secs 10 \
        chat --pairs 100 --baseline-secs 0
    stop_all
    start 2
    proxy
    run "chat, two nodes behind HAProxy" "$proxy_url" --duration-secs 10 \
        chat --pairs 100 --baseline-secs 0
    stop_all
    start 3
    run "chat, three nodes, pairs across them" "$(joined "${urls[@]}")" --duration-secs 10 \
        chat --pairs 100 --baseline-secs 0
    stop_all

    start 1
    run "chat at 4,000/s, one node" "${urls[0]}" --duration-secs 10 \
        chat --pairs 100 --rate 4000 --baseline-secs 0
    stop_all
    start 2
    run "chat at 4,000/s, two nodes, pairs across them" "$(joined "${urls[@]}")" \
        --duration-secs 10 chat --pairs 100 --rate 4000 --baseline-secs 0
    stop_all

    start 1
    run "presence, one node" "${urls[0]}" --duration-secs 10 presence --users 2000 --watchers 50
    stop_all
    start 2
    run "presence, two nodes" "$(joined "${urls[@]}")" --duration-secs 10 \
        presence --users 2000 --watchers 50
    stop_all

    killed
done
