//! Shared test harness: the real server on `127.0.0.1:0` over SQLite (a temporary directory) or
//! PostgreSQL (a fresh database per test, dropped afterwards), and small clients to drive it. The
//! databases and `on_both_databases!` are `fastchat::testing`'s, shared with the unit tests.
#![allow(dead_code)] // each test binary uses part of the harness

pub mod web;

use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fastchat::{
    config::Config,
    proto::{
        ChatMessage, ClientEvent, Hello, SendMessageRequest, SendMessageResponse, ServerEvent,
        StatusUpdate, Welcome, chat_service_client::ChatServiceClient, client_event,
        presence_service_client::PresenceServiceClient, server_event::Event,
    },
    testing::{Backend, FreshDatabase},
};
use sea_orm::DatabaseConnection;
use tokio::{net::TcpListener, sync::mpsc, task::JoinHandle};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    Request, Status, Streaming,
    transport::{Certificate, Channel, ClientTlsConfig},
};

pub const BINARY: &str = env!("CARGO_BIN_EXE_fastchat");

/// A free port on loopback (bound, then released for the binary to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the `fastchat` binary (with `extra` flags) on a fresh data directory and waits until
/// it serves; returns the child and its port.
pub async fn start_binary(
    data_dir: &std::path::Path,
    extra: &[&str],
    stdout: Stdio,
) -> (Child, u16) {
    start_binary_on("", data_dir, extra, stdout).await
}

/// Starts the `fastchat` binary on `database_url` (empty: SQLite in `data_dir`), as
/// [`start_binary`] does: for what only a process of its own shows (signals, memory, a crash).
pub async fn start_binary_on(
    database_url: &str,
    data_dir: &std::path::Path,
    extra: &[&str],
    stdout: Stdio,
) -> (Child, u16) {
    let port = free_port();
    let mut child = Command::new(BINARY)
        .args(extra)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "info")
        .stdout(stdout)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !health_ok(port).await {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("fastchat exited before it served: {status}");
        }
        assert!(Instant::now() < deadline, "fastchat did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, port)
}

/// Whether `GET /health` answers 200: the port is bound before migrations run, so a connection
/// alone does not mean the server serves yet.
pub async fn health_ok(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request = b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response.starts_with("HTTP/1.1 200")
}

/// A chat event's message, if it is one (for [`ChatSession::next_where`]).
pub fn message(event: Event) -> Option<ChatMessage> {
    match event {
        Event::Message(m) => Some(m),
        _ => None,
    }
}

/// A chat event's ack, if it is one.
pub fn ack(event: Event) -> Option<SendMessageResponse> {
    match event {
        Event::Ack(a) => Some(a),
        _ => None,
    }
}

/// A chat event's status update (DELIVERED, READ), if it is one.
pub fn status(event: Event) -> Option<StatusUpdate> {
    match event {
        Event::Status(s) => Some(s),
        _ => None,
    }
}

/// How long a test waits for an event it expects.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running server.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its database URL, for checking what it stored.
    pub database_url: String,
    /// Ends `run`.
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// `run` itself.
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// Keeps the database alive until the server is gone.
    _database: Option<FreshDatabase>,
    /// The certificate it serves TLS with; None for plaintext.
    pub tls: Option<TestTls>,
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, in files the server reads. Clients
/// trust the certificate itself as their CA.
pub struct TestTls {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Holds `cert.pem` and `key.pem`.
    dir: tempfile::TempDir,
}

impl TestTls {
    pub fn generate() -> Self {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cert_pem = certified.cert.pem();
        std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
        std::fs::write(
            dir.path().join("key.pem"),
            certified.signing_key.serialize_pem(),
        )
        .unwrap();
        Self { cert_pem, dir }
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// A rustls client config that trusts this certificate and offers `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> tokio_rustls::rustls::ClientConfig {
        use tokio_rustls::rustls::{
            ClientConfig, RootCertStore,
            crypto::ring,
            pki_types::{CertificateDer, pem::PemObject},
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let mut config =
            ClientConfig::builder_with_provider(std::sync::Arc::new(ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
}

/// The config tests start from: quick timers so tests do not wait long, and rate limits out of
/// the way of tests that send bursts from one address (`tests/limits.rs` sets its own).
pub fn test_config() -> Config {
    let mut config = Config::from_env();
    config.offline_grace_ms = 300;
    config.typing_timeout_ms = 800;
    lift_rate_limits(&mut config);
    config
}

/// Rate limits no test reaches unless it means to.
pub fn lift_rate_limits(config: &mut Config) {
    const PLENTY: u32 = 1_000_000;
    config.rate_messages_per_minute = PLENTY;
    config.rate_messages_burst = PLENTY;
    config.rate_typing_per_minute = PLENTY;
    config.rate_typing_burst = PLENTY;
    config.rate_pings_per_minute = PLENTY;
    config.rate_pings_burst = PLENTY;
    config.rate_requests_per_minute = PLENTY;
    config.rate_requests_burst = PLENTY;
    config.rate_sessions_per_minute = PLENTY;
    config.rate_sessions_per_minute_per_ip = PLENTY;
    config.rate_claims_per_minute_per_ip = PLENTY;
    config.rate_claims_burst_per_ip = PLENTY;
    config.max_sessions_per_user = 1_000;
}

impl TestServer {
    /// Starts the server with the test config.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts the server with the test config, changed by `tweak`.
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let database = FreshDatabase::create(backend).await;
        let mut server = Self::start_on(&database.url, tweak).await;
        server._database = Some(database);
        server
    }

    /// Starts the server over TLS with a fresh self-signed certificate; `url` and `channel` then
    /// use https and trust it.
    pub async fn start_tls(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let database = FreshDatabase::create(backend).await;
        let tls = TestTls::generate();
        let (cert, key) = (tls.cert_path(), tls.key_path());
        let mut server = Self::start_configured(&database.url, Some(tls), |config| {
            config.tls_cert = Some(cert);
            config.tls_key = Some(key);
            tweak(config);
        })
        .await;
        server._database = Some(database);
        server
    }

    /// Starts the server on an existing database (one that outlives this server).
    pub async fn start_on(database_url: &str, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_configured(database_url, None, tweak).await
    }

    /// Starts the server on `database_url`; `tls` is the certificate the tweaked config serves.
    async fn start_configured(
        database_url: &str,
        tls: Option<TestTls>,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .try_init();
        let mut config = test_config();
        config.database_url = database_url.to_owned();
        tweak(&mut config);
        let database_url = config.database_url();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(fastchat::run(config, listener, async {
            let _ = stop.await;
        }));
        let server = Self {
            addr,
            database_url,
            shutdown: Some(shutdown),
            task: Some(task),
            _database: None,
            tls,
        };
        server.wait_until_serving().await;
        server
    }

    /// Waits until the gRPC health service says SERVING: migrations ran and the database answers.
    async fn wait_until_serving(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(channel) = self.channel().await {
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                let request = tonic_health::pb::HealthCheckRequest::default();
                if let Ok(answer) = health.check(request).await
                    && answer.into_inner().status()
                        == tonic_health::pb::health_check_response::ServingStatus::Serving
                {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:PORT`, or `https://` when the server serves TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// A gRPC channel to the server (over TLS, trusting its certificate, when it serves TLS).
    pub async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        let endpoint = Channel::from_shared(self.url()).unwrap();
        let endpoint = match &self.tls {
            Some(tls) => endpoint.tls_config(
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.cert_pem)),
            )?,
            None => endpoint,
        };
        endpoint.connect().await
    }

    pub async fn chat(&self) -> Result<ChatServiceClient<Channel>, tonic::transport::Error> {
        Ok(ChatServiceClient::new(self.channel().await?))
    }

    pub async fn presence(
        &self,
    ) -> Result<PresenceServiceClient<Channel>, tonic::transport::Error> {
        Ok(PresenceServiceClient::new(self.channel().await?))
    }

    /// A direct connection to the server's database, for checking what it stored.
    pub async fn db(&self) -> DatabaseConnection {
        sea_orm::Database::connect(&self.database_url)
            .await
            .unwrap()
    }

    /// Signals shutdown and waits for `run` to return; returns how long that took.
    pub async fn stop(mut self) -> Duration {
        let started = std::time::Instant::now();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task panicked")
                .expect("server failed");
        }
        started.elapsed()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// GETs `path` from `server` over HTTP/1.1: the status, the content type and the body.
pub async fn http_get(server: &TestServer, path: &str) -> (u16, String, bytes::Bytes) {
    let (status, headers, body) = http_get_from(&server.url(), path, &[]).await;
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, body)
}

/// GETs `path` from the server at `url` (`http://host:port`) over HTTP/1.1 with the request
/// headers `with`: the status, the response headers and the body.
pub async fn http_get_from(
    url: &str,
    path: &str,
    with: &[(&'static str, &str)],
) -> (u16, http::HeaderMap, bytes::Bytes) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut request = http::Request::get(format!("{url}{path}"));
    for (name, value) in with {
        request = request.header(*name, *value);
    }
    let request = request.body(http_body_util::Empty::new()).unwrap();
    let response = tokio::time::timeout(WAIT, client.request(request))
        .await
        .unwrap_or_else(|_| panic!("GET {path} timed out"))
        .unwrap_or_else(|err| panic!("GET {path} failed: {err}"));
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status.as_u16(), parts.headers, body)
}

/// The value of one series in a Prometheus scrape, `name` or `name{label="value"}`; None when it
/// is not there.
pub fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

/// The field a status's BadRequest detail names.
pub fn bad_field(status: &Status) -> String {
    use tonic_types::StatusExt;
    let details = status
        .get_details_bad_request()
        .expect("INVALID_ARGUMENT carries BadRequest details");
    details.field_violations[0].field.clone()
}

/// A request carrying `authorization: Bearer <token>`.
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// One Chat stream, as a native client holds it.
pub struct ChatSession {
    /// What the client sends.
    tx: mpsc::Sender<ClientEvent>,
    /// What the server sends.
    rx: Streaming<ServerEvent>,
    /// The session's Welcome.
    pub welcome: Welcome,
}

impl ChatSession {
    /// Opens a Chat stream with `hello` and reads its Welcome.
    pub async fn open(server: &TestServer, hello: Hello) -> Result<Self, Status> {
        Self::open_on(server.channel().await.unwrap(), hello).await
    }

    /// Opens a Chat stream with `hello` on `channel` and reads its Welcome.
    pub async fn open_on(channel: Channel, hello: Hello) -> Result<Self, Status> {
        let (tx, rx) = mpsc::channel(64);
        tx.send(ClientEvent {
            event: Some(client_event::Event::Hello(hello)),
        })
        .await
        .unwrap();
        let mut client = ChatServiceClient::new(channel);
        let mut rx = client.chat(ReceiverStream::new(rx)).await?.into_inner();
        let first = tokio::time::timeout(WAIT, rx.message())
            .await
            .expect("no welcome in time")?
            .expect("stream ended before welcome");
        let Some(Event::Welcome(welcome)) = first.event else {
            panic!("first event was not a welcome: {first:?}")
        };
        Ok(Self { tx, rx, welcome })
    }

    /// Claims a new user named `name` and opens a session as them.
    pub async fn new_user(server: &TestServer, name: &str) -> Self {
        Self::new_user_result(server, name)
            .await
            .expect("claiming a new user")
    }

    /// Tries to claim a new user named `name` and open a session as them.
    pub async fn new_user_result(server: &TestServer, name: &str) -> Result<Self, Status> {
        let hello = Hello {
            display_name: name.to_owned(),
            ..Default::default()
        };
        Self::open(server, hello).await
    }

    /// Another session of the same user.
    pub async fn again(&self, server: &TestServer) -> Self {
        Self::open(server, self.hello_again())
            .await
            .expect("opening another session")
    }

    /// The Hello that opens another session of this user.
    pub fn hello_again(&self) -> Hello {
        Hello {
            user_id: self.user_id(),
            token: self.token(),
            ..Default::default()
        }
    }

    pub fn user_id(&self) -> String {
        self.welcome.user.as_ref().unwrap().user_id.clone()
    }

    pub fn token(&self) -> String {
        self.welcome.token.clone()
    }

    /// Sends one client event.
    pub async fn send(&self, event: client_event::Event) {
        self.tx
            .send(ClientEvent { event: Some(event) })
            .await
            .unwrap();
    }

    /// A handle to send events from another task.
    pub fn sender(&self) -> mpsc::Sender<ClientEvent> {
        self.tx.clone()
    }

    /// Sends a client event as it is, even an empty one.
    pub async fn send_raw(&self, event: ClientEvent) {
        self.tx.send(event).await.unwrap();
    }

    /// Sends a message.
    pub async fn send_message(&self, to: &str, client_msg_id: &str, text: &str) {
        self.send(client_event::Event::SendMessage(SendMessageRequest {
            client_msg_id: client_msg_id.to_owned(),
            to_user_id: to.to_owned(),
            text: text.to_owned(),
            ..Default::default()
        }))
        .await;
    }

    /// Stops sending: the client's half of the stream ends.
    pub fn close_sending(self) -> Streaming<ServerEvent> {
        self.rx
    }

    /// The next event, whatever it is.
    pub async fn next(&mut self) -> Result<Event, Status> {
        let message = tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("timed out waiting for an event")?
            .expect("stream ended");
        Ok(message.event.expect("event without payload"))
    }

    /// The next event `pick` accepts, skipping others (presence changes, heartbeats, ...).
    pub async fn next_where<T>(&mut self, mut pick: impl FnMut(Event) -> Option<T>) -> T {
        loop {
            let event = self.next().await.expect("stream failed");
            if let Some(found) = pick(event) {
                return found;
            }
        }
    }

    /// Asserts that no event `pick` accepts arrives within `within`.
    pub async fn assert_none_where(
        &mut self,
        within: Duration,
        mut pick: impl FnMut(&Event) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(next) = tokio::time::timeout_at(deadline, self.rx.message()).await {
            // A stream that ended could not show what it would have received.
            let message = match next {
                Ok(Some(message)) => message,
                Ok(None) => panic!("the stream ended while checking that no event came"),
                Err(status) => {
                    panic!("the stream failed while checking that no event came: {status:?}")
                }
            };
            if let Some(event) = message.event {
                assert!(!pick(&event), "unexpected event: {event:?}");
            }
        }
    }

    /// How the stream ended: its final status.
    pub async fn final_status(&mut self) -> Option<Status> {
        loop {
            match tokio::time::timeout(WAIT, self.rx.message())
                .await
                .expect("stream did not end")
            {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    }
}

/// Runs `body` with a deadline, so a hung test fails instead of hanging CI.
pub async fn within<T>(limit: Duration, body: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, body)
        .await
        .expect("test took too long")
}

/// Sends raw bytes as messages, to put frames on a stream that no generated client would send.
#[derive(Debug, Clone, Default)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = fastchat::proto::ServerEvent;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<fastchat::proto::ServerEvent>;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

/// Writes each message's bytes as they are.
#[derive(Debug)]
pub struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}
