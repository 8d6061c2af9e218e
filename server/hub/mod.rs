//! The in-memory heart of the server: who is connected, and getting events to them.
//!
//! A session is one stream (Chat, Subscribe or Presence) with a bounded outgoing queue. The hub
//! maps users to their sessions and fans events out to them without ever blocking: a session whose
//! queue is full is ended with RESOURCE_EXHAUSTED and gets what it missed from the database when it
//! reconnects. Background tasks do the slow parts: the message writer (group commit, deliveries
//! recorded in the same transactions), the presence publisher and its write-through, and a ticker
//! for timers (typing, presence grace, heartbeats).
//!
//! What leaves for a user's sessions goes through one seam, [`FanOut`], so the in-process fan-out
//! can later have a bus between nodes behind it without the services changing.

mod fanout;
mod messages;
mod registry;
mod session;
mod store;

use std::{
    collections::HashSet,
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
use tonic::Status;

use crate::{
    config::Config,
    db::{
        Database,
        ids::{SessionId, UserId},
    },
    error::Result,
    identity::AuthUser,
    metrics::Metrics,
    proto::{Presence, ServerEvent},
};

pub use fanout::FanOut;
pub use messages::{AckTo, OutgoingMessage};
use registry::{Effects, PRESENCE_COALESCE, Registry};
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

/// Sessions, presence and fan-out: the registry behind a lock, and the tasks that carry out
/// what it asks for.
#[derive(Debug)]
pub struct Hub {
    /// Who is connected. A std mutex: it is held only for the registry's changes and the
    /// non-blocking `try_send`s that follow them, never across an `.await`.
    registry: Mutex<Registry>,
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

impl Hub {
    /// Creates the hub and starts its background tasks on the current runtime.
    pub fn start(db: Database, config: HubConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        let (writer_tx, writer_rx) = mpsc::channel(messages::WRITER_QUEUE);
        let (delivered_tx, delivered_rx) = mpsc::unbounded_channel();
        let (flushes_tx, flushes_rx) = mpsc::unbounded_channel();
        let (store_tx, store_rx) = mpsc::unbounded_channel();
        let (presence_tx, presence_rx) = mpsc::channel(1);
        let hub = Arc::new(Self {
            registry: Mutex::new(Registry::new(config.clone())),
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

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves maps that are still consistent enough to serve.
        self.registry
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
            let mut registry = self.lock();
            self.shutting_down.store(true, Ordering::SeqCst);
            let mut out = Effects::default();
            let status = Status::unavailable("server is shutting down; reconnect");
            registry.detach_all(&status, &mut out);
            self.carry_out(&mut registry, out);
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

    /// Carries out what a change of the registry asks for, in order: queues its events, ends the
    /// sessions it let go, hands its rows to the write-through and wakes the presence publisher.
    /// A session whose queue is full is ended, and what that asks for joins the rest.
    fn carry_out(&self, registry: &mut Registry, mut out: Effects) {
        while let Some((id, event)) = out.sends.pop_front() {
            self.queue(registry, id, event, &mut out);
        }
        for ended in out.ended {
            if let Some(status) = ended.status {
                *ended
                    .outlet
                    .closing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(status);
            }
            ended.outlet.cancel.cancel();
            self.metrics.session_closed(ended.outlet.transport);
            // Dropping the outlet closes the queue: the stream ends with the status set above.
        }
        for op in out.store {
            if let StoreOp::Presence { status, .. } = &op {
                self.metrics.presence_changed(*status);
            }
            let _ = self.store.send(op);
        }
        if out.presence_dirty {
            let _ = self.presence_changed.try_send(());
        }
    }

    /// Queues `event` on one session. A full queue ends the session (it is too slow), adding to
    /// `out` what that asks for; returns whether the event was queued.
    fn queue(
        &self,
        registry: &mut Registry,
        id: SessionId,
        event: ServerEvent,
        out: &mut Effects,
    ) -> bool {
        let Some(outlet) = registry.outlet(id) else {
            return false;
        };
        match outlet.tx.try_send(Box::new(event)) {
            Ok(()) => {
                registry.sent(id, Instant::now());
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(session = %id, "session queue full; ending the session");
                let status = Status::resource_exhausted(
                    "session fell behind its event queue; reconnect to receive what it missed",
                );
                registry.detach(id, Some(status), out);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues `event` on each of `sessions`; returns how many took it.
    fn queue_all(
        &self,
        registry: &mut Registry,
        sessions: &[SessionId],
        event: &ServerEvent,
    ) -> usize {
        let mut out = Effects::default();
        let taken = sessions
            .iter()
            .filter(|id| self.queue(registry, **id, event.clone(), &mut out))
            .count();
        self.carry_out(registry, out);
        taken
    }

    /// Users ONLINE or AWAY, without `exclude`.
    pub fn list_online(&self, exclude: Option<UserId>) -> Vec<Presence> {
        self.lock().list_online(exclude, Instant::now())
    }

    /// One user's presence, if the hub knows them (otherwise they are OFFLINE).
    pub fn presence_of(&self, user: UserId) -> Option<Presence> {
        self.lock().presence_of(user, Instant::now())
    }

    /// A Heartbeat RPC: the user stays ONLINE for the presence TTL.
    pub fn heartbeat(&self, user: &AuthUser) -> Presence {
        self.change(|registry, out| registry.heartbeat(user, Instant::now(), out))
    }

    /// Sets one session (or, with None, every session of the user) ONLINE or AWAY.
    pub fn set_away(
        &self,
        user: UserId,
        session: Option<SessionId>,
        away: bool,
    ) -> Result<Presence> {
        self.change(|registry, out| registry.set_away(user, session, away, Instant::now(), out))
    }

    /// Renames a connected user, so watchers see the new name.
    pub fn rename(&self, user: UserId, display_name: &str) {
        self.change(|registry, out| registry.rename(user, display_name, out));
    }

    /// Ends a session normally (its client stopped sending).
    pub fn close_session(&self, id: SessionId) {
        self.change(|registry, out| registry.detach(id, None, out));
    }

    /// Ends a session with `status`, for a client that broke the stream's rules.
    pub fn end_session(&self, id: SessionId, status: Status) {
        self.change(|registry, out| registry.detach(id, Some(status), out));
    }

    /// Runs one change of the registry under its lock and carries out what it asks for.
    fn change<T>(&self, step: impl FnOnce(&mut Registry, &mut Effects) -> T) -> T {
        let mut registry = self.lock();
        let mut out = Effects::default();
        let result = step(&mut registry, &mut out);
        self.carry_out(&mut registry, out);
        result
    }
}

/// Publishes presence changes as they come, in batches at most every [`PRESENCE_COALESCE`], until
/// the hub is gone.
async fn run_presence_publisher(hub: std::sync::Weak<Hub>, mut changed: mpsc::Receiver<()>) {
    // Ends when the hub, which holds the sender, is gone.
    while changed.recv().await.is_some() {
        let Some(hub) = hub.upgrade() else { return };
        hub.change(|registry, out| registry.flush_presence(Instant::now(), out));
        drop(hub);
        tokio::time::sleep(PRESENCE_COALESCE).await;
    }
}

/// Runs the timers (typing expiries, presence grace periods, heartbeats) until the hub is gone.
async fn run_ticker(hub: std::sync::Weak<Hub>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        hub.change(|registry, out| registry.tick(Instant::now(), out));
    }
}
