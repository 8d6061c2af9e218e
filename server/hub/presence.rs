//! Presence derived from sessions: ONLINE while any session is active (or a heartbeat is fresh),
//! AWAY when every session said so, OFFLINE once the grace period after the last one has passed.
//! The ticker publishes changes in batches, so a burst of joins costs one pass, not one each.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{Hub, State, store::StoreOp};
use crate::{
    convert::{server_event, timestamp},
    db::{
        StoredStatus,
        ids::{SessionId, UserId},
    },
    error::{Error, Result},
    identity::AuthUser,
    proto::{
        Presence, PresenceChange, PresenceEvent, PresenceStatus, User, presence_event,
        server_event::Event,
    },
};

/// What the hub knows of one user's presence.
#[derive(Debug)]
pub(super) struct UserEntry {
    /// Shown to others.
    display_name: String,
    /// The user's open sessions.
    pub(super) sessions: Vec<SessionId>,
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
}

impl Hub {
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

    /// Everyone ONLINE or AWAY, ordered by display name.
    pub(super) fn snapshot(&self, state: &State, now: Instant) -> Vec<Presence> {
        let mut users: Vec<Presence> = state
            .users
            .iter()
            .map(|(id, user)| self.presence(state, *id, user, now))
            .filter(|p| p.status != PresenceStatus::Offline as i32)
            .collect();
        users.sort_by(|a, b| {
            let name = |p: &Presence| p.user.as_ref().map(|u| u.display_name.to_lowercase());
            name(a).cmp(&name(b))
        });
        users
    }

    /// Users ONLINE or AWAY, without `exclude`.
    pub fn list_online(&self, exclude: Option<UserId>) -> Vec<Presence> {
        let state = self.lock();
        let exclude = exclude.map(|id| id.to_string());
        self.snapshot(&state, Instant::now())
            .into_iter()
            .filter(|p| p.user.as_ref().map(|u| &u.user_id) != exclude.as_ref())
            .collect()
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
        state.dirty.insert(user.id);
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
        state.dirty.insert(user);
        let entry = &state.users[&user];
        Ok(self.presence(&state, user, entry, now))
    }

    /// Renames a connected user, so watchers see the new name.
    pub fn rename(&self, user: UserId, display_name: &str) {
        let mut state = self.lock();
        if let Some(entry) = state.users.get_mut(&user) {
            display_name.clone_into(&mut entry.display_name);
            state.dirty.insert(user);
        }
    }

    /// Publishes every presence change since the last tick to all sessions, writes it through to
    /// `users_online`, and forgets users who went OFFLINE.
    pub(super) fn publish_presence_changes(&self, state: &mut State, now: Instant) {
        let mut candidates: Vec<UserId> = state.dirty.drain().collect();
        candidates.extend(
            state
                .users
                .iter()
                .filter(|(_, u)| u.sessions.is_empty())
                .map(|(id, _)| *id),
        );
        candidates.sort();
        candidates.dedup();

        let mut changes = Vec::new();
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
            if entry.published.is_none() && status == PresenceStatus::Offline {
                // Never shown online (possible only without a grace period): nothing to tell.
                state.users.remove(&id);
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
            if status == PresenceStatus::Offline {
                state.users.remove(&id);
            } else if let Some(entry) = state.users.get_mut(&id) {
                entry.published = published;
            }
            changes.push(presence);
        }
        if changes.is_empty() {
            return;
        }
        let targets: Vec<SessionId> = state.sessions.keys().copied().collect();
        for change in changes {
            let event = server_event(Event::Presence(PresenceEvent {
                event: Some(presence_event::Event::Change(PresenceChange {
                    presence: Some(change),
                })),
            }));
            for id in &targets {
                self.push(state, *id, event.clone());
            }
        }
    }
}
