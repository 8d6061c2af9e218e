# syntax=docker/dockerfile:1
# FastChat: a static server binary and the built web client on a small Alpine base.
#
#     docker build -t fastchat .
#     docker run --rm -p 8000:8000 -v fastchat-data:/var/lib/fastchat fastchat
#
# With DATABASE_URL empty the server keeps an SQLite file in /var/lib/fastchat (mount a volume
# there to keep it).
#
# compose.yaml runs two of these in cluster mode (PostgreSQL, NATS, HAProxy in front).

# --- Web client: web-client/dist --------------------------------------------------------------
FROM node:22-bookworm-slim AS web
WORKDIR /src/web-client
# Dependencies first: this layer stays cached until package*.json change.
COPY web-client/package.json web-client/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
# `build` is `tsc --noEmit && vite build`; the generated code in src/gen is committed, so no buf.
COPY web-client/ ./
RUN npm run build

# --- Server: a static (musl) binary -----------------------------------------------------------
FROM rust:1.95-alpine AS server
# gcc and musl-dev for the C in ring and the bundled SQLite; protox compiles the protos in Rust.
# Unpinned: the versions come with the base image's Alpine release, and a pin breaks with its
# next update.
# hadolint ignore=DL3018
RUN apk add --no-cache gcc musl-dev
WORKDIR /src
# Every workspace member's manifest and sources (Cargo needs them all to resolve the lock file).
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto/ proto/
COPY server/ server/
COPY migration/ migration/
COPY loadgen/ loadgen/
COPY benches/ benches/
# The Rust musl target links statically by default: the binary needs no libc at run time.
# The registry and target directory live in BuildKit caches, so a source change rebuilds only
# the fastchat crates; the binary is copied out of the cache in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --package fastchat --bin fastchat \
    && cp target/release/fastchat /usr/local/bin/fastchat

# --- Runtime ----------------------------------------------------------------------------------
FROM alpine:3.20
RUN addgroup -S -g 10001 fastchat \
    && adduser -S -D -H -u 10001 -G fastchat -h /var/lib/fastchat fastchat \
    && mkdir -p /var/lib/fastchat \
    && chown fastchat:fastchat /var/lib/fastchat
COPY --from=server /usr/local/bin/fastchat /usr/local/bin/fastchat
COPY --from=web /src/web-client/dist /usr/share/fastchat/web
# Every setting is an environment variable (see `fastchat --help`). DATABASE_URL empty: an
# SQLite file in FASTCHAT_DATA_DIR; postgres://... and FASTCHAT_NATS_URL for cluster mode.
ENV FASTCHAT_LISTEN=0.0.0.0:8000 \
    FASTCHAT_DATA_DIR=/var/lib/fastchat \
    FASTCHAT_WEB_DIR=/usr/share/fastchat/web \
    DATABASE_URL=""
# The user fastchat, by number so a runtime can tell it is not root.
USER 10001:10001
WORKDIR /var/lib/fastchat
EXPOSE 8000
# Busybox wget against /health on whatever port FASTCHAT_LISTEN names.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/bin/sh", "-c", "wget -q -O /dev/null \"http://127.0.0.1:${FASTCHAT_LISTEN##*:}/health\""]
# The server stops gracefully on SIGTERM (docker stop).
ENTRYPOINT ["/usr/local/bin/fastchat"]
