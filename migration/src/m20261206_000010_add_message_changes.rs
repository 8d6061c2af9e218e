//! Messages that change after they are sent: edits (`edited_at`), deletion for everyone
//! (`deleted_at`, the text erased), replies (a copy of the answered message's id, author and first
//! characters, kept current by edits and erased by deletion) and reactions (a JSON list of
//! `{emoji, user_ids}` on the row, so every read of a message has its whole state without a join).
//!
//! `version` numbers a message's latest change from one counter (`counters`, row
//! `message_version`). Every change takes the counter row first, which orders changes on
//! PostgreSQL: a version is only ever visible after every lower one is, so a client that asks
//! for the changes after the highest version it saw misses none. Messages that never changed
//! (version 0) stay out of the index that finds changes, so sending costs no more than before.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Clone, Copy, DeriveIden)]
enum ChatMessages {
    Table,
    EditedAt,
    DeletedAt,
    ReplyToMessageId,
    ReplyToSenderId,
    ReplyToText,
    Reactions,
    Version,
}

#[derive(DeriveIden)]
enum Counters {
    Table,
    Name,
    Value,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ChatMessages as M;
        // One column per statement: SQLite alters a table one change at a time.
        let columns = [
            timestamp_with_time_zone_null(M::EditedAt),
            timestamp_with_time_zone_null(M::DeletedAt),
            uuid_null(M::ReplyToMessageId),
            uuid_null(M::ReplyToSenderId),
            text_null(M::ReplyToText),
            text(M::Reactions).default("[]").to_owned(),
            big_integer(M::Version).default(0).to_owned(),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(M::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(Counters::Table)
                    .col(string(Counters::Name).primary_key())
                    .col(big_integer(Counters::Value))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        // Partial indexes (same syntax on both databases): only changed messages and replies.
        db.execute_unprepared(
            "INSERT INTO counters (name, value) VALUES ('message_version', 0);
             CREATE INDEX idx_chat_messages_conversation_id_version
                 ON chat_messages (conversation_id, version) WHERE version > 0;
             CREATE INDEX idx_chat_messages_reply_to_message_id
                 ON chat_messages (reply_to_message_id) WHERE reply_to_message_id IS NOT NULL",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ChatMessages as M;
        let db = manager.get_connection();
        db.execute_unprepared(
            "DROP INDEX idx_chat_messages_conversation_id_version;
             DROP INDEX idx_chat_messages_reply_to_message_id",
        )
        .await?;
        manager
            .drop_table(Table::drop().table(Counters::Table).to_owned())
            .await?;
        for column in [
            M::EditedAt,
            M::DeletedAt,
            M::ReplyToMessageId,
            M::ReplyToSenderId,
            M::ReplyToText,
            M::Reactions,
            M::Version,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(M::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
