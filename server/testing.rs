//! Test support, for the unit tests (`cfg(test)`) and the integration tests (the `test-support`
//! feature): a fresh database per test, on SQLite (a file in a temporary directory) or on
//! PostgreSQL (a new database, dropped afterwards), and [`on_both_databases!`], which runs a test
//! on each.

use std::future::Future;

use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::db::{Database, NewUser, ids::UserId};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn name(input)` of the calling module twice, as `name::sqlite` and
/// `name::postgres`; `input` is any [`Fixture`]: the [`Backend`] itself, or a [`TestDb`] on it.
/// The PostgreSQL variant is skipped when [`postgres_base_url`] gives none.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    $crate::testing::run_on($crate::testing::Backend::Sqlite, super::$name).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    $crate::testing::run_on($crate::testing::Backend::Postgres, super::$name).await;
                }
            }
        )*
    };
}
pub use crate::on_both_databases;

/// What a test run by [`on_both_databases!`] takes, made anew for each run.
pub trait Fixture: Sized {
    /// One on `backend`.
    fn create(backend: Backend) -> impl Future<Output = Self>;
}

/// For tests that set up their database themselves (most start a server on a [`FreshDatabase`]).
impl Fixture for Backend {
    async fn create(backend: Backend) -> Self {
        backend
    }
}

impl Fixture for TestDb {
    async fn create(backend: Backend) -> Self {
        TestDb::create(backend).await
    }
}

/// Runs `test` with a fresh `T` on `backend`: on PostgreSQL only when [`postgres_base_url`]
/// gives a server.
pub async fn run_on<T: Fixture, F: Future<Output = ()>>(
    backend: Backend,
    test: impl FnOnce(T) -> F,
) {
    if backend == Backend::Postgres && postgres_base_url().is_none() {
        return;
    }
    test(T::create(backend).await).await;
}

/// The PostgreSQL server tests create databases on, from `FASTCHAT_TEST_DATABASE_URL`. None (with
/// a note) skips the PostgreSQL tests, except under CI (`CI` set), which must run every one.
pub fn postgres_base_url() -> Option<String> {
    match std::env::var("FASTCHAT_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "FASTCHAT_TEST_DATABASE_URL must be set in CI: PostgreSQL tests may not be skipped"
            )
        }
        _ => {
            eprintln!("FASTCHAT_TEST_DATABASE_URL is not set: skipping the PostgreSQL variant");
            None
        }
    }
}

/// A fresh PostgreSQL database, dropped when this is dropped (even when the test panicked).
struct PgDatabase {
    /// The server the database lives on.
    base_url: String,
    /// The database's name.
    name: String,
}

impl PgDatabase {
    async fn create(base_url: &str) -> Self {
        let name = format!("fastchat_test_{}", Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(base_url)
            .await
            .expect("PostgreSQL must be reachable");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        admin.close().await.ok();
        Self {
            base_url: base_url.to_owned(),
            name,
        }
    }

    fn url(&self) -> String {
        let (server, _) = self
            .base_url
            .rsplit_once('/')
            .expect("URL has a database path");
        format!("{server}/{}", self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let base_url = self.base_url.clone();
        let name = self.name.clone();
        // Drop cannot await: a runtime of its own on another thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(admin) = sea_orm::Database::connect(&base_url).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// An empty database of the given kind, and what keeps it alive (drop it to remove it).
pub struct FreshDatabase {
    /// Its URL.
    pub url: String,
    /// The SQLite directory.
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database.
    _pg: Option<PgDatabase>,
}

impl FreshDatabase {
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("fastchat.db").display()
                );
                Self {
                    url,
                    _dir: Some(dir),
                    _pg: None,
                }
            }
            Backend::Postgres => {
                let base =
                    postgres_base_url().expect("PostgreSQL tests need FASTCHAT_TEST_DATABASE_URL");
                let pg = PgDatabase::create(&base).await;
                Self {
                    url: pg.url(),
                    _dir: None,
                    _pg: Some(pg),
                }
            }
        }
    }
}

/// For code that writes to the database: a migrated [`FreshDatabase`] with two users.
pub struct TestDb {
    /// The database under test.
    pub db: Database,
    /// A claimed user.
    pub alice: UserId,
    /// Another claimed user.
    pub bob: UserId,
    /// The database itself, removed when this is dropped.
    _database: FreshDatabase,
}

impl TestDb {
    pub async fn create(backend: Backend) -> Self {
        let database = FreshDatabase::create(backend).await;
        let db = Database::connect(&database.url).await.unwrap();
        db.migrate().await.unwrap();
        let (alice, bob) = (UserId::new_random(), UserId::new_random());
        let user = |id, name: &str| NewUser {
            id,
            display_name: name.to_owned(),
            token_hash: format!("hash-{name}"),
        };
        db.claim_users(&[user(alice, "alice"), user(bob, "bob")])
            .await
            .unwrap();
        Self {
            db,
            alice,
            bob,
            _database: database,
        }
    }
}
