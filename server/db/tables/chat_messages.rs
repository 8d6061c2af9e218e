//! `chat_messages`: every 1:1 message, ordered by the global `seq`.

use sea_orm::entity::prelude::*;

use crate::db::ids::{ConversationId, MessageId, Seq, UserId};

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "chat_messages")]
pub struct Model {
    /// Auto-assigned, strictly increasing message sequence number.
    #[sea_orm(primary_key)]
    pub seq: Seq,
    /// Server-assigned public message id (unique).
    #[sea_orm(unique)]
    pub message_id: MessageId,
    /// The conversation (FK to `conversations.id`).
    pub conversation_id: ConversationId,
    /// Author of the message (deleted with them through the conversation).
    pub sender_id: UserId,
    /// Addressee of the message (deleted with them through the conversation).
    pub recipient_id: UserId,
    /// Client-chosen id used to deduplicate retries; unique per sender (indexed key first).
    pub client_msg_id: String,
    /// Message body.
    #[sea_orm(column_type = "Text")]
    pub text: String,
    /// When the server accepted the message.
    pub sent_at: DateTimeUtc,
    /// When the sender last edited the text.
    pub edited_at: Option<DateTimeUtc>,
    /// When the sender deleted it for everyone (its text, reactions and quote erased).
    pub deleted_at: Option<DateTimeUtc>,
    /// The message this one answers.
    pub reply_to_message_id: Option<MessageId>,
    /// The answered message's author.
    pub reply_to_sender_id: Option<UserId>,
    /// The answered message's first characters, kept current by its edits; None once it is
    /// deleted (while `reply_to_message_id` stays).
    #[sea_orm(column_type = "Text", nullable)]
    pub reply_to_text: Option<String>,
    /// Reactions as JSON, `[{"emoji": "👍", "user_ids": ["…"]}]` (see `queries::changes`).
    #[sea_orm(column_type = "Text")]
    pub reactions: String,
    /// The number of its latest change (0: never changed), from the `message_version` counter.
    pub version: i64,
    /// The conversation it belongs to.
    #[sea_orm(belongs_to, from = "conversation_id", to = "id", on_delete = "Cascade")]
    pub conversation: BelongsTo<super::conversations::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
