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
