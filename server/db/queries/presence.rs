//! Presence written through to `users_online` and `sessions`, so other readers and other nodes see
//! who is connected. Each node writes its own users' rows; `nodes` cleans up after those that
//! stop.

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
    /// When each of these users was last seen (on any node), for those `users_online` knows.
    pub async fn last_seen_of(
        &self,
        users: &[UserId],
    ) -> Result<HashMap<UserId, DateTime<Utc>>, DbErr> {
        let mut last_seen = HashMap::new();
        let rows = users_online::Entity::find()
            .filter(users_online::Column::UserId.is_in(users.iter().copied()))
            .all(self.conn())
            .await?;
        for row in rows {
            last_seen
                .entry(row.user_id)
                .and_modify(|seen: &mut DateTime<Utc>| *seen = (*seen).max(row.last_seen))
                .or_insert(row.last_seen);
        }
        Ok(last_seen)
    }

    // The write-through queries below take the connection to run on, so the presence store can
    // apply a whole batch of them in one transaction (one commit).

    /// Records a new session of `user` on `node_id`, or opens again one whose row a survivor
    /// ended while it took this node for dead.
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
        .on_conflict(
            OnConflict::column(sessions::Column::Id)
                .update_columns([
                    sessions::Column::NodeId,
                    sessions::Column::Away,
                    sessions::Column::EndedAt,
                ])
                .to_owned(),
        )
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

    /// Writes a user's presence on `node_id` to `users_online`.
    pub async fn upsert_presence(
        conn: &impl ConnectionTrait,
        user: UserId,
        node_id: &str,
        status: StoredStatus,
        session_count: u32,
        last_seen: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        users_online::Entity::insert(users_online::ActiveModel {
            user_id: Set(user),
            node_id: Set(node_id.to_owned()),
            status: Set(status.as_str().to_owned()),
            sessions: Set(session_count as i32),
            last_seen: Set(last_seen),
            updated_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::columns([users_online::Column::UserId, users_online::Column::NodeId])
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
}
