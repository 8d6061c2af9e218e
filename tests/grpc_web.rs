//! The grpc-web path: a real grpc-web client (tonic-web's client layer over a hyper client that
//! speaks HTTP/1.1, or HTTP/2 in one test) against the server's one port, plus raw HTTP/1.1
//! requests and CORS.

mod common;

use std::time::Duration;

use common::web::{WebChannel, web_channel_to};
use common::{ChatSession, TestServer, WAIT, authed};
use fastchat::proto::{
    HeartbeatRequest, Hello, ListOnlineRequest, MessageStatus, PresenceStatus, SendMessageRequest,
    ServerEvent, SubscribeRequest, chat_service_client::ChatServiceClient, presence_event,
    presence_service_client::PresenceServiceClient, server_event::Event,
};
use fastchat::testing::{Backend, on_both_databases};
use http::Version;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Code, Streaming};
use tonic_types::StatusExt;

/// A grpc-web channel to `server`, as a browser's grpc-web library would use it: HTTP/1.1 only.
fn web_channel(server: &TestServer) -> (WebChannel, http::Uri) {
    web_channel_over(server, Version::HTTP_11)
}

/// A grpc-web channel speaking `version` (HTTP/1.1, or HTTP/2 with prior knowledge).
fn web_channel_over(server: &TestServer, version: Version) -> (WebChannel, http::Uri) {
    web_channel_to(&server.url(), version)
}

fn web_chat(server: &TestServer) -> ChatServiceClient<WebChannel> {
    let (channel, origin) = web_channel(server);
    ChatServiceClient::with_origin(channel, origin)
}

fn web_presence(server: &TestServer) -> PresenceServiceClient<WebChannel> {
    let (channel, origin) = web_channel(server);
    PresenceServiceClient::with_origin(channel, origin)
}

/// grpc-web also works over HTTP/2 (what browsers use over TLS): a unary call and a stream.
async fn grpc_web_works_over_http2(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (channel, origin) = web_channel_over(&server, Version::HTTP_2);
    let mut presence = PresenceServiceClient::with_origin(channel.clone(), origin.clone());
    let claimed = presence
        .heartbeat(HeartbeatRequest {
            user_id: String::new(),
            display_name: "Twotimes".into(),
        })
        .await
        .expect("Heartbeat over grpc-web on HTTP/2")
        .into_inner();
    let mut chat = ChatServiceClient::with_origin(channel, origin);
    let mut stream = chat
        .subscribe(authed(
            &claimed.token,
            SubscribeRequest {
                hello: Some(Hello::default()),
            },
        ))
        .await
        .expect("Subscribe over grpc-web on HTTP/2")
        .into_inner();
    assert!(matches!(next_event(&mut stream).await, Event::Welcome(_)));
    server.stop().await;
}

/// The next event of a grpc-web server stream.
async fn next_event(stream: &mut Streaming<ServerEvent>) -> Event {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("timed out waiting for a grpc-web event")
        .expect("grpc-web stream failed")
        .expect("grpc-web stream ended")
        .event
        .expect("event without payload")
}

/// Heartbeat over grpc-web claims a new user: a token, ONLINE presence, and the id is then taken
/// (no token: UNAUTHENTICATED; with the bearer token: accepted). Native clients see them online.
async fn heartbeat_claims_a_user_over_grpc_web(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut presence = web_presence(&server);

    let response = presence
        .heartbeat(HeartbeatRequest {
            user_id: String::new(),
            display_name: "Grace".into(),
        })
        .await
        .expect("Heartbeat over grpc-web")
        .into_inner();
    assert!(
        response.token.len() >= 22,
        "a new user gets a token of at least 128 bits: {:?}",
        response.token
    );
    let me = response.presence.expect("heartbeat returns the presence");
    assert_eq!(me.status(), PresenceStatus::Online);
    let user = me.user.expect("presence names the user");
    assert_eq!(user.display_name, "Grace");
    uuid::Uuid::parse_str(&user.user_id).expect("the server picked a UUID");

    // The id is claimed: a heartbeat for it without the token is refused ...
    let status = presence
        .heartbeat(HeartbeatRequest {
            user_id: user.user_id.clone(),
            display_name: "Mallory".into(),
        })
        .await
        .expect_err("heartbeat for a claimed id without its token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // ... and accepted with it, as `authorization: Bearer` metadata over grpc-web.
    let again = presence
        .heartbeat(authed(
            &response.token,
            HeartbeatRequest {
                user_id: user.user_id.clone(),
                display_name: String::new(),
            },
        ))
        .await
        .expect("heartbeat with the bearer token")
        .into_inner();
    assert_eq!(
        again.presence.unwrap().user.unwrap().user_id,
        user.user_id,
        "same user"
    );
    assert!(again.token.is_empty(), "no new token for a known user");

    let mut native = server.presence().await.unwrap();
    let online = native
        .list_online(ListOnlineRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        online
            .users
            .iter()
            .any(|p| p.user.as_ref().unwrap().user_id == user.user_id),
        "a native client sees the grpc-web user online: {online:?}"
    );
    server.stop().await;
}

/// Subscribe over grpc-web streams Welcome, the presence snapshot, then a live message that a
/// native Chat client sends.
async fn subscribe_over_grpc_web_streams_welcome_snapshot_and_messages(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;

    let mut chat = web_chat(&server);
    let mut stream = chat
        .subscribe(SubscribeRequest {
            hello: Some(Hello {
                display_name: "Webby".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("Subscribe over grpc-web")
        .into_inner();

    let Event::Welcome(welcome) = next_event(&mut stream).await else {
        panic!("a grpc-web session starts with Welcome")
    };
    let web_user = welcome.user.expect("welcome names the user");
    assert_eq!(web_user.display_name, "Webby");
    assert!(!welcome.token.is_empty(), "a new user gets a token");

    let Event::Presence(presence) = next_event(&mut stream).await else {
        panic!("the presence snapshot follows Welcome")
    };
    let Some(presence_event::Event::Snapshot(snapshot)) = presence.event else {
        panic!("the first presence event is a snapshot: {presence:?}")
    };
    let online: Vec<_> = snapshot
        .users
        .iter()
        .map(|p| p.user.as_ref().unwrap().user_id.clone())
        .collect();
    assert!(
        online.contains(&alice.user_id()),
        "the snapshot lists the native user who is online: {online:?}"
    );

    alice
        .send_message(&web_user.user_id, "to-web-1", "hello browser")
        .await;
    let message = loop {
        match next_event(&mut stream).await {
            Event::Message(m) => break m,
            // Presence changes and heartbeats may come first.
            Event::Presence(_) | Event::Heartbeat(_) => continue,
            other => panic!("unexpected event on the grpc-web stream: {other:?}"),
        }
    };
    assert_eq!(message.text, "hello browser");
    assert_eq!(message.from_user_id, alice.user_id());
    assert_eq!(message.to_user_id, web_user.user_id);

    // The browser's session counts as a recipient session: the sender sees DELIVERED.
    let delivered = alice
        .next_where(|e| match e {
            Event::Status(s) => Some(s),
            _ => None,
        })
        .await;
    assert_eq!(delivered.status(), MessageStatus::Delivered);
    assert_eq!(delivered.message_id, message.message_id);
    drop(stream);
    server.stop().await;
}

/// SendMessage over grpc-web, authenticated by `authorization: Bearer`, is acked SENT after the
/// commit and reaches the native recipient, from the authenticated user.
async fn send_message_over_grpc_web_reaches_native_recipient(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;

    let mut presence = web_presence(&server);
    let claimed = presence
        .heartbeat(HeartbeatRequest {
            display_name: "Webby".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let web_id = claimed.presence.unwrap().user.unwrap().user_id;

    let mut chat = web_chat(&server);
    let ack = chat
        .send_message(authed(
            &claimed.token,
            SendMessageRequest {
                client_msg_id: "web-1".into(),
                to_user_id: bob.user_id(),
                text: "hi from the browser".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("SendMessage over grpc-web")
        .into_inner();
    assert_eq!(ack.client_msg_id, "web-1");
    assert_eq!(ack.status(), MessageStatus::Sent);
    assert!(ack.seq > 0);
    assert!(!ack.message_id.is_empty());

    let received = bob
        .next_where(|e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .await;
    assert_eq!(received.text, "hi from the browser");
    assert_eq!(received.message_id, ack.message_id);
    assert_eq!(received.from_user_id, web_id, "sent as the token's user");
    assert_eq!(received.to_user_id, bob.user_id());

    // Without the bearer token the same call is refused.
    let status = chat
        .send_message(SendMessageRequest {
            client_msg_id: "web-2".into(),
            to_user_id: bob.user_id(),
            text: "anonymous".into(),
            ..Default::default()
        })
        .await
        .expect_err("SendMessage without a token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    server.stop().await;
}

/// An invalid request over grpc-web comes back as INVALID_ARGUMENT with a BadRequest detail
/// naming the field, carried in the grpc-web trailers.
async fn invalid_argument_over_grpc_web_names_the_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let bob = ChatSession::new_user(&server, "Bob").await;
    let mut presence = web_presence(&server);
    let claimed = presence
        .heartbeat(HeartbeatRequest {
            display_name: "Webby".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let mut chat = web_chat(&server);
    let status = chat
        .send_message(authed(
            &claimed.token,
            SendMessageRequest {
                client_msg_id: "web-empty".into(),
                to_user_id: bob.user_id(),
                text: String::new(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("empty text must be refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad_request = status
        .get_details_bad_request()
        .expect("INVALID_ARGUMENT carries BadRequest details over grpc-web");
    assert!(
        bad_request
            .field_violations
            .iter()
            .any(|v| v.field == "text"),
        "a field violation names `text`: {bad_request:?}"
    );
    server.stop().await;
}

on_both_databases!(
    heartbeat_claims_a_user_over_grpc_web,
    subscribe_over_grpc_web_streams_welcome_snapshot_and_messages,
    send_message_over_grpc_web_reaches_native_recipient,
    invalid_argument_over_grpc_web_names_the_field,
    grpc_web_works_over_http2,
);

/// A raw HTTP/1.1 exchange: the request written on the socket as is, the response read to the end.
/// Returns the status line, the headers (names lowercased) and the body (chunked encoding undone).
async fn http11_exchange(
    server: &TestServer,
    head: &str,
    body: &[u8],
) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut request = head.as_bytes().to_vec();
    request.extend_from_slice(body);
    socket.write_all(&request).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, socket.read_to_end(&mut raw))
        .await
        .expect("the server did not close the HTTP/1.1 connection")
        .unwrap();

    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP/1.1 response head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    (status_line, headers, body)
}

/// Undoes HTTP/1.1 chunked transfer encoding.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("hex chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// grpc-web really is served over HTTP/1.1: a hand-written HTTP/1.1 POST gets `HTTP/1.1 200`, a
/// data frame and a trailers frame with `grpc-status:0` in the body, and CORS exposes the
/// grpc-status headers to the allowed origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_is_served_over_http11() {
    let server = TestServer::start(Backend::Sqlite).await;
    // An empty ListOnlineRequest: one uncompressed data frame of length 0.
    let frame = [0u8, 0, 0, 0, 0];
    let head = format!(
        "POST /fastchat.v1.PresenceService/ListOnline HTTP/1.1\r\n\
         Host: {}\r\n\
         Origin: http://localhost:5173\r\n\
         Content-Type: application/grpc-web+proto\r\n\
         Accept: application/grpc-web+proto\r\n\
         X-Grpc-Web: 1\r\n\
         Content-Length: {}\r\n\
         Connection: close\r\n\r\n",
        server.addr,
        frame.len()
    );
    let (status_line, headers, body) = http11_exchange(&server, &head, &frame).await;
    assert!(
        status_line.starts_with("HTTP/1.1 200"),
        "status line: {status_line}"
    );
    let content_type = header(&headers, "content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/grpc-web"),
        "content-type: {content_type}"
    );
    let expose = header(&headers, "access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        expose.contains("grpc-status") && expose.contains("grpc-message"),
        "CORS exposes the grpc-status headers: {headers:?}"
    );

    // Frames: 1 flag byte, 4 length bytes, payload. 0x00 is data, 0x80 the trailers.
    let mut rest = &body[..];
    let mut data_frames = 0;
    let mut trailers = None;
    while !rest.is_empty() {
        assert!(rest.len() >= 5, "truncated grpc-web frame: {body:?}");
        let flag = rest[0];
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let payload = &rest[5..5 + len];
        match flag {
            0x00 => data_frames += 1,
            0x80 => trailers = Some(String::from_utf8_lossy(payload).to_ascii_lowercase()),
            other => panic!("unexpected grpc-web frame flag {other:#x}"),
        }
        rest = &rest[5 + len..];
    }
    assert_eq!(data_frames, 1, "one ListOnlineResponse");
    let trailers = trailers.expect("a trailers frame in the body");
    assert!(
        trailers.contains("grpc-status:0"),
        "trailers say OK: {trailers:?}"
    );
    server.stop().await;
}

/// A CORS preflight from an allowed origin is answered with that origin and the headers a
/// grpc-web client sends (authorization included); an origin not on the list is not allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_allows_configured_origins_only() {
    let server = TestServer::start(Backend::Sqlite).await;
    let preflight = |origin: &str| {
        format!(
            "OPTIONS /fastchat.v1.ChatService/SendMessage HTTP/1.1\r\n\
             Host: {}\r\n\
             Origin: {origin}\r\n\
             Access-Control-Request-Method: POST\r\n\
             Access-Control-Request-Headers: x-grpc-web,authorization\r\n\
             Content-Length: 0\r\n\
             Connection: close\r\n\r\n",
            server.addr
        )
    };

    let (status_line, headers, _) =
        http11_exchange(&server, &preflight("http://localhost:5173"), b"").await;
    assert!(
        status_line.starts_with("HTTP/1.1 200"),
        "preflight answered: {status_line}"
    );
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("http://localhost:5173"),
        "{headers:?}"
    );
    let allowed: Vec<String> = header(&headers, "access-control-allow-headers")
        .unwrap_or_default()
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for needed in ["authorization", "x-grpc-web", "content-type"] {
        assert!(
            allowed.iter().any(|h| h == needed),
            "allow-headers includes {needed}: {allowed:?}"
        );
    }
    let methods = header(&headers, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("POST"), "allow-methods: {methods}");

    // By default the server's own origin is on the list too.
    let own = format!("http://127.0.0.1:{}", server.addr.port());
    let (_, headers, _) = http11_exchange(&server, &preflight(&own), b"").await;
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some(own.as_str())
    );

    let (_, headers, _) = http11_exchange(&server, &preflight("http://evil.example"), b"").await;
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        None,
        "an origin not on the list is not allowed: {headers:?}"
    );
    server.stop().await;
}

/// Guards against a grpc-web stream that only arrives when it ends: each event of a Subscribe
/// stream must reach the HTTP/1.1 client while the stream stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_stream_delivers_events_while_open() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut chat = web_chat(&server);
    let mut stream = chat
        .subscribe(SubscribeRequest {
            hello: Some(Hello {
                display_name: "Webby".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let Event::Welcome(welcome) = next_event(&mut stream).await else {
        panic!("welcome first")
    };
    let web_id = welcome.user.unwrap().user_id;
    let _snapshot = next_event(&mut stream).await;

    // Two messages, one at a time: each must arrive before the next is sent.
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    for (i, text) in ["one", "two"].into_iter().enumerate() {
        alice.send_message(&web_id, &format!("m-{i}"), text).await;
        let got = loop {
            match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
                Ok(Ok(Some(ServerEvent {
                    event: Some(Event::Message(m)),
                }))) => break m,
                Ok(Ok(Some(_))) => continue,
                other => {
                    panic!("message {text:?} did not arrive while the stream was open: {other:?}")
                }
            }
        };
        assert_eq!(got.text, text);
        alice
            .next_where(|e| matches!(e, Event::Ack(_)).then_some(()))
            .await;
    }
    server.stop().await;
}

/// A grpc-web request over 64 KiB is refused with OUT_OF_RANGE, like a native one; the same
/// client's next call is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_grpc_web_request_is_refused() {
    let server = TestServer::start_with(Backend::Sqlite, |c| c.max_message_chars = 16_000).await;
    let bob = ChatSession::new_user(&server, "Bob").await;
    let claimed = web_presence(&server)
        .heartbeat(HeartbeatRequest {
            display_name: "Webby".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut chat = web_chat(&server);
    let send = |client_msg_id: &str, text: String| {
        let request = SendMessageRequest {
            client_msg_id: client_msg_id.into(),
            to_user_id: bob.user_id(),
            text,
            ..Default::default()
        };
        authed(&claimed.token, request)
    };
    let huge = "x".repeat(fastchat::MAX_REQUEST_BYTES + 1);
    let status = chat
        .send_message(send("web-huge", huge))
        .await
        .expect_err("a request over 64 KiB must be refused");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    // The server answered before reading the refused body, so over HTTP/1.1 it closes that
    // connection; the client's pool may hand the next call to it before it sees the close, and
    // that call fails to send at all (Unknown, "SendRequest"). A client sends it again.
    let mut sent = chat
        .send_message(send("web-fits", "x".repeat(16_000)))
        .await;
    if let Err(status) = &sent
        && status.code() == Code::Unknown
        && status.message().contains("SendRequest")
    {
        sent = chat
            .send_message(send("web-fits", "x".repeat(16_000)))
            .await;
    }
    let ack = sent.expect("a large but allowed message").into_inner();
    assert_eq!(ack.client_msg_id, "web-fits");
    server.stop().await;
}
