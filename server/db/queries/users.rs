//! Users and their token hashes, and finding users who were claimed but never used.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TryInsertResult,
    sea_query::{Expr, ExprTrait, IntoCondition, IntoTableRef, Query},
};

use std::collections::HashSet;

use crate::db::{
    Database, StoredStatus,
    ids::UserId,
    tables::{chat_messages, sessions, users, users_online},
};

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
            id: Set(user.id),
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
            TryInsertResult::Inserted(ids) => ids.into_iter().collect(),
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

    /// The users with these ids that exist.
    pub async fn users_by_ids(&self, ids: &[UserId]) -> Result<Vec<users::Model>, DbErr> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        users::Entity::find()
            .filter(users::Column::Id.is_in(ids.iter().copied()))
            .all(self.conn())
            .await
    }

    /// One user by id.
    pub async fn find_user(&self, id: UserId) -> Result<Option<users::Model>, DbErr> {
        users::Entity::find_by_id(id).one(self.conn()).await
    }

    /// Up to `limit` users unused since `cutoff` (see `unused_since`), in id order after
    /// `after`, with their token hashes. Read in pages so one sweep passes over the table once.
    pub async fn unused_users(
        &self,
        cutoff: DateTime<Utc>,
        after: Option<UserId>,
        limit: u64,
    ) -> Result<Vec<(UserId, String)>, DbErr> {
        let mut query = users::Entity::find()
            .select_only()
            .columns([users::Column::Id, users::Column::TokenHash])
            .filter(unused_since(cutoff));
        if let Some(after) = after {
            query = query.filter(users::Column::Id.gt(after));
        }
        query
            .order_by_asc(users::Column::Id)
            .limit(limit)
            .into_tuple()
            .all(self.conn())
            .await
    }

    /// Deletes those of `ids` that are still unused since `cutoff`, checked again in the same
    /// statement for sessions and messages that came since they were found; returns how many.
    /// Their presence rows and read marks go with them (foreign keys cascade).
    pub async fn delete_unused_users(
        &self,
        ids: &[UserId],
        cutoff: DateTime<Utc>,
    ) -> Result<u64, DbErr> {
        if ids.is_empty() {
            return Ok(0);
        }
        let deleted = users::Entity::delete_many()
            .filter(users::Column::Id.is_in(ids.iter().map(|id| id.0)))
            .filter(unused_since(cutoff))
            .exec(self.writer())
            .await?;
        Ok(deleted.rows_affected)
    }

    /// Changes a user's display name.
    pub async fn rename_user(&self, id: UserId, display_name: &str) -> Result<(), DbErr> {
        let user = users::ActiveModel {
            id: Set(id),
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

/// Users created before `cutoff` with no sign of use: no session ever opened (the `sessions` row
/// stays after the session ends), no message sent or received among those still stored, and not
/// online nor seen since `cutoff` (a user kept online by heartbeats has no session).
fn unused_since(cutoff: DateTime<Utc>) -> Condition {
    let user = (users::Entity, users::Column::Id);
    let seen_since = Condition::any()
        .add(users_online::Column::Status.ne(StoredStatus::Offline.as_str()))
        .add(users_online::Column::LastSeen.gte(cutoff));
    Condition::all()
        .add(users::Column::CreatedAt.lt(cutoff))
        .add(no_row(
            sessions::Entity,
            Expr::col((sessions::Entity, sessions::Column::UserId)).equals(user),
        ))
        .add(no_row(
            chat_messages::Entity,
            Expr::col((chat_messages::Entity, chat_messages::Column::SenderId)).equals(user),
        ))
        .add(no_row(
            chat_messages::Entity,
            Expr::col((chat_messages::Entity, chat_messages::Column::RecipientId)).equals(user),
        ))
        .add(no_row(
            users_online::Entity,
            Condition::all()
                .add(Expr::col((users_online::Entity, users_online::Column::UserId)).equals(user))
                .add(seen_since),
        ))
}

/// `NOT EXISTS (SELECT 1 FROM table WHERE condition)`.
fn no_row(table: impl IntoTableRef, condition: impl IntoCondition) -> Expr {
    Expr::not_exists(
        Query::select()
            .expr(Expr::val(1))
            .from(table)
            .cond_where(condition)
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::{
        db::{NewMessage, ids::SessionId},
        testing::{TestDb, on_both_databases},
    };

    /// Claims a user named `name`.
    async fn claim(t: &TestDb, name: &str) -> UserId {
        let id = UserId::new_random();
        let user = NewUser {
            id,
            display_name: name.to_owned(),
            token_hash: format!("hash-{name}"),
        };
        t.db.claim_users(&[user]).await.unwrap();
        id
    }

    fn message(sender: UserId, recipient: UserId) -> NewMessage {
        NewMessage::new(sender, recipient, "m-1".into(), "hello".into())
    }

    /// Only users with no session, no message and no recent presence are unused; and only users
    /// created before the cutoff.
    async fn unused_users_are_the_claimed_and_never_seen(t: TestDb) {
        let db = &t.db;
        let (sender, recipient) = (t.alice, t.bob);
        db.commit_messages(&[&message(sender, recipient)], &[])
            .await
            .unwrap();
        let with_session = claim(&t, "with-session").await;
        let at = Utc::now();
        Database::session_opened(
            db.writer(),
            SessionId::new_random(),
            with_session,
            "n",
            "chat",
            at,
        )
        .await
        .unwrap();
        let online = claim(&t, "online").await;
        Database::upsert_presence(db.writer(), online, "n", StoredStatus::Online, 0, at)
            .await
            .unwrap();
        let seen_lately = claim(&t, "seen-lately").await;
        let later = Utc::now() + Duration::minutes(1);
        Database::upsert_presence(
            db.writer(),
            seen_lately,
            "n",
            StoredStatus::Offline,
            0,
            later,
        )
        .await
        .unwrap();
        let seen_long_ago = claim(&t, "seen-long-ago").await;
        Database::upsert_presence(
            db.writer(),
            seen_long_ago,
            "n",
            StoredStatus::Offline,
            0,
            at,
        )
        .await
        .unwrap();
        let never_seen = claim(&t, "never-seen").await;

        assert!(
            db.unused_users(at - Duration::minutes(1), None, 100)
                .await
                .unwrap()
                .is_empty(),
            "created after the cutoff"
        );
        let cutoff = Utc::now() + Duration::seconds(30);
        let mut expected = vec![seen_long_ago, never_seen];
        expected.sort();
        let found: Vec<UserId> = db
            .unused_users(cutoff, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(found, expected);
        // Pages follow the id order.
        let first = db.unused_users(cutoff, None, 1).await.unwrap();
        let rest = db
            .unused_users(cutoff, Some(first[0].0), 100)
            .await
            .unwrap();
        assert_eq!((first[0].0, rest[0].0), (expected[0], expected[1]));
        assert_eq!(rest.len(), 1);
    }

    /// The delete checks again: a user found unused who opened a session since stays.
    async fn delete_spares_users_used_since_they_were_found(t: TestDb) {
        let db = &t.db;
        let (stays, goes) = (claim(&t, "stays").await, claim(&t, "goes").await);
        let cutoff = Utc::now() + Duration::seconds(30);
        let found: Vec<UserId> = db
            .unused_users(cutoff, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert!(found.contains(&stays) && found.contains(&goes));
        Database::session_opened(
            db.writer(),
            SessionId::new_random(),
            stays,
            "n",
            "chat",
            Utc::now(),
        )
        .await
        .unwrap();

        let deleted = db.delete_unused_users(&found, cutoff).await.unwrap();
        assert_eq!(deleted, found.len() as u64 - 1);
        assert!(db.find_user(stays).await.unwrap().is_some());
        assert!(db.find_user(goes).await.unwrap().is_none());
    }

    on_both_databases!(
        unused_users_are_the_claimed_and_never_seen,
        delete_spares_users_used_since_they_were_found,
    );
}
