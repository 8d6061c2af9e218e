//! Typing indicators: forwarded on change, ended by the server after the timeout, on send and on
//! disconnect.

mod common;

use std::time::{Duration, Instant};

use common::{ChatSession, TestServer, authed};
use fastchat::proto::{SetTypingRequest, TypingEvent, client_event, server_event::Event};
use fastchat::testing::{Backend, on_both_databases};

fn typing(event: Event) -> Option<TypingEvent> {
    match event {
        Event::Typing(t) => Some(t),
        _ => None,
    }
}

async fn start_typing(session: &ChatSession, to: &str) {
    session
        .send(client_event::Event::Typing(SetTypingRequest {
            to_user_id: to.to_owned(),
            is_typing: true,
        }))
        .await;
}

/// The peer sees typing start once (a refresh is not resent) and the server ends it by itself
/// after the timeout.
async fn typing_reaches_peer_and_expires(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.typing_timeout_ms = 1000).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;

    start_typing(&alice, &bob.user_id()).await;
    let started = bob.next_where(typing).await;
    let since = Instant::now();
    assert!(started.is_typing);
    assert_eq!(started.from_user_id, alice.user_id());

    start_typing(&alice, &bob.user_id()).await; // a refresh: extends, not repeated
    let stopped = bob.next_where(typing).await;
    assert!(!stopped.is_typing, "a refresh must not send a second start");
    let after = since.elapsed();
    assert!(
        after >= Duration::from_millis(900),
        "ended too early: {after:?}"
    );
    server.stop().await;
}

/// Sending a message ends the sender's typing at once.
async fn sending_a_message_ends_typing(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.typing_timeout_ms = 60_000).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;

    start_typing(&alice, &bob.user_id()).await;
    assert!(bob.next_where(typing).await.is_typing);
    alice
        .send_message(&bob.user_id(), "m-1", "done typing")
        .await;
    let stopped = bob.next_where(typing).await;
    assert!(!stopped.is_typing);
    assert!(
        matches!(bob.next().await.unwrap(), Event::Message(_)),
        "the message follows"
    );
    server.stop().await;
}

/// The typist's session ending ends its typing.
async fn disconnecting_ends_typing(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.typing_timeout_ms = 60_000).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;

    start_typing(&alice, &bob.user_id()).await;
    assert!(bob.next_where(typing).await.is_typing);
    drop(alice);
    assert!(!bob.next_where(typing).await.is_typing);
    server.stop().await;
}

/// Browsers use the unary call; stopping explicitly sends the end at once.
async fn unary_set_typing_starts_and_stops(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.typing_timeout_ms = 60_000).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;
    let mut client = server.chat().await.unwrap();

    for is_typing in [true, false] {
        let request = SetTypingRequest {
            to_user_id: bob.user_id(),
            is_typing,
        };
        client
            .set_typing(authed(&alice.token(), request))
            .await
            .unwrap();
        let event = bob.next_where(typing).await;
        assert_eq!(event.is_typing, is_typing);
        assert_eq!(event.from_user_id, alice.user_id());
    }
    server.stop().await;
}

on_both_databases!(
    typing_reaches_peer_and_expires,
    sending_a_message_ends_typing,
    disconnecting_ends_typing,
    unary_set_typing_starts_and_stops,
);
