//! Users and their token hashes.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, TryInsertResult};

use std::collections::HashSet;

use crate::db::{Database, ids::UserId, tables::users};

/// A user to claim.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// The id to claim.
    pub id: UserId,
    /// Shown to others.
    pub display_name: String,
    /// The SHA-256 of the user's token.
    pub token_hash: String,
}

impl Database {
    /// Claims ids for new users in one statement; returns the ids it inserted (the others were
    /// claimed already).
    pub async fn claim_users(&self, new: &[NewUser]) -> Result<HashSet<UserId>, DbErr> {
        let now = Utc::now();
        let rows = new.iter().map(|user| users::ActiveModel {
            id: Set(user.id.0),
            display_name: Set(user.display_name.clone()),
            token_hash: Set(user.token_hash.clone()),
            created_at: Set(now),
            updated_at: Set(now),
        });
        let inserted = users::Entity::insert_many(rows)
            .on_conflict_do_nothing()
            .exec_with_returning_keys(self.writer())
            .await?;
        Ok(match inserted {
            TryInsertResult::Inserted(ids) => ids.into_iter().map(UserId).collect(),
            TryInsertResult::Empty | TryInsertResult::Conflicted => HashSet::new(),
        })
    }

    /// The user whose token hashes to `token_hash`.
    pub async fn user_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<users::Model>, DbErr> {
        users::Entity::find()
            .filter(users::Column::TokenHash.eq(token_hash))
            .one(self.conn())
            .await
    }

    /// One user by id.
    pub async fn find_user(&self, id: UserId) -> Result<Option<users::Model>, DbErr> {
        users::Entity::find_by_id(id.0).one(self.conn()).await
    }

    /// Changes a user's display name.
    pub async fn rename_user(&self, id: UserId, display_name: &str) -> Result<(), DbErr> {
        let user = users::ActiveModel {
            id: Set(id.0),
            display_name: Set(display_name.to_owned()),
            updated_at: Set(Utc::now()),
            ..Default::default()
        };
        users::Entity::update(user)
            .exec(self.writer())
            .await
            .map(|_| ())
    }
}
