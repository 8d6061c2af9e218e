//! Presence write-through: one task applies session and presence rows in the order they happened,
//! so the hub never waits on the database.

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::db::{
    Database, StoredStatus,
    ids::{SessionId, UserId},
};

/// A write for `sessions` or `users_online`.
#[derive(Debug)]
pub(super) enum StoreOp {
    /// A session started: insert its row.
    SessionOpened {
        id: SessionId,
        user: UserId,
        transport: &'static str,
        at: DateTime<Utc>,
    },
    /// A session said it is away (or back).
    SessionAway {
        id: SessionId,
        away: bool,
        at: DateTime<Utc>,
    },
    /// A session ended.
    SessionClosed { id: SessionId, at: DateTime<Utc> },
    /// A user's presence changed.
    Presence {
        user: UserId,
        status: StoredStatus,
        sessions: u32,
        last_seen: DateTime<Utc>,
    },
    /// At shutdown, after everything queued before it: end this node's sessions, users offline.
    ResetNode {
        node_id: String,
        done: oneshot::Sender<()>,
    },
}

pub(super) async fn run(db: Database, mut ops: mpsc::UnboundedReceiver<StoreOp>, node_id: String) {
    while let Some(op) = ops.recv().await {
        let result = match op {
            StoreOp::SessionOpened {
                id,
                user,
                transport,
                at,
            } => db.session_opened(id, user, &node_id, transport, at).await,
            StoreOp::SessionAway { id, away, at } => db.session_away(id, away, at).await,
            StoreOp::SessionClosed { id, at } => db.session_closed(id, at).await,
            StoreOp::Presence {
                user,
                status,
                sessions,
                last_seen,
            } => db.upsert_presence(user, status, sessions, last_seen).await,
            StoreOp::ResetNode { node_id, done } => {
                let result = db.reset_node_presence(&node_id, Utc::now()).await;
                let _ = done.send(());
                result
            }
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, "presence write-through failed");
        }
    }
}
