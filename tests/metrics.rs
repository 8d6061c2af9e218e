//! Metrics: `GET /metrics` (Prometheus) and MetricsService follow a real chat between two native
//! gRPC users and a grpc-web user; hourly and daily buckets are stored and survive a restart.

mod common;

use std::{collections::HashMap, future::Future, time::Duration};

use common::{ChatSession, TestServer, WAIT, authed, bad_field, http_get, series, within};
use fastchat::proto::{
    ClientEvent, GetDailyStatsRequest, GetHourlyStatsRequest, GetMetricsRequest,
    GetMetricsResponse, GetUserMetricsRequest, Hello, MessageStatus, Ping, PresenceStatus,
    PresenceUpdate, SendMessageRequest, ServerEvent, StatsBucket, SubscribeRequest,
    chat_service_client::ChatServiceClient, client_event,
    metrics_service_client::MetricsServiceClient, server_event::Event,
};
use fastchat::testing::{Backend, FreshDatabase, on_both_databases};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tonic::{Code, Status, Streaming, body::Body, transport::Channel};
use tonic_web::{GrpcWebCall, GrpcWebClientLayer, GrpcWebClientService};

/// A grpc-web client over HTTP/1.1, as a browser uses it.
type WebChannel = GrpcWebClientService<Client<HttpConnector, GrpcWebCall<Body>>>;

fn web_chat(server: &TestServer) -> ChatServiceClient<WebChannel> {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let channel = tower::ServiceBuilder::new()
        .layer(GrpcWebClientLayer::new())
        .service(client);
    ChatServiceClient::with_origin(channel, server.url().parse().unwrap())
}

async fn metrics_client(server: &TestServer) -> MetricsServiceClient<Channel> {
    MetricsServiceClient::new(server.channel().await.unwrap())
}

/// `GET /metrics` as text.
async fn scrape(server: &TestServer) -> String {
    let (status, content_type, body) = http_get(server, "/metrics").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    String::from_utf8(body.to_vec()).unwrap()
}

/// Scrapes until `series` has `expected`; fails with the last scrape otherwise.
async fn until_series(server: &TestServer, name: &str, expected: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = scrape(server).await;
        if series(&text, name) == Some(expected) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never became {expected}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Calls `check` until it returns true, for figures recorded just after the client hears back.
async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_metrics(server: &TestServer) -> GetMetricsResponse {
    metrics_client(server)
        .await
        .get_metrics(GetMetricsRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The next event of a grpc-web stream.
async fn next_web_event(stream: &mut Streaming<ServerEvent>) -> Event {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("no event in time")
        .unwrap()
        .expect("stream ended")
        .event
        .unwrap()
}

/// The chat every metrics test looks at.
struct Chat {
    alice: ChatSession,
    bob: ChatSession,
    /// Carol's grpc-web Subscribe stream.
    carol: Streaming<ServerEvent>,
    carol_id: String,
}

/// Alice and Bob on native Chat streams, Carol on a grpc-web Subscribe stream. Alice sends Bob a
/// message (and pings); Carol sends Alice one with a grpc-web SendMessage; Alice sends an empty
/// text (an error event) and a bad GetHourlyStats (an error status). Every message is delivered
/// and its sender has heard so.
async fn chat(server: &TestServer) -> Chat {
    let mut alice = ChatSession::new_user(server, "Alice").await;
    let mut bob = ChatSession::new_user(server, "Bob").await;
    let mut web = web_chat(server);
    let mut carol = web
        .subscribe(SubscribeRequest {
            hello: Some(Hello {
                display_name: "Carol".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("Subscribe over grpc-web")
        .into_inner();
    let Event::Welcome(welcome) = next_web_event(&mut carol).await else {
        panic!("Carol's first event is not a welcome")
    };
    let carol_id = welcome.user.unwrap().user_id;

    alice.send_message(&bob.user_id(), "a-1", "hello Bob").await;
    alice
        .next_where(|e| matches!(e, Event::Ack(_)).then_some(()))
        .await;
    bob.next_where(|e| matches!(e, Event::Message(_)).then_some(()))
        .await;
    // Alice hears DELIVERED once the tracker has recorded the delivery.
    alice
        .next_where(|e| match e {
            Event::Status(s) if s.status == MessageStatus::Delivered as i32 => Some(()),
            _ => None,
        })
        .await;
    alice
        .send(client_event::Event::Ping(Ping { nonce: 7 }))
        .await;
    alice
        .next_where(|e| matches!(e, Event::Pong(_)).then_some(()))
        .await;

    web.send_message(authed(
        &welcome.token,
        SendMessageRequest {
            client_msg_id: "c-1".into(),
            to_user_id: alice.user_id(),
            text: "hello Alice".into(),
            ..Default::default()
        },
    ))
    .await
    .expect("SendMessage over grpc-web");
    alice
        .next_where(|e| matches!(e, Event::Message(_)).then_some(()))
        .await;
    loop {
        if let Event::Status(s) = next_web_event(&mut carol).await
            && s.status == MessageStatus::Delivered as i32
        {
            break;
        }
    }

    alice.send_message(&bob.user_id(), "a-2", "").await;
    let refused = alice
        .next_where(|e| match e {
            Event::Error(error) => Some(error),
            _ => None,
        })
        .await;
    assert_eq!(refused.code, "INVALID_ARGUMENT");
    let bad = metrics_client(server)
        .await
        .get_hourly_stats(GetHourlyStatsRequest { hours: 0 })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    Chat {
        alice,
        bob,
        carol,
        carol_id,
    }
}

/// The Prometheus series follow the chat: sessions by transport, messages by kind, errors by
/// code, presence changes, and the histograms' counts.
async fn prometheus_series_follow_a_chat(backend: Backend) {
    let server = TestServer::start(backend).await;
    within(Duration::from_secs(60), async {
        let chat = chat(&server).await;
        let text = scrape(&server).await;
        let value = |name: &str| {
            series(&text, name).unwrap_or_else(|| panic!("no series {name} in:\n{text}"))
        };
        assert_eq!(value(r#"fastchat_sessions_total{transport="grpc"}"#), 2.0);
        assert_eq!(
            value(r#"fastchat_sessions_total{transport="grpc-web"}"#),
            1.0
        );
        assert_eq!(value(r#"fastchat_sessions_active{transport="grpc"}"#), 2.0);
        assert_eq!(
            value(r#"fastchat_sessions_active{transport="grpc-web"}"#),
            1.0
        );
        assert_eq!(value("fastchat_sessions_peak"), 3.0);
        assert_eq!(
            value(r#"fastchat_messages_total{kind="send_message"}"#),
            3.0
        );
        assert_eq!(value(r#"fastchat_messages_total{kind="ping"}"#), 1.0);
        assert_eq!(value(r#"fastchat_messages_total{kind="typing"}"#), 0.0);
        // One error event (the empty text) and one error status (hours = 0).
        assert_eq!(
            value(r#"fastchat_errors_total{code="INVALID_ARGUMENT"}"#),
            2.0
        );
        assert!(value("fastchat_connections_total") >= 3.0);
        assert!(value("fastchat_connections_active") >= 3.0);
        assert!(value("fastchat_connections_peak") >= value("fastchat_connections_active"));
        assert!(value(r#"fastchat_db_query_seconds_count{statement="insert"}"#) >= 2.0);
        assert!(value(r#"fastchat_db_query_seconds_count{statement="select"}"#) >= 1.0);
        // Recorded just after the client hears back: the processing time after the ack is
        // sent, the presence change on the next tick.
        until_series(&server, "fastchat_message_processing_seconds_count", 2.0).await;
        until_series(&server, "fastchat_delivery_latency_seconds_count", 2.0).await;
        until_series(
            &server,
            r#"fastchat_presence_changes_total{status="online"}"#,
            3.0,
        )
        .await;

        // Carol's stream ends when her client drops it; the total stays.
        drop(chat.carol);
        until_series(
            &server,
            r#"fastchat_sessions_active{transport="grpc-web"}"#,
            0.0,
        )
        .await;
        let text = scrape(&server).await;
        assert_eq!(
            series(&text, r#"fastchat_sessions_total{transport="grpc-web"}"#),
            Some(1.0)
        );
        drop((chat.alice, chat.bob));
    })
    .await;
}

/// Streams' error statuses count under their code: one refused before it started (the status
/// in the response headers) and one ended later (the status in its trailers).
async fn stream_error_statuses_are_counted(backend: Backend) {
    let server = TestServer::start(backend).await;
    within(Duration::from_secs(30), async {
        let mut chat = ChatServiceClient::new(server.channel().await.unwrap());
        // A Chat stream whose first event is not a hello is refused.
        let ping = ClientEvent {
            event: Some(client_event::Event::Ping(Ping { nonce: 1 })),
        };
        let refused = chat.chat(tokio_stream::iter([ping])).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        until_series(
            &server,
            r#"fastchat_errors_total{code="INVALID_ARGUMENT"}"#,
            1.0,
        )
        .await;

        // A Presence stream that gets an invalid update ends with INVALID_ARGUMENT.
        let dana = ChatSession::new_user(&server, "Dana").await;
        let mut presence = server.presence().await.unwrap();
        let update = PresenceUpdate {
            status: PresenceStatus::Offline as i32,
        };
        let mut stream = presence
            .presence(authed(&dana.token(), tokio_stream::iter([update])))
            .await
            .expect("the stream starts")
            .into_inner();
        let ended = loop {
            match tokio::time::timeout(WAIT, stream.message()).await.unwrap() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream must end with an error"),
                Err(status) => break status,
            }
        };
        assert_eq!(ended.code(), Code::InvalidArgument);
        until_series(
            &server,
            r#"fastchat_errors_total{code="INVALID_ARGUMENT"}"#,
            2.0,
        )
        .await;
    })
    .await;
}

/// A call the server's own limits end (here the request timeout) counts under its code too.
async fn calls_ended_by_the_server_limits_are_counted(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.request_timeout_secs = 1;
        config.hello_timeout_secs = 60;
    })
    .await;
    within(Duration::from_secs(30), async {
        // A Chat call that never sends its Hello is still being worked on when the timeout ends it.
        let (_hello, never) = tokio::sync::mpsc::channel::<ClientEvent>(1);
        let mut chat = ChatServiceClient::new(server.channel().await.unwrap());
        let status = chat
            .chat(tokio_stream::wrappers::ReceiverStream::new(never))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded);
        let text = scrape(&server).await;
        assert_eq!(
            series(&text, r#"fastchat_errors_total{code="DEADLINE_EXCEEDED"}"#),
            Some(1.0),
            "{text}"
        );
    })
    .await;
}

/// GetMetrics gives the live figures of the same chat, with last-minute rates.
async fn get_metrics_matches_the_chat(backend: Backend) {
    let server = TestServer::start(backend).await;
    within(Duration::from_secs(60), async {
        let _chat = chat(&server).await;
        eventually("both chat messages processed", || async {
            get_metrics(&server).await.avg_processing_ms > 0.0
        })
        .await;
        let m = get_metrics(&server).await;
        assert!(m.uptime_seconds < 600, "{m:?}");
        assert_eq!(m.sessions_total, 3);
        assert_eq!(m.sessions_active, 3);
        assert_eq!(m.sessions_peak, 3);
        assert!(m.connections_active >= 3, "{m:?}");
        assert!(m.connections_total >= m.connections_active, "{m:?}");
        assert!(m.connections_peak >= m.connections_active, "{m:?}");
        assert_eq!(m.messages_by_kind["send_message"], 3);
        assert_eq!(m.messages_by_kind["ping"], 1);
        assert_eq!(m.messages_total, 4);
        // Four messages within the last minute, whatever the uptime.
        assert_eq!((m.messages_per_second * 60.0).round(), 4.0, "{m:?}");
        assert!(m.connections_per_minute >= 3, "{m:?}");
        assert!(m.connections_per_minute <= m.connections_total, "{m:?}");
        assert!(m.p99_processing_ms >= m.avg_processing_ms, "{m:?}");
        assert_eq!(m.errors_by_code["INVALID_ARGUMENT"], 2);
        assert_eq!(m.errors_total, 2);
        assert_eq!(m.rate_limit_hits_total, 0);
        assert!(m.rate_limit_hits_by_kind.is_empty());
    })
    .await;
}

/// A message past the rate limit counts as a rate-limit hit of kind `message`, for Prometheus,
/// GetMetrics and the sender's GetUserMetrics, and its RATE_LIMITED error event as an error.
async fn rate_limit_hits_are_counted(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.rate_messages_per_minute = 1;
        config.rate_messages_burst = 1;
    })
    .await;
    within(Duration::from_secs(30), async {
        let mut alice = ChatSession::new_user(&server, "Alice").await;
        let bob = ChatSession::new_user(&server, "Bob").await;
        alice.send_message(&bob.user_id(), "a-1", "one").await;
        alice
            .next_where(|e| matches!(e, Event::Ack(_)).then_some(()))
            .await;
        alice.send_message(&bob.user_id(), "a-2", "two").await;
        let refused = alice
            .next_where(|e| match e {
                Event::Error(error) => Some(error),
                _ => None,
            })
            .await;
        assert_eq!(refused.code, "RATE_LIMITED");

        let text = scrape(&server).await;
        assert_eq!(
            series(&text, r#"fastchat_rate_limited_total{kind="message"}"#),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            series(&text, r#"fastchat_errors_total{code="RATE_LIMITED"}"#),
            Some(1.0),
            "{text}"
        );
        let m = get_metrics(&server).await;
        assert_eq!(m.rate_limit_hits_total, 1);
        assert_eq!(m.rate_limit_hits_by_kind["message"], 1);
        let mine = metrics_client(&server)
            .await
            .get_user_metrics(authed(
                &alice.token(),
                GetUserMetricsRequest {
                    user_id: alice.user_id(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(mine.rate_limit_hits, 1);
        assert_eq!(mine.messages_sent, 1, "the refused message was not stored");
    })
    .await;
}

/// TCP connections count when accepted, and as active until they close.
async fn connections_are_counted_open_and_closed(backend: Backend) {
    let server = TestServer::start(backend).await;
    within(Duration::from_secs(30), async {
        // One client for every call, so its connection is the only other one.
        let metrics = metrics_client(&server).await;
        let figures = || {
            let mut metrics = metrics.clone();
            async move {
                let m = metrics.get_metrics(GetMetricsRequest {}).await.unwrap();
                m.into_inner()
            }
        };
        // The start-up health checks' connections close; this client's stays.
        eventually("only this client connected", || async {
            figures().await.connections_active == 1
        })
        .await;
        let before = figures().await;
        let extra = [
            tokio::net::TcpStream::connect(server.addr).await.unwrap(),
            tokio::net::TcpStream::connect(server.addr).await.unwrap(),
        ];
        eventually("two more accepted", || async {
            figures().await.connections_total == before.connections_total + 2
        })
        .await;
        let with_extra = figures().await;
        assert_eq!(with_extra.connections_active, 3);
        assert!(with_extra.connections_peak >= 3);
        assert!(with_extra.connections_per_minute >= 2);
        drop(extra);
        eventually("the two closed", || async {
            figures().await.connections_active == 1
        })
        .await;
        assert_eq!(
            figures().await.connections_total,
            with_extra.connections_total
        );
    })
    .await;
}

/// GetUserMetrics: a user's own figures from the database and the hub; other users' are refused.
async fn get_user_metrics_counts_one_users_figures(backend: Backend) {
    let server = TestServer::start(backend).await;
    within(Duration::from_secs(60), async {
        let chat = chat(&server).await;
        let mut metrics = metrics_client(&server).await;
        let alice_id = chat.alice.user_id();
        let mine = |token: &str, user_id: &str| {
            authed(
                token,
                GetUserMetricsRequest {
                    user_id: user_id.to_owned(),
                },
            )
        };
        let alice = metrics
            .get_user_metrics(mine(&chat.alice.token(), &alice_id))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(alice.user_id, alice_id);
        assert_eq!(alice.messages_sent, 1, "the empty text was never stored");
        assert_eq!(alice.messages_received, 1, "Carol's message");
        assert_eq!(alice.sessions, 1);
        assert_eq!(alice.rate_limit_hits, 0);
        let bob = metrics
            .get_user_metrics(mine(&chat.bob.token(), &chat.bob.user_id()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((bob.messages_sent, bob.messages_received), (0, 1));

        let refused = |status: Status| (status.code(), status.message().to_owned());
        let (code, _) = refused(
            metrics
                .get_user_metrics(mine(&chat.bob.token(), &alice_id))
                .await
                .unwrap_err(),
        );
        assert_eq!(code, Code::PermissionDenied);
        let unknown = uuid::Uuid::new_v4().to_string();
        let (code, _) = refused(
            metrics
                .get_user_metrics(mine(&chat.bob.token(), &unknown))
                .await
                .unwrap_err(),
        );
        assert_eq!(code, Code::NotFound);
        let (code, _) = refused(
            metrics
                .get_user_metrics(GetUserMetricsRequest {
                    user_id: alice_id.clone(),
                })
                .await
                .unwrap_err(),
        );
        assert_eq!(code, Code::Unauthenticated);
        let status = metrics
            .get_user_metrics(mine(&chat.alice.token(), "not-a-uuid"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(bad_field(&status), "user_id");
        assert!(!chat.carol_id.is_empty());
    })
    .await;
}

/// Hours outside 1..=168 and days outside 1..=30 are refused naming the field; the bounds are
/// served, one bucket per hour or day, oldest first, ending with the current one.
async fn stats_ranges_are_checked(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut metrics = metrics_client(&server).await;
    for hours in [0, 169, u32::MAX] {
        let status = metrics
            .get_hourly_stats(GetHourlyStatsRequest { hours })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "hours = {hours}");
        assert_eq!(bad_field(&status), "hours");
    }
    for days in [0, 31] {
        let status = metrics
            .get_daily_stats(GetDailyStatsRequest { days })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "days = {days}");
        assert_eq!(bad_field(&status), "days");
    }
    let now = chrono::Utc::now().timestamp();
    for (hours, step) in [(1, 3600), (168, 3600)] {
        let buckets = metrics
            .get_hourly_stats(GetHourlyStatsRequest { hours })
            .await
            .unwrap()
            .into_inner()
            .buckets;
        assert_spaced(&buckets, hours as usize, step, now);
    }
    for days in [1, 30] {
        let buckets = metrics
            .get_daily_stats(GetDailyStatsRequest { days })
            .await
            .unwrap()
            .into_inner()
            .buckets;
        assert_spaced(&buckets, days as usize, 86_400, now);
    }
}

/// `count` buckets `step` seconds apart, oldest first, the last one holding `now`.
fn assert_spaced(buckets: &[StatsBucket], count: usize, step: i64, now: i64) {
    assert_eq!(buckets.len(), count);
    let starts: Vec<i64> = buckets
        .iter()
        .map(|b| b.start.as_ref().unwrap().seconds)
        .collect();
    for pair in starts.windows(2) {
        assert_eq!(pair[1] - pair[0], step);
    }
    let last = *starts.last().unwrap();
    assert!(
        last <= now && now < last + step,
        "{last} does not hold {now}"
    );
    assert_eq!(
        last % step,
        0,
        "buckets start on the hour or at midnight UTC"
    );
}

/// Totals of some buckets: connections, messages, errors.
fn totals(buckets: &[StatsBucket]) -> (u64, u64, u64) {
    buckets.iter().fold((0, 0, 0), |(c, m, e), b| {
        (c + b.connections, m + b.messages, e + b.errors)
    })
}

async fn stored_stats(server: &TestServer) -> ((u64, u64, u64), (u64, u64, u64)) {
    let mut metrics = metrics_client(server).await;
    // Two of each, in case the restart crosses an hour or midnight.
    let hourly = metrics
        .get_hourly_stats(GetHourlyStatsRequest { hours: 2 })
        .await
        .unwrap()
        .into_inner()
        .buckets;
    let daily = metrics
        .get_daily_stats(GetDailyStatsRequest { days: 2 })
        .await
        .unwrap()
        .into_inner()
        .buckets;
    (totals(&hourly), totals(&daily))
}

/// The hourly and daily buckets count the chat as it happens, are stored at shutdown, and are
/// there after a restart on the same database.
async fn stats_survive_a_restart(backend: Backend) {
    let database = FreshDatabase::create(backend).await;
    let server = TestServer::start_on(&database.url, |_| {}).await;
    let before = within(Duration::from_secs(60), async {
        let chat = chat(&server).await;
        let (hourly, daily) = stored_stats(&server).await;
        let (connections, messages, errors) = hourly;
        assert!(connections >= 3, "{hourly:?}");
        assert_eq!(messages, 4, "three sends and a ping");
        assert!(errors >= 2, "{hourly:?}");
        assert_eq!(daily, hourly);
        drop(chat);
        hourly
    })
    .await;
    server.stop().await;

    let server = TestServer::start_on(&database.url, |_| {}).await;
    let (hourly, daily) = stored_stats(&server).await;
    let (connections, messages, errors) = hourly;
    assert!(connections > before.0, "stored and new: {hourly:?}");
    assert_eq!(messages, before.1, "the first run's messages, none since");
    assert!(errors >= before.2, "{hourly:?}");
    assert_eq!(daily, hourly);
    server.stop().await;
}

/// While the server runs, its counts reach `stats_buckets` within the flush interval (10 s), not
/// only at shutdown: the chat's four messages in the hourly rows and in the daily rows.
async fn stats_are_stored_while_running(backend: Backend) {
    use fastchat::db::tables::stats_buckets;
    use sea_orm::EntityTrait;

    let server = TestServer::start(backend).await;
    let _chat = within(Duration::from_secs(60), chat(&server)).await;
    let db = server.db().await;
    // Summed per kind, in case the test runs across an hour or midnight.
    let stored = |rows: &[stats_buckets::Model], kind: &str| -> i64 {
        rows.iter()
            .filter(|row| row.kind == kind)
            .map(|row| row.messages)
            .sum()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows = stats_buckets::Entity::find().all(&db).await.unwrap();
        if stored(&rows, "hour") == 4 && stored(&rows, "day") == 4 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not stored while running: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    db.close().await.unwrap();
}

on_both_databases!(
    calls_ended_by_the_server_limits_are_counted,
    rate_limit_hits_are_counted,
    stats_are_stored_while_running,
    prometheus_series_follow_a_chat,
    stream_error_statuses_are_counted,
    get_metrics_matches_the_chat,
    connections_are_counted_open_and_closed,
    get_user_metrics_counts_one_users_figures,
    stats_ranges_are_checked,
    stats_survive_a_restart,
);

/// `/metrics` is Prometheus text with help and type lines for every series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_describes_every_series() {
    let server = TestServer::start(Backend::Sqlite).await;
    let text = scrape(&server).await;
    let kinds: HashMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_once(' '))
        .collect();
    for (name, kind) in [
        ("fastchat_connections_total", "counter"),
        ("fastchat_connections_active", "gauge"),
        ("fastchat_connections_peak", "gauge"),
        ("fastchat_sessions_total", "counter"),
        ("fastchat_sessions_active", "gauge"),
        ("fastchat_sessions_peak", "gauge"),
        ("fastchat_messages_total", "counter"),
        ("fastchat_message_processing_seconds", "histogram"),
        ("fastchat_delivery_latency_seconds", "histogram"),
        ("fastchat_db_query_seconds", "histogram"),
        ("fastchat_presence_changes_total", "counter"),
        ("fastchat_dead_nodes_cleaned_total", "counter"),
    ] {
        assert_eq!(kinds.get(name), Some(&kind), "{name} in:\n{text}");
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no help"
        );
    }
    // Known labels are there from the start, at zero.
    assert_eq!(
        series(&text, r#"fastchat_sessions_total{transport="grpc-web"}"#),
        Some(0.0)
    );
    assert_eq!(
        series(&text, r#"fastchat_presence_changes_total{status="away"}"#),
        Some(0.0)
    );
}
