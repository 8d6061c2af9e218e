//! A user's conversations: the peer, the newest message, unread counts and both read marks.

use std::collections::HashMap;

use crate::db::{
    Database, StoredMessage,
    ids::{Seq, UserId},
    tables::{chat_messages, read_marks, users},
};
use sea_orm::{
    ColumnTrait, Condition, DbErr, EntityTrait, FromQueryResult, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait, Func, Query},
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
    pub read_up_to_seq: Seq,
    /// The peer's read mark on the user's messages.
    pub peer_read_up_to_seq: Seq,
}

impl Database {
    /// Every conversation of `me`, newest activity first.
    pub async fn conversations_of(&self, me: UserId) -> Result<Vec<ConversationRow>, DbErr> {
        let involves_me = Condition::any()
            .add(chat_messages::Column::SenderId.eq(me))
            .add(chat_messages::Column::RecipientId.eq(me));
        let last_seqs: Vec<Seq> = chat_messages::Entity::find()
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
            if m.sender_id == me {
                m.recipient_id
            } else {
                m.sender_id
            }
        };
        let peer_ids: Vec<UserId> = last_messages.iter().map(peer_of).collect();
        let peers: HashMap<UserId, users::Model> = users::Entity::find()
            .filter(users::Column::Id.is_in(peer_ids.iter().copied()))
            .all(self.conn())
            .await?
            .into_iter()
            .map(|u| (u.id, u))
            .collect();
        let marks = read_marks::Entity::find()
            .filter(
                Condition::any()
                    .add(read_marks::Column::ReaderId.eq(me))
                    .add(read_marks::Column::PeerId.eq(me)),
            )
            .all(self.conn())
            .await?;
        let marks: HashMap<(UserId, UserId), Seq> = marks
            .into_iter()
            .map(|m| ((m.reader_id, m.peer_id), m.read_up_to_seq))
            .collect();
        let mark =
            |reader: UserId, peer: UserId| marks.get(&(reader, peer)).copied().unwrap_or_default();
        let unread = self.unread_counts(me).await?;

        let mut rows = Vec::with_capacity(last_messages.len());
        for last_message in last_messages {
            let peer_id = peer_of(&last_message);
            let Some(peer) = peers.get(&peer_id).cloned() else {
                continue;
            };
            let read_up_to_seq = mark(me, peer_id);
            rows.push(ConversationRow {
                peer,
                last_message,
                unread_count: unread.get(&peer_id).copied().unwrap_or(0),
                read_up_to_seq,
                peer_read_up_to_seq: mark(peer_id, me),
            });
        }
        Ok(rows)
    }

    /// Everyone `me` has a conversation with: the users they sent messages to or got messages
    /// from. Two index lookups (by sender, and by recipient).
    pub async fn conversation_peers(&self, me: UserId) -> Result<Vec<UserId>, DbErr> {
        use chat_messages::Column as M;
        let mut peers: Vec<UserId> = Vec::new();
        for (mine, theirs) in [(M::SenderId, M::RecipientId), (M::RecipientId, M::SenderId)] {
            let found: Vec<UserId> = chat_messages::Entity::find()
                .select_only()
                .column(theirs)
                .distinct()
                .filter(mine.eq(me))
                .into_tuple()
                .all(self.conn())
                .await?;
            peers.extend(found);
        }
        peers.sort();
        peers.dedup();
        Ok(peers)
    }

    /// For each sender, how many of their messages to `me` lie past `me`'s read mark on them:
    /// one grouped query, whatever the number of conversations.
    async fn unread_counts(&self, me: UserId) -> Result<HashMap<UserId, u64>, DbErr> {
        use chat_messages::Column as M;
        use read_marks::Column as R;

        #[derive(FromQueryResult)]
        struct Unread {
            sender_id: UserId,
            unread: i64,
        }

        let msg = |column: M| Expr::col((chat_messages::Entity, column));
        let mark = |column: R| Expr::col((read_marks::Entity, column));
        let query = Query::select()
            .expr_as(msg(M::SenderId), "sender_id")
            .expr_as(Func::count(msg(M::Seq)), "unread")
            .from(chat_messages::Entity)
            .left_join(
                read_marks::Entity,
                Condition::all()
                    .add(mark(R::ReaderId).eq(me))
                    .add(mark(R::PeerId).equals((chat_messages::Entity, M::SenderId))),
            )
            .and_where(msg(M::RecipientId).eq(me))
            .and_where(msg(M::Seq).gt(Func::coalesce([mark(R::ReadUpToSeq), Expr::val(0)])))
            .group_by_col((chat_messages::Entity, M::SenderId))
            .to_owned();
        let rows = Unread::find_by_statement(self.backend().build(&query))
            .all(self.conn())
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.sender_id, u64::try_from(row.unread).unwrap_or(0)))
            .collect())
    }
}
