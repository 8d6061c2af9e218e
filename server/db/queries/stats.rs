//! Hourly and daily statistics (`stats_buckets`), and a user's message counts.

use chrono::{DateTime, Duration, DurationRound, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    sea_query::{Alias, Expr, OnConflict},
};

use super::statement;
use crate::db::{Database, ids::UserId, tables::stats_buckets};

/// The two sizes of stored buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketKind {
    /// One UTC hour.
    Hour,
    /// One UTC day.
    Day,
}

impl BucketKind {
    /// How `stats_buckets.kind` names it.
    fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// How long one bucket lasts.
    pub fn length(self) -> Duration {
        match self {
            Self::Hour => Duration::hours(1),
            Self::Day => Duration::days(1),
        }
    }

    /// The start of the bucket that holds `at`.
    pub fn start_of(self, at: DateTime<Utc>) -> DateTime<Utc> {
        // Rounding down to a whole hour or day of the Unix epoch cannot fail for real clocks.
        at.duration_trunc(self.length()).unwrap_or(at)
    }
}

/// What one bucket counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketCounts {
    /// TCP connections accepted.
    pub connections: u64,
    /// Client messages of every kind.
    pub messages: u64,
    /// Error statuses and error events.
    pub errors: u64,
}

impl std::ops::AddAssign for BucketCounts {
    fn add_assign(&mut self, other: Self) {
        self.connections += other.connections;
        self.messages += other.messages;
        self.errors += other.errors;
    }
}

impl Database {
    /// Adds counts gathered per hour (keyed by the hour's start) to their hourly buckets and to
    /// the daily buckets holding them, in one transaction: either all of it is stored or none.
    pub async fn add_to_stats(&self, hours: &[(DateTime<Utc>, BucketCounts)]) -> Result<(), DbErr> {
        self.transaction(|tx| async move {
            for (hour, counts) in hours {
                for kind in [BucketKind::Hour, BucketKind::Day] {
                    stats_buckets::Entity::insert(stats_buckets::ActiveModel {
                        kind: Set(kind.as_str().to_owned()),
                        bucket_start: Set(kind.start_of(*hour)),
                        connections: Set(counts.connections as i64),
                        messages: Set(counts.messages as i64),
                        errors: Set(counts.errors as i64),
                    })
                    .on_conflict(adding_on_conflict())
                    .exec_without_returning(&*tx)
                    .await?;
                }
            }
            Ok(())
        })
        .await
    }

    /// The stored buckets of `kind` that start at or after `from`, oldest first.
    pub async fn stats_since(
        &self,
        kind: BucketKind,
        from: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, BucketCounts)>, DbErr> {
        let rows = stats_buckets::Entity::find()
            .filter(stats_buckets::Column::Kind.eq(kind.as_str()))
            .filter(stats_buckets::Column::BucketStart.gte(from))
            .order_by_asc(stats_buckets::Column::BucketStart)
            .all(self.conn())
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let counts = BucketCounts {
                    connections: row.connections.max(0) as u64,
                    messages: row.messages.max(0) as u64,
                    errors: row.errors.max(0) as u64,
                };
                (row.bucket_start, counts)
            })
            .collect())
    }

    /// How many stored messages `user` sent, and how many addressed to them reached one of their
    /// sessions. Messages past retention are deleted, so they no longer count.
    pub async fn message_counts_of(&self, user: UserId) -> Result<(u64, u64), DbErr> {
        #[derive(FromQueryResult)]
        struct Counts {
            sent: i64,
            received: i64,
        }
        // Both through the user's conversations, whose messages are indexed in order.
        let sql = "SELECT
                count(CASE WHEN m.sender_id = k.user_id THEN 1 END) AS sent,
                count(CASE WHEN m.sender_id = k.peer_id AND m.seq <= k.delivered_up_to_seq
                    THEN 1 END) AS received
            FROM conversation_members k
            JOIN chat_messages m ON m.conversation_id = k.conversation_id
            WHERE k.user_id = $1";
        // An aggregate without GROUP BY always gives one row.
        let counts = Counts::find_by_statement(statement(self.backend(), sql, [user.into()]))
            .one(self.conn())
            .await?
            .ok_or(DbErr::RecordNotFound("message counts".into()))?;
        let (sent, received) = (
            u64::try_from(counts.sent).unwrap_or(0),
            u64::try_from(counts.received).unwrap_or(0),
        );
        Ok((sent, received))
    }
}

/// On a bucket that exists already: add the new counts to the stored ones.
fn adding_on_conflict() -> OnConflict {
    use sea_orm::sea_query::ExprTrait;
    use stats_buckets::Column;
    let mut on_conflict = OnConflict::columns([Column::Kind, Column::BucketStart]);
    for column in [Column::Connections, Column::Messages, Column::Errors] {
        let stored = Expr::col((stats_buckets::Entity, column));
        let added = Expr::col((Alias::new("excluded"), column));
        on_conflict.value(column, stored.add(added));
    }
    on_conflict
}
