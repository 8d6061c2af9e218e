//! The SeaORM migrations apply, roll back completely, and apply again, on both databases.

mod common;

use fastchat::testing::{Backend, FreshDatabase, on_both_databases};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Statement};

async fn table_exists(db: &sea_orm::DatabaseConnection, table: &str) -> bool {
    let sql = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            format!("SELECT 1 FROM information_schema.tables WHERE table_name = '{table}'")
        }
        _ => format!("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '{table}'"),
    };
    let statement = Statement::from_string(db.get_database_backend(), sql);
    db.query_one_raw(statement).await.unwrap().is_some()
}

async fn column_exists(db: &sea_orm::DatabaseConnection, table: &str, column: &str) -> bool {
    let sql = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => format!(
            "SELECT 1 FROM information_schema.columns \
             WHERE table_name = '{table}' AND column_name = '{column}'"
        ),
        _ => format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = '{column}'"),
    };
    let statement = Statement::from_string(db.get_database_backend(), sql);
    db.query_one_raw(statement).await.unwrap().is_some()
}

async fn migrations_go_up_down_and_up_again(backend: Backend) {
    let database = FreshDatabase::create(backend).await;
    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    let tables = [
        "users",
        "users_online",
        "sessions",
        "chat_messages",
        "read_marks",
        "stats_buckets",
    ];

    Migrator::up(&db, None).await.unwrap();
    for table in tables {
        assert!(table_exists(&db, table).await, "{table} after up");
    }
    assert!(
        Migrator::get_pending_migrations(&db)
            .await
            .unwrap()
            .is_empty()
    );

    Migrator::down(&db, None).await.unwrap();
    for table in tables {
        assert!(!table_exists(&db, table).await, "{table} after down");
    }

    Migrator::up(&db, None).await.unwrap();
    for table in tables {
        assert!(table_exists(&db, table).await, "{table} after up again");
    }
    db.close().await.unwrap();
}

/// Migration 7 renames `sessions.transport` to `kind`, and its `down` renames it back.
async fn sessions_transport_is_renamed_kind(backend: Backend) {
    let database = FreshDatabase::create(backend).await;
    let db = sea_orm::Database::connect(&database.url).await.unwrap();

    Migrator::up(&db, Some(7)).await.unwrap();
    assert!(column_exists(&db, "sessions", "kind").await);
    assert!(!column_exists(&db, "sessions", "transport").await);

    Migrator::down(&db, Some(1)).await.unwrap();
    assert!(column_exists(&db, "sessions", "transport").await);
    assert!(!column_exists(&db, "sessions", "kind").await);
    db.close().await.unwrap();
}

on_both_databases!(
    migrations_go_up_down_and_up_again,
    sessions_transport_is_renamed_kind,
);
