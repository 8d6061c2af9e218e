//! A user's conversations: the peer, the newest message, unread counts and both members' marks.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QuerySelect};

use super::{marks::Marks, statement};
use crate::db::{
    Database, StoredMessage,
    ids::{Seq, UserId},
    tables::{chat_messages, conversation_members, users},
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
    /// The user's marks on the peer's messages.
    pub marks: Marks,
    /// The peer's marks on the user's messages.
    pub peer_marks: Marks,
}

impl Database {
    /// Every conversation of `me` that still has messages, newest activity first. One query over
    /// `me`'s member rows, each conversation's newest message and unread count found by its
    /// `(conversation_id, seq)` index, whatever the length of its history.
    pub async fn conversations_of(&self, me: UserId) -> Result<Vec<ConversationRow>, DbErr> {
        #[derive(FromQueryResult)]
        struct Summary {
            peer_id: UserId,
            delivered: Seq,
            read: Seq,
            peer_delivered: Seq,
            peer_read: Seq,
            last_seq: Option<Seq>,
            unread: i64,
        }
        let sql = "SELECT k.peer_id, k.delivered_up_to_seq AS delivered, k.read_up_to_seq AS read,
                p.delivered_up_to_seq AS peer_delivered, p.read_up_to_seq AS peer_read,
                (SELECT max(m.seq) FROM chat_messages m
                  WHERE m.conversation_id = k.conversation_id) AS last_seq,
                (SELECT count(*) FROM chat_messages m
                  WHERE m.conversation_id = k.conversation_id AND m.sender_id = k.peer_id
                    AND m.seq > k.read_up_to_seq) AS unread
            FROM conversation_members k
            JOIN conversation_members p ON p.user_id = k.peer_id AND p.peer_id = k.user_id
            WHERE k.user_id = $1";
        let summaries = Summary::find_by_statement(statement(self.backend(), sql, [me.into()]))
            .all(self.conn())
            .await?;
        let summaries: HashMap<Seq, Summary> = summaries
            .into_iter()
            .filter_map(|s| Some((s.last_seq?, s)))
            .collect();
        if summaries.is_empty() {
            return Ok(Vec::new());
        }
        let mut last_messages = chat_messages::Entity::find()
            .filter(chat_messages::Column::Seq.is_in(summaries.keys().copied()))
            .all(self.conn())
            .await?;
        last_messages.sort_by_key(|m| std::cmp::Reverse(m.seq));
        let peers: HashMap<UserId, users::Model> = users::Entity::find()
            .filter(users::Column::Id.is_in(summaries.values().map(|s| s.peer_id)))
            .all(self.conn())
            .await?
            .into_iter()
            .map(|u| (u.id, u))
            .collect();

        Ok(last_messages
            .into_iter()
            .filter_map(|last_message| {
                let summary = &summaries[&last_message.seq];
                Some(ConversationRow {
                    peer: peers.get(&summary.peer_id)?.clone(),
                    last_message,
                    unread_count: u64::try_from(summary.unread).unwrap_or(0),
                    marks: Marks {
                        delivered: summary.delivered,
                        read: summary.read,
                    },
                    peer_marks: Marks {
                        delivered: summary.peer_delivered,
                        read: summary.peer_read,
                    },
                })
            })
            .collect())
    }

    /// Everyone `me` has a conversation with.
    pub async fn conversation_peers(&self, me: UserId) -> Result<Vec<UserId>, DbErr> {
        conversation_members::Entity::find()
            .select_only()
            .column(conversation_members::Column::PeerId)
            .filter(conversation_members::Column::UserId.eq(me))
            .into_tuple()
            .all(self.conn())
            .await
    }
}
