//! Hostile connections and input: clients that go silent without closing their socket,
//! connections that never start, broken gRPC framing, and requests right at the size limit. Each
//! test also checks that the server goes on serving others.

mod common;

use std::{convert::Infallible, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use common::{ChatSession, TestServer, WAIT, authed, http_get};
use fastchat::testing::{Backend, on_both_databases};
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
        ..Default::default()
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

/// The value of `fastchat_errors_total{code="CODE"}` (0 before the first such error).
async fn errors_counted(server: &TestServer, code: &str) -> u64 {
    let (_, _, body) = http_get(server, "/metrics").await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    let name = format!("fastchat_errors_total{{code=\"{code}\"}}");
    common::series(&text, &name).map_or(0, |value| value as u64)
}

/// How a raw request body ends after its bytes.
#[derive(Clone, Copy)]
enum BodyEnd {
    /// The stream simply ends.
    Plain,
    /// Trailers (empty) end it.
    Trailers,
}

/// A gRPC call to `method` whose request body is exactly `bytes`, ending as `end`, with
/// `grpc-encoding: identity` when `identity`: the status it ends with.
async fn call_with_body(
    server: &TestServer,
    method: &str,
    bytes: Bytes,
    end: BodyEnd,
    identity: bool,
) -> tonic::Status {
    use http_body_util::BodyExt;
    let mut frames = vec![Ok::<_, Infallible>(Frame::data(bytes))];
    match end {
        BodyEnd::Plain => {}
        BodyEnd::Trailers => frames.push(Ok(Frame::trailers(http::HeaderMap::new()))),
    }
    let mut request = http::Request::post(format!("{}{method}", server.url()))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if identity {
        request = request.header("grpc-encoding", "identity");
    }
    let body = StreamBody::new(tokio_stream::iter(frames));
    let request = request.body(tonic::body::Body::new(body)).unwrap();
    let mut channel = server.channel().await.unwrap();
    let response = channel.ready().await.unwrap().call(request).await.unwrap();
    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
        return status;
    }
    let collected = response.into_body().collect().await.unwrap();
    tonic::Status::from_header_map(&collected.trailers().cloned().unwrap_or_default())
        .expect("a grpc-status in the trailers")
}

/// Broken gRPC framing is the caller's fault and ends the call with INVALID_ARGUMENT, never
/// INTERNAL (which would let anyone trip an alert on server errors): a compression flag without
/// a `grpc-encoding` (`identity` names none), a flag gRPC does not define, a message cut short by
/// the end of the stream or by trailers, a unary call without a message, with two, or whose
/// grpc-web body breaks off. A prefix that promises 1 GiB gets OUT_OF_RANGE at once (the server does not
/// wait for the bytes). The server serves on.
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
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("grpc-encoding"), "{status:?}");

    let mut bad_flag = FramedChat::open(&server).await;
    bad_flag.send(7, &ping).await;
    let status = final_status(&mut bad_flag.events).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("compression flag 7"),
        "{status:?}"
    );

    // The sending side stays open: only the prefix can tell the server to give up.
    let mut huge = FramedChat::open(&server).await;
    huge.send_prefix(0, 1 << 30, &[]).await;
    let status = final_status(&mut huge.events).await;
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");

    let mut cut = FramedChat::open(&server).await;
    cut.send_prefix(0, 100, &ping).await;
    drop(cut.wire);
    let status = final_status(&mut cut.events).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("cut short"), "{status:?}");

    let send = "/fastchat.v1.ChatService/SendMessage";
    let message = request_of_size("someone", 100).encode_to_vec();
    let cut = prefixed(0, 100, &message[..50]);
    let compressed = prefixed(1, 100, &message);
    let unary_cases = [
        (
            "no message",
            Bytes::new(),
            BodyEnd::Plain,
            false,
            "no request message",
        ),
        (
            "only trailers",
            Bytes::new(),
            BodyEnd::Trailers,
            false,
            "no request message",
        ),
        (
            "a cut prefix",
            Bytes::from_static(&[0, 0, 0]),
            BodyEnd::Plain,
            false,
            "cut short",
        ),
        (
            "a cut message",
            cut.clone(),
            BodyEnd::Plain,
            false,
            "cut short",
        ),
        (
            "a message cut by trailers",
            cut,
            BodyEnd::Trailers,
            false,
            "cut short",
        ),
        (
            "two messages",
            [prefixed(0, 100, &message), prefixed(0, 100, &message)]
                .concat()
                .into(),
            BodyEnd::Plain,
            false,
            "one request message",
        ),
        (
            "a compressed message",
            compressed.clone(),
            BodyEnd::Plain,
            false,
            "grpc-encoding",
        ),
        (
            "compressed, encoding identity",
            compressed,
            BodyEnd::Plain,
            true,
            "grpc-encoding",
        ),
    ];
    let answered = 3 + unary_cases.len() as u64;
    for (what, bytes, end, identity, says) in unary_cases {
        let status = call_with_body(&server, send, bytes, end, identity).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(status.message().contains(says), "{what}: {status:?}");
    }
    // A grpc-web body that breaks off: the client stops sending halfway through its
    // Content-Length and closes its side (tonic-web would say INTERNAL).
    let broken_off =
        grpc_web_http1_broken_off(&server, &prefixed(0, 100, &message)[..20], 105).await;
    assert_eq!(broken_off, Some(Code::InvalidArgument as u32));
    assert_eq!(errors_counted(&server, "INTERNAL").await, 0);
    assert_eq!(
        errors_counted(&server, "INVALID_ARGUMENT").await,
        answered + 1
    );

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

/// A stream may carry no message: a Presence client that closes its side at once (one that only
/// listens, or grpcurl with empty input) keeps its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_closed_without_a_message_goes_on() {
    let server = TestServer::start(Backend::Sqlite).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let mut presence = server.presence().await.unwrap();
    let no_updates = tokio_stream::empty::<fastchat::proto::PresenceUpdate>();
    let mut events = presence
        .presence(authed(&alice.token(), no_updates))
        .await
        .unwrap()
        .into_inner();
    let bob = ChatSession::new_user(&server, "Bob").await;
    loop {
        let event = common::within(WAIT, events.message())
            .await
            .expect("the stream goes on")
            .expect("the stream does not end");
        if let Some(presence_event::Event::Change(change)) = event.event
            && change.presence.and_then(|p| p.user).map(|u| u.user_id) == Some(bob.user_id())
        {
            break;
        }
    }
    server.stop().await;
}

/// The head of a grpc-web SendMessage POST over HTTP/1.1 with a body of `declared` bytes.
fn grpc_web_http1_head(server: &TestServer, declared: usize) -> String {
    format!(
        "POST /fastchat.v1.ChatService/SendMessage HTTP/1.1\r\nhost: {}\r\n\
         content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n\
         content-length: {declared}\r\n\r\n",
        server.addr
    )
}

/// POSTs a grpc-web SendMessage over HTTP/1.1 that declares `declared` body bytes, sends only
/// `sent`, and closes its sending side: the `grpc-status` of the answer.
async fn grpc_web_http1_broken_off(
    server: &TestServer,
    sent: &[u8],
    declared: usize,
) -> Option<u32> {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = grpc_web_http1_head(server, declared);
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(sent).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    common::within(WAIT, stream.read_to_end(&mut answer))
        .await
        .unwrap();
    grpc_status_in(&answer)
}

/// The `grpc-status` in a raw HTTP/1.1 grpc-web answer (in its headers or its trailer frame).
fn grpc_status_in(answer: &[u8]) -> Option<u32> {
    let text = String::from_utf8_lossy(answer).to_ascii_lowercase();
    text.split("grpc-status:")
        .nth(1)
        .and_then(|rest| {
            rest.trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
        })
        .and_then(|digits| digits.parse().ok())
}

/// What one grpc-web call over HTTP/1.1 came to: the `grpc-status` the server answered, how many
/// body bytes the client got to write, and whether the server kept the connection open.
struct Http1Call {
    status: Option<u32>,
    written: usize,
    kept_open: bool,
}

/// POSTs a grpc-web SendMessage over HTTP/1.1 whose body declares `declared` bytes: `start`,
/// then zeros (that is, empty gRPC messages) for as long as the server reads them.
async fn grpc_web_http1_call(server: &TestServer, start: Bytes, declared: usize) -> Http1Call {
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut from_server, mut to_server) = stream.into_split();
    let head = grpc_web_http1_head(server, declared);
    let writer = tokio::spawn(async move {
        to_server.write_all(head.as_bytes()).await.unwrap();
        let mut written = 0;
        let zeros = vec![0u8; 64 * 1024];
        let mut chunk = start;
        while written < declared {
            let len = chunk.len().min(declared - written);
            if to_server.write_all(&chunk[..len]).await.is_err() {
                break;
            }
            written += len;
            chunk = Bytes::from(zeros.clone());
        }
        (written, to_server)
    });
    // Read until the server closes (or stays quiet after its answer, keeping the connection).
    let mut answer = Vec::new();
    let mut kept_open = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let limit = if answer.is_empty() {
            WAIT
        } else {
            Duration::from_secs(2)
        };
        match tokio::time::timeout(limit, from_server.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {
                kept_open = !answer.is_empty();
                break;
            }
        }
    }
    let (written, _to_server) = common::within(WAIT, writer).await.unwrap();
    let status = grpc_status_in(&answer);
    Http1Call {
        status,
        written,
        kept_open,
    }
}

/// A grpc-web call over HTTP/1.1 that the server answers before reading its whole body (a unary
/// call with a second message, a message past the size limit) gets its answer and the
/// connection closed: the server does not go on reading the rest of a 512 MiB body (it read all
/// of it, for seconds of CPU, after answering). A call whose body was read keeps its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_http1_call_stops_reading_its_body() {
    let server = TestServer::start(Backend::Sqlite).await;
    const DECLARED: usize = 512 << 20;
    // The kernel's socket buffers take a few MiB the server never reads.
    const READ_AT_MOST: usize = 32 << 20;
    let message = request_of_size("someone", 100).encode_to_vec();

    let answered_early = [
        (
            "a second message",
            prefixed(0, 100, &message),
            Code::InvalidArgument,
        ),
        (
            "an oversized message",
            prefixed(0, DECLARED as u32 - 5, &[]),
            Code::OutOfRange,
        ),
    ];
    for (what, start, code) in answered_early {
        let call = grpc_web_http1_call(&server, start, DECLARED).await;
        assert_eq!(call.status, Some(code as u32), "{what}");
        assert!(!call.kept_open, "{what}");
        assert!(
            call.written < READ_AT_MOST,
            "{what}: the server read {} bytes after answering",
            call.written
        );
    }

    let whole = prefixed(0, 100, &message);
    let read_whole = grpc_web_http1_call(&server, whole.clone(), whole.len()).await;
    assert_eq!(read_whole.status, Some(Code::Unauthenticated as u32));
    assert!(
        read_whole.kept_open,
        "a call whose body was read keeps its connection"
    );
    server.stop().await;
}

/// A gRPC channel to `server` from the local address `source` (any of 127.0.0.0/8 on Linux), so
/// a test can be two clients at two addresses.
async fn channel_from(server: &TestServer, source: std::net::IpAddr) -> Channel {
    let target = server.addr;
    tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(std::net::SocketAddr::new(source, 0))?;
            let stream = socket.connect(target).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }))
        .await
        .unwrap()
}

/// Opens `calls` SendMessage calls on a new HTTP/2 connection, each with its headers and no body,
/// and sends the `grpc-status` of each one answered to `answered`. The calls stay open as long
/// as the returned bodies do.
async fn open_bodiless_calls(
    server: &TestServer,
    calls: usize,
    answered: mpsc::UnboundedSender<Option<u32>>,
) -> Vec<mpsc::Sender<Result<Frame<Bytes>, Infallible>>> {
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let mut bodies = Vec::with_capacity(calls);
    for _ in 0..calls {
        let (body, frames) = mpsc::channel(1);
        bodies.push(body);
        let request = http::Request::post(format!(
            "{}/fastchat.v1.ChatService/SendMessage",
            server.url()
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(StreamBody::new(ReceiverStream::new(frames)))
        .unwrap();
        let mut sender = sender.clone();
        let answered = answered.clone();
        tokio::spawn(async move {
            if sender.ready().await.is_err() {
                return;
            }
            if let Ok(response) = sender.send_request(request).await {
                let status = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok()?.parse().ok());
                let _ = answered.send(status);
            }
        });
    }
    bodies
}

/// One address cannot take every call slot: with 127.0.0.1 holding 2,000 bodiless calls on two
/// connections (enough to fill --max-concurrent-requests, which locked everyone out until the
/// request timeout), the calls past its share are refused at once with RESOURCE_EXHAUSTED, and
/// a client at 127.0.0.2 still opens a session and sends a message. Plain HTTP is not counted:
/// the flooding address's health check is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_call_slot() {
    // The defaults, set here so that no environment changes them.
    let (max_per_ip, max_global) = (500, 2_000);
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.max_calls_per_ip = max_per_ip as u32;
        c.max_concurrent_requests = max_global as u32;
    })
    .await;
    let (answered, mut answers) = mpsc::unbounded_channel();
    let mut held = open_bodiless_calls(&server, max_global / 2, answered.clone()).await;
    held.extend(open_bodiless_calls(&server, max_global / 2, answered).await);
    let mut refused = 0;
    while refused < max_global - max_per_ip {
        let status = common::within(WAIT, answers.recv()).await.unwrap();
        assert_eq!(status, Some(Code::ResourceExhausted as u32));
        refused += 1;
    }

    assert_eq!(http_get(&server, "/health").await.0, 200);

    let other = "127.0.0.2".parse().unwrap();
    let hello = |name: &str| Hello {
        display_name: name.into(),
        ..Default::default()
    };
    let alice = ChatSession::open_on(channel_from(&server, other).await, hello("Alice"))
        .await
        .expect("a new session from another address");
    let bob = ChatSession::open_on(channel_from(&server, other).await, hello("Bob"))
        .await
        .expect("a new session from another address");
    let mut chat = fastchat::proto::chat_service_client::ChatServiceClient::new(
        channel_from(&server, other).await,
    );
    let request = SendMessageRequest {
        client_msg_id: "through".into(),
        to_user_id: bob.user_id(),
        text: "still here".into(),
        ..Default::default()
    };
    chat.send_message(authed(&alice.token(), request))
        .await
        .expect("a unary send from another address");
    assert!(
        answers.try_recv().is_err(),
        "the address's share stays held"
    );

    // Ending the bodies ends the held calls (a call without a message), and frees their slots.
    drop(held);
    for _ in 0..max_per_ip {
        let status = common::within(WAIT, answers.recv()).await.unwrap();
        assert_eq!(status, Some(Code::InvalidArgument as u32));
    }
    assert_eq!(
        errors_counted(&server, "RESOURCE_EXHAUSTED").await,
        (max_global - max_per_ip) as u64
    );
    server.stop().await;
}

on_both_databases!(
    silent_connection_is_found_by_keepalive,
    requests_at_the_size_limit,
);
