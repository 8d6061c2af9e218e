//! `conversation_members`: each participant's place in a conversation: how far their clients
//! have received the peer's messages, and how far they have read them. Marks only move forward.

use sea_orm::entity::prelude::*;

use crate::db::ids::{ConversationId, Seq, UserId};

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "conversation_members")]
pub struct Model {
    /// The participant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: UserId,
    /// The other participant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub peer_id: UserId,
    /// The conversation (FK to `conversations.id`).
    pub conversation_id: ConversationId,
    /// Every message from the peer up to this seq has reached a client of the user (DELIVERED).
    pub delivered_up_to_seq: Seq,
    /// The user has read every message from the peer up to this seq (READ).
    pub read_up_to_seq: Seq,
    /// When the read mark last moved.
    pub updated_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
