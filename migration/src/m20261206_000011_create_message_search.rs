//! Full-text search over message text, one per database behind the same query API.
//!
//! SQLite: an FTS5 index whose content is `chat_messages` itself (no second copy of the text),
//! kept in step by triggers. `secure-delete` makes an edit or deletion remove the old words from
//! the index at once rather than leaving them until a merge: deleting a message erases its text.
//!
//! PostgreSQL: a GIN index on the text's `tsvector`, which queries name by the same expression.
//! Both split words the same way and neither stems nor folds accents (`simple`,
//! `unicode61 remove_diacritics 0`), so a query finds the same messages on either.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SQLITE_UP: &str = "
CREATE VIRTUAL TABLE chat_messages_fts USING fts5(
    text, content = 'chat_messages', content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 0');
INSERT INTO chat_messages_fts (chat_messages_fts, rank) VALUES ('secure-delete', 1);
INSERT INTO chat_messages_fts (chat_messages_fts) VALUES ('rebuild');
CREATE TRIGGER chat_messages_fts_insert AFTER INSERT ON chat_messages BEGIN
    INSERT INTO chat_messages_fts (rowid, text) VALUES (new.seq, new.text);
END;
CREATE TRIGGER chat_messages_fts_delete AFTER DELETE ON chat_messages BEGIN
    INSERT INTO chat_messages_fts (chat_messages_fts, rowid, text)
        VALUES ('delete', old.seq, old.text);
END;
CREATE TRIGGER chat_messages_fts_update AFTER UPDATE OF text ON chat_messages BEGIN
    INSERT INTO chat_messages_fts (chat_messages_fts, rowid, text)
        VALUES ('delete', old.seq, old.text);
    INSERT INTO chat_messages_fts (rowid, text) VALUES (new.seq, new.text);
END;";

const SQLITE_DOWN: &str = "
DROP TRIGGER chat_messages_fts_insert;
DROP TRIGGER chat_messages_fts_delete;
DROP TRIGGER chat_messages_fts_update;
DROP TABLE chat_messages_fts;";

const POSTGRES_UP: &str = "CREATE INDEX idx_chat_messages_text_search
    ON chat_messages USING GIN (to_tsvector('simple', text))";

const POSTGRES_DOWN: &str = "DROP INDEX idx_chat_messages_text_search";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = match manager.get_database_backend() {
            DbBackend::Postgres => POSTGRES_UP,
            _ => SQLITE_UP,
        };
        manager.get_connection().execute_unprepared(sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = match manager.get_database_backend() {
            DbBackend::Postgres => POSTGRES_DOWN,
            _ => SQLITE_DOWN,
        };
        manager.get_connection().execute_unprepared(sql).await?;
        Ok(())
    }
}
