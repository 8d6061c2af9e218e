//! Chat messages: the batched insert behind group commit, offline delivery, history, retention.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement, Value,
    sea_query::Expr,
};
use uuid::Uuid;

use super::{changes::QUOTE_CHARS, statement};
use crate::db::{
    Database, MESSAGE_SEQ_LOCK, RETENTION_LOCK,
    ids::{ConversationId, MessageId, Seq, UserId, conversation_pair},
    tables::{chat_messages, conversation_members, conversations},
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
    /// The message of the same conversation it answers, known to be there.
    pub reply_to: Option<MessageId>,
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
            reply_to: None,
            sent_at: Utc::now(),
        }
    }

    /// The same message as a reply to `answered`.
    pub fn replying_to(self, answered: Option<MessageId>) -> Self {
        Self {
            reply_to: answered,
            ..self
        }
    }
}

/// A recipient's client has the messages from `sender` up to `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Delivery {
    /// Who received them.
    pub recipient: UserId,
    /// Whose messages.
    pub sender: UserId,
    /// The newest of them.
    pub seq: Seq,
}

/// What one transaction of the message writer did.
#[derive(Debug)]
pub struct CommittedRound {
    /// In the batch's order, each stored message and whether this round inserted it (false: a
    /// retry of a stored one).
    pub messages: Vec<(StoredMessage, bool)>,
    /// For each delivered mark this round moved, the newest message it now covers (leaving out
    /// marks that were already there, and messages deleted since).
    pub delivered: Vec<StoredMessage>,
}

impl Database {
    /// Stores a batch of messages (group commit) and moves the delivered marks of `deliveries`
    /// forward, in one transaction: one commit (and, on SQLite, one fsync and one write of each
    /// touched page) for both.
    ///
    /// PostgreSQL gives a seq at insert, not at commit, so two nodes' writers could commit seq 11
    /// before seq 10; a reader in between would see 11 but not 10, and a read or delivered mark
    /// at 11 would cover 10 before anyone saw it. Inserting under [`MESSAGE_SEQ_LOCK`], held to
    /// the commit, makes what is visible always every seq up to the highest visible one. (SQLite
    /// has one writer, and a node one message writer, so there it always was.)
    pub async fn commit_messages(
        &self,
        batch: &[&NewMessage],
        deliveries: &[Delivery],
    ) -> Result<CommittedRound, DbErr> {
        self.transaction(|tx| async move {
            if !batch.is_empty() && tx.get_database_backend() == DbBackend::Postgres {
                tx.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MESSAGE_SEQ_LOCK})"))
                    .await?;
            }
            let mut messages = insert_messages(&tx, batch).await?;
            quote_answered(&tx, batch, &mut messages).await?;
            Ok(CommittedRound {
                messages,
                delivered: advance_delivered_marks(&tx, deliveries).await?,
            })
        })
        .await
    }

    /// Messages to `user` that no session of theirs has received, oldest first.
    #[cfg(test)]
    pub async fn undelivered_for(&self, user: UserId) -> Result<Vec<StoredMessage>, DbErr> {
        self.undelivered_page(user, Seq::ZERO, Seq(i64::MAX), u64::MAX >> 1)
            .await
    }

    /// One page of a session's backlog: up to `limit` messages to `user` that no session of
    /// theirs has received (above their delivered mark), with seq in `after + 1 ..= up_to`,
    /// oldest first. One index range per conversation of the user.
    pub async fn undelivered_page(
        &self,
        user: UserId,
        after: Seq,
        up_to: Seq,
        limit: u64,
    ) -> Result<Vec<StoredMessage>, DbErr> {
        let sql = "SELECT m.* FROM conversation_members k
            JOIN chat_messages m ON m.conversation_id = k.conversation_id
            WHERE k.user_id = $1 AND m.sender_id = k.peer_id
              AND m.seq > k.delivered_up_to_seq AND m.seq > $2 AND m.seq <= $3
            ORDER BY m.seq LIMIT $4";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let values = [user.into(), after.into(), up_to.into(), limit.into()];
        chat_messages::Entity::find()
            .from_raw_sql(statement(self.backend(), sql, values))
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
        let Some(conversation) = self.conversation_id(me, peer).await? else {
            return Ok((Vec::new(), false));
        };
        let mut query = chat_messages::Entity::find()
            .filter(chat_messages::Column::ConversationId.eq(conversation));
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

    /// Deletes messages sent before `cutoff`; returns how many, or None when another node is
    /// sweeping (on PostgreSQL the sweep holds [`RETENTION_LOCK`] and skips when it is taken).
    pub async fn delete_messages_before(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<Option<u64>, DbErr> {
        self.transaction(|tx| async move {
            if tx.get_database_backend() == DbBackend::Postgres {
                let sql = format!("SELECT pg_try_advisory_xact_lock({RETENTION_LOCK})");
                let row = tx.query_one_raw(Statement::from_string(DbBackend::Postgres, sql));
                let taken = row.await?.map(|row| row.try_get_by_index::<bool>(0));
                if !taken.transpose()?.unwrap_or(false) {
                    return Ok(None);
                }
            }
            let result = chat_messages::Entity::delete_many()
                .filter(chat_messages::Column::SentAt.lt(cutoff))
                .exec(&*tx)
                .await?;
            Ok(Some(result.rows_affected))
        })
        .await
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
    let pairs: HashSet<(UserId, UserId)> = batch
        .iter()
        .map(|m| conversation_pair(m.sender, m.recipient))
        .collect();
    let conversations = conversation_ids(tx, pairs).await?;
    let inserted = chat_messages::Entity::find()
        .from_raw_sql(insert_statement(
            tx.get_database_backend(),
            batch,
            &conversations,
        ))
        .all(tx)
        .await?;
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

/// Copies into each newly inserted reply its quote of the message it answers, as that message
/// stands in this transaction (edits and deletions take the same lock, so none slips between).
async fn quote_answered(
    tx: &DatabaseTransaction,
    batch: &[&NewMessage],
    messages: &mut [(StoredMessage, bool)],
) -> Result<(), DbErr> {
    let sql = format!(
        "UPDATE chat_messages SET reply_to_message_id = $1,
             reply_to_sender_id = (SELECT sender_id FROM chat_messages WHERE message_id = $1),
             reply_to_text = (SELECT substr(text, 1, {QUOTE_CHARS}) FROM chat_messages
                              WHERE message_id = $1 AND deleted_at IS NULL)
         WHERE seq = $2 RETURNING *"
    );
    for (new, (stored, inserted)) in batch.iter().zip(messages.iter_mut()) {
        let Some(answered) = new.reply_to.filter(|_| *inserted) else {
            continue;
        };
        let values = [answered.into(), stored.seq.into()];
        if let Some(quoted) = chat_messages::Entity::find()
            .from_raw_sql(statement(tx.get_database_backend(), &sql, values))
            .one(tx)
            .await?
        {
            *stored = quoted;
        }
    }
    Ok(())
}

/// One statement that inserts the batch, skipping keys already stored, and returns the rows it
/// inserted. Written by hand rather than through SeaORM's builder, which costs CPU per row: on
/// PostgreSQL one fixed text of arrays, prepared once for every round, whatever its size; on
/// SQLite, which has no arrays, a row of plain placeholders per message.
fn insert_statement(
    backend: DbBackend,
    batch: &[&NewMessage],
    conversations: &HashMap<(UserId, UserId), ConversationId>,
) -> Statement {
    let conversation = |m: &NewMessage| conversations[&conversation_pair(m.sender, m.recipient)];
    const COLUMNS: &str = "INSERT INTO chat_messages
        (message_id, conversation_id, sender_id, recipient_id, client_msg_id, text, sent_at)";
    const RETURNING: &str = "ON CONFLICT (client_msg_id, sender_id) DO NOTHING RETURNING *";
    if backend == DbBackend::Postgres {
        let sql = format!(
            "{COLUMNS} SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::uuid[], $4::uuid[],
                $5::text[], $6::text[], $7::timestamptz[]) {RETURNING}"
        );
        let values = [
            array(batch, |m| m.message_id.0),
            array(batch, |m| conversation(m).0),
            array(batch, |m| m.sender.0),
            array(batch, |m| m.recipient.0),
            array(batch, |m| m.client_msg_id.clone()),
            array(batch, |m| m.text.clone()),
            array(batch, |m| m.sent_at),
        ];
        return statement(backend, &sql, values);
    }
    let rows = vec!["(?, ?, ?, ?, ?, ?, ?)"; batch.len()].join(", ");
    let values = batch.iter().flat_map(|m| -> [Value; 7] {
        [
            m.message_id.into(),
            conversation(m).into(),
            m.sender.into(),
            m.recipient.into(),
            m.client_msg_id.clone().into(),
            m.text.clone().into(),
            m.sent_at.into(),
        ]
    });
    Statement::from_sql_and_values(
        backend,
        format!("{COLUMNS} VALUES {rows} {RETURNING}"),
        values,
    )
}

/// One column of the batch as a PostgreSQL array parameter.
fn array<T>(batch: &[&NewMessage], field: impl Fn(&NewMessage) -> T) -> Value
where
    Vec<T>: Into<Value>,
{
    batch.iter().map(|m| field(m)).collect::<Vec<_>>().into()
}

/// The conversation of each pair, made (with both members) for pairs that had none.
async fn conversation_ids(
    tx: &DatabaseTransaction,
    pairs: HashSet<(UserId, UserId)>,
) -> Result<HashMap<(UserId, UserId), ConversationId>, DbErr> {
    use conversations::Column as C;
    let mut ids = HashMap::with_capacity(pairs.len());
    let mut any = Condition::any();
    for (low, high) in &pairs {
        any = any.add(
            Condition::all()
                .add(C::UserLow.eq(*low))
                .add(C::UserHigh.eq(*high)),
        );
    }
    for found in conversations::Entity::find().filter(any).all(tx).await? {
        ids.insert((found.user_low, found.user_high), found.id);
    }
    let new: Vec<(UserId, UserId)> = pairs.into_iter().filter(|p| !ids.contains_key(p)).collect();
    if new.is_empty() {
        return Ok(ids);
    }
    // Only the writer makes conversations, so none of these can exist by now.
    let made = conversations::Entity::insert_many(new.iter().map(|(low, high)| {
        conversations::ActiveModel {
            id: NotSet,
            user_low: Set(*low),
            user_high: Set(*high),
        }
    }))
    .exec_with_returning(tx)
    .await?;
    let now = Utc::now();
    let members = made.iter().flat_map(|c| {
        [(c.user_low, c.user_high), (c.user_high, c.user_low)].map(|(user, peer)| {
            conversation_members::ActiveModel {
                user_id: Set(user),
                peer_id: Set(peer),
                conversation_id: Set(c.id),
                delivered_up_to_seq: Set(Seq::ZERO),
                read_up_to_seq: Set(Seq::ZERO),
                updated_at: Set(now),
            }
        })
    });
    conversation_members::Entity::insert_many(members)
        .exec_without_returning(tx)
        .await?;
    ids.extend(made.into_iter().map(|c| ((c.user_low, c.user_high), c.id)));
    Ok(ids)
}

/// Moves each recipient's delivered mark on each sender forward to the newest seq delivered.
/// Returns, for each mark that moved, the newest message it covers: its sender is still to be
/// told. A mark only moves forward, so a delivery recorded twice is reported once.
async fn advance_delivered_marks(
    tx: &DatabaseTransaction,
    deliveries: &[Delivery],
) -> Result<Vec<StoredMessage>, DbErr> {
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    let mut newest: HashMap<(UserId, UserId), Seq> = HashMap::new();
    for d in deliveries {
        let seq = newest.entry((d.recipient, d.sender)).or_default();
        *seq = (*seq).max(d.seq);
    }
    let backend = tx.get_database_backend();
    let moved = if backend == DbBackend::Postgres {
        // One statement for the round: a round trip each would cost more than the updates.
        let sql = "UPDATE conversation_members k SET delivered_up_to_seq = d.seq
            FROM UNNEST($1::uuid[], $2::uuid[], $3::int8[]) AS d(user_id, peer_id, seq)
            WHERE k.user_id = d.user_id AND k.peer_id = d.peer_id AND k.delivered_up_to_seq < d.seq
            RETURNING d.seq";
        let (mut recipients, mut senders, mut seqs) = (Vec::new(), Vec::new(), Vec::new());
        for ((recipient, sender), seq) in newest {
            recipients.push(recipient.0);
            senders.push(sender.0);
            seqs.push(seq.0);
        }
        let values = [recipients.into(), senders.into(), seqs.into()];
        tx.query_all_raw(statement(backend, sql, values))
            .await?
            .iter()
            .map(|row| row.try_get::<Seq>("", "seq"))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        // SQLite has no arrays: the marks as a VALUES list. Each statement is a hop to the
        // connection's thread, which costs more than the statement.
        let rows: Vec<String> = (0..newest.len())
            .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            .collect();
        let sql = format!(
            "UPDATE conversation_members SET delivered_up_to_seq = d.column3
            FROM (VALUES {}) AS d
            WHERE user_id = d.column1 AND peer_id = d.column2 AND delivered_up_to_seq < d.column3
            RETURNING delivered_up_to_seq",
            rows.join(", ")
        );
        let values = newest
            .into_iter()
            .flat_map(|((recipient, sender), seq)| [recipient.into(), sender.into(), seq.into()]);
        tx.query_all_raw(statement(backend, &sql, values))
            .await?
            .iter()
            .map(|row| row.try_get::<Seq>("", "delivered_up_to_seq"))
            .collect::<Result<Vec<_>, _>>()?
    };
    if moved.is_empty() {
        return Ok(Vec::new());
    }
    chat_messages::Entity::find()
        .filter(chat_messages::Column::Seq.is_in(moved))
        .all(tx)
        .await
}
