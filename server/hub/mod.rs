//! The in-memory heart of the server: who is connected, and getting events to them.
//!
//! A session is one stream (Chat, Subscribe or Presence) with a bounded outgoing queue. The
//! [`registry`] holds who is connected as plain data; the hub runs its changes under one lock and
//! carries out what they ask for, queuing events without ever blocking: a session whose queue is
//! full is ended with RESOURCE_EXHAUSTED and gets what it missed from the database when it
//! reconnects. Two tasks drive the registry's timers: the presence publisher (changes in batches)
//! and a ticker (typing, presence grace, heartbeats). What is durable, the hub leaves to the
//! [`Pipeline`].
//!
//! What leaves for a user's sessions goes through one seam, [`FanOut`], so the in-process fan-out
//! can later have a bus between nodes behind it without the services changing.

mod fanout;
mod registry;
mod session;

use std::{
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::mpsc,
    time::{Instant, MissedTickBehavior},
};
use tonic::Status;
use uuid::Uuid;

use crate::{
    cluster::{Body, Cluster},
    config::Config,
    db::{
        Database,
        ids::{SessionId, UserId},
    },
    error::Result,
    identity::AuthUser,
    metrics::Metrics,
    pipeline::{Pipeline, StoreOp},
    proto::{Presence, ServerEvent, TypingEvent},
};

pub use fanout::FanOut;
pub(crate) use registry::{Activity, NodeUser};
use registry::{Effects, PRESENCE_COALESCE, Registry};
pub use session::{SessionKind, SessionStream};

/// How often the ticker looks at timers; bounds how late a grace or typing expiry is noticed.
const TICK: Duration = Duration::from_millis(200);

/// The hub's settings, taken from the server's config.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Name of this node in the `nodes`, `sessions` and `users_online` tables.
    pub node_id: String,
    /// This run of the node, chosen at start: tells its registration from a later run's.
    pub boot_id: Uuid,
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
    /// Whether this node shares its users' presence with other nodes (cluster mode).
    pub shares_presence: bool,
    /// The limits every Welcome tells its client.
    pub client_limits: crate::proto::Limits,
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
            boot_id: Uuid::new_v4(),
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
            client_limits: config.client_limits(),
            watch_all_limit: config.presence_watch_all_limit as usize,
            shares_presence: config.nats_url.is_some(),
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
    /// The durable side: sessions read their backlog and report deliveries through it, and the
    /// registry's presence rows are written through it.
    pipeline: Arc<Pipeline>,
    /// Wakes the presence publisher when a user's presence may have changed, so changes go out
    /// without waiting for the ticker. Capacity one: a wake-up already pending covers the rest.
    presence_changed: mpsc::Sender<()>,
    /// Set once shutdown begins: new sessions are refused.
    shutting_down: AtomicBool,
    /// The server's figures: sessions, presence changes, error events.
    metrics: Arc<Metrics>,
    /// The other nodes, in cluster mode.
    cluster: Option<Arc<Cluster>>,
}

impl Hub {
    /// Creates the hub and its pipeline, and starts their background tasks on the current
    /// runtime. The pipeline publishes through the hub (and the hub through `cluster` to the
    /// other nodes), so each stops once the hub is gone.
    pub fn start(
        db: Database,
        config: HubConfig,
        metrics: Arc<Metrics>,
        cluster: Option<Arc<Cluster>>,
    ) -> Arc<Self> {
        let (presence_tx, presence_rx) = mpsc::channel(1);
        let hub = Arc::new_cyclic(|hub: &Weak<Self>| Self {
            registry: Mutex::new(Registry::new(config.clone())),
            pipeline: Pipeline::start(db, &config, metrics.clone(), hub.clone()),
            config,
            presence_changed: presence_tx,
            shutting_down: AtomicBool::new(false),
            metrics,
            cluster,
        });
        tokio::spawn(run_ticker(Arc::downgrade(&hub)));
        tokio::spawn(run_presence_publisher(Arc::downgrade(&hub), presence_rx));
        hub
    }

    /// The durable pipeline the hub's sessions use.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// The link to the other nodes, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
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

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Ends every session with UNAVAILABLE (so clients reconnect elsewhere or later), refuses new
    /// ones, and unregisters this node, ending its sessions and its users' presence rows in the
    /// database.
    pub async fn shutdown(&self) {
        {
            let mut registry = self.lock();
            self.shutting_down.store(true, Ordering::SeqCst);
            let mut out = Effects::default();
            let status = Status::unavailable("server is shutting down; reconnect");
            registry.detach_all(&status, &mut out);
            self.carry_out(&mut registry, out);
        }
        self.pipeline.remove_node().await;
    }

    /// Carries out what a change of the registry asks for, in order: queues its events, ends the
    /// sessions it let go, hands its rows to the write-through and wakes the presence publisher.
    /// A session whose queue is full is ended, and what that asks for joins the rest.
    fn carry_out(&self, registry: &mut Registry, mut out: Effects) {
        while let Some((id, event)) = out.sends.pop_front() {
            self.queue(registry, id, event, &mut out);
        }
        // Under the lock too, so the other nodes get this node's changes in the order made.
        if let Some(cluster) = &self.cluster {
            if !out.shared.is_empty() {
                cluster.share_presence(std::mem::take(&mut out.shared));
            }
            for (from, to) in out.typing_ended.drain(..) {
                let typing = TypingEvent {
                    from_user_id: from.to_string(),
                    is_typing: false,
                };
                cluster.publish(to, Body::Typing(typing));
            }
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
        // Under the registry's lock, so rows reach the write-through in the order the registry made
        // them: a session's SessionOpened before its SessionClosed.
        for op in out.store {
            if let StoreOp::Presence { status, .. } = &op {
                self.metrics.presence_changed(*status);
            }
            self.pipeline.write_presence(op);
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

    /// In cluster mode: what node `node` says of its users' activity.
    pub(crate) fn apply_remote_presence(&self, node: &Arc<str>, users: Vec<NodeUser>) {
        self.change(|registry, out| registry.apply_remote(node, users, out));
    }

    /// In cluster mode: everything node `node` has now (empty: it stopped); what it said before
    /// of other users no longer holds.
    pub(crate) fn replace_remote_presence(&self, node: &Arc<str>, users: Vec<NodeUser>) {
        self.change(|registry, out| registry.replace_node(node, users, out));
    }

    /// In cluster mode: everything this node has told the others, with the number of its latest
    /// batch of changes (read together, under the lock the batches are made under).
    pub(crate) fn shared_presence(&self, cluster: &Cluster) -> (Vec<NodeUser>, u64) {
        let registry = self.lock();
        (registry.shared_state(), cluster.presence_seq())
    }

    /// After another node took this one for dead and cleaned its rows: writes its sessions and
    /// its users' presence rows again.
    pub fn rewrite_rows(&self) {
        self.change(|registry, out| registry.rewrite_rows(Instant::now(), out));
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

    /// SetStatus: sets one session (or, with None, every session of the user) ONLINE or AWAY,
    /// on whichever nodes hold them.
    pub async fn set_status(
        &self,
        user: UserId,
        session: Option<SessionId>,
        away: bool,
    ) -> Result<Presence> {
        let here = self.set_away(user, session, away);
        let Some(cluster) = &self.cluster else {
            return here;
        };
        if session.is_some() && here.is_ok() {
            return here;
        }
        let elsewhere = cluster.set_away_elsewhere(user, session, away).await;
        crate::cluster::combine_status(here, elsewhere, session, away)
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
