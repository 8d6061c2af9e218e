//! Logs: each call and stream runs in a span naming the RPC, the user and the session, and no
//! token or message text reaches the logs, even with every crate logging at debug level.

mod common;

use std::{
    io::{self, Write},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{ChatSession, TestServer, authed, within};
use fastchat::proto::{SendMessageRequest, server_event::Event};
use fastchat::testing::Backend;
use serde_json::Value;

/// Log output kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The one test of this binary: the subscriber it installs is global.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_run_in_spans_and_secrets_stay_out_of_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter("debug")
        .with_writer(move || writer.clone())
        .init();

    let server = TestServer::start(Backend::Sqlite).await;
    let secret_text = format!("secret text {}", uuid::Uuid::new_v4());
    let unary_text = format!("unary secret {}", uuid::Uuid::new_v4());
    let (alice, bob) = within(Duration::from_secs(60), async {
        let mut alice = ChatSession::new_user(&server, "Alice").await;
        let mut bob = ChatSession::new_user(&server, "Bob").await;
        alice
            .send_message(&bob.user_id(), "m-1", &secret_text)
            .await;
        bob.next_where(|e| matches!(e, Event::Message(_)).then_some(()))
            .await;
        let mut chat = server.chat().await.unwrap();
        chat.send_message(authed(
            &bob.token(),
            SendMessageRequest {
                client_msg_id: "m-2".into(),
                to_user_id: alice.user_id(),
                text: unary_text.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
        alice
            .next_where(|e| matches!(e, Event::Message(_)).then_some(()))
            .await;
        (alice, bob)
    })
    .await;
    let (alice_id, alice_session, alice_token) = (
        alice.user_id(),
        alice.welcome.session_id.clone(),
        alice.token(),
    );
    let (bob_id, bob_token) = (bob.user_id(), bob.token());
    drop((alice, bob));
    server.stop().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let in_span = |rpc: &str, user: &str, message: &str| {
        lines.iter().find(|line| {
            line["span"]["rpc"] == rpc
                && line["span"]["user_id"] == user
                && line["fields"]["message"] == message
        })
    };
    let opened = in_span("fastchat.v1.ChatService/Chat", &alice_id, "session opened")
        .unwrap_or_else(|| panic!("no `session opened` in Alice's Chat span:\n{logs}"));
    assert_eq!(opened["span"]["session_id"], alice_session.as_str());
    assert_eq!(opened["span"]["transport"], "grpc");
    in_span(
        "fastchat.v1.ChatService/SendMessage",
        &bob_id,
        "finished processing request",
    )
    .unwrap_or_else(|| panic!("no response line in Bob's SendMessage span:\n{logs}"));

    // Debug lines from the HTTP/2 stack are there too: the check covers them.
    assert!(
        lines.iter().any(|line| line["level"] == "DEBUG"
            && line["target"].as_str().is_some_and(|t| t.starts_with("h2"))),
        "no h2 debug lines:\n{logs}"
    );
    for secret in [&secret_text, &unary_text, &alice_token, &bob_token] {
        assert!(!logs.contains(secret.as_str()), "{secret:?} was logged");
    }
}
