//! For unit tests of code that writes to the database: a migrated database with two users, on
//! SQLite or on a fresh PostgreSQL database that is dropped afterwards.

use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::db::{Database, NewUser, ids::UserId};

/// A migrated database with two users, and what keeps it alive.
pub(crate) struct TestDb {
    /// The database under test.
    pub db: Database,
    /// A claimed user.
    pub alice: UserId,
    /// Another claimed user.
    pub bob: UserId,
    /// The SQLite file's directory, removed when this is dropped.
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL server and database name, dropped when this is.
    pg: Option<(String, String)>,
}

impl TestDb {
    /// On SQLite in a temporary directory.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        Self::with(&url, Some(dir), None).await
    }

    /// On a new database of the PostgreSQL server `FASTCHAT_TEST_DATABASE_URL` names. Without
    /// it, None, except under CI, which must run every PostgreSQL test.
    pub async fn postgres() -> Option<Self> {
        let Some(base) = std::env::var("FASTCHAT_TEST_DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())
        else {
            assert!(
                std::env::var_os("CI").is_none(),
                "FASTCHAT_TEST_DATABASE_URL must be set under CI"
            );
            eprintln!("FASTCHAT_TEST_DATABASE_URL is not set: skipping the PostgreSQL variant");
            return None;
        };
        let name = format!("fastchat_unit_{}", Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(&base).await.unwrap();
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        admin.close().await.unwrap();
        let (server, _) = base.rsplit_once('/').unwrap();
        let url = format!("{server}/{name}");
        Some(Self::with(&url, None, Some((base, name))).await)
    }

    async fn with(url: &str, dir: Option<tempfile::TempDir>, pg: Option<(String, String)>) -> Self {
        let db = Database::connect(url).await.unwrap();
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
            _dir: dir,
            pg,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((base, name)) = self.pg.take() else {
            return;
        };
        // Drop cannot await: a runtime of its own on another thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(admin) = sea_orm::Database::connect(&base).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = admin.execute_unprepared(&sql).await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// Runs each named `async fn(TestDb)` of the calling module as a test on SQLite and on
/// PostgreSQL.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::db::testing::TestDb::sqlite().await).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                if let Some(t) = $crate::db::testing::TestDb::postgres().await {
                    super::$name(t).await;
                }
            })*
        }
    };
}
pub(crate) use on_both_backends;
