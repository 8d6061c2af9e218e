//! Full-text search of a user's own messages (FTS5 on SQLite, a GIN-indexed `tsvector` on
//! PostgreSQL; see the `create_message_search` migration), and people by name.

use sea_orm::{DbBackend, DbErr, EntityTrait};

use super::statement;
use crate::db::{
    Database, StoredMessage,
    ids::{Seq, UserId},
    tables::{chat_messages, users},
};

impl Database {
    /// Messages of `me`'s conversations, not deleted, with seq below `before` (0: any), that
    /// hold a word starting with each of `words` (letters and digits only, lower case), newest
    /// first, at most `limit`.
    pub async fn search_messages(
        &self,
        me: UserId,
        words: &[String],
        before: Seq,
        limit: u64,
    ) -> Result<Vec<StoredMessage>, DbErr> {
        let before = if before == Seq::ZERO {
            Seq(i64::MAX)
        } else {
            before
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Words are letters and digits only, so neither query language can be injected.
        let (sql, query) = match self.backend() {
            DbBackend::Postgres => (
                "SELECT * FROM chat_messages
                 WHERE to_tsvector('simple', text) @@ to_tsquery('simple', $1)
                   AND (sender_id = $2 OR recipient_id = $2) AND deleted_at IS NULL
                   AND seq < $3
                 ORDER BY seq DESC LIMIT $4",
                words
                    .iter()
                    .map(|w| format!("{w}:*"))
                    .collect::<Vec<_>>()
                    .join(" & "),
            ),
            _ => (
                "SELECT m.* FROM chat_messages_fts f JOIN chat_messages m ON m.seq = f.rowid
                 WHERE chat_messages_fts MATCH $1
                   AND (m.sender_id = $2 OR m.recipient_id = $2) AND m.deleted_at IS NULL
                   AND m.seq < $3
                 ORDER BY m.seq DESC LIMIT $4",
                words
                    .iter()
                    .map(|w| format!("\"{w}\"*"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        };
        let values = [query.into(), me.into(), before.into(), limit.into()];
        chat_messages::Entity::find()
            .from_raw_sql(statement(self.backend(), sql, values))
            .all(self.conn())
            .await
    }

    /// Users other than `me` whose display name contains `query` (case-insensitive), names that
    /// start with it first, then by name, at most `limit`.
    pub async fn search_users(
        &self,
        me: UserId,
        query: &str,
        limit: u64,
    ) -> Result<Vec<users::Model>, DbErr> {
        let escaped: String = query
            .to_lowercase()
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let sql = "SELECT * FROM users
            WHERE lower(display_name) LIKE $1 ESCAPE '\\' AND id <> $3
            ORDER BY CASE WHEN lower(display_name) LIKE $2 ESCAPE '\\' THEN 0 ELSE 1 END,
                     lower(display_name), id
            LIMIT $4";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let values = [
            format!("%{escaped}%").into(),
            format!("{escaped}%").into(),
            me.into(),
            limit.into(),
        ];
        users::Entity::find()
            .from_raw_sql(statement(self.backend(), sql, values))
            .all(self.conn())
            .await
    }
}
