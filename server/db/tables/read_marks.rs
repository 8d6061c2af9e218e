//! `read_marks`: how far a reader has read in the conversation with a peer.

use sea_orm::entity::prelude::*;

use crate::db::ids::{Seq, UserId};

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "read_marks")]
pub struct Model {
    /// The user who read the messages (FK to `users.id`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub reader_id: UserId,
    /// The other participant of the conversation (FK to `users.id`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub peer_id: UserId,
    /// Highest `chat_messages.seq` the reader has read from the peer.
    pub read_up_to_seq: Seq,
    /// When the mark last moved.
    pub updated_at: DateTimeUtc,
    /// The reading user.
    #[sea_orm(
        belongs_to,
        relation_enum = "Reader",
        from = "reader_id",
        to = "id",
        on_delete = "Cascade"
    )]
    pub reader: BelongsTo<super::users::Entity>,
    /// The conversation peer.
    #[sea_orm(
        belongs_to,
        relation_enum = "Peer",
        from = "peer_id",
        to = "id",
        on_delete = "Cascade"
    )]
    pub peer: BelongsTo<super::users::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
