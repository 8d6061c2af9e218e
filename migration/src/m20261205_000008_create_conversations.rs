//! Conversations get a compact integer id, and each participant a member row holding their
//! delivered and read high-water marks; messages point at their conversation.
//!
//! Before, every message carried a 73-character `conversation_key` and a `delivered_at` that each
//! delivery updated, moving the row's entry in a `recipient_id + delivered_at + seq` index: five
//! B-trees per insert, four on random keys, and two more page writes per delivery. Now a message
//! touches one index on a random key, its conversation's `(conversation_id, seq)`, and a
//! delivery moves one member row of a small, hot table. `read_marks` becomes the members' read
//! marks. The idempotency index puts the key before the sender, so time-ordered keys append to it,
//! and the foreign keys on the sender and the recipient give way to the conversation's (each
//! needed an index of its own on a user id).
//!
//! The conversion keeps history, read marks and idempotency keys. A conversation's delivered
//! mark is set just below its oldest undelivered message (or at its newest message when all were
//! delivered), so nothing undelivered is ever covered; a delivered message above an undelivered
//! one comes once more, and clients drop it by seq.

use sea_orm::DbBackend;
use sea_orm_migration::{prelude::*, schema::*};

use crate::{m20261125_000001_create_users::user_foreign_key, m20261125_000005_create_read_marks};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Conversations {
    Table,
    Id,
    UserLow,
    UserHigh,
}

#[derive(DeriveIden)]
enum ConversationMembers {
    Table,
    UserId,
    PeerId,
    ConversationId,
    DeliveredUpToSeq,
    ReadUpToSeq,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ChatMessages {
    Table,
    Seq,
    MessageId,
    ConversationId,
    SenderId,
    RecipientId,
    ClientMsgId,
    Text,
    SentAt,
}

#[derive(Clone, Copy, DeriveIden)]
enum ChatMessagesNew {
    Table,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let sqlite = manager.get_database_backend() == DbBackend::Sqlite;
        let (least, greatest) = if sqlite {
            ("min", "max")
        } else {
            ("LEAST", "GREATEST")
        };
        manager.create_table(conversations_table()).await?;
        manager.create_table(members_table()).await?;
        for index in [
            Index::create()
                .name("idx_conversations_user_low_user_high")
                .table(Conversations::Table)
                .col(Conversations::UserLow)
                .col(Conversations::UserHigh)
                .unique()
                .to_owned(),
            // Deleting a user finds their conversations by either column.
            Index::create()
                .name("idx_conversations_user_high")
                .table(Conversations::Table)
                .col(Conversations::UserHigh)
                .to_owned(),
            Index::create()
                .name("idx_conversation_members_conversation_id")
                .table(ConversationMembers::Table)
                .col(ConversationMembers::ConversationId)
                .to_owned(),
        ] {
            manager.create_index(index).await?;
        }

        // Every pair that exchanged messages or has a read mark, oldest first.
        db.execute_unprepared(&format!(
            "INSERT INTO conversations (user_low, user_high)
             SELECT lo, hi FROM (
                 SELECT {least}(sender_id, recipient_id) AS lo,
                        {greatest}(sender_id, recipient_id) AS hi, min(seq) AS first
                 FROM chat_messages GROUP BY 1, 2
                 UNION ALL
                 SELECT {least}(reader_id, peer_id), {greatest}(reader_id, peer_id), NULL
                 FROM read_marks
             ) AS pairs
             GROUP BY lo, hi ORDER BY min(first), lo, hi"
        ))
        .await?;
        db.execute_unprepared(
            "INSERT INTO conversation_members
                 (user_id, peer_id, conversation_id, delivered_up_to_seq, read_up_to_seq, updated_at)
             SELECT user_low, user_high, id, 0, 0, CURRENT_TIMESTAMP FROM conversations
             UNION ALL
             SELECT user_high, user_low, id, 0, 0, CURRENT_TIMESTAMP FROM conversations",
        )
        .await?;
        // Read marks; then the delivered mark below the oldest undelivered message, never below
        // the read mark (reading covers delivery).
        db.execute_unprepared(
            "UPDATE conversation_members SET
                 read_up_to_seq = COALESCE((SELECT r.read_up_to_seq FROM read_marks r
                     WHERE r.reader_id = conversation_members.user_id
                       AND r.peer_id = conversation_members.peer_id), 0),
                 updated_at = COALESCE((SELECT r.updated_at FROM read_marks r
                     WHERE r.reader_id = conversation_members.user_id
                       AND r.peer_id = conversation_members.peer_id), updated_at)",
        )
        .await?;
        db.execute_unprepared(&format!(
            "UPDATE conversation_members SET delivered_up_to_seq = {greatest}(read_up_to_seq,
                 COALESCE(
                     (SELECT min(m.seq) - 1 FROM chat_messages m
                      WHERE m.recipient_id = conversation_members.user_id
                        AND m.sender_id = conversation_members.peer_id
                        AND m.delivered_at IS NULL),
                     (SELECT max(m.seq) FROM chat_messages m
                      WHERE m.recipient_id = conversation_members.user_id
                        AND m.sender_id = conversation_members.peer_id),
                     0))"
        ))
        .await?;

        if sqlite {
            messages_up_sqlite(manager).await?;
        } else {
            messages_up_postgres(manager).await?;
        }
        manager
            .drop_table(Table::drop().table(Alias::new("read_marks")).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let sqlite = manager.get_database_backend() == DbBackend::Sqlite;
        // The table as migration 5 made it.
        m20261125_000005_create_read_marks::Migration
            .up(manager)
            .await?;
        db.execute_unprepared(
            "INSERT INTO read_marks (reader_id, peer_id, read_up_to_seq, updated_at)
             SELECT user_id, peer_id, read_up_to_seq, updated_at FROM conversation_members
             WHERE read_up_to_seq > 0",
        )
        .await?;
        if sqlite {
            messages_down_sqlite(manager).await?;
        } else {
            messages_down_postgres(manager).await?;
        }
        manager
            .drop_table(Table::drop().table(ConversationMembers::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Conversations::Table).to_owned())
            .await
    }
}

fn conversations_table() -> TableCreateStatement {
    Table::create()
        .table(Conversations::Table)
        .col(big_pk_auto(Conversations::Id))
        .col(uuid(Conversations::UserLow))
        .col(uuid(Conversations::UserHigh))
        .foreign_key(&mut user_foreign_key(
            "fk_conversations_user_low",
            Conversations::Table,
            Conversations::UserLow,
        ))
        .foreign_key(&mut user_foreign_key(
            "fk_conversations_user_high",
            Conversations::Table,
            Conversations::UserHigh,
        ))
        .to_owned()
}

fn members_table() -> TableCreateStatement {
    Table::create()
        .table(ConversationMembers::Table)
        .col(uuid(ConversationMembers::UserId))
        .col(uuid(ConversationMembers::PeerId))
        .col(big_integer(ConversationMembers::ConversationId))
        .col(big_integer(ConversationMembers::DeliveredUpToSeq).default(0))
        .col(big_integer(ConversationMembers::ReadUpToSeq).default(0))
        .col(timestamp_with_time_zone(ConversationMembers::UpdatedAt))
        .primary_key(
            Index::create()
                .name("pk_conversation_members")
                .col(ConversationMembers::UserId)
                .col(ConversationMembers::PeerId),
        )
        .foreign_key(&mut conversation_foreign_key(
            "fk_conversation_members_conversation_id",
            ConversationMembers::Table,
            ConversationMembers::ConversationId,
        ))
        .to_owned()
}

fn conversation_foreign_key(
    name: &str,
    table: impl IntoIden,
    column: impl IntoIden,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, column)
        .to(Conversations::Table, Conversations::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .on_update(ForeignKeyAction::Cascade)
        .to_owned()
}

/// `chat_messages` as it is from this migration on, under `table`'s name.
fn messages_table(table: impl IntoIden + Copy) -> TableCreateStatement {
    Table::create()
        .table(table)
        .col(big_pk_auto(ChatMessages::Seq))
        .col(uuid(ChatMessages::MessageId))
        .col(big_integer(ChatMessages::ConversationId))
        .col(uuid(ChatMessages::SenderId))
        .col(uuid(ChatMessages::RecipientId))
        .col(string(ChatMessages::ClientMsgId))
        .col(text(ChatMessages::Text))
        .col(timestamp_with_time_zone(ChatMessages::SentAt))
        // A user's deletion reaches their messages through the conversation; foreign keys on
        // `sender_id` and `recipient_id` would each need an index of their own, written on every
        // insert.
        .foreign_key(&mut conversation_foreign_key(
            "fk_chat_messages_conversation_id",
            table,
            ChatMessages::ConversationId,
        ))
        .to_owned()
}

/// The indexes of `chat_messages` from this migration on: the message id, the sender's key
/// (idempotency), the conversation's messages in order (history, backlog, unread counts), and
/// `sent_at` (retention). The key comes before the sender: keys that grow with time (UUIDv7, as
/// FastChat's clients make them) then append to the index, where senders first put every
/// sender's newest key on a page of its own, one page written per sender and commit.
fn messages_indexes() -> [IndexCreateStatement; 4] {
    [
        Index::create()
            .name("idx_chat_messages_message_id")
            .table(ChatMessages::Table)
            .col(ChatMessages::MessageId)
            .unique()
            .to_owned(),
        Index::create()
            .name("idx_chat_messages_client_msg_sender")
            .table(ChatMessages::Table)
            .col(ChatMessages::ClientMsgId)
            .col(ChatMessages::SenderId)
            .unique()
            .to_owned(),
        Index::create()
            .name("idx_chat_messages_conversation_id_seq")
            .table(ChatMessages::Table)
            .col(ChatMessages::ConversationId)
            .col(ChatMessages::Seq)
            .to_owned(),
        Index::create()
            .name("idx_chat_messages_sent_at")
            .table(ChatMessages::Table)
            .col(ChatMessages::SentAt)
            .to_owned(),
    ]
}

/// SQLite cannot change a table's columns and foreign keys in place: the table is copied. The
/// seq counter is carried over, so a seq of a message deleted before is never given again.
async fn messages_up_sqlite(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    manager
        .create_table(messages_table(ChatMessagesNew::Table))
        .await?;
    db.execute_unprepared(
        "INSERT INTO chat_messages_new
             (seq, message_id, conversation_id, sender_id, recipient_id, client_msg_id, text, sent_at)
         SELECT m.seq, m.message_id, c.id, m.sender_id, m.recipient_id, m.client_msg_id, m.text,
                m.sent_at
         FROM chat_messages m JOIN conversations c
           ON c.user_low = min(m.sender_id, m.recipient_id)
          AND c.user_high = max(m.sender_id, m.recipient_id)",
    )
    .await?;
    replace_sqlite_messages(manager, "chat_messages_new").await?;
    for index in messages_indexes() {
        manager.create_index(index).await?;
    }
    Ok(())
}

/// Drops `chat_messages`, renames `new_table` in its place and keeps the seq counter.
async fn replace_sqlite_messages(
    manager: &SchemaManager<'_>,
    new_table: &str,
) -> Result<(), DbErr> {
    let db = manager.get_connection();
    db.execute_unprepared(&format!(
        "CREATE TEMP TABLE last_seq AS SELECT max(seq) AS seq FROM sqlite_sequence
             WHERE name IN ('chat_messages', '{new_table}');
         DELETE FROM sqlite_sequence WHERE name = '{new_table}';
         INSERT INTO sqlite_sequence (name, seq)
             SELECT '{new_table}', seq FROM last_seq WHERE seq IS NOT NULL;
         DROP TABLE last_seq;
         DROP TABLE chat_messages;
         ALTER TABLE {new_table} RENAME TO chat_messages;"
    ))
    .await?;
    Ok(())
}

async fn messages_up_postgres(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    db.execute_unprepared(
        "ALTER TABLE chat_messages ADD COLUMN conversation_id bigint;
         UPDATE chat_messages m SET conversation_id = c.id FROM conversations c
          WHERE c.user_low = LEAST(m.sender_id, m.recipient_id)
            AND c.user_high = GREATEST(m.sender_id, m.recipient_id);
         ALTER TABLE chat_messages ALTER COLUMN conversation_id SET NOT NULL;
         ALTER TABLE chat_messages ADD CONSTRAINT fk_chat_messages_conversation_id
             FOREIGN KEY (conversation_id) REFERENCES conversations (id)
             ON DELETE CASCADE ON UPDATE CASCADE;
         ALTER TABLE chat_messages DROP CONSTRAINT fk_chat_messages_recipient_id;
         ALTER TABLE chat_messages DROP CONSTRAINT fk_chat_messages_sender_id;
         DROP INDEX idx_chat_messages_conversation_key_seq;
         DROP INDEX idx_chat_messages_recipient_id_delivered_at_seq;
         DROP INDEX idx_chat_messages_sender_client_msg;
         ALTER TABLE chat_messages DROP COLUMN conversation_key, DROP COLUMN delivered_at;
         CREATE INDEX idx_chat_messages_conversation_id_seq
             ON chat_messages (conversation_id, seq);
         CREATE UNIQUE INDEX idx_chat_messages_client_msg_sender
             ON chat_messages (client_msg_id, sender_id);",
    )
    .await?;
    Ok(())
}

/// The old layout's `delivered_at`: set on what the recipient's delivered mark covers.
const DELIVERED_AT: &str = "CASE WHEN m.seq <= (SELECT k.delivered_up_to_seq
        FROM conversation_members k
        WHERE k.user_id = m.recipient_id AND k.peer_id = m.sender_id)
    THEN CURRENT_TIMESTAMP END";

async fn messages_down_sqlite(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    db.execute_unprepared(
        "CREATE TABLE chat_messages_old (
             seq integer NOT NULL PRIMARY KEY AUTOINCREMENT,
             message_id uuid_text NOT NULL,
             conversation_key varchar NOT NULL,
             sender_id uuid_text NOT NULL,
             recipient_id uuid_text NOT NULL,
             client_msg_id varchar NOT NULL,
             text text NOT NULL,
             sent_at timestamp_with_timezone_text NOT NULL,
             delivered_at timestamp_with_timezone_text NULL,
             CONSTRAINT fk_chat_messages_sender_id FOREIGN KEY (sender_id)
                 REFERENCES users (id) ON DELETE CASCADE ON UPDATE CASCADE,
             CONSTRAINT fk_chat_messages_recipient_id FOREIGN KEY (recipient_id)
                 REFERENCES users (id) ON DELETE CASCADE ON UPDATE CASCADE
         )",
    )
    .await?;
    // The old key spelled both ids as hyphenated text, lower first.
    let text_id = |column: &str| {
        format!(
            "(SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-' || substr(h, 13, 4) || '-'
                 || substr(h, 17, 4) || '-' || substr(h, 21) FROM (SELECT lower(hex({column})) AS h))"
        )
    };
    db.execute_unprepared(&format!(
        "INSERT INTO chat_messages_old
             (seq, message_id, conversation_key, sender_id, recipient_id, client_msg_id, text,
              sent_at, delivered_at)
         SELECT m.seq, m.message_id, {low} || ':' || {high}, m.sender_id, m.recipient_id,
                m.client_msg_id, m.text, m.sent_at, {DELIVERED_AT}
         FROM chat_messages m JOIN conversations c ON c.id = m.conversation_id",
        low = text_id("c.user_low"),
        high = text_id("c.user_high"),
    ))
    .await?;
    replace_sqlite_messages(manager, "chat_messages_old").await?;
    create_old_message_indexes(manager, true).await
}

async fn messages_down_postgres(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    db.execute_unprepared(&format!(
        "ALTER TABLE chat_messages ADD COLUMN conversation_key varchar,
             ADD COLUMN delivered_at timestamp with time zone;
         UPDATE chat_messages m SET
             conversation_key = c.user_low::text || ':' || c.user_high::text,
             delivered_at = {DELIVERED_AT}
         FROM conversations c WHERE c.id = m.conversation_id;
         ALTER TABLE chat_messages ALTER COLUMN conversation_key SET NOT NULL;
         ALTER TABLE chat_messages ADD CONSTRAINT fk_chat_messages_recipient_id
             FOREIGN KEY (recipient_id) REFERENCES users (id)
             ON DELETE CASCADE ON UPDATE CASCADE;
         ALTER TABLE chat_messages ADD CONSTRAINT fk_chat_messages_sender_id
             FOREIGN KEY (sender_id) REFERENCES users (id)
             ON DELETE CASCADE ON UPDATE CASCADE;
         DROP INDEX idx_chat_messages_conversation_id_seq;
         DROP INDEX idx_chat_messages_client_msg_sender;
         ALTER TABLE chat_messages DROP COLUMN conversation_id;"
    ))
    .await?;
    create_old_message_indexes(manager, false).await
}

/// The indexes migration 4 made that this one dropped (SQLite: all of them, with the table).
async fn create_old_message_indexes(manager: &SchemaManager<'_>, all: bool) -> Result<(), DbErr> {
    let db = manager.get_connection();
    if all {
        db.execute_unprepared(
            "CREATE UNIQUE INDEX idx_chat_messages_message_id ON chat_messages (message_id);
             CREATE INDEX idx_chat_messages_sent_at ON chat_messages (sent_at);",
        )
        .await?;
    }
    db.execute_unprepared(
        "CREATE UNIQUE INDEX idx_chat_messages_sender_client_msg
             ON chat_messages (sender_id, client_msg_id);
         CREATE INDEX idx_chat_messages_conversation_key_seq
             ON chat_messages (conversation_key, seq);
         CREATE INDEX idx_chat_messages_recipient_id_delivered_at_seq
             ON chat_messages (recipient_id, delivered_at, seq);",
    )
    .await?;
    Ok(())
}
