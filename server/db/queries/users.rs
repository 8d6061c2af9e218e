//! Users and their token hashes.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, TryInsertResult};

use crate::db::{Database, ids::UserId, tables::users};

impl Database {
    /// Claims `id` for a new user. Returns false when the id was already claimed.
    pub async fn claim_user(
        &self,
        id: UserId,
        display_name: &str,
        token_hash: &str,
    ) -> Result<bool, DbErr> {
        let now = Utc::now();
        let user = users::ActiveModel {
            id: Set(id.0),
            display_name: Set(display_name.to_owned()),
            token_hash: Set(token_hash.to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let result = users::Entity::insert(user)
            .on_conflict_do_nothing()
            .exec_without_returning(self.conn())
            .await?;
        Ok(matches!(result, TryInsertResult::Inserted(1)))
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
            .exec(self.conn())
            .await
            .map(|_| ())
    }
}
