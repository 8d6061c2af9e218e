//! Delivery receipts: a message counts as DELIVERED only once the recipient's client acknowledged
//! it; what a session was sent and did not acknowledge comes again on the next session; the
//! backlog is read in pages, at most a window of messages unacknowledged at once.

mod common;

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::{ChatSession, TestServer, WAIT, authed, message, start_binary_on, within};
use fastchat::proto::{
    AcknowledgeRequest, Hello, MessageStatus, Ping, Received, SendMessageRequest, StatusUpdate,
    SubscribeRequest, client_event, server_event::Event,
};
use fastchat::testing::{Backend, FreshDatabase, on_both_databases};
use tokio::net::{TcpListener, TcpStream};
use tonic::{Code, transport::Channel};

/// The Hello of another session of `session`'s user, asking for receipts.
fn with_receipts(session: &ChatSession) -> Hello {
    Hello {
        receipts: true,
        ..session.hello_again()
    }
}

/// Sends `count` messages from `from` to `to` on `from`'s stream and waits for every ack; returns
/// their seqs in order.
async fn send_many(from: &mut ChatSession, to: &str, count: usize, text: &str) -> Vec<u64> {
    let sender = from.sender();
    let (to, text) = (to.to_owned(), text.to_owned());
    let batch = uuid::Uuid::new_v4().simple().to_string();
    let sending = tokio::spawn(async move {
        for index in 0..count {
            let event = client_event::Event::SendMessage(SendMessageRequest {
                client_msg_id: format!("{batch}-{index}"),
                to_user_id: to.clone(),
                text: text.clone(),
                ..Default::default()
            });
            sender
                .send(fastchat::proto::ClientEvent { event: Some(event) })
                .await
                .unwrap();
        }
    });
    let mut seqs = Vec::with_capacity(count);
    while seqs.len() < count {
        match from.next().await.expect("sender's stream failed") {
            Event::Ack(ack) => seqs.push(ack.seq),
            Event::Error(error) => panic!("send refused: {error:?}"),
            _ => {}
        }
    }
    sending.await.unwrap();
    seqs
}

/// The next event of a Subscribe stream.
async fn next_event(events: &mut tonic::Streaming<fastchat::proto::ServerEvent>) -> Event {
    let message = tokio::time::timeout(WAIT, events.message())
        .await
        .expect("timed out waiting for an event")
        .expect("stream failed")
        .expect("stream ended");
    message.event.expect("event without payload")
}

/// The recipient's side of a session with receipts: reads messages, acknowledges them every
/// `ack_every`, and keeps what it has by seq.
struct Reader {
    session: Option<ChatSession>,
    /// Every seq this session received, in order.
    received: Vec<u64>,
    /// The newest seq acknowledged so far.
    acked: u64,
}

impl Reader {
    async fn open(server: &TestServer, hello: Hello) -> Self {
        let session = ChatSession::open(server, hello).await.unwrap();
        assert!(session.welcome.receive_window > 0, "receipts are on");
        Self {
            session: Some(session),
            received: Vec::new(),
            acked: 0,
        }
    }

    /// The client goes away: its stream is dropped.
    fn close(&mut self) {
        self.session = None;
    }

    fn session(&mut self) -> &mut ChatSession {
        self.session.as_mut().expect("session open")
    }

    async fn ack(&mut self, up_to: u64) {
        self.session()
            .send(client_event::Event::Received(Received { up_to_seq: up_to }))
            .await;
        self.acked = up_to;
    }

    /// Reads until `count` messages came on this session, acknowledging every `ack_every`.
    async fn read(&mut self, count: usize, ack_every: usize) {
        while self.received.len() < count {
            let message = self.session().next_where(message).await;
            self.received.push(message.seq);
            if self.received.len().is_multiple_of(ack_every) {
                self.ack(message.seq).await;
            }
        }
    }
}

/// The DELIVERED updates the sender has had so far (those already on its stream).
async fn delivered_updates(sender: &mut ChatSession, settle: Duration) -> Vec<StatusUpdate> {
    let mut updates = Vec::new();
    while let Ok(Ok(event)) = tokio::time::timeout(settle, sender.next()).await {
        if let Event::Status(update) = event
            && update.status == MessageStatus::Delivered as i32
        {
            updates.push(update);
        }
    }
    updates
}

/// Asserts that `first` and `second` sessions together got every seq of `sent`, that the second
/// repeated nothing the first acknowledged, and returns how many it repeated.
fn assert_all_received_once_acked(sent: &[u64], first: &Reader, second: &Reader) -> usize {
    let all: BTreeSet<u64> = first
        .received
        .iter()
        .chain(&second.received)
        .copied()
        .collect();
    assert_eq!(all.len(), sent.len(), "nothing lost, nothing unknown");
    let sent: BTreeSet<u64> = sent.iter().copied().collect();
    assert_eq!(all, sent, "every acked send reached the recipient");
    assert!(
        second.received.iter().all(|seq| *seq > first.acked),
        "the next session repeated a message the client had acknowledged"
    );
    assert!(
        second.received.windows(2).all(|w| w[0] < w[1]),
        "a session sends in increasing seq, each once"
    );
    second
        .received
        .iter()
        .filter(|seq| first.received.contains(seq))
        .count()
}

/// A recipient reads half of a 5,000-message backlog, acknowledging as it goes, then its client
/// goes away. The next session gets the other half; DELIVERED covered only what was acknowledged.
async fn backlog_half_read_then_cancelled_comes_again(backend: Backend) {
    within(Duration::from_secs(240), async {
        let server = TestServer::start(backend).await;
        let mut alice = ChatSession::new_user(&server, "Alice").await;
        let bob = ChatSession::new_user(&server, "Bob").await;
        let bob_hello = with_receipts(&bob);
        drop(bob);
        let sent = send_many(&mut alice, &bob_hello.user_id, 5_000, "hello").await;

        let mut first = Reader::open(&server, bob_hello.clone()).await;
        first.read(2_500, 100).await;
        // The client has more on the wire (a window's worth) but acknowledged only these.
        let acked = first.acked;
        let updates = delivered_updates(&mut alice, Duration::from_millis(1_500)).await;
        assert_eq!(
            updates.iter().map(|u| u.seq).max(),
            Some(acked),
            "DELIVERED reaches the newest acknowledged message and no further"
        );
        first.close();

        let mut second = Reader::open(&server, bob_hello).await;
        let missing = sent.iter().filter(|seq| **seq > acked).count();
        second.read(missing, 100).await;
        let repeated = assert_all_received_once_acked(&sent, &first, &second);
        assert_eq!(repeated, 0, "nothing the first session received came again");
        let last = *second.received.last().unwrap();
        second.ack(last).await;
        let updates = delivered_updates(&mut alice, Duration::from_millis(1_500)).await;
        assert_eq!(updates.last().map(|u| u.seq), Some(last));
    })
    .await;
}

/// The `fastchat` binary on a database of its own, with the message and session limits out of the
/// way; killed when dropped.
struct Binary {
    /// The running server.
    child: std::process::Child,
    /// Where it listens.
    port: u16,
    /// Its database URL (empty: SQLite in `dir`).
    url: String,
    /// Its data directory.
    dir: tempfile::TempDir,
    /// Keeps a PostgreSQL database alive.
    _database: FreshDatabase,
}

impl Binary {
    const FLAGS: [&str; 6] = [
        "--rate-messages-per-minute",
        "1000000",
        "--rate-messages-burst",
        "1000000",
        "--rate-sessions-per-minute",
        "1000",
    ];

    async fn start(backend: Backend) -> Self {
        let database = FreshDatabase::create(backend).await;
        let url = match backend {
            Backend::Sqlite => String::new(),
            Backend::Postgres => database.url.clone(),
        };
        let dir = tempfile::tempdir().unwrap();
        let (child, port) =
            start_binary_on(&url, dir.path(), &Self::FLAGS, std::process::Stdio::null()).await;
        Self {
            child,
            port,
            url,
            dir,
            _database: database,
        }
    }

    /// SIGKILLs the server and starts it again on the same database.
    async fn kill_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let null = std::process::Stdio::null();
        (self.child, self.port) =
            start_binary_on(&self.url, self.dir.path(), &Self::FLAGS, null).await;
    }

    async fn open(&self, hello: Hello) -> ChatSession {
        let channel = Channel::from_shared(format!("http://127.0.0.1:{}", self.port))
            .unwrap()
            .connect()
            .await
            .unwrap();
        ChatSession::open_on(channel, hello).await.unwrap()
    }

    async fn new_user(&self, name: &str) -> ChatSession {
        let hello = Hello {
            display_name: name.into(),
            ..Default::default()
        };
        self.open(hello).await
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The same after a crash: the server is SIGKILLed while the recipient is halfway, and started
/// again on the same database. Nothing is lost; acknowledged messages the server had recorded do
/// not come again, and the client drops by seq whatever was in flight.
async fn backlog_half_read_then_server_killed_comes_again(backend: Backend) {
    within(Duration::from_secs(300), async {
        let mut server = Binary::start(backend).await;
        let mut alice = server.new_user("Alice").await;
        let bob = server.new_user("Bob").await;
        let bob_hello = with_receipts(&bob);
        drop(bob);
        let sent = send_many(&mut alice, &bob_hello.user_id, 5_000, "hello").await;

        let session = server.open(bob_hello.clone()).await;
        let mut first = Reader {
            session: Some(session),
            received: Vec::new(),
            acked: 0,
        };
        first.read(2_500, 100).await;
        tokio::time::sleep(Duration::from_secs(1)).await; // the last receipt is recorded
        drop(alice);
        server.kill_and_restart().await;
        let session = server.open(bob_hello).await;
        let mut second = Reader {
            session: Some(session),
            received: Vec::new(),
            acked: 0,
        };
        let missing = sent.iter().filter(|seq| **seq > first.acked).count();
        second.read(missing, 100).await;
        assert_all_received_once_acked(&sent, &first, &second);
    })
    .await;
}

/// A TCP proxy to `target` whose forwarding can be frozen: bytes stop moving both ways while the
/// sockets stay open, as on a network path that went dead.
struct FreezingProxy {
    /// Where clients connect.
    addr: std::net::SocketAddr,
    /// Once set, nothing more is forwarded.
    frozen: Arc<AtomicBool>,
}

impl FreezingProxy {
    async fn start(target: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = frozen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(target).await.unwrap();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(forward(client_read, server_write, flag.clone()));
                tokio::spawn(forward(server_read, client_write, flag.clone()));
            }
        });
        Self { addr, frozen }
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until `frozen`, then holds both sockets open and silent.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if frozen.load(Ordering::SeqCst) {
            break;
        }
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    // Frozen: keep the sockets, forward nothing.
    std::future::pending::<()>().await;
    drop((from, to));
}

/// The recipient's network freezes while 1,000 messages are sent to it. When keepalive ends its
/// connection, every acked message still reaches it on its next session, and DELIVERED was never
/// sent for what it did not acknowledge.
async fn frozen_recipient_loses_nothing(backend: Backend) {
    within(Duration::from_secs(120), async {
        let server = TestServer::start_with(backend, |config| {
            config.http2_keepalive_interval_secs = 1;
            config.http2_keepalive_timeout_secs = 1;
        })
        .await;
        let proxy = FreezingProxy::start(server.addr).await;
        let mut alice = ChatSession::new_user(&server, "Alice").await;
        let bob = ChatSession::new_user(&server, "Bob").await;
        let bob_hello = with_receipts(&bob);
        drop(bob);
        let through_proxy = Channel::from_shared(format!("http://{}", proxy.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut first = Reader {
            session: Some(
                ChatSession::open_on(through_proxy, bob_hello.clone())
                    .await
                    .unwrap(),
            ),
            received: Vec::new(),
            acked: 0,
        };

        let bob_id = bob_hello.user_id.clone();
        let mut sent = send_many(&mut alice, &bob_id, 300, "before").await;
        first.read(300, 50).await;
        tokio::time::sleep(Duration::from_millis(300)).await; // the receipts reach the server
        proxy.freeze();
        sent.extend(send_many(&mut alice, &bob_id, 700, "after").await);

        let updates = delivered_updates(&mut alice, Duration::from_secs(4)).await;
        assert!(
            updates.iter().all(|u| u.seq <= first.acked),
            "DELIVERED for a message the client never acknowledged"
        );
        let mut second = Reader::open(&server, bob_hello).await;
        let missing = sent.iter().filter(|seq| **seq > first.acked).count();
        second.read(missing, 50).await;
        assert_all_received_once_acked(&sent, &first, &second);
    })
    .await;
}

/// A client that acknowledges nothing holds one window of messages and no more; other events
/// keep coming; a receipt lets the next ones through.
async fn window_bounds_unacknowledged_messages(backend: Backend) {
    within(Duration::from_secs(60), async {
        let server = TestServer::start_with(backend, |config| config.receive_window = 16).await;
        let mut alice = ChatSession::new_user(&server, "Alice").await;
        let bob = ChatSession::new_user(&server, "Bob").await;
        let bob_hello = with_receipts(&bob);
        drop(bob);
        let mut bob = Reader::open(&server, bob_hello).await;
        assert_eq!(bob.session().welcome.receive_window, 16);
        let sent = send_many(&mut alice, &bob.session().user_id(), 40, "hi").await;

        bob.read(16, usize::MAX).await;
        bob.session()
            .send(client_event::Event::Ping(Ping { nonce: 7 }))
            .await;
        let mut pong = false;
        while let Ok(Ok(event)) =
            tokio::time::timeout(Duration::from_secs(1), bob.session().next()).await
        {
            match event {
                Event::Message(m) => panic!("message {} past the window", m.seq),
                Event::Pong(p) => pong = p.nonce == 7,
                _ => {}
            }
        }
        assert!(pong, "other events go on while the window is full");

        bob.ack(bob.received[7]).await;
        bob.read(24, usize::MAX).await;
        bob.ack(bob.received[23]).await;
        bob.read(40, usize::MAX).await;
        assert_eq!(bob.received, sent, "in order, each once");
    })
    .await;
}

/// A receipt beyond what the session sent covers only what it sent: the delivered mark never
/// reaches a message committed later, which comes on the next session and is not reported
/// DELIVERED before it does.
async fn a_receipt_past_what_was_sent_covers_only_that(backend: Backend) {
    within(Duration::from_secs(60), async {
        let server = TestServer::start(backend).await;
        let mut alice = ChatSession::new_user(&server, "Alice").await;
        let bob = ChatSession::new_user(&server, "Bob").await;
        let bob_hello = with_receipts(&bob);
        drop(bob);
        let mut bob = Reader::open(&server, bob_hello.clone()).await;
        let bob_id = bob.session().user_id();

        let sent = send_many(&mut alice, &bob_id, 2, "before").await;
        bob.read(2, usize::MAX).await;
        bob.ack(sent[1] + 1_000).await;
        let updates = delivered_updates(&mut alice, Duration::from_millis(500)).await;
        assert_eq!(updates.last().map(|u| u.seq), Some(sent[1]));
        bob.close();

        let later = send_many(&mut alice, &bob_id, 1, "after").await;
        assert!(
            later[0] < sent[1] + 1_000,
            "the receipt reached past the new message"
        );
        let updates = delivered_updates(&mut alice, Duration::from_millis(500)).await;
        assert!(
            updates.is_empty(),
            "DELIVERED before Bob had it: {updates:?}"
        );

        let mut bob = Reader::open(&server, bob_hello).await;
        bob.read(1, 1).await;
        assert_eq!(bob.received, later);
        let updates = delivered_updates(&mut alice, Duration::from_millis(500)).await;
        assert_eq!(updates.last().map(|u| u.seq), Some(later[0]));
    })
    .await;
}

/// Browsers: a Subscribe session with receipts acknowledges with the Acknowledge call. Only the
/// session's own user may acknowledge, and only on a session that asked for receipts.
async fn subscribe_acknowledges_with_a_call(backend: Backend) {
    within(Duration::from_secs(60), async {
        let server = TestServer::start(backend).await;
        let mut alice = ChatSession::new_user(&server, "Alice").await;
        let bob = ChatSession::new_user(&server, "Bob").await;
        let bob_hello = with_receipts(&bob);
        let (bob_token, bob_again) = (bob.token(), bob.hello_again());
        drop(bob); // a session without receipts would take the messages too
        let mut client = server.chat().await.unwrap();
        let mut events = client
            .subscribe(SubscribeRequest {
                hello: Some(bob_hello.clone()),
            })
            .await
            .unwrap()
            .into_inner();
        let Event::Welcome(welcome) = next_event(&mut events).await else {
            panic!("no welcome")
        };
        assert!(welcome.receive_window > 0);
        let sent = send_many(&mut alice, &bob_hello.user_id, 3, "hi").await;
        let mut got = Vec::new();
        while got.len() < 3 {
            if let Some(m) = message(next_event(&mut events).await) {
                got.push(m.seq);
            }
        }
        assert_eq!(got, sent);

        let acknowledge = |token: String, session_id: String, up_to_seq: u64| {
            let mut client = client.clone();
            async move {
                client
                    .acknowledge(authed(
                        &token,
                        AcknowledgeRequest {
                            session_id,
                            up_to_seq,
                        },
                    ))
                    .await
            }
        };
        let status = acknowledge(alice.token(), welcome.session_id.clone(), sent[2])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "another user's session");
        let status = acknowledge(bob_token.clone(), "not-a-uuid".into(), sent[2])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);

        acknowledge(bob_token.clone(), welcome.session_id.clone(), sent[1])
            .await
            .unwrap();
        let updates = delivered_updates(&mut alice, Duration::from_millis(1_000)).await;
        assert_eq!(updates.iter().map(|u| u.seq).max(), Some(sent[1]));

        let without_receipts = ChatSession::open(&server, bob_again).await.unwrap();
        let session_id = without_receipts.welcome.session_id.clone();
        let status = acknowledge(bob_token.clone(), session_id, sent[2])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    })
    .await;
}

/// A graceful restart records the deliveries of the last moments: nothing received live before it
/// comes again after it, with receipts and without.
async fn graceful_restart_keeps_the_last_deliveries(backend: Backend) {
    within(Duration::from_secs(90), async {
        let database = FreshDatabase::create(backend).await;
        let server = TestServer::start_on(&database.url, |_| {}).await;
        let mut alice = ChatSession::new_user(&server, "Alice").await;
        let carol = ChatSession::new_user(&server, "Carol").await;
        let bob = ChatSession::new_user(&server, "Bob").await;
        let bob_hello = with_receipts(&bob);
        drop(bob); // its session, without receipts, would take the messages too
        let mut bob = Reader::open(&server, bob_hello.clone()).await;
        let mut carol_live = carol.again(&server).await;
        let (bob_id, carol_id) = (bob.session().user_id(), carol_live.user_id());

        let to_bob = send_many(&mut alice, &bob_id, 300, "to bob").await;
        let to_carol = send_many(&mut alice, &carol_id, 300, "to carol").await;
        bob.read(300, 100).await;
        let mut carol_got = Vec::new();
        while carol_got.len() < to_carol.len() {
            carol_got.push(carol_live.next_where(message).await.seq);
        }
        assert_eq!(bob.received, to_bob);
        // Events of a stream are handled in order: the pong means the receipt was taken.
        bob.session()
            .send(client_event::Event::Ping(Ping { nonce: 1 }))
            .await;
        bob.session()
            .next_where(|event| matches!(event, Event::Pong(_)).then_some(()))
            .await;
        server.stop().await;

        let server = TestServer::start_on(&database.url, |_| {}).await;
        for hello in [bob_hello, carol.hello_again()] {
            let mut again = ChatSession::open(&server, hello).await.unwrap();
            again
                .assert_none_where(Duration::from_secs(1), |event| {
                    matches!(event, Event::Message(_))
                })
                .await;
        }
    })
    .await;
}

on_both_databases!(
    backlog_half_read_then_cancelled_comes_again,
    backlog_half_read_then_server_killed_comes_again,
    frozen_recipient_loses_nothing,
    window_bounds_unacknowledged_messages,
    subscribe_acknowledges_with_a_call,
    graceful_restart_keeps_the_last_deliveries,
    a_receipt_past_what_was_sent_covers_only_that,
);

/// Holds the database's write lock from another connection until dropped: on PostgreSQL a lock on
/// the messages table, on SQLite a write transaction.
async fn hold_write_lock(database_url: &str) -> sea_orm::DatabaseTransaction {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let db = sea_orm::Database::connect(database_url).await.unwrap();
    let tx = db.begin().await.unwrap();
    let lock = if database_url.starts_with("postgres") {
        "LOCK TABLE chat_messages IN EXCLUSIVE MODE"
    } else {
        "CREATE TABLE write_lock_holder (id INTEGER)"
    };
    tx.execute_unprepared(lock).await.unwrap();
    tx
}

/// While the database hangs, unary sends time out with DEADLINE_EXCEEDED. Those still queued when
/// their caller gave up are not stored; the one the writer was already committing is, and a retry
/// with its client_msg_id finds it. Each key is stored once.
async fn send_that_timed_out_is_not_stored_behind_its_back(backend: Backend) {
    within(Duration::from_secs(60), async {
        let server =
            TestServer::start_with(backend, |config| config.request_timeout_secs = 1).await;
        let alice = ChatSession::new_user(&server, "Alice").await;
        let bob = ChatSession::new_user(&server, "Bob").await;
        let client = server.chat().await.unwrap();
        let (token, bob_id) = (alice.token(), bob.user_id());
        let send = move |key: &'static str| {
            let mut client = client.clone();
            let request = SendMessageRequest {
                client_msg_id: key.into(),
                to_user_id: bob_id.clone(),
                text: format!("text of {key}"),
                ..Default::default()
            };
            let token = token.clone();
            async move { client.send_message(authed(&token, request)).await }
        };

        let lock = hold_write_lock(&server.database_url).await;
        let first = tokio::spawn(send("k1"));
        tokio::time::sleep(Duration::from_millis(300)).await; // k1 is in the writer's round
        let (k2, k3) = tokio::join!(send("k2"), send("k3"));
        for refused in [first.await.unwrap(), k2, k3] {
            assert_eq!(refused.unwrap_err().code(), Code::DeadlineExceeded);
        }
        drop(lock);
        tokio::time::sleep(Duration::from_secs(2)).await; // the writer catches up

        let stored = |key| stored_count(&server.database_url, key);
        assert_eq!(
            stored("k2").await,
            0,
            "a send whose caller gave up is not stored"
        );
        assert_eq!(
            stored("k3").await,
            0,
            "a send whose caller gave up is not stored"
        );
        for key in ["k1", "k2", "k3"] {
            let ack = send(key).await.expect("the retry succeeds").into_inner();
            assert!(ack.seq > 0);
            assert_eq!(stored(key).await, 1, "{key} is stored once");
        }
    })
    .await;
}

/// How many messages with this `client_msg_id` the database holds.
async fn stored_count(database_url: &str, key: &str) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(database_url).await.unwrap();
    let sql = format!("SELECT COUNT(*) AS n FROM chat_messages WHERE client_msg_id = '{key}'");
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// An ack means the message is committed: while another connection holds the database's write
/// lock, a message sent on a Chat stream is neither acknowledged nor delivered; once the lock is
/// gone, the ack comes, the row is there, and the recipient gets the message.
async fn ack_waits_for_the_commit(backend: Backend) {
    within(Duration::from_secs(60), async {
        let server = TestServer::start(backend).await;
        let mut alice = ChatSession::new_user(&server, "Alice").await;
        let mut bob = ChatSession::new_user(&server, "Bob").await;

        let lock = hold_write_lock(&server.database_url).await;
        alice.send_message(&bob.user_id(), "k1", "hello").await;
        alice
            .assert_none_where(Duration::from_secs(1), |event| {
                matches!(event, Event::Ack(_) | Event::Error(_))
            })
            .await;
        bob.assert_none_where(Duration::from_millis(200), |event| {
            matches!(event, Event::Message(_))
        })
        .await;
        drop(lock);

        let ack = alice
            .next_where(|event| match event {
                Event::Ack(ack) => Some(ack),
                _ => None,
            })
            .await;
        assert_eq!(stored_count(&server.database_url, "k1").await, 1);
        let delivered = bob
            .next_where(|event| match event {
                Event::Message(message) => Some(message),
                _ => None,
            })
            .await;
        assert_eq!(delivered.seq, ack.seq);
    })
    .await;
}

on_both_databases!(
    send_that_timed_out_is_not_stored_behind_its_back,
    ack_waits_for_the_commit,
);

/// The server's resident memory, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Three sessions opened together onto an 80 MB backlog: each reads it in pages, so the server's
/// memory grows by less than 64 MiB (it grew by 547 MiB when each session loaded the whole
/// backlog), and what stays after they end is bounded too (SQLite's page caches and the
/// allocator keep some: about 25 MiB measured, 8 on PostgreSQL).
async fn backlog_memory_is_bounded(backend: Backend) {
    within(Duration::from_secs(600), async {
        let server = Binary::start(backend).await;
        let mut alice = server.new_user("Alice").await;
        let bob = server.new_user("Bob").await;
        let bob_hello = with_receipts(&bob);
        drop(bob);
        let text = "x".repeat(4_000);
        let sent = send_many(&mut alice, &bob_hello.user_id, 20_000, &text).await;
        drop(alice);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = rss_bytes(server.child.id());

        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let sampling = sampling.clone();
            let pid = server.child.id();
            tokio::spawn(async move {
                let mut peak = 0;
                while sampling.load(Ordering::SeqCst) {
                    peak = peak.max(rss_bytes(pid));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                peak
            })
        };
        let mut readers = tokio::task::JoinSet::new();
        for _ in 0..3 {
            let session = server.open(bob_hello.clone()).await;
            readers.spawn(async move {
                let mut reader = Reader {
                    session: Some(session),
                    received: Vec::new(),
                    acked: 0,
                };
                // Read until the backlog is done: a quiet second.
                while let Ok(Ok(event)) =
                    tokio::time::timeout(Duration::from_secs(1), reader.session().next()).await
                {
                    if let Event::Message(message) = event {
                        reader.received.push(message.seq);
                        if reader.received.len().is_multiple_of(100) {
                            reader.ack(message.seq).await;
                        }
                    }
                }
                reader.received
            });
        }
        let mut all = BTreeSet::new();
        while let Some(received) = readers.join_next().await {
            all.extend(received.unwrap());
        }
        sampling.store(false, Ordering::SeqCst);
        let peak = sampler.await.unwrap();
        assert_eq!(
            all,
            sent.iter().copied().collect(),
            "the sessions read it all"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = rss_bytes(server.child.id());
        const MIB: u64 = 1024 * 1024;
        eprintln!(
            "RSS before {} MiB, peak {} MiB, after {} MiB",
            before / MIB,
            peak / MIB,
            after / MIB
        );
        assert!(
            peak < before + 64 * MIB,
            "three sessions made the server hold {} MiB",
            (peak - before) / MIB
        );
        // SQLite's page caches (five connections, up to 2 MiB each) and the allocator
        // keep about 25 MiB; before paging, 547 MiB stayed.
        assert!(
            after < before + 40 * MIB,
            "memory not returned: {} MiB more",
            (after - before) / MIB
        );
    })
    .await;
}

on_both_databases!(backlog_memory_is_bounded);
