//! `users_online`: aggregated presence of a user across all nodes.

use sea_orm::entity::prelude::*;

use crate::db::ids::UserId;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users_online")]
pub struct Model {
    /// The user this presence row belongs to (also the FK to `users.id`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: UserId,
    /// Presence status: `"online"`, `"away"` or `"offline"`.
    pub status: String,
    /// Number of currently open sessions of the user.
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
