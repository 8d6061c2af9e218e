//! Chat over the bidirectional stream: delivery, statuses, offline delivery, idempotency.

mod common;

use common::{ChatSession, TestServer, ack, authed, message, status};
use fastchat::proto::{MessageStatus, server_event::Event};
use fastchat::testing::{Backend, on_both_databases};

/// A sends, B receives; A sees SENT (ack), then DELIVERED, then READ once B marks it read.
async fn message_goes_sent_delivered_read(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;

    alice.send_message(&bob.user_id(), "m-1", "hello Bob").await;
    let acked = alice.next_where(ack).await;
    assert_eq!(acked.client_msg_id, "m-1");
    assert_eq!(acked.status(), MessageStatus::Sent);
    assert!(acked.seq > 0);

    let received = bob.next_where(message).await;
    assert_eq!(received.text, "hello Bob");
    assert_eq!(received.message_id, acked.message_id);
    assert_eq!(
        received.from_user_id,
        alice.user_id(),
        "the sender is the authenticated user"
    );
    assert_eq!(received.to_user_id, bob.user_id());

    let delivered = alice.next_where(status).await;
    assert_eq!(delivered.status(), MessageStatus::Delivered);
    assert_eq!(delivered.message_id, acked.message_id);
    assert_eq!(delivered.peer_user_id, bob.user_id());

    bob.send(fastchat::proto::client_event::Event::MarkRead(
        fastchat::proto::MarkReadRequest {
            peer_user_id: alice.user_id(),
            up_to_seq: received.seq,
        },
    ))
    .await;
    let read = alice.next_where(status).await;
    assert_eq!(read.status(), MessageStatus::Read);
    assert_eq!(read.seq, received.seq);
    assert_eq!(read.message_id, acked.message_id);
    server.stop().await;
}

/// Every session of the recipient gets the message, and the sender's other sessions see it too.
async fn every_session_of_both_users_sees_the_message(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let mut alice_phone = alice.again(&server).await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;
    let mut bob_tablet = bob.again(&server).await;
    let mut alice = alice;

    alice
        .send_message(&bob.user_id(), "m-1", "to all your devices")
        .await;
    let acked = alice.next_where(ack).await;
    for session in [&mut bob, &mut bob_tablet, &mut alice_phone] {
        let got = session.next_where(message).await;
        assert_eq!(got.message_id, acked.message_id);
    }
    // The sending session gets its ack, not an echo of its own message.
    alice
        .assert_none_where(std::time::Duration::from_millis(300), |e| {
            matches!(e, Event::Message(_))
        })
        .await;
    server.stop().await;
}

/// A message to someone offline is stored, acked SENT, and delivered on their next session,
/// after Welcome and the presence snapshot; the sender then sees DELIVERED.
async fn offline_recipient_gets_stored_messages_on_connect(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let bob = ChatSession::new_user(&server, "Bob").await;
    let (bob_id, bob_token) = (bob.user_id(), bob.token());
    drop(bob);
    wait_until_disconnected(&server, &bob_id).await;

    let mut acks = Vec::new();
    for (i, text) in ["first", "second", "third"].iter().enumerate() {
        alice.send_message(&bob_id, &format!("m-{i}"), text).await;
        let acked = alice.next_where(ack).await;
        assert_eq!(acked.status(), MessageStatus::Sent);
        acks.push(acked);
    }
    alice
        .assert_none_where(std::time::Duration::from_millis(300), |e| {
            matches!(e, Event::Status(_))
        })
        .await;

    let mut bob = ChatSession::open(
        &server,
        fastchat::proto::Hello {
            user_id: bob_id,
            token: bob_token,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let Event::Presence(snapshot) = bob.next().await.unwrap() else {
        panic!("snapshot must follow welcome")
    };
    assert!(matches!(
        snapshot.event,
        Some(fastchat::proto::presence_event::Event::Snapshot(_))
    ));
    let mut texts = Vec::new();
    for _ in 0..3 {
        let Event::Message(m) = bob.next().await.unwrap() else {
            panic!("stored messages come next")
        };
        texts.push(m.text);
    }
    assert_eq!(texts, ["first", "second", "third"], "oldest first");

    // DELIVERED covers every earlier message of the conversation: wait for the newest.
    let newest = acks.last().unwrap().seq;
    loop {
        let update = alice.next_where(status).await;
        assert_eq!(update.status(), MessageStatus::Delivered);
        assert!(update.seq <= newest);
        if update.seq == newest {
            assert_eq!(update.message_id, acks.last().unwrap().message_id);
            break;
        }
    }

    // Delivered once: a later session of Bob's does not get them again.
    let mut bob_again = bob.again(&server).await;
    bob_again
        .assert_none_where(std::time::Duration::from_millis(500), |e| {
            matches!(e, Event::Message(_))
        })
        .await;
    server.stop().await;
}

/// A retry with the same client_msg_id returns the same message and never stores or delivers it
/// twice, on the stream and through the unary call.
async fn retried_send_is_idempotent(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;

    alice.send_message(&bob.user_id(), "same-key", "once").await;
    let first = alice.next_where(ack).await;
    alice.send_message(&bob.user_id(), "same-key", "once").await;
    let second = alice.next_where(ack).await;
    assert_eq!(first.message_id, second.message_id);
    assert_eq!(first.seq, second.seq);

    // The same key for a different message is refused, not silently swallowed.
    alice
        .send_message(&bob.user_id(), "same-key", "something else")
        .await;
    let refused = alice
        .next_where(|e| match e {
            Event::Error(e) => Some(e),
            _ => None,
        })
        .await;
    assert_eq!(
        (
            refused.code.as_str(),
            refused.field.as_str(),
            refused.client_msg_id.as_str()
        ),
        ("INVALID_ARGUMENT", "send_message.client_msg_id", "same-key")
    );

    let mut client = server.chat().await.unwrap();
    let unary = client
        .send_message(authed(
            &alice.token(),
            fastchat::proto::SendMessageRequest {
                client_msg_id: "same-key".into(),
                to_user_id: bob.user_id(),
                text: "once".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unary.message_id, first.message_id);

    assert_eq!(bob.next_where(message).await.message_id, first.message_id);
    bob.assert_none_where(std::time::Duration::from_millis(500), |e| {
        matches!(e, Event::Message(_))
    })
    .await;

    let history = client
        .get_history(authed(
            &bob.token(),
            fastchat::proto::GetHistoryRequest {
                peer_user_id: alice.user_id(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.messages.len(), 1, "stored once");
    server.stop().await;
}

/// When the client closes its side right after sending, it still gets its acks, then the end.
async fn half_closed_stream_still_gets_its_acks(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let bob = ChatSession::new_user(&server, "Bob").await;
    for i in 0..5 {
        alice
            .send_message(&bob.user_id(), &format!("m-{i}"), "bye")
            .await;
    }
    let mut events = alice.close_sending();
    let mut acks = 0;
    loop {
        let next = tokio::time::timeout(common::WAIT, events.message())
            .await
            .expect("stream must end");
        match next.expect("the stream ends cleanly") {
            Some(event) => acks += usize::from(matches!(event.event, Some(Event::Ack(_)))),
            None => break,
        }
    }
    assert_eq!(acks, 5);
    server.stop().await;
}

/// An idle stream gets heartbeat events at the configured interval.
async fn idle_streams_get_heartbeats(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.heartbeat_interval_secs = 1).await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let started = std::time::Instant::now();
    for _ in 0..2 {
        alice
            .next_where(|e| match e {
                Event::Heartbeat(h) => Some(h),
                _ => None,
            })
            .await;
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(1500),
        "two heartbeats too soon: {elapsed:?}"
    );
    server.stop().await;
}

/// Waits until the server has no session of `user_id` left.
async fn wait_until_disconnected(server: &TestServer, user_id: &str) {
    let mut presence = server.presence().await.unwrap();
    common::within(common::WAIT, async {
        loop {
            let online = presence
                .list_online(fastchat::proto::ListOnlineRequest::default())
                .await
                .unwrap()
                .into_inner();
            let connected = online
                .users
                .iter()
                .any(|p| p.user.as_ref().unwrap().user_id == user_id && p.sessions > 0);
            if !connected {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// With a retention of 0 days nothing is kept: online recipients get messages live, offline ones
/// never, and history stays empty.
async fn retention_zero_keeps_no_history(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.retention_days = 0).await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;
    let carol = ChatSession::new_user(&server, "Carol").await;
    let carol_hello = fastchat::proto::Hello {
        user_id: carol.user_id(),
        token: carol.token(),
        ..Default::default()
    };
    drop(carol);
    wait_until_disconnected(&server, &carol_hello.user_id).await;

    alice
        .send_message(&bob.user_id(), "live", "for now only")
        .await;
    let first = alice.next_where(ack).await;
    assert_eq!(first.status(), MessageStatus::Sent);
    assert_eq!(bob.next_where(message).await.text, "for now only");
    assert_eq!(
        alice.next_where(status).await.status(),
        MessageStatus::Delivered
    );

    // The text is gone, but a retry is still recognised: same message, not delivered again.
    alice
        .send_message(&bob.user_id(), "live", "for now only")
        .await;
    let retry = alice.next_where(ack).await;
    assert_eq!(retry.message_id, first.message_id);
    bob.assert_none_where(std::time::Duration::from_millis(300), |e| {
        matches!(e, Event::Message(_))
    })
    .await;

    alice
        .send_message(&carol_hello.user_id, "offline", "you will not see this")
        .await;
    assert_eq!(alice.next_where(ack).await.status(), MessageStatus::Sent);

    let mut carol = ChatSession::open(&server, carol_hello).await.unwrap();
    carol
        .assert_none_where(std::time::Duration::from_millis(500), |e| {
            matches!(e, Event::Message(_))
        })
        .await;
    let mut client = server.chat().await.unwrap();
    let request = fastchat::proto::GetHistoryRequest {
        peer_user_id: bob.user_id(),
        ..Default::default()
    };
    let history = client
        .get_history(authed(&alice.token(), request))
        .await
        .unwrap()
        .into_inner();
    assert!(history.messages.is_empty(), "kept: {:?}", history.messages);
    server.stop().await;
}

/// A session that does not read is ended once its bounded queue is full, with
/// RESOURCE_EXHAUSTED: it got its queue and what the transport buffers, far from everything sent.
/// Nothing acknowledged is lost: every message is stored, exactly those it did not get stay
/// undelivered, and they come on its next session, each once.
async fn slow_consumer_is_dropped_without_losing_messages(backend: Backend) {
    use fastchat::db::ids::{Seq, UserId};
    use fastchat::db::tables::{chat_messages, conversation_members};
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    const COUNT: usize = 3000;
    const QUEUE: usize = 256;
    let server = TestServer::start_with(backend, |c| c.session_queue = QUEUE as u64).await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    // Small HTTP/2 windows, so the client's buffers fill long before the server's queue.
    let narrow = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .initial_stream_window_size(16 * 1024)
        .initial_connection_window_size(16 * 1024)
        .connect()
        .await
        .unwrap();
    let hello = fastchat::proto::Hello {
        display_name: "Bob".into(),
        ..Default::default()
    };
    let mut bob = ChatSession::open_on(narrow, hello).await.unwrap();
    // Bob reads nothing while Alice sends (and reads her acks).
    let sender = alice.sender();
    let bob_id = bob.user_id();
    tokio::spawn(async move {
        for i in 0..COUNT {
            let request = fastchat::proto::SendMessageRequest {
                client_msg_id: format!("m-{i}"),
                to_user_id: bob_id.clone(),
                text: format!("message {i:05} {}", "x".repeat(1000)),
                ..Default::default()
            };
            let event = fastchat::proto::client_event::Event::SendMessage(request);
            let _ = sender
                .send(fastchat::proto::ClientEvent { event: Some(event) })
                .await;
        }
    });
    let mut acked = 0;
    while acked < COUNT {
        alice.next_where(ack).await;
        acked += 1;
    }

    let mut received = std::collections::HashSet::new();
    let ended = loop {
        match bob.next().await {
            Ok(Event::Message(m)) => {
                assert!(received.insert(m.seq), "seq {} came twice", m.seq);
            }
            Ok(_) => {}
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), tonic::Code::ResourceExhausted, "{ended:?}");
    // Its queue, plus the few dozen messages HTTP/2 and tonic buffer on the way.
    assert!(
        received.len() <= 2 * QUEUE,
        "the server held {} events for a session with a queue of {QUEUE}",
        received.len()
    );

    let db = server.db().await;
    let id = |user: String| UserId(uuid::Uuid::parse_str(&user).unwrap());
    let (alice_id, bob_id) = (id(alice.user_id()), id(bob.user_id()));
    let to_bob =
        || chat_messages::Entity::find().filter(chat_messages::Column::RecipientId.eq(bob_id));
    assert_eq!(to_bob().count(&db).await.unwrap(), COUNT as u64);
    let missed = (COUNT - received.len()) as u64;
    // Deliveries are recorded in batches, shortly after the session took them.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let delivered_mark = conversation_members::Entity::find_by_id((bob_id, alice_id))
            .one(&db)
            .await
            .unwrap()
            .map_or(Seq::ZERO, |bob| bob.delivered_up_to_seq);
        let undelivered = to_bob()
            .filter(chat_messages::Column::Seq.gt(delivered_mark))
            .count(&db)
            .await
            .unwrap();
        if undelivered == missed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{undelivered} messages are stored as undelivered; Bob missed {missed}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let mut bob_again = bob.again(&server).await;
    while received.len() < COUNT {
        let m = bob_again.next_where(message).await;
        assert!(received.insert(m.seq), "seq {} came twice", m.seq);
    }
    server.stop().await;
}

on_both_databases!(
    half_closed_stream_still_gets_its_acks,
    idle_streams_get_heartbeats,
    retention_zero_keeps_no_history,
    slow_consumer_is_dropped_without_losing_messages,
    message_goes_sent_delivered_read,
    every_session_of_both_users_sees_the_message,
    offline_recipient_gets_stored_messages_on_connect,
    retried_send_is_idempotent,
);
