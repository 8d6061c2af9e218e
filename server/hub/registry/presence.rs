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
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{Effects, Registry, SessionKind, StoreOp};
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
pub(in crate::hub) const PRESENCE_COALESCE: Duration = Duration::from_millis(20);

/// Least time between two OnlineCount events, which go to every session.
const COUNT_INTERVAL: Duration = Duration::from_secs(5);

/// What the hub knows of one user's presence.
#[derive(Debug)]
pub(super) struct UserEntry {
    /// Shown to others.
    pub(super) display_name: String,
    /// The user's open sessions.
    pub(super) sessions: Vec<SessionId>,
    /// The users this one has a conversation with, once loaded (None: not yet, or a user known
    /// only from Heartbeat calls).
    pub(super) peers: Option<HashSet<UserId>>,
    /// A Heartbeat RPC keeps the user ONLINE until then.
    pub(super) heartbeat_until: Option<Instant>,
    /// When the last session closed, for the grace period.
    pub(super) left_at: Option<Instant>,
    /// Last activity, reported as `last_seen`.
    pub(super) last_seen: DateTime<Utc>,
    /// What watchers were last told: status and display name.
    pub(super) published: Option<(PresenceStatus, String)>,
    /// Whether the user has had a session or made a Heartbeat call on this node (so this node
    /// keeps a `users_online` row of them), rather than being known only from other nodes.
    pub(super) here: bool,
    /// In cluster mode, the user's activity on each other node that has some.
    pub(super) remote: HashMap<Arc<str>, RemoteActivity>,
    /// In cluster mode, what the other nodes were last told of the user's activity here, with
    /// their name.
    pub(super) shared: Option<(Activity, String)>,
}

/// A user's activity on one node, as nodes tell each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Activity {
    /// Whether every session there said it is away.
    pub(crate) away: bool,
    /// The user's sessions there (0: kept ONLINE by Heartbeat calls alone).
    pub(crate) sessions: u32,
}

/// What another node said of a user it has activity of.
#[derive(Debug, Clone, Copy)]
pub(super) struct RemoteActivity {
    /// The activity.
    pub(super) activity: Activity,
    /// When that node last saw the user.
    pub(super) last_seen: DateTime<Utc>,
}

/// One user's entry as a node tells the others: its activity there, or None once it has none.
#[derive(Debug, Clone)]
pub(crate) struct NodeUser {
    pub(crate) user: UserId,
    pub(crate) display_name: String,
    pub(crate) activity: Option<Activity>,
    pub(crate) last_seen: DateTime<Utc>,
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
            here: false,
            remote: HashMap::new(),
            shared: None,
        }
    }

    /// A session of the user opened.
    pub(super) fn joined(&mut self, session: SessionId, display_name: &str) {
        self.here = true;
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

    /// When the user was last seen, on any node.
    fn last_seen(&self) -> DateTime<Utc> {
        let remote = self.remote.values().map(|r| r.last_seen);
        remote.fold(self.last_seen, DateTime::max)
    }
}

/// Who is told about whom.
#[derive(Debug, Default)]
pub(super) struct Scope {
    /// The directory page: users every session is told about.
    pub(super) page: HashSet<UserId>,
    /// Sessions told about every user (WatchPresence with `every_user`).
    pub(super) watch_all: HashSet<SessionId>,
    /// For each user, the connected users who have a conversation with them.
    pub(super) peer_of: HashMap<UserId, HashSet<UserId>>,
    /// Users announced ONLINE or AWAY.
    pub(super) online: usize,
    /// The total the last OnlineCount carried, and when it went out.
    pub(super) count_sent: (usize, Option<Instant>),
}

impl Registry {
    /// Notes that `user`'s presence may have changed, for the publisher to look at.
    pub(super) fn mark_dirty(&mut self, user: UserId, out: &mut Effects) {
        self.dirty.insert(user);
        out.presence_dirty = true;
    }

    /// The user's activity on this node: their sessions here, or a fresh Heartbeat call.
    fn local_activity(&self, user: &UserEntry, now: Instant) -> Option<Activity> {
        if !user.sessions.is_empty() {
            let away = user
                .sessions
                .iter()
                .all(|id| self.sessions.get(id).is_some_and(|s| s.away));
            return Some(Activity {
                away,
                sessions: user.sessions.len() as u32,
            });
        }
        user.heartbeat_until
            .is_some_and(|until| until > now)
            .then_some(Activity {
                away: false,
                sessions: 0,
            })
    }

    /// A user's status now, from their activity on every node and the timers: ONLINE if any
    /// node has them ONLINE, AWAY if all that have them say away.
    fn derive_status(&self, user: &UserEntry, now: Instant) -> PresenceStatus {
        let local = self.local_activity(user, now);
        let mut active = local
            .into_iter()
            .chain(user.remote.values().map(|r| r.activity));
        if let Some(first) = active.next() {
            let online = !first.away || active.any(|a| !a.away);
            return if online {
                PresenceStatus::Online
            } else {
                PresenceStatus::Away
            };
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

    fn presence(&self, id: UserId, user: &UserEntry, now: Instant) -> Presence {
        Presence {
            user: Some(User {
                user_id: id.to_string(),
                display_name: user.display_name.clone(),
            }),
            status: self.derive_status(user, now) as i32,
            last_seen: Some(timestamp(user.last_seen())),
            sessions: user.sessions.len() as u32
                + user
                    .remote
                    .values()
                    .map(|r| r.activity.sessions)
                    .sum::<u32>(),
        }
    }

    /// The ONLINE and AWAY users among `ids`, ordered by display name.
    fn online_among(&self, ids: impl Iterator<Item = UserId>, now: Instant) -> Vec<Presence> {
        let mut users: Vec<Presence> = ids
            .filter_map(|id| Some(self.presence(id, self.users.get(&id)?, now)))
            .filter(|p| p.status != PresenceStatus::Offline as i32)
            .collect();
        users.sort_by_cached_key(|p| p.user.as_ref().map(|u| u.display_name.to_lowercase()));
        users
    }

    /// The snapshot a new session of `viewer` (None: an anonymous watcher) starts with.
    pub(super) fn snapshot(
        &self,
        viewer: Option<UserId>,
        kind: SessionKind,
        now: Instant,
    ) -> PresenceSnapshot {
        let everyone = kind == SessionKind::EveryonesPresence
            || self.users.len() <= self.config.directory_size;
        let users = if everyone {
            self.online_among(self.users.keys().copied(), now)
        } else {
            let mut ids = self.scope.page.clone();
            if let Some(viewer) = viewer.and_then(|id| Some((id, self.users.get(&id)?))) {
                ids.insert(viewer.0);
                ids.extend(viewer.1.peers.iter().flatten());
            }
            self.online_among(ids.into_iter(), now)
        };
        PresenceSnapshot {
            online_count: self.scope.online.max(users.len()) as u32,
            users,
        }
    }

    /// Users ONLINE or AWAY, without `exclude`.
    pub(in crate::hub) fn list_online(
        &self,
        exclude: Option<UserId>,
        now: Instant,
    ) -> Vec<Presence> {
        let ids = self.users.keys().copied().filter(|id| Some(*id) != exclude);
        self.online_among(ids, now)
    }

    /// One user's presence, if the registry knows them (otherwise they are OFFLINE).
    pub(in crate::hub) fn presence_of(&self, user: UserId, now: Instant) -> Option<Presence> {
        let entry = self.users.get(&user)?;
        Some(self.presence(user, entry, now))
    }

    /// A Heartbeat RPC: the user stays ONLINE for the presence TTL.
    pub(in crate::hub) fn heartbeat(
        &mut self,
        user: &AuthUser,
        now: Instant,
        out: &mut Effects,
    ) -> Presence {
        let entry = self
            .users
            .entry(user.id)
            .or_insert_with(|| UserEntry::new(user.display_name.clone()));
        entry.here = true;
        entry.heartbeat_until = Some(now + self.config.presence_ttl);
        entry.last_seen = Utc::now();
        user.display_name.clone_into(&mut entry.display_name);
        self.mark_dirty(user.id, out);
        self.presence(user.id, &self.users[&user.id], now)
    }

    /// Sets one session (or, with None, every session of the user) ONLINE or AWAY.
    pub(in crate::hub) fn set_away(
        &mut self,
        user: UserId,
        session: Option<SessionId>,
        away: bool,
        now: Instant,
        out: &mut Effects,
    ) -> Result<Presence> {
        let Some(entry) = self.users.get(&user) else {
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
            if let Some(session) = self.sessions.get_mut(&id) {
                session.away = away;
            }
            out.store.push(StoreOp::SessionAway {
                id,
                away,
                at: Utc::now(),
            });
        }
        self.mark_dirty(user, out);
        Ok(self.presence(user, &self.users[&user], now))
    }

    /// Renames a connected user, so watchers see the new name.
    pub(in crate::hub) fn rename(&mut self, user: UserId, display_name: &str, out: &mut Effects) {
        if let Some(entry) = self.users.get_mut(&user) {
            display_name.clone_into(&mut entry.display_name);
            self.mark_dirty(user, out);
        }
    }

    /// Records `user`'s conversation peers (loaded at their first session), so their changes
    /// reach the user's sessions.
    pub(in crate::hub) fn set_peers(&mut self, user: UserId, peers: Vec<UserId>) {
        let Some(entry) = self.users.get_mut(&user) else {
            return;
        };
        if entry.peers.is_some() {
            return; // another session of the user loaded them first
        }
        entry.peers = Some(peers.iter().copied().collect());
        for peer in peers {
            self.scope.peer_of.entry(peer).or_default().insert(user);
        }
    }

    /// A message passed between `a` and `b`: from now on each is told about the other. A new
    /// conversation also tells each the other's presence now.
    pub(super) fn link_peers(&mut self, a: UserId, b: UserId, out: &mut Effects) {
        for (user, peer) in [(a, b), (b, a)] {
            let Some(peers) = self.users.get_mut(&user).and_then(|u| u.peers.as_mut()) else {
                continue;
            };
            if !peers.insert(peer) {
                continue;
            }
            self.scope.peer_of.entry(peer).or_default().insert(user);
            let Some(entry) = self.users.get(&peer) else {
                continue; // offline: nothing to tell yet
            };
            if entry.published.is_none() || self.scope.page.contains(&peer) {
                continue; // not announced yet, or the user knows already
            }
            let event = change_event(self.presence(peer, entry, Instant::now()));
            out.send_all(self.users[&user].sessions.iter().copied(), &event);
        }
    }

    /// Forgets a user who went OFFLINE, with their links to their peers.
    fn forget(&mut self, id: UserId) {
        let Some(entry) = self.users.remove(&id) else {
            return;
        };
        for peer in entry.peers.into_iter().flatten() {
            if let Some(watchers) = self.scope.peer_of.get_mut(&peer) {
                watchers.remove(&id);
                if watchers.is_empty() {
                    self.scope.peer_of.remove(&peer);
                }
            }
        }
    }

    /// Publishes the changes gathered since the last batch.
    pub(in crate::hub) fn flush_presence(&mut self, now: Instant, out: &mut Effects) {
        let dirty: Vec<UserId> = self.dirty.drain().collect();
        self.publish_presence_changes(dirty, now, out);
    }

    /// On the ticker: publishes what the grace period and heartbeat TTLs changed, and the total.
    pub(super) fn publish_presence_timers(&mut self, now: Instant, out: &mut Effects) {
        let mut candidates: Vec<UserId> = self.dirty.drain().collect();
        // Users active on other nodes change only when those nodes say so.
        candidates.extend(
            self.users
                .iter()
                .filter(|(_, u)| u.sessions.is_empty() && u.remote.is_empty())
                .map(|(id, _)| *id),
        );
        self.publish_presence_changes(candidates, now, out);
        self.publish_online_count(now, out);
    }

    /// Publishes every presence change among `candidates` to the sessions told about that user,
    /// writes it through to `users_online`, and forgets users who went OFFLINE.
    fn publish_presence_changes(
        &mut self,
        mut candidates: Vec<UserId>,
        now: Instant,
        out: &mut Effects,
    ) {
        candidates.sort();
        candidates.dedup();
        if self.config.shares_presence {
            self.share_changes(&candidates, now, out);
        }

        let mut changes = Vec::new();
        let mut vacancies = false;
        for id in candidates {
            let Some(entry) = self.users.get(&id) else {
                continue;
            };
            let presence = self.presence(id, entry, now);
            let status = presence.status();
            let published = Some((status, entry.display_name.clone()));
            if entry.published == published {
                continue;
            }
            let was_online = entry.published.is_some();
            if !was_online && status == PresenceStatus::Offline {
                // Never shown online (possible only without a grace period): nothing to tell.
                self.forget(id);
                continue;
            }
            // This node's row holds the user's activity here, for users it has had any of.
            if entry.here {
                out.store.push(self.presence_row(id, entry, now));
            }
            let scope = &mut self.scope;
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
            let audience = self.audience(id, in_page);
            if status == PresenceStatus::Offline {
                self.forget(id);
            } else if let Some(entry) = self.users.get_mut(&id) {
                entry.published = published;
            }
            changes.push((change_event(presence), audience));
        }
        if vacancies {
            changes.extend(self.fill_page(now));
        }
        for (event, audience) in changes {
            match audience {
                Audience::Everyone => out.send_all(self.sessions.keys().copied(), &event),
                Audience::Only(targets) => out.send_all(targets, &event),
            }
        }
    }

    /// This node's `users_online` row of `user`: their activity here.
    fn presence_row(&self, user: UserId, entry: &UserEntry, now: Instant) -> StoreOp {
        let status = match self.local_activity(entry, now) {
            Some(Activity { away: true, .. }) => StoredStatus::Away,
            Some(_) => StoredStatus::Online,
            None => StoredStatus::Offline,
        };
        StoreOp::Presence {
            user,
            status,
            sessions: entry.sessions.len() as u32,
            last_seen: entry.last_seen,
        }
    }

    /// After another node took this one for dead and cleaned its rows (ended its sessions,
    /// folded its presence rows away): writes them again from what this node holds.
    pub(in crate::hub) fn rewrite_rows(&self, now: Instant, out: &mut Effects) {
        let at = Utc::now();
        for (id, session) in &self.sessions {
            let Some(user) = session.user else { continue };
            let (id, kind) = (*id, session.kind.as_str());
            out.store
                .push(StoreOp::SessionOpened { id, user, kind, at });
            if session.away {
                out.store.push(StoreOp::SessionAway { id, away: true, at });
            }
        }
        for (id, entry) in &self.users {
            if entry.here {
                out.store.push(self.presence_row(*id, entry, now));
            }
        }
    }

    /// In cluster mode: the changes of this node's activity of `candidates`, for the other nodes.
    fn share_changes(&mut self, candidates: &[UserId], now: Instant, out: &mut Effects) {
        for id in candidates {
            let Some(entry) = self.users.get(id) else {
                continue;
            };
            let activity = self.local_activity(entry, now);
            let shared = activity.map(|a| (a, entry.display_name.clone()));
            if entry.shared == shared {
                continue;
            }
            out.shared.push(NodeUser {
                user: *id,
                display_name: entry.display_name.clone(),
                activity,
                last_seen: entry.last_seen,
            });
            if let Some(entry) = self.users.get_mut(id) {
                entry.shared = shared;
            }
        }
    }

    /// In cluster mode: everything this node has told the others, for a node that asks for it.
    pub(in crate::hub) fn shared_state(&self) -> Vec<NodeUser> {
        let users = self.users.iter();
        users
            .filter_map(|(id, entry)| {
                let (activity, display_name) = entry.shared.clone()?;
                Some(NodeUser {
                    user: *id,
                    display_name,
                    activity: Some(activity),
                    last_seen: entry.last_seen,
                })
            })
            .collect()
    }

    /// In cluster mode: what `node` says of its users. A user with activity nowhere any more
    /// goes through the offline grace here too, so one who reconnects elsewhere never flaps.
    pub(in crate::hub) fn apply_remote(
        &mut self,
        node: &Arc<str>,
        users: Vec<NodeUser>,
        out: &mut Effects,
    ) {
        let now = Instant::now();
        for NodeUser {
            user,
            display_name,
            activity,
            last_seen,
        } in users
        {
            match activity {
                Some(activity) => {
                    let entry = self
                        .users
                        .entry(user)
                        .or_insert_with(|| UserEntry::new(display_name.clone()));
                    // The name the user has now, whichever node renamed them.
                    entry.display_name = display_name;
                    let remote = RemoteActivity {
                        activity,
                        last_seen,
                    };
                    entry.remote.insert(node.clone(), remote);
                }
                None => self.remote_gone(user, node, last_seen, now),
            }
            self.mark_dirty(user, out);
        }
    }

    /// In cluster mode: `node` has stopped (or said everything anew in `users`); what it said
    /// before of users not in `users` no longer holds.
    pub(in crate::hub) fn replace_node(
        &mut self,
        node: &Arc<str>,
        users: Vec<NodeUser>,
        out: &mut Effects,
    ) {
        let listed: HashSet<UserId> = users.iter().map(|u| u.user).collect();
        let gone: Vec<UserId> = self
            .users
            .iter()
            .filter(|(id, entry)| entry.remote.contains_key(node) && !listed.contains(id))
            .map(|(id, _)| *id)
            .collect();
        let now = Instant::now();
        for user in gone {
            let last_seen = self.users[&user].remote[node].last_seen;
            self.remote_gone(user, node, last_seen, now);
            self.mark_dirty(user, out);
        }
        self.apply_remote(node, users, out);
    }

    /// `user` has no activity on `node` any more.
    fn remote_gone(&mut self, user: UserId, node: &str, last_seen: DateTime<Utc>, now: Instant) {
        let Some(entry) = self.users.get_mut(&user) else {
            return;
        };
        if entry.remote.remove(node).is_none() {
            return;
        }
        entry.last_seen = entry.last_seen.max(last_seen);
        if entry.sessions.is_empty() && entry.remote.is_empty() {
            entry.left_at = Some(now);
        }
    }

    /// The sessions told about a change of `user`.
    fn audience(&self, user: UserId, in_page: bool) -> Audience {
        if in_page {
            return Audience::Everyone;
        }
        let sessions_of = |id: &UserId| self.users.get(id).into_iter().flat_map(|u| &u.sessions);
        let mut targets: HashSet<SessionId> = self.scope.watch_all.clone();
        targets.extend(sessions_of(&user));
        for watcher in self.scope.peer_of.get(&user).into_iter().flatten() {
            targets.extend(sessions_of(watcher));
        }
        Audience::Only(targets.into_iter().collect())
    }

    /// Gives the page's free places to online users outside it; each is announced to everyone.
    fn fill_page(&mut self, now: Instant) -> Vec<(ServerEvent, Audience)> {
        let free = self.config.directory_size - self.scope.page.len();
        let newcomers: Vec<UserId> = self
            .users
            .iter()
            .filter(|(id, u)| u.published.is_some() && !self.scope.page.contains(id))
            .map(|(id, _)| *id)
            .take(free)
            .collect();
        newcomers
            .into_iter()
            .map(|id| {
                self.scope.page.insert(id);
                let presence = self.presence(id, &self.users[&id], now);
                (change_event(presence), Audience::Everyone)
            })
            .collect()
    }

    /// Sends the number of users online to every session, while it exceeds the page (and once
    /// when it fits again), at most every [`COUNT_INTERVAL`].
    fn publish_online_count(&mut self, now: Instant, out: &mut Effects) {
        let online = self.scope.online;
        let (sent, sent_at) = self.scope.count_sent;
        let size = self.config.directory_size;
        if online == sent || (online <= size && sent <= size) {
            return;
        }
        if sent_at.is_some_and(|at| now - at < COUNT_INTERVAL) {
            return;
        }
        self.scope.count_sent = (online, Some(now));
        let event = server_event(Event::Presence(PresenceEvent {
            event: Some(presence_event::Event::OnlineCount(OnlineCount {
                users: online as u32,
            })),
        }));
        out.send_all(self.sessions.keys().copied(), &event);
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
