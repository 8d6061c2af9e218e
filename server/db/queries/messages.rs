//! Chat messages: the batched insert behind group commit, offline delivery, history, retention.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TryInsertResult,
    sea_query::Expr,
};
use uuid::Uuid;

use crate::db::{
    Database,
    ids::{MessageId, Seq, UserId, conversation_key},
    tables::chat_messages,
};

/// A message as the database stores it.
pub type StoredMessage = chat_messages::Model;

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Server-assigned UUID.
    pub message_id: MessageId,
    /// The authenticated sender.
    pub sender: UserId,
    /// The recipient, known to exist.
    pub recipient: UserId,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// The validated text.
    pub text: String,
    /// When the server accepted it.
    pub sent_at: DateTime<Utc>,
}

impl NewMessage {
    /// A message from `sender` to `recipient`, given its id and time now.
    pub fn new(sender: UserId, recipient: UserId, client_msg_id: String, text: String) -> Self {
        Self {
            message_id: MessageId(Uuid::now_v7()),
            sender,
            recipient,
            client_msg_id,
            text,
            sent_at: Utc::now(),
        }
    }
}

/// What one transaction of the message writer did.
#[derive(Debug)]
pub struct CommittedRound {
    /// In the batch's order, each stored message and whether this round inserted it (false: a
    /// retry of a stored one).
    pub messages: Vec<(StoredMessage, bool)>,
    /// The messages this round marked delivered, leaving out ones delivered before or deleted.
    pub delivered: Vec<StoredMessage>,
}

impl Database {
    /// Stores a batch of messages (group commit) and marks the messages with the `delivered` seqs
    /// delivered, in one transaction: one commit (and, on SQLite, one fsync and one write of each
    /// touched page) for both.
    pub async fn commit_messages(
        &self,
        batch: &[&NewMessage],
        delivered: &[Seq],
    ) -> Result<CommittedRound, DbErr> {
        self.transaction(|tx| async move {
            Ok(CommittedRound {
                messages: insert_messages(&tx, batch).await?,
                delivered: mark_delivered(&tx, delivered).await?,
            })
        })
        .await
    }

    /// Messages to `user` that no session of theirs has received, oldest first.
    #[cfg(test)]
    pub async fn undelivered_for(&self, user: UserId) -> Result<Vec<StoredMessage>, DbErr> {
        chat_messages::Entity::find()
            .filter(chat_messages::Column::RecipientId.eq(user))
            .filter(chat_messages::Column::DeliveredAt.is_null())
            .order_by_asc(chat_messages::Column::Seq)
            .all(self.conn())
            .await
    }

    /// One page of a session's backlog: up to `limit` messages to `user` that no session of
    /// theirs has received, with seq in `after + 1 ..= up_to`, oldest first.
    pub async fn undelivered_page(
        &self,
        user: UserId,
        after: Seq,
        up_to: Seq,
        limit: u64,
    ) -> Result<Vec<StoredMessage>, DbErr> {
        chat_messages::Entity::find()
            .filter(chat_messages::Column::RecipientId.eq(user))
            .filter(chat_messages::Column::DeliveredAt.is_null())
            .filter(chat_messages::Column::Seq.gt(after))
            .filter(chat_messages::Column::Seq.lte(up_to))
            .order_by_asc(chat_messages::Column::Seq)
            .limit(limit)
            .all(self.conn())
            .await
    }

    /// The messages with these seqs that still exist, oldest first.
    pub async fn messages_by_seq(&self, seqs: &[Seq]) -> Result<Vec<StoredMessage>, DbErr> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        chat_messages::Entity::find()
            .filter(chat_messages::Column::Seq.is_in(seqs.iter().copied()))
            .order_by_asc(chat_messages::Column::Seq)
            .all(self.conn())
            .await
    }

    /// The highest seq committed so far (0 when there are no messages).
    pub async fn last_seq(&self) -> Result<Seq, DbErr> {
        let last = chat_messages::Entity::find()
            .select_only()
            .column_as(chat_messages::Column::Seq.max(), "last")
            .into_tuple::<Option<Seq>>()
            .one(self.conn())
            .await?;
        Ok(last.flatten().unwrap_or(Seq::ZERO))
    }

    /// One page of a conversation, before `before_seq` (0: from the newest), in ascending seq,
    /// and whether older messages exist.
    pub async fn history(
        &self,
        me: UserId,
        peer: UserId,
        before_seq: Seq,
        limit: u64,
    ) -> Result<(Vec<StoredMessage>, bool), DbErr> {
        let mut query = chat_messages::Entity::find()
            .filter(chat_messages::Column::ConversationKey.eq(conversation_key(me, peer)));
        if before_seq > Seq::ZERO {
            query = query.filter(chat_messages::Column::Seq.lt(before_seq));
        }
        let mut page = query
            .order_by_desc(chat_messages::Column::Seq)
            .limit(limit + 1)
            .all(self.conn())
            .await?;
        let has_more = page.len() as u64 > limit;
        page.truncate(limit as usize);
        page.reverse();
        Ok((page, has_more))
    }

    /// Deletes messages sent before `cutoff`; returns how many.
    pub async fn delete_messages_before(&self, cutoff: DateTime<Utc>) -> Result<u64, DbErr> {
        let result = chat_messages::Entity::delete_many()
            .filter(chat_messages::Column::SentAt.lt(cutoff))
            .exec(self.writer())
            .await?;
        Ok(result.rows_affected)
    }

    /// Erases the text of these messages, keeping their rows so a retried send still finds its
    /// key (retention 0: no content outlives its live delivery).
    pub async fn erase_messages(&self, seqs: &[Seq]) -> Result<(), DbErr> {
        if seqs.is_empty() {
            return Ok(());
        }
        chat_messages::Entity::update_many()
            .col_expr(chat_messages::Column::Text, Expr::value(""))
            .filter(chat_messages::Column::Seq.is_in(seqs.iter().copied()))
            .exec(self.writer())
            .await
            .map(|_| ())
    }
}

/// Inserts a batch, skipping keys already stored; returns, in the batch's order, each stored
/// message and whether this call inserted it.
async fn insert_messages(
    tx: &DatabaseTransaction,
    batch: &[&NewMessage],
) -> Result<Vec<(StoredMessage, bool)>, DbErr> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let rows = batch.iter().map(|m| chat_messages::ActiveModel {
        seq: NotSet,
        message_id: Set(m.message_id),
        conversation_key: Set(conversation_key(m.sender, m.recipient)),
        sender_id: Set(m.sender),
        recipient_id: Set(m.recipient),
        client_msg_id: Set(m.client_msg_id.clone()),
        text: Set(m.text.clone()),
        sent_at: Set(m.sent_at),
        delivered_at: Set(None),
    });
    let inserted = match chat_messages::Entity::insert_many(rows)
        .on_conflict_do_nothing_on([
            chat_messages::Column::SenderId,
            chat_messages::Column::ClientMsgId,
        ])
        .exec_with_returning_many(tx)
        .await?
    {
        TryInsertResult::Inserted(models) => models,
        TryInsertResult::Empty | TryInsertResult::Conflicted => Vec::new(),
    };
    let mut by_key: HashMap<(UserId, String), (StoredMessage, bool)> = inserted
        .into_iter()
        .map(|m| ((m.sender_id, m.client_msg_id.clone()), (m, true)))
        .collect();

    let retries: Vec<&NewMessage> = batch
        .iter()
        .copied()
        .filter(|m| !by_key.contains_key(&(m.sender, m.client_msg_id.clone())))
        .collect();
    if !retries.is_empty() {
        let mut any = Condition::any();
        for m in &retries {
            any = any.add(
                Condition::all()
                    .add(chat_messages::Column::SenderId.eq(m.sender))
                    .add(chat_messages::Column::ClientMsgId.eq(m.client_msg_id.as_str())),
            );
        }
        for existing in chat_messages::Entity::find().filter(any).all(tx).await? {
            by_key.insert(
                (existing.sender_id, existing.client_msg_id.clone()),
                (existing, false),
            );
        }
    }

    // A batch may hold the same key twice: the first gets the insert, the rest are retries.
    let mut seen = std::collections::HashSet::new();
    batch
        .iter()
        .map(|m| {
            let key = (m.sender, m.client_msg_id.clone());
            let (stored, inserted) = by_key.get(&key).cloned().ok_or(DbErr::RecordNotInserted)?;
            Ok((stored, inserted && seen.insert(key)))
        })
        .collect()
}

/// Marks the messages with these seqs delivered. Returns those this call changed (and so whose
/// senders are still to be told), leaving out ones delivered before or deleted. One
/// `UPDATE ... RETURNING`, so two writers could never both claim a message.
async fn mark_delivered(
    tx: &DatabaseTransaction,
    seqs: &[Seq],
) -> Result<Vec<StoredMessage>, DbErr> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    chat_messages::Entity::update_many()
        .col_expr(chat_messages::Column::DeliveredAt, Expr::value(Utc::now()))
        .filter(chat_messages::Column::Seq.is_in(seqs.iter().copied()))
        .filter(chat_messages::Column::DeliveredAt.is_null())
        .exec_with_returning(tx)
        .await
}
