//! Fuzzed input, property-based (proptest), at two levels:
//!
//! - in process: arbitrary bytes and arbitrary `ClientEvent`s through the server's own decoder
//!   ([`fastchat::codec::decode_lenient`], what `LenientDecoder` runs on every frame);
//! - against the real server: one server and one Chat stream per property, fed arbitrary frames
//!   (raw bytes, mangled encodings, arbitrary events). Every frame gets its answer (a pong, an ack,
//!   or an ErrorEvent with a code, and a field for INVALID_ARGUMENT), or none when it was a valid
//!   silent event; a Ping after it still gets its Pong; `/health` still answers at the end.
//!
//! Each property runs `PROPTEST_CASES` cases (proptest's default, 256); the field checks have
//! their own properties beside them in `server/api/validate.rs`.

mod common;

use std::{cell::RefCell, time::Duration};

use common::{ChatSession, RawCodec, TestServer, http_get};
use fastchat::testing::Backend;
use fastchat::{
    codec::decode_lenient,
    proto::{
        ClientEvent, Hello, MarkReadRequest, Ping, PresenceStatus, PresenceUpdate,
        SendMessageRequest, ServerEvent, SetTypingRequest, client_event::Event as E,
        server_event::Event,
    },
};
use proptest::{prelude::*, sample::Index, test_runner::Config};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};
use tonic_types::StatusExt;

// --- Strategies ----------------------------------------------------------------------------

/// Strings for any field: the ids of real users (`known`), UUIDs of nobody, near-UUIDs,
/// arbitrary Unicode, blanks and control characters, and runs around the 4,000-character limit.
fn field_string(known: Vec<String>) -> BoxedStrategy<String> {
    prop_oneof![
        3 => proptest::sample::select(known),
        1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        1 => "[0-9a-fA-F{}-]{0,40}",
        1 => any::<String>(),
        1 => "[ \t\r\n\u{0}\u{7}\u{1b}\u{7f}\u{85}\u{2028}]{0,6}",
        1 => ("\\PC{0,20}", "[\u{0}-\u{1f}\u{7f}-\u{9f}]", "\\PC{0,20}")
            .prop_map(|(before, control, after)| format!("{before}{control}{after}")),
        1 => (any::<char>(), 3990..4010usize).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
    .boxed()
}

/// Numbers with their edges: zero, the largest seq the database holds and one past it, the top.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(i64::MAX as u64),
        Just(i64::MAX as u64 + 1),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

/// Any `ClientEvent`, empty ones included, with fields from [`field_string`].
fn client_event(known: Vec<String>) -> impl Strategy<Value = ClientEvent> {
    let text = field_string(known);
    // Keys from a small set often repeat, which reaches the idempotency checks.
    let client_msg_id = prop_oneof![2 => "[a-c0-9]{1,2}", 1 => text.clone()];
    let event = prop_oneof![
        1 => (text.clone(), text.clone(), text.clone()).prop_map(|(user_id, display_name, token)| {
            E::Hello(Hello {
                user_id,
                display_name,
                token,
                ..Default::default()
            })
        }),
        3 => (client_msg_id, text.clone(), text.clone()).prop_map(
            |(client_msg_id, to_user_id, text)| {
                E::SendMessage(SendMessageRequest {
                    client_msg_id,
                    to_user_id,
                    text,
                    ..Default::default()
                })
            }
        ),
        1 => (text.clone(), any::<bool>()).prop_map(|(to_user_id, is_typing)| {
            E::Typing(SetTypingRequest {
                to_user_id,
                is_typing,
            })
        }),
        1 => (text, number()).prop_map(|(peer_user_id, up_to_seq)| {
            E::MarkRead(MarkReadRequest {
                peer_user_id,
                up_to_seq,
            })
        }),
        1 => number().prop_map(|nonce| E::Ping(Ping { nonce })),
        1 => prop_oneof![-1..=3, any::<i32>()]
            .prop_map(|status| E::Presence(PresenceUpdate { status })),
    ];
    proptest::option::weighted(0.95, event).prop_map(|event| ClientEvent { event })
}

/// The bytes of one frame: random bytes, or the encoding of an event cut short or with some
/// bytes overwritten (which reaches deeper into the decoder than random bytes do).
fn frame(known: Vec<String>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        (client_event(known.clone()), any::<Index>()).prop_map(|(event, cut)| {
            let mut bytes = event.encode_to_vec();
            bytes.truncate(cut.index(bytes.len() + 1));
            bytes
        }),
        (
            client_event(known),
            proptest::collection::vec((any::<Index>(), any::<u8>()), 1..4)
        )
            .prop_map(|(event, changes)| {
                let mut bytes = event.encode_to_vec();
                if !bytes.is_empty() {
                    for (at, byte) in changes {
                        let at = at.index(bytes.len());
                        bytes[at] = byte;
                    }
                }
                bytes
            }),
    ]
}

/// A few user ids for the in-process properties, which know no real users.
fn some_ids() -> Vec<String> {
    (1..=3)
        .map(|n| uuid::Uuid::from_u128(n).to_string())
        .collect()
}

// --- In process: the decoder ---------------------------------------------------------------

proptest! {
    /// Any bytes as a client event decode to what prost makes of them, or to the empty event
    /// (which the Chat stream answers with an ErrorEvent); the whole frame is consumed either way.
    #[test]
    fn any_bytes_decode_to_an_event_or_the_empty_one(bytes in frame(some_ids())) {
        let mut buf = bytes.as_slice();
        let decoded = decode_lenient::<ClientEvent>(&mut buf);
        prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
        let expected = ClientEvent::decode(bytes.as_slice()).unwrap_or_default();
        prop_assert_eq!(decoded.ok(), Some(expected));
    }

    /// Any bytes as a unary request decode, or are refused with INVALID_ARGUMENT on `request`.
    #[test]
    fn any_bytes_as_a_request_decode_or_name_the_request(bytes in frame(some_ids())) {
        match decode_lenient::<SendMessageRequest>(&mut bytes.as_slice()) {
            Ok(request) => {
                prop_assert_eq!(Ok(request), SendMessageRequest::decode(bytes.as_slice()));
            }
            Err(status) => {
                prop_assert_eq!(status.code(), Code::InvalidArgument);
                let details = status.get_details_bad_request().expect("a BadRequest detail");
                prop_assert_eq!(details.field_violations[0].field.as_str(), "request");
            }
        }
    }

    /// Every event survives the codec unchanged.
    #[test]
    fn every_event_survives_the_codec(event in client_event(some_ids())) {
        let bytes = event.encode_to_vec();
        prop_assert_eq!(decode_lenient::<ClientEvent>(&mut bytes.as_slice()).ok(), Some(event));
    }
}

// --- Against the server --------------------------------------------------------------------

/// What the server must answer to a frame, by what the frame decodes to.
#[derive(Debug)]
enum Expected {
    /// An ErrorEvent, INVALID_ARGUMENT on this field.
    Error(&'static str),
    /// A Pong with this nonce.
    Pong(u64),
    /// The send's ack, or an ErrorEvent for it, both carrying this client_msg_id.
    AckOrError(String),
    /// Nothing when the event is valid, else one ErrorEvent (typing, read marks, presence).
    ErrorIfInvalid,
}

fn expected(frame: &[u8]) -> Expected {
    match ClientEvent::decode(frame).ok().and_then(|e| e.event) {
        None => Expected::Error("event"),
        Some(E::Hello(_)) => Expected::Error("hello"),
        Some(E::Ping(ping)) => Expected::Pong(ping.nonce),
        Some(E::SendMessage(request)) => Expected::AckOrError(request.client_msg_id),
        Some(E::Presence(update))
            if !matches!(
                PresenceStatus::try_from(update.status),
                Ok(PresenceStatus::Online | PresenceStatus::Away)
            ) =>
        {
            Expected::Error("presence.status")
        }
        Some(E::Typing(_) | E::MarkRead(_) | E::Presence(_) | E::Received(_)) => {
            Expected::ErrorIfInvalid
        }
    }
}

/// A Chat stream that sends frames as raw bytes.
struct RawChat {
    /// The frames to send.
    frames: mpsc::Sender<Vec<u8>>,
    /// The server's events.
    events: Streaming<ServerEvent>,
}

impl RawChat {
    /// Opens a stream as the user `hello` names and reads up to its presence snapshot.
    async fn open(server: &TestServer, hello: Hello) -> Self {
        let mut grpc = tonic::client::Grpc::new(server.channel().await.unwrap());
        grpc.ready().await.unwrap();
        let (frames, rx) = mpsc::channel(4);
        let hello = ClientEvent {
            event: Some(E::Hello(hello)),
        };
        frames.send(hello.encode_to_vec()).await.unwrap();
        let path =
            tonic::codegen::http::uri::PathAndQuery::from_static("/fastchat.v1.ChatService/Chat");
        let events = grpc
            .streaming(tonic::Request::new(ReceiverStream::new(rx)), path, RawCodec)
            .await
            .expect("the stream opens")
            .into_inner();
        let mut chat = Self { frames, events };
        let welcome = chat.next().await.expect("a welcome");
        assert!(matches!(welcome, Event::Welcome(_)), "{welcome:?}");
        let snapshot = chat.next().await.expect("a presence snapshot");
        assert!(matches!(snapshot, Event::Presence(_)), "{snapshot:?}");
        chat
    }

    /// The next event; failing when the stream ends or nothing comes.
    async fn next(&mut self) -> Result<Event, TestCaseError> {
        let next = tokio::time::timeout(common::WAIT, self.events.message())
            .await
            .map_err(|_| TestCaseError::fail("no event in time"))?;
        match next {
            Ok(Some(ServerEvent { event: Some(event) })) => Ok(event),
            Ok(Some(empty)) => Err(TestCaseError::fail(format!("an empty event: {empty:?}"))),
            Ok(None) => Err(TestCaseError::fail("the stream ended")),
            Err(status) => Err(TestCaseError::fail(format!(
                "the stream failed: {status:?}"
            ))),
        }
    }

    async fn send(&self, frame: Vec<u8>) -> Result<(), TestCaseError> {
        self.frames
            .send(frame)
            .await
            .map_err(|_| TestCaseError::fail("the stream no longer takes frames"))
    }

    /// Sends `frame`, then a Ping, and checks what comes back for the frame before the Pong (and,
    /// for a send, until its ack, which follows the commit).
    async fn exchange(&mut self, frame: Vec<u8>) -> Result<(), TestCaseError> {
        let expected = expected(&frame);
        let probe = match expected {
            Expected::Pong(nonce) => nonce.wrapping_add(1),
            _ => 0,
        };
        self.send(frame).await?;
        self.send(
            ClientEvent {
                event: Some(E::Ping(Ping { nonce: probe })),
            }
            .encode_to_vec(),
        )
        .await?;
        let mut answers = Vec::new();
        loop {
            match self.next().await? {
                Event::Pong(pong) if pong.nonce == probe => break,
                answer @ (Event::Pong(_) | Event::Ack(_) | Event::Error(_)) => answers.push(answer),
                _ => {} // presence, heartbeats: not answers
            }
        }
        if let Expected::AckOrError(_) = expected
            && answers.is_empty()
        {
            loop {
                match self.next().await? {
                    answer @ (Event::Ack(_) | Event::Error(_)) => {
                        answers.push(answer);
                        break;
                    }
                    Event::Pong(pong) => answers.push(Event::Pong(pong)),
                    _ => {}
                }
            }
        }
        for answer in &answers {
            if let Event::Error(error) = answer {
                prop_assert!(
                    !error.code.is_empty() && !error.message.is_empty(),
                    "{:?}",
                    error
                );
                if error.code == "INVALID_ARGUMENT" {
                    prop_assert!(!error.field.is_empty(), "no field: {:?}", error);
                }
            }
        }
        match (&expected, answers.as_slice()) {
            (Expected::Error(field), [Event::Error(error)]) => {
                prop_assert_eq!(
                    (error.code.as_str(), error.field.as_str()),
                    ("INVALID_ARGUMENT", *field)
                );
            }
            (Expected::Pong(nonce), [Event::Pong(pong)]) => prop_assert_eq!(pong.nonce, *nonce),
            (Expected::AckOrError(id), [Event::Ack(ack)]) => {
                prop_assert_eq!(&ack.client_msg_id, id)
            }
            (Expected::AckOrError(id), [Event::Error(error)]) => {
                prop_assert_eq!(&error.client_msg_id, id);
            }
            (Expected::ErrorIfInvalid, [] | [Event::Error(_)]) => {}
            (expected, answers) => {
                prop_assert!(false, "expected {:?}, got {:?}", expected, answers);
            }
        }
        Ok(())
    }
}

/// Runs `strategy`'s frames through one Chat stream of a real server (SQLite: the input path
/// does not depend on the database), then checks that the server still answers `/health`.
fn server_answers_every<S>(strategy: impl FnOnce(Vec<String>) -> S)
where
    S: Strategy<Value = Vec<u8>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (server, hello, known) = runtime.block_on(async {
        let server = TestServer::start(Backend::Sqlite).await;
        // A peer who stays offline: valid sends to them are stored and acked.
        let peer = ChatSession::new_user(&server, "Peer").await;
        let me = ChatSession::new_user(&server, "Fuzz").await;
        let hello = Hello {
            user_id: me.user_id(),
            token: me.token(),
            ..Default::default()
        };
        let known = vec![peer.user_id(), me.user_id()];
        (server, hello, known)
    });
    // One stream for the run; a failed case drops it, so the shrinking cases start clean.
    let session = RefCell::new(Some(
        runtime.block_on(RawChat::open(&server, hello.clone())),
    ));
    let config = Config {
        // A failing case waits for events that do not come: bound the shrinking by time.
        max_shrink_time: 60_000,
        ..Config::default()
    };
    proptest!(config, |(frame in strategy(known))| {
        runtime.block_on(async {
            let open = session.borrow_mut().take();
            let mut chat = match open {
                Some(chat) => chat,
                None => RawChat::open(&server, hello.clone()).await,
            };
            chat.exchange(frame).await?;
            *session.borrow_mut() = Some(chat);
            Ok::<(), TestCaseError>(())
        })?;
    });
    runtime.block_on(async {
        let (status, _, body) = http_get(&server, "/health").await;
        assert_eq!(status, 200, "{body:?}");
        tokio::time::timeout(Duration::from_secs(10), server.stop())
            .await
            .expect("the server stops");
    });
}

/// Raw bytes and mangled encodings as frames.
#[test]
fn server_answers_every_frame() {
    server_answers_every(frame);
}

/// Arbitrary well-formed events.
#[test]
fn server_answers_every_event() {
    server_answers_every(|known| client_event(known).prop_map(|event| event.encode_to_vec()));
}
