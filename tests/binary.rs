//! The `fastchat` binary itself: `migrate`, graceful shutdown on SIGTERM and SIGINT, its listening
//! socket, its settings and its logs.

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{BINARY, ChatSession, start_binary};
use fastchat::proto::Hello;
use tonic::Code;

/// `fastchat migrate` creates the SQLite database in the data directory and exits.
#[test]
fn migrate_creates_the_database_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested").join("data");
    let status = Command::new(BINARY)
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let file = data_dir.join("fastchat.db");
    assert!(
        file.metadata().unwrap().len() > 0,
        "no database at {}",
        file.display()
    );
}

/// SIGTERM and SIGINT end open streams with UNAVAILABLE and exit cleanly within 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_shut_down_gracefully() {
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let (mut child, port) = start_binary(dir.path(), &[], Stdio::null()).await;
        let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let hello = Hello {
            display_name: "Sig".into(),
            ..Default::default()
        };
        let mut session = ChatSession::open_on(channel, hello).await.unwrap();

        let sent = Instant::now();
        let kill = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let ended = session
            .final_status()
            .await
            .expect("the stream must end with a status");
        assert_eq!(ended.code(), Code::Unavailable, "SIG{signal}: {ended:?}");

        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(10),
                "SIG{signal}: still running after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "SIG{signal}: exit status {status}");
    }
}

/// `--listen-backlog` sizes the kernel's queue of connections waiting to be accepted, beyond
/// the 1,024 of tokio's own `bind` (`ss` shows a listening socket's backlog as its Send-Q).
#[tokio::test]
async fn listen_backlog_sizes_the_accept_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port) =
        start_binary(dir.path(), &["--listen-backlog", "3000"], Stdio::null()).await;
    let listing = Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) must be installed");
    child.kill().unwrap();
    child.wait().unwrap();

    let listing = String::from_utf8(listing.stdout).unwrap();
    // State, Recv-Q, Send-Q (the backlog), local address, peer address.
    let columns: Vec<&str> = listing.split_whitespace().collect();
    assert_eq!(columns.get(2), Some(&"3000"), "ss printed: {listing}");
}

/// `--help` lists every setting with its environment variable.
#[test]
fn help_lists_every_setting_with_its_environment_variable() {
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for variable in [
        "FASTCHAT_LISTEN",
        "DATABASE_URL",
        "FASTCHAT_DATA_DIR",
        "FASTCHAT_NODE_ID",
        "FASTCHAT_MAX_MESSAGE_CHARS",
        "FASTCHAT_RETENTION_DAYS",
        "FASTCHAT_HELLO_TIMEOUT_SECS",
        "FASTCHAT_HEARTBEAT_INTERVAL_SECS",
        "FASTCHAT_PRESENCE_TTL_SECS",
        "FASTCHAT_OFFLINE_GRACE_MS",
        "FASTCHAT_TYPING_TIMEOUT_MS",
        "FASTCHAT_SESSION_QUEUE",
        "FASTCHAT_CORS_ORIGINS",
        "FASTCHAT_WEB_DIR",
        "FASTCHAT_LOG_JSON",
        "FASTCHAT_HTTP2_KEEPALIVE_INTERVAL_SECS",
        "FASTCHAT_HTTP2_KEEPALIVE_TIMEOUT_SECS",
        "FASTCHAT_HANDSHAKE_TIMEOUT_SECS",
    ] {
        assert!(
            help.contains(&format!("[env: {variable}")),
            "--help lacks {variable}"
        );
    }
}

/// Bad settings are refused with a message, before anything starts.
#[test]
fn invalid_settings_are_refused() {
    for args in [
        ["--session-queue", "10"],
        ["--retention-days", "40000"],
        ["--listen", "nowhere"],
        ["--http2-keepalive-interval-secs", "0"],
        ["--http2-keepalive-timeout-secs", "601"],
        ["--handshake-timeout-secs", "0"],
    ] {
        let output = Command::new(BINARY).args(args).output().unwrap();
        assert!(!output.status.success(), "{args:?} must be refused");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(args[0]), "{args:?}: {stderr}");
    }
}

/// `--log-json` writes one JSON object per log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_json_writes_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _) = start_binary(dir.path(), &["--log-json"], Stdio::piped()).await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = tokio::task::spawn_blocking(move || {
        child.wait().unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        out
    })
    .await
    .unwrap();
    let lines: Vec<&str> = output.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("FastChat listening")),
        "{output}"
    );
    for line in lines {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
}
