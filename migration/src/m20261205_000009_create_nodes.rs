//! Several nodes on one database: a `nodes` table where each live node registers and heartbeats,
//! and `users_online` keyed by user and node, so each node writes only its own users' entries
//! and a stop (or a survivor cleaning up after a dead node) touches only that node's rows.
//!
//! Existing presence rows move to node `''`, which holds what is left of nodes that are gone: the
//! latest `last_seen` of each user, offline.

use sea_orm::DbBackend;
use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261125_000001_create_users::user_foreign_key;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Nodes {
    Table,
    NodeId,
    BootId,
    StartedAt,
    HeartbeatAt,
}

#[derive(DeriveIden)]
enum UsersOnline {
    Table,
    UserId,
    NodeId,
    Status,
    Sessions,
    LastSeen,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum UsersOnlineCopy {
    Table,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Nodes::Table)
                    .col(string(Nodes::NodeId).primary_key())
                    .col(uuid(Nodes::BootId))
                    .col(timestamp_with_time_zone(Nodes::StartedAt))
                    .col(timestamp_with_time_zone(Nodes::HeartbeatAt))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(
                "ALTER TABLE users_online ADD COLUMN node_id varchar NOT NULL DEFAULT '';
                 ALTER TABLE users_online ALTER COLUMN node_id DROP DEFAULT;
                 ALTER TABLE users_online DROP CONSTRAINT users_online_pkey;
                 ALTER TABLE users_online ADD PRIMARY KEY (user_id, node_id)",
            )
            .await?;
        } else {
            // SQLite cannot change a primary key in place: copy the rows into a new table.
            manager.create_table(users_online_table(true)).await?;
            db.execute_unprepared(
                "INSERT INTO users_online_copy
                     (user_id, node_id, status, sessions, last_seen, updated_at)
                 SELECT user_id, '', status, sessions, last_seen, updated_at FROM users_online",
            )
            .await?;
            replace_users_online(manager).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // One row per user again: each user's latest, offline (the nodes are no longer known).
        db.execute_unprepared(
            "DELETE FROM users_online WHERE EXISTS (
                 SELECT 1 FROM users_online later
                 WHERE later.user_id = users_online.user_id
                   AND (later.last_seen > users_online.last_seen
                        OR (later.last_seen = users_online.last_seen
                            AND later.node_id > users_online.node_id)))",
        )
        .await?;
        db.execute_unprepared(
            "UPDATE users_online SET status = 'offline', sessions = 0 WHERE status <> 'offline'",
        )
        .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(
                "ALTER TABLE users_online DROP CONSTRAINT users_online_pkey;
                 ALTER TABLE users_online DROP COLUMN node_id;
                 ALTER TABLE users_online ADD PRIMARY KEY (user_id)",
            )
            .await?;
        } else {
            manager.create_table(users_online_table(false)).await?;
            db.execute_unprepared(
                "INSERT INTO users_online_copy (user_id, status, sessions, last_seen, updated_at)
                 SELECT user_id, status, sessions, last_seen, updated_at FROM users_online",
            )
            .await?;
            replace_users_online(manager).await?;
        }
        manager
            .drop_table(Table::drop().table(Nodes::Table).to_owned())
            .await
    }
}

/// The SQLite copy of `users_online`, keyed by user and node or (going down) by user alone.
fn users_online_table(per_node: bool) -> TableCreateStatement {
    let mut table = Table::create();
    table
        .table(UsersOnlineCopy::Table)
        .col(uuid(UsersOnline::UserId));
    if per_node {
        table.col(string(UsersOnline::NodeId));
    }
    table
        .col(string(UsersOnline::Status))
        .col(integer(UsersOnline::Sessions).default(0))
        .col(timestamp_with_time_zone(UsersOnline::LastSeen))
        .col(timestamp_with_time_zone(UsersOnline::UpdatedAt))
        .foreign_key(&mut user_foreign_key(
            "fk_users_online_user_id",
            UsersOnlineCopy::Table,
            UsersOnline::UserId,
        ));
    let mut key = Index::create();
    key.col(UsersOnline::UserId);
    if per_node {
        key.col(UsersOnline::NodeId);
    }
    table.primary_key(&mut key).to_owned()
}

/// Drops `users_online` and renames the SQLite copy to it.
async fn replace_users_online(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .drop_table(Table::drop().table(UsersOnline::Table).to_owned())
        .await?;
    manager
        .rename_table(
            Table::rename()
                .table(UsersOnlineCopy::Table, UsersOnline::Table)
                .to_owned(),
        )
        .await
}
