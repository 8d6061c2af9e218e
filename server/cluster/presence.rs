//! Presence across nodes. Each node owns its users' entries (their activity on it: away or not,
//! how many sessions, when last seen) and tells the others only what changed, in numbered
//! batches on `{cluster}.presence`, plus a heartbeat every second that repeats the latest number.
//! Every node merges what the others say into its registry (ONLINE if any node says so, AWAY if
//! all say away, sessions added, `last_seen` the latest), so snapshots, ListOnline and the rest
//! see everyone.
//!
//! A node that misses a number, or meets a node it does not know (or one that restarted), asks
//! it for everything it has on `{cluster}.presence.sync.{node}`, answered in chunks under NATS's
//! payload limit. A node silent for [`DEAD_AFTER`] while this node's own link is up is gone: its
//! users go through the offline grace here. While the link is down nothing is concluded (remote
//! users keep the presence they had), and when it is back every node is asked anew.

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
    time::Duration,
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use prost::Message as _;
use tokio::{sync::mpsc, time::Instant};

use super::Cluster;
use crate::{
    db::ids::UserId,
    hub::{Activity, Hub, NodeUser},
    node::DEAD_AFTER,
};

/// How often a node repeats its latest batch number, so the others know it lives.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Users per message: well under NATS's 1 MiB payload limit (an entry takes about 80 bytes).
const USERS_PER_MESSAGE: usize = 8_000;
/// Longest wait for a node's whole state.
const SYNC_LIMIT: Duration = Duration::from_secs(3);

/// A node's news on `{cluster}.presence`: a batch of changes, or (no users) a heartbeat.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PresenceNews {
    /// The node's id.
    #[prost(string, tag = "1")]
    pub node: String,
    /// The node's run: a new one means it restarted and knows nothing of what it said before.
    #[prost(string, tag = "2")]
    pub boot: String,
    /// Numbers the run's batches from 1; a heartbeat repeats the latest.
    #[prost(uint64, tag = "3")]
    pub seq: u64,
    /// The users whose activity on the node changed.
    #[prost(message, repeated, tag = "4")]
    pub users: Vec<WireUser>,
    /// The node is stopping: none of its users has activity there any more.
    #[prost(bool, tag = "5")]
    pub leaving: bool,
}

/// One chunk of a node's whole state, in answer to a sync request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PresenceState {
    /// The node's run.
    #[prost(string, tag = "1")]
    pub boot: String,
    /// The number of the latest batch the state includes.
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    /// Users with activity on the node.
    #[prost(message, repeated, tag = "3")]
    pub users: Vec<WireUser>,
    /// Whether this is the last chunk.
    #[prost(bool, tag = "4")]
    pub last: bool,
}

/// A user's activity on a node, on the wire.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireUser {
    #[prost(string, tag = "1")]
    pub user_id: String,
    #[prost(string, tag = "2")]
    pub display_name: String,
    /// False: the user has no activity on the node any more.
    #[prost(bool, tag = "3")]
    pub active: bool,
    #[prost(bool, tag = "4")]
    pub away: bool,
    #[prost(uint32, tag = "5")]
    pub sessions: u32,
    /// When the node last saw the user, in milliseconds since the Unix epoch.
    #[prost(int64, tag = "6")]
    pub last_seen_ms: i64,
}

impl From<&NodeUser> for WireUser {
    fn from(user: &NodeUser) -> Self {
        let activity = user.activity.unwrap_or(Activity {
            away: false,
            sessions: 0,
        });
        Self {
            user_id: user.user.to_string(),
            display_name: user.display_name.clone(),
            active: user.activity.is_some(),
            away: activity.away,
            sessions: activity.sessions,
            last_seen_ms: user.last_seen.timestamp_millis(),
        }
    }
}

/// The users of `wire` whose ids parse (a node never sends others).
fn node_users(wire: Vec<WireUser>) -> Vec<NodeUser> {
    wire.into_iter()
        .filter_map(|user| {
            Some(NodeUser {
                user: UserId(user.user_id.parse().ok()?),
                display_name: user.display_name,
                activity: user.active.then_some(Activity {
                    away: user.away,
                    sessions: user.sessions,
                }),
                last_seen: DateTime::from_timestamp_millis(user.last_seen_ms)
                    .unwrap_or_else(Utc::now),
            })
        })
        .collect()
}

impl Cluster {
    /// Publishes this node's changes, numbered, in as many messages as they need. Called under
    /// the registry's lock, so numbers follow the order the changes were made in.
    pub(crate) fn share_presence(&self, users: Vec<NodeUser>) {
        for chunk in users.chunks(USERS_PER_MESSAGE) {
            let seq = self
                .presence_seq
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1;
            let news = PresenceNews {
                node: self.node.to_string(),
                boot: self.boot.clone(),
                seq,
                users: chunk.iter().map(WireUser::from).collect(),
                leaving: false,
            };
            self.send(self.presence_subject(), news.encode_to_vec());
        }
    }

    /// The number of this node's latest batch of changes.
    pub(crate) fn presence_seq(&self) -> u64 {
        self.presence_seq.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// At shutdown: tells the other nodes this one's users are gone from it, and waits (briefly)
    /// for NATS to have it.
    pub async fn leave(&self) {
        let news = PresenceNews {
            node: self.node.to_string(),
            boot: self.boot.clone(),
            seq: self.presence_seq(),
            users: Vec::new(),
            leaving: true,
        };
        self.send(self.presence_subject(), news.encode_to_vec());
        let _ = tokio::time::timeout(Duration::from_secs(1), self.drained()).await;
    }

    /// Subscribes to the other nodes' news and to sync requests, and starts the task that
    /// merges the news into `hub` and heartbeats for this node.
    pub async fn start_presence(self: &Arc<Self>, hub: &Arc<Hub>) -> anyhow::Result<()> {
        let news = self.client.subscribe(self.presence_subject()).await?;
        let sync_requests = self.client.subscribe(self.sync_subject(&self.node)).await?;
        tokio::spawn(run_presence(
            Arc::downgrade(self),
            Arc::downgrade(hub),
            news,
            sync_requests,
        ));
        Ok(())
    }

    /// Keeps the list of live peers that requests to every node use.
    fn note_peers(&self, peers: &HashMap<Arc<str>, Peer>) {
        *self
            .live_peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = peers.keys().cloned().collect();
    }

    fn presence_subject(&self) -> String {
        format!("{}.presence", self.name)
    }

    /// Where `node` answers requests for its whole state.
    fn sync_subject(&self, node: &str) -> String {
        format!("{}.presence.sync.{node}", self.name)
    }
}

/// What this node knows of another.
struct Peer {
    /// Its run.
    boot: String,
    /// The number of its latest batch applied here.
    seq: u64,
    /// When it was last heard from.
    heard: Instant,
    /// Whether its state is being asked for.
    sync: Sync,
}

/// Where a peer's state stands.
enum Sync {
    /// Up to date: batches apply in order.
    Done,
    /// Asked for; the batches meanwhile wait here.
    Pending(Vec<PresenceNews>),
    /// The last request failed; asked again on the next heartbeat.
    Failed,
}

/// A node's whole state, or why it could not be had.
type Synced = (Arc<str>, anyhow::Result<(String, u64, Vec<WireUser>)>);

/// Merges the other nodes' news into the hub, answers their sync requests and heartbeats for
/// this node, until the cluster or the hub is gone.
async fn run_presence(
    cluster: Weak<Cluster>,
    hub: Weak<Hub>,
    mut news: async_nats::Subscriber,
    mut sync_requests: async_nats::Subscriber,
) {
    let mut peers: HashMap<Arc<str>, Peer> = HashMap::new();
    let (synced_tx, mut synced) = mpsc::unbounded_channel::<Synced>();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let mut link_up_since: Option<Instant> = None;
    loop {
        tokio::select! {
            Some(message) = news.next() => {
                let (Some(cluster), Some(hub)) = (cluster.upgrade(), hub.upgrade()) else { return };
                match PresenceNews::decode(message.payload) {
                    Ok(news) if *news.node != *cluster.node => {
                        heard(&cluster, &hub, &mut peers, news, &synced_tx);
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "undecodable presence news"),
                }
            }
            Some(request) = sync_requests.next() => {
                let (Some(cluster), Some(hub)) = (cluster.upgrade(), hub.upgrade()) else { return };
                if let Some(reply) = request.reply {
                    answer_sync(&cluster, &hub, reply.to_string());
                }
            }
            Some((node, state)) = synced.recv() => {
                let (Some(cluster), Some(hub)) = (cluster.upgrade(), hub.upgrade()) else { return };
                synced_state(&cluster, &hub, &mut peers, node, state, &synced_tx);
            }
            _ = heartbeat.tick() => {
                let (Some(cluster), Some(hub)) = (cluster.upgrade(), hub.upgrade()) else { return };
                if hub.is_shutting_down() {
                    return;
                }
                if !cluster.connected() {
                    // Nothing heard now means nothing: remote users keep what they had.
                    link_up_since = None;
                    continue;
                }
                let now = Instant::now();
                if link_up_since.is_none() {
                    link_up_since = Some(now);
                    // Whatever changed while the link was down: ask every node anew.
                    for peer in peers.values_mut() {
                        peer.sync = Sync::Failed;
                    }
                }
                let beat = PresenceNews {
                    node: cluster.node.to_string(),
                    boot: cluster.boot.clone(),
                    seq: cluster.presence_seq(),
                    users: Vec::new(),
                    leaving: false,
                };
                cluster.send(cluster.presence_subject(), beat.encode_to_vec());
                let up_since = link_up_since.unwrap_or(now);
                peers.retain(|node, peer| {
                    let silent = now - peer.heard.max(up_since);
                    if silent < DEAD_AFTER {
                        return true;
                    }
                    tracing::info!(node = %node, "no presence heartbeat from a node; its users are leaving");
                    hub.replace_remote_presence(node, Vec::new());
                    false
                });
                cluster.note_peers(&peers);
                for (node, peer) in &mut peers {
                    if matches!(peer.sync, Sync::Failed) {
                        peer.sync = Sync::Pending(Vec::new());
                        request_sync(&cluster, node.clone(), synced_tx.clone());
                    }
                }
            }
        }
    }
}

/// News from another node: applied when it is the next batch, a sync asked for when a batch was
/// missed or the node (or its run) is new.
fn heard(
    cluster: &Arc<Cluster>,
    hub: &Hub,
    peers: &mut HashMap<Arc<str>, Peer>,
    news: PresenceNews,
    synced_tx: &mpsc::UnboundedSender<Synced>,
) {
    let node: Arc<str> = news.node.as_str().into();
    if news.leaving {
        peers.remove(&node);
        cluster.note_peers(peers);
        hub.replace_remote_presence(&node, Vec::new());
        return;
    }
    let now = Instant::now();
    let peer = match peers.get_mut(&node) {
        Some(peer) if peer.boot == news.boot => peer,
        known => {
            if known.is_some() {
                // Restarted: what its last run said no longer holds.
                hub.replace_remote_presence(&node, Vec::new());
            }
            let peer = Peer {
                boot: news.boot.clone(),
                seq: 0,
                heard: now,
                sync: Sync::Pending(vec![news]),
            };
            peers.insert(node.clone(), peer);
            cluster.note_peers(peers);
            request_sync(cluster, node, synced_tx.clone());
            return;
        }
    };
    peer.heard = now;
    match &mut peer.sync {
        Sync::Pending(waiting) => waiting.push(news),
        Sync::Failed => {}
        Sync::Done => {
            if news.seq == peer.seq + 1 && !news.users.is_empty() {
                peer.seq = news.seq;
                hub.apply_remote_presence(&node, node_users(news.users));
            } else if news.seq > peer.seq {
                tracing::debug!(node = %node, "missed presence news; asking for the state");
                peer.sync = Sync::Pending(Vec::new());
                request_sync(cluster, node, synced_tx.clone());
            }
        }
    }
}

/// A node's whole state came (or did not): it replaces what the node said before, then the
/// batches that came meanwhile apply in order.
fn synced_state(
    cluster: &Arc<Cluster>,
    hub: &Hub,
    peers: &mut HashMap<Arc<str>, Peer>,
    node: Arc<str>,
    state: anyhow::Result<(String, u64, Vec<WireUser>)>,
    synced_tx: &mpsc::UnboundedSender<Synced>,
) {
    let Some(peer) = peers.get_mut(&node) else {
        return;
    };
    let (boot, seq, users) = match state {
        Ok(state) => state,
        Err(err) => {
            tracing::warn!(node = %node, error = %err, "could not get a node's presence");
            peer.sync = Sync::Failed;
            return;
        }
    };
    if boot != peer.boot {
        peer.sync = Sync::Failed; // it restarted meanwhile; asked again
        return;
    }
    hub.replace_remote_presence(&node, node_users(users));
    peer.seq = seq;
    let Sync::Pending(mut waiting) = std::mem::replace(&mut peer.sync, Sync::Done) else {
        return;
    };
    waiting.sort_by_key(|news| news.seq);
    for news in waiting {
        if news.seq <= peer.seq || news.users.is_empty() {
            continue;
        }
        if news.seq != peer.seq + 1 {
            peer.sync = Sync::Pending(Vec::new());
            request_sync(cluster, node, synced_tx.clone());
            return;
        }
        peer.seq = news.seq;
        hub.apply_remote_presence(&node, node_users(news.users));
    }
}

/// Asks `node` for its whole state; the answer comes back on `synced_tx`.
fn request_sync(cluster: &Cluster, node: Arc<str>, synced_tx: mpsc::UnboundedSender<Synced>) {
    let client = cluster.client.clone();
    let subject = cluster.sync_subject(&node);
    tokio::spawn(async move {
        let state = tokio::time::timeout(SYNC_LIMIT, fetch_state(client, subject)).await;
        let state = state.unwrap_or_else(|_| Err(anyhow::anyhow!("no full answer in time")));
        let _ = synced_tx.send((node, state));
    });
}

/// Sends a sync request on `subject` and gathers the chunks of the answer.
async fn fetch_state(
    client: async_nats::Client,
    subject: String,
) -> anyhow::Result<(String, u64, Vec<WireUser>)> {
    let inbox = client.new_inbox();
    let mut answers = client.subscribe(inbox.clone()).await?;
    client
        .publish_with_reply(subject, inbox, Bytes::new())
        .await?;
    let mut users = Vec::new();
    while let Some(message) = answers.next().await {
        let chunk = PresenceState::decode(message.payload)?;
        users.extend(chunk.users);
        if chunk.last {
            return Ok((chunk.boot, chunk.seq, users));
        }
    }
    anyhow::bail!("the answer ended early")
}

/// Answers a sync request with this node's whole state, in chunks.
fn answer_sync(cluster: &Cluster, hub: &Hub, reply: String) {
    let (users, seq) = hub.shared_presence(cluster);
    let chunks: Vec<&[NodeUser]> = if users.is_empty() {
        vec![&[]]
    } else {
        users.chunks(USERS_PER_MESSAGE).collect()
    };
    let count = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let state = PresenceState {
            boot: cluster.boot.clone(),
            seq,
            users: chunk.iter().map(WireUser::from).collect(),
            last: i + 1 == count,
        };
        cluster.send(reply.clone(), state.encode_to_vec());
    }
}
