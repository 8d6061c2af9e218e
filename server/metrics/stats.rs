//! Hourly and daily buckets: counted per hour in memory, added to `stats_buckets` every few
//! seconds and at shutdown, and read back with what is not stored yet.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::DbErr;
use tokio_util::sync::CancellationToken;

use super::Metrics;
use crate::{
    convert::timestamp,
    db::{BucketCounts, BucketKind, Database},
    proto::StatsBucket,
};

/// How often pending counts are stored: at most this much is lost if the process is killed.
const FLUSH_INTERVAL: Duration = Duration::from_secs(10);

impl Metrics {
    /// Adds the counts gathered since the last flush to the stored buckets. On failure they stay
    /// pending for the next flush.
    pub async fn flush_stats(&self, db: &Database) -> Result<(), DbErr> {
        let _flushing = self.flushing.lock().await;
        let pending: Vec<(DateTime<Utc>, BucketCounts)> = std::mem::take(&mut self.live().pending)
            .into_iter()
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let stored = db.add_to_stats(&pending).await;
        if stored.is_err() {
            let mut live = self.live();
            for (hour, counts) in pending {
                *live.pending.entry(hour).or_default() += counts;
            }
        }
        stored
    }

    /// The last `count` buckets of `kind`, oldest first, ending with the current one; stored and
    /// pending counts together, and empty buckets as zeros.
    pub async fn stats(
        &self,
        db: &Database,
        kind: BucketKind,
        count: u32,
    ) -> Result<Vec<StatsBucket>, DbErr> {
        let current = kind.start_of(Utc::now());
        let first = current - kind.length() * (count.max(1) as i32 - 1);
        let mut buckets: BTreeMap<DateTime<Utc>, BucketCounts> = (0..count as i32)
            .map(|i| (first + kind.length() * i, BucketCounts::default()))
            .collect();
        let _flushing = self.flushing.lock().await;
        for (start, counts) in db.stats_since(kind, first).await? {
            if let Some(bucket) = buckets.get_mut(&start) {
                *bucket += counts;
            }
        }
        for (hour, counts) in &self.live().pending {
            if let Some(bucket) = buckets.get_mut(&kind.start_of(*hour)) {
                *bucket += *counts;
            }
        }
        Ok(buckets
            .into_iter()
            .map(|(start, counts)| StatsBucket {
                start: Some(timestamp(start)),
                connections: counts.connections,
                messages: counts.messages,
                errors: counts.errors,
            })
            .collect())
    }
}

/// Stores pending counts every [`FLUSH_INTERVAL`] until `stop` is cancelled. The server flushes
/// once more itself after the last connection is gone.
pub async fn run_stats_flusher(metrics: Arc<Metrics>, db: Database, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(FLUSH_INTERVAL);
    ticker.tick().await; // the first tick is immediate; nothing is pending yet
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {
                if let Err(err) = metrics.flush_stats(&db).await {
                    tracing::warn!(error = %err, "could not store hourly and daily statistics");
                }
            }
        }
    }
}
