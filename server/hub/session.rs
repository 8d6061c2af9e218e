//! Opening sessions and the stream each one returns to tonic.

use std::{
    collections::{HashSet, VecDeque},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use tokio::{sync::mpsc, time::Instant};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::{Hub, SessionEntry, presence::UserEntry, store::StoreOp};
use crate::{
    convert::{chat_message, now_timestamp, server_event},
    db::ids::SessionId,
    error::{Error, Result},
    identity::AuthUser,
    metrics::Transport,
    proto::{
        PresenceEvent, PresenceSnapshot, ServerEvent, User, Welcome, presence_event,
        server_event::Event,
    },
};

/// Which events a session takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// Chat or Subscribe: everything for its user, presence included.
    Chat,
    /// Presence or WatchPresence: presence events only, scoped like a chat session's.
    Presence,
    /// WatchPresence with `every_user`: every user's presence events.
    EveryonesPresence,
}

impl SessionKind {
    fn transport(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Presence | Self::EveryonesPresence => "presence",
        }
    }
}

impl Hub {
    /// Opens a session for `user` (None: an anonymous presence watcher) that came by `transport`.
    /// The stream starts with Welcome (chat sessions), then the presence snapshot, then every
    /// stored message no session of the user has received, then live events.
    pub async fn open_session(
        self: &Arc<Self>,
        user: Option<&AuthUser>,
        kind: SessionKind,
        transport: Transport,
        token: String,
    ) -> Result<SessionStream> {
        let id = SessionId::new_random();
        let (tx, rx) = mpsc::channel(self.config.session_queue);
        let closing = Arc::new(Mutex::new(None));
        let cancel = CancellationToken::new();
        // Loaded before the lock is taken; at most once per user while the hub knows them.
        let needs_peers = user.is_some_and(|u| {
            let state = self.lock();
            state.users.get(&u.id).is_none_or(UserEntry::needs_peers)
        });
        let peers = match user {
            Some(user) if needs_peers => self.db.conversation_peers(user.id).await?,
            _ => Vec::new(),
        };
        let (snapshot, peers_missed) = {
            let mut state = self.lock();
            // Checked under the lock shutdown takes, so no session slips in after it.
            if self.is_shutting_down() {
                return Err(Error::ShuttingDown);
            }
            if state.sessions.len() >= self.config.max_sessions {
                return Err(Error::Overloaded(
                    "the server holds as many sessions as it may; retry later",
                ));
            }
            let max_per_user = self.config.max_sessions_per_user;
            let open_of_user = user
                .and_then(|u| state.users.get(&u.id))
                .map_or(0, |entry| entry.sessions.len());
            if open_of_user >= max_per_user as usize {
                return Err(Error::TooManySessions(max_per_user));
            }
            if kind == SessionKind::EveryonesPresence {
                if state.scope.watch_all.len() >= self.config.watch_all_limit {
                    return Err(Error::TooManyWatchers(self.config.watch_all_limit));
                }
                state.scope.watch_all.insert(id);
            }
            state.sessions.insert(
                id,
                SessionEntry {
                    user: user.map(|u| u.id),
                    kind,
                    transport,
                    tx,
                    closing: closing.clone(),
                    cancel: cancel.clone(),
                    away: false,
                    last_sent: Instant::now(),
                },
            );
            self.metrics.session_opened(transport);
            let mut peers_missed = false;
            if let Some(user) = user {
                state
                    .users
                    .entry(user.id)
                    .or_insert_with(|| UserEntry::new(user.display_name.clone()))
                    .joined(id, &user.display_name);
                if needs_peers {
                    self.set_peers(&mut state, user.id, peers);
                }
                peers_missed = state.users[&user.id].needs_peers();
                self.mark_dirty(&mut state, user.id);
                // Queued under the lock, so it is written before this session's SessionClosed.
                let _ = self.store.send(StoreOp::SessionOpened {
                    id,
                    user: user.id,
                    transport: kind.transport(),
                    at: chrono::Utc::now(),
                });
            }
            let snapshot = self.snapshot(&state, user.map(|u| u.id), kind, Instant::now());
            (snapshot, peers_missed)
        };
        let mut stream = SessionStream {
            id,
            user_id: user.map(|u| u.id.to_string()),
            prefix: VecDeque::new(),
            backlog: HashSet::new(),
            rx,
            closing,
            cancel,
            hub: self.clone(),
        };
        let Some(user) = user else {
            stream.prefix.push_back(presence_snapshot(snapshot));
            return Ok(stream);
        };
        if peers_missed {
            // The hub forgot the user between the check above and the lock (their grace period
            // ran out meanwhile): the peers come now, after the snapshot. (An error drops the
            // stream, which ends the session.)
            let peers = self.db.conversation_peers(user.id).await?;
            self.set_peers(&mut self.lock(), user.id, peers);
        }

        if kind == SessionKind::Chat {
            stream
                .prefix
                .push_back(server_event(Event::Welcome(Welcome {
                    session_id: id.to_string(),
                    user: Some(User {
                        user_id: user.id.to_string(),
                        display_name: user.display_name.clone(),
                    }),
                    token,
                    server_time: Some(now_timestamp()),
                    receive_window: 0,
                })));
        }
        stream.prefix.push_back(presence_snapshot(snapshot));
        if kind == SessionKind::Chat && self.config.keeps_history() {
            // Registered first, loaded second: a message committed meanwhile is both queued live
            // and in the backlog, and the stream drops the live copy. Messages another session
            // took but the writer has not recorded yet are left out.
            let taken = self.lock_in_delivery().clone();
            let backlog = self.db.undelivered_for(user.id).await?;
            for message in backlog.into_iter().filter(|m| !taken.contains(&m.seq)) {
                stream.backlog.insert(message.seq as u64);
                stream
                    .prefix
                    .push_back(server_event(Event::Message(chat_message(&message, 0))));
            }
        }
        Ok(stream)
    }

    /// Ends a session normally (its client stopped sending).
    pub fn close_session(&self, id: SessionId) {
        let mut state = self.lock();
        self.detach(&mut state, id, None);
    }

    /// Ends a session with `status`, for a client that broke the stream's rules.
    pub fn end_session(&self, id: SessionId, status: Status) {
        let mut state = self.lock();
        self.detach(&mut state, id, Some(status));
    }

    /// Notes that a recipient session took the message with this seq just now.
    fn note_delivered(&self, seq: u64) {
        self.lock_in_delivery().insert(seq as i64);
        let _ = self.delivered.send((seq as i64, chrono::Utc::now()));
    }
}

fn presence_snapshot(snapshot: PresenceSnapshot) -> ServerEvent {
    server_event(Event::Presence(PresenceEvent {
        event: Some(presence_event::Event::Snapshot(snapshot)),
    }))
}

/// The events of one session, as tonic streams them. Dropping it (the client went away) ends the
/// session.
#[derive(Debug)]
pub struct SessionStream {
    /// The session's id.
    id: SessionId,
    /// The session's user id as messages carry it; None for anonymous watchers.
    user_id: Option<String>,
    /// Welcome, snapshot and stored messages, sent before anything live.
    prefix: VecDeque<ServerEvent>,
    /// Seqs of the stored messages in `prefix`, so a live copy of one is not sent twice.
    backlog: HashSet<u64>,
    /// Live events.
    rx: mpsc::Receiver<Box<ServerEvent>>,
    /// Set when the hub ends the session, sent as the stream's final status.
    closing: Arc<Mutex<Option<Status>>>,
    /// Cancelled when the session ends.
    cancel: CancellationToken,
    /// To detach on drop and to report deliveries.
    hub: Arc<Hub>,
}

impl SessionStream {
    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Cancelled once the session has ended, for the task reading the client's events.
    pub fn ended(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// A message addressed to this session's user: remember that it was delivered. An error
    /// event: count it (every error event reaches the client here, whoever made it).
    fn on_yield(&self, event: &ServerEvent) {
        match (&event.event, &self.user_id) {
            (Some(Event::Message(message)), Some(user_id)) if &message.to_user_id == user_id => {
                self.hub.note_delivered(message.seq);
            }
            (Some(Event::Error(error)), _) => self.hub.metrics.error(&error.code),
            _ => {}
        }
    }
}

impl Stream for SessionStream {
    type Item = Result<ServerEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(event) = self.prefix.pop_front() {
            self.on_yield(&event);
            return Poll::Ready(Some(Ok(event)));
        }
        loop {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(event)) => {
                    let event = *event;
                    if let Some(Event::Message(message)) = &event.event
                        && self.backlog.remove(&message.seq)
                    {
                        continue;
                    }
                    self.on_yield(&event);
                    return Poll::Ready(Some(Ok(event)));
                }
                Poll::Ready(None) => {
                    let status = self
                        .closing
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take();
                    return Poll::Ready(status.map(Err));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for SessionStream {
    fn drop(&mut self) {
        self.hub.close_session(self.id);
    }
}
