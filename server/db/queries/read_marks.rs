//! Read marks: per reader and peer, the highest seq read. They only move forward.

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, sea_query::Expr,
};

use crate::db::{
    Database, StoredMessage,
    ids::{Seq, UserId},
    tables::{chat_messages, read_marks},
};

impl Database {
    /// `reader`'s read mark on messages from `peer` (0 when none).
    pub async fn read_mark(&self, reader: UserId, peer: UserId) -> Result<Seq, DbErr> {
        Ok(read_marks::Entity::find_by_id((reader, peer))
            .one(self.conn())
            .await?
            .map_or(Seq::ZERO, |mark| mark.read_up_to_seq))
    }

    /// Moves `reader`'s mark on `peer` forward to the newest message from `peer` at or below
    /// `up_to_seq`, and marks what it covers delivered. Returns the mark and, when it moved, the
    /// newest message it now covers.
    pub async fn advance_read_mark(
        &self,
        reader: UserId,
        peer: UserId,
        up_to_seq: Seq,
    ) -> Result<(Seq, Option<StoredMessage>), DbErr> {
        let now = Utc::now();
        self.transaction(|tx| async move {
            // Write first: on SQLite a transaction that reads before its first write can fail to
            // upgrade to a writer when another connection commits in between.
            read_marks::Entity::insert(read_marks::ActiveModel {
                reader_id: Set(reader),
                peer_id: Set(peer),
                read_up_to_seq: Set(Seq::ZERO),
                updated_at: Set(now),
            })
            .on_conflict_do_nothing()
            .exec_without_returning(&*tx)
            .await?;
            let old_mark = read_marks::Entity::find_by_id((reader, peer))
                .one(&*tx)
                .await?
                .map_or(Seq::ZERO, |mark| mark.read_up_to_seq);
            let newest = chat_messages::Entity::find()
                .filter(chat_messages::Column::SenderId.eq(peer))
                .filter(chat_messages::Column::RecipientId.eq(reader))
                .filter(chat_messages::Column::Seq.lte(up_to_seq))
                .order_by_desc(chat_messages::Column::Seq)
                .one(&*tx)
                .await?;
            let Some(newest) = newest.filter(|m| m.seq > old_mark) else {
                return Ok((old_mark, None));
            };

            // The WHERE keeps the mark from moving back if another call moved it meanwhile; then
            // that call's mark stands and this one reports it.
            let moved = read_marks::Entity::update_many()
                .col_expr(read_marks::Column::ReadUpToSeq, Expr::value(newest.seq))
                .col_expr(read_marks::Column::UpdatedAt, Expr::value(now))
                .filter(read_marks::Column::ReaderId.eq(reader))
                .filter(read_marks::Column::PeerId.eq(peer))
                .filter(read_marks::Column::ReadUpToSeq.lt(newest.seq))
                .exec(&*tx)
                .await?
                .rows_affected
                > 0;
            if !moved {
                let mark = read_marks::Entity::find_by_id((reader, peer))
                    .one(&*tx)
                    .await?
                    .map_or(old_mark, |mark| mark.read_up_to_seq);
                return Ok((mark, None));
            }
            chat_messages::Entity::update_many()
                .col_expr(chat_messages::Column::DeliveredAt, Expr::value(now))
                .filter(chat_messages::Column::SenderId.eq(peer))
                .filter(chat_messages::Column::RecipientId.eq(reader))
                .filter(chat_messages::Column::Seq.lte(newest.seq))
                .filter(chat_messages::Column::DeliveredAt.is_null())
                .exec(&*tx)
                .await?;
            Ok((newest.seq, Some(newest)))
        })
        .await
    }
}
