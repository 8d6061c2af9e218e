//! Write transactions, run again when they lose a conflict with another transaction.

use std::{future::Future, sync::Arc, time::Duration};

use sea_orm::{
    DatabaseTransaction, DbBackend, DbErr, RuntimeErr, TransactionTrait,
    sqlx::{self, postgres::PgDatabaseError, sqlite::SqliteError},
};

use crate::db::Database;

/// Runs of a transaction body before its conflict is returned.
const ATTEMPTS: u32 = 3;
/// The wait before the second run; the third waits twice as long.
const BACKOFF: Duration = Duration::from_millis(10);

impl Database {
    /// Runs `body` in a transaction on the writer and commits it, or rolls it back when `body`
    /// fails. A conflict with another transaction (see `is_conflict`) runs it again, up to 3 times
    /// in all, so `body` must be safe to run again and must not keep `tx`. `tx` is an `Arc` so the
    /// future `body` returns can own it and still borrow what the caller lends.
    pub(crate) async fn transaction<T, F, Fut>(&self, body: F) -> Result<T, DbErr>
    where
        F: Fn(Arc<DatabaseTransaction>) -> Fut,
        Fut: Future<Output = Result<T, DbErr>>,
    {
        let mut attempt = 1;
        loop {
            match self.transaction_once(&body).await {
                Err(err) if attempt < ATTEMPTS && is_conflict(&err) => {
                    tracing::debug!(error = %err, attempt, "transaction conflict; running it again");
                    tokio::time::sleep(BACKOFF * attempt).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn transaction_once<T, F, Fut>(&self, body: &F) -> Result<T, DbErr>
    where
        F: Fn(Arc<DatabaseTransaction>) -> Fut,
        Fut: Future<Output = Result<T, DbErr>>,
    {
        let tx = Arc::new(self.writer().begin().await?);
        let result = body(tx.clone()).await;
        let tx = Arc::into_inner(tx)
            .ok_or_else(|| DbErr::Custom("a transaction body kept its transaction".into()))?;
        match result {
            Ok(value) => tx.commit().await.map(|()| value),
            Err(err) => {
                // Roll back now: dropping the transaction would leave the rollback queued, and its
                // locks could hold up the next writes to the same rows (a retry's, or a caller's
                // one-by-one fallback).
                let _ = tx.rollback().await;
                Err(err)
            }
        }
    }
}

/// Whether `err` is a conflict with another transaction that running again can get past.
fn is_conflict(err: &DbErr) -> bool {
    let (DbErr::Conn(RuntimeErr::SqlxError(err))
    | DbErr::Exec(RuntimeErr::SqlxError(err))
    | DbErr::Query(RuntimeErr::SqlxError(err))) = err
    else {
        return false;
    };
    let sqlx::Error::Database(err) = &**err else {
        return false;
    };
    let backend = if err.try_downcast_ref::<SqliteError>().is_some() {
        DbBackend::Sqlite
    } else if err.try_downcast_ref::<PgDatabaseError>().is_some() {
        DbBackend::Postgres
    } else {
        return false;
    };
    err.code()
        .is_some_and(|code| is_conflict_code(backend, &code))
}

/// On PostgreSQL a serialization failure (SQLSTATE 40001) or a deadlock (40P01). On SQLite, whose
/// codes are extended result codes, a busy (5) or locked (6) database, with their extended codes:
/// 517, for one, is a read snapshot that another connection's commit made stale, which waiting
/// cannot fix but beginning again does.
fn is_conflict_code(backend: DbBackend, code: &str) -> bool {
    match backend {
        DbBackend::Postgres => matches!(code, "40001" | "40P01"),
        DbBackend::Sqlite => code
            .parse::<i32>()
            .is_ok_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use sea_orm::{ConnectionTrait, EntityTrait, sea_query::Expr};

    use super::*;
    use crate::db::{
        ids::{SessionId, UserId},
        tables::users,
    };
    use crate::testing::{TestDb, on_both_databases};

    #[test]
    fn conflict_codes() {
        use sea_orm::DatabaseBackend::{Postgres, Sqlite};
        let retried = [
            (Postgres, "40001"),
            (Postgres, "40P01"),
            (Sqlite, "5"),
            (Sqlite, "261"), // SQLITE_BUSY_RECOVERY
            (Sqlite, "517"), // SQLITE_BUSY_SNAPSHOT
            (Sqlite, "773"), // SQLITE_BUSY_TIMEOUT
            (Sqlite, "6"),
            (Sqlite, "262"), // SQLITE_LOCKED_SHAREDCACHE
        ];
        let not_retried = [
            (Postgres, "23505"), // unique violation
            (Postgres, "23503"), // foreign key violation
            (Postgres, "40002"), // integrity constraint violation at commit
            (Postgres, "5"),
            (Sqlite, "1"),
            (Sqlite, "2067"), // SQLITE_CONSTRAINT_UNIQUE
            (Sqlite, "787"),  // SQLITE_CONSTRAINT_FOREIGNKEY
            (Sqlite, "40001"),
        ];
        for (backend, code) in retried {
            assert!(is_conflict_code(backend, code), "{backend:?} {code}");
        }
        for (backend, code) in not_retried {
            assert!(!is_conflict_code(backend, code), "{backend:?} {code}");
        }
    }

    #[test]
    fn errors_from_outside_the_database_are_not_conflicts() {
        let errors = [
            DbErr::Custom("5".into()),
            DbErr::RecordNotInserted,
            DbErr::Exec(RuntimeErr::Internal("40001".into())),
            DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout),
        ];
        for err in errors {
            assert!(!is_conflict(&err), "{err}");
        }
    }

    /// Makes `tx` fail with a real conflict: on SQLite another connection commits between its
    /// read and its write, so the write finds its snapshot stale (517); PostgreSQL raises a
    /// serialization failure.
    async fn conflict(db: &Database, tx: &DatabaseTransaction) -> Result<(), DbErr> {
        if db.backend() == DbBackend::Postgres {
            let raise = "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$";
            return tx.execute_unprepared(raise).await.map(|_| ());
        }
        users::Entity::find().one(tx).await?;
        // A new name each time: SQLite commits nothing for an update to the same values.
        let name = format!("by another connection {}", uuid::Uuid::new_v4());
        rename_all(db.conn(), &name).await?;
        rename_all(tx, "by the transaction").await
    }

    async fn rename_all(conn: &impl ConnectionTrait, name: &str) -> Result<(), DbErr> {
        users::Entity::update_many()
            .col_expr(users::Column::DisplayName, Expr::value(name))
            .exec(conn)
            .await
            .map(|_| ())
    }

    async fn name_of(t: &TestDb, user: UserId) -> String {
        users::Entity::find_by_id(user.0)
            .one(t.db.conn())
            .await
            .unwrap()
            .unwrap()
            .display_name
    }

    /// A body that conflicts on its first run commits on its second.
    async fn a_conflict_is_run_again(t: TestDb) {
        let runs = AtomicU32::new(0);
        let db = &t.db;
        let result = db
            .transaction(|tx| {
                let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if run == 1 {
                        conflict(db, &tx).await?;
                    }
                    rename_all(&*tx, "by the second run").await
                }
            })
            .await;

        result.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(name_of(&t, t.alice).await, "by the second run");
    }

    /// A body that always conflicts runs 3 times, then its error is returned.
    async fn a_conflict_is_run_at_most_three_times(t: TestDb) {
        let runs = AtomicU32::new(0);
        let db = &t.db;
        let result = db
            .transaction(|tx| {
                runs.fetch_add(1, Ordering::SeqCst);
                async move { conflict(db, &tx).await }
            })
            .await;

        assert!(is_conflict(&result.unwrap_err()));
        assert_eq!(runs.load(Ordering::SeqCst), ATTEMPTS);
        assert_ne!(name_of(&t, t.alice).await, "by the transaction");
    }

    /// Any other failure (here a session of an unknown user) is returned at once, rolled back.
    async fn other_errors_are_not_run_again(t: TestDb) {
        let runs = AtomicU32::new(0);
        let result =
            t.db.transaction(|tx| {
                runs.fetch_add(1, Ordering::SeqCst);
                async move {
                    rename_all(&*tx, "rolled back").await?;
                    let (id, user) = (SessionId::new_random(), UserId::new_random());
                    let at = chrono::Utc::now();
                    Database::session_opened(&*tx, id, user, "node-a", "chat", at).await
                }
            })
            .await;

        assert!(result.unwrap_err().sql_err().is_some());
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(name_of(&t, t.alice).await, "alice");
    }

    on_both_databases!(
        a_conflict_is_run_again,
        a_conflict_is_run_at_most_three_times,
        other_errors_are_not_run_again,
    );
}
