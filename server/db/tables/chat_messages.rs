//! `chat_messages`: every 1:1 message, ordered by the global `seq`.

use sea_orm::entity::prelude::*;

use crate::db::ids::{MessageId, Seq, UserId};

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
    /// Conversation key: both user ids, lower first, joined by `':'`.
    pub conversation_key: String,
    /// Author of the message (FK to `users.id`).
    pub sender_id: UserId,
    /// Addressee of the message (FK to `users.id`).
    pub recipient_id: UserId,
    /// Client-chosen id used to deduplicate retries; unique per sender.
    pub client_msg_id: String,
    /// Message body.
    #[sea_orm(column_type = "Text")]
    pub text: String,
    /// When the server accepted the message.
    pub sent_at: DateTimeUtc,
    /// When the message was first delivered to the recipient; `None` until then.
    pub delivered_at: Option<DateTimeUtc>,
    /// The user who sent the message.
    #[sea_orm(
        belongs_to,
        relation_enum = "Sender",
        from = "sender_id",
        to = "id",
        on_delete = "Cascade"
    )]
    pub sender: BelongsTo<super::users::Entity>,
    /// The user the message is addressed to.
    #[sea_orm(
        belongs_to,
        relation_enum = "Recipient",
        from = "recipient_id",
        to = "id",
        on_delete = "Cascade"
    )]
    pub recipient: BelongsTo<super::users::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
