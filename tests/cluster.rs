//! Several FastChat nodes on one PostgreSQL database, and in cluster mode on NATS: what they
//! need from the database to share it without breaking each other, and users on different nodes
//! chatting and seeing each other as if on one.

mod common;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use clap::Parser;
use common::{ChatSession, ack, authed, message, start_binary_on, status, web::web_channel_to};
use fastchat::{
    node::DEAD_AFTER,
    proto::{
        ChatMessage, EditMessageRequest, Hello, ListOnlineRequest, MarkReadRequest, MessageStatus,
        Presence, PresenceChange, PresenceEvent, PresenceStatus, PresenceUpdate, ReactRequest,
        Received, SendMessageRequest, ServerEvent, SetStatusRequest, SetTypingRequest,
        SubscribeRequest, TypingEvent, WatchPresenceRequest, Welcome,
        chat_service_client::ChatServiceClient, client_event, presence_event,
        presence_service_client::PresenceServiceClient, server_event::Event,
    },
    testing::{Backend, FreshDatabase, postgres_base_url},
};
use http::Version;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// A node's process, killed when the test ends, whether it passed or not.
struct Node(Child);

impl Node {
    /// Sends `signal` (`TERM`, `KILL`) to the process.
    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([format!("-{signal}"), self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Stops the node with SIGTERM and waits for it to exit cleanly.
    async fn stop(&mut self) {
        self.signal("TERM");
        let status = exited(&mut self.0, Duration::from_secs(15)).await;
        assert!(status.success(), "a graceful stop exited with {status}");
    }
}

/// Waits for `child` to exit, at most `limit`.
async fn exited(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "still running after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a node called `node_id` on `database_url`, with a data directory of its own.
async fn start_node(database_url: &str, node_id: &str, dir: &tempfile::TempDir) -> (Node, u16) {
    let extra = ["--node-id", node_id];
    let (child, port) = start_binary_on(database_url, dir.path(), &extra, Stdio::null()).await;
    (Node(child), port)
}

/// The NATS server the cluster-mode tests use: `FASTCHAT_TEST_NATS_URL`, or the local one. None
/// (with a note) when it does not answer, except under CI (`CI` set), which must run them.
fn nats_url() -> Option<String> {
    let url = std::env::var("FASTCHAT_TEST_NATS_URL")
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let address = url.trim_start_matches("nats://").to_owned();
    if std::net::TcpStream::connect(&address).is_ok() {
        return Some(url);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "no NATS at {url}: CI must run the cluster-mode tests"
    );
    eprintln!("skipping: no NATS at {url} (set FASTCHAT_TEST_NATS_URL)");
    None
}

/// A cluster of nodes on a fresh PostgreSQL database and a cluster name of its own on NATS, so
/// tests running at once stay apart.
struct Cluster {
    database: FreshDatabase,
    nats_url: String,
    name: String,
    dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    /// None when PostgreSQL or NATS is missing (outside CI).
    async fn create() -> Option<Self> {
        postgres_base_url()?;
        let nats_url = nats_url()?;
        Some(Self {
            database: FreshDatabase::create(Backend::Postgres).await,
            nats_url,
            name: format!("test-{}", uuid::Uuid::new_v4().simple()),
            dirs: Vec::new(),
        })
    }

    /// Starts node `node_id` in cluster mode, with `extra` flags.
    async fn start(&mut self, node_id: &str, extra: &[&str]) -> (Node, u16) {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--node-id",
            node_id,
            "--nats-url",
            &self.nats_url,
            "--cluster-name",
            &self.name,
        ];
        args.extend_from_slice(extra);
        let (child, port) =
            start_binary_on(&self.database.url, dir.path(), &args, Stdio::null()).await;
        self.dirs.push(dir);
        (Node(child), port)
    }
}

/// A gRPC channel to the node at `port`.
async fn channel_to(port: u16) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A new user named `name` with a Chat session on the node at `port`.
async fn user_on(port: u16, name: &str) -> ChatSession {
    let hello = Hello {
        display_name: name.into(),
        ..Default::default()
    };
    session_on(port, hello).await
}

/// A Chat session opened with `hello` on the node at `port`.
async fn session_on(port: u16, hello: Hello) -> ChatSession {
    let channel = channel_to(port).await;
    ChatSession::open_on(channel, hello).await.unwrap()
}

fn typing(event: Event) -> Option<TypingEvent> {
    match event {
        Event::Typing(t) => Some(t),
        _ => None,
    }
}

/// Alice on node A writes to Bob on node B: Alice gets the ack, Bob the message, Alice's other
/// session on node C the echo; DELIVERED and READ come back to both of Alice's sessions. Typing
/// reaches Bob, and ends there by itself when Alice stops sending it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_reaches_users_on_other_nodes() {
    let Some(mut cluster) = Cluster::create().await else {
        return;
    };
    let typing_timeout = ["--typing-timeout-ms", "1000"];
    let (_a, port_a) = cluster.start("node-a", &typing_timeout).await;
    let (_b, port_b) = cluster.start("node-b", &typing_timeout).await;
    let (_c, port_c) = cluster.start("node-c", &typing_timeout).await;
    let mut alice = user_on(port_a, "Alice").await;
    let mut alice_phone = session_on(port_c, alice.hello_again()).await;
    let mut bob = user_on(port_b, "Bob").await;

    alice
        .send(client_event::Event::Typing(SetTypingRequest {
            to_user_id: bob.user_id(),
            is_typing: true,
        }))
        .await;
    let started = bob.next_where(typing).await;
    assert_eq!(
        (started.from_user_id.as_str(), started.is_typing),
        (alice.user_id().as_str(), true)
    );
    let stopped = bob.next_where(typing).await;
    assert!(!stopped.is_typing, "typing ends by itself on Bob's node");

    alice.send_message(&bob.user_id(), "m-1", "hello Bob").await;
    let acked = alice.next_where(ack).await;
    assert_eq!(acked.status(), MessageStatus::Sent);
    let received = bob.next_where(message).await;
    assert_eq!(
        (received.text.as_str(), received.seq),
        ("hello Bob", acked.seq)
    );
    let echo = alice_phone.next_where(message).await;
    assert_eq!(echo.message_id, acked.message_id);

    for session in [&mut alice, &mut alice_phone] {
        let delivered = session.next_where(status).await;
        assert_eq!(delivered.status(), MessageStatus::Delivered);
        assert_eq!(delivered.message_id, acked.message_id);
    }
    bob.send(client_event::Event::MarkRead(MarkReadRequest {
        peer_user_id: alice.user_id(),
        up_to_seq: received.seq,
    }))
    .await;
    for session in [&mut alice, &mut alice_phone] {
        let read = session.next_where(status).await;
        assert_eq!(
            (read.status(), read.seq),
            (MessageStatus::Read, received.seq)
        );
    }
    bob.assert_none_where(Duration::from_millis(500), |e| {
        matches!(e, Event::Message(_))
    })
    .await;
}

/// An edit and a reaction made through one node reach both users' sessions on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_changes_reach_users_on_other_nodes() {
    let Some(mut cluster) = Cluster::create().await else {
        return;
    };
    let (_a, port_a) = cluster.start("node-a", &[]).await;
    let (_b, port_b) = cluster.start("node-b", &[]).await;
    let (_c, port_c) = cluster.start("node-c", &[]).await;
    let mut alice = user_on(port_a, "Alice").await;
    let mut alice_phone = session_on(port_c, alice.hello_again()).await;
    let mut bob = user_on(port_b, "Bob").await;
    alice
        .send_message(&bob.user_id(), "m-1", "see you at 5")
        .await;
    let id = alice.next_where(ack).await.message_id;
    bob.next_where(message).await;

    let mut client = ChatServiceClient::new(channel_to(port_a).await);
    let edit = EditMessageRequest {
        message_id: id.clone(),
        text: "see you at 6".into(),
    };
    client
        .edit_message(authed(&alice.token(), edit))
        .await
        .unwrap();
    let react = ReactRequest {
        message_id: id.clone(),
        emoji: "👍".into(),
        remove: false,
    };
    client.react(authed(&bob.token(), react)).await.unwrap();
    let updated = |event: Event| match event {
        Event::Update(update) => update.message.filter(|m| !m.reactions.is_empty()),
        _ => None,
    };
    let bob_id = bob.user_id();
    for session in [&mut bob, &mut alice_phone] {
        let seen = session.next_where(updated).await;
        assert_eq!(
            (seen.message_id.as_str(), seen.text.as_str()),
            (id.as_str(), "see you at 6")
        );
        assert_eq!(seen.reactions[0].user_ids, std::slice::from_ref(&bob_id));
    }
}

/// Typing ends on the recipient's node when the session that set it closes on another node,
/// at once rather than when the (here long) typing timeout runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_ends_across_nodes_when_its_session_closes() {
    let Some(mut cluster) = Cluster::create().await else {
        return;
    };
    let long = ["--typing-timeout-ms", "60000"];
    let (_a, port_a) = cluster.start("node-a", &long).await;
    let (_b, port_b) = cluster.start("node-b", &long).await;
    let alice = user_on(port_a, "Alice").await;
    let mut bob = user_on(port_b, "Bob").await;
    alice
        .send(client_event::Event::Typing(SetTypingRequest {
            to_user_id: bob.user_id(),
            is_typing: true,
        }))
        .await;
    assert!(bob.next_where(typing).await.is_typing);

    drop(alice);
    let stopped = bob.next_where(typing).await;
    assert!(
        !stopped.is_typing,
        "typing ends when Alice's session closes"
    );
}

/// A message stored while its recipient is connected to no node comes from the backlog when they
/// connect to any node, once; and the same `client_msg_id` sent through two nodes is one message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_stored_and_delivered_once_whichever_nodes_take_it() {
    let Some(mut cluster) = Cluster::create().await else {
        return;
    };
    let (_a, port_a) = cluster.start("node-a", &[]).await;
    let (_b, port_b) = cluster.start("node-b", &[]).await;
    let mut alice = user_on(port_a, "Alice").await;
    let mut alice_on_b = session_on(port_b, alice.hello_again()).await;
    let bob = user_on(port_b, "Bob").await;
    let bob_hello = bob.hello_again();
    let bob_id = bob.user_id();
    drop(bob);

    alice.send_message(&bob_id, "same", "once").await;
    alice_on_b.send_message(&bob_id, "same", "once").await;
    let first = alice.next_where(ack).await;
    let second = alice_on_b.next_where(ack).await;
    assert_eq!(first.message_id, second.message_id);

    let mut bob = session_on(port_a, bob_hello).await;
    let received = bob.next_where(message).await;
    assert_eq!(received.message_id, first.message_id);
    bob.assert_none_where(Duration::from_millis(500), |e| {
        matches!(e, Event::Message(_))
    })
    .await;
}

/// Cluster mode refuses SQLite at start-up, saying why: the nodes must share one database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_needs_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(common::BINARY)
        .args([
            "--nats-url",
            "nats://127.0.0.1:4222",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("DATABASE_URL", "")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("needs PostgreSQL"), "it said: {said}");
}

/// The first column of the first row `sql` returns, as a number.
async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
}

/// What the database holds for `node`: its registrations, its open sessions, its users'
/// presence rows, and of these the ONLINE ones.
async fn rows_of(db: &DatabaseConnection, node: &str) -> [i64; 4] {
    [
        count(
            db,
            &format!("SELECT COUNT(*) FROM nodes WHERE node_id = '{node}'"),
        )
        .await,
        count(
            db,
            &format!("SELECT COUNT(*) FROM sessions WHERE node_id = '{node}' AND ended_at IS NULL"),
        )
        .await,
        count(
            db,
            &format!("SELECT COUNT(*) FROM users_online WHERE node_id = '{node}'"),
        )
        .await,
        count(
            db,
            &format!(
                "SELECT COUNT(*) FROM users_online WHERE node_id = '{node}' AND status = 'online'"
            ),
        )
        .await,
    ]
}

/// Polls `rows_of(node)` until it is `expected`, at most `limit`.
async fn wait_for_rows(db: &DatabaseConnection, node: &str, expected: [i64; 4], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let rows = rows_of(db, node).await;
        if rows == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rows of {node} (nodes, open sessions, presence rows, online): {rows:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The body of `GET path` on the node at `port`.
async fn http_get(port: u16, path: &str) -> String {
    let url = format!("http://127.0.0.1:{port}");
    let (status, _, body) = common::http_get_from(&url, path, &[]).await;
    assert_eq!(status, 200, "{path}");
    String::from_utf8(body.to_vec()).unwrap()
}

/// `fastchat_dead_nodes_cleaned_total` of the node at `port`.
async fn dead_nodes_cleaned(port: u16) -> f64 {
    let metrics = http_get(port, "/metrics").await;
    common::series(&metrics, "fastchat_dead_nodes_cleaned_total").unwrap()
}

/// Who the node at `port` says is online, as (id, status, sessions) in id order: by ListOnline,
/// and by `/presence/online`.
async fn online_on(port: u16) -> [Vec<(String, PresenceStatus, u32)>; 2] {
    let channel = channel_to(port).await;
    let mut client = PresenceServiceClient::new(channel);
    let listed = client
        .list_online(ListOnlineRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut online: Vec<(String, PresenceStatus, u32)> = listed
        .users
        .iter()
        .map(|p| {
            let id = p.user.as_ref().unwrap().user_id.clone();
            (id, p.status(), p.sessions)
        })
        .collect();
    online.sort();
    let body: serde_json::Value =
        serde_json::from_str(&http_get(port, "/presence/online").await).unwrap();
    let mut over_http: Vec<(String, PresenceStatus, u32)> = body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            let status = match u["status"].as_str().unwrap() {
                "away" => PresenceStatus::Away,
                _ => PresenceStatus::Online,
            };
            let sessions = u["sessions"].as_u64().unwrap() as u32;
            (u["user_id"].as_str().unwrap().to_owned(), status, sessions)
        })
        .collect();
    over_http.sort();
    [online, over_http]
}

/// Waits until every node of `ports` says `expected` is online (in any order), by ListOnline and
/// by `/presence/online`, at most `limit`.
async fn wait_for_online(ports: &[u16], expected: &[(&str, PresenceStatus, u32)], limit: Duration) {
    let mut expected: Vec<(String, PresenceStatus, u32)> = expected
        .iter()
        .map(|(id, status, sessions)| ((*id).to_owned(), *status, *sessions))
        .collect();
    expected.sort();
    let deadline = Instant::now() + limit;
    for port in ports {
        loop {
            let online = online_on(*port).await;
            if online.iter().all(|answer| *answer == expected) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node on {port} says {online:?}, expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A chat event's presence change for `user`, if it is one.
fn change_of(user: &str) -> impl FnMut(Event) -> Option<Presence> + '_ {
    move |event| match event {
        Event::Presence(PresenceEvent {
            event: Some(presence_event::Event::Change(PresenceChange { presence: Some(p) })),
        }) if p.user.as_ref().is_some_and(|u| u.user_id == user) => Some(p),
        _ => None,
    }
}

/// A WatchPresence stream of every user's presence on the node at `port`.
async fn watch_everyone(port: u16) -> tonic::Streaming<PresenceEvent> {
    let request = WatchPresenceRequest { every_user: true };
    PresenceServiceClient::new(channel_to(port).await)
        .watch_presence(request)
        .await
        .unwrap()
        .into_inner()
}

/// The next change of `user` a WatchPresence stream shows.
async fn next_watched(stream: &mut tonic::Streaming<PresenceEvent>, user: &str) -> Presence {
    loop {
        let event = tokio::time::timeout(common::WAIT, stream.message())
            .await
            .expect("timed out waiting for a presence change")
            .unwrap()
            .expect("stream ended");
        if let Some(presence) = change_of(user)(Event::Presence(event)) {
            return presence;
        }
    }
}

/// Every node sees every user, merged: ONLINE if any node has them ONLINE, AWAY if all their
/// sessions said away, sessions added up; ListOnline and `/presence/online` agree on every node,
/// a chat session and WatchPresence get the changes of users on other nodes, and a WatchPresence
/// snapshot lists them. A graceful stop of a node does
/// not touch users with sessions elsewhere; a SIGKILLed node's users go OFFLINE everywhere once
/// it is noticed and the grace period has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_the_same_on_every_node() {
    let Some(mut cluster) = Cluster::create().await else {
        return;
    };
    let grace = ["--offline-grace-ms", "1000"];
    let (_a, port_a) = cluster.start("node-a", &grace).await;
    let (mut b, port_b) = cluster.start("node-b", &grace).await;
    let (c, port_c) = cluster.start("node-c", &grace).await;
    let mut watcher_on_a = watch_everyone(port_a).await;
    let mut alice = user_on(port_a, "Alice").await;
    let bob = user_on(port_b, "Bob").await;
    let carol = user_on(port_c, "Carol").await;
    let (a_id, b_id, c_id) = (alice.user_id(), bob.user_id(), carol.user_id());
    let (online, away) = (PresenceStatus::Online, PresenceStatus::Away);
    let limit = common::WAIT;

    let all = [port_a, port_b, port_c];
    wait_for_online(
        &all,
        &[(&a_id, online, 1), (&b_id, online, 1), (&c_id, online, 1)],
        limit,
    )
    .await;
    let seen = alice.next_where(change_of(&c_id)).await;
    assert_eq!(seen.status(), online);
    // WatchPresence: changes of users on other nodes, and a snapshot of everyone.
    let seen = next_watched(&mut watcher_on_a, &c_id).await;
    assert_eq!(seen.status(), online);
    let mut watcher_on_b = watch_everyone(port_b).await;
    let Some(presence_event::Event::Snapshot(snapshot)) =
        watcher_on_b.message().await.unwrap().unwrap().event
    else {
        panic!("WatchPresence starts with a snapshot");
    };
    let mut in_snapshot: Vec<String> = snapshot
        .users
        .iter()
        .map(|p| p.user.as_ref().unwrap().user_id.clone())
        .collect();
    in_snapshot.sort();
    let mut everyone = vec![a_id.clone(), b_id.clone(), c_id.clone()];
    everyone.sort();
    assert_eq!(in_snapshot, everyone);

    bob.send(client_event::Event::Presence(PresenceUpdate {
        status: away as i32,
    }))
    .await;
    wait_for_online(
        &all,
        &[(&a_id, online, 1), (&b_id, away, 1), (&c_id, online, 1)],
        limit,
    )
    .await;
    let _bob_on_c = session_on(port_c, bob.hello_again()).await;
    wait_for_online(
        &all,
        &[(&a_id, online, 1), (&b_id, online, 2), (&c_id, online, 1)],
        limit,
    )
    .await;

    drop(bob);
    b.stop().await;
    let left = [port_a, port_c];
    wait_for_online(
        &left,
        &[(&a_id, online, 1), (&b_id, online, 1), (&c_id, online, 1)],
        limit,
    )
    .await;

    c.signal("KILL");
    wait_for_online(&[port_a], &[(&a_id, online, 1)], DEAD_AFTER + limit).await;
    let gone = alice.next_where(change_of(&c_id)).await;
    assert_eq!(gone.status(), PresenceStatus::Offline);
}

/// SetStatus on {port}: `session_id` (empty: all of them) of the user with `token` to `status`.
async fn set_status_on(
    port: u16,
    token: &str,
    status: PresenceStatus,
    session_id: &str,
) -> Result<Presence, tonic::Status> {
    let channel = channel_to(port).await;
    let request = SetStatusRequest {
        status: status as i32,
        session_id: session_id.to_owned(),
    };
    let answer = PresenceServiceClient::new(channel)
        .set_status(authed(token, request))
        .await?;
    Ok(answer.into_inner().presence.unwrap())
}

/// SetStatus reaches the sessions wherever they are: a session held by another node is set
/// through that node, and "all my sessions" sets those of every node; NOT_FOUND only when no
/// node holds the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_status_reaches_sessions_on_other_nodes() {
    let Some(mut cluster) = Cluster::create().await else {
        return;
    };
    let (_a, port_a) = cluster.start("node-a", &[]).await;
    let (_b, port_b) = cluster.start("node-b", &[]).await;
    let bob_on_a = user_on(port_a, "Bob").await;
    let bob_on_b = session_on(port_b, bob_on_a.hello_again()).await;
    let (id, token) = (bob_on_a.user_id(), bob_on_a.token());
    let (online, away) = (PresenceStatus::Online, PresenceStatus::Away);
    let both = [port_a, port_b];
    wait_for_online(&both, &[(&id, online, 2)], common::WAIT).await;

    // The session on B, set through A; then the one on A: AWAY everywhere.
    let on_b = &bob_on_b.welcome.session_id;
    let set = set_status_on(port_a, &token, away, on_b).await.unwrap();
    assert_eq!(set.status(), online, "one of two sessions is away");
    // The answer merges what node A knows of node B, which may not have B's change yet: the
    // merged AWAY is checked on both nodes instead.
    let set = set_status_on(port_a, &token, away, &bob_on_a.welcome.session_id).await;
    assert_eq!(set.unwrap().sessions, 2);
    wait_for_online(&both, &[(&id, away, 2)], common::WAIT).await;

    // All of them, from either node.
    let set = set_status_on(port_b, &token, online, "").await.unwrap();
    assert_eq!(set.status(), online);
    wait_for_online(&both, &[(&id, online, 2)], common::WAIT).await;
    let set = set_status_on(port_a, &token, away, "").await.unwrap();
    assert_eq!(set.status(), away);
    wait_for_online(&both, &[(&id, away, 2)], common::WAIT).await;

    let nowhere = uuid::Uuid::new_v4().to_string();
    let refused = set_status_on(port_a, &token, online, &nowhere)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
}

/// Whether the program at `path` (a Debian package's, which CI installs) is here; outside CI a
/// test without it is skipped, with a note.
fn installed(path: &str) -> bool {
    if std::path::Path::new(path).exists() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "CI must have {path}");
    eprintln!("skipping: no {path}");
    false
}

/// A NATS server of a test's own, which it can stop and start again on the same port.
struct PrivateNats {
    process: Option<Child>,
    port: u16,
}

impl PrivateNats {
    /// The Debian package's server (CI installs it); None outside CI when it is missing.
    const BINARY: &str = "/usr/sbin/nats-server";

    async fn start() -> Option<Self> {
        if !installed(Self::BINARY) {
            return None;
        }
        let mut nats = Self {
            process: None,
            port: common::free_port(),
        };
        nats.restart().await;
        Some(nats)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) and waits until it takes connections.
    async fn restart(&mut self) {
        let process = Command::new(Self::BINARY)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.process = Some(process);
        let deadline = Instant::now() + common::WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server.
    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the node at `port` says of `service` on the gRPC health service.
async fn health_of(port: u16, service: &str) -> ServingStatus {
    let channel = channel_to(port).await;
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    HealthClient::new(channel)
        .check(request)
        .await
        .unwrap()
        .into_inner()
        .status()
}

/// Waits until every node of `ports` reports its link to the cluster as `expected`, on the
/// health service and in `/metrics`, while its overall health stays SERVING.
async fn wait_for_link(ports: &[u16], expected: ServingStatus) {
    let deadline = Instant::now() + common::WAIT;
    for port in ports {
        loop {
            let link = health_of(*port, "fastchat.v1.Cluster").await;
            let gauge = common::series(
                &http_get(*port, "/metrics").await,
                "fastchat_cluster_link_up",
            );
            let gauge_expected = if expected == ServingStatus::Serving {
                1.0
            } else {
                0.0
            };
            if link == expected && gauge == Some(gauge_expected) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node on {port}: link {link:?}, gauge {gauge:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(health_of(*port, "").await, ServingStatus::Serving);
    }
}

/// While NATS is down each node serves its own users, reports the cluster link NOT_SERVING, and
/// flaps no one offline; when it is back, what could not cross meanwhile arrives, each message
/// once and in seq order: on the open session when nothing newer was sent to it, otherwise after
/// the session ends (UNAVAILABLE) and its client reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_loses_no_message_and_flaps_no_one() {
    let Some(mut cluster) = Cluster::create().await else {
        return;
    };
    let Some(mut nats) = PrivateNats::start().await else {
        return;
    };
    cluster.nats_url = nats.url();
    let (_a, port_a) = cluster.start("node-a", &[]).await;
    let (_b, port_b) = cluster.start("node-b", &[]).await;
    let mut alice = user_on(port_a, "Alice").await;
    let mut bob = user_on(port_b, "Bob").await;
    let carol = user_on(port_b, "Carol").await;
    let mut dave = user_on(port_b, "Dave").await;
    let ids = [
        alice.user_id(),
        bob.user_id(),
        carol.user_id(),
        dave.user_id(),
    ];
    let everyone: Vec<(&str, PresenceStatus, u32)> = ids
        .iter()
        .map(|id| (id.as_str(), PresenceStatus::Online, 1))
        .collect();
    let both = [port_a, port_b];
    wait_for_online(&both, &everyone, common::WAIT).await;
    wait_for_link(&both, ServingStatus::Serving).await;
    alice
        .send_message(&ids[1], "before", "before the outage")
        .await;
    let before = bob.next_where(message).await;
    assert_eq!(alice.next_where(ack).await.seq, before.seq);

    nats.stop();
    wait_for_link(&both, ServingStatus::NotServing).await;
    let mut to_bob = Vec::new();
    for i in 0..3 {
        alice
            .send_message(&ids[1], &format!("down-{i}"), "during the outage")
            .await;
        to_bob.push(alice.next_where(ack).await.seq);
    }
    alice
        .send_message(&ids[3], "down-dave", "lost on the way")
        .await;
    let to_dave = alice.next_where(ack).await.seq;
    carol.send_message(&ids[3], "local", "same node").await;
    let local = dave.next_where(message).await;
    assert!(local.seq > to_dave);
    // Past the dead-node timeout: nobody goes OFFLINE anywhere.
    let offline = |event: &Event| {
        matches!(event, Event::Presence(PresenceEvent {
            event: Some(presence_event::Event::Change(PresenceChange { presence: Some(p) })),
        }) if p.status() == PresenceStatus::Offline)
    };
    alice
        .assert_none_where(DEAD_AFTER + Duration::from_secs(1), offline)
        .await;
    wait_for_online(&both, &everyone, Duration::ZERO).await;

    nats.restart().await;
    wait_for_link(&both, ServingStatus::Serving).await;
    // Bob's session had nothing newer: the messages come on it, in order, once.
    for seq in &to_bob {
        assert_eq!(bob.next_where(message).await.seq, *seq);
    }
    bob.assert_none_where(Duration::from_millis(500), |e| {
        matches!(e, Event::Message(_))
    })
    .await;
    assert!(to_bob[0] > before.seq);
    // Dave's had a newer one: his session ends and the next one has the lost message, once.
    let ended = dave
        .final_status()
        .await
        .expect("Dave's session ends with a status");
    assert_eq!(ended.code(), tonic::Code::Unavailable, "{ended:?}");
    let mut dave = session_on(port_b, dave.hello_again()).await;
    assert_eq!(dave.next_where(message).await.seq, to_dave);
    dave.assert_none_where(Duration::from_millis(500), |e| {
        matches!(e, Event::Message(_))
    })
    .await;
    // And live delivery across nodes works again.
    alice
        .send_message(&ids[1], "after", "after the outage")
        .await;
    assert_eq!(bob.next_where(message).await.text, "after the outage");
}

/// HAProxy run with `deploy/haproxy.cfg`, the file compose.yaml gives its proxy, with the same
/// environment variables; killed when the test ends.
struct Proxy {
    process: Child,
    port: u16,
}

impl Proxy {
    /// Debian's HAProxy (CI installs it); None outside CI when it is missing.
    const BINARY: &str = "/usr/sbin/haproxy";

    /// In front of the nodes at `nodes`; returns once it forwards `/health`.
    async fn start(nodes: [u16; 2]) -> Option<Self> {
        if !installed(Self::BINARY) {
            return None;
        }
        let port = common::free_port();
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy.cfg");
        let process = Command::new(Self::BINARY)
            .args(["-db", "-f", config])
            .env("FASTCHAT_PROXY_BIND", format!("127.0.0.1:{port}"))
            .env("FASTCHAT_NODE_A", format!("127.0.0.1:{}", nodes[0]))
            .env("FASTCHAT_NODE_B", format!("127.0.0.1:{}", nodes[1]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let proxy = Self { process, port };
        let deadline = Instant::now() + common::WAIT;
        while !common::health_ok(port).await {
            assert!(Instant::now() < deadline, "HAProxy did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(proxy)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Waits until the open chat sessions are spread over `nodes` nodes, by the `sessions` table.
async fn wait_for_sessions_on(db: &DatabaseConnection, nodes: i64) {
    let sql = "SELECT COUNT(DISTINCT node_id) FROM sessions WHERE ended_at IS NULL";
    let deadline = Instant::now() + common::WAIT;
    while count(db, sql).await != nodes {
        assert!(
            Instant::now() < deadline,
            "sessions are not on {nodes} nodes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next message on a grpc-web stream, skipping other events.
async fn next_web_message(stream: &mut tonic::Streaming<ServerEvent>) -> ChatMessage {
    loop {
        let event = tokio::time::timeout(common::WAIT, stream.message())
            .await
            .expect("timed out waiting for a message")
            .unwrap()
            .expect("stream ended");
        if let Some(Event::Message(message)) = event.event {
            return message;
        }
    }
}

/// A grpc-web Subscribe (over HTTP/1.1, as browsers without TLS) of a new user at `port`: the
/// stream, after Welcome, and the user's id.
async fn web_user_on(port: u16, name: &str) -> (tonic::Streaming<ServerEvent>, Welcome) {
    let (channel, origin) = web_channel_to(&format!("http://127.0.0.1:{port}"), Version::HTTP_11);
    let request = SubscribeRequest {
        hello: Some(Hello {
            display_name: name.into(),
            ..Default::default()
        }),
    };
    let mut stream = ChatServiceClient::with_origin(channel, origin)
        .subscribe(request)
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap().event;
    let Some(Event::Welcome(welcome)) = first else {
        panic!("a session starts with Welcome, not {first:?}");
    };
    (stream, welcome)
}

/// From `sender` to `recipient` (native sessions): the ack, the message, DELIVERED, and READ
/// once the recipient marks it read.
async fn native_exchange(sender: &mut ChatSession, recipient: &mut ChatSession) {
    sender
        .send_message(&recipient.user_id(), "native", "native exchange")
        .await;
    let acked = sender.next_where(ack).await;
    let received = recipient.next_where(message).await;
    assert_eq!(received.message_id, acked.message_id);
    let delivered = sender.next_where(status).await;
    assert_eq!(
        (delivered.status(), delivered.message_id.as_str()),
        (MessageStatus::Delivered, acked.message_id.as_str())
    );
    recipient
        .send(client_event::Event::MarkRead(MarkReadRequest {
            peer_user_id: sender.user_id(),
            up_to_seq: received.seq,
        }))
        .await;
    let read = sender.next_where(status).await;
    assert_eq!(
        (read.status(), read.seq),
        (MessageStatus::Read, received.seq)
    );
}

/// Between the native session `sender` and a grpc-web user (`web`, welcomed with `welcome`,
/// calling through `web_port`): the ack, the message on the grpc-web stream, DELIVERED, READ
/// once the web user marks it read over grpc-web, and the web user's own SendMessage over
/// grpc-web, acked and received.
async fn web_exchange(
    sender: &mut ChatSession,
    web: &mut tonic::Streaming<ServerEvent>,
    welcome: &Welcome,
    web_port: u16,
) {
    let web_id = welcome.user.as_ref().unwrap().user_id.clone();
    sender
        .send_message(&web_id, "to-web", "to the browser")
        .await;
    let acked = sender.next_where(ack).await;
    let received = next_web_message(web).await;
    assert_eq!(received.message_id, acked.message_id);
    let delivered = sender.next_where(status).await;
    assert_eq!(
        (delivered.status(), delivered.message_id.as_str()),
        (MessageStatus::Delivered, acked.message_id.as_str())
    );

    let url = format!("http://127.0.0.1:{web_port}");
    let (channel, origin) = web_channel_to(&url, Version::HTTP_11);
    let mut client = ChatServiceClient::with_origin(channel, origin);
    let mark = MarkReadRequest {
        peer_user_id: sender.user_id(),
        up_to_seq: received.seq,
    };
    client
        .mark_read(authed(&welcome.token, mark))
        .await
        .unwrap();
    let read = sender.next_where(status).await;
    assert_eq!(
        (read.status(), read.seq),
        (MessageStatus::Read, received.seq)
    );

    let reply = SendMessageRequest {
        client_msg_id: "from-web".into(),
        to_user_id: sender.user_id(),
        text: "from the browser".into(),
        ..Default::default()
    };
    let answer = client.send_message(authed(&welcome.token, reply)).await;
    let answer = answer.unwrap().into_inner();
    let arrived = sender.next_where(message).await;
    assert_eq!(
        (arrived.message_id.as_str(), arrived.text.as_str()),
        (answer.message_id.as_str(), "from the browser")
    );
}

/// Behind HAProxy (deploy/haproxy.cfg): gRPC calls are spread over the nodes and users reach
/// each other whichever node each landed on (ack, DELIVERED, READ); grpc-web (HTTP/1.1) works
/// through the proxy and straight to a node, with the other user on the other node; and when a node stops, new sessions go to the
/// other one at once and its users reconnect through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_spreads_grpc_and_grpc_web_over_the_nodes() {
    let Some(mut cluster) = Cluster::create().await else {
        return;
    };
    let (mut a, port_a) = cluster.start("node-a", &[]).await;
    let (_b, port_b) = cluster.start("node-b", &[]).await;
    let Some(proxy) = Proxy::start([port_a, port_b]).await else {
        return;
    };
    let db = sea_orm::Database::connect(&cluster.database.url)
        .await
        .unwrap();
    let mut users = Vec::new();
    for name in ["Alice", "Bob", "Carol", "Dave"] {
        users.push(user_on(proxy.port, name).await);
    }
    wait_for_sessions_on(&db, 2).await;
    let (first, rest) = users.split_first_mut().unwrap();
    native_exchange(first, &mut rest[0]).await;
    let (last, others) = users.split_last_mut().unwrap();
    for (i, to) in others.iter().enumerate() {
        last.send_message(&to.user_id(), &format!("m{i}"), "through the proxy")
            .await;
    }
    for user in others {
        assert_eq!(user.next_where(message).await.text, "through the proxy");
    }

    // grpc-web through the proxy, and straight to node B with the sender on node A.
    let (mut web, web_welcome) = web_user_on(proxy.port, "Webby").await;
    let mut sender = user_on(proxy.port, "Sender").await;
    web_exchange(&mut sender, &mut web, &web_welcome, proxy.port).await;
    let (mut web_on_b, welcome_on_b) = web_user_on(port_b, "Webby B").await;
    let mut alice_on_a = user_on(port_a, "Alice A").await;
    web_exchange(&mut alice_on_a, &mut web_on_b, &welcome_on_b, port_b).await;

    // Node A stops: sessions opened through the proxy go to B without waiting for the health
    // check; the users who were on A reconnect through the proxy.
    drop(alice_on_a);
    a.stop().await;
    for name in ["Erin", "Frank", "Grace"] {
        user_on(proxy.port, name).await;
    }
    let mut again = Vec::new();
    for user in &users {
        again.push(session_on(proxy.port, user.hello_again()).await);
    }
    again[1]
        .send_message(&users[0].user_id(), "back", "after a node stopped")
        .await;
    assert_eq!(
        again[0].next_where(message).await.text,
        "after a node stopped"
    );
    db.close().await.unwrap();
}

/// A node killed with SIGKILL loses no acknowledged message: the recipient, reconnecting to
/// another node, gets every message they had not acknowledged (those the dead node sent them
/// and those sent while they were away), each once and in seq order, and none they had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_node_is_killed_its_users_get_every_message_once_elsewhere() {
    let Some(mut cluster) = Cluster::create().await else {
        return;
    };
    let burst = ["--rate-messages-burst", "20"];
    let (a, port_a) = cluster.start("node-a", &burst).await;
    let (_b, port_b) = cluster.start("node-b", &burst).await;
    let mut alice = user_on(port_b, "Alice").await;
    let hello = Hello {
        display_name: "Bob".into(),
        receipts: true,
        ..Default::default()
    };
    let mut bob = session_on(port_a, hello).await;
    let bob_id = bob.user_id();
    let send = async |alice: &mut ChatSession, keys: std::ops::Range<u32>| {
        let mut seqs = Vec::new();
        for i in keys {
            alice
                .send_message(&bob_id, &format!("m{i}"), &format!("text {i}"))
                .await;
            seqs.push(alice.next_where(ack).await.seq);
        }
        seqs
    };

    // Bob has and acknowledges the first five; Alice sees them DELIVERED.
    let had = send(&mut alice, 0..5).await;
    for seq in &had {
        assert_eq!(bob.next_where(message).await.seq, *seq);
    }
    bob.send(client_event::Event::Received(Received {
        up_to_seq: had[4],
    }))
    .await;
    loop {
        let update = alice.next_where(status).await;
        if update.status() == MessageStatus::Delivered && update.seq == had[4] {
            break;
        }
    }
    // The next five reach Bob's session but he does not acknowledge them before node A dies.
    let mut owed = send(&mut alice, 5..10).await;
    for seq in &owed {
        assert_eq!(bob.next_where(message).await.seq, *seq);
    }
    a.signal("KILL");
    owed.extend(send(&mut alice, 10..15).await);

    let mut bob = session_on(port_b, bob.hello_again()).await;
    for seq in &owed {
        assert_eq!(bob.next_where(message).await.seq, *seq);
    }
    bob.assert_none_where(Duration::from_millis(500), |e| {
        matches!(e, Event::Message(_))
    })
    .await;
}

/// The display name the node at `port` lists for `user` (None: not online there).
async fn listed_name(port: u16, user: &str) -> Option<String> {
    let channel = channel_to(port).await;
    let listed = PresenceServiceClient::new(channel)
        .list_online(ListOnlineRequest::default())
        .await
        .unwrap()
        .into_inner();
    listed
        .users
        .into_iter()
        .filter_map(|p| p.user)
        .find(|u| u.user_id == user)
        .map(|u| u.display_name)
}

/// A rename on one node reaches the others: a later session there, signed in by token alone, is
/// welcomed under the new name (not the one that node had cached), and every node lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_reaches_every_node() {
    let Some(mut cluster) = Cluster::create().await else {
        return;
    };
    let (_a, port_a) = cluster.start("node-a", &[]).await;
    let (_b, port_b) = cluster.start("node-b", &[]).await;
    let bob = user_on(port_a, "Bob").await;
    let _bob_on_b = session_on(port_b, bob.hello_again()).await;
    let id = bob.user_id();
    let rename = Hello {
        display_name: "Robert".into(),
        ..bob.hello_again()
    };
    let renamed = session_on(port_a, rename).await;
    assert_eq!(
        renamed.welcome.user.as_ref().unwrap().display_name,
        "Robert"
    );
    let deadline = Instant::now() + common::WAIT;
    while listed_name(port_b, &id).await.as_deref() != Some("Robert") {
        assert!(Instant::now() < deadline, "node B still lists the old name");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let again_on_b = session_on(port_b, bob.hello_again()).await;
    assert_eq!(
        again_on_b.welcome.user.as_ref().unwrap().display_name,
        "Robert"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    for port in [port_a, port_b] {
        assert_eq!(listed_name(port, &id).await.as_deref(), Some("Robert"));
    }
}

/// The load generator's cross-node chat: `--server` with two nodes puts each pair's users on
/// different nodes; every acked message arrives once, and the CPU of both nodes is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_chats_across_nodes_without_loss() {
    let Some(mut cluster) = Cluster::create().await else {
        return;
    };
    let burst = [
        "--rate-messages-burst",
        "1000",
        "--rate-messages-per-minute",
        "60000",
    ];
    let (a, port_a) = cluster.start("node-a", &burst).await;
    let (b, port_b) = cluster.start("node-b", &burst).await;
    let servers = format!("http://127.0.0.1:{port_a},http://127.0.0.1:{port_b}");
    let pids = format!("{},{}", a.0.id(), b.0.id());
    let args = [
        "fastchat-loadgen",
        "--server",
        &servers,
        "--server-pid",
        &pids,
        "--duration-secs",
        "2",
        "chat",
        "--pairs",
        "10",
        "--messages",
        "20",
        "--baseline-secs",
        "0",
    ];
    let cli = fastchat_loadgen::Cli::try_parse_from(args).unwrap();
    let report = common::within(Duration::from_secs(60), fastchat_loadgen::run(&cli))
        .await
        .unwrap();
    assert_eq!(report["servers"], 2, "{report}");
    assert_eq!(report["acked"], 400, "{report}");
    assert_eq!(report["delivered"], 400, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert!(
        report["server_cpu_us_per_delivered"].as_f64().unwrap() > 0.0,
        "{report}"
    );
}

/// A second process given the id of a live node exits at start with an error that says so; once
/// that node stopped gracefully (unregistering), the id starts again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_nodes_id_is_refused_until_it_stops() {
    if postgres_base_url().is_none() {
        return;
    }
    let database = FreshDatabase::create(Backend::Postgres).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (mut first, _) = start_node(&database.url, "node-a", &dirs[0]).await;

    let mut second = Command::new(common::BINARY)
        .args([
            "--node-id",
            "node-a",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dirs[1].path())
        .env("DATABASE_URL", &database.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = exited(&mut second, Duration::from_secs(30)).await;
    let output = second.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!status.success());
    assert!(said.contains("belongs to a live node"), "it said: {said}");

    first.stop().await;
    let (_again, port) = start_node(&database.url, "node-a", &dirs[2]).await;
    assert!(common::health_ok(port).await);
}

/// A node that stops gracefully ends only its own sessions and presence rows: a user of another
/// node stays ONLINE with their session open, and the stopped node's user is left with one
/// offline row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_leaves_the_other_nodes_rows_alone() {
    if postgres_base_url().is_none() {
        return;
    }
    let database = FreshDatabase::create(Backend::Postgres).await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (mut a, port_a) = start_node(&database.url, "node-a", &dirs[0]).await;
    let (_b, port_b) = start_node(&database.url, "node-b", &dirs[1]).await;
    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    let alice = user_on(port_a, "Alice").await;
    let _bob = user_on(port_b, "Bob").await;
    let limit = common::WAIT;
    wait_for_rows(&db, "node-a", [1, 1, 1, 1], limit).await;
    wait_for_rows(&db, "node-b", [1, 1, 1, 1], limit).await;

    a.stop().await;
    assert_eq!(rows_of(&db, "node-a").await, [0, 0, 0, 0]);
    assert_eq!(rows_of(&db, "node-b").await, [1, 1, 1, 1]);
    let left = format!(
        "SELECT COUNT(*) FROM users_online WHERE user_id = '{}' AND node_id = '' \
         AND status = 'offline'",
        alice.user_id()
    );
    assert_eq!(count(&db, &left).await, 1);
    db.close().await.unwrap();
}

/// A node that another took for dead (its registration removed, its rows cleaned, as after a
/// long stall) registers again at its next heartbeat and writes its sessions and its users'
/// presence rows again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_taken_for_dead_writes_its_rows_again() {
    if postgres_base_url().is_none() {
        return;
    }
    let database = FreshDatabase::create(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let (_a, port_a) = start_node(&database.url, "node-a", &dir).await;
    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    let alice = user_on(port_a, "Alice").await;
    let bob = user_on(port_a, "Bob").await;
    wait_for_rows(&db, "node-a", [1, 2, 2, 2], common::WAIT).await;

    // What a survivor's claim does.
    for sql in [
        "DELETE FROM nodes WHERE node_id = 'node-a'",
        "UPDATE sessions SET ended_at = now() WHERE node_id = 'node-a'",
        "DELETE FROM users_online WHERE node_id = 'node-a'",
    ] {
        db.execute_unprepared(sql).await.unwrap();
    }
    assert_eq!(rows_of(&db, "node-a").await, [0, 0, 0, 0]);
    wait_for_rows(&db, "node-a", [1, 2, 2, 2], common::WAIT).await;
    drop((alice, bob));
    db.close().await.unwrap();
}

/// A node killed with SIGKILL (no chance to clean up) is noticed once its heartbeats stop: one
/// survivor, and only one, claims it, ends its sessions and removes its users' presence rows,
/// while the survivors' own rows stay as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_cleaned_up_after_by_exactly_one_survivor() {
    if postgres_base_url().is_none() {
        return;
    }
    let database = FreshDatabase::create(Backend::Postgres).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (_a, port_a) = start_node(&database.url, "node-a", &dirs[0]).await;
    let (_b, port_b) = start_node(&database.url, "node-b", &dirs[1]).await;
    let (c, port_c) = start_node(&database.url, "node-c", &dirs[2]).await;
    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    let _alice = user_on(port_a, "Alice").await;
    let _bob = user_on(port_b, "Bob").await;
    let _carol = user_on(port_c, "Carol").await;
    let _dave = user_on(port_c, "Dave").await;
    let limit = common::WAIT;
    wait_for_rows(&db, "node-a", [1, 1, 1, 1], limit).await;
    wait_for_rows(&db, "node-b", [1, 1, 1, 1], limit).await;
    wait_for_rows(&db, "node-c", [1, 2, 2, 2], limit).await;

    c.signal("KILL");
    // Noticed after DEAD_AFTER of silence, by a survivor's next look (once a second); the rest
    // of the limit is room for a loaded machine.
    wait_for_rows(&db, "node-c", [0, 0, 0, 0], DEAD_AFTER + limit).await;
    assert_eq!(rows_of(&db, "node-a").await, [1, 1, 1, 1]);
    assert_eq!(rows_of(&db, "node-b").await, [1, 1, 1, 1]);
    let left_offline =
        "SELECT COUNT(*) FROM users_online WHERE node_id = '' AND status = 'offline'";
    assert_eq!(count(&db, left_offline).await, 2);
    // Both survivors keep looking; only one ever claims the dead node.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let claims = dead_nodes_cleaned(port_a).await + dead_nodes_cleaned(port_b).await;
    assert_eq!(claims, 1.0);
    db.close().await.unwrap();
}

/// Three nodes booting at once on an empty database all come up, and the migrations are applied
/// once: each node migrates under an advisory lock, so the later ones wait for the first and then
/// find nothing to do. Without it they raced to create the same tables and the losers exited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_booting_at_once_on_an_empty_database_all_come_up() {
    if postgres_base_url().is_none() {
        return;
    }
    for _ in 0..3 {
        let database = FreshDatabase::create(Backend::Postgres).await;
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let (a, b, c) = tokio::join!(
            start_node(&database.url, "node-a", &dirs[0]),
            start_node(&database.url, "node-b", &dirs[1]),
            start_node(&database.url, "node-c", &dirs[2]),
        );
        for (_, port) in [&a, &b, &c] {
            assert!(
                common::health_ok(*port).await,
                "node on {port} is not healthy"
            );
        }

        let db = sea_orm::Database::connect(&database.url).await.unwrap();
        let applied = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM seaql_migrations",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        assert_eq!(applied as usize, Migrator::migrations().len());
        db.close().await.unwrap();
    }
}
