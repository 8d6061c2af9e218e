//! `conversations`: one row per pair of users who exchanged messages, with a compact id their
//! messages carry.

use sea_orm::entity::prelude::*;

use crate::db::ids::{ConversationId, UserId};

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "conversations")]
pub struct Model {
    /// Auto-assigned.
    #[sea_orm(primary_key)]
    pub id: ConversationId,
    /// The lower of the two user ids (FK to `users.id`).
    pub user_low: UserId,
    /// The higher of the two user ids (FK to `users.id`).
    pub user_high: UserId,
}

impl ActiveModelBehavior for ActiveModel {}
