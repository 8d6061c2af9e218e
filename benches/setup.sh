# Sourced by the benchmark scripts, from the repository's root: builds the release binaries and
# says where they, PostgreSQL and a scratch directory are.
cargo build --release --quiet -p fastchat -p fastchat-loadgen
# FASTCHAT_BENCH_SERVER runs another build of the server (an older one, to compare).
target=${CARGO_TARGET_DIR:-$PWD/target}
server_bin=${FASTCHAT_BENCH_SERVER:-$target/release/fastchat}
loadgen=$target/release/fastchat-loadgen
pg_base=${FASTCHAT_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432}
# The server reaches a local PostgreSQL through its Unix socket, as the earlier reports did; since
# sqlx 0.9.1 sets TCP_NODELAY, TCP gives the same figures (BENCHMARKS.md, "PostgreSQL over TCP").
pg_socket=${FASTCHAT_BENCH_PG_SOCKET:-/var/run/postgresql}
work=$(mktemp -d)
# Thousands of sessions, each a socket.
ulimit -n 20000
# The flags that lift the rate limits and make room for every session at once: the defaults
# protect a public server from one client; here one client is the whole load.
lift=(--rate-messages-per-minute 1000000 --rate-messages-burst 1000000
    --rate-sessions-per-minute 1000000 --rate-sessions-per-minute-per-ip 1000000
    --rate-claims-per-minute-per-ip 1000000 --rate-claims-burst-per-ip 1000000
    --rate-requests-per-minute 1000000 --rate-requests-burst 1000000
    --max-concurrent-requests 20000 --max-calls-per-ip 20000)
