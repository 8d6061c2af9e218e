//! Durable state through SeaORM, on SQLite (the embedded default) or PostgreSQL.
//!
//! `Database` is the one handle; its methods are split by domain under `queries/`, the entities
//! live in `tables/`, and writes that take several statements go through `transaction`. Nothing
//! here knows about gRPC.

pub mod ids;
mod queries;
pub mod tables;
mod transaction;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, TransactionTrait,
};

pub use queries::changes::{
    Change, ChangeOutcome, ChangeRules, Refusal, StoredReaction, quote, reactions_of,
};
pub use queries::conversations::ConversationRow;
pub use queries::marks::Marks;
pub use queries::messages::{CommittedRound, Delivery, NewMessage, StoredMessage};
pub use queries::presence::StoredStatus;
pub use queries::statement;
pub use queries::stats::{BucketCounts, BucketKind};
pub use queries::users::NewUser;

/// The PostgreSQL advisory lock that migrations run under (any fixed number no other lock of
/// FastChat's uses; this one spells "fchat-mg" in ASCII).
const MIGRATION_LOCK: i64 = 0x6663_6861_742d_6d67;
/// The PostgreSQL advisory lock a transaction inserting messages holds until it commits
/// ("fchat-sq"), so that seqs become visible in the order they were given (see
/// `Database::commit_messages`).
pub(crate) const MESSAGE_SEQ_LOCK: i64 = 0x6663_6861_742d_7371;
/// The PostgreSQL advisory lock the retention sweep runs under ("fchat-rt"): with several
/// nodes, one sweeps and the others skip that round.
pub(crate) const RETENTION_LOCK: i64 = 0x6663_6861_742d_7274;

/// The database handle; cheap to clone (connection pools inside).
#[derive(Debug, Clone)]
pub struct Database {
    /// The SeaORM connection pool, for reads.
    conn: DatabaseConnection,
    /// For writes. On SQLite a pool of one connection: SQLite lets one writer in at a time, and
    /// writers queued for this connection take their turns in order, where writers on separate
    /// connections would wait in SQLite's busy handler, which sleeps and retries and can starve
    /// one of them for seconds. On PostgreSQL the same pool as `conn`.
    writer: DatabaseConnection,
}

impl Database {
    /// Connects to `url`. SQLite gets WAL and `synchronous = FULL`, so an acknowledged message
    /// survives a crash, and a busy timeout so a writer from another process (the migration CLI)
    /// waits instead of failing.
    pub async fn connect(url: &str) -> Result<Self, DbErr> {
        if !url.starts_with("sqlite:") {
            let conn = sea_orm::Database::connect(Self::options(url)).await?;
            return Ok(Self {
                writer: conn.clone(),
                conn,
            });
        }
        let mut readers = Self::options(url);
        // Readers do not block each other or the writer in WAL mode: a few serve concurrent reads.
        readers.max_connections(4).min_connections(1);
        let mut writer = Self::options(url);
        writer.max_connections(1).min_connections(1);
        Ok(Self {
            conn: sea_orm::Database::connect(readers).await?,
            writer: sea_orm::Database::connect(writer).await?,
        })
    }

    /// The settings both pools share.
    fn options(url: &str) -> ConnectOptions {
        let mut options = ConnectOptions::new(url);
        options
            .sqlx_logging(false)
            .connect_timeout(Duration::from_secs(10))
            .map_sqlx_sqlite_opts(|opts| {
                opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    // Statement journals (every multi-row insert with ON CONFLICT has one) in
                    // memory, not in a temporary file written page by page: they only serve to
                    // undo one statement, never to recover after a crash.
                    .pragma("temp_store", "memory")
                    // Checkpoint the WAL back into the database every 4,000 pages (16 MiB)
                    // instead of 1,000: hot index pages written by many commits are copied back
                    // once per checkpoint, not once per 1,000 pages.
                    .pragma("wal_autocheckpoint", "4000")
            });
        options
    }

    /// Applies every pending migration. On PostgreSQL, in one transaction under an advisory lock:
    /// nodes that boot together on one database take turns, and the later ones find nothing left
    /// to do, where without it they raced to create the same tables and the losers failed.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        if self.backend() != DbBackend::Postgres {
            return Migrator::up(&self.writer, None).await;
        }
        let tx = self.writer.begin().await?;
        tx.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            .await?;
        Migrator::up(&tx, None).await?;
        tx.commit().await
    }

    /// A real round trip to the database, for health checks.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.conn.execute_unprepared("SELECT 1").await.map(|_| ())
    }

    /// Which database this is.
    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Calls `observe` after every query with its duration and statement, for metrics. Set it
    /// before cloning the handle: clones made earlier do not get it.
    pub fn observe_queries(
        &mut self,
        observe: impl Fn(&sea_orm::metric::Info<'_>) + Send + Sync + 'static,
    ) {
        let observe = std::sync::Arc::new(observe);
        let for_writer = observe.clone();
        self.conn.set_metric_callback(move |info| observe(info));
        self.writer
            .set_metric_callback(move |info| for_writer(info));
    }

    /// The SeaORM connection pool for reads.
    pub(crate) fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// The SeaORM connection pool for writes, and for reads inside a write transaction.
    pub(crate) fn writer(&self) -> &DatabaseConnection {
        &self.writer
    }

    /// Closes the pools.
    pub async fn close(self) -> Result<(), DbErr> {
        self.conn.close().await?;
        self.writer.close().await
    }
}
