//! Opening sessions and the stream each one returns to tonic.

use std::{
    collections::{BTreeSet, VecDeque},
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll},
};

use futures_util::{StreamExt, task::AtomicWaker};
use sea_orm::DbErr;
use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::WatchStream};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::{
    Hub,
    registry::{NewSession, Outlet},
};
use crate::{
    cluster::Following,
    convert::{chat_message, now_timestamp, server_event, update_event},
    db::{
        Marks, StoredMessage,
        ids::{Seq, SessionId, UserId},
    },
    error::{Error, Result},
    identity::AuthUser,
    metrics::Transport,
    proto::{
        PresenceEvent, PresenceSnapshot, ServerEvent, User, Welcome, presence_event,
        server_event::Event,
    },
};

/// Live messages a session may have skipped (its window was full, or it was still reading its
/// backlog) before it counts as too slow and is ended: their seqs are all it keeps of them.
const MAX_MISSED: usize = 16_384;
/// Changed messages a new session sends as MessageUpdates at most; past that, Welcome says so
/// and the client reloads what it shows with GetHistory instead.
const MAX_CHANGES_ON_CONNECT: u64 = 1_000;
/// Most undelivered messages below what a session has sent that it looks at after a cluster
/// link came back; more than this counts as a gap.
const MAX_RECHECKED: u64 = 4_096;

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
    /// How `sessions.kind` stores it.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Presence | Self::EveryonesPresence => "presence",
        }
    }
}

impl Hub {
    /// Opens a session for `user` (None: an anonymous presence watcher) that came by `transport`.
    /// The stream starts with Welcome (chat sessions), then the presence snapshot, then every
    /// stored message no session of the user has received (read in pages), then live events.
    /// With `receipts`, a message counts as delivered once the client acknowledges it.
    pub async fn open_session(
        self: &Arc<Self>,
        user: Option<&AuthUser>,
        kind: SessionKind,
        transport: Transport,
        token: String,
        receipts: bool,
        changes_after: Option<u64>,
    ) -> Result<SessionStream> {
        let id = SessionId::new_random();
        // Without history nothing waits for a later session, so there is nothing to acknowledge.
        let receipts = (receipts && kind == SessionKind::Chat && self.config.keeps_history())
            .then(|| Arc::new(Receipts::default()));
        let (tx, rx) = mpsc::channel(self.config.session_queue);
        let closing = Arc::new(Mutex::new(None));
        let cancel = CancellationToken::new();
        // Loaded before the lock is taken; at most once per user while the hub knows them.
        let peers = match user {
            Some(user) if self.lock().needs_peers(user.id) => {
                Some(self.pipeline.db().conversation_peers(user.id).await?)
            }
            _ => None,
        };
        let outlet = Outlet {
            tx,
            closing: closing.clone(),
            cancel: cancel.clone(),
            transport,
        };
        let session = NewSession {
            id,
            user,
            kind,
            outlet,
            receipts: receipts.clone(),
        };
        let (snapshot, peers_missed) = self.change(|registry, out| {
            // Checked under the lock shutdown takes, so no session slips in after it.
            if self.is_shutting_down() {
                return Err(Error::ShuttingDown);
            }
            let opened = registry.open(session, peers, out)?;
            // Counted under the lock, so no end of this session can be counted before it.
            self.metrics.session_opened(transport);
            Ok(opened)
        })?;
        let mut stream = SessionStream {
            id,
            user_id: user.map(|u| u.id.to_string()),
            prefix: VecDeque::new(),
            inbox: None,
            _following: None,
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
            let peers = self.pipeline.db().conversation_peers(user.id).await?;
            self.lock().set_peers(user.id, peers);
        }

        // Read before Welcome, which says whether they all fit; a change made meanwhile also
        // comes live, and clients keep the copy with the higher version.
        let (changes, changes_up_to) = if kind == SessionKind::Chat && self.config.keeps_history() {
            let db = self.pipeline.db();
            let latest = db.latest_version().await?;
            let after = changes_after.map(|after| i64::try_from(after).unwrap_or(i64::MAX));
            let changes = match after {
                Some(after) if after < latest => {
                    db.changes_after(user.id, after, MAX_CHANGES_ON_CONNECT + 1)
                        .await?
                }
                _ => Vec::new(),
            };
            (changes, latest)
        } else {
            (Vec::new(), 0)
        };
        let changes_truncated = changes.len() as u64 > MAX_CHANGES_ON_CONNECT;
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
                    receive_window: if receipts.is_some() {
                        self.config.receive_window as u32
                    } else {
                        0
                    },
                    limits: Some(self.config.client_limits),
                    changes_up_to: changes_up_to as u64,
                    changes_truncated,
                })));
        }
        stream.prefix.push_back(presence_snapshot(snapshot));
        if !changes_truncated {
            // Each with its status as the sender sees it: SENT here, the next receipt corrects it.
            stream.prefix.extend(
                changes
                    .iter()
                    .map(|message| update_event(message, Marks::default())),
            );
        }
        if kind == SessionKind::Chat {
            // Subscribed before the floor is read: a message another node commits after it
            // comes live, one committed before it from the backlog.
            if let Some(cluster) = &self.cluster {
                stream._following = Some(cluster.follow(self, user.id).await);
            }
            let mut inbox = Inbox {
                user: user.id,
                receipts,
                window: self.config.receive_window,
                floor: Seq::ZERO,
                backlog_after: None,
                missed: BTreeSet::new(),
                sent_up_to: Seq::ZERO,
                page: VecDeque::new(),
                fetching: None,
                link_back: self.cluster.as_ref().map(|cluster| cluster.link_back()),
                came_back: None,
            };
            if self.config.keeps_history() {
                // Registered first, floor second: a message committed meanwhile is both queued
                // live and at or below the floor, and the inbox takes only the stored copy.
                inbox.floor = self.pipeline.db().last_seq().await?;
                // The first page now, so it comes before any live event.
                let page = self
                    .pipeline
                    .db()
                    .undelivered_page(user.id, Seq::ZERO, inbox.floor, inbox.window as u64)
                    .await?;
                inbox.backlog_page_read(self, page);
            }
            stream.inbox = Some(inbox);
        }
        Ok(stream)
    }

    /// A receipt from a session of `user`: its client has every message the session sent to it
    /// up to `up_to`. Those count as delivered now.
    pub fn acknowledge(&self, user: UserId, session: SessionId, up_to: Seq) -> Result<()> {
        let receipts = self.lock().receipts_of(user, session)?;
        let acknowledged: Vec<(Seq, UserId)> = {
            let mut unacked = receipts.unacked();
            let covered = unacked.partition_point(|(seq, _)| *seq <= up_to);
            unacked.drain(..covered).collect()
        };
        self.pipeline.note_delivered(user, &acknowledged);
        receipts.room.wake();
        Ok(())
    }
}

/// What a session with receipts has sent and its client has not acknowledged yet.
#[derive(Debug, Default)]
pub(super) struct Receipts {
    /// Seqs sent and not acknowledged, with their senders, in the (increasing) order they were
    /// sent.
    unacked: Mutex<VecDeque<(Seq, UserId)>>,
    /// Wakes the session's stream when a receipt makes room in its window.
    room: AtomicWaker,
}

impl Receipts {
    fn unacked(&self) -> MutexGuard<'_, VecDeque<(Seq, UserId)>> {
        self.unacked.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The messages to a chat session's user, sent in increasing seq: the stored backlog read in
/// pages, then live ones; at most `window` unacknowledged when the client sends receipts.
/// Memory stays bounded whatever waits in the database: one page, and the seqs of the live
/// messages it had to skip (which it reads back later).
struct Inbox {
    /// Whose messages.
    user: UserId,
    /// What the client has not acknowledged; None: a message counts as delivered once sent.
    receipts: Option<Arc<Receipts>>,
    /// Most messages unacknowledged at once, and the page size.
    window: usize,
    /// The highest seq committed when the session opened: undelivered messages up to it come
    /// from the backlog, later ones live.
    floor: Seq,
    /// Where the next backlog page starts; None once the backlog is read.
    backlog_after: Option<Seq>,
    /// Live messages above the floor that could not be sent when they came, to be read back.
    missed: BTreeSet<Seq>,
    /// The highest seq sent, so nothing goes out twice or out of order.
    sent_up_to: Seq,
    /// Stored messages read and not yet sent.
    page: VecDeque<StoredMessage>,
    /// The page being read, and what for.
    fetching: Option<(Fetch, PageFuture)>,
    /// In cluster mode, comebacks of a NATS link (this node's or another's): what the outage
    /// kept from live delivery is read back from the database, up to the seq each brings.
    link_back: Option<WatchStream<Seq>>,
    /// A comeback not acted on yet (a page was being read).
    came_back: Option<Seq>,
}

/// What a page is read for.
#[derive(Debug, Clone, Copy)]
enum Fetch {
    /// The next page of the backlog.
    Backlog,
    /// Live messages that were skipped.
    Missed,
    /// After a cluster link came back with this seq committed: the undelivered messages the
    /// session passed over, which it cannot send now without breaking seq order.
    Recheck(Seq),
}

type PageFuture = Pin<Box<dyn Future<Output = Result<Vec<StoredMessage>, DbErr>> + Send>>;

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("user", &self.user)
            .field("sent_up_to", &self.sent_up_to)
            .field("missed", &self.missed.len())
            .field("page", &self.page.len())
            .finish_non_exhaustive()
    }
}

impl Inbox {
    /// How many more messages may be sent before a receipt.
    fn room(&self) -> usize {
        let unacked = self.receipts.as_ref().map_or(0, |r| r.unacked().len());
        self.window.saturating_sub(unacked)
    }

    /// Whether stored messages are still to be sent before live ones may go out.
    fn catching_up(&self) -> bool {
        self.backlog_after.is_some()
            || self.fetching.is_some()
            || !self.page.is_empty()
            || !self.missed.is_empty()
    }

    /// Takes a page of the backlog, leaving out what another session's client has acknowledged
    /// and the writer not yet recorded.
    fn backlog_page_read(&mut self, hub: &Hub, page: Vec<StoredMessage>) {
        self.backlog_after = match page.last() {
            Some(last) if page.len() >= self.window => Some(last.seq),
            _ => None,
        };
        self.page.extend(hub.pipeline.not_in_delivery(page));
    }

    /// Sends a message to the user: notes it unacknowledged, or delivered without receipts.
    fn send(&mut self, hub: &Hub, seq: Seq, sender: UserId, event: ServerEvent) -> ServerEvent {
        self.sent_up_to = seq;
        match &self.receipts {
            Some(receipts) => receipts.unacked().push_back((seq, sender)),
            None => hub.pipeline.note_delivered(self.user, &[(seq, sender)]),
        }
        event
    }

    /// The next stored message to send, reading pages as needed. Ready(Ok(None)): nothing stored
    /// is waiting, or the window is full (then a receipt wakes the stream).
    fn poll_stored(
        &mut self,
        cx: &mut Context<'_>,
        hub: &Arc<Hub>,
    ) -> Poll<Result<Option<ServerEvent>, Status>> {
        loop {
            if let Some(link_back) = &mut self.link_back
                && let Poll::Ready(Some(seq)) = link_back.poll_next_unpin(cx)
            {
                self.came_back = Some(seq);
            }
            if self.fetching.is_none()
                && let Some(seq) = self.came_back.take()
                && seq > self.floor
            {
                // Messages the session passed over (sending later ones) cannot come now
                // without breaking seq order; finding any ends the session, see `rechecked`.
                let (db, user) = (hub.pipeline.db().clone(), self.user);
                let (after, up_to) = (self.floor, self.sent_up_to);
                let fetch: PageFuture = Box::pin(async move {
                    db.undelivered_page(user, after, up_to, MAX_RECHECKED).await
                });
                self.fetching = Some((Fetch::Recheck(seq), fetch));
            }
            if let Some((kind, fetch)) = &mut self.fetching {
                let kind = *kind;
                let page = match fetch.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(page)) => page,
                    Poll::Ready(Err(err)) => {
                        tracing::warn!(error = %err, "could not read a session's messages");
                        return Poll::Ready(Err(Status::unavailable(
                            "could not read your messages; reconnect to receive them",
                        )));
                    }
                };
                self.fetching = None;
                match kind {
                    Fetch::Backlog => self.backlog_page_read(hub, page),
                    Fetch::Missed => self.page.extend(page),
                    Fetch::Recheck(seq) => self.rechecked(hub, seq, page)?,
                }
                continue;
            }
            if self.room() == 0 {
                if let Some(receipts) = &self.receipts {
                    receipts.room.register(cx.waker());
                }
                // A receipt that came before the registration has made room already.
                if self.room() == 0 {
                    return Poll::Ready(Ok(None));
                }
            }
            if let Some(message) = self.page.pop_front() {
                if message.seq <= self.sent_up_to {
                    continue;
                }
                let event = server_event(Event::Message(chat_message(&message, Marks::default())));
                return Poll::Ready(Ok(Some(self.send(
                    hub,
                    message.seq,
                    message.sender_id,
                    event,
                ))));
            }
            let limit = self.window;
            let db = hub.pipeline.db().clone();
            let fetch: PageFuture = if let Some(after) = self.backlog_after {
                let (user, floor) = (self.user, self.floor);
                Box::pin(async move { db.undelivered_page(user, after, floor, limit as u64).await })
            } else if !self.missed.is_empty() {
                let seqs: Vec<Seq> = std::iter::from_fn(|| self.missed.pop_first())
                    .take(limit)
                    .collect();
                Box::pin(async move { db.messages_by_seq(&seqs).await })
            } else {
                return Poll::Ready(Ok(None));
            };
            let kind = if self.backlog_after.is_some() {
                Fetch::Backlog
            } else {
                Fetch::Missed
            };
            self.fetching = Some((kind, fetch));
        }
    }

    /// After a cluster link came back with `seq` committed: `passed_over` are the undelivered
    /// messages between the floor and the last one sent. Any the session did not send (and no
    /// other session is delivering) was lost on the way while the link was down; the session
    /// ends so that its client reconnects and gets them in order. Otherwise what is undelivered
    /// up to `seq` is read like a backlog, before the live messages.
    fn rechecked(
        &mut self,
        hub: &Hub,
        seq: Seq,
        passed_over: Vec<StoredMessage>,
    ) -> Result<(), Status> {
        let full = passed_over.len() as u64 >= MAX_RECHECKED;
        let sent: std::collections::HashSet<Seq> = match &self.receipts {
            Some(receipts) => receipts.unacked().iter().map(|(seq, _)| *seq).collect(),
            None => Default::default(),
        };
        let lost = hub
            .pipeline
            .not_in_delivery(passed_over)
            .any(|message| !sent.contains(&message.seq));
        if full || lost {
            return Err(Status::unavailable(
                "messages to you were held up between servers; reconnect to receive them in order",
            ));
        }
        // Read again after the backlog, in order: the page held and the skipped live ones.
        self.missed
            .extend(self.page.drain(..).map(|message| message.seq));
        self.floor = seq;
        self.backlog_after.get_or_insert(self.sent_up_to);
        Ok(())
    }

    /// A live message to the user: sent now, dropped (the backlog or the stream has it), or noted
    /// to be read back once the stored ones before it are sent. Err when too many wait.
    fn live(
        &mut self,
        hub: &Hub,
        seq: Seq,
        sender: UserId,
        event: ServerEvent,
    ) -> Result<Option<ServerEvent>, Status> {
        if seq <= self.floor || seq <= self.sent_up_to {
            return Ok(None);
        }
        if self.catching_up() || self.room() == 0 {
            if self.missed.len() >= MAX_MISSED {
                return Err(Status::resource_exhausted(
                    "session fell too far behind its messages; reconnect to receive them",
                ));
            }
            self.missed.insert(seq);
            return Ok(None);
        }
        Ok(Some(self.send(hub, seq, sender, event)))
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
    /// Welcome and the presence snapshot, sent before anything else.
    prefix: VecDeque<ServerEvent>,
    /// Messages to the user (chat sessions).
    inbox: Option<Inbox>,
    /// In cluster mode, keeps this node subscribed to the user's events (chat sessions).
    _following: Option<Following>,
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

    /// A live event: what to send of it. Messages to the user go through the inbox; error events
    /// are counted (every error event reaches the client here, whoever made it).
    fn live(&mut self, event: ServerEvent) -> Result<Option<ServerEvent>, Status> {
        match (&event.event, &self.user_id, &mut self.inbox) {
            (Some(Event::Message(message)), Some(user_id), Some(inbox))
                if &message.to_user_id == user_id =>
            {
                // The server's own seq and sender id, which always convert back.
                let seq = Seq::from_api(message.seq).unwrap_or_default();
                let sender = message
                    .from_user_id
                    .parse()
                    .map(UserId)
                    .unwrap_or(inbox.user);
                inbox.live(&self.hub, seq, sender, event)
            }
            (Some(Event::Error(error)), _, _) => {
                self.hub.metrics.error(&error.code);
                Ok(Some(event))
            }
            _ => Ok(Some(event)),
        }
    }
}

impl Stream for SessionStream {
    type Item = Result<ServerEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(event) = this.prefix.pop_front() {
            return Poll::Ready(Some(Ok(event)));
        }
        // Stored messages first: every live message left to send is newer.
        if let Some(inbox) = &mut this.inbox
            && let Poll::Ready(stored) = inbox.poll_stored(cx, &this.hub)
        {
            match stored {
                Ok(Some(event)) => return Poll::Ready(Some(Ok(event))),
                Ok(None) => {}
                Err(status) => return Poll::Ready(Some(Err(status))),
            }
        }
        loop {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(event)) => match this.live(*event) {
                    Ok(Some(event)) => return Poll::Ready(Some(Ok(event))),
                    Ok(None) => {}
                    Err(status) => return Poll::Ready(Some(Err(status))),
                },
                Poll::Ready(None) => {
                    let status = this
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
