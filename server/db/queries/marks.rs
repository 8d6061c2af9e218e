//! Each member's delivered and read marks on the peer's messages. They only move forward.

use chrono::Utc;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use super::statement;
use crate::db::{
    Database, StoredMessage,
    ids::{ConversationId, Seq, UserId, conversation_pair},
    tables::{chat_messages, conversation_members, conversations},
};

/// How far a user has the messages of a peer: received by one of their clients, and read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    /// Every message from the peer up to this seq has reached a client of the user.
    pub delivered: Seq,
    /// The user has read every message from the peer up to this seq.
    pub read: Seq,
}

impl From<&conversation_members::Model> for Marks {
    fn from(member: &conversation_members::Model) -> Self {
        Self {
            delivered: member.delivered_up_to_seq,
            read: member.read_up_to_seq,
        }
    }
}

impl Database {
    /// The conversation of `a` and `b`, if they have one.
    pub async fn conversation_id(
        &self,
        a: UserId,
        b: UserId,
    ) -> Result<Option<ConversationId>, DbErr> {
        let (low, high) = conversation_pair(a, b);
        Ok(conversations::Entity::find()
            .filter(conversations::Column::UserLow.eq(low))
            .filter(conversations::Column::UserHigh.eq(high))
            .one(self.conn())
            .await?
            .map(|c| c.id))
    }

    /// `user`'s marks on the messages from `peer` (0 when they have no conversation).
    pub async fn marks(&self, user: UserId, peer: UserId) -> Result<Marks, DbErr> {
        Ok(conversation_members::Entity::find_by_id((user, peer))
            .one(self.conn())
            .await?
            .as_ref()
            .map(Marks::from)
            .unwrap_or_default())
    }

    /// Moves `reader`'s read mark on `peer` forward to the newest message from `peer` at or below
    /// `up_to_seq`, and the delivered mark with it (what was read was delivered). Returns the read
    /// mark and, when it moved, the newest message it now covers.
    pub async fn advance_read_mark(
        &self,
        reader: UserId,
        peer: UserId,
        up_to_seq: Seq,
    ) -> Result<(Seq, Option<StoredMessage>), DbErr> {
        // One statement that writes first: on SQLite a transaction that reads before its first
        // write can fail to upgrade to a writer when another connection commits in between. The
        // WHERE keeps the mark from moving back if another call moved it meanwhile.
        let sql = "WITH newest AS (
                SELECT max(m.seq) AS seq FROM conversation_members k
                JOIN chat_messages m ON m.conversation_id = k.conversation_id
                WHERE k.user_id = $1 AND k.peer_id = $2 AND m.sender_id = $2 AND m.seq <= $3)
            UPDATE conversation_members SET
                read_up_to_seq = newest.seq,
                delivered_up_to_seq = CASE WHEN delivered_up_to_seq >= newest.seq
                    THEN delivered_up_to_seq ELSE newest.seq END,
                updated_at = $4
            FROM newest
            WHERE user_id = $1 AND peer_id = $2 AND read_up_to_seq < newest.seq
            RETURNING read_up_to_seq";
        let values = [
            reader.into(),
            peer.into(),
            up_to_seq.into(),
            Utc::now().into(),
        ];
        let backend = self.backend();
        self.transaction(|tx| {
            let update = statement(backend, sql, values.clone());
            async move {
                let moved = tx
                    .query_one_raw(update)
                    .await?
                    .map(|row| row.try_get::<Seq>("", "read_up_to_seq"))
                    .transpose()?;
                let Some(mark) = moved else {
                    let mark = conversation_members::Entity::find_by_id((reader, peer))
                        .one(&*tx)
                        .await?
                        .map_or(Seq::ZERO, |member| member.read_up_to_seq);
                    return Ok((mark, None));
                };
                let newest = chat_messages::Entity::find_by_id(mark).one(&*tx).await?;
                Ok((mark, newest))
            }
        })
        .await
    }
}
