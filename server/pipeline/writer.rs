//! The message path: a single writer commits messages in batches (group commit), then fans each
//! new one out and acks it; in the same transactions it records deliveries and then tells senders.

use std::{
    collections::HashMap,
    sync::Weak,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use sea_orm::DbErr;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use super::{Pipeline, group_commit};
use crate::{
    convert::{ack, message_status, server_event, status_event},
    db::{
        Database, Delivery, NewMessage, StoredMessage,
        ids::{Seq, SessionId},
    },
    error::{Error, Result},
    hub::FanOut,
    proto::{MessageStatus, SendMessageResponse, server_event::Event},
};

/// Messages waiting for the writer; senders wait (backpressure) when it is full.
pub(super) const WRITER_QUEUE: usize = 8192;
/// Most messages committed in one transaction.
const MAX_BATCH: usize = 512;
/// Most deliveries recorded in one round.
const MAX_DELIVERY_BATCH: usize = 1024;
/// How long deliveries wait for messages to share their round. Under a light load most receipts
/// would otherwise commit on their own: a transaction (and on SQLite two fsyncs) each. DELIVERED
/// reaches the sender this much later at most; messages never wait.
const DELIVERY_LINGER: Duration = Duration::from_millis(20);
/// A round with fewer messages than this, formed while the writer was busy (so more are coming),
/// waits up to `COMMIT_DELAY` for more before it commits, as PostgreSQL's `commit_delay` does:
/// under a steady light load a round would otherwise hold one message, which alone pays a whole
/// commit (on SQLite two fsyncs and every index page it touches). A message that finds the writer
/// idle commits at once.
const SMALL_ROUND: usize = 8;
/// See `SMALL_ROUND`.
const COMMIT_DELAY: Duration = Duration::from_millis(1);

/// Where the ack (or the error) of a message goes.
#[derive(Debug)]
pub enum AckTo {
    /// A Chat stream: as an `ack` or `error` event on that session.
    Session {
        /// The session that sent the message.
        session: SessionId,
        /// Held until the ack is queued, bounding the session's sends in flight.
        in_flight: OwnedSemaphorePermit,
    },
    /// A unary call waiting for its response.
    Caller(oneshot::Sender<Result<SendMessageResponse>>),
}

/// One message for the writer.
#[derive(Debug)]
pub(super) struct WriteRequest {
    /// What to store.
    message: NewMessage,
    /// The session it came from, which does not get the sender's echo.
    origin: Option<SessionId>,
    /// Where the ack goes.
    ack_to: AckTo,
    /// When the server received the message.
    received: Instant,
}

impl WriteRequest {
    pub(super) fn new(message: NewMessage, received: Instant, ack_to: AckTo) -> Self {
        let origin = match &ack_to {
            AckTo::Session { session, .. } => Some(*session),
            AckTo::Caller(_) => None,
        };
        Self {
            message,
            origin,
            ack_to,
            received,
        }
    }
}

impl Pipeline {
    /// Sends an ack (or error) where it belongs.
    fn deliver_ack(
        fanout: &dyn FanOut,
        ack_to: AckTo,
        client_msg_id: &str,
        result: Result<SendMessageResponse>,
    ) {
        match ack_to {
            AckTo::Caller(reply) => {
                let _ = reply.send(result);
            }
            AckTo::Session { session, in_flight } => {
                let event = match result {
                    Ok(response) => Event::Ack(response),
                    Err(err) => Event::Error(err.to_event(client_msg_id)),
                };
                fanout.publish_to_session(session, server_event(event));
                drop(in_flight);
            }
        }
    }

    /// The ack of a retry: the stored message with its status now, unless the key was used for a
    /// different message (another recipient or text), which would otherwise be silently lost.
    async fn retry_ack(
        &self,
        request: &WriteRequest,
        stored: &StoredMessage,
    ) -> Result<SendMessageResponse> {
        let erased = stored.text.is_empty(); // retention 0 keeps only the key
        let same = stored.recipient_id == request.message.recipient
            && (erased || stored.text == request.message.text);
        if !same {
            let field = match request.ack_to {
                AckTo::Session { .. } => "send_message.client_msg_id",
                AckTo::Caller(_) => "client_msg_id",
            };
            return Err(Error::invalid(
                field,
                "already used for a different message; use a new key",
            ));
        }
        Ok(ack(stored, self.current_status(stored).await?))
    }

    /// The status a retried message has now.
    async fn current_status(&self, message: &StoredMessage) -> Result<MessageStatus> {
        let marks = self
            .db
            .marks(message.recipient_id, message.sender_id)
            .await?;
        Ok(message_status(message, marks))
    }
}

/// The writer, the one task that writes messages. Each round takes every queued message (up to a
/// batch) and every delivery noted since the last round, commits both in one transaction, then
/// fans the new messages out, acks them and tells senders DELIVERED. Acks never precede the commit.
/// Both in one transaction: one commit per round instead of two, and pages the inserts and the
/// delivery updates share are written once.
pub(super) async fn run_writer(
    pipeline: Weak<Pipeline>,
    fanout: Weak<dyn FanOut>,
    mut requests: mpsc::Receiver<WriteRequest>,
    mut taken: mpsc::UnboundedReceiver<(Delivery, DateTime<Utc>)>,
    mut flushes: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut received = Vec::with_capacity(MAX_DELIVERY_BATCH);
    let mut flushed = Vec::new();
    loop {
        // Messages waiting already: they came while the last round committed.
        let busy = !requests.is_empty();
        // All are cancel safe: a branch that loses has received nothing.
        let open = tokio::select! {
            n = requests.recv_many(&mut batch, MAX_BATCH) => n > 0,
            n = taken.recv_many(&mut received, MAX_DELIVERY_BATCH) => n > 0,
            n = flushes.recv_many(&mut flushed, 16) => n > 0,
        };
        if !open {
            return; // the pipeline, which holds the senders, is gone
        }
        if batch.is_empty() && flushed.is_empty() {
            // Cancel safe too: when the time is up, nothing was received.
            let _ =
                tokio::time::timeout(DELIVERY_LINGER, requests.recv_many(&mut batch, MAX_BATCH))
                    .await;
        } else if busy && batch.len() < SMALL_ROUND {
            // Cancel safe: what recv_many took before the time was up stays in the batch.
            let _ = tokio::time::timeout(COMMIT_DELAY, async {
                while batch.len() < SMALL_ROUND {
                    let room = MAX_BATCH - batch.len();
                    if requests.recv_many(&mut batch, room).await == 0 {
                        break;
                    }
                }
            })
            .await;
        }
        // What the other queue holds joins this round without waiting for it.
        while batch.len() < MAX_BATCH {
            let Ok(request) = requests.try_recv() else {
                break;
            };
            batch.push(request);
        }
        while received.len() < MAX_DELIVERY_BATCH {
            let Ok(delivery) = taken.try_recv() else {
                break;
            };
            received.push(delivery);
        }
        // A unary sender that gave up (its deadline passed while the database was slow) was told
        // the send failed: storing it now would deliver a message its client shows as failed.
        batch.retain(|request| match &request.ack_to {
            AckTo::Caller(reply) => !reply.is_closed(),
            AckTo::Session { .. } => true,
        });
        // Sorted by seq, then time, so each seq keeps the moment it was first taken.
        received.sort_unstable_by_key(|(delivery, at)| (delivery.seq, *at));
        received.dedup_by_key(|(delivery, _)| delivery.seq);
        let seqs: Vec<Seq> = received.iter().map(|(d, _)| d.seq).collect();
        let deliveries: Vec<Delivery> = received.iter().map(|(d, _)| *d).collect();
        let taken_at: HashMap<Seq, DateTime<Utc>> =
            received.drain(..).map(|(d, at)| (d.seq, at)).collect();
        let messages: Vec<&NewMessage> = batch.iter().map(|r| &r.message).collect();

        let Some(pipeline) = pipeline.upgrade() else {
            return;
        };
        let Some(fanout) = fanout.upgrade() else {
            return;
        };
        let (outcomes, delivered) = commit_round(&pipeline.db, &messages, &deliveries).await;
        let mut to_erase = Vec::new();
        pipeline
            .ack_round(&*fanout, &mut batch, outcomes, &mut to_erase)
            .await;
        pipeline.report_deliveries(&*fanout, &seqs, &taken_at, delivered, &mut to_erase);
        if let Err(err) = pipeline.db.erase_messages(&to_erase).await {
            tracing::warn!(error = %err, "could not erase messages past their live delivery");
        }
        // Everything queued before a flush was asked for is in this round or an earlier one.
        if !flushed.is_empty() && requests.is_empty() && taken.is_empty() {
            for done in flushed.drain(..) {
                let _ = done.send(());
            }
        }
    }
}

/// Commits a round in one transaction. If that fails, records the deliveries on their own and
/// commits each message on its own, so one bad row fails only its own send.
async fn commit_round(
    db: &Database,
    messages: &[&NewMessage],
    delivered: &[Delivery],
) -> (
    Vec<Result<(StoredMessage, bool), DbErr>>,
    Result<Vec<StoredMessage>, DbErr>,
) {
    let deliveries = (!delivered.is_empty()).then_some(Part::Deliveries(delivered));
    let parts: Vec<Part> = deliveries
        .into_iter()
        .chain(messages.iter().copied().map(Part::Message))
        .collect();
    let committed = group_commit("round", &parts, |parts| commit_parts(db, parts)).await;
    let mut outcomes = Vec::with_capacity(messages.len());
    let mut delivered = Ok(Vec::new());
    for (part, outcome) in parts.iter().zip(committed) {
        match (part, outcome) {
            (_, Ok(Committed::Deliveries(stored))) => delivered = Ok(stored),
            (_, Ok(Committed::Message(stored, inserted))) => outcomes.push(Ok((stored, inserted))),
            (Part::Deliveries(_), Err(err)) => delivered = Err(err),
            (Part::Message(_), Err(err)) => outcomes.push(Err(err)),
        }
    }
    (outcomes, delivered)
}

/// What a round commits: its deliveries, recorded together, and each of its messages.
enum Part<'a> {
    /// What recipients' clients have, to record as delivered marks.
    Deliveries(&'a [Delivery]),
    /// A message to store.
    Message(&'a NewMessage),
}

/// What committing a part did.
#[expect(
    clippy::large_enum_variant,
    reason = "all parts but one are messages; boxing them costs an allocation per message"
)]
enum Committed {
    /// The newest message of each delivered mark moved (see `CommittedRound::delivered`).
    Deliveries(Vec<StoredMessage>),
    /// The stored message, and whether this round inserted it.
    Message(StoredMessage, bool),
}

/// Commits `parts` in one transaction; answers for each part, in order.
async fn commit_parts(db: &Database, parts: &[Part<'_>]) -> Result<Vec<Committed>, DbErr> {
    let mut delivered: &[Delivery] = &[];
    let mut messages = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            Part::Deliveries(seqs) => delivered = seqs,
            Part::Message(message) => messages.push(*message),
        }
    }
    let round = db.commit_messages(&messages, delivered).await?;
    let deliveries = (!delivered.is_empty()).then_some(Committed::Deliveries(round.delivered));
    let stored = round.messages.into_iter();
    Ok(deliveries
        .into_iter()
        .chain(stored.map(|(message, inserted)| Committed::Message(message, inserted)))
        .collect())
}

impl Pipeline {
    /// After a round's commit: fans each new message out and acks every one of the batch. Without
    /// history, adds to `to_erase` the new messages no session took.
    async fn ack_round(
        &self,
        fanout: &dyn FanOut,
        batch: &mut Vec<WriteRequest>,
        outcomes: Vec<Result<(StoredMessage, bool), DbErr>>,
        to_erase: &mut Vec<Seq>,
    ) {
        for (request, outcome) in batch.drain(..).zip(outcomes) {
            let result = match outcome {
                Ok((stored, true)) => {
                    let taken = fanout.publish_message(&stored, request.origin);
                    if taken == 0 && !self.keeps_history() {
                        // No history: what no session took now is not kept for later.
                        to_erase.push(stored.seq);
                    }
                    Ok(ack(&stored, MessageStatus::Sent))
                }
                Ok((stored, false)) => self.retry_ack(&request, &stored).await,
                Err(err) => Err(Error::Database(err)),
            };
            let received = request.received;
            Self::deliver_ack(
                fanout,
                request.ack_to,
                &request.message.client_msg_id,
                result,
            );
            self.metrics.message_processed(received.elapsed());
        }
    }

    /// After a round's commit: tells the sender of each conversation whose delivered mark moved,
    /// once per round (DELIVERED covers every earlier message, so a burst reaches the sender as
    /// one event), and measures that newest message's delivery latency: from its `sent_at`,
    /// stamped as it was handed to the group commit, to when the first recipient session took
    /// it. Without history, adds every message the round recorded delivered to `to_erase`.
    fn report_deliveries(
        &self,
        fanout: &dyn FanOut,
        seqs: &[Seq],
        taken_at: &HashMap<Seq, DateTime<Utc>>,
        delivered: Result<Vec<StoredMessage>, DbErr>,
        to_erase: &mut Vec<Seq>,
    ) {
        if seqs.is_empty() {
            return;
        }
        // Recorded (or, on failure, left undelivered for the next session to load).
        self.lock_in_delivery()
            .retain(|seq| seqs.binary_search(seq).is_err());
        let delivered = match delivered {
            Ok(delivered) => delivered,
            // The marks stay where they were, so the messages come again on the next session.
            Err(err) => {
                tracing::warn!(error = %err, "could not record deliveries");
                return;
            }
        };
        for message in &delivered {
            if let Some(at) = taken_at.get(&message.seq) {
                let latency = (*at - message.sent_at).to_std().unwrap_or_default();
                self.metrics.delivered(latency);
            }
            let update = status_event(message, message.recipient_id, MessageStatus::Delivered);
            fanout.publish_to_user(message.sender_id, update);
        }
        if !self.keeps_history() {
            to_erase.extend_from_slice(seqs);
        }
    }
}

/// Deletes messages older than the retention period, hourly.
pub(super) async fn run_retention(pipeline: Weak<Pipeline>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(3600));
    loop {
        ticker.tick().await;
        let Some(pipeline) = pipeline.upgrade() else {
            return;
        };
        let days = pipeline.retention_days.max(1);
        let cutoff = Utc::now() - chrono::Duration::days(i64::from(days));
        match pipeline.db.delete_messages_before(cutoff).await {
            Ok(None) => tracing::debug!("another node is sweeping past retention"),
            Ok(Some(0)) => {}
            Ok(Some(deleted)) => tracing::info!(deleted, "deleted messages past retention"),
            Err(err) => tracing::warn!(error = %err, "retention sweep failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        db::ids::UserId,
        testing::{TestDb, on_both_databases},
    };

    /// Bob's client has Alice's messages up to `seq`.
    fn bob_has(t: &TestDb, seq: Seq) -> Delivery {
        Delivery {
            recipient: t.bob,
            sender: t.alice,
            seq,
        }
    }

    fn message(sender: UserId, recipient: UserId, key: &str) -> NewMessage {
        NewMessage::new(sender, recipient, key.to_owned(), format!("text of {key}"))
    }

    /// Stores one message from alice to bob; returns its seq.
    async fn stored(t: &TestDb, key: &str) -> Seq {
        let batch = [&message(t.alice, t.bob, key)];
        let round = t.db.commit_messages(&batch, &[]).await.unwrap();
        round.messages[0].0.seq
    }

    /// One round stores its messages and records its deliveries together.
    async fn round_commits_messages_and_deliveries(t: TestDb) {
        let first = stored(&t, "m1").await;
        let (outcomes, delivered) = commit_round(
            &t.db,
            &[&message(t.bob, t.alice, "m2")],
            &[bob_has(&t, first)],
        )
        .await;

        let (reply, inserted) = outcomes[0].as_ref().unwrap();
        assert!(*inserted);
        let delivered: Vec<Seq> = delivered.unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(delivered, [first]);
        assert!(t.db.undelivered_for(t.bob).await.unwrap().is_empty());
        let waiting: Vec<Seq> =
            t.db.undelivered_for(t.alice)
                .await
                .unwrap()
                .iter()
                .map(|m| m.seq)
                .collect();
        assert_eq!(waiting, [reply.seq]);
    }

    /// A round whose transaction fails (one message to a user who does not exist) still records
    /// its deliveries and stores its other messages; only the bad message fails.
    async fn failed_round_falls_back_to_one_by_one(t: TestDb) {
        let first = stored(&t, "m1").await;
        let bad = message(t.alice, UserId::new_random(), "m2");
        let good = message(t.bob, t.alice, "m3");
        let (outcomes, delivered) =
            commit_round(&t.db, &[&bad, &good], &[bob_has(&t, first)]).await;

        assert!(outcomes[0].is_err());
        assert!(
            outcomes[1]
                .as_ref()
                .is_ok_and(|(m, inserted)| *inserted && m.client_msg_id == "m3")
        );
        let delivered: Vec<Seq> = delivered.unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(delivered, [first]);
        assert!(t.db.undelivered_for(t.bob).await.unwrap().is_empty());
    }

    /// A message recorded delivered once is not reported again by a later round.
    async fn deliveries_are_reported_once(t: TestDb) {
        let first = stored(&t, "m1").await;
        let (_, once) = commit_round(&t.db, &[], &[bob_has(&t, first)]).await;
        let (_, again) = commit_round(&t.db, &[], &[bob_has(&t, first)]).await;
        assert_eq!(once.unwrap().len(), 1);
        assert!(again.unwrap().is_empty());
    }

    on_both_databases!(
        round_commits_messages_and_deliveries,
        failed_round_falls_back_to_one_by_one,
        deliveries_are_reported_once,
    );

    /// On PostgreSQL a round that inserts messages waits while another writer (another node's,
    /// here a transaction holding the seq lock as one does between its insert and its commit)
    /// has not committed, so its higher seq never becomes visible before the lower one.
    async fn a_round_waits_for_an_open_lower_seq(t: TestDb) {
        use sea_orm::{ConnectionTrait, TransactionTrait};
        let other_writer = t.db.writer().begin().await.unwrap();
        let lock = format!(
            "SELECT pg_advisory_xact_lock({})",
            crate::db::MESSAGE_SEQ_LOCK
        );
        other_writer.execute_unprepared(&lock).await.unwrap();
        let round = tokio::spawn({
            let (db, alice, bob) = (t.db.clone(), t.alice, t.bob);
            async move { db.commit_messages(&[&message(alice, bob, "m1")], &[]).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!round.is_finished(), "committed while a lower seq was open");
        assert_eq!(t.db.last_seq().await.unwrap(), Seq::ZERO);

        other_writer.commit().await.unwrap();
        round.await.unwrap().unwrap();
        assert!(t.db.last_seq().await.unwrap() > Seq::ZERO);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_round_waits_for_an_open_lower_seq_on_postgres() {
        let postgres = crate::testing::Backend::Postgres;
        crate::testing::run_on(postgres, a_round_waits_for_an_open_lower_seq).await;
    }

    /// On PostgreSQL one node sweeps past retention at a time: while another holds the
    /// retention lock, a sweep skips (and deletes nothing); once it is free, the sweep runs.
    async fn a_sweep_skips_while_another_node_sweeps(t: TestDb) {
        use sea_orm::{ConnectionTrait, TransactionTrait};
        stored(&t, "m1").await;
        let later = Utc::now() + chrono::Duration::hours(1);
        let other_node = t.db.writer().begin().await.unwrap();
        let lock = format!(
            "SELECT pg_advisory_xact_lock({})",
            crate::db::RETENTION_LOCK
        );
        other_node.execute_unprepared(&lock).await.unwrap();
        assert_eq!(t.db.delete_messages_before(later).await.unwrap(), None);
        assert!(t.db.last_seq().await.unwrap() > Seq::ZERO);

        other_node.commit().await.unwrap();
        assert_eq!(t.db.delete_messages_before(later).await.unwrap(), Some(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sweep_skips_while_another_node_sweeps_on_postgres() {
        let postgres = crate::testing::Backend::Postgres;
        crate::testing::run_on(postgres, a_sweep_skips_while_another_node_sweeps).await;
    }
}
