//! `users`: registered chat users and the hash of their bearer token.

use sea_orm::entity::prelude::*;

use crate::db::ids::UserId;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// Stable user id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: UserId,
    /// Name shown to other users.
    pub display_name: String,
    /// Lower-case hex SHA-256 of the user's bearer token (unique).
    #[sea_orm(unique)]
    pub token_hash: String,
    /// When the user was created.
    pub created_at: DateTimeUtc,
    /// When the user row was last modified.
    pub updated_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
