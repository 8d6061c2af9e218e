//! The registry: who is connected, as plain data. Sessions, the users they belong to, presence
//! and its scope, typing timers. Its methods only change memory and say, in [`Effects`], what
//! must follow: events to queue on sessions, sessions that ended, rows for the presence
//! write-through. The hub carries those out; the registry never sends, waits or touches the
//! database, so every step of it can be checked with [`Registry::check_invariants`].

mod presence;
mod typing;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
};

use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::{HubConfig, SessionKind, session::Receipts};
use crate::{
    convert::{now_timestamp, server_event},
    db::ids::{SessionId, UserId},
    error::{Error, Result},
    identity::AuthUser,
    metrics::Transport,
    pipeline::StoreOp,
    proto::{Heartbeat, PresenceSnapshot, ServerEvent, server_event::Event},
};

pub(super) use presence::PRESENCE_COALESCE;
pub(crate) use presence::{Activity, NodeUser};
use presence::{Scope, UserEntry};
use typing::TypingEntry;

/// In-memory sessions, users, presence and typing.
#[derive(Debug)]
pub(super) struct Registry {
    /// Settings.
    config: HubConfig,
    /// Every open stream, by id.
    sessions: HashMap<SessionId, SessionEntry>,
    /// Users who are connected, recently were, or sent heartbeats.
    users: HashMap<UserId, UserEntry>,
    /// Typing states by (typist, peer).
    typing: HashMap<(UserId, UserId), TypingEntry>,
    /// Users whose presence may have changed since the last published batch.
    dirty: HashSet<UserId>,
    /// Who is told about whose presence.
    scope: Scope,
    /// When idle streams were last checked for heartbeats.
    last_heartbeat_sweep: Option<Instant>,
}

/// One open stream.
#[derive(Debug)]
struct SessionEntry {
    /// Whose session it is; None for anonymous presence watchers.
    user: Option<UserId>,
    /// Which events it takes.
    kind: SessionKind,
    /// Its queue and how its stream is ended.
    outlet: Outlet,
    /// Whether the session said it is away.
    away: bool,
    /// When an event was last queued, to find idle streams.
    last_sent: Instant,
    /// What its client has not acknowledged, when it sends receipts.
    receipts: Option<Arc<Receipts>>,
}

/// Where a session's events go, and how its stream is ended.
#[derive(Debug)]
pub(super) struct Outlet {
    /// The session's outgoing queue. Boxed events keep the queue's preallocated slots small: every
    /// session holds one block of them, mostly empty.
    pub(super) tx: mpsc::Sender<Box<ServerEvent>>,
    /// The status the stream ends with when the hub ends it.
    pub(super) closing: Arc<Mutex<Option<Status>>>,
    /// Cancelled when the session ends, so its inbound task stops too.
    pub(super) cancel: CancellationToken,
    /// How the client reached the server, for the session counts.
    pub(super) transport: Transport,
}

/// A session the registry let go, for the hub to end.
#[derive(Debug)]
pub(super) struct Ended {
    /// Its queue (dropped once the status is set, so the stream reads it) and its tokens.
    pub(super) outlet: Outlet,
    /// The status its stream ends with; None: a normal end.
    pub(super) status: Option<Status>,
}

/// What a change of the registry asks the hub to carry out, in order.
#[derive(Debug, Default)]
pub(super) struct Effects {
    /// Events to queue, each on one session.
    pub(super) sends: VecDeque<(SessionId, ServerEvent)>,
    /// Sessions removed from the registry, whose streams must end.
    pub(super) ended: Vec<Ended>,
    /// Writes for `sessions` and `users_online`.
    pub(super) store: Vec<StoreOp>,
    /// Whether a user's presence may have changed, so the publisher should run soon.
    pub(super) presence_dirty: bool,
    /// In cluster mode: changes of this node's activity of users, for the other nodes.
    pub(super) shared: Vec<NodeUser>,
    /// Typing (from, to) that ended because its session closed, for the other nodes holding
    /// sessions of `to` (explicit stops and messages reach them by themselves).
    pub(super) typing_ended: Vec<(UserId, UserId)>,
}

impl Effects {
    fn send_all(&mut self, sessions: impl IntoIterator<Item = SessionId>, event: &ServerEvent) {
        self.sends
            .extend(sessions.into_iter().map(|id| (id, event.clone())));
    }
}

/// A session to add: who, which kind, its outlet.
#[derive(Debug)]
pub(super) struct NewSession<'a> {
    /// Its id.
    pub(super) id: SessionId,
    /// Its user; None for anonymous presence watchers.
    pub(super) user: Option<&'a AuthUser>,
    /// Which events it takes.
    pub(super) kind: SessionKind,
    /// Its queue.
    pub(super) outlet: Outlet,
    /// Set when its client sends receipts.
    pub(super) receipts: Option<Arc<Receipts>>,
}

impl Registry {
    pub(super) fn new(config: HubConfig) -> Self {
        Self {
            config,
            sessions: HashMap::new(),
            users: HashMap::new(),
            typing: HashMap::new(),
            dirty: HashSet::new(),
            scope: Scope::default(),
            last_heartbeat_sweep: None,
        }
    }

    /// Whether the next session of `user` must bring the user's conversation peers.
    pub(super) fn needs_peers(&self, user: UserId) -> bool {
        self.users.get(&user).is_none_or(UserEntry::needs_peers)
    }

    /// Adds a session, if the limits allow, with `peers` for a user who needs them. Returns the
    /// presence snapshot it starts with, and whether its user still needs their peers (the
    /// registry forgot them since `peers` was loaded).
    pub(super) fn open(
        &mut self,
        session: NewSession<'_>,
        peers: Option<Vec<UserId>>,
        out: &mut Effects,
    ) -> Result<(PresenceSnapshot, bool)> {
        let NewSession {
            id,
            user,
            kind,
            outlet,
            receipts,
        } = session;
        if self.sessions.len() >= self.config.max_sessions {
            return Err(Error::Overloaded(
                "the server holds as many sessions as it may; retry later",
            ));
        }
        let max_per_user = self.config.max_sessions_per_user;
        let open_of_user = user
            .and_then(|u| self.users.get(&u.id))
            .map_or(0, |entry| entry.sessions.len());
        if open_of_user >= max_per_user as usize {
            return Err(Error::TooManySessions(max_per_user));
        }
        if kind == SessionKind::EveryonesPresence {
            if self.scope.watch_all.len() >= self.config.watch_all_limit {
                return Err(Error::TooManyWatchers(self.config.watch_all_limit));
            }
            self.scope.watch_all.insert(id);
        }
        self.sessions.insert(
            id,
            SessionEntry {
                user: user.map(|u| u.id),
                kind,
                outlet,
                away: false,
                last_sent: Instant::now(),
                receipts,
            },
        );
        let mut peers_missed = false;
        if let Some(user) = user {
            self.users
                .entry(user.id)
                .or_insert_with(|| UserEntry::new(user.display_name.clone()))
                .joined(id, &user.display_name);
            if let Some(peers) = peers {
                self.set_peers(user.id, peers);
            }
            peers_missed = self.users[&user.id].needs_peers();
            self.mark_dirty(user.id, out);
            out.store.push(StoreOp::SessionOpened {
                id,
                user: user.id,
                kind: kind.as_str(),
                at: chrono::Utc::now(),
            });
        }
        let snapshot = self.snapshot(user.map(|u| u.id), kind, Instant::now());
        Ok((snapshot, peers_missed))
    }

    /// Removes a session, ending its stream with `status` (None: a normal end).
    pub(super) fn detach(&mut self, id: SessionId, status: Option<Status>, out: &mut Effects) {
        let Some(entry) = self.sessions.remove(&id) else {
            return;
        };
        out.ended.push(Ended {
            outlet: entry.outlet,
            status,
        });
        if entry.kind == SessionKind::EveryonesPresence {
            self.scope.watch_all.remove(&id);
        }
        let Some(user) = entry.user else { return };
        let now = Instant::now();
        if let Some(user_entry) = self.users.get_mut(&user) {
            user_entry.sessions.retain(|s| *s != id);
            if user_entry.sessions.is_empty() {
                user_entry.left(now);
            }
        }
        self.mark_dirty(user, out);
        self.end_typing_of_session(user, id, out);
        out.store.push(StoreOp::SessionClosed {
            id,
            at: chrono::Utc::now(),
        });
    }

    /// At shutdown: ends every session with `status` and forgets every user.
    pub(super) fn detach_all(&mut self, status: &Status, out: &mut Effects) {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.detach(id, Some(status.clone()), out);
        }
        self.users.clear();
        self.typing.clear();
        self.dirty.clear();
        self.scope = Scope::default();
    }

    /// The outlet of an open session, for the hub to queue an event on.
    pub(super) fn outlet(&self, id: SessionId) -> Option<&Outlet> {
        self.sessions.get(&id).map(|s| &s.outlet)
    }

    /// An event was queued on the session just now.
    pub(super) fn sent(&mut self, id: SessionId, now: Instant) {
        if let Some(entry) = self.sessions.get_mut(&id) {
            entry.last_sent = now;
        }
    }

    /// The receipts of `user`'s open session `session`.
    pub(super) fn receipts_of(&self, user: UserId, session: SessionId) -> Result<Arc<Receipts>> {
        let entry = self
            .sessions
            .get(&session)
            .filter(|entry| entry.user == Some(user))
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "session_id: no open session {session} of this user"
                ))
            })?;
        entry.receipts.clone().ok_or_else(|| {
            Error::FailedPrecondition(
                "session_id: the session did not ask for receipts (Hello.receipts), or the server \
                 keeps no history"
                    .into(),
            )
        })
    }

    /// The chat sessions of `user`, but `except`.
    pub(super) fn chat_sessions_of(
        &self,
        user: UserId,
        except: Option<SessionId>,
    ) -> Vec<SessionId> {
        self.users
            .get(&user)
            .map(|u| {
                u.sessions
                    .iter()
                    .copied()
                    .filter(|id| Some(*id) != except)
                    .filter(|id| {
                        self.sessions
                            .get(id)
                            .is_some_and(|s| s.kind == SessionKind::Chat)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A message from `sender` to `recipient` was stored: the sender's typing towards the
    /// recipient ends and each is told about the other from now on. Returns the sessions it goes
    /// to: the recipient's, and the sender's others (all but `origin`).
    pub(super) fn message_stored(
        &mut self,
        sender: UserId,
        recipient: UserId,
        origin: Option<SessionId>,
        out: &mut Effects,
    ) -> (Vec<SessionId>, Vec<SessionId>) {
        self.stop_typing(sender, recipient, out);
        self.link_peers(sender, recipient, out);
        (
            self.chat_sessions_of(recipient, None),
            self.chat_sessions_of(sender, origin),
        )
    }

    /// One pass over the timers: typing expiries, presence changes, heartbeats to idle streams.
    pub(super) fn tick(&mut self, now: Instant, out: &mut Effects) {
        self.expire_typing(now, out);
        self.publish_presence_timers(now, out);

        let interval = self.config.heartbeat_interval;
        if self
            .last_heartbeat_sweep
            .is_none_or(|last| now - last >= interval / 4)
        {
            self.last_heartbeat_sweep = Some(now);
            let idle = self
                .sessions
                .iter()
                .filter(|(_, s)| s.kind == SessionKind::Chat && now - s.last_sent >= interval)
                .map(|(id, _)| *id);
            let heartbeat = server_event(Event::Heartbeat(Heartbeat {
                server_time: Some(now_timestamp()),
            }));
            out.send_all(idle.collect::<Vec<_>>(), &heartbeat);
        }
    }

    /// Panics, naming what disagrees, unless the maps index one another consistently: every
    /// session of a user is in that user's list and the reverse, the watchers of everyone are the
    /// sessions of that kind, the presence scope counts and pages only announced users, and each
    /// user's peers mirror who watches whom.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        for (id, session) in &self.sessions {
            if let Some(user) = session.user {
                let listed = self
                    .users
                    .get(&user)
                    .map_or(0, |u| u.sessions.iter().filter(|s| **s == *id).count());
                assert_eq!(
                    listed, 1,
                    "session {id} of {user} is listed {listed} times under its user"
                );
            }
            assert_eq!(
                session.kind == SessionKind::EveryonesPresence,
                self.scope.watch_all.contains(id),
                "session {id}: its kind and the watchers of everyone disagree"
            );
        }
        for id in &self.scope.watch_all {
            assert!(
                self.sessions.contains_key(id),
                "watcher {id} has no session"
            );
        }
        for (user, entry) in &self.users {
            for id in &entry.sessions {
                let owner = self.sessions.get(id).and_then(|s| s.user);
                assert_eq!(
                    owner,
                    Some(*user),
                    "{user} lists session {id}, which is not theirs"
                );
            }
            for peer in entry.peers.iter().flatten() {
                assert!(
                    self.scope
                        .peer_of
                        .get(peer)
                        .is_some_and(|w| w.contains(user)),
                    "{user} has peer {peer}, but is not among the watchers of {peer}"
                );
            }
        }
        for (peer, watchers) in &self.scope.peer_of {
            assert!(
                !watchers.is_empty(),
                "an empty watcher set is kept for {peer}"
            );
            for watcher in watchers {
                let peers = self.users.get(watcher).and_then(|u| u.peers.as_ref());
                assert!(
                    peers.is_some_and(|p| p.contains(peer)),
                    "{watcher} watches {peer} without having them as a peer"
                );
            }
        }
        let announced = self
            .users
            .values()
            .filter(|u| u.published.is_some())
            .count();
        assert_eq!(
            self.scope.online, announced,
            "the online count disagrees with the users announced"
        );
        assert!(
            self.scope.page.len() <= self.config.directory_size,
            "the directory page is over its size"
        );
        for id in &self.scope.page {
            assert!(
                self.users.get(id).is_some_and(|u| u.published.is_some()),
                "{id} is on the directory page without being announced"
            );
        }
        for ((from, _), entry) in &self.typing {
            if let Some(session) = entry.session {
                let owner = self.sessions.get(&session).and_then(|s| s.user);
                assert_eq!(
                    owner,
                    Some(*from),
                    "typing of {from} outlived its session {session}"
                );
            }
        }
    }

    /// Lets a test break the registry on purpose, to show that `check_invariants` notices.
    #[cfg(test)]
    pub(super) fn corrupt_for_test(&mut self, corrupt: impl FnOnce(&mut Self)) {
        corrupt(self);
    }
}

#[cfg(test)]
mod tests;
