//! Graceful shutdown: streams end with UNAVAILABLE, the node's sessions are marked ended and its
//! users offline, new connections are refused, and acknowledged messages survive a restart.

mod common;

use std::time::Duration;

use common::{ChatSession, TestServer, WAIT, authed, within};
use fastchat::testing::{Backend, FreshDatabase, on_both_databases};
use fastchat::{
    db::tables::{sessions, users_online},
    proto::{GetHistoryRequest, Hello, PresenceUpdate, SubscribeRequest, WatchPresenceRequest},
};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming, transport::Channel};

/// The spec's bound on a graceful shutdown.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

/// Reads a stream to its end and returns its final status.
async fn final_status<T>(stream: &mut Streaming<T>) -> Option<Status> {
    loop {
        match tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("presence stream did not end")
        {
            Ok(Some(_)) => continue,
            Ok(None) => return None,
            Err(status) => return Some(status),
        }
    }
}

/// Polls `check` until it holds (presence write-through is asynchronous).
async fn eventually<F>(what: &str, mut check: impl FnMut() -> F)
where
    F: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never saw {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sessions of `node` still open in the database.
async fn open_sessions(db: &DatabaseConnection, node: &str) -> u64 {
    sessions::Entity::find()
        .filter(sessions::Column::NodeId.eq(node))
        .filter(sessions::Column::EndedAt.is_null())
        .count(db)
        .await
        .unwrap()
}

/// Users `users_online` shows ONLINE or AWAY.
async fn users_shown_present(db: &DatabaseConnection) -> u64 {
    users_online::Entity::find()
        .filter(users_online::Column::Status.ne("offline"))
        .count(db)
        .await
        .unwrap()
}

/// Stopping the server ends every open stream (Chat, Subscribe, WatchPresence, Presence) with
/// UNAVAILABLE within 10 s, refuses new connections, and leaves the database with this node's
/// sessions ended and nobody online.
async fn shutdown_ends_streams_and_marks_sessions_offline(backend: Backend) {
    let database = FreshDatabase::create(backend).await;
    let server = TestServer::start_on(&database.url, |_| {}).await;
    let node = common::test_config().node_id;
    let db = sea_orm::Database::connect(&database.url).await.unwrap();

    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;
    let mut watcher = server
        .presence()
        .await
        .unwrap()
        .watch_presence(WatchPresenceRequest::default())
        .await
        .unwrap()
        .into_inner();
    let (_updates, updates_rx) = mpsc::channel::<PresenceUpdate>(1);
    let mut presence = server
        .presence()
        .await
        .unwrap()
        .presence(authed(&bob.token(), ReceiverStream::new(updates_rx)))
        .await
        .unwrap()
        .into_inner();
    let mut subscribed = server
        .chat()
        .await
        .unwrap()
        .subscribe(SubscribeRequest {
            hello: Some(Hello {
                user_id: alice.user_id(),
                token: alice.token(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    // Both the hub and the database know everyone is here before the shutdown.
    watcher.message().await.unwrap().expect("snapshot");
    presence.message().await.unwrap().expect("snapshot");
    subscribed.message().await.unwrap().expect("welcome");
    eventually("four open sessions", || async {
        open_sessions(&db, &node).await == 4
    })
    .await;
    eventually("both users online", || async {
        users_shown_present(&db).await == 2
    })
    .await;

    let url = server.url();
    let took = within(SHUTDOWN_LIMIT + Duration::from_secs(5), server.stop()).await;
    assert!(took < SHUTDOWN_LIMIT, "shutdown took {took:?}");

    for (name, status) in [
        ("alice's chat", alice.final_status().await),
        ("bob's chat", bob.final_status().await),
        ("the watcher", final_status(&mut watcher).await),
        ("bob's presence stream", final_status(&mut presence).await),
        ("alice's subscription", final_status(&mut subscribed).await),
    ] {
        let status = status.unwrap_or_else(|| panic!("{name} ended without a status"));
        assert_eq!(status.code(), Code::Unavailable, "{name}: {status:?}");
    }

    let reconnect = tokio::time::timeout(WAIT, Channel::from_shared(url).unwrap().connect())
        .await
        .expect("connecting to a stopped server should fail fast");
    assert!(
        reconnect.is_err(),
        "the stopped server accepted a connection"
    );

    assert_eq!(open_sessions(&db, &node).await, 0, "sessions left open");
    let ended = sessions::Entity::find()
        .filter(sessions::Column::NodeId.eq(node.as_str()))
        .count(&db)
        .await
        .unwrap();
    assert_eq!(ended, 4);
    assert_eq!(users_shown_present(&db).await, 0, "users left online");
    db.close().await.ok();
}

/// A message acknowledged before the shutdown is in the history after a restart on the same
/// database, and is delivered to its offline recipient by the new server.
async fn acknowledged_message_survives_restart(backend: Backend) {
    let database = FreshDatabase::create(backend).await;
    let server = TestServer::start_on(&database.url, |_| {}).await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let bob = ChatSession::new_user(&server, "Bob").await;
    let (bob_id, bob_token) = (bob.user_id(), bob.token());
    drop(bob);

    alice
        .send_message(&bob_id, "before-shutdown", "still here?")
        .await;
    let ack = alice
        .next_where(|e| match e {
            fastchat::proto::server_event::Event::Ack(ack) => Some(ack),
            fastchat::proto::server_event::Event::Error(err) => panic!("send failed: {err:?}"),
            _ => None,
        })
        .await;
    let took = server.stop().await;
    assert!(took < SHUTDOWN_LIMIT, "shutdown took {took:?}");

    let server = TestServer::start_on(&database.url, |_| {}).await;
    let history = server
        .chat()
        .await
        .unwrap()
        .get_history(authed(
            &alice.token(),
            GetHistoryRequest {
                peer_user_id: bob_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("the token still works after the restart")
        .into_inner();
    assert_eq!(history.messages.len(), 1);
    let stored = &history.messages[0];
    assert_eq!(stored.message_id, ack.message_id);
    assert_eq!(stored.seq, ack.seq);
    assert_eq!(stored.text, "still here?");
    assert_eq!(stored.from_user_id, alice.user_id());

    let mut bob = ChatSession::open(
        &server,
        Hello {
            user_id: bob_id,
            token: bob_token,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let delivered = bob
        .next_where(|e| match e {
            fastchat::proto::server_event::Event::Message(m) => Some(m),
            _ => None,
        })
        .await;
    assert_eq!(delivered.message_id, ack.message_id);
    server.stop().await;
}

on_both_databases!(
    shutdown_ends_streams_and_marks_sessions_offline,
    acknowledged_message_survives_restart,
);

/// A `grpc.health.v1.Health/Watch` stream is an open stream too: the shutdown ends it (cleanly,
/// or with UNAVAILABLE) instead of leaving it open after `run` has returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_health_watch_streams() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let server = TestServer::start(Backend::Sqlite).await;
    let mut health = HealthClient::new(server.channel().await.unwrap());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(WAIT, watch.message())
        .await
        .expect("no first health status")
        .unwrap()
        .unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    let took = within(SHUTDOWN_LIMIT + Duration::from_secs(5), server.stop()).await;
    assert!(took < SHUTDOWN_LIMIT, "shutdown took {took:?}");
    loop {
        match tokio::time::timeout(WAIT, watch.message()).await {
            Err(_) => panic!("the health watch stream outlived the server by {WAIT:?}"),
            // (A NOT_SERVING update before the end is what a draining server should send.)
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => break,
            Ok(Err(status)) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                break;
            }
        }
    }
}
