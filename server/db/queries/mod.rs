//! `impl Database` blocks, one file per domain.

pub mod conversations;
pub mod marks;
pub mod messages;
pub mod presence;
pub mod stats;
pub mod users;

use sea_orm::{DbBackend, Statement, Value};

/// A statement written once, with PostgreSQL's `$n` placeholders, which SQLite reads as `?n`:
/// for queries SeaORM's builder cannot say, or says with more CPU than a fixed text costs.
pub fn statement(
    backend: DbBackend,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Statement {
    let sql = match backend {
        DbBackend::Sqlite => sql.replace('$', "?"),
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}
