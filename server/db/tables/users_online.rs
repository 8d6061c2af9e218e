//! `users_online`: each node's view of a user's presence (one row per user and node).

use sea_orm::entity::prelude::*;

use crate::db::ids::UserId;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users_online")]
pub struct Model {
    /// The user this presence row belongs to (also the FK to `users.id`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: UserId,
    /// The node whose sessions this row sums up; `''` keeps the latest `last_seen` of nodes that
    /// are gone.
    #[sea_orm(primary_key, auto_increment = false)]
    pub node_id: String,
    /// Presence status: `"online"`, `"away"` or `"offline"`.
    pub status: String,
    /// Number of the user's sessions open on this node.
    pub sessions: i32,
    /// Last time the user was seen active.
    pub last_seen: DateTimeUtc,
    /// When this presence row was last modified.
    pub updated_at: DateTimeUtc,
    /// The user this presence row belongs to.
    #[sea_orm(belongs_to, from = "user_id", to = "id", on_delete = "Cascade")]
    pub user: BelongsTo<super::users::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
