//! This node among the nodes that share one database: it registers under its id at start (a
//! live node's id is refused), heartbeats while it runs, and cleans up after nodes that stop
//! heartbeating: their sessions ended, their users' presence rows folded away. A graceful stop
//! unregisters it and cleans only its own rows (see `Pipeline::remove_node`).
//!
//! On SQLite one process owns the database, so there is no one to heartbeat for: a start takes
//! over whatever an earlier run left.

use std::{sync::Weak, time::Duration};

use anyhow::bail;
use chrono::Utc;
use sea_orm::DbBackend;
use uuid::Uuid;

use crate::{App, db::Database};

/// How often a node records that it is alive and looks for dead ones.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Silence after which a node is dead and another cleans up after it.
pub const DEAD_AFTER: Duration = Duration::from_secs(5);

/// The default `--node-id`: the host name (so operators can tell nodes apart) and a random
/// suffix (so two processes on one host, or a replaced container, never share it).
pub fn default_id() -> String {
    let host: String = whoami::hostname()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(40)
        .collect();
    let suffix = &Uuid::new_v4().simple().to_string()[..8];
    if host.is_empty() {
        format!("node-{suffix}")
    } else {
        format!("{host}-{suffix}")
    }
}

/// Registers this run (`boot`) of `node_id`, taking over from an earlier run of the same id, and
/// cleans up after nodes that are already dead. Fails while another live node holds the id.
pub async fn join(db: &Database, node_id: &str, boot: Uuid) -> anyhow::Result<()> {
    let now = Utc::now();
    let dead_before = match db.backend() {
        DbBackend::Postgres => now - DEAD_AFTER,
        _ => now + chrono::Duration::milliseconds(1),
    };
    if !db.register_node(node_id, boot, now, dead_before).await? {
        bail!(
            "node id {node_id:?} belongs to a live node (it heartbeat within the last {}s); \
             give this node another --node-id",
            DEAD_AFTER.as_secs()
        );
    }
    db.clean_leftovers(node_id, now).await?;
    db.claim_dead_nodes(now, dead_before).await?;
    Ok(())
}

/// Heartbeats for this node and cleans up after dead ones, until shutdown begins. Only on
/// PostgreSQL, the one database several nodes share.
pub async fn keep_alive(app: Weak<App>) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let Some(app) = app.upgrade() else { return };
        if app.hub.is_shutting_down() {
            return;
        }
        let config = app.hub.config();
        let (node, boot) = (config.node_id.as_str(), config.boot_id);
        let now = Utc::now();
        let dead_before = now - DEAD_AFTER;
        match app.db.node_heartbeat(node, boot, now).await {
            Ok(true) => {}
            // Silent for too long (a stall, or the database out of reach) and cleaned up after:
            // register again, so no one cleans up what this run writes from now on, then write
            // again the rows that were cleaned.
            Ok(false) => {
                tracing::warn!(node, "this node was taken for dead; registering again");
                match app.db.register_node(node, boot, now, dead_before).await {
                    Ok(true) => app.hub.rewrite_rows(),
                    Ok(false) => tracing::warn!(node, "another live node holds this node's id"),
                    Err(err) => tracing::warn!(error = %err, "could not register this node again"),
                }
            }
            Err(err) => tracing::warn!(error = %err, "node heartbeat failed"),
        }
        match app.db.claim_dead_nodes(now, dead_before).await {
            Ok(claimed) => {
                for dead in claimed {
                    tracing::info!(
                        node,
                        dead,
                        "cleaned up after a node that stopped heartbeating"
                    );
                    app.metrics.dead_node_cleaned();
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not look for dead nodes"),
        }
    }
}
