//! Presence derived from sessions: ONLINE while any session is active (or a heartbeat is fresh),
//! AWAY when every session said so, OFFLINE once the grace period after the last one has passed.
//!
//! Changes are published in batches: right after a change (then at most once per
//! [`PRESENCE_COALESCE`]), and on the ticker for grace periods, so a burst of joins costs one pass.
//!
//! What each session is told is scoped ([`Scope`]), so that presence does not cost the square of
//! the users online: the directory page (the first users online, at most the configured size, a
//! vacancy filled by another online user), the session's own user, and the user's conversation
//! peers. While everyone fits in the page, every session sees every change, as in a small
//! deployment; beyond it an OnlineCount event keeps the total current.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{Hub, SessionKind, State, store::StoreOp};
use crate::{
    convert::{server_event, timestamp},
    db::{
        StoredStatus,
        ids::{SessionId, UserId},
    },
    error::{Error, Result},
    identity::AuthUser,
    proto::{
        OnlineCount, Presence, PresenceChange, PresenceEvent, PresenceSnapshot, PresenceStatus,
        ServerEvent, User, presence_event, server_event::Event,
    },
};

/// After publishing, how long changes gather before the next batch goes out.
pub(super) const PRESENCE_COALESCE: Duration = Duration::from_millis(20);

/// Least time between two OnlineCount events, which go to every session.
const COUNT_INTERVAL: Duration = Duration::from_secs(5);

/// What the hub knows of one user's presence.
#[derive(Debug)]
pub(super) struct UserEntry {
    /// Shown to others.
    display_name: String,
    /// The user's open sessions.
    pub(super) sessions: Vec<SessionId>,
    /// The users this one has a conversation with, once loaded (None: not yet, or a user known
    /// only from Heartbeat calls).
    peers: Option<HashSet<UserId>>,
    /// A Heartbeat RPC keeps the user ONLINE until then.
    heartbeat_until: Option<Instant>,
    /// When the last session closed, for the grace period.
    left_at: Option<Instant>,
    /// Last activity, reported as `last_seen`.
    last_seen: DateTime<Utc>,
    /// What watchers were last told: status and display name.
    published: Option<(PresenceStatus, String)>,
}

impl UserEntry {
    pub(super) fn new(display_name: String) -> Self {
        Self {
            display_name,
            sessions: Vec::new(),
            peers: None,
            heartbeat_until: None,
            left_at: None,
            last_seen: Utc::now(),
            published: None,
        }
    }

    /// A session of the user opened.
    pub(super) fn joined(&mut self, session: SessionId, display_name: &str) {
        self.sessions.push(session);
        self.left_at = None;
        self.last_seen = Utc::now();
        display_name.clone_into(&mut self.display_name);
    }

    /// The user's last session closed.
    pub(super) fn left(&mut self, now: Instant) {
        self.left_at = Some(now);
        self.last_seen = Utc::now();
    }

    /// Whether the user's conversation peers still have to be loaded.
    pub(super) fn needs_peers(&self) -> bool {
        self.peers.is_none()
    }
}

/// Who is told about whom.
#[derive(Debug, Default)]
pub(super) struct Scope {
    /// The directory page: users every session is told about.
    page: HashSet<UserId>,
    /// Sessions told about every user (WatchPresence with `every_user`).
    pub(super) watch_all: HashSet<SessionId>,
    /// For each user, the connected users who have a conversation with them.
    peer_of: HashMap<UserId, HashSet<UserId>>,
    /// Users announced ONLINE or AWAY.
    online: usize,
    /// The total the last OnlineCount carried, and when it went out.
    count_sent: (usize, Option<Instant>),
}

impl Hub {
    /// Notes that `user`'s presence may have changed and wakes the publisher.
    pub(super) fn mark_dirty(&self, state: &mut State, user: UserId) {
        state.dirty.insert(user);
        let _ = self.presence_changed.try_send(());
    }

    /// A user's status now, from their sessions and timers.
    fn derive_status(&self, state: &State, user: &UserEntry, now: Instant) -> PresenceStatus {
        if !user.sessions.is_empty() {
            let all_away = user
                .sessions
                .iter()
                .all(|id| state.sessions.get(id).is_some_and(|s| s.away));
            return if all_away {
                PresenceStatus::Away
            } else {
                PresenceStatus::Online
            };
        }
        if user.heartbeat_until.is_some_and(|until| until > now) {
            return PresenceStatus::Online;
        }
        if let Some(left_at) = user.left_at
            && now < left_at + self.config.offline_grace
        {
            // In the grace period: keep what watchers were told, so a quick reconnect never flaps.
            return user
                .published
                .as_ref()
                .map_or(PresenceStatus::Online, |(status, _)| *status);
        }
        PresenceStatus::Offline
    }

    fn presence(&self, state: &State, id: UserId, user: &UserEntry, now: Instant) -> Presence {
        Presence {
            user: Some(User {
                user_id: id.to_string(),
                display_name: user.display_name.clone(),
            }),
            status: self.derive_status(state, user, now) as i32,
            last_seen: Some(timestamp(user.last_seen)),
            sessions: user.sessions.len() as u32,
        }
    }

    /// The ONLINE and AWAY users among `ids`, ordered by display name.
    fn online_among(
        &self,
        state: &State,
        ids: impl Iterator<Item = UserId>,
        now: Instant,
    ) -> Vec<Presence> {
        let mut users: Vec<Presence> = ids
            .filter_map(|id| Some(self.presence(state, id, state.users.get(&id)?, now)))
            .filter(|p| p.status != PresenceStatus::Offline as i32)
            .collect();
        users.sort_by_cached_key(|p| p.user.as_ref().map(|u| u.display_name.to_lowercase()));
        users
    }

    /// The snapshot a new session of `viewer` (None: an anonymous watcher) starts with.
    pub(super) fn snapshot(
        &self,
        state: &State,
        viewer: Option<UserId>,
        kind: SessionKind,
        now: Instant,
    ) -> PresenceSnapshot {
        let everyone = kind == SessionKind::EveryonesPresence
            || state.users.len() <= self.config.directory_size;
        let users = if everyone {
            self.online_among(state, state.users.keys().copied(), now)
        } else {
            let mut ids = state.scope.page.clone();
            if let Some(viewer) = viewer.and_then(|id| Some((id, state.users.get(&id)?))) {
                ids.insert(viewer.0);
                ids.extend(viewer.1.peers.iter().flatten());
            }
            self.online_among(state, ids.into_iter(), now)
        };
        PresenceSnapshot {
            online_count: state.scope.online.max(users.len()) as u32,
            users,
        }
    }

    /// Users ONLINE or AWAY, without `exclude`.
    pub fn list_online(&self, exclude: Option<UserId>) -> Vec<Presence> {
        let state = self.lock();
        let ids = state
            .users
            .keys()
            .copied()
            .filter(|id| Some(*id) != exclude);
        self.online_among(&state, ids, Instant::now())
    }

    /// One user's presence, if the hub knows them (otherwise they are OFFLINE).
    pub fn presence_of(&self, user: UserId) -> Option<Presence> {
        let state = self.lock();
        let entry = state.users.get(&user)?;
        Some(self.presence(&state, user, entry, Instant::now()))
    }

    /// A Heartbeat RPC: the user stays ONLINE for the presence TTL.
    pub fn heartbeat(&self, user: &AuthUser) -> Presence {
        let now = Instant::now();
        let mut state = self.lock();
        let entry = state
            .users
            .entry(user.id)
            .or_insert_with(|| UserEntry::new(user.display_name.clone()));
        entry.heartbeat_until = Some(now + self.config.presence_ttl);
        entry.last_seen = Utc::now();
        user.display_name.clone_into(&mut entry.display_name);
        self.mark_dirty(&mut state, user.id);
        let entry = &state.users[&user.id];
        self.presence(&state, user.id, entry, now)
    }

    /// Sets one session (or, with None, every session of the user) ONLINE or AWAY.
    pub fn set_away(
        &self,
        user: UserId,
        session: Option<SessionId>,
        away: bool,
    ) -> Result<Presence> {
        let now = Instant::now();
        let mut state = self.lock();
        let Some(entry) = state.users.get(&user) else {
            return Err(Error::NotFound("the user has no open session".into()));
        };
        let targets: Vec<SessionId> = match session {
            Some(id) if entry.sessions.contains(&id) => vec![id],
            Some(_) => {
                return Err(Error::NotFound(
                    "no open session of the caller has that session_id".into(),
                ));
            }
            None => entry.sessions.clone(),
        };
        if targets.is_empty() {
            return Err(Error::NotFound("the user has no open session".into()));
        }
        for id in targets {
            if let Some(session) = state.sessions.get_mut(&id) {
                session.away = away;
            }
            let _ = self.store.send(StoreOp::SessionAway {
                id,
                away,
                at: Utc::now(),
            });
        }
        self.mark_dirty(&mut state, user);
        let entry = &state.users[&user];
        Ok(self.presence(&state, user, entry, now))
    }

    /// Renames a connected user, so watchers see the new name.
    pub fn rename(&self, user: UserId, display_name: &str) {
        let mut state = self.lock();
        if let Some(entry) = state.users.get_mut(&user) {
            display_name.clone_into(&mut entry.display_name);
            self.mark_dirty(&mut state, user);
        }
    }

    /// Records `user`'s conversation peers (loaded at their first session), so their changes
    /// reach the user's sessions.
    pub(super) fn set_peers(&self, state: &mut State, user: UserId, peers: Vec<UserId>) {
        let Some(entry) = state.users.get_mut(&user) else {
            return;
        };
        if entry.peers.is_some() {
            return; // another session of the user loaded them first
        }
        entry.peers = Some(peers.iter().copied().collect());
        for peer in peers {
            state.scope.peer_of.entry(peer).or_default().insert(user);
        }
    }

    /// A message passed between `a` and `b`: from now on each is told about the other. A new
    /// conversation also tells each the other's presence now.
    pub(super) fn link_peers(&self, state: &mut State, a: UserId, b: UserId) {
        for (user, peer) in [(a, b), (b, a)] {
            let Some(peers) = state.users.get_mut(&user).and_then(|u| u.peers.as_mut()) else {
                continue;
            };
            if !peers.insert(peer) {
                continue;
            }
            state.scope.peer_of.entry(peer).or_default().insert(user);
            let Some(entry) = state.users.get(&peer) else {
                continue; // offline: nothing to tell yet
            };
            if entry.published.is_none() || state.scope.page.contains(&peer) {
                continue; // not announced yet, or the user knows already
            }
            let event = change_event(self.presence(state, peer, entry, Instant::now()));
            for id in state.users[&user].sessions.clone() {
                self.push(state, id, event.clone());
            }
        }
    }

    /// Forgets a user who went OFFLINE, with their links to their peers.
    fn forget(&self, state: &mut State, id: UserId) {
        let Some(entry) = state.users.remove(&id) else {
            return;
        };
        for peer in entry.peers.into_iter().flatten() {
            if let Some(watchers) = state.scope.peer_of.get_mut(&peer) {
                watchers.remove(&id);
                if watchers.is_empty() {
                    state.scope.peer_of.remove(&peer);
                }
            }
        }
    }

    /// Publishes the changes gathered since the last batch.
    pub(super) fn flush_presence(&self) {
        let mut state = self.lock();
        let dirty: Vec<UserId> = state.dirty.drain().collect();
        self.publish_presence_changes(&mut state, dirty, Instant::now());
    }

    /// On the ticker: publishes what the grace period and heartbeat TTLs changed, and the total.
    pub(super) fn publish_presence_timers(&self, state: &mut State, now: Instant) {
        let mut candidates: Vec<UserId> = state.dirty.drain().collect();
        candidates.extend(
            state
                .users
                .iter()
                .filter(|(_, u)| u.sessions.is_empty())
                .map(|(id, _)| *id),
        );
        self.publish_presence_changes(state, candidates, now);
        self.publish_online_count(state, now);
    }

    /// Publishes every presence change among `candidates` to the sessions told about that user,
    /// writes it through to `users_online`, and forgets users who went OFFLINE.
    fn publish_presence_changes(
        &self,
        state: &mut State,
        mut candidates: Vec<UserId>,
        now: Instant,
    ) {
        candidates.sort();
        candidates.dedup();

        let mut changes = Vec::new();
        let mut vacancies = false;
        for id in candidates {
            let Some(entry) = state.users.get(&id) else {
                continue;
            };
            let presence = self.presence(state, id, entry, now);
            let status = presence.status();
            let published = Some((status, entry.display_name.clone()));
            if entry.published == published {
                continue;
            }
            let was_online = entry.published.is_some();
            if !was_online && status == PresenceStatus::Offline {
                // Never shown online (possible only without a grace period): nothing to tell.
                self.forget(state, id);
                continue;
            }
            let stored = match status {
                PresenceStatus::Away => StoredStatus::Away,
                PresenceStatus::Offline => StoredStatus::Offline,
                _ => StoredStatus::Online,
            };
            self.metrics.presence_changed(stored);
            let _ = self.store.send(StoreOp::Presence {
                user: id,
                status: stored,
                sessions: presence.sessions,
                last_seen: entry.last_seen,
            });
            let scope = &mut state.scope;
            let in_page = if status == PresenceStatus::Offline {
                scope.online -= 1;
                let in_page = scope.page.remove(&id);
                vacancies |= in_page;
                in_page
            } else {
                if !was_online {
                    scope.online += 1;
                    if scope.page.len() < self.config.directory_size {
                        scope.page.insert(id);
                    }
                }
                scope.page.contains(&id)
            };
            let audience = self.audience(state, id, in_page);
            if status == PresenceStatus::Offline {
                self.forget(state, id);
            } else if let Some(entry) = state.users.get_mut(&id) {
                entry.published = published;
            }
            changes.push((change_event(presence), audience));
        }
        if vacancies {
            changes.extend(self.fill_page(state, now));
        }
        for (event, audience) in changes {
            let targets = match audience {
                Audience::Everyone => state.sessions.keys().copied().collect(),
                Audience::Only(targets) => targets,
            };
            for id in targets {
                self.push(state, id, event.clone());
            }
        }
    }

    /// The sessions told about a change of `user`.
    fn audience(&self, state: &State, user: UserId, in_page: bool) -> Audience {
        if in_page {
            return Audience::Everyone;
        }
        let sessions_of = |id: &UserId| state.users.get(id).into_iter().flat_map(|u| &u.sessions);
        let mut targets: HashSet<SessionId> = state.scope.watch_all.clone();
        targets.extend(sessions_of(&user));
        for watcher in state.scope.peer_of.get(&user).into_iter().flatten() {
            targets.extend(sessions_of(watcher));
        }
        Audience::Only(targets.into_iter().collect())
    }

    /// Gives the page's free places to online users outside it; each is announced to everyone.
    fn fill_page(&self, state: &mut State, now: Instant) -> Vec<(ServerEvent, Audience)> {
        let free = self.config.directory_size - state.scope.page.len();
        let newcomers: Vec<UserId> = state
            .users
            .iter()
            .filter(|(id, u)| u.published.is_some() && !state.scope.page.contains(id))
            .map(|(id, _)| *id)
            .take(free)
            .collect();
        newcomers
            .into_iter()
            .map(|id| {
                state.scope.page.insert(id);
                let presence = self.presence(state, id, &state.users[&id], now);
                (change_event(presence), Audience::Everyone)
            })
            .collect()
    }

    /// Sends the number of users online to every session, while it exceeds the page (and once
    /// when it fits again), at most every [`COUNT_INTERVAL`].
    fn publish_online_count(&self, state: &mut State, now: Instant) {
        let online = state.scope.online;
        let (sent, sent_at) = state.scope.count_sent;
        let size = self.config.directory_size;
        if online == sent || (online <= size && sent <= size) {
            return;
        }
        if sent_at.is_some_and(|at| now - at < COUNT_INTERVAL) {
            return;
        }
        state.scope.count_sent = (online, Some(now));
        let event = server_event(Event::Presence(PresenceEvent {
            event: Some(presence_event::Event::OnlineCount(OnlineCount {
                users: online as u32,
            })),
        }));
        let targets: Vec<SessionId> = state.sessions.keys().copied().collect();
        for id in targets {
            self.push(state, id, event.clone());
        }
    }
}

/// Who a presence change goes to.
enum Audience {
    /// Every session (a user of the directory page).
    Everyone,
    /// These sessions.
    Only(Vec<SessionId>),
}

fn change_event(presence: Presence) -> ServerEvent {
    server_event(Event::Presence(PresenceEvent {
        event: Some(presence_event::Event::Change(PresenceChange {
            presence: Some(presence),
        })),
    }))
}
