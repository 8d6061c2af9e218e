//! Chat over the bidirectional stream: delivery, statuses, offline delivery, idempotency.

mod common;

use common::{Backend, ChatSession, TestServer, authed};
use fastchat::proto::{
    ChatMessage, MessageStatus, SendMessageResponse, StatusUpdate, server_event::Event,
};

fn message(event: Event) -> Option<ChatMessage> {
    match event {
        Event::Message(m) => Some(m),
        _ => None,
    }
}

fn ack(event: Event) -> Option<SendMessageResponse> {
    match event {
        Event::Ack(a) => Some(a),
        _ => None,
    }
}

fn status(event: Event) -> Option<StatusUpdate> {
    match event {
        Event::Status(s) => Some(s),
        _ => None,
    }
}

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

    for (i, text) in ["first", "second", "third"].iter().enumerate() {
        alice.send_message(&bob_id, &format!("m-{i}"), text).await;
        assert_eq!(alice.next_where(ack).await.status(), MessageStatus::Sent);
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

    let mut delivered = Vec::new();
    while delivered.len() < 3 {
        let update = alice.next_where(status).await;
        assert_eq!(update.status(), MessageStatus::Delivered);
        delivered.push(update.seq);
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

    let mut client = server.chat().await.unwrap();
    let unary = client
        .send_message(authed(
            &alice.token(),
            fastchat::proto::SendMessageRequest {
                client_msg_id: "same-key".into(),
                to_user_id: bob.user_id(),
                text: "once".into(),
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

on_both_databases!(
    message_goes_sent_delivered_read,
    every_session_of_both_users_sees_the_message,
    offline_recipient_gets_stored_messages_on_connect,
    retried_send_is_idempotent,
);
