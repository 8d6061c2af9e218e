//! Another language: a Python client generated from `proto/` by grpcio-tools chats with a Rust
//! client through the server.
//!
//! The interpreter is `FASTCHAT_TEST_PYTHON` (default `python3`) and needs grpcio, grpcio-tools
//! and protobuf; `tests/run-all.sh` provides a venv with them. Without them the test fails.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{ChatSession, TestServer, within};
use fastchat::proto::{MessageStatus, server_event::Event};
use fastchat::testing::Backend;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines},
    process::{ChildStdout, Command},
};

/// The Python the tests run.
fn python() -> String {
    std::env::var("FASTCHAT_TEST_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".to_owned())
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails with a clear message unless `python` can import what the test needs.
async fn require_python_grpc(python: &str) {
    let output = Command::new(python)
        .args([
            "-c",
            "import grpc, grpc_tools.protoc, google.protobuf; print(grpc.__version__)",
        ])
        .output()
        .await
        .unwrap_or_else(|err| {
            panic!(
                "cannot run the Python interpreter {python:?} ({err}). Set FASTCHAT_TEST_PYTHON to \
                 a Python with grpcio, grpcio-tools and protobuf, or run `bash tests/run-all.sh`, \
                 which makes one"
            )
        });
    assert!(
        output.status.success(),
        "{python:?} lacks grpcio, grpcio-tools or protobuf: `{python} -m pip install grpcio \
         grpcio-tools protobuf`, or point FASTCHAT_TEST_PYTHON at a Python that has them \
         (`bash tests/run-all.sh` does both).\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Generates the Python client from `proto/fastchat/v1/*.proto` into `out`.
async fn generate_python_client(python: &str, out: &Path) {
    let mut protos: Vec<String> = std::fs::read_dir(repo_root().join("proto/fastchat/v1"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".proto"))
        .map(|name| format!("proto/fastchat/v1/{name}"))
        .collect();
    protos.sort();
    assert!(!protos.is_empty(), "no .proto files found");
    let output = Command::new(python)
        .current_dir(repo_root())
        .args(["-m", "grpc_tools.protoc", "-Iproto"])
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .args(&protos)
        .output()
        .await
        .expect("running grpc_tools.protoc");
    assert!(
        output.status.success(),
        "grpc_tools.protoc failed on {protos:?}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for generated in ["chat_pb2.py", "chat_pb2_grpc.py", "presence_pb2.py"] {
        let path = out.join("fastchat/v1").join(generated);
        assert!(path.exists(), "protoc did not write {}", path.display());
    }
}

/// The next line the Python peer prints, which must start with `prefix`; returns the rest.
async fn expect_line(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str, log: &Log) -> String {
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the Python peer printed no {prefix:?} line in time{}",
                log.show()
            )
        })
        .expect("reading the Python peer's output")
        .unwrap_or_else(|| panic!("the Python peer exited before {prefix:?}{}", log.show()));
    line.strip_prefix(prefix)
        .unwrap_or_else(|| {
            panic!(
                "expected {prefix:?}, the Python peer printed {line:?}{}",
                log.show()
            )
        })
        .to_owned()
}

/// What the Python peer wrote to stderr, for failure messages.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<String>>);

impl Log {
    fn show(&self) -> String {
        let text = self.0.lock().unwrap();
        if text.is_empty() {
            String::new()
        } else {
            format!("\n--- Python peer stderr ---\n{text}")
        }
    }
}

/// A Python peer opens a Chat stream (Hello with a display name); the Rust client sends it a
/// message, it replies, and the reply arrives from its user id with its text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_chats_with_rust_client() {
    within(Duration::from_secs(120), async {
        let python = python();
        require_python_grpc(&python).await;
        let generated = tempfile::tempdir().unwrap();
        generate_python_client(&python, generated.path()).await;

        let server = TestServer::start(Backend::Sqlite).await;
        let mut peer = Command::new(&python)
            .arg(repo_root().join("tests/python/chat_peer.py"))
            .arg("--addr")
            .arg(server.addr.to_string())
            .arg("--gen-dir")
            .arg(generated.path())
            .args(["--name", "Monty"])
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the Python peer");
        let log = Log::default();
        let mut stderr = peer.stderr.take().unwrap();
        let stderr_log = log.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                stderr_log
                    .0
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut lines = BufReader::new(peer.stdout.take().unwrap()).lines();

        let python_id = expect_line(&mut lines, "USER_ID ", &log).await;
        uuid::Uuid::parse_str(&python_id).expect("the Python peer's user id is a UUID");

        let mut alice = ChatSession::new_user(&server, "Alice").await;
        alice
            .send_message(&python_id, "rs-1", "hello from Rust")
            .await;
        let ack = alice
            .next_where(|e| match e {
                Event::Ack(a) => Some(a),
                _ => None,
            })
            .await;
        assert_eq!(ack.status(), MessageStatus::Sent);

        let got = expect_line(&mut lines, "GOT ", &log).await;
        assert_eq!(
            got,
            format!("{} hello from Rust", alice.user_id()),
            "the Python peer got the message from Alice"
        );

        let reply = alice
            .next_where(|e| match e {
                Event::Message(m) => Some(m),
                _ => None,
            })
            .await;
        assert_eq!(reply.text, "echo: hello from Rust");
        assert_eq!(
            reply.from_user_id, python_id,
            "the reply is from the Python user"
        );
        assert_eq!(reply.to_user_id, alice.user_id());

        let acked = expect_line(&mut lines, "ACKED ", &log).await;
        assert_eq!(
            acked, reply.message_id,
            "the Python peer's ack names the message"
        );

        let status = tokio::time::timeout(Duration::from_secs(30), peer.wait())
            .await
            .unwrap_or_else(|_| panic!("the Python peer did not exit{}", log.show()))
            .unwrap();
        assert!(
            status.success(),
            "the Python peer failed: {status}{}",
            log.show()
        );
        server.stop().await;
    })
    .await;
}
