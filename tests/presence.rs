//! Presence: snapshots and changes, AWAY across sessions, the offline grace period, heartbeats,
//! the presence streams, SetStatus, and the write-through to `users_online` and `sessions`.

mod common;

use std::time::{Duration, Instant};

use common::{ChatSession, TestServer, WAIT, authed, within};
use fastchat::testing::{Backend, on_both_databases};
use fastchat::{
    db::tables::{sessions, users_online},
    proto::{
        HeartbeatRequest, Hello, ListOnlineRequest, Ping, Presence, PresenceEvent,
        PresenceSnapshot, PresenceStatus, PresenceUpdate, SetStatusRequest, WatchPresenceRequest,
        client_event, presence_event, presence_service_client::PresenceServiceClient,
        server_event::Event,
    },
};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

/// The spec's bound on how late a presence change may reach watchers.
const PRESENCE_LATENCY: Duration = Duration::from_secs(1);

fn user_id_of(presence: &Presence) -> &str {
    presence.user.as_ref().map_or("", |u| u.user_id.as_str())
}

/// A presence event's change, if it is one.
fn presence_change(event: PresenceEvent) -> Option<Presence> {
    match event.event {
        Some(presence_event::Event::Change(change)) => change.presence,
        _ => None,
    }
}

/// A chat event's presence change, if it is one.
fn change(event: Event) -> Option<Presence> {
    match event {
        Event::Presence(presence) => presence_change(presence),
        _ => None,
    }
}

/// A chat event's presence snapshot, if it is one.
fn snapshot(event: Event) -> Option<Vec<Presence>> {
    match event {
        Event::Presence(PresenceEvent {
            event: Some(presence_event::Event::Snapshot(snapshot)),
        }) => Some(snapshot.users),
        _ => None,
    }
}

/// Whether a chat event is a presence change about `user`.
fn is_change_for(event: &Event, user: &str) -> bool {
    change(event.clone()).is_some_and(|p| user_id_of(&p) == user)
}

/// The next presence change about `user` on a chat stream (other events are skipped).
async fn next_change_for(session: &mut ChatSession, user: &str) -> Presence {
    session
        .next_where(|e| change(e).filter(|p| user_id_of(p) == user))
        .await
}

/// The session's presence snapshot, which comes right after Welcome.
async fn first_snapshot(session: &mut ChatSession) -> Vec<Presence> {
    let event = session.next().await.expect("stream failed");
    snapshot(event).expect("the event after Welcome is the presence snapshot")
}

fn ids(users: &[Presence]) -> Vec<&str> {
    users.iter().map(user_id_of).collect()
}

/// Sets a chat session's own status and waits until the server has acted on it (a ping sent
/// after it is answered only once every earlier event of the stream was handled).
async fn say_status(session: &mut ChatSession, status: PresenceStatus, nonce: u64) {
    session
        .send(client_event::Event::Presence(PresenceUpdate {
            status: status as i32,
        }))
        .await;
    session
        .send(client_event::Event::Ping(Ping { nonce }))
        .await;
    session
        .next_where(|e| match e {
            Event::Pong(pong) if pong.nonce == nonce => Some(()),
            Event::Error(err) => panic!("the status update was refused: {err:?}"),
            _ => None,
        })
        .await;
}

/// `user`'s entry in ListOnline, if any.
async fn listed(server: &TestServer, user: &str) -> Option<Presence> {
    let mut client = server.presence().await.unwrap();
    let list = client
        .list_online(ListOnlineRequest::default())
        .await
        .unwrap()
        .into_inner();
    list.users.into_iter().find(|p| user_id_of(p) == user)
}

/// A presence stream (WatchPresence or Presence) as a client holds it.
struct PresenceWatch {
    rx: Streaming<PresenceEvent>,
    /// The sending half of a Presence stream; None for WatchPresence.
    tx: Option<mpsc::Sender<PresenceUpdate>>,
}

impl PresenceWatch {
    async fn watch(server: &TestServer) -> Self {
        let mut client = server.presence().await.unwrap();
        let rx = client
            .watch_presence(WatchPresenceRequest::default())
            .await
            .expect("WatchPresence needs no token")
            .into_inner();
        Self { rx, tx: None }
    }

    /// Opens a Presence stream with `token` (None: without `authorization` metadata).
    async fn presence(server: &TestServer, token: Option<&str>) -> Result<Self, tonic::Status> {
        let (tx, rx) = mpsc::channel(16);
        let mut client = server.presence().await.unwrap();
        let updates = ReceiverStream::new(rx);
        let response = match token {
            Some(token) => client.presence(authed(token, updates)).await?,
            None => client.presence(updates).await?,
        };
        Ok(Self {
            rx: response.into_inner(),
            tx: Some(tx),
        })
    }

    async fn send(&self, status: i32) {
        self.tx
            .as_ref()
            .expect("only a Presence stream sends updates")
            .send(PresenceUpdate { status })
            .await
            .unwrap();
    }

    async fn next(&mut self) -> PresenceEvent {
        tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("timed out waiting for a presence event")
            .expect("presence stream failed")
            .expect("presence stream ended")
    }

    async fn snapshot(&mut self) -> Vec<Presence> {
        match self.next().await.event {
            Some(presence_event::Event::Snapshot(snapshot)) => snapshot.users,
            other => panic!("the first presence event must be the snapshot, got {other:?}"),
        }
    }

    async fn next_change_for(&mut self, user: &str) -> Presence {
        loop {
            if let Some(p) = presence_change(self.next().await)
                && user_id_of(&p) == user
            {
                return p;
            }
        }
    }

    async fn assert_no_change_for(&mut self, user: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(next) = tokio::time::timeout_at(deadline, self.rx.message()).await {
            let event = next
                .expect("presence stream failed")
                .expect("presence stream ended");
            if let Some(p) = presence_change(event) {
                assert_ne!(user_id_of(&p), user, "unexpected change: {p:?}");
            }
        }
    }

    async fn final_status(&mut self) -> tonic::Status {
        loop {
            match tokio::time::timeout(WAIT, self.rx.message())
                .await
                .expect("presence stream did not end")
            {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("presence stream ended without an error status"),
                Err(status) => return status,
            }
        }
    }
}

/// Polls `check` until it returns Some (write-through is asynchronous).
async fn eventually<T, F>(what: &str, mut check: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "never saw {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The user's row of the (one) node serving the test, not the row of nodes gone.
async fn users_online_row(db: &DatabaseConnection, user: &str) -> Option<users_online::Model> {
    users_online::Entity::find()
        .filter(users_online::Column::UserId.eq(uuid::Uuid::parse_str(user).unwrap()))
        .filter(users_online::Column::NodeId.ne(""))
        .one(db)
        .await
        .unwrap()
}

async fn session_row(db: &DatabaseConnection, session: &str) -> Option<sessions::Model> {
    sessions::Entity::find_by_id(uuid::Uuid::parse_str(session).unwrap())
        .one(db)
        .await
        .unwrap()
}

/// A's snapshot has A; B joining reaches A within a second; B's snapshot has both.
async fn snapshot_and_changes_across_two_users(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let alice_snapshot = first_snapshot(&mut alice).await;
    assert_eq!(ids(&alice_snapshot), [alice.user_id()]);
    assert_eq!(alice_snapshot[0].status(), PresenceStatus::Online);
    assert_eq!(
        alice_snapshot[0].user.as_ref().unwrap().display_name,
        "Alice"
    );
    assert_eq!(alice_snapshot[0].sessions, 1);

    let mut bob = ChatSession::new_user(&server, "Bob").await;
    let joined = Instant::now();
    let bob_id = bob.user_id();
    let seen = within(PRESENCE_LATENCY, next_change_for(&mut alice, &bob_id)).await;
    assert!(joined.elapsed() <= PRESENCE_LATENCY);
    assert_eq!(seen.status(), PresenceStatus::Online);
    assert_eq!(seen.user.as_ref().unwrap().display_name, "Bob");
    assert_eq!(seen.sessions, 1);

    let mut bob_snapshot = first_snapshot(&mut bob).await;
    bob_snapshot.sort_by_key(|p| p.user.as_ref().unwrap().display_name.clone());
    assert_eq!(ids(&bob_snapshot), [alice.user_id(), bob_id]);
    assert!(
        bob_snapshot
            .iter()
            .all(|p| p.status() == PresenceStatus::Online)
    );
    server.stop().await;
}

/// A user is AWAY only when every session of theirs said so.
async fn away_only_when_every_session_is_away(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;
    let bob_id = bob.user_id();
    assert_eq!(
        next_change_for(&mut alice, &bob_id).await.status(),
        PresenceStatus::Online
    );

    // One session, away: Bob is AWAY.
    say_status(&mut bob, PresenceStatus::Away, 1).await;
    let away = within(PRESENCE_LATENCY * 2, next_change_for(&mut alice, &bob_id)).await;
    assert_eq!(away.status(), PresenceStatus::Away);
    assert_eq!(
        listed(&server, &bob_id).await.unwrap().status(),
        PresenceStatus::Away
    );

    // A second, active session: one away + one online = ONLINE.
    let mut bob_phone = bob.again(&server).await;
    let back = next_change_for(&mut alice, &bob_id).await;
    assert_eq!(back.status(), PresenceStatus::Online);
    assert_eq!(back.sessions, 2);

    // Both away: AWAY.
    say_status(&mut bob_phone, PresenceStatus::Away, 2).await;
    assert_eq!(
        next_change_for(&mut alice, &bob_id).await.status(),
        PresenceStatus::Away
    );

    // One of them back: ONLINE again, and no AWAY while one session is active.
    say_status(&mut bob, PresenceStatus::Online, 3).await;
    assert_eq!(
        next_change_for(&mut alice, &bob_id).await.status(),
        PresenceStatus::Online
    );
    alice
        .assert_none_where(Duration::from_millis(600), |e| is_change_for(e, &bob_id))
        .await;
    assert_eq!(
        listed(&server, &bob_id).await.unwrap().status(),
        PresenceStatus::Online
    );
    server.stop().await;
}

/// One session away while another is active never shows the user AWAY.
async fn one_away_session_of_two_keeps_user_online(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;
    let _bob_phone = bob.again(&server).await;
    let bob_id = bob.user_id();
    assert_eq!(
        next_change_for(&mut alice, &bob_id).await.status(),
        PresenceStatus::Online
    );

    say_status(&mut bob, PresenceStatus::Away, 1).await;
    alice
        .assert_none_where(Duration::from_millis(700), |e| is_change_for(e, &bob_id))
        .await;
    let listed = listed(&server, &bob_id).await.unwrap();
    assert_eq!(listed.status(), PresenceStatus::Online);
    assert_eq!(listed.sessions, 2);
    server.stop().await;
}

/// Closing one of two sessions changes nothing; closing the last one shows the user OFFLINE,
/// with last_seen, once the grace period has passed.
async fn last_session_closing_goes_offline_after_grace(backend: Backend) {
    const GRACE: Duration = Duration::from_millis(500);
    let server =
        TestServer::start_with(backend, |c| c.offline_grace_ms = GRACE.as_millis() as u64).await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let bob = ChatSession::new_user(&server, "Bob").await;
    let bob_phone = bob.again(&server).await;
    let bob_id = bob.user_id();
    assert_eq!(
        next_change_for(&mut alice, &bob_id).await.status(),
        PresenceStatus::Online
    );

    drop(bob_phone);
    alice
        .assert_none_where(GRACE + Duration::from_millis(500), |e| {
            change(e.clone())
                .is_some_and(|p| user_id_of(&p) == bob_id && p.status() != PresenceStatus::Online)
        })
        .await;

    drop(bob);
    let left = Instant::now();
    let offline = next_change_for(&mut alice, &bob_id).await;
    let waited = left.elapsed();
    assert_eq!(offline.status(), PresenceStatus::Offline);
    assert_eq!(offline.sessions, 0);
    let last_seen = offline.last_seen.expect("OFFLINE carries last_seen");
    assert!(last_seen.seconds > 0);
    assert!(
        waited >= GRACE,
        "OFFLINE came {waited:?} after the last session closed, before the {GRACE:?} grace"
    );
    assert!(
        waited <= GRACE + PRESENCE_LATENCY,
        "OFFLINE came {waited:?} after the last session closed"
    );
    assert!(listed(&server, &bob_id).await.is_none());
    server.stop().await;
}

/// Reconnecting within the grace period: watchers see neither OFFLINE nor a new ONLINE.
async fn reconnect_within_grace_does_not_flap(backend: Backend) {
    const GRACE: Duration = Duration::from_millis(2000);
    let server =
        TestServer::start_with(backend, |c| c.offline_grace_ms = GRACE.as_millis() as u64).await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let mut watcher = PresenceWatch::watch(&server).await;
    watcher.snapshot().await;
    let bob = ChatSession::new_user(&server, "Bob").await;
    let (bob_id, bob_token) = (bob.user_id(), bob.token());
    assert_eq!(
        next_change_for(&mut alice, &bob_id).await.status(),
        PresenceStatus::Online
    );
    assert_eq!(
        watcher.next_change_for(&bob_id).await.status(),
        PresenceStatus::Online
    );

    drop(bob);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _bob = ChatSession::open(
        &server,
        Hello {
            user_id: bob_id.clone(),
            token: bob_token,
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // Past the end of the grace period that the first session's close started.
    let quiet = GRACE + Duration::from_millis(500);
    tokio::join!(
        alice.assert_none_where(quiet, |e| is_change_for(e, &bob_id)),
        watcher.assert_no_change_for(&bob_id, quiet),
    );
    assert_eq!(
        listed(&server, &bob_id).await.unwrap().status(),
        PresenceStatus::Online
    );
    server.stop().await;
}

/// Heartbeat claims a user, keeps them ONLINE while it is repeated, needs the token afterwards,
/// and the user goes OFFLINE once the presence TTL passes without one.
async fn heartbeat_claims_and_keeps_user_online(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.presence_ttl_secs = 1).await;
    let mut watcher = PresenceWatch::watch(&server).await;
    assert!(watcher.snapshot().await.is_empty());
    let mut client = server.presence().await.unwrap();

    let first = client
        .heartbeat(HeartbeatRequest {
            user_id: String::new(),
            display_name: "Hal".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(first.token.len() >= 32, "the claim returns a token");
    let presence = first.presence.unwrap();
    assert_eq!(presence.status(), PresenceStatus::Online);
    let hal = user_id_of(&presence).to_owned();
    uuid::Uuid::parse_str(&hal).expect("the server picked a UUID");
    assert_eq!(
        watcher.next_change_for(&hal).await.status(),
        PresenceStatus::Online
    );
    let online = listed(&server, &hal)
        .await
        .expect("listed after a heartbeat");
    assert_eq!(online.status(), PresenceStatus::Online);
    assert_eq!(online.user.unwrap().display_name, "Hal");

    // The id is claimed: without its token, no heartbeat for it.
    for display_name in ["Hal", "", "Mallory"] {
        let refused = client
            .heartbeat(HeartbeatRequest {
                user_id: hal.clone(),
                display_name: display_name.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
    let refused = client
        .heartbeat(authed(
            "not-the-token",
            HeartbeatRequest {
                user_id: hal.clone(),
                display_name: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    // With the token, repeated heartbeats keep Hal ONLINE past the TTL.
    let started = Instant::now();
    let mut last_beat = started;
    while started.elapsed() < Duration::from_millis(1800) {
        let again = client
            .heartbeat(authed(
                &first.token,
                HeartbeatRequest {
                    user_id: hal.clone(),
                    display_name: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        last_beat = Instant::now();
        assert!(again.token.is_empty(), "only a claim returns a token");
        assert_eq!(again.presence.unwrap().status(), PresenceStatus::Online);
        watcher
            .assert_no_change_for(&hal, Duration::from_millis(250))
            .await;
    }
    assert!(listed(&server, &hal).await.is_some());

    // No more heartbeats: OFFLINE after the TTL.
    let offline = watcher.next_change_for(&hal).await;
    assert_eq!(offline.status(), PresenceStatus::Offline);
    assert!(offline.last_seen.is_some());
    assert!(
        last_beat.elapsed() >= Duration::from_millis(800),
        "OFFLINE {:?} after the last heartbeat, before the 1 s TTL",
        last_beat.elapsed()
    );
    assert!(listed(&server, &hal).await.is_none());
    server.stop().await;
}

/// ListOnline lists everyone ONLINE or AWAY by display name, with `count`, and leaves out
/// `exclude_user_id`.
async fn list_online_excludes_and_counts(backend: Backend) {
    let server = TestServer::start(backend).await;
    let carol = ChatSession::new_user(&server, "Carol").await;
    let alice = ChatSession::new_user(&server, "alice").await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;
    say_status(&mut bob, PresenceStatus::Away, 1).await;
    let mut client = server.presence().await.unwrap();

    let all = client
        .list_online(ListOnlineRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.count, 3);
    assert_eq!(
        ids(&all.users),
        [alice.user_id(), bob.user_id(), carol.user_id()],
        "ordered by display name"
    );
    assert_eq!(all.users[1].status(), PresenceStatus::Away);

    let without_alice = client
        .list_online(ListOnlineRequest {
            exclude_user_id: alice.user_id(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(without_alice.count, 2);
    assert_eq!(ids(&without_alice.users), [bob.user_id(), carol.user_id()]);

    let bad = client
        .list_online(ListOnlineRequest {
            exclude_user_id: "not-a-uuid".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    server.stop().await;
}

/// WatchPresence needs no token, starts with the snapshot, then follows joins and leaves; the
/// anonymous watcher is nobody's session.
async fn watch_presence_gets_snapshot_then_changes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let mut watcher = PresenceWatch::watch(&server).await;
    let snapshot = watcher.snapshot().await;
    assert_eq!(ids(&snapshot), [alice.user_id()]);

    let bob = ChatSession::new_user(&server, "Bob").await;
    let bob_id = bob.user_id();
    let joined = Instant::now();
    let online = within(PRESENCE_LATENCY, watcher.next_change_for(&bob_id)).await;
    assert!(joined.elapsed() <= PRESENCE_LATENCY);
    assert_eq!(online.status(), PresenceStatus::Online);

    drop(bob);
    let offline = watcher.next_change_for(&bob_id).await;
    assert_eq!(offline.status(), PresenceStatus::Offline);

    let mut client = server.presence().await.unwrap();
    let list = client
        .list_online(ListOnlineRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ids(&list.users),
        [alice.user_id()],
        "watchers are not users"
    );
    server.stop().await;
}

/// The Presence stream needs a bearer token, counts as a session of its user, and its updates
/// set that session AWAY; an invalid status ends it with INVALID_ARGUMENT.
async fn presence_stream_is_an_authenticated_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut watcher = PresenceWatch::watch(&server).await;
    watcher.snapshot().await;
    let carol = ChatSession::new_user(&server, "Carol").await;
    let (carol_id, carol_token) = (carol.user_id(), carol.token());
    assert_eq!(
        watcher.next_change_for(&carol_id).await.status(),
        PresenceStatus::Online
    );
    drop(carol);
    assert_eq!(
        watcher.next_change_for(&carol_id).await.status(),
        PresenceStatus::Offline
    );

    let unauthenticated = PresenceWatch::presence(&server, None)
        .await
        .err()
        .expect("a Presence stream without a token is refused");
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
    let wrong = PresenceWatch::presence(&server, Some("not-a-token"))
        .await
        .err()
        .expect("a Presence stream with an unknown token is refused");
    assert_eq!(wrong.code(), Code::Unauthenticated);

    let mut stream = PresenceWatch::presence(&server, Some(&carol_token))
        .await
        .unwrap();
    let snapshot = stream.snapshot().await;
    assert_eq!(
        ids(&snapshot),
        [carol_id.as_str()],
        "the stream is a session"
    );
    assert_eq!(
        watcher.next_change_for(&carol_id).await.status(),
        PresenceStatus::Online
    );
    assert_eq!(listed(&server, &carol_id).await.unwrap().sessions, 1);

    stream.send(PresenceStatus::Away as i32).await;
    let away = within(PRESENCE_LATENCY * 2, watcher.next_change_for(&carol_id)).await;
    assert_eq!(away.status(), PresenceStatus::Away);
    // The stream sees its own user's changes too (its join, then AWAY).
    let mut own = stream.next_change_for(&carol_id).await;
    if own.status() == PresenceStatus::Online {
        own = stream.next_change_for(&carol_id).await;
    }
    assert_eq!(own.status(), PresenceStatus::Away);

    stream.send(PresenceStatus::Unspecified as i32).await;
    let status = stream.final_status().await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    // The stream ended, and with it Carol's only session.
    assert_eq!(
        watcher.next_change_for(&carol_id).await.status(),
        PresenceStatus::Offline
    );
    server.stop().await;
}

/// SetStatus that must succeed; returns the caller's presence.
async fn set_status_ok(
    client: &mut PresenceServiceClient<tonic::transport::Channel>,
    request: tonic::Request<SetStatusRequest>,
) -> Presence {
    client
        .set_status(request)
        .await
        .unwrap()
        .into_inner()
        .presence
        .unwrap()
}

/// SetStatus sets one session (by Welcome.session_id) or all of the caller's sessions.
async fn set_status_per_session_and_for_all(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let bob = ChatSession::new_user(&server, "Bob").await;
    let bob_phone = bob.again(&server).await;
    let (bob_id, token) = (bob.user_id(), bob.token());
    assert_eq!(
        next_change_for(&mut alice, &bob_id).await.status(),
        PresenceStatus::Online
    );
    let mut client = server.presence().await.unwrap();
    let set = |status: PresenceStatus, session_id: &str| {
        authed(
            &token,
            SetStatusRequest {
                status: status as i32,
                session_id: session_id.to_owned(),
            },
        )
    };

    // One session of two away: still ONLINE.
    let one = set_status_ok(
        &mut client,
        set(PresenceStatus::Away, &bob.welcome.session_id),
    )
    .await;
    assert_eq!(one.status(), PresenceStatus::Online);
    assert_eq!(user_id_of(&one), bob_id);
    // The other one too: AWAY.
    let both = set_status_ok(
        &mut client,
        set(PresenceStatus::Away, &bob_phone.welcome.session_id),
    )
    .await;
    assert_eq!(both.status(), PresenceStatus::Away);
    assert_eq!(
        next_change_for(&mut alice, &bob_id).await.status(),
        PresenceStatus::Away
    );

    // Without session_id: every session, back ONLINE at once.
    let all = set_status_ok(&mut client, set(PresenceStatus::Online, "")).await;
    assert_eq!(all.status(), PresenceStatus::Online);
    assert_eq!(
        next_change_for(&mut alice, &bob_id).await.status(),
        PresenceStatus::Online
    );
    let all_away = set_status_ok(&mut client, set(PresenceStatus::Away, "")).await;
    assert_eq!(all_away.status(), PresenceStatus::Away);
    assert_eq!(
        next_change_for(&mut alice, &bob_id).await.status(),
        PresenceStatus::Away
    );

    // Unknown sessions, including another user's: NOT_FOUND.
    for session_id in [
        uuid::Uuid::new_v4().to_string(),
        alice.welcome.session_id.clone(),
    ] {
        let err = client
            .set_status(set(PresenceStatus::Online, &session_id))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    }
    // Bad input: INVALID_ARGUMENT.
    for request in [
        SetStatusRequest {
            status: PresenceStatus::Unspecified as i32,
            session_id: String::new(),
        },
        SetStatusRequest {
            status: PresenceStatus::Offline as i32,
            session_id: String::new(),
        },
        SetStatusRequest {
            status: 42,
            session_id: String::new(),
        },
        SetStatusRequest {
            status: PresenceStatus::Away as i32,
            session_id: "not-a-uuid".into(),
        },
    ] {
        let err = client
            .set_status(authed(&token, request.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{request:?}: {err:?}");
    }
    // No token: UNAUTHENTICATED.
    let err = client
        .set_status(SetStatusRequest {
            status: PresenceStatus::Online as i32,
            session_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // None of the refused calls changed anything.
    assert_eq!(
        listed(&server, &bob_id).await.unwrap().status(),
        PresenceStatus::Away
    );
    server.stop().await;
}

/// `users_online` and `sessions` follow the hub: online with an open session row while connected,
/// away when away, offline with the session ended once the user left.
async fn presence_is_written_through(backend: Backend) {
    let server = TestServer::start(backend).await;
    let db = server.db().await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let (alice_id, session_id) = (alice.user_id(), alice.welcome.session_id.clone());

    let row = eventually("users_online online", || async {
        users_online_row(&db, &alice_id)
            .await
            .filter(|r| r.status == "online")
    })
    .await;
    assert_eq!(row.sessions, 1);
    let session = eventually("the session row", || session_row(&db, &session_id)).await;
    assert_eq!(session.user_id.to_string(), alice_id);
    assert_eq!(session.ended_at, None);
    assert!(!session.away);

    say_status(&mut alice, PresenceStatus::Away, 1).await;
    eventually("users_online away", || async {
        users_online_row(&db, &alice_id)
            .await
            .filter(|r| r.status == "away")
    })
    .await;
    eventually("sessions.away", || async {
        session_row(&db, &session_id).await.filter(|s| s.away)
    })
    .await;

    drop(alice);
    let ended = eventually("sessions.ended_at", || async {
        session_row(&db, &session_id)
            .await
            .filter(|s| s.ended_at.is_some())
    })
    .await;
    assert!(ended.ended_at.unwrap() >= ended.connected_at);
    let row = eventually("users_online offline", || async {
        users_online_row(&db, &alice_id)
            .await
            .filter(|r| r.status == "offline")
    })
    .await;
    assert_eq!(row.sessions, 0);
    let open = sessions::Entity::find()
        .filter(sessions::Column::EndedAt.is_null())
        .all(&db)
        .await
        .unwrap();
    assert!(open.is_empty(), "no session is left open: {open:?}");
    server.stop().await;
}

/// The session's presence snapshot with its total, right after Welcome.
async fn first_full_snapshot(session: &mut ChatSession) -> PresenceSnapshot {
    match session.next().await.expect("stream failed") {
        Event::Presence(PresenceEvent {
            event: Some(presence_event::Event::Snapshot(snapshot)),
        }) => snapshot,
        other => panic!("the event after Welcome is the presence snapshot, got {other:?}"),
    }
}

/// Opens a session of a new user and waits until the user was announced (the own sessions are
/// told too), so the directory page takes users in the order they are opened.
async fn announced_user(server: &TestServer, name: &str) -> ChatSession {
    let mut session = ChatSession::new_user(server, name).await;
    let id = session.user_id();
    next_change_for(&mut session, &id).await;
    session
}

/// Whether a chat event is an OnlineCount, and its total.
fn online_count(event: Event) -> Option<u32> {
    match event {
        Event::Presence(PresenceEvent {
            event: Some(presence_event::Event::OnlineCount(count)),
        }) => Some(count.users),
        _ => None,
    }
}

/// Beyond the directory page, a session is told about the page, itself and its conversation
/// peers, not about strangers, and gets the total as OnlineCount.
async fn beyond_the_page_sessions_see_page_peers_and_count(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.presence_directory_size = 2).await;
    let mut ann = announced_user(&server, "Ann").await;
    let ben = announced_user(&server, "Ben").await;
    let dan = announced_user(&server, "Dan").await;
    let dan_id = dan.user_id();
    let mut cat = ChatSession::new_user(&server, "Cat").await;
    let cat_id = cat.user_id();

    let snapshot = first_full_snapshot(&mut cat).await;
    let mut seen = ids(&snapshot.users);
    seen.sort();
    let mut expected = vec![ann.user_id(), ben.user_id(), cat_id.clone()];
    expected.sort();
    assert_eq!(
        seen, expected,
        "the page and the user itself, not the stranger Dan"
    );
    assert_eq!(
        snapshot.online_count, 3,
        "Ann, Ben and Dan were announced; Cat not yet"
    );

    // Ann, on the page, hears of neither newcomer beyond it, but of the total.
    let total = within(
        WAIT,
        ann.next_where(|e| {
            assert!(!is_change_for(&e, &dan_id), "Ann was told about Dan");
            assert!(!is_change_for(&e, &cat_id), "Ann was told about Cat");
            online_count(e)
        }),
    )
    .await;
    assert!(
        total > 2,
        "OnlineCount {total} while more are online than the page holds"
    );

    // A message makes Cat and Dan peers: Cat is told Dan's presence now and his changes later.
    cat.send_message(&dan_id, "m1", "hi Dan").await;
    let dan_now = next_change_for(&mut cat, &dan_id).await;
    assert_eq!(dan_now.status(), PresenceStatus::Online);
    drop(dan);
    let gone = next_change_for(&mut cat, &dan_id).await;
    assert_eq!(gone.status(), PresenceStatus::Offline);
    ann.assert_none_where(Duration::from_millis(500), |e| is_change_for(e, &dan_id))
        .await;
    drop(ben);
    server.stop().await;
}

/// When a user of the page goes OFFLINE, an online user beyond it takes the place, and every
/// session is told.
async fn page_vacancy_goes_to_another_online_user(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.presence_directory_size = 2).await;
    let mut ann = announced_user(&server, "Ann").await;
    let ben = announced_user(&server, "Ben").await;
    let cat = announced_user(&server, "Cat").await;
    let (ben_id, cat_id) = (ben.user_id(), cat.user_id());

    drop(ben);
    ann.next_where(|e| {
        change(e).filter(|p| user_id_of(p) == ben_id && p.status() == PresenceStatus::Offline)
    })
    .await;
    let promoted = next_change_for(&mut ann, &cat_id).await;
    assert_eq!(promoted.status(), PresenceStatus::Online);
    drop(cat);
    server.stop().await;
}

/// Conversation peers come from the stored history: after both went offline and came back, each
/// sees the other although neither is on the page.
async fn peers_from_history_are_watched_after_reconnecting(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.presence_directory_size = 1).await;
    let _ann = announced_user(&server, "Ann").await; // holds the only place on the page
    let cat = announced_user(&server, "Cat").await;
    let mut dan = announced_user(&server, "Dan").await;
    let (cat_id, dan_id) = (cat.user_id(), dan.user_id());
    cat.send_message(&dan_id, "m1", "hello").await;
    dan.next_where(|e| matches!(e, Event::Message(_)).then_some(()))
        .await;
    let (cat_again, dan_again) = (cat.hello_again(), dan.hello_again());
    drop(cat);
    drop(dan);
    // Gone offline (and forgotten by the hub) once the grace period has passed.
    eventually("Cat and Dan offline", || async {
        let (cat, dan) = (
            listed(&server, &cat_id).await,
            listed(&server, &dan_id).await,
        );
        (cat.is_none() && dan.is_none()).then_some(())
    })
    .await;

    let dan = ChatSession::open(&server, dan_again).await.unwrap();
    let mut cat = ChatSession::open(&server, cat_again).await.unwrap();
    let snapshot = first_full_snapshot(&mut cat).await;
    assert!(
        ids(&snapshot.users).contains(&dan_id.as_str()),
        "Cat's snapshot lacks the peer Dan: {snapshot:?}"
    );
    drop(dan);
    let gone = next_change_for(&mut cat, &dan_id).await;
    assert_eq!(gone.status(), PresenceStatus::Offline);
    server.stop().await;
}

/// WatchPresence with every_user sees everyone beyond the page; a plain watcher only the page;
/// such streams are capped.
async fn every_user_watchers_see_everyone_and_are_capped(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.presence_directory_size = 1;
        c.presence_watch_all_limit = 1;
    })
    .await;
    let mut client = server.presence().await.unwrap();
    let every_user = WatchPresenceRequest { every_user: true };
    let rx = client
        .watch_presence(every_user)
        .await
        .unwrap()
        .into_inner();
    let mut all = PresenceWatch { rx, tx: None };
    all.snapshot().await;
    let mut page = PresenceWatch::watch(&server).await;
    page.snapshot().await;

    let refused = client.watch_presence(every_user).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);

    let ann = announced_user(&server, "Ann").await;
    let ben = announced_user(&server, "Ben").await;
    let cat = announced_user(&server, "Cat").await;
    for user in [&ann, &ben, &cat] {
        let seen = all.next_change_for(&user.user_id()).await;
        assert_eq!(seen.status(), PresenceStatus::Online);
    }
    page.next_change_for(&ann.user_id()).await;
    for user in [&ben, &cat] {
        page.assert_no_change_for(&user.user_id(), Duration::from_millis(300))
            .await;
    }

    // The place frees when the watcher goes.
    drop(all);
    within(WAIT, async {
        loop {
            match client.watch_presence(every_user).await {
                Ok(_) => break,
                Err(status) => assert_eq!(status.code(), Code::ResourceExhausted),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    server.stop().await;
}

on_both_databases!(
    snapshot_and_changes_across_two_users,
    away_only_when_every_session_is_away,
    one_away_session_of_two_keeps_user_online,
    last_session_closing_goes_offline_after_grace,
    reconnect_within_grace_does_not_flap,
    heartbeat_claims_and_keeps_user_online,
    list_online_excludes_and_counts,
    watch_presence_gets_snapshot_then_changes,
    presence_stream_is_an_authenticated_session,
    set_status_per_session_and_for_all,
    presence_is_written_through,
    beyond_the_page_sessions_see_page_peers_and_count,
    page_vacancy_goes_to_another_online_user,
    peers_from_history_are_watched_after_reconnecting,
    every_user_watchers_see_everyone_and_are_capped,
);
