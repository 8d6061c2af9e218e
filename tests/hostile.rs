//! Hostile connections and input: clients that go silent without closing their socket,
//! connections that never start, broken gRPC framing, and requests right at the size limit. Each
//! test also checks that the server goes on serving others.

mod common;

use std::{convert::Infallible, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use common::{Backend, ChatSession, TestServer, WAIT, authed, http_get};
use fastchat::{
    MAX_REQUEST_BYTES,
    db::tables::sessions,
    proto::{
        ClientEvent, Hello, Ping, PresenceStatus, SendMessageRequest, ServerEvent, client_event,
        presence_event, server_event::Event,
    },
};
use http_body_util::StreamBody;
use hyper::body::Frame;
use prost::Message;
use sea_orm::EntityTrait;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, tcp::OwnedReadHalf, tcp::OwnedWriteHalf},
    sync::mpsc,
    task::JoinHandle,
};
use tokio_stream::{StreamExt, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Streaming, transport::Channel};
use tonic_prost::ProstDecoder;
use tonic_types::StatusExt;
use tower::{Service, ServiceExt};

/// A TCP proxy for one connection that can go silent on command: it stops forwarding in both
/// directions but keeps both sockets open, as a client behind a dead NAT or a frozen laptop does.
struct SilenceableProxy {
    /// Where clients connect.
    addr: std::net::SocketAddr,
    /// Cancelled to stop forwarding.
    silent: CancellationToken,
    /// The accept task and the forwarding tasks; they hold the sockets until the proxy is dropped.
    tasks: std::sync::Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl SilenceableProxy {
    /// Starts a proxy to `upstream`.
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let silent = CancellationToken::new();
        let tasks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = {
            let silent = silent.clone();
            let tasks = tasks.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let server = TcpStream::connect(upstream).await.unwrap();
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let mut tasks = tasks.lock().unwrap();
                    tasks.push(tokio::spawn(forward(
                        client_read,
                        server_write,
                        silent.clone(),
                    )));
                    tasks.push(tokio::spawn(forward(
                        server_read,
                        client_write,
                        silent.clone(),
                    )));
                }
            })
        };
        tasks.lock().unwrap().push(accept);
        Self {
            addr,
            silent,
            tasks,
        }
    }

    /// A gRPC channel through the proxy.
    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Stops forwarding, for good; the sockets stay open.
    fn go_silent(&self) {
        self.silent.cancel();
    }
}

impl Drop for SilenceableProxy {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// Copies bytes from `from` to `to` until the proxy goes silent; then holds both halves open
/// without reading or writing until the task is aborted.
async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, silent: CancellationToken) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        tokio::select! {
            () = silent.cancelled() => {
                std::future::pending::<()>().await;
            }
            read = from.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if to.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}

/// The presence change about `user` on a chat stream, if the event is one.
fn status_change_of(event: Event, user: &str) -> Option<PresenceStatus> {
    let Event::Presence(presence) = event else {
        return None;
    };
    let Some(presence_event::Event::Change(change)) = presence.event else {
        return None;
    };
    let presence = change.presence?;
    (presence.user.as_ref()?.user_id == user).then(|| presence.status())
}

/// A native client that goes silent without closing its connection is found by HTTP/2 keepalive:
/// its session ends (the `sessions` row too) and watchers see it go OFFLINE after the grace.
async fn silent_connection_is_found_by_keepalive(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.http2_keepalive_interval_secs = 1;
        c.http2_keepalive_timeout_secs = 1;
    })
    .await;
    let proxy = SilenceableProxy::start(server.addr).await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let hello = Hello {
        display_name: "Bob".into(),
        ..Default::default()
    };
    let mut bob = ChatSession::open_on(proxy.channel().await, hello)
        .await
        .unwrap();
    let (bob_id, bob_session) = (bob.user_id(), bob.welcome.session_id.clone());
    let online = alice.next_where(|e| status_change_of(e, &bob_id)).await;
    assert_eq!(online, PresenceStatus::Online);
    // The proxy forwards while it is not silent: Bob's stream works through it.
    bob.send(client_event::Event::Ping(Ping { nonce: 1 })).await;
    bob.next_where(|e| matches!(e, Event::Pong(_)).then_some(()))
        .await;

    proxy.go_silent();
    let offline = alice.next_where(|e| status_change_of(e, &bob_id)).await;
    assert_eq!(offline, PresenceStatus::Offline);
    let db = server.db().await;
    let id = uuid::Uuid::parse_str(&bob_session).unwrap();
    common::within(WAIT, async {
        loop {
            let row = sessions::Entity::find_by_id(id).one(&db).await.unwrap();
            if row.is_some_and(|r| r.ended_at.is_some()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    drop(proxy);
    server.stop().await;
}

/// Connections that never show their protocol are closed: one that sends nothing and one that
/// stalls in the HTTP/2 preface after the handshake timeout; one that completes the preface and
/// then never answers by HTTP/2 keepalive. The server serves others meanwhile and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_start_are_closed() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.handshake_timeout_secs = 1;
        c.http2_keepalive_interval_secs = 1;
        c.http2_keepalive_timeout_secs = 1;
    })
    .await;
    let stalls: [&[u8]; 3] = [
        b"",
        b"PRI * HTTP/2.0\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ];
    let mut stalled = Vec::new();
    for sent in stalls {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(sent).await.unwrap();
        stalled.push((sent, tcp));
    }
    // The stalled connections do not keep others out.
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    for (sent, mut tcp) in stalled {
        // Reads what the server sends (its SETTINGS and pings) until it closes the connection.
        let closed = tokio::time::timeout(WAIT, async {
            let mut sink = vec![0; 1024];
            while let Ok(1..) = tcp.read(&mut sink).await {}
        })
        .await;
        let sent = String::from_utf8_lossy(sent);
        assert!(closed.is_ok(), "a connection that sent {sent:?} was kept");
    }
    alice
        .send(client_event::Event::Ping(Ping { nonce: 2 }))
        .await;
    alice
        .next_where(|e| matches!(e, Event::Pong(_)).then_some(()))
        .await;
    assert_eq!(http_get(&server, "/health").await.0, 200);
    server.stop().await;
}

/// The largest text whose SendMessageRequest encodes to exactly `bytes`.
fn request_of_size(to: &str, bytes: usize) -> SendMessageRequest {
    let mut request = SendMessageRequest {
        client_msg_id: "edge".into(),
        to_user_id: to.into(),
        text: String::new(),
    };
    // The text's length prefix grows with it, so shrink from a first guess until it fits.
    let mut len = bytes;
    loop {
        request.text = "x".repeat(len);
        match request.encoded_len() {
            n if n == bytes => return request,
            n if n > bytes => len -= n - bytes,
            _ => len += 1,
        }
    }
}

/// The size limit is exact: a request of 64 KiB is decoded (and then refused for its text, on
/// `text`), one byte more is refused undecoded with OUT_OF_RANGE, on unary calls and on a
/// stream; the server serves on.
async fn requests_at_the_size_limit(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.max_message_chars = 16_000).await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let bob = ChatSession::new_user(&server, "Bob").await;
    let mut client = server.chat().await.unwrap();

    let at_limit = request_of_size(&bob.user_id(), MAX_REQUEST_BYTES);
    let status = client
        .send_message(authed(&alice.token(), at_limit.clone()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let violation = &status.get_details_bad_request().unwrap().field_violations[0];
    assert_eq!(violation.field, "text");
    let over = request_of_size(&bob.user_id(), MAX_REQUEST_BYTES + 1);
    let status = client
        .send_message(authed(&alice.token(), over.clone()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");

    // On a stream the event wraps the request in 4 bytes: its tag and a 3-byte length.
    let event_of = |request: SendMessageRequest| client_event::Event::SendMessage(request);
    let wrapped = |bytes: usize| request_of_size(&bob.user_id(), bytes - 4);
    let at_limit = event_of(wrapped(MAX_REQUEST_BYTES));
    let encoded = fastchat::proto::ClientEvent {
        event: Some(at_limit.clone()),
    }
    .encoded_len();
    assert_eq!(
        encoded, MAX_REQUEST_BYTES,
        "the event is exactly at the limit"
    );
    alice.send(at_limit).await;
    let error = alice
        .next_where(|e| match e {
            Event::Error(error) => Some(error),
            _ => None,
        })
        .await;
    assert_eq!(
        (error.code.as_str(), error.field.as_str()),
        ("INVALID_ARGUMENT", "send_message.text")
    );
    alice.send(event_of(wrapped(MAX_REQUEST_BYTES + 1))).await;
    let ended = alice.final_status().await.expect("the stream ends");
    assert_eq!(ended.code(), Code::OutOfRange, "{ended:?}");

    let mut again = bob.again(&server).await;
    again
        .send(client_event::Event::Ping(Ping { nonce: 3 }))
        .await;
    again
        .next_where(|e| matches!(e, Event::Pong(_)).then_some(()))
        .await;
    server.stop().await;
}

/// A Chat stream written frame by frame, 5-byte gRPC prefix and all, so the prefix can lie.
struct FramedChat {
    /// The request body: bytes as they go on the wire.
    wire: mpsc::Sender<Bytes>,
    /// The server's events and final status.
    events: Streaming<ServerEvent>,
}

impl FramedChat {
    /// Opens a Chat stream as a new user and reads its Welcome.
    async fn open(server: &TestServer) -> Self {
        let (wire, body) = mpsc::channel::<Bytes>(8);
        // The Hello goes first: the server answers the call only once it has it.
        let hello = ClientEvent {
            event: Some(client_event::Event::Hello(Hello {
                display_name: "Framer".into(),
                ..Default::default()
            })),
        };
        let hello = hello.encode_to_vec();
        wire.send(prefixed(0, hello.len() as u32, &hello))
            .await
            .unwrap();
        let body = ReceiverStream::new(body).map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
        let request = http::Request::post(format!("{}/fastchat.v1.ChatService/Chat", server.url()))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(tonic::body::Body::new(StreamBody::new(body)))
            .unwrap();
        let mut channel = server.channel().await.unwrap();
        let response = channel.ready().await.unwrap().call(request).await.unwrap();
        let status = response.status();
        let mut events = Streaming::new_response(
            ProstDecoder::<ServerEvent>::default(),
            response.into_body(),
            status,
            None,
            None,
        );
        let first = tokio::time::timeout(WAIT, events.message()).await;
        let welcome = first.expect("a welcome in time").unwrap().unwrap();
        assert!(
            matches!(welcome.event, Some(Event::Welcome(_))),
            "{welcome:?}"
        );
        Self { wire, events }
    }

    /// Sends `payload` as one message with the flag byte `flag`.
    async fn send(&self, flag: u8, payload: &[u8]) {
        self.send_prefix(flag, payload.len() as u32, payload).await;
    }

    /// Sends a prefix of flag byte `flag` and length `declared`, followed by `payload`.
    async fn send_prefix(&self, flag: u8, declared: u32, payload: &[u8]) {
        self.wire
            .send(prefixed(flag, declared, payload))
            .await
            .unwrap();
    }
}

/// A gRPC message on the wire: the flag byte, the declared length, the payload.
fn prefixed(flag: u8, declared: u32, payload: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(5 + payload.len());
    frame.put_u8(flag);
    frame.put_u32(declared);
    frame.put_slice(payload);
    frame.freeze()
}

/// The status `events` end with, skipping the events.
async fn final_status(events: &mut Streaming<ServerEvent>) -> tonic::Status {
    common::within(WAIT, async {
        loop {
            match events.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
}

/// Broken gRPC framing ends the stream with the status gRPC prescribes: INTERNAL for a
/// compression flag without a `grpc-encoding` and for a message cut short by the end of the
/// stream, OUT_OF_RANGE at once for a prefix that promises 1 GiB (the server does not wait for
/// the bytes). The server serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_grpc_framing_ends_the_stream_with_a_status() {
    let server = TestServer::start(Backend::Sqlite).await;
    let ping = ClientEvent {
        event: Some(client_event::Event::Ping(Ping { nonce: 4 })),
    }
    .encode_to_vec();

    let mut compressed = FramedChat::open(&server).await;
    compressed.send(1, &ping).await;
    let status = final_status(&mut compressed.events).await;
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(status.message().contains("compressed-flag"), "{status:?}");

    let mut bad_flag = FramedChat::open(&server).await;
    bad_flag.send(7, &ping).await;
    let status = final_status(&mut bad_flag.events).await;
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(status.message().contains("compression flag"), "{status:?}");

    // The sending side stays open: only the prefix can tell the server to give up.
    let mut huge = FramedChat::open(&server).await;
    huge.send_prefix(0, 1 << 30, &[]).await;
    let status = final_status(&mut huge.events).await;
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");

    let mut cut = FramedChat::open(&server).await;
    cut.send_prefix(0, 100, &ping).await;
    drop(cut.wire);
    let status = final_status(&mut cut.events).await;
    assert_eq!(status.code(), Code::Internal, "{status:?}");

    assert_eq!(http_get(&server, "/health").await.0, 200);
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    alice
        .send(client_event::Event::Ping(Ping { nonce: 5 }))
        .await;
    alice
        .next_where(|e| matches!(e, Event::Pong(_)).then_some(()))
        .await;
    server.stop().await;
}

on_both_databases!(
    silent_connection_is_found_by_keepalive,
    requests_at_the_size_limit,
);
