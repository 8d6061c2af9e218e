//! `impl Database` blocks, one file per domain.

pub mod changes;
pub mod conversations;
pub mod marks;
pub mod messages;
pub mod nodes;
pub mod presence;
pub mod search;
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
        DbBackend::Sqlite => sqlite_placeholders(sql),
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// `$n` as SQLite's `?n`, or as a plain `?` when the placeholders run `$1, $2, ...` in order:
/// binding asks SQLite each numbered parameter's name, which it finds by a linear search, so
/// a statement of thousands of numbered parameters (a round's delivered marks) binds in time
/// quadratic in their number; plain ones have no names to look up.
fn sqlite_placeholders(sql: &str) -> String {
    let numbers = sql.split('$').skip(1).map(|rest| {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        rest[..digits].parse::<usize>().ok()
    });
    let in_order = numbers.enumerate().all(|(i, number)| number == Some(i + 1));
    if !in_order {
        return sql.replace('$', "?");
    }
    let mut plain = String::with_capacity(sql.len());
    for (i, part) in sql.split('$').enumerate() {
        if i == 0 {
            plain.push_str(part);
        } else {
            plain.push('?');
            plain.push_str(part.trim_start_matches(|c: char| c.is_ascii_digit()));
        }
    }
    plain
}

#[cfg(test)]
mod tests {
    use super::sqlite_placeholders;

    #[test]
    fn placeholders_in_order_become_plain() {
        let sql = "VALUES ($1, $2), ($3, $4)";
        assert_eq!(sqlite_placeholders(sql), "VALUES (?, ?), (?, ?)");
    }

    #[test]
    fn placeholders_out_of_order_or_repeated_keep_their_numbers() {
        assert_eq!(
            sqlite_placeholders("a = $2 AND b = $1"),
            "a = ?2 AND b = ?1"
        );
        assert_eq!(sqlite_placeholders("a = $1 OR b = $1"), "a = ?1 OR b = ?1");
    }
}
