//! `sessions`: one row per client stream connected to a server node.

use sea_orm::entity::prelude::*;

use crate::db::ids::{SessionId, UserId};

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    /// Session id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: SessionId,
    /// Owner of the session (FK to `users.id`).
    pub user_id: UserId,
    /// Id of the server node holding the connection.
    pub node_id: String,
    /// Stream kind: `"chat"` (Chat or Subscribe) or `"presence"` (Presence or WatchPresence).
    pub kind: String,
    /// Whether the client reported itself as away.
    pub away: bool,
    /// When the session was opened.
    pub connected_at: DateTimeUtc,
    /// Last activity seen on the session.
    pub last_active_at: DateTimeUtc,
    /// When the session ended; `None` while it is still open.
    pub ended_at: Option<DateTimeUtc>,
    /// The user owning the session.
    #[sea_orm(belongs_to, from = "user_id", to = "id", on_delete = "Cascade")]
    pub user: BelongsTo<super::users::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
