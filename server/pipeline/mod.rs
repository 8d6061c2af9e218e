//! The durable pipeline: everything that writes to the database on the way of an event, batched
//! so a crowd costs one commit per round instead of one each.
//!
//! - [`writer`]: the message writer. It commits the messages of many senders and the deliveries
//!   their recipients' clients acknowledged in one transaction, then publishes through the
//!   fan-out seam ([`FanOut`]) and acks; acks never precede the commit.
//! - [`store`]: the presence write-through of `sessions` and `users_online`, in order.
//! - [`group_commit`]: the batch, the commit and the one-by-one fallback all three writers share
//!   (with the claim writer in `identity`); transactions go through `Database::transaction`,
//!   which runs one again when it lost a conflict.

mod group_commit;
mod store;
mod writer;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::{
    db::{
        Database, Delivery, NewMessage, StoredMessage,
        ids::{Seq, UserId},
    },
    error::{Error, Result},
    hub::{FanOut, HubConfig},
    metrics::Metrics,
};

pub(crate) use group_commit::group_commit;
pub(crate) use store::StoreOp;
pub use writer::AckTo;

/// How long shutdown waits for the presence rows to be reset.
const STORE_FLUSH_LIMIT: Duration = Duration::from_secs(3);

/// The writers' queues, and what sessions need while deliveries are being recorded.
#[derive(Debug)]
pub struct Pipeline {
    /// Durable storage; sessions read their backlog through it.
    db: Database,
    /// This run of the node, as registered in `nodes`.
    boot_id: Uuid,
    /// Days messages are kept; 0 keeps none beyond their live delivery.
    retention_days: u32,
    /// Messages waiting for the writer's next transaction.
    writer: mpsc::Sender<writer::WriteRequest>,
    /// Messages a recipient's client has (acknowledged, or sent to a session without receipts),
    /// and when, for the writer to record as delivered marks.
    delivered: mpsc::UnboundedSender<(Delivery, DateTime<Utc>)>,
    /// The same seqs until the writer has recorded them, so a session opening meanwhile does not
    /// load them again as undelivered. Its own lock: it is touched for every message taken.
    in_delivery: Mutex<HashSet<Seq>>,
    /// Asks the writer to say when everything queued so far is committed.
    flushes: mpsc::UnboundedSender<oneshot::Sender<()>>,
    /// Presence writes for `users_online` and `sessions`, applied in order by one task.
    store: mpsc::UnboundedSender<StoreOp>,
    /// Messages processed and delivered, with their latencies.
    metrics: Arc<Metrics>,
}

impl Pipeline {
    /// Starts the writers on the current runtime. They publish through `fanout` after each
    /// commit, and stop once the pipeline is dropped.
    pub fn start(
        db: Database,
        config: &HubConfig,
        metrics: Arc<Metrics>,
        fanout: Weak<dyn FanOut>,
    ) -> Arc<Self> {
        let (writer_tx, writer_rx) = mpsc::channel(writer::WRITER_QUEUE);
        let (delivered_tx, delivered_rx) = mpsc::unbounded_channel();
        let (flushes_tx, flushes_rx) = mpsc::unbounded_channel();
        let (store_tx, store_rx) = mpsc::unbounded_channel();
        let pipeline = Arc::new(Self {
            db: db.clone(),
            boot_id: config.boot_id,
            retention_days: config.retention_days,
            writer: writer_tx,
            delivered: delivered_tx,
            in_delivery: Mutex::new(HashSet::new()),
            flushes: flushes_tx,
            store: store_tx,
            metrics,
        });
        tokio::spawn(writer::run_writer(
            Arc::downgrade(&pipeline),
            fanout,
            writer_rx,
            delivered_rx,
            flushes_rx,
        ));
        tokio::spawn(store::run(db, store_rx, config.node_id.clone()));
        tokio::spawn(writer::run_retention(Arc::downgrade(&pipeline)));
        pipeline
    }

    /// The database, for reads.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Whether messages outlive their live delivery.
    fn keeps_history(&self) -> bool {
        self.retention_days > 0
    }

    /// Hands a message, received at `received`, to the writer. Its ack comes through `ack_to`
    /// after the commit (see [`writer::run_writer`]).
    pub async fn send_message(
        &self,
        message: NewMessage,
        received: Instant,
        ack_to: AckTo,
    ) -> Result<()> {
        let request = writer::WriteRequest::new(message, received, ack_to);
        self.writer
            .send(request)
            .await
            .map_err(|_| Error::WriterStopped)
    }

    /// Waits until the writer has committed every message and delivery queued before the call.
    pub async fn flush_writer(&self) {
        let (done, flushed) = oneshot::channel();
        if self.flushes.send(done).is_ok() {
            let _ = flushed.await;
        }
    }

    /// Notes that a client of `recipient` has the messages with these seqs (each with its
    /// sender), as of now, for the writer to record in its next round.
    pub(crate) fn note_delivered(&self, recipient: UserId, taken: &[(Seq, UserId)]) {
        if taken.is_empty() {
            return;
        }
        let now = Utc::now();
        self.lock_in_delivery()
            .extend(taken.iter().map(|(seq, _)| *seq));
        for &(seq, sender) in taken {
            let delivery = Delivery {
                recipient,
                sender,
                seq,
            };
            let _ = self.delivered.send((delivery, now));
        }
    }

    /// `page` without what a client has acknowledged and the writer not yet recorded.
    pub(crate) fn not_in_delivery(
        &self,
        page: Vec<StoredMessage>,
    ) -> impl Iterator<Item = StoredMessage> {
        let taken = self.lock_in_delivery();
        page.into_iter()
            .filter(move |message| !taken.contains(&message.seq))
    }

    fn lock_in_delivery(&self) -> MutexGuard<'_, HashSet<Seq>> {
        self.in_delivery
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a presence row for the write-through; rows are applied in the order queued.
    pub(crate) fn write_presence(&self, op: StoreOp) {
        let _ = self.store.send(op);
    }

    /// At shutdown, after the rows queued before: unregisters this node, ends its sessions and
    /// marks its users offline, waiting at most [`STORE_FLUSH_LIMIT`].
    pub(crate) async fn remove_node(&self) {
        let (done_tx, done_rx) = oneshot::channel();
        let _ = self.store.send(StoreOp::RemoveNode {
            boot: self.boot_id,
            done: done_tx,
        });
        // Bounded, so a database that hangs cannot stretch the shutdown past its limit.
        if tokio::time::timeout(STORE_FLUSH_LIMIT, done_rx)
            .await
            .is_err()
        {
            tracing::warn!("this node's rows not cleaned up within the shutdown limit");
        }
    }
}
