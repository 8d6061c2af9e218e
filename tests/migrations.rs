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

on_both_databases!(migrations_go_up_down_and_up_again);
