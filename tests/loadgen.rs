//! A quick smoke of each load generator scenario: the load generator's library, given the same
//! arguments as its binary, against the real server (both in this process, so the pid it reads
//! memory and CPU from is the server's), with small numbers. Asserts from its JSON report: no
//! failures, nothing lost or duplicated, everyone welcomed, every watcher saw every change. It
//! asserts no timings.

mod common;

use std::time::Duration;

use clap::Parser;
use common::{TestServer, within};
use fastchat::testing::{Backend, on_both_databases};
use fastchat_loadgen::Cli;
use serde_json::Value;

/// How long one load generator run may take before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Runs the load generator against `server` with `args` (after the shared ones) and returns its
/// JSON report. Fails the test when the arguments do not parse or the run fails.
async fn loadgen(server: &TestServer, args: &[&str]) -> Value {
    let (url, pid) = (server.url(), std::process::id().to_string());
    let shared = ["fastchat-loadgen", "--server", &url, "--server-pid", &pid];
    let cli = Cli::try_parse_from(shared.iter().chain(args))
        .unwrap_or_else(|err| panic!("loadgen {args:?} does not parse: {err}"));
    within(RUN_LIMIT, fastchat_loadgen::run(&cli))
        .await
        .unwrap_or_else(|err| panic!("loadgen {args:?} failed: {err:#}"))
}

/// A count from the report.
fn count(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a count in {report}"))
}

/// Asserts that the report's `errors` tally is empty.
fn assert_no_errors(report: &Value) {
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
}

/// `idle` opens every session, one connection each, holds them without a drop, and reads the
/// server's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_holds_every_session() {
    let server = TestServer::start(Backend::Sqlite).await;
    let report = loadgen(
        &server,
        &[
            "--duration-secs",
            "1",
            "idle",
            "--sessions",
            "200",
            "--settle-secs",
            "0",
        ],
    )
    .await;
    assert_eq!(count(&report, "sessions_open"), 200, "{report}");
    assert_eq!(count(&report, "sessions_failed"), 0, "{report}");
    assert_eq!(count(&report, "sessions_dropped"), 0, "{report}");
    assert_eq!(count(&report, "connections"), 200, "{report}");
    assert_no_errors(&report);
    assert!(
        report["server_rss_per_session_bytes"].is_number(),
        "memory per session is reported: {report}"
    );
    server.stop().await;
}

/// `idle` over grpc-web with 50 sessions per HTTP/2 connection, as behind an L7 proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_multiplexes_grpc_web_sessions() {
    let server = TestServer::start(Backend::Sqlite).await;
    let args = [
        "--duration-secs",
        "1",
        "--transport",
        "grpc-web",
        "--streams-per-connection",
        "50",
        "idle",
        "--sessions",
        "200",
        "--settle-secs",
        "0",
    ];
    let report = loadgen(&server, &args).await;
    assert_eq!(count(&report, "sessions_open"), 200, "{report}");
    assert_eq!(count(&report, "sessions_dropped"), 0, "{report}");
    assert_eq!(count(&report, "connections"), 4, "{report}");
    assert_no_errors(&report);
    server.stop().await;
}

/// `connect` welcomes every user, each with its presence snapshot, over connections from two
/// source addresses, and reads the server's CPU.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_welcomes_every_user() {
    let server = TestServer::start(Backend::Sqlite).await;
    let args = [
        "--source-ips",
        "127.0.0.1,127.0.0.2",
        "connect",
        "--sessions",
        "200",
    ];
    let report = loadgen(&server, &args).await;
    assert_eq!(count(&report, "sessions_welcomed"), 200, "{report}");
    assert_eq!(report["snapshot_latency"]["count"], 200, "{report}");
    assert_no_errors(&report);
    assert!(report["server_cpu"]["cpu_secs"].is_number(), "{report}");
    server.stop().await;
}

/// `connect --returning` claims the users, lets them go OFFLINE, then welcomes every one of them
/// coming back with its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_welcomes_every_returning_user() {
    // The test config's grace period is 300 ms, so a second's wait sees them OFFLINE.
    let server = TestServer::start(Backend::Sqlite).await;
    let args = [
        "connect",
        "--sessions",
        "200",
        "--returning",
        "--offline-wait-secs",
        "1",
    ];
    let report = loadgen(&server, &args).await;
    assert_eq!(report["returning"], true, "{report}");
    assert_eq!(count(&report, "sessions_welcomed"), 200, "{report}");
    assert_no_errors(&report);
    server.stop().await;
}

/// Asserts that a `chat` report shows every message sent, acked and delivered once.
fn assert_all_delivered(report: &Value, messages: u64) {
    assert_eq!(count(report, "sent"), messages, "{report}");
    assert_eq!(count(report, "acked"), messages, "{report}");
    assert_eq!(count(report, "delivered"), messages, "{report}");
    assert_eq!(count(report, "lost"), 0, "{report}");
    assert_eq!(count(report, "duplicates"), 0, "{report}");
    assert_eq!(count(report, "unexpected"), 0, "{report}");
    assert_eq!(report["latency"]["count"], messages, "{report}");
    assert_no_errors(report);
}

/// Asserts that a `chat` report's sessions asked for receipts and sent some, fewer than the
/// messages they covered (arrivals in the same pause share one).
fn assert_receipts_sent(report: &Value) {
    assert_eq!(report["receipts"], true, "{report}");
    let sent = count(report, "receipts_sent");
    assert!(sent > 0, "{report}");
    assert!(sent <= count(report, "delivered"), "{report}");
}

/// `chat` over native gRPC, each next message after the last ack, with the echo baseline: every
/// message acked and delivered exactly once.
async fn chat_delivers_every_message_over_grpc(backend: Backend) {
    let server = TestServer::start(backend).await;
    let args = [
        "--duration-secs",
        "60",
        "chat",
        "--pairs",
        "10",
        "--messages",
        "30",
        "--baseline-secs",
        "1",
    ];
    let report = loadgen(&server, &args).await;
    assert_all_delivered(&report, 2 * 10 * 30);
    assert_receipts_sent(&report);
    assert!(
        report["delivered_per_sec_vs_baseline"].is_number(),
        "{report}"
    );
    server.stop().await;
}

/// `chat` over grpc-web (Subscribe plus SendMessage) at a fixed rate: every message acked and
/// delivered exactly once.
async fn chat_delivers_every_message_over_grpc_web(backend: Backend) {
    let server = TestServer::start(backend).await;
    let args = [
        "--duration-secs",
        "60",
        "--transport",
        "grpc-web",
        "chat",
        "--pairs",
        "5",
        "--messages",
        "20",
        "--rate",
        "400",
        "--baseline-secs",
        "0",
    ];
    let report = loadgen(&server, &args).await;
    assert_all_delivered(&report, 2 * 5 * 20);
    assert_receipts_sent(&report);
    server.stop().await;
}

on_both_databases!(
    chat_delivers_every_message_over_grpc,
    chat_delivers_every_message_over_grpc_web
);

/// With a receive window of 4, messages to each user come faster than the 150 ms pause between
/// receipts: a receipt goes at once at half the window (so each covers at most 2), and every
/// message arrives, none held back by a full window.
async fn chat_acknowledges_before_a_small_window_fills(transport: &str) {
    let server = TestServer::start_with(Backend::Sqlite, |config| config.receive_window = 4).await;
    let args = [
        "--duration-secs",
        "60",
        "--transport",
        transport,
        "chat",
        "--pairs",
        "2",
        "--messages",
        "200",
        "--rate",
        "800",
        "--baseline-secs",
        "0",
    ];
    let report = loadgen(&server, &args).await;
    assert_all_delivered(&report, 2 * 2 * 200);
    assert_receipts_sent(&report);
    assert!(
        count(&report, "receipts_sent") >= 2 * 2 * 200 / 2,
        "a receipt per half window at least: {report}"
    );
    server.stop().await;
}

/// The small window over native gRPC (`ClientEvent.received`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_acknowledges_before_a_small_window_fills_over_grpc() {
    chat_acknowledges_before_a_small_window_fills("grpc").await;
}

/// The small window over grpc-web (`Acknowledge` calls).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_acknowledges_before_a_small_window_fills_over_grpc_web() {
    chat_acknowledges_before_a_small_window_fills("grpc-web").await;
}

/// `chat --no-receipts` measures clients without receipts: the sessions ask for none, send none,
/// and every message still arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_without_receipts_delivers_every_message() {
    let server = TestServer::start(Backend::Sqlite).await;
    let args = [
        "--duration-secs",
        "60",
        "chat",
        "--pairs",
        "5",
        "--messages",
        "20",
        "--baseline-secs",
        "0",
        "--no-receipts",
    ];
    let report = loadgen(&server, &args).await;
    assert_all_delivered(&report, 2 * 5 * 20);
    assert_eq!(report["receipts"], false, "{report}");
    assert_eq!(count(&report, "receipts_sent"), 0, "{report}");
    server.stop().await;
}

/// With the server's default message limit, `chat` reports the refusals as RATE_LIMITED rather
/// than hiding them, and still loses no acked message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_reports_rate_limits() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.rate_messages_per_minute = 60;
        config.rate_messages_burst = 5;
    })
    .await;
    let args = [
        "--duration-secs",
        "2",
        "chat",
        "--pairs",
        "1",
        "--baseline-secs",
        "0",
    ];
    let report = loadgen(&server, &args).await;
    assert!(
        report["errors"]["RATE_LIMITED"].as_u64() >= Some(1),
        "{report}"
    );
    assert!(count(&report, "acked") >= 10, "each user's burst: {report}");
    assert!(count(&report, "acked") < count(&report, "sent"), "{report}");
    assert_eq!(count(&report, "lost"), 0, "{report}");
    server.stop().await;
}

/// Runs `presence` with `users` joining while `watchers` look on, over `transport`, and checks
/// that every watcher saw every join.
async fn presence_reaches_every_watcher_over(transport: &str, users: u64, watchers: u64) {
    let server = TestServer::start(Backend::Sqlite).await;
    let (users_arg, watchers_arg) = (users.to_string(), watchers.to_string());
    let args = [
        "--duration-secs",
        "1",
        "--transport",
        transport,
        "presence",
        "--users",
        &users_arg,
        "--watchers",
        &watchers_arg,
    ];
    let report = loadgen(&server, &args).await;
    assert_eq!(count(&report, "users_joined"), users, "{report}");
    assert_eq!(count(&report, "watchers_complete"), watchers, "{report}");
    assert_eq!(count(&report, "changes_seen"), users * watchers, "{report}");
    assert_eq!(count(&report, "changes_missing"), 0, "{report}");
    assert_no_errors(&report);
    server.stop().await;
}

/// `presence`: every watcher sees every joining user come online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_reaches_every_watcher() {
    presence_reaches_every_watcher_over("grpc", 100, 5).await;
}

/// `presence` over grpc-web: the watchers and the users' Subscribe streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_reaches_every_watcher_over_grpc_web() {
    presence_reaches_every_watcher_over("grpc-web", 50, 5).await;
}

/// `baseline` echoes over loopback and counts the round trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_echoes_over_loopback() {
    let server = TestServer::start(Backend::Sqlite).await;
    let args = ["--duration-secs", "1", "baseline", "--connections", "4"];
    let report = loadgen(&server, &args).await;
    assert_eq!(report["scenario"], "baseline", "{report}");
    assert!(count(&report, "round_trips") > 0, "{report}");
    assert_eq!(report["round_trip_latency"]["count"], report["round_trips"]);
    server.stop().await;
}
