//! Messages that change after they are sent: edits, deletion for everyone, reactions, the quotes
//! replies keep of them, and the changes a reconnecting client missed.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait, QueryFilter,
    Value,
};
use serde::{Deserialize, Serialize};

use super::statement;
use crate::db::{
    Database, MESSAGE_SEQ_LOCK, StoredMessage,
    ids::{MessageId, UserId},
    tables::chat_messages,
};

/// How many characters of the answered message a reply quotes.
pub const QUOTE_CHARS: usize = 200;

/// The users who reacted to a message with one emoji, as `chat_messages.reactions` stores them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredReaction {
    /// The emoji.
    pub emoji: String,
    /// Who reacted with it, oldest first.
    pub user_ids: Vec<UserId>,
}

/// The reactions of a stored message, in the order their emoji were first added.
pub fn reactions_of(message: &StoredMessage) -> Vec<StoredReaction> {
    // Most messages have none: no parsing on the path every message takes.
    if message.reactions == "[]" {
        return Vec::new();
    }
    serde_json::from_str(&message.reactions).unwrap_or_else(|err| {
        tracing::warn!(seq = %message.seq, error = %err, "unreadable reactions; showing none");
        Vec::new()
    })
}

/// What to change in a message.
#[derive(Debug, Clone)]
pub enum Change {
    /// New text (validated) from its author.
    Edit(String),
    /// Deletion for everyone, by its author.
    Delete,
    /// The caller's reaction with an emoji (validated), added or removed.
    React {
        /// The emoji.
        emoji: String,
        /// True removes it.
        remove: bool,
    },
}

/// The limits a change is checked against.
#[derive(Debug, Clone, Copy)]
pub struct ChangeRules {
    /// How long after sending its author may edit a message.
    pub edit_window: Duration,
    /// The most different emoji a message's reactions may hold.
    pub max_reaction_emoji: usize,
}

/// Why a change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such message in the caller's conversations.
    NotFound,
    /// Only its author edits or deletes a message.
    NotAuthor,
    /// It was deleted; it changes no more.
    Deleted,
    /// Its edit window is over.
    TooOldToEdit,
    /// It holds the most different emoji allowed.
    TooManyEmoji,
}

/// What a change did.
#[derive(Debug, Clone)]
pub enum ChangeOutcome {
    /// It changed: the message as it now stands, and the replies whose quote of it changed.
    Changed {
        /// The changed message.
        message: StoredMessage,
        /// Replies to it whose quote changed with it.
        replies: Vec<StoredMessage>,
    },
    /// It already stood so (a retry, or a reaction already there or already gone).
    Unchanged(StoredMessage),
    /// Refused; nothing changed.
    Refused(Refusal),
}

impl Database {
    /// Applies `change` by `me` to the message `message_id` of one of `me`'s conversations, at
    /// `now`, in one transaction that first takes the version counter's row (and on PostgreSQL
    /// the lock message inserts hold): changes, and the quotes replies copy at insert, happen in
    /// one order, and a version is visible only after every lower one.
    pub async fn change_message(
        &self,
        me: UserId,
        message_id: MessageId,
        change: &Change,
        rules: ChangeRules,
        now: DateTime<Utc>,
    ) -> Result<ChangeOutcome, DbErr> {
        self.transaction(|tx| async move {
            let backend = tx.get_database_backend();
            if backend == DbBackend::Postgres {
                tx.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MESSAGE_SEQ_LOCK})"))
                    .await?;
            }
            let found = chat_messages::Entity::find()
                .filter(chat_messages::Column::MessageId.eq(message_id))
                .one(&*tx)
                .await?;
            let Some(message) = found.filter(|m| m.sender_id == me || m.recipient_id == me) else {
                return Ok(ChangeOutcome::Refused(Refusal::NotFound));
            };
            let update = match plan(&message, me, change, rules, now) {
                Plan::Refuse(refusal) => return Ok(ChangeOutcome::Refused(refusal)),
                Plan::Nothing => return Ok(ChangeOutcome::Unchanged(message)),
                Plan::Update(update) => update,
            };
            let version = next_version(&tx).await?;
            let message = apply(&tx, &message, &update, version).await?;
            let replies = match &update {
                Update::Edit { text, .. } => requote(&tx, message_id, Some(quote(text)), version),
                Update::Delete { .. } => requote(&tx, message_id, None, version),
                Update::Reactions(_) => {
                    return Ok(ChangeOutcome::Changed {
                        message,
                        replies: vec![],
                    });
                }
            }
            .await?;
            Ok(ChangeOutcome::Changed { message, replies })
        })
        .await
    }

    /// Messages of `user`'s conversations changed after `version`, in version order, at most
    /// `limit`.
    pub async fn changes_after(
        &self,
        user: UserId,
        version: i64,
        limit: u64,
    ) -> Result<Vec<StoredMessage>, DbErr> {
        let sql = "SELECT m.* FROM conversation_members k
            JOIN chat_messages m ON m.conversation_id = k.conversation_id
            WHERE k.user_id = $1 AND m.version > $2
            ORDER BY m.version, m.seq LIMIT $3";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let values = [user.into(), version.into(), limit.into()];
        chat_messages::Entity::find()
            .from_raw_sql(statement(self.backend(), sql, values))
            .all(self.conn())
            .await
    }

    /// The highest version given to a change so far.
    pub async fn latest_version(&self) -> Result<i64, DbErr> {
        let sql = "SELECT value FROM counters WHERE name = 'message_version'";
        let row = self
            .conn()
            .query_one_raw(statement(self.backend(), sql, []))
            .await?;
        row.map(|row| row.try_get_by_index::<i64>(0))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// The message `message_id` if it belongs to the conversation of `a` and `b`.
    pub async fn message_between(
        &self,
        a: UserId,
        b: UserId,
        message_id: MessageId,
    ) -> Result<Option<StoredMessage>, DbErr> {
        let found = chat_messages::Entity::find()
            .filter(chat_messages::Column::MessageId.eq(message_id))
            .one(self.conn())
            .await?;
        Ok(found.filter(|m| {
            (m.sender_id, m.recipient_id) == (a, b) || (m.sender_id, m.recipient_id) == (b, a)
        }))
    }
}

/// The first characters of `text` that a reply quotes.
pub fn quote(text: &str) -> String {
    text.chars().take(QUOTE_CHARS).collect()
}

/// What a change asks of the database.
enum Plan {
    Refuse(Refusal),
    Nothing,
    Update(Update),
}

/// The new state of the changed columns.
enum Update {
    Edit { text: String, at: DateTime<Utc> },
    Delete { at: DateTime<Utc> },
    Reactions(String),
}

/// Checks `change` against the message as it stands and works out its new state.
fn plan(
    message: &StoredMessage,
    me: UserId,
    change: &Change,
    rules: ChangeRules,
    now: DateTime<Utc>,
) -> Plan {
    let deleted = message.deleted_at.is_some();
    match change {
        Change::Edit(_) | Change::Delete if message.sender_id != me => {
            Plan::Refuse(Refusal::NotAuthor)
        }
        Change::Delete if deleted => Plan::Nothing,
        Change::Delete => Plan::Update(Update::Delete { at: now }),
        Change::Edit(_) if deleted => Plan::Refuse(Refusal::Deleted),
        Change::Edit(text) if *text == message.text => Plan::Nothing,
        Change::Edit(_) if now - message.sent_at > rules.edit_window => {
            Plan::Refuse(Refusal::TooOldToEdit)
        }
        Change::Edit(text) => Plan::Update(Update::Edit {
            text: text.clone(),
            at: now,
        }),
        Change::React { .. } if deleted => Plan::Refuse(Refusal::Deleted),
        Change::React { emoji, remove } => {
            let mut reactions = reactions_of(message);
            let entry = reactions.iter_mut().position(|r| r.emoji == *emoji);
            match (entry, remove) {
                (Some(i), false) if reactions[i].user_ids.contains(&me) => return Plan::Nothing,
                (Some(i), false) => reactions[i].user_ids.push(me),
                (None, false) if reactions.len() >= rules.max_reaction_emoji => {
                    return Plan::Refuse(Refusal::TooManyEmoji);
                }
                (None, false) => reactions.push(StoredReaction {
                    emoji: emoji.clone(),
                    user_ids: vec![me],
                }),
                (Some(i), true) if reactions[i].user_ids.contains(&me) => {
                    reactions[i].user_ids.retain(|user| *user != me);
                    if reactions[i].user_ids.is_empty() {
                        reactions.remove(i);
                    }
                }
                (_, true) => return Plan::Nothing,
            }
            match serde_json::to_string(&reactions) {
                Ok(json) => Plan::Update(Update::Reactions(json)),
                // Strings and UUIDs always serialize; this only keeps the message as it was.
                Err(_) => Plan::Nothing,
            }
        }
    }
}

/// Takes the next version from the counter (its row stays locked to the commit).
async fn next_version(tx: &DatabaseTransaction) -> Result<i64, DbErr> {
    let sql = "UPDATE counters SET value = value + 1 WHERE name = 'message_version'
        RETURNING value";
    let row = tx
        .query_one_raw(statement(tx.get_database_backend(), sql, []))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("counter message_version".into()))?;
    row.try_get_by_index::<i64>(0)
}

/// Writes `update` to `message` with `version`; returns the message as it now stands.
async fn apply(
    tx: &DatabaseTransaction,
    message: &StoredMessage,
    update: &Update,
    version: i64,
) -> Result<StoredMessage, DbErr> {
    let (sql, values): (&str, Vec<Value>) = match update {
        Update::Edit { text, at } => (
            "UPDATE chat_messages SET text = $1, edited_at = $2, version = $3 WHERE seq = $4
             RETURNING *",
            vec![text.clone().into(), (*at).into()],
        ),
        Update::Delete { at } => (
            "UPDATE chat_messages SET text = '', reactions = '[]', reply_to_message_id = NULL,
                 reply_to_sender_id = NULL, reply_to_text = NULL, deleted_at = $1,
                 version = $2 WHERE seq = $3 RETURNING *",
            vec![(*at).into()],
        ),
        Update::Reactions(json) => (
            "UPDATE chat_messages SET reactions = $1, version = $2 WHERE seq = $3 RETURNING *",
            vec![json.clone().into()],
        ),
    };
    let values = values
        .into_iter()
        .chain([version.into(), message.seq.into()]);
    chat_messages::Entity::find()
        .from_raw_sql(statement(tx.get_database_backend(), sql, values))
        .one(tx)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("message {}", message.seq)))
}

/// Sets the quote of `answered` in every reply to it (None: it was deleted); returns the replies.
async fn requote(
    tx: &DatabaseTransaction,
    answered: MessageId,
    quote: Option<String>,
    version: i64,
) -> Result<Vec<StoredMessage>, DbErr> {
    let sql = "UPDATE chat_messages SET reply_to_text = $1, version = $2
        WHERE reply_to_message_id = $3 RETURNING *";
    let values = [quote.into(), version.into(), answered.into()];
    chat_messages::Entity::find()
        .from_raw_sql(statement(tx.get_database_backend(), sql, values))
        .all(tx)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ChangeRules {
        ChangeRules {
            edit_window: Duration::hours(48),
            max_reaction_emoji: 2,
        }
    }

    fn message(sender: UserId, recipient: UserId) -> StoredMessage {
        StoredMessage {
            seq: crate::db::ids::Seq(1),
            message_id: MessageId::new_random(),
            conversation_id: crate::db::ids::ConversationId(1),
            sender_id: sender,
            recipient_id: recipient,
            client_msg_id: "k".into(),
            text: "hello".into(),
            sent_at: Utc::now(),
            edited_at: None,
            deleted_at: None,
            reply_to_message_id: None,
            reply_to_sender_id: None,
            reply_to_text: None,
            reactions: "[]".into(),
            version: 0,
        }
    }

    fn react(emoji: &str, remove: bool) -> Change {
        Change::React {
            emoji: emoji.into(),
            remove,
        }
    }

    #[test]
    fn only_the_author_edits_or_deletes() {
        let (alice, bob) = (UserId::new_random(), UserId::new_random());
        let m = message(alice, bob);
        let now = Utc::now();
        for change in [Change::Edit("new".into()), Change::Delete] {
            assert!(matches!(
                plan(&m, bob, &change, rules(), now),
                Plan::Refuse(Refusal::NotAuthor)
            ));
            assert!(matches!(
                plan(&m, alice, &change, rules(), now),
                Plan::Update(_)
            ));
        }
    }

    #[test]
    fn a_deleted_message_changes_no_more() {
        let (alice, bob) = (UserId::new_random(), UserId::new_random());
        let mut m = message(alice, bob);
        m.deleted_at = Some(Utc::now());
        let now = Utc::now();
        let edit = plan(&m, alice, &Change::Edit("new".into()), rules(), now);
        assert!(matches!(edit, Plan::Refuse(Refusal::Deleted)));
        let reaction = plan(&m, bob, &react("👍", false), rules(), now);
        assert!(matches!(reaction, Plan::Refuse(Refusal::Deleted)));
        assert!(matches!(
            plan(&m, alice, &Change::Delete, rules(), now),
            Plan::Nothing
        ));
    }

    #[test]
    fn edits_end_with_the_window_and_the_same_text_is_no_change() {
        let (alice, bob) = (UserId::new_random(), UserId::new_random());
        let m = message(alice, bob);
        let late = m.sent_at + Duration::hours(49);
        let edit = plan(&m, alice, &Change::Edit("new".into()), rules(), late);
        assert!(matches!(edit, Plan::Refuse(Refusal::TooOldToEdit)));
        let same = plan(
            &m,
            alice,
            &Change::Edit("hello".into()),
            rules(),
            Utc::now(),
        );
        assert!(matches!(same, Plan::Nothing));
    }

    #[test]
    fn reactions_are_one_per_user_per_emoji_within_the_emoji_cap() {
        let (alice, bob) = (UserId::new_random(), UserId::new_random());
        let mut m = message(alice, bob);
        let now = Utc::now();
        let react_as = |m: &mut StoredMessage, user, change: Change| match plan(
            m,
            user,
            &change,
            rules(),
            now,
        ) {
            Plan::Update(Update::Reactions(json)) => {
                m.reactions = json;
                true
            }
            Plan::Nothing => false,
            _ => panic!("refused"),
        };
        assert!(react_as(&mut m, bob, react("👍", false)));
        assert!(!react_as(&mut m, bob, react("👍", false)), "twice is once");
        assert!(react_as(&mut m, alice, react("👍", false)));
        assert!(react_as(&mut m, alice, react("❤️", false)));
        assert_eq!(
            reactions_of(&m),
            [
                StoredReaction {
                    emoji: "👍".into(),
                    user_ids: vec![bob, alice]
                },
                StoredReaction {
                    emoji: "❤️".into(),
                    user_ids: vec![alice]
                },
            ]
        );
        let third = plan(&m, bob, &react("😂", false), rules(), now);
        assert!(matches!(third, Plan::Refuse(Refusal::TooManyEmoji)));
        assert!(react_as(&mut m, alice, react("❤️", true)));
        assert!(
            !react_as(&mut m, alice, react("❤️", true)),
            "removing twice is once"
        );
        assert_eq!(reactions_of(&m).len(), 1, "an emoji nobody uses goes");
    }
}
