//! TLS (`--tls-cert`, `--tls-key`): gRPC over HTTP/2 and grpc-web over HTTP/1.1 and HTTP/2 on the
//! same TLS port, ALPN offering both, plaintext refused, bad files refused at start-up.

mod common;

use std::sync::Arc;

use clap::Parser;
use common::{ChatSession, TestServer, TestTls, WAIT, test_config};
use fastchat::testing::Backend;
use fastchat::{
    config::Config,
    proto::{
        HeartbeatRequest, PresenceStatus, presence_service_client::PresenceServiceClient,
        server_event::Event,
    },
};
use http::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsConnector, client::TlsStream, rustls::pki_types::ServerName};
use tonic::body::Body;
use tonic_web::{GrpcWebCall, GrpcWebClientLayer};
use tower::{ServiceBuilder, service_fn};

/// A TLS connection to `server` offering `alpn`, checking its certificate for `localhost`.
async fn connect_tls(server: &TestServer, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let tls = server.tls.as_ref().expect("a TLS server");
    let connector = TlsConnector::from(Arc::new(tls.client_config(alpn)));
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::timeout(
        WAIT,
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .expect("TLS handshake timed out")
    .expect("TLS handshake")
}

/// The protocol ALPN settled on.
fn negotiated(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

/// Heartbeat over grpc-web on one TLS connection that speaks `version`; checks that the answer
/// is grpc-web over that version and returns the user's display name.
async fn grpc_web_heartbeat(
    server: &TestServer,
    stream: TlsStream<TcpStream>,
    version: Version,
) -> String {
    let io = TokioIo::new(stream);
    let check = move |response: Response<hyper::body::Incoming>| {
        assert_eq!(
            response.version(),
            version,
            "grpc-web over the expected HTTP version"
        );
        let content_type = response.headers()[http::header::CONTENT_TYPE]
            .to_str()
            .unwrap();
        assert!(
            content_type.starts_with("application/grpc-web"),
            "{content_type}"
        );
        response
    };
    let request = HeartbeatRequest {
        user_id: String::new(),
        display_name: "Webby".into(),
    };
    let origin: http::Uri = server.url().parse().unwrap();
    let response = if version == Version::HTTP_2 {
        let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(connection);
        let web = ServiceBuilder::new()
            .layer(GrpcWebClientLayer::new())
            .map_response(check)
            .service(service_fn(move |request: Request<GrpcWebCall<Body>>| {
                sender.clone().send_request(request)
            }));
        PresenceServiceClient::with_origin(web, origin)
            .heartbeat(request)
            .await
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        let web = ServiceBuilder::new()
            .layer(GrpcWebClientLayer::new())
            .map_response(check)
            .service(service_fn(move |request: Request<GrpcWebCall<Body>>| {
                sender.send_request(request)
            }));
        PresenceServiceClient::with_origin(web, origin)
            .heartbeat(request)
            .await
    };
    let presence = response
        .expect("Heartbeat over grpc-web on TLS")
        .into_inner()
        .presence
        .unwrap();
    assert_eq!(presence.status(), PresenceStatus::Online);
    presence.user.unwrap().display_name
}

/// Native gRPC over TLS: tonic's client (which insists on ALPN `h2`) trusts the server's
/// certificate and two users chat; a client offering `h2` and `http/1.1`, as browsers do, gets
/// HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_negotiates_http2() {
    let server = TestServer::start_tls(Backend::Sqlite, |_| {}).await;
    assert!(server.url().starts_with("https://"));
    let alice = ChatSession::new_user(&server, "Alice").await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;
    alice
        .send_message(&bob.user_id(), "tls-1", "over TLS")
        .await;
    let message = bob
        .next_where(|event| match event {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .await;
    assert_eq!(message.text, "over TLS");
    assert_eq!(message.from_user_id, alice.user_id());

    let browser_like = connect_tls(&server, &[b"h2", b"http/1.1"]).await;
    assert_eq!(negotiated(&browser_like).as_deref(), Some(&b"h2"[..]));
    server.stop().await;
}

/// grpc-web works on the TLS port over HTTP/1.1 (ALPN `http/1.1`, which the server must offer) and
/// over HTTP/2 (what a browser gets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_over_tls_on_http11_and_http2() {
    let server = TestServer::start_tls(Backend::Sqlite, |_| {}).await;

    let http11 = connect_tls(&server, &[b"http/1.1"]).await;
    assert_eq!(negotiated(&http11).as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(
        grpc_web_heartbeat(&server, http11, Version::HTTP_11).await,
        "Webby"
    );

    let http2 = connect_tls(&server, &[b"h2", b"http/1.1"]).await;
    assert_eq!(negotiated(&http2).as_deref(), Some(&b"h2"[..]));
    assert_eq!(
        grpc_web_heartbeat(&server, http2, Version::HTTP_2).await,
        "Webby"
    );
    server.stop().await;
}

/// By default browsers may call from the server's own origin, which over TLS is `https://`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_cors_origin_is_https_over_tls() {
    let server = TestServer::start_tls(Backend::Sqlite, |_| {}).await;
    let allowed_origin = async |origin: String| {
        let stream = connect_tls(&server, &[b"http/1.1"]).await;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let preflight = Request::options("/fastchat.v1.ChatService/SendMessage")
            .header(http::header::HOST, server.addr.to_string())
            .header(http::header::ORIGIN, origin)
            .header(http::header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(http::header::ACCESS_CONTROL_REQUEST_HEADERS, "x-grpc-web")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(preflight).await.unwrap();
        response
            .headers()
            .get(http::header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let https = format!("https://127.0.0.1:{}", server.addr.port());
    assert_eq!(allowed_origin(https.clone()).await, Some(https));
    let http = format!("http://127.0.0.1:{}", server.addr.port());
    assert_eq!(
        allowed_origin(http).await,
        None,
        "the plaintext origin is another origin"
    );
    server.stop().await;
}

/// The TLS port speaks only TLS: a plaintext gRPC client cannot get an answer, and the server goes
/// on serving TLS clients afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_is_refused_on_the_tls_port() {
    let server = TestServer::start_tls(Backend::Sqlite, |_| {}).await;
    let plain = format!("http://{}", server.addr);
    let attempt = async {
        let channel = tonic::transport::Channel::from_shared(plain)
            .unwrap()
            .connect()
            .await
            .map_err(|err| err.to_string())?;
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .map_err(|status| status.to_string())?;
        Ok::<(), String>(())
    };
    let result = tokio::time::timeout(WAIT, attempt)
        .await
        .expect("the plaintext attempt must end, not hang");
    assert!(result.is_err(), "a plaintext client got an answer");

    ChatSession::new_user(&server, "Still served").await;
    server.stop().await;
}

/// Both files or neither; a missing or unreadable file stops the start with a message naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_files_are_checked_at_start() {
    let error = Config::try_parse_from(["fastchat", "--tls-cert", "cert.pem"]).unwrap_err();
    assert!(error.to_string().contains("--tls-key"), "{error}");
    let error = Config::try_parse_from(["fastchat", "--tls-key", "key.pem"]).unwrap_err();
    assert!(error.to_string().contains("--tls-cert"), "{error}");

    let tls = TestTls::generate();
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file").unwrap();
    let missing = dir.path().join("missing.pem");
    let other = TestTls::generate();

    let cases = [
        (missing.clone(), tls.key_path(), "--tls-cert"),
        (garbage.clone(), tls.key_path(), "--tls-cert"),
        (tls.cert_path(), missing, "--tls-key"),
        (tls.cert_path(), garbage, "--tls-key"),
        // A key that is not the certificate's.
        (tls.cert_path(), other.key_path(), "the key does not fit"),
    ];
    for (cert, key, expected) in cases {
        let mut config = test_config();
        config.data_dir = dir.path().join("data");
        config.tls_cert = Some(cert.clone());
        config.tls_key = Some(key.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let result = tokio::time::timeout(
            WAIT,
            fastchat::run(config, listener, std::future::pending()),
        )
        .await
        .expect("a bad TLS file must stop the start, not serve");
        let error = format!("{:#}", result.expect_err("a bad TLS file must fail"));
        assert!(
            error.contains(expected),
            "cert {cert:?}, key {key:?}: {error}"
        );
    }
}
