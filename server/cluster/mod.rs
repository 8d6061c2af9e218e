//! Cluster mode: the bus behind the fan-out seam between nodes, on core NATS (no JetStream:
//! PostgreSQL is the durable log).
//!
//! Each user has a subject, `{cluster}.user.{user id}`. A node subscribes to it while it holds a
//! chat session of the user, and has the subscription confirmed by the server before the session
//! reads its backlog, so a message committed in between comes one way or the other. After the
//! commit, and after delivering to its own sessions, a node publishes to it every message (to the
//! recipient and, for the sender's other sessions, to the sender), receipt and typing change for
//! that user. Its connection has no echo, so it never receives its own publications.
//!
//! A publication NATS loses is not lost: the message stays undelivered in PostgreSQL and the
//! recipient's next session reads it from its backlog.
//!
//! Beside messages: `presence` (each node's users, merged on every node), `status` (SetStatus
//! for sessions on other nodes), `rename` (the identity caches follow renames) and `link`
//! (the NATS link going down and coming back).

mod link;
mod presence;
mod rename;
mod status;

pub use link::HEALTH_SERVICE;
pub use status::combine as combine_status;

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::{Arc, Mutex, Weak, atomic::AtomicU64},
    time::Duration,
};

use bytes::Bytes;
use futures_util::StreamExt;
use prost::Message as _;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::AbortHandle,
};

use crate::{
    db::ids::{Seq, UserId},
    hub::Hub,
    proto::{ServerEvent, TypingEvent},
};

/// Follow requests and publications handled in one go.
const BATCH: usize = 1024;
/// Longest wait for NATS to confirm new subscriptions before a session reads its backlog.
const CONFIRM_LIMIT: Duration = Duration::from_secs(1);

/// What goes over a user's subject.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Envelope {
    #[prost(oneof = "Body", tags = "1, 2, 3")]
    pub body: Option<Body>,
}

/// The kinds of [`Envelope`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Body {
    /// A newly stored message (a ServerEvent holding it), for the subject's user as its
    /// recipient or as its sender.
    #[prost(message, tag = "1")]
    Message(ServerEvent),
    /// Any other event for the user's chat sessions: DELIVERED and READ receipts.
    #[prost(message, tag = "2")]
    Event(ServerEvent),
    /// Someone started or stopped typing to the subject's user.
    #[prost(message, tag = "3")]
    Typing(TypingEvent),
}

/// This node's link to the others.
#[derive(Debug)]
pub struct Cluster {
    /// The connection.
    client: async_nats::Client,
    /// The subject prefix: `--cluster-name`.
    name: String,
    /// This node's id.
    node: Arc<str>,
    /// This run of the node.
    boot: String,
    /// The number of this node's latest batch of presence changes.
    presence_seq: AtomicU64,
    /// Publications, in order, for the publisher task.
    outbound: mpsc::UnboundedSender<Outbound>,
    /// Follow and unfollow requests, for the task that holds the subscriptions.
    follows: mpsc::UnboundedSender<FollowOp>,
    /// The other nodes heard from lately, kept by the presence task, for requests to them all.
    /// A std mutex: held only to copy or replace the list.
    live_peers: Mutex<Vec<Arc<str>>>,
    /// Whether the link to NATS is up, as the client's events tell.
    link: watch::Receiver<bool>,
    /// The highest seq committed when a link (this node's or another's) last came back.
    caught_up: watch::Sender<Seq>,
}

/// What the publisher task is asked to do.
#[derive(Debug)]
enum Outbound {
    /// Publish a payload on a subject.
    Publish(String, Bytes),
    /// Say when everything queued before is with the NATS server.
    Drained(oneshot::Sender<()>),
}

/// A request to the task holding the subscriptions.
enum FollowOp {
    /// A chat session of `user` opened here; `confirmed` is answered once the subscription is
    /// in place on the server.
    Follow {
        user: UserId,
        hub: Weak<Hub>,
        confirmed: oneshot::Sender<()>,
    },
    /// A chat session of `user` here ended.
    Unfollow { user: UserId },
}

/// Keeps this node subscribed to a user's subject while a session of theirs lives.
#[derive(Debug)]
pub struct Following {
    /// Where to say the session ended.
    follows: mpsc::UnboundedSender<FollowOp>,
    /// Whose subject.
    user: UserId,
}

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.follows.send(FollowOp::Unfollow { user: self.user });
    }
}

impl Cluster {
    /// Connects to NATS at `url` as this run (`boot`) of `node_id` and starts the publisher and
    /// the subscription tasks. NATS must answer now; later outages are ridden out by
    /// reconnecting.
    pub async fn connect(
        url: &str,
        name: &str,
        node_id: &str,
        boot: uuid::Uuid,
    ) -> anyhow::Result<Arc<Self>> {
        let (link_tx, link) = watch::channel(true);
        let link_tx = Arc::new(link_tx);
        let client = async_nats::ConnectOptions::new()
            .name(format!("fastchat {node_id}"))
            .no_echo()
            .event_callback(move |event| {
                let link_tx = link_tx.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => link_tx.send_replace(true),
                        async_nats::Event::Disconnected => link_tx.send_replace(false),
                        _ => false,
                    };
                    tracing::info!(%event, "NATS connection");
                }
            })
            .connect(url)
            .await
            .map_err(|err| anyhow::anyhow!("could not reach NATS at {url}: {err}"))?;
        let (outbound, outbound_rx) = mpsc::unbounded_channel();
        let (follows, follows_rx) = mpsc::unbounded_channel();
        tokio::spawn(run_publisher(client.clone(), outbound_rx));
        tokio::spawn(run_follows(client.clone(), name.to_owned(), follows_rx));
        Ok(Arc::new(Self {
            client,
            name: name.to_owned(),
            node: node_id.into(),
            boot: boot.to_string(),
            presence_seq: AtomicU64::new(0),
            outbound,
            follows,
            live_peers: Mutex::default(),
            link,
            caught_up: watch::Sender::new(Seq::ZERO),
        }))
    }

    /// Subscribes this node to `user`'s subject (once, however many sessions follow it) and
    /// returns when NATS has confirmed it, or after [`CONFIRM_LIMIT`] when it does not answer.
    pub async fn follow(&self, hub: &Arc<Hub>, user: UserId) -> Following {
        let (confirmed, answer) = oneshot::channel();
        let _ = self.follows.send(FollowOp::Follow {
            user,
            hub: Arc::downgrade(hub),
            confirmed,
        });
        if tokio::time::timeout(CONFIRM_LIMIT, answer).await.is_err() {
            tracing::warn!(%user, "NATS did not confirm a subscription in time");
        }
        Following {
            follows: self.follows.clone(),
            user,
        }
    }

    /// Publishes `body` on `user`'s subject, for the other nodes' sessions of that user.
    pub fn publish(&self, user: UserId, body: Body) {
        let payload = Envelope { body: Some(body) }.encode_to_vec();
        self.send(subject(&self.name, user), payload);
    }

    /// Queues a publication for the publisher task, which keeps the order.
    fn send(&self, subject: String, payload: Vec<u8>) {
        let _ = self
            .outbound
            .send(Outbound::Publish(subject, Bytes::from(payload)));
    }

    /// Returns once everything queued so far is with the NATS server.
    async fn drained(&self) {
        let (done, answer) = oneshot::channel();
        if self.outbound.send(Outbound::Drained(done)).is_ok() {
            let _ = answer.await;
        }
    }

    /// The other nodes heard from lately.
    fn live_peers(&self) -> Vec<Arc<str>> {
        self.live_peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether the link to NATS is up.
    pub fn connected(&self) -> bool {
        is_connected(&self.client)
    }
}

fn is_connected(client: &async_nats::Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

/// The subject of `user`'s events.
fn subject(cluster: &str, user: UserId) -> String {
    format!("{cluster}.user.{user}")
}

/// Publishes what is queued, in order, until the cluster is gone. While the link is down what
/// comes is dropped rather than piled up: the database has it, and a comeback reads it back.
async fn run_publisher(
    client: async_nats::Client,
    mut outbound: mpsc::UnboundedReceiver<Outbound>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while outbound.recv_many(&mut batch, BATCH).await > 0 {
        for op in batch.drain(..) {
            match op {
                Outbound::Publish(_, _) if !is_connected(&client) => {}
                Outbound::Publish(subject, payload) => {
                    if let Err(err) = client.publish(subject, payload).await {
                        tracing::warn!(error = %err, "could not publish to NATS");
                    }
                }
                Outbound::Drained(done) => {
                    if let Err(err) = client.flush().await {
                        tracing::warn!(error = %err, "could not flush to NATS");
                    }
                    let _ = done.send(());
                }
            }
        }
    }
}

/// A followed user: how many sessions here follow them, and the task reading their subject
/// (None while subscribing failed; the next follow tries again).
struct Followed {
    sessions: usize,
    reader: Option<AbortHandle>,
}

/// Holds the subscriptions, one per followed user, until the cluster is gone. Follows that come
/// together are subscribed together and confirmed by one round trip to NATS.
async fn run_follows(
    client: async_nats::Client,
    cluster: String,
    mut ops: mpsc::UnboundedReceiver<FollowOp>,
) {
    let mut followed: HashMap<UserId, Followed> = HashMap::new();
    let mut batch = Vec::with_capacity(BATCH);
    let mut confirmations = Vec::new();
    while ops.recv_many(&mut batch, BATCH).await > 0 {
        for op in batch.drain(..) {
            match op {
                FollowOp::Follow {
                    user,
                    hub,
                    confirmed,
                } => {
                    let entry = followed.entry(user).or_insert(Followed {
                        sessions: 0,
                        reader: None,
                    });
                    entry.sessions += 1;
                    if entry.reader.is_none() {
                        match client.subscribe(subject(&cluster, user)).await {
                            Ok(subscriber) => {
                                let reader = tokio::spawn(read_subject(hub, user, subscriber));
                                entry.reader = Some(reader.abort_handle());
                            }
                            Err(err) => tracing::warn!(error = %err, %user, "could not subscribe"),
                        }
                    }
                    confirmations.push(confirmed);
                }
                FollowOp::Unfollow { user } => {
                    if let Entry::Occupied(mut entry) = followed.entry(user) {
                        entry.get_mut().sessions -= 1;
                        if entry.get().sessions == 0
                            && let Some(reader) = entry.remove().reader
                        {
                            // Dropping the subscriber unsubscribes.
                            reader.abort();
                        }
                    }
                }
            }
        }
        if !confirmations.is_empty() {
            // Without a link there is nothing to confirm; what is missed meanwhile waits in
            // the database.
            if is_connected(&client) {
                match tokio::time::timeout(CONFIRM_LIMIT, client.flush()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::warn!(error = %err, "NATS did not confirm"),
                    Err(_) => tracing::warn!("NATS did not confirm subscriptions in time"),
                }
            }
            for confirmed in confirmations.drain(..) {
                let _ = confirmed.send(());
            }
        }
    }
}

/// Hands what arrives on `user`'s subject to the hub, until unsubscribed or the hub is gone.
async fn read_subject(hub: Weak<Hub>, user: UserId, mut subscriber: async_nats::Subscriber) {
    while let Some(message) = subscriber.next().await {
        let Some(hub) = hub.upgrade() else { return };
        match Envelope::decode(message.payload) {
            Ok(Envelope { body: Some(body) }) => hub.deliver_from_cluster(user, body),
            Ok(Envelope { body: None }) => {}
            Err(err) => tracing::warn!(error = %err, %user, "undecodable cluster event"),
        }
    }
}
