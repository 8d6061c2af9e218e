//! The hot path, so a slowdown shows up in review: encoding and decoding events, fanning one
//! message out to a session through the hub, and one message from send to ack and recipient
//! (group commit on the embedded SQLite included).
//!
//! `cargo bench --bench hot_path`; the figures of the last run are in BENCHMARKS.md.

use std::{hint::black_box, sync::Arc, time::Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use fastchat::{
    config::Config,
    db::{Database, NewMessage},
    hub::{FanOut, Hub, HubConfig, SessionKind, SessionStream},
    identity::{AuthUser, Claim, Identity},
    metrics::{Metrics, Transport},
    pipeline::AckTo,
    proto::{
        ChatMessage, ClientEvent, SendMessageRequest, ServerEvent, client_event,
        server_event::Event,
    },
};
use prost::Message;
use tokio::{runtime::Runtime, sync::oneshot};
use tokio_stream::StreamExt;

/// A message of a typical size (100 bytes of text).
fn chat_event() -> ServerEvent {
    ServerEvent {
        event: Some(Event::Message(ChatMessage {
            message_id: uuid::Uuid::now_v7().to_string(),
            from_user_id: uuid::Uuid::new_v4().to_string(),
            to_user_id: uuid::Uuid::new_v4().to_string(),
            text: "x".repeat(100),
            seq: 123_456,
            client_msg_id: "c-123456".into(),
            ..Default::default()
        })),
    }
}

fn codec(c: &mut Criterion) {
    let event = chat_event();
    c.bench_function("encode ServerEvent message (100 B text)", |b| {
        b.iter(|| black_box(&event).encode_to_vec())
    });
    let send = ClientEvent {
        event: Some(client_event::Event::SendMessage(SendMessageRequest {
            to_user_id: uuid::Uuid::new_v4().to_string(),
            client_msg_id: "c-1".into(),
            text: "x".repeat(100),
            ..Default::default()
        })),
    }
    .encode_to_vec();
    c.bench_function("decode ClientEvent send_message (100 B text)", |b| {
        b.iter(|| ClientEvent::decode(black_box(send.as_slice())).unwrap())
    });
}

/// A hub on a fresh SQLite database with two users, Bob holding one chat session.
struct Fixture {
    hub: Arc<Hub>,
    alice: AuthUser,
    bob: AuthUser,
    bob_session: SessionStream,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let db = Database::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    let identity = Identity::new(db.clone(), None, None);
    let claim = |name: &str| Claim {
        display_name: Some(name.to_owned()),
        ..Default::default()
    };
    let new_user = async |name| {
        let resolved = identity.resolve(claim(name), "").await.unwrap();
        identity.admit(resolved).await.unwrap().0
    };
    let alice = new_user("Alice").await;
    let bob = new_user("Bob").await;
    let config = HubConfig::from(&Config::from_env());
    let hub = Hub::start(db, config, Arc::new(Metrics::new()), None);
    let mut bob_session = hub
        .open_session(
            Some(&bob),
            SessionKind::Chat,
            Transport::Grpc,
            String::new(),
            false,
            None,
        )
        .await
        .unwrap();
    // Welcome and the presence snapshot.
    bob_session.next().await.unwrap().unwrap();
    bob_session.next().await.unwrap().unwrap();
    Fixture {
        hub,
        alice,
        bob,
        bob_session,
        _dir: dir,
    }
}

/// The next chat message a session receives, skipping presence and status events.
async fn next_message(session: &mut SessionStream) -> ChatMessage {
    loop {
        let event = session.next().await.unwrap().unwrap();
        if let Some(Event::Message(message)) = event.event {
            return message;
        }
    }
}

fn hub(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let mut fx = rt.block_on(fixture());
    let event = chat_event();
    let bob = fx.bob.id;

    c.bench_function("hub: publish to a user's session and receive it", |b| {
        b.iter(|| {
            rt.block_on(async {
                fx.hub.publish_to_user(bob, event.clone());
                next_message(&mut fx.bob_session).await
            })
        })
    });

    let mut n = 0u64;
    let mut group = c.benchmark_group("hub");
    group.sample_size(30);
    group.bench_function(
        "send_message: commit on SQLite, ack, and the recipient's copy",
        |b| {
            b.iter(|| {
                n += 1;
                rt.block_on(async {
                    let (ack_tx, ack_rx) = oneshot::channel();
                    let message = NewMessage::new(
                        fx.alice.id,
                        fx.bob.id,
                        format!("bench-{n}"),
                        "x".repeat(100),
                    );
                    fx.hub
                        .pipeline()
                        .send_message(message, Instant::now(), AckTo::Caller(ack_tx))
                        .await
                        .unwrap();
                    ack_rx.await.unwrap().unwrap();
                    next_message(&mut fx.bob_session).await
                })
            })
        },
    );
    group.finish();
}

criterion_group!(benches, codec, hub);
criterion_main!(benches);
