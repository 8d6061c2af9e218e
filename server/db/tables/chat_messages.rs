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
    /// The conversation it belongs to.
    #[sea_orm(belongs_to, from = "conversation_id", to = "id", on_delete = "Cascade")]
    pub conversation: BelongsTo<super::conversations::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
