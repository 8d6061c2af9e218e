//! A user's conversations: the peer, the newest message, unread counts and both read marks.

use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, Condition, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
};
use uuid::Uuid;

use crate::db::{
    Database, StoredMessage,
    ids::UserId,
    tables::{chat_messages, read_marks, users},
};

/// One conversation of a user.
#[derive(Debug, Clone)]
pub struct ConversationRow {
    /// The other user.
    pub peer: users::Model,
    /// The newest message either way.
    pub last_message: StoredMessage,
    /// Messages from the peer after the user's read mark.
    pub unread_count: u64,
    /// The user's read mark on the peer's messages.
    pub read_up_to_seq: i64,
    /// The peer's read mark on the user's messages.
    pub peer_read_up_to_seq: i64,
}

impl Database {
    /// Every conversation of `me`, newest activity first.
    pub async fn conversations_of(&self, me: UserId) -> Result<Vec<ConversationRow>, DbErr> {
        let involves_me = Condition::any()
            .add(chat_messages::Column::SenderId.eq(me.0))
            .add(chat_messages::Column::RecipientId.eq(me.0));
        let last_seqs: Vec<i64> = chat_messages::Entity::find()
            .select_only()
            .column_as(chat_messages::Column::Seq.max(), "last_seq")
            .filter(involves_me)
            .group_by(chat_messages::Column::ConversationKey)
            .into_tuple()
            .all(self.conn())
            .await?;
        if last_seqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut last_messages = chat_messages::Entity::find()
            .filter(chat_messages::Column::Seq.is_in(last_seqs))
            .all(self.conn())
            .await?;
        last_messages.sort_by_key(|m| std::cmp::Reverse(m.seq));

        let peer_of = |m: &StoredMessage| {
            if m.sender_id == me.0 {
                m.recipient_id
            } else {
                m.sender_id
            }
        };
        let peer_ids: Vec<Uuid> = last_messages.iter().map(peer_of).collect();
        let peers: HashMap<Uuid, users::Model> = users::Entity::find()
            .filter(users::Column::Id.is_in(peer_ids.iter().copied()))
            .all(self.conn())
            .await?
            .into_iter()
            .map(|u| (u.id, u))
            .collect();
        let marks = read_marks::Entity::find()
            .filter(
                Condition::any()
                    .add(read_marks::Column::ReaderId.eq(me.0))
                    .add(read_marks::Column::PeerId.eq(me.0)),
            )
            .all(self.conn())
            .await?;
        let mark = |reader: Uuid, peer: Uuid| {
            marks
                .iter()
                .find(|m| m.reader_id == reader && m.peer_id == peer)
                .map_or(0, |m| m.read_up_to_seq)
        };

        let mut rows = Vec::with_capacity(last_messages.len());
        for last_message in last_messages {
            let peer_id = peer_of(&last_message);
            let Some(peer) = peers.get(&peer_id).cloned() else {
                continue;
            };
            let read_up_to_seq = mark(me.0, peer_id);
            let unread_count = chat_messages::Entity::find()
                .filter(chat_messages::Column::SenderId.eq(peer_id))
                .filter(chat_messages::Column::RecipientId.eq(me.0))
                .filter(chat_messages::Column::Seq.gt(read_up_to_seq))
                .count(self.conn())
                .await?;
            rows.push(ConversationRow {
                peer,
                last_message,
                unread_count,
                read_up_to_seq,
                peer_read_up_to_seq: mark(peer_id, me.0),
            });
        }
        Ok(rows)
    }
}
