//! The registry step by step, with its invariants checked after every step.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::{db::StoredStatus, proto::PresenceStatus};

fn config(directory_size: usize) -> HubConfig {
    HubConfig {
        node_id: "test".into(),
        boot_id: uuid::Uuid::new_v4(),
        session_queue: 16,
        receive_window: 16,
        heartbeat_interval: Duration::from_secs(20),
        presence_ttl: Duration::from_secs(30),
        offline_grace: Duration::ZERO,
        typing_timeout: Duration::from_secs(6),
        retention_days: 30,
        max_sessions_per_user: 3,
        max_sessions: 100,
        directory_size,
        watch_all_limit: 2,
        shares_presence: false,
        client_limits: Default::default(),
    }
}

fn user(name: &str) -> AuthUser {
    AuthUser {
        id: UserId::new_random(),
        display_name: name.into(),
    }
}

/// A registry and the queues of the sessions it opened, checked after every step.
struct Harness {
    registry: Registry,
    /// Kept so the outlets' queues stay open.
    queues: Vec<mpsc::Receiver<Box<ServerEvent>>>,
}

impl Harness {
    fn new(directory_size: usize) -> Self {
        Self {
            registry: Registry::new(config(directory_size)),
            queues: Vec::new(),
        }
    }

    /// Runs one step, checks the invariants, and returns what the step asked for.
    fn step<T>(&mut self, step: impl FnOnce(&mut Registry, &mut Effects) -> T) -> (T, Effects) {
        let mut out = Effects::default();
        let result = step(&mut self.registry, &mut out);
        self.registry.check_invariants();
        (result, out)
    }

    fn open(&mut self, user: Option<&AuthUser>, kind: SessionKind) -> Result<SessionId> {
        let (tx, rx) = mpsc::channel(16);
        self.queues.push(rx);
        let id = SessionId::new_random();
        let session = NewSession {
            id,
            user,
            kind,
            outlet: Outlet {
                tx,
                closing: Arc::new(Mutex::new(None)),
                cancel: CancellationToken::new(),
                transport: Transport::Grpc,
            },
            receipts: None,
        };
        let peers = user
            .filter(|u| self.registry.needs_peers(u.id))
            .map(|_| Vec::new());
        self.step(|r, out| r.open(session, peers, out)).0?;
        Ok(id)
    }

    fn publish(&mut self) -> Effects {
        self.step(|r, out| r.flush_presence(Instant::now(), out)).1
    }
}

/// The presence changes in `out`, as written through: (user, status).
fn changes(out: &Effects) -> Vec<(UserId, StoredStatus)> {
    out.store
        .iter()
        .filter_map(|op| match op {
            StoreOp::Presence { user, status, .. } => Some((*user, *status)),
            _ => None,
        })
        .collect()
}

#[test]
fn sessions_come_and_go_with_their_users() {
    let mut h = Harness::new(10);
    let alice = user("alice");
    let first = h.open(Some(&alice), SessionKind::Chat).unwrap();
    let second = h.open(Some(&alice), SessionKind::Chat).unwrap();
    assert_eq!(changes(&h.publish()), [(alice.id, StoredStatus::Online)]);
    assert_eq!(h.registry.chat_sessions_of(alice.id, Some(first)), [second]);

    let (_, out) = h.step(|r, out| r.detach(first, None, out));
    assert_eq!(out.ended.len(), 1);
    assert!(
        changes(&h.publish()).is_empty(),
        "one session is still open"
    );

    h.step(|r, out| r.detach(second, None, out));
    assert_eq!(changes(&h.publish()), [(alice.id, StoredStatus::Offline)]);
    assert!(h.registry.presence_of(alice.id, Instant::now()).is_none());
}

#[test]
fn limits_refuse_without_changing_anything() {
    let mut h = Harness::new(10);
    let alice = user("alice");
    for _ in 0..3 {
        h.open(Some(&alice), SessionKind::Chat).unwrap();
    }
    assert!(matches!(
        h.open(Some(&alice), SessionKind::Chat),
        Err(Error::TooManySessions(3))
    ));
    h.open(None, SessionKind::EveryonesPresence).unwrap();
    h.open(None, SessionKind::EveryonesPresence).unwrap();
    assert!(matches!(
        h.open(None, SessionKind::EveryonesPresence),
        Err(Error::TooManyWatchers(2))
    ));
}

#[test]
fn a_message_links_peers_and_ends_typing() {
    let mut h = Harness::new(1);
    let (alice, bob) = (user("alice"), user("bob"));
    let a = h.open(Some(&alice), SessionKind::Chat).unwrap();
    let b = h.open(Some(&bob), SessionKind::Chat).unwrap();
    h.publish();
    h.step(|r, out| r.set_typing(alice.id, bob.id, true, Some(a), out));

    let ((recipients, senders), out) =
        h.step(|r, out| r.message_stored(alice.id, bob.id, Some(a), out));
    assert_eq!((recipients, senders), (vec![b], vec![]));
    let typing_ended = out.sends.iter().any(|(to, event)| {
        *to == b && matches!(&event.event, Some(Event::Typing(t)) if !t.is_typing)
    });
    assert!(typing_ended, "the message ends alice's typing towards bob");
    // Only one of them fits on the page of one: the one on it now learns of the other, a peer.
    let told_of_peer = out
        .sends
        .iter()
        .any(|(_, event)| matches!(&event.event, Some(Event::Presence(_))));
    assert!(told_of_peer, "the new peer's presence goes out");
}

#[test]
fn typing_of_a_session_ends_with_it() {
    let mut h = Harness::new(10);
    let (alice, bob) = (user("alice"), user("bob"));
    let a = h.open(Some(&alice), SessionKind::Chat).unwrap();
    let b = h.open(Some(&bob), SessionKind::Chat).unwrap();
    h.step(|r, out| r.set_typing(alice.id, bob.id, true, Some(a), out));
    let (_, out) = h.step(|r, out| r.detach(a, None, out));
    let told = out.sends.iter().any(|(to, event)| {
        *to == b && matches!(&event.event, Some(Event::Typing(t)) if !t.is_typing)
    });
    assert!(told);
}

#[test]
fn the_directory_page_is_refilled_when_someone_leaves() {
    let mut h = Harness::new(2);
    let users: Vec<AuthUser> = ["a", "b", "c"].into_iter().map(user).collect();
    let sessions: Vec<SessionId> = users
        .iter()
        .map(|u| h.open(Some(u), SessionKind::Chat).unwrap())
        .collect();
    h.publish();
    assert_eq!(h.registry.scope.page.len(), 2);
    let on_page = users
        .iter()
        .position(|u| h.registry.scope.page.contains(&u.id))
        .unwrap();
    h.step(|r, out| r.detach(sessions[on_page], None, out));
    h.publish();
    assert_eq!(h.registry.scope.page.len(), 2, "the vacancy is filled");
}

#[test]
fn shutdown_ends_every_session_and_forgets_everyone() {
    let mut h = Harness::new(10);
    let alice = user("alice");
    h.open(Some(&alice), SessionKind::Chat).unwrap();
    h.open(None, SessionKind::EveryonesPresence).unwrap();
    h.publish();
    let status = Status::unavailable("bye");
    let (_, out) = h.step(|r, out| r.detach_all(&status, out));
    assert_eq!(out.ended.len(), 2);
    assert!(h.registry.list_online(None, Instant::now()).is_empty());
}

/// The check is not vacuous: a session left in the session map but missing from its user's list
/// (the kind of drift `scope.online -= 1` and friends would silently trust) is caught.
#[test]
fn check_invariants_catches_a_session_missing_from_its_user() {
    let mut h = Harness::new(10);
    let alice = user("alice");
    let id = h.open(Some(&alice), SessionKind::Chat).unwrap();
    h.registry.corrupt_for_test(|r| {
        r.users.get_mut(&alice.id).unwrap().sessions.clear();
    });
    let caught = catch_unwind(AssertUnwindSafe(|| h.registry.check_invariants()));
    let message = caught.expect_err("the corrupted registry passed its check");
    let message = message.downcast_ref::<String>().unwrap();
    assert!(message.contains(&id.to_string()), "{message}");
}

/// And a user announced online whom the count forgot.
#[test]
fn check_invariants_catches_a_wrong_online_count() {
    let mut h = Harness::new(10);
    h.open(Some(&user("alice")), SessionKind::Chat).unwrap();
    h.publish();
    h.registry.corrupt_for_test(|r| r.scope.online -= 1);
    let caught = catch_unwind(AssertUnwindSafe(|| h.registry.check_invariants()));
    assert!(caught.is_err());
}

/// In cluster mode, what other nodes say merges with this node's sessions: ONLINE if any node
/// has the user ONLINE, AWAY if all say away, sessions added; a user gone from every node goes
/// OFFLINE (after the grace period, here none). Users known only from other nodes get no
/// presence row of this node; changes of this node's own activity are shared.
#[test]
fn other_nodes_presence_merges_with_this_nodes() {
    let mut h = Harness::new(10);
    h.registry.config.shares_presence = true;
    let alice = user("alice");
    let (n1, n2): (Arc<str>, Arc<str>) = ("n1".into(), "n2".into());
    let on = |away, sessions| NodeUser {
        user: alice.id,
        display_name: "alice".into(),
        activity: Some(Activity { away, sessions }),
        last_seen: chrono::Utc::now(),
    };
    let status = |h: &Harness| {
        let p = h.registry.presence_of(alice.id, Instant::now()).unwrap();
        (p.status(), p.sessions)
    };

    h.step(|r, out| r.apply_remote(&n1, vec![on(true, 2)], out));
    let out = h.publish();
    assert!(out.store.is_empty(), "no row for a user with nothing here");
    assert!(out.shared.is_empty(), "nothing of this node's own to share");
    assert_eq!(status(&h), (PresenceStatus::Away, 2));
    h.step(|r, out| r.apply_remote(&n2, vec![on(false, 1)], out));
    assert_eq!(status(&h), (PresenceStatus::Online, 3));

    let here = h.open(Some(&alice), SessionKind::Chat).unwrap();
    let out = h.publish();
    let shared: Vec<_> = out.shared.iter().map(|u| u.activity).collect();
    assert_eq!(
        shared,
        [Some(Activity {
            away: false,
            sessions: 1
        })]
    );
    assert_eq!(status(&h), (PresenceStatus::Online, 4));

    h.step(|r, out| r.replace_node(&n2, Vec::new(), out));
    h.step(|r, out| r.detach(here, None, out));
    h.publish();
    assert_eq!(status(&h), (PresenceStatus::Away, 2));
    h.step(|r, out| r.replace_node(&n1, Vec::new(), out));
    assert_eq!(changes(&h.publish()), [(alice.id, StoredStatus::Offline)]);
    assert!(h.registry.presence_of(alice.id, Instant::now()).is_none());
}
