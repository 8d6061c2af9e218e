//! Rate limits, session and connection caps, load shedding and request timeouts, each past its
//! limit: what the client is told, that the stream stays open, and that the limit slides.

mod common;

use std::time::Duration;

use common::{ChatSession, TestServer, WAIT, authed, within};
use fastchat::testing::{Backend, on_both_databases};
use fastchat::{
    config::Config,
    db::tables::users,
    proto::{
        ClientEvent, ErrorEvent, GetHistoryRequest, HeartbeatRequest, Hello, ListOnlineRequest,
        Ping, SendMessageRequest, SetTypingRequest, WatchPresenceRequest,
        chat_service_client::ChatServiceClient, client_event, server_event::Event,
    },
};
use sea_orm::{EntityTrait, PaginatorTrait};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Starts a server whose limits are the test config's (lifted) changed by `tweak`.
async fn server_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(Backend::Sqlite, tweak).await
}

fn error(event: Event) -> Option<ErrorEvent> {
    match event {
        Event::Error(e) => Some(e),
        _ => None,
    }
}

/// Waits for the next ack or error of a send, by client_msg_id.
async fn outcome(session: &mut ChatSession) -> (String, Result<(), ErrorEvent>) {
    session
        .next_where(|event| match event {
            Event::Ack(ack) => Some((ack.client_msg_id, Ok(()))),
            Event::Error(err) => Some((err.client_msg_id.clone(), Err(err))),
            _ => None,
        })
        .await
}

/// The wait a RESOURCE_EXHAUSTED status's RetryInfo gives.
fn retry_delay(status: &Status) -> Duration {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RESOURCE_EXHAUSTED carries RetryInfo with a delay")
}

fn assert_rate_limited(err: &ErrorEvent, client_msg_id: &str) {
    assert_eq!(err.code, "RATE_LIMITED", "{err:?}");
    assert_eq!(err.client_msg_id, client_msg_id);
    assert!(
        (1..=1000).contains(&err.retry_after_ms),
        "at 60 a minute the next one is due within a second: {err:?}"
    );
}

#[tokio::test]
async fn messages_past_the_burst_are_dropped_with_rate_limited_and_the_limit_slides() {
    let server = server_with(|c| {
        c.rate_messages_per_minute = 60;
        c.rate_messages_burst = 3;
    })
    .await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let bob = ChatSession::new_user(&server, "Bob").await;

    for n in 1..=5 {
        alice
            .send_message(&bob.user_id(), &format!("m-{n}"), &format!("text {n}"))
            .await;
    }
    let mut limited = Vec::new();
    for _ in 1..=5 {
        let (id, result) = outcome(&mut alice).await;
        match result {
            Ok(()) => assert!(["m-1", "m-2", "m-3"].contains(&id.as_str()), "{id}"),
            Err(err) => {
                assert_rate_limited(&err, &id);
                limited.push(err);
            }
        }
    }
    let ids: Vec<_> = limited.iter().map(|e| e.client_msg_id.as_str()).collect();
    assert_eq!(ids, ["m-4", "m-5"], "the burst is 3");

    // The stream stayed open, and waiting as told lets the next message through.
    let wait = limited.iter().map(|e| e.retry_after_ms).max().unwrap();
    tokio::time::sleep(Duration::from_millis(u64::from(wait))).await;
    alice.send_message(&bob.user_id(), "m-6", "text 6").await;
    assert_eq!(outcome(&mut alice).await, ("m-6".to_owned(), Ok(())));

    // Dropped means dropped: Bob's history has no trace of the limited ones.
    let request = GetHistoryRequest {
        peer_user_id: alice.user_id(),
        ..Default::default()
    };
    let history = server
        .chat()
        .await
        .unwrap()
        .get_history(authed(&bob.token(), request))
        .await
        .unwrap()
        .into_inner();
    let texts: Vec<_> = history.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["text 1", "text 2", "text 3", "text 6"]);
}

#[tokio::test]
async fn the_default_limit_is_a_burst_of_ten_messages_then_one_a_second() {
    let server = server_with(|c| {
        let defaults = Config::from_env();
        c.rate_messages_per_minute = defaults.rate_messages_per_minute;
        c.rate_messages_burst = defaults.rate_messages_burst;
    })
    .await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let bob = ChatSession::new_user(&server, "Bob").await;
    for n in 1..=11 {
        alice
            .send_message(&bob.user_id(), &format!("m-{n}"), "hi")
            .await;
    }
    let mut outcomes = Vec::new();
    for _ in 1..=11 {
        outcomes.push(outcome(&mut alice).await);
    }
    let limited: Vec<_> = outcomes
        .iter()
        .filter_map(|(id, result)| result.as_ref().err().map(|err| (id, err)))
        .collect();
    assert_eq!(
        limited.len(),
        1,
        "ten pass, the eleventh waits: {outcomes:?}"
    );
    assert_rate_limited(limited[0].1, "m-11");
}

#[tokio::test]
async fn unary_sends_past_the_limit_get_resource_exhausted_with_retry_info() {
    let server = server_with(|c| {
        c.rate_messages_per_minute = 60;
        c.rate_messages_burst = 2;
    })
    .await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let bob = ChatSession::new_user(&server, "Bob").await;
    let mut client = server.chat().await.unwrap();
    let send = |n: u32| {
        authed(
            &alice.token(),
            SendMessageRequest {
                to_user_id: bob.user_id(),
                client_msg_id: format!("u-{n}"),
                text: "hi".into(),
                ..Default::default()
            },
        )
    };
    client.send_message(send(1)).await.unwrap();
    client.send_message(send(2)).await.unwrap();
    let refused = client.send_message(send(3)).await.unwrap_err();
    let delay = retry_delay(&refused);
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(1),
        "{delay:?}"
    );

    tokio::time::sleep(delay).await;
    client
        .send_message(send(3))
        .await
        .expect("let through after the RetryInfo delay");
}

#[tokio::test]
async fn typing_and_pings_past_their_limits_are_refused_on_the_stream_which_stays_open() {
    let server = server_with(|c| {
        c.rate_typing_per_minute = 60;
        c.rate_typing_burst = 2;
        c.rate_pings_per_minute = 60;
        c.rate_pings_burst = 2;
    })
    .await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let bob = ChatSession::new_user(&server, "Bob").await;

    for is_typing in [true, false, true] {
        alice
            .send(client_event::Event::Typing(SetTypingRequest {
                to_user_id: bob.user_id(),
                is_typing,
            }))
            .await;
    }
    let err = alice.next_where(error).await;
    assert_eq!(err.code, "RATE_LIMITED");
    assert!(err.message.contains("typing"), "{err:?}");
    assert!(err.retry_after_ms > 0);

    for nonce in 1..=3 {
        alice.send(client_event::Event::Ping(Ping { nonce })).await;
    }
    let mut pongs = Vec::new();
    let err = alice
        .next_where(|event| match event {
            Event::Pong(pong) => {
                pongs.push(pong.nonce);
                None
            }
            Event::Error(err) => Some(err),
            _ => None,
        })
        .await;
    assert_eq!(err.code, "RATE_LIMITED");
    assert!(err.message.contains("ping"), "{err:?}");
    assert_eq!(pongs, [1, 2], "the third ping is dropped");

    // Each kind has its own allowance: a message still goes through.
    alice
        .send_message(&bob.user_id(), "m-1", "still here")
        .await;
    assert_eq!(outcome(&mut alice).await, ("m-1".to_owned(), Ok(())));
}

#[tokio::test]
async fn heartbeats_and_other_calls_past_their_limits_get_resource_exhausted() {
    let server = server_with(|c| {
        c.rate_pings_per_minute = 60;
        c.rate_pings_burst = 2;
        c.rate_requests_per_minute = 60;
        c.rate_requests_burst = 2;
    })
    .await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let bob = ChatSession::new_user(&server, "Bob").await;

    let mut presence = server.presence().await.unwrap();
    let heartbeat = || authed(&alice.token(), HeartbeatRequest::default());
    presence.heartbeat(heartbeat()).await.unwrap();
    presence.heartbeat(heartbeat()).await.unwrap();
    retry_delay(&presence.heartbeat(heartbeat()).await.unwrap_err());

    let mut chat = server.chat().await.unwrap();
    let history = || {
        authed(
            &alice.token(),
            GetHistoryRequest {
                peer_user_id: bob.user_id(),
                ..Default::default()
            },
        )
    };
    chat.get_history(history()).await.unwrap();
    chat.get_history(history()).await.unwrap();
    retry_delay(&chat.get_history(history()).await.unwrap_err());
}

#[tokio::test]
async fn a_user_opening_sessions_faster_than_allowed_is_refused_until_the_allowance_grows() {
    let server = server_with(|c| c.rate_sessions_per_minute = 2).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let _second = alice.again(&server).await;
    let hello = alice.hello_again();
    let refused = ChatSession::open(&server, hello.clone())
        .await
        .err()
        .unwrap();
    let delay = retry_delay(&refused);
    assert!(
        delay <= Duration::from_secs(30),
        "2 a minute: one every 30 s"
    );
}

/// A Hello or heartbeat refused by a rate limit changes nothing: the new name it carried is
/// neither stored nor shown to others.
async fn a_refused_hello_or_heartbeat_does_not_rename_the_user(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.rate_sessions_per_minute = 1;
        c.rate_pings_per_minute = 1;
        c.rate_pings_burst = 1;
    })
    .await;
    // Alice's first session takes her one session of the minute, her first heartbeat her one
    // heartbeat.
    let alice = ChatSession::new_user(&server, "Alice").await;
    let mut presence = server.presence().await.unwrap();
    presence
        .heartbeat(authed(&alice.token(), HeartbeatRequest::default()))
        .await
        .unwrap();

    let id = uuid::Uuid::parse_str(&alice.user_id()).unwrap();
    let db = server.db().await;
    let stored_name = async || {
        let row = users::Entity::find_by_id(id).one(&db).await.unwrap();
        row.unwrap().display_name
    };

    let hello = Hello {
        display_name: "Mallory".into(),
        ..alice.hello_again()
    };
    let refused = ChatSession::open(&server, hello).await.err().unwrap();
    retry_delay(&refused);
    assert_eq!(stored_name().await, "Alice", "after the refused Hello");

    let heartbeat = HeartbeatRequest {
        display_name: "Eve".into(),
        ..Default::default()
    };
    let refused = presence
        .heartbeat(authed(&alice.token(), heartbeat))
        .await
        .unwrap_err();
    retry_delay(&refused);
    assert_eq!(stored_name().await, "Alice", "after the refused heartbeat");

    let online = presence
        .list_online(ListOnlineRequest::default())
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = online
        .users
        .iter()
        .map(|p| p.user.as_ref().unwrap().display_name.as_str())
        .collect();
    assert_eq!(names, ["Alice"], "the name others see");
    server.stop().await;
}

on_both_databases!(a_refused_hello_or_heartbeat_does_not_rename_the_user);

#[tokio::test]
async fn one_address_opening_sessions_for_many_users_is_limited() {
    let server = server_with(|c| c.rate_sessions_per_minute_per_ip = 3).await;
    let _alice = ChatSession::new_user(&server, "Alice").await;
    let _bob = ChatSession::new_user(&server, "Bob").await;
    let mut presence = server.presence().await.unwrap();
    let _watching = presence
        .watch_presence(WatchPresenceRequest::default())
        .await
        .expect("the third session from this address");
    let refused = presence
        .watch_presence(WatchPresenceRequest::default())
        .await
        .expect_err("a fourth from the same address within the minute");
    retry_delay(&refused);
    let refused = ChatSession::new_user_result(&server, "Carol").await;
    retry_delay(&refused.err().unwrap());
}

/// One address claiming users in bulk (3,000 heartbeats without a token, as fast as it can) gets
/// the default burst, then RESOURCE_EXHAUSTED with RetryInfo before anything is written: only
/// the accepted users are stored and listed online. Claims by Hello share the allowance; a user
/// coming back with their token claims nothing and is let in.
async fn one_address_claiming_users_in_bulk_gets_the_burst_then_retry_info(backend: Backend) {
    const CLAIMS: usize = 3_000;
    let defaults = Config::from_env();
    let per_minute = defaults.rate_claims_per_minute_per_ip;
    let burst = defaults.rate_claims_burst_per_ip as usize;
    let server = TestServer::start_with(backend, |c| {
        c.rate_claims_per_minute_per_ip = per_minute;
        c.rate_claims_burst_per_ip = burst as u32;
    })
    .await;
    let mut presence = server.presence().await.unwrap();

    let started = std::time::Instant::now();
    // Many at once, but not so many that the server sheds them for its own concurrency limit.
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let mut claims = tokio::task::JoinSet::new();
    for n in 0..CLAIMS {
        let permit = in_flight.clone().acquire_owned().await.unwrap();
        let mut presence = presence.clone();
        claims.spawn(async move {
            let claim = HeartbeatRequest {
                display_name: format!("bot-{n}"),
                ..Default::default()
            };
            let result = presence.heartbeat(claim).await;
            drop(permit);
            result
        });
    }
    let (mut tokens, mut refused) = (Vec::new(), 0);
    while let Some(result) = claims.join_next().await {
        match result.unwrap() {
            Ok(response) => tokens.push(response.into_inner().token),
            Err(status) => {
                let delay = retry_delay(&status);
                assert!(delay <= Duration::from_secs(60) / per_minute, "{delay:?}");
                refused += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(tokens.len() + refused, CLAIMS);
    // The burst at once, and whatever the allowance grew back meanwhile.
    let regained = (elapsed.as_secs_f64() * f64::from(per_minute) / 60.0).ceil() as usize;
    assert!(
        (burst..=burst + regained).contains(&tokens.len()),
        "{} claims accepted in {elapsed:?}",
        tokens.len()
    );

    let stored = users::Entity::find()
        .count(&server.db().await)
        .await
        .unwrap();
    assert_eq!(stored, tokens.len() as u64, "refused claims store nothing");
    let online = presence
        .list_online(ListOnlineRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        online.count as usize,
        tokens.len(),
        "nor list anyone online"
    );

    let refused = ChatSession::new_user_result(&server, "Carol").await;
    retry_delay(&refused.err().unwrap());
    let returning = Hello {
        token: tokens[0].clone(),
        ..Default::default()
    };
    ChatSession::open(&server, returning)
        .await
        .expect("a user coming back with their token");
}

on_both_databases!(one_address_claiming_users_in_bulk_gets_the_burst_then_retry_info);

#[tokio::test]
async fn a_user_holds_at_most_the_session_cap_and_gets_a_slot_back_when_one_closes() {
    let server = server_with(|c| c.max_sessions_per_user = 2).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let second = alice.again(&server).await;
    let hello = alice.hello_again();
    let refused = ChatSession::open(&server, hello.clone())
        .await
        .err()
        .unwrap();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("2 sessions"), "{refused:?}");

    drop(second);
    within(WAIT, async {
        loop {
            if ChatSession::open(&server, hello.clone()).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn past_the_global_session_cap_new_sessions_get_unavailable() {
    let server = server_with(|c| c.max_sessions = 2).await;
    let _alice = ChatSession::new_user(&server, "Alice").await;
    let _bob = ChatSession::new_user(&server, "Bob").await;
    let refused = ChatSession::new_user_result(&server, "Carol").await;
    assert_eq!(refused.err().unwrap().code(), Code::Unavailable);
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_and_a_freed_slot_is_reused() {
    let server = server_with(|c| c.max_connections = 1).await;
    // The harness's start-up check held the one slot; wait until it is free again.
    let mut first = within(WAIT, async {
        loop {
            if let Ok(session) = ChatSession::new_user_result(&server, "Alice").await {
                return session;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    let mut presence = server.presence().await.unwrap();
    let refused = presence
        .list_online(ListOnlineRequest::default())
        .await
        .unwrap_err();
    // The client sees its connection closed; tonic reports that as UNAVAILABLE or CANCELLED.
    assert!(
        matches!(refused.code(), Code::Unavailable | Code::Cancelled),
        "{refused:?}"
    );
    first
        .send(client_event::Event::Ping(Ping { nonce: 7 }))
        .await;
    let pong = first
        .next_where(|event| match event {
            Event::Pong(pong) => Some(pong.nonce),
            _ => None,
        })
        .await;
    assert_eq!(pong, 7, "the connection within the cap still works");

    drop(first);
    within(WAIT, async {
        loop {
            let Ok(mut presence) = server.presence().await else {
                continue;
            };
            if presence
                .list_online(ListOnlineRequest::default())
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// A Chat call whose Hello has not been sent: the server is still working on it.
async fn chat_without_hello(
    server: &TestServer,
) -> (
    mpsc::Sender<ClientEvent>,
    tokio::task::JoinHandle<Result<(), Status>>,
) {
    let (tx, rx) = mpsc::channel(1);
    let mut client = ChatServiceClient::new(server.channel().await.unwrap());
    let call = tokio::spawn(async move { client.chat(ReceiverStream::new(rx)).await.map(|_| ()) });
    (tx, call)
}

#[tokio::test]
async fn calls_past_the_concurrency_limit_are_shed_with_unavailable() {
    let server = server_with(|c| {
        c.max_concurrent_requests = 1;
        c.hello_timeout_secs = 60;
    })
    .await;
    let (hello_tx, pending) = chat_without_hello(&server).await;

    let mut presence = server.presence().await.unwrap();
    let shed = within(WAIT, async {
        loop {
            match presence.list_online(ListOnlineRequest::default()).await {
                Err(status) => return status,
                // The pending call has not reached the server yet.
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    assert_eq!(shed.code(), Code::Unavailable, "{shed:?}");

    // Once the pending call is answered, calls are served again.
    hello_tx
        .send(ClientEvent {
            event: Some(client_event::Event::Hello(fastchat::proto::Hello {
                display_name: "Late".into(),
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    pending.await.unwrap().unwrap();
    presence
        .list_online(ListOnlineRequest::default())
        .await
        .expect("served once the slot is free");
}

#[tokio::test]
async fn a_call_slower_than_the_request_timeout_gets_deadline_exceeded() {
    let server = server_with(|c| {
        c.request_timeout_secs = 1;
        c.hello_timeout_secs = 60;
    })
    .await;
    let (_hello_tx, pending) = chat_without_hello(&server).await;
    let status = within(WAIT, pending).await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
}

#[tokio::test]
async fn one_connection_carries_at_most_the_stream_cap_at_once() {
    let server = server_with(|c| c.max_streams_per_connection = 1).await;
    let channel = server.channel().await.unwrap();
    let alice = ChatSession::new_user(&server, "Alice").await;
    let hello = alice.hello_again();
    let first = ChatSession::open_on(channel.clone(), hello.clone())
        .await
        .unwrap();
    // The client waits for the server to allow another stream on this connection.
    let second = tokio::time::timeout(
        Duration::from_secs(1),
        ChatSession::open_on(channel.clone(), hello.clone()),
    )
    .await;
    assert!(second.is_err(), "a second stream opened on the connection");

    drop(first);
    within(WAIT, ChatSession::open_on(channel, hello))
        .await
        .expect("the stream opens once the first has closed");
}
