//! The in-memory heart of the server: who is connected, and getting events to them.
//!
//! A session is one stream (Chat, Subscribe or Presence) with a bounded outgoing queue. The hub
//! maps users to their sessions and fans events out to them without ever blocking: a session whose
//! queue is full is ended with RESOURCE_EXHAUSTED and gets what it missed from the database when it
//! reconnects. Background tasks do the slow parts: the message writer (group commit, deliveries
//! recorded in the same transactions), the presence publisher and its write-through, and a ticker
//! for timers (typing, presence grace, heartbeats).
//!
//! The services only call the hub's "publish to a user" and "presence changed" style methods, so
//! the in-process fan-out can later be swapped for a bus between nodes.

mod messages;
mod presence;
mod session;
mod store;
mod typing;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::mpsc,
    time::{Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::{
    config::Config,
    convert::{now_timestamp, server_event},
    db::{
        Database,
        ids::{SessionId, UserId},
    },
    metrics::{Metrics, Transport},
    proto::{Heartbeat, ServerEvent, server_event::Event},
};

pub use messages::{AckTo, OutgoingMessage};
pub use session::{SessionKind, SessionStream};
use store::StoreOp;

/// How long shutdown waits for the presence rows to be reset.
const STORE_FLUSH_LIMIT: Duration = Duration::from_secs(3);

/// How often the ticker looks at timers; bounds how late a grace or typing expiry is noticed.
const TICK: Duration = Duration::from_millis(200);

/// The hub's settings, taken from the server's config.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Name of this node in the `sessions` table.
    pub node_id: String,
    /// Events a session may have queued before it is ended as too slow.
    pub session_queue: usize,
    /// Messages a session with receipts may have unacknowledged; also the backlog's page size.
    pub receive_window: usize,
    /// Silence after which a chat stream gets a Heartbeat event.
    pub heartbeat_interval: Duration,
    /// How long a Heartbeat RPC keeps a user ONLINE.
    pub presence_ttl: Duration,
    /// How long a user whose last session closed stays ONLINE.
    pub offline_grace: Duration,
    /// When a typing state ends by itself.
    pub typing_timeout: Duration,
    /// Days messages are kept; 0 keeps none beyond their live delivery.
    pub retention_days: u32,
    /// Sessions one user may hold at once.
    pub max_sessions_per_user: u32,
    /// Sessions the hub holds at once, all users together.
    pub max_sessions: usize,
    /// Users in the presence directory page every session is told about.
    pub directory_size: usize,
    /// Streams watching every user's presence at once.
    pub watch_all_limit: usize,
}

impl HubConfig {
    /// Whether messages outlive their live delivery (retention above 0 days): stored for offline
    /// recipients, history and conversations.
    pub fn keeps_history(&self) -> bool {
        self.retention_days > 0
    }
}

impl From<&Config> for HubConfig {
    fn from(config: &Config) -> Self {
        Self {
            node_id: config.node_id.clone(),
            session_queue: config.session_queue as usize,
            receive_window: config.receive_window as usize,
            heartbeat_interval: config.heartbeat_interval(),
            presence_ttl: config.presence_ttl(),
            offline_grace: config.offline_grace(),
            typing_timeout: config.typing_timeout(),
            retention_days: config.retention_days,
            max_sessions_per_user: config.max_sessions_per_user,
            max_sessions: config.max_sessions as usize,
            directory_size: config.presence_directory_size as usize,
            watch_all_limit: config.presence_watch_all_limit as usize,
        }
    }
}

/// Sessions, presence and fan-out.
#[derive(Debug)]
pub struct Hub {
    /// Everything that changes. A std mutex: it is held only for map updates and non-blocking
    /// `try_send`s, never across an `.await`.
    state: Mutex<State>,
    /// Settings.
    config: HubConfig,
    /// Durable storage.
    db: Database,
    /// Messages waiting for the writer's next transaction.
    writer: mpsc::Sender<messages::WriteRequest>,
    /// Seqs of messages a recipient's client has (acknowledged, or sent to a session without
    /// receipts), and when, for the writer to record.
    delivered: mpsc::UnboundedSender<(i64, chrono::DateTime<chrono::Utc>)>,
    /// The same seqs until the writer has recorded them, so a session opening meanwhile does not
    /// load them again as undelivered. Its own lock: it is touched for every message taken.
    in_delivery: Mutex<HashSet<i64>>,
    /// Asks the writer to say when everything queued so far is committed.
    flushes: mpsc::UnboundedSender<tokio::sync::oneshot::Sender<()>>,
    /// Presence writes for `users_online` and `sessions`, applied in order by one task.
    store: mpsc::UnboundedSender<StoreOp>,
    /// Wakes the presence publisher when a user's presence may have changed, so changes go out
    /// without waiting for the ticker. Capacity one: a wake-up already pending covers the rest.
    presence_changed: mpsc::Sender<()>,
    /// Set once shutdown begins: new sessions are refused.
    shutting_down: AtomicBool,
    /// The server's figures: sessions, deliveries, presence changes, error events.
    metrics: Arc<Metrics>,
}

/// The hub's mutable state.
#[derive(Debug, Default)]
struct State {
    /// Every open stream, by id.
    sessions: HashMap<SessionId, SessionEntry>,
    /// Users who are connected, recently were, or sent heartbeats.
    users: HashMap<UserId, presence::UserEntry>,
    /// Typing states by (typist, peer).
    typing: HashMap<(UserId, UserId), typing::TypingEntry>,
    /// Users whose presence may have changed since the last published batch.
    dirty: HashSet<UserId>,
    /// Who is told about whose presence.
    scope: presence::Scope,
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
    /// How the client reached the server.
    transport: Transport,
    /// Its outgoing queue. Boxed events keep the queue's preallocated slots small: every session
    /// holds one block of them, mostly empty.
    tx: mpsc::Sender<Box<ServerEvent>>,
    /// The status the stream ends with when the hub ends it.
    closing: Arc<Mutex<Option<Status>>>,
    /// Cancelled when the session ends, so its inbound task stops too.
    cancel: CancellationToken,
    /// Whether the session said it is away.
    away: bool,
    /// When an event was last queued, to find idle streams.
    last_sent: Instant,
    /// What its client has not acknowledged, when it sends receipts.
    receipts: Option<Arc<session::Receipts>>,
}

impl Hub {
    /// Creates the hub and starts its background tasks on the current runtime.
    pub fn start(db: Database, config: HubConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        let (writer_tx, writer_rx) = mpsc::channel(messages::WRITER_QUEUE);
        let (delivered_tx, delivered_rx) = mpsc::unbounded_channel();
        let (flushes_tx, flushes_rx) = mpsc::unbounded_channel();
        let (store_tx, store_rx) = mpsc::unbounded_channel();
        let (presence_tx, presence_rx) = mpsc::channel(1);
        let hub = Arc::new(Self {
            state: Mutex::new(State::default()),
            config,
            db: db.clone(),
            writer: writer_tx,
            delivered: delivered_tx,
            flushes: flushes_tx,
            in_delivery: Mutex::new(HashSet::new()),
            store: store_tx,
            presence_changed: presence_tx,
            shutting_down: AtomicBool::new(false),
            metrics,
        });
        tokio::spawn(messages::run_writer(
            Arc::downgrade(&hub),
            db.clone(),
            writer_rx,
            delivered_rx,
            flushes_rx,
        ));
        tokio::spawn(store::run(db, store_rx, hub.config.node_id.clone()));
        tokio::spawn(run_ticker(Arc::downgrade(&hub)));
        tokio::spawn(run_presence_publisher(Arc::downgrade(&hub), presence_rx));
        tokio::spawn(messages::run_retention(Arc::downgrade(&hub)));
        hub
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves maps that are still consistent enough to serve.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The hub's settings.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    fn lock_in_delivery(&self) -> MutexGuard<'_, HashSet<i64>> {
        self.in_delivery
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Ends every session with UNAVAILABLE (so clients reconnect elsewhere or later), refuses new
    /// ones and marks this node's sessions and users offline in the database.
    pub async fn shutdown(&self) {
        {
            let mut state = self.lock();
            self.shutting_down.store(true, Ordering::SeqCst);
            let ids: Vec<SessionId> = state.sessions.keys().copied().collect();
            for id in ids {
                self.detach(
                    &mut state,
                    id,
                    Some(Status::unavailable("server is shutting down; reconnect")),
                );
            }
            state.users.clear();
        }
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let _ = self.store.send(StoreOp::ResetNode {
            node_id: self.config.node_id.clone(),
            done: done_tx,
        });
        // Bounded, so a database that hangs cannot stretch the shutdown past its limit.
        if tokio::time::timeout(STORE_FLUSH_LIMIT, done_rx)
            .await
            .is_err()
        {
            tracing::warn!("presence rows not reset within the shutdown limit");
        }
    }

    /// Queues `event` on one session. A full queue ends the session (it is too slow); returns
    /// whether the event was queued.
    fn push(&self, state: &mut State, id: SessionId, event: ServerEvent) -> bool {
        let Some(entry) = state.sessions.get_mut(&id) else {
            return false;
        };
        match entry.tx.try_send(Box::new(event)) {
            Ok(()) => {
                entry.last_sent = Instant::now();
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(session = %id, "session queue full; ending the session");
                self.detach(
                    state,
                    id,
                    Some(Status::resource_exhausted(
                        "session fell behind its event queue; reconnect to receive what it missed",
                    )),
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues `event` on every chat session of `user` but `except`; returns how many took it.
    fn push_to_user(
        &self,
        state: &mut State,
        user: UserId,
        event: &ServerEvent,
        except: Option<SessionId>,
    ) -> usize {
        let targets: Vec<SessionId> = state
            .users
            .get(&user)
            .map(|u| {
                u.sessions
                    .iter()
                    .copied()
                    .filter(|id| Some(*id) != except)
                    .filter(|id| {
                        state
                            .sessions
                            .get(id)
                            .is_some_and(|s| s.kind == SessionKind::Chat)
                    })
                    .collect()
            })
            .unwrap_or_default();
        targets
            .into_iter()
            .filter(|id| self.push(state, *id, event.clone()))
            .count()
    }

    /// Sends `event` to every chat session of `user`.
    pub fn publish_to_user(&self, user: UserId, event: ServerEvent) -> usize {
        let mut state = self.lock();
        self.push_to_user(&mut state, user, &event, None)
    }

    /// Sends `event` to one session, if it is still open.
    pub fn publish_to_session(&self, id: SessionId, event: ServerEvent) {
        let mut state = self.lock();
        self.push(&mut state, id, event);
    }

    /// Removes a session from the maps, ending its stream with `status` (None: a normal end).
    fn detach(&self, state: &mut State, id: SessionId, status: Option<Status>) {
        let Some(entry) = state.sessions.remove(&id) else {
            return;
        };
        if let Some(status) = status {
            *entry.closing.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
        }
        entry.cancel.cancel();
        self.metrics.session_closed(entry.transport);
        if entry.kind == SessionKind::EveryonesPresence {
            state.scope.watch_all.remove(&id);
        }
        let Some(user) = entry.user else { return };
        let now = Instant::now();
        if let Some(user_entry) = state.users.get_mut(&user) {
            user_entry.sessions.retain(|s| *s != id);
            if user_entry.sessions.is_empty() {
                user_entry.left(now);
            }
        }
        self.mark_dirty(state, user);
        self.end_typing_of_session(state, user, id);
        let _ = self.store.send(StoreOp::SessionClosed {
            id,
            at: chrono::Utc::now(),
        });
    }

    /// One pass over the timers: typing expiries, presence changes, heartbeats.
    fn tick(&self) {
        let now = Instant::now();
        let mut state = self.lock();
        self.expire_typing(&mut state, now);
        self.publish_presence_timers(&mut state, now);

        let interval = self.config.heartbeat_interval;
        if state
            .last_heartbeat_sweep
            .is_none_or(|last| now - last >= interval / 4)
        {
            state.last_heartbeat_sweep = Some(now);
            let idle: Vec<SessionId> = state
                .sessions
                .iter()
                .filter(|(_, s)| s.kind == SessionKind::Chat && now - s.last_sent >= interval)
                .map(|(id, _)| *id)
                .collect();
            for id in idle {
                let heartbeat = server_event(Event::Heartbeat(Heartbeat {
                    server_time: Some(now_timestamp()),
                }));
                self.push(&mut state, id, heartbeat);
            }
        }
    }
}

/// Publishes presence changes as they come, in batches at most every [`PRESENCE_COALESCE`], until
/// the hub is gone.
async fn run_presence_publisher(hub: std::sync::Weak<Hub>, mut changed: mpsc::Receiver<()>) {
    // Ends when the hub, which holds the sender, is gone.
    while changed.recv().await.is_some() {
        let Some(hub) = hub.upgrade() else { return };
        hub.flush_presence();
        drop(hub);
        tokio::time::sleep(presence::PRESENCE_COALESCE).await;
    }
}

/// Runs the timers until the hub is gone.
async fn run_ticker(hub: std::sync::Weak<Hub>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        hub.tick();
    }
}
