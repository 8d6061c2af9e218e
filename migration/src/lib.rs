//! Database schema migrations for the fastchat server, written with SeaORM's
//! schema builder so that the same migrations run unchanged on SQLite and
//! PostgreSQL. [`Migrator`] lists every migration in the order it must be
//! applied; the server runs it at startup and the `migration` binary exposes
//! the standard SeaORM CLI (`up`, `down`, `status`, `fresh`, ...) against
//! `DATABASE_URL`.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_users;
mod m20261125_000002_create_users_online;
mod m20261125_000003_create_sessions;
mod m20261125_000004_create_chat_messages;
mod m20261125_000005_create_read_marks;
mod m20261125_000006_create_stats_buckets;
mod m20261204_000007_rename_sessions_transport;
mod m20261205_000008_create_conversations;
mod m20261205_000009_create_nodes;
mod m20261206_000010_add_message_changes;
mod m20261206_000011_create_message_search;

/// Applies the fastchat schema migrations in order.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_users::Migration),
            Box::new(m20261125_000002_create_users_online::Migration),
            Box::new(m20261125_000003_create_sessions::Migration),
            Box::new(m20261125_000004_create_chat_messages::Migration),
            Box::new(m20261125_000005_create_read_marks::Migration),
            Box::new(m20261125_000006_create_stats_buckets::Migration),
            Box::new(m20261204_000007_rename_sessions_transport::Migration),
            Box::new(m20261205_000008_create_conversations::Migration),
            Box::new(m20261205_000009_create_nodes::Migration),
            Box::new(m20261206_000010_add_message_changes::Migration),
            Box::new(m20261206_000011_create_message_search::Migration),
        ]
    }
}
