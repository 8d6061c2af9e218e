//! `stats_buckets`: connections, messages and errors per hour and per day, kept across restarts.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stats_buckets")]
pub struct Model {
    /// `hour` or `day`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub kind: String,
    /// Start of the bucket (UTC, on the hour or at midnight).
    #[sea_orm(primary_key, auto_increment = false)]
    pub bucket_start: DateTimeUtc,
    /// TCP connections accepted in the bucket.
    pub connections: i64,
    /// Client messages of every kind received in the bucket.
    pub messages: i64,
    /// Error statuses and error events sent in the bucket.
    pub errors: i64,
}

impl ActiveModelBehavior for ActiveModel {}
