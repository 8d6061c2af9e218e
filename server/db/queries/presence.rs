//! Presence written through to `users_online` and `sessions`, so other readers (and, later, other
//! nodes) see who is connected.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    sea_query::{Expr, OnConflict},
};

use crate::db::{
    Database,
    ids::{SessionId, UserId},
    tables::{sessions, users_online},
};

/// A user's presence as `users_online` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredStatus {
    Online,
    Away,
    Offline,
}

impl StoredStatus {
    /// How `users_online.status` stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Away => "away",
            Self::Offline => "offline",
        }
    }
}

impl Database {
    /// When each of these users was last seen, for those `users_online` knows.
    pub async fn last_seen_of(
        &self,
        users: &[UserId],
    ) -> Result<HashMap<UserId, DateTime<Utc>>, DbErr> {
        Ok(users_online::Entity::find()
            .filter(users_online::Column::UserId.is_in(users.iter().copied()))
            .all(self.conn())
            .await?
            .into_iter()
            .map(|row| (row.user_id, row.last_seen))
            .collect())
    }

    /// Ends this node's open sessions and marks every user offline, in one transaction: at
    /// start-up, for what a previous run left behind (the store does it again at shutdown).
    pub async fn reset_node_presence(&self, node_id: &str, at: DateTime<Utc>) -> Result<(), DbErr> {
        self.transaction(|tx| async move { Self::reset_node_presence_on(&*tx, node_id, at).await })
            .await
    }

    // The write-through queries below take the connection to run on, so the presence store can
    // apply a whole batch of them in one transaction (one commit).

    /// Records a new session of `user` on `node_id`.
    pub async fn session_opened(
        conn: &impl ConnectionTrait,
        id: SessionId,
        user: UserId,
        node_id: &str,
        kind: &str,
        at: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        sessions::Entity::insert(sessions::ActiveModel {
            id: Set(id),
            user_id: Set(user),
            node_id: Set(node_id.to_owned()),
            kind: Set(kind.to_owned()),
            away: Set(false),
            connected_at: Set(at),
            last_active_at: Set(at),
            ended_at: Set(None),
        })
        .exec_without_returning(conn)
        .await
        .map(|_| ())
    }

    /// Records that a session said it is away (or back).
    pub async fn session_away(
        conn: &impl ConnectionTrait,
        id: SessionId,
        away: bool,
        at: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        sessions::Entity::update_many()
            .col_expr(sessions::Column::Away, Expr::value(away))
            .col_expr(sessions::Column::LastActiveAt, Expr::value(at))
            .filter(sessions::Column::Id.eq(id))
            .exec(conn)
            .await
            .map(|_| ())
    }

    /// Records that a session ended.
    pub async fn session_closed(
        conn: &impl ConnectionTrait,
        id: SessionId,
        at: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        sessions::Entity::update_many()
            .col_expr(sessions::Column::EndedAt, Expr::value(at))
            .col_expr(sessions::Column::LastActiveAt, Expr::value(at))
            .filter(sessions::Column::Id.eq(id))
            .exec(conn)
            .await
            .map(|_| ())
    }

    /// Writes a user's presence to `users_online`.
    pub async fn upsert_presence(
        conn: &impl ConnectionTrait,
        user: UserId,
        status: StoredStatus,
        session_count: u32,
        last_seen: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        users_online::Entity::insert(users_online::ActiveModel {
            user_id: Set(user),
            status: Set(status.as_str().to_owned()),
            sessions: Set(session_count as i32),
            last_seen: Set(last_seen),
            updated_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::column(users_online::Column::UserId)
                .update_columns([
                    users_online::Column::Status,
                    users_online::Column::Sessions,
                    users_online::Column::LastSeen,
                    users_online::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await
        .map(|_| ())
    }

    /// `reset_node_presence` on `conn`. Every user, because there is one node for now; with
    /// several, `users_online` will need the node too.
    pub async fn reset_node_presence_on(
        conn: &impl ConnectionTrait,
        node_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        sessions::Entity::update_many()
            .col_expr(sessions::Column::EndedAt, Expr::value(at))
            .filter(sessions::Column::NodeId.eq(node_id))
            .filter(sessions::Column::EndedAt.is_null())
            .exec(conn)
            .await?;
        users_online::Entity::update_many()
            .col_expr(
                users_online::Column::Status,
                Expr::value(StoredStatus::Offline.as_str()),
            )
            .col_expr(users_online::Column::Sessions, Expr::value(0))
            .col_expr(users_online::Column::UpdatedAt, Expr::value(at))
            .filter(users_online::Column::Status.ne(StoredStatus::Offline.as_str()))
            .exec(conn)
            .await
            .map(|_| ())
    }
}
