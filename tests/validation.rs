//! Bad input: every invalid field gets INVALID_ARGUMENT naming it (a BadRequest detail on unary
//! calls, an ErrorEvent on streams, which go on), unknown users NOT_FOUND, oversize requests refused.

mod common;

use std::time::Duration;

use common::{ChatSession, TestServer, authed, bad_field};
use fastchat::proto::{
    ClientEvent, ErrorEvent, GetHistoryRequest, Hello, MarkReadRequest, Ping, Pong,
    SendMessageRequest, SetTypingRequest, client_event, server_event::Event,
};
use fastchat::testing::{Backend, on_both_databases};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

fn error(event: Event) -> Option<ErrorEvent> {
    match event {
        Event::Error(e) => Some(e),
        _ => None,
    }
}

/// Each bad send on a stream gets an ErrorEvent with the code, the field and the client_msg_id,
/// and the stream keeps working.
async fn bad_sends_on_a_stream_get_error_events(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let bob = ChatSession::new_user(&server, "Bob").await;
    let (me, peer) = (alice.user_id(), bob.user_id());
    let nobody = uuid::Uuid::new_v4().to_string();
    let long = "x".repeat(4001);

    let cases: Vec<(&str, &str, &str, &str, &str)> = vec![
        // (client_msg_id, to, text, code, field)
        (
            "c-empty",
            &peer,
            "",
            "INVALID_ARGUMENT",
            "send_message.text",
        ),
        (
            "c-blank",
            &peer,
            "  \n ",
            "INVALID_ARGUMENT",
            "send_message.text",
        ),
        (
            "c-long",
            &peer,
            &long,
            "INVALID_ARGUMENT",
            "send_message.text",
        ),
        (
            "c-nul",
            &peer,
            "a\0b",
            "INVALID_ARGUMENT",
            "send_message.text",
        ),
        (
            "c-uuid",
            "not-a-uuid",
            "hi",
            "INVALID_ARGUMENT",
            "send_message.to_user_id",
        ),
        (
            "c-self",
            &me,
            "hi",
            "INVALID_ARGUMENT",
            "send_message.to_user_id",
        ),
        ("c-nobody", &nobody, "hi", "NOT_FOUND", ""),
        (
            "",
            &peer,
            "hi",
            "INVALID_ARGUMENT",
            "send_message.client_msg_id",
        ),
    ];
    for (client_msg_id, to, text, code, field) in cases {
        alice.send_message(to, client_msg_id, text).await;
        let event = alice.next_where(error).await;
        assert_eq!(event.code, code, "{client_msg_id}: {event:?}");
        assert_eq!(event.field, field, "{client_msg_id}");
        assert_eq!(event.client_msg_id, client_msg_id);
        assert!(!event.message.is_empty());
    }

    // Other malformed events: an empty one, a second hello, bad typing and read-mark fields.
    let malformed = [
        (None, "event"),
        (Some(client_event::Event::Hello(Hello::default())), "hello"),
        (
            Some(client_event::Event::Typing(SetTypingRequest {
                to_user_id: "nope".into(),
                is_typing: true,
            })),
            "typing.to_user_id",
        ),
        (
            Some(client_event::Event::MarkRead(MarkReadRequest {
                peer_user_id: peer.clone(),
                up_to_seq: u64::MAX,
            })),
            "mark_read.up_to_seq",
        ),
    ];
    for (event, field) in malformed {
        match event {
            Some(event) => alice.send(event).await,
            None => alice.send_raw(ClientEvent { event: None }).await,
        }
        let error = alice.next_where(error).await;
        assert_eq!(
            (error.code.as_str(), error.field.as_str()),
            ("INVALID_ARGUMENT", field)
        );
    }

    // The stream is still alive and a good message still goes through.
    alice
        .send(client_event::Event::Ping(Ping { nonce: 42 }))
        .await;
    let pong = alice
        .next_where(|e| match e {
            Event::Pong(p) => Some(p),
            _ => None,
        })
        .await;
    assert_eq!(pong.nonce, 42);
    alice.send_message(&peer, "c-good", "fine").await;
    alice
        .next_where(|e| match e {
            Event::Ack(a) => Some(a),
            _ => None,
        })
        .await;
    server.stop().await;
}

/// Unary calls answer bad fields with INVALID_ARGUMENT and a BadRequest naming the field.
async fn bad_unary_requests_name_the_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let bob = ChatSession::new_user(&server, "Bob").await;
    let mut client = server.chat().await.unwrap();
    let token = alice.token();

    let send = |client_msg_id: &str, to: &str, text: &str| SendMessageRequest {
        client_msg_id: client_msg_id.into(),
        to_user_id: to.into(),
        text: text.into(),
        ..Default::default()
    };
    let status = client
        .send_message(authed(&token, send("a", &bob.user_id(), "")))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), bad_field(&status)),
        (Code::InvalidArgument, "text".to_owned())
    );
    let status = client
        .send_message(authed(&token, send("a", "xyz", "hi")))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), bad_field(&status)),
        (Code::InvalidArgument, "to_user_id".to_owned())
    );
    let nobody = uuid::Uuid::new_v4().to_string();
    let status = client
        .send_message(authed(&token, send("a", &nobody, "hi")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let history = |limit: u32, before_seq: u64| GetHistoryRequest {
        peer_user_id: bob.user_id(),
        before_seq,
        limit,
    };
    let status = client
        .get_history(authed(&token, history(101, 0)))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), bad_field(&status)),
        (Code::InvalidArgument, "limit".to_owned())
    );
    let status = client
        .get_history(authed(&token, history(10, u64::MAX)))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), bad_field(&status)),
        (Code::InvalidArgument, "before_seq".to_owned())
    );
    assert!(
        client
            .get_history(authed(&token, history(100, 0)))
            .await
            .is_ok()
    );
    server.stop().await;
}

/// Hello fields are checked: display names of 1 to 50 characters without control characters,
/// UUID user ids, and a display name to claim a new id with.
async fn bad_hellos_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let cases = [
        (String::new(), "x".repeat(51), "hello.display_name"),
        (
            String::new(),
            "bad\u{7}bell".to_owned(),
            "hello.display_name",
        ),
        ("not-a-uuid".to_owned(), "Ann".to_owned(), "hello.user_id"),
        (String::new(), "   ".to_owned(), "hello.display_name"),
    ];
    for (user_id, display_name, field) in cases {
        let hello = Hello {
            user_id,
            display_name,
            token: String::new(),
            ..Default::default()
        };
        let status = ChatSession::open(&server, hello)
            .await
            .err()
            .expect("hello must be refused");
        assert_eq!(
            (status.code(), bad_field(&status)),
            (Code::InvalidArgument, field.to_owned())
        );
    }
    // 50 characters after trimming is fine.
    let hello = Hello {
        display_name: format!("  {}  ", "é".repeat(50)),
        ..Default::default()
    };
    let session = ChatSession::open(&server, hello).await.unwrap();
    assert_eq!(session.welcome.user.unwrap().display_name, "é".repeat(50));
    server.stop().await;
}

/// A stream must start with a hello within the hello timeout.
async fn streams_must_start_with_a_timely_hello(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.hello_timeout_secs = 1).await;
    let mut client = server.chat().await.unwrap();

    let (tx, rx) = tokio::sync::mpsc::channel::<ClientEvent>(4);
    let started = std::time::Instant::now();
    let status = client
        .chat(ReceiverStream::new(rx))
        .await
        .expect_err("silent stream must fail");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(started.elapsed() >= Duration::from_millis(900));
    drop(tx);

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(ClientEvent {
        event: Some(client_event::Event::Ping(Ping { nonce: 1 })),
    })
    .await
    .unwrap();
    let status = client
        .chat(ReceiverStream::new(rx))
        .await
        .expect_err("ping first must fail");
    assert_eq!(status.code(), Code::InvalidArgument);
    server.stop().await;
}

/// Requests over 64 KiB are refused before they are decoded; the server keeps serving.
async fn oversize_requests_are_refused(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.max_message_chars = 16_000).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let bob = ChatSession::new_user(&server, "Bob").await;
    let mut client = server.chat().await.unwrap();
    let request = SendMessageRequest {
        client_msg_id: "huge".into(),
        to_user_id: bob.user_id(),
        text: "x".repeat(70 * 1024),
        ..Default::default()
    };
    let status = client
        .send_message(authed(&alice.token(), request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");

    let request = SendMessageRequest {
        client_msg_id: "fits".into(),
        to_user_id: bob.user_id(),
        text: "x".repeat(16_000),
        ..Default::default()
    };
    client
        .send_message(authed(&alice.token(), request))
        .await
        .expect("a large but allowed message");

    // On a stream, an oversize event ends the stream with the same status.
    let mut stream = alice;
    stream
        .send_message(&bob.user_id(), "huge", &"x".repeat(70 * 1024))
        .await;
    let ended = stream
        .final_status()
        .await
        .expect("the stream must end with a status");
    assert_eq!(ended.code(), Code::OutOfRange, "{ended:?}");
    server.stop().await;
}

/// A frame that is not a ClientEvent at all gets an ErrorEvent; the stream goes on.
async fn undecodable_frames_get_an_error_event(backend: Backend) {
    use prost::Message;
    let server = TestServer::start(backend).await;
    let mut grpc = tonic::client::Grpc::new(server.channel().await.unwrap());
    grpc.ready().await.unwrap();
    let event = |event| ClientEvent { event: Some(event) }.encode_to_vec();
    let hello = client_event::Event::Hello(Hello {
        display_name: "Raw".into(),
        ..Default::default()
    });
    let frames = vec![
        event(hello),
        vec![0xff, 0xff, 0xff, 0xff],
        event(client_event::Event::Ping(Ping { nonce: 9 })),
    ];
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    for frame in frames {
        tx.send(frame).await.unwrap();
    }
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/fastchat.v1.ChatService/Chat");
    let mut stream = grpc
        .streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            path,
            common::RawCodec,
        )
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let next = tokio::time::timeout(common::WAIT, stream.message())
            .await
            .unwrap()
            .unwrap();
        let event = next.expect("stream ended early").event.unwrap();
        // The user's own ONLINE change may come at any point after the snapshot.
        if seen.len() >= 2 && matches!(event, Event::Presence(_)) {
            continue;
        }
        seen.push(event);
    }
    assert!(matches!(seen[0], Event::Welcome(_)));
    assert!(matches!(seen[1], Event::Presence(_)));
    let Event::Error(error) = &seen[2] else {
        panic!("expected an error event, got {:?}", seen[2])
    };
    assert_eq!(
        (error.code.as_str(), error.field.as_str()),
        ("INVALID_ARGUMENT", "event")
    );
    assert!(
        matches!(seen[3], Event::Pong(Pong { nonce: 9, .. })),
        "the stream goes on"
    );
    drop(tx);
    server.stop().await;
}

on_both_databases!(
    undecodable_frames_get_an_error_event,
    bad_sends_on_a_stream_get_error_events,
    bad_unary_requests_name_the_field,
    bad_hellos_are_refused,
    streams_must_start_with_a_timely_hello,
    oversize_requests_are_refused,
);
