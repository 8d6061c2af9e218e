//! Presence write-through: one task applies session and presence rows in the order they happened,
//! so the hub never waits on the database. It applies whatever has queued up in one transaction:
//! on SQLite each commit is an fsync, and thousands of sessions opening at once would otherwise be
//! thousands of serial commits competing with the message writer for the one write lock.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseTransaction, DbErr};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::{
    db::{
        Database, StoredStatus,
        ids::{SessionId, UserId},
    },
    pipeline::group_commit,
};

/// A write for `sessions` or `users_online`.
#[derive(Debug)]
pub(crate) enum StoreOp {
    /// A session started: insert its row.
    SessionOpened {
        id: SessionId,
        user: UserId,
        kind: &'static str,
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
    /// At shutdown, after everything queued before it: unregister this node, end its sessions
    /// and fold its users' rows away. `done` is answered once that is committed.
    RemoveNode {
        boot: Uuid,
        done: oneshot::Sender<()>,
    },
}

/// Most ops applied in one transaction.
const MAX_BATCH: usize = 1024;

pub(super) async fn run(db: Database, mut ops: mpsc::UnboundedReceiver<StoreOp>, node_id: String) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while ops.recv_many(&mut batch, MAX_BATCH).await > 0 {
        drop_overwritten_presence(&mut batch);
        apply_batch(&db, &batch, &node_id).await;
        // Answered only now: everything queued before a reset is committed (or failed) with it.
        for op in batch.drain(..) {
            if let StoreOp::RemoveNode { done, .. } = op {
                let _ = done.send(());
            }
        }
    }
}

/// Applies `batch` in order in one transaction. If that fails, applies each op on its own, so
/// one bad row fails only itself.
async fn apply_batch(db: &Database, batch: &[StoreOp], node_id: &str) {
    let outcomes = group_commit("presence batch", batch, |ops| async move {
        db.transaction(|tx| async move {
            for op in ops {
                apply(&tx, op, node_id).await?;
            }
            Ok(vec![(); ops.len()])
        })
        .await
    })
    .await;
    for err in outcomes.into_iter().filter_map(Result::err) {
        tracing::warn!(error = %err, "presence write-through failed");
    }
}

/// Applies one op in `tx`: the batch's transaction, or its own when retrying one by one.
async fn apply(tx: &DatabaseTransaction, op: &StoreOp, node_id: &str) -> Result<(), DbErr> {
    match op {
        StoreOp::SessionOpened { id, user, kind, at } => {
            Database::session_opened(tx, *id, *user, node_id, kind, *at).await
        }
        StoreOp::SessionAway { id, away, at } => Database::session_away(tx, *id, *away, *at).await,
        StoreOp::SessionClosed { id, at } => Database::session_closed(tx, *id, *at).await,
        StoreOp::Presence {
            user,
            status,
            sessions,
            last_seen,
        } => Database::upsert_presence(tx, *user, node_id, *status, *sessions, *last_seen).await,
        StoreOp::RemoveNode { boot, .. } => {
            Database::remove_node_on(tx, node_id, *boot, Utc::now()).await
        }
    }
}

/// Drops each Presence upsert that a later one for the same user in the batch overwrites. An
/// upsert sets every column of the row, so only the last one's values would survive anyway (a
/// RemoveNode comes last, at shutdown). It matters when the
/// store falls behind: then a batch holds several publishing rounds, each with an upsert per
/// changed user.
fn drop_overwritten_presence(batch: &mut Vec<StoreOp>) {
    let mut last = HashMap::new();
    for (i, op) in batch.iter().enumerate() {
        if let StoreOp::Presence { user, .. } = op {
            last.insert(*user, i);
        }
    }
    let mut i = 0;
    batch.retain(|op| {
        let keep = match op {
            StoreOp::Presence { user, .. } => last[user] == i,
            _ => true,
        };
        i += 1;
        keep
    });
}

#[cfg(test)]
mod tests {
    use sea_orm::EntityTrait;

    use super::*;
    use crate::{
        db::tables::{sessions, users_online},
        testing::{TestDb, on_both_databases},
    };

    impl TestDb {
        async fn session(&self, id: SessionId) -> Option<sessions::Model> {
            sessions::Entity::find_by_id(id.0)
                .one(self.db.conn())
                .await
                .unwrap()
        }

        async fn presence_on(&self, user: UserId, node: &str) -> Option<users_online::Model> {
            users_online::Entity::find_by_id((user, node.to_owned()))
                .one(self.db.conn())
                .await
                .unwrap()
        }

        async fn presence(&self, user: UserId) -> users_online::Model {
            self.presence_on(user, "node-a").await.unwrap()
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn opened(id: SessionId, user: UserId, seconds: i64) -> StoreOp {
        StoreOp::SessionOpened {
            id,
            user,
            kind: "chat",
            at: at(seconds),
        }
    }

    fn presence(user: UserId, status: StoredStatus, sessions: u32, seconds: i64) -> StoreOp {
        StoreOp::Presence {
            user,
            status,
            sessions,
            last_seen: at(seconds),
        }
    }

    /// Queues `ops` before the task starts, so it takes them as one batch, and waits until it has
    /// applied them all.
    async fn run_batch(db: &Database, ops: Vec<StoreOp>) {
        let (tx, rx) = mpsc::unbounded_channel();
        for op in ops {
            tx.send(op).unwrap();
        }
        drop(tx);
        run(db.clone(), rx, "node-a".into()).await;
    }

    /// One batch applies in queue order: a session opened and closed in it ends closed, the last
    /// presence of a user wins.
    async fn batch_applies_in_order(t: TestDb) {
        let (s1, s2) = (SessionId::new_random(), SessionId::new_random());
        run_batch(
            &t.db,
            vec![
                opened(s1, t.alice, 0),
                presence(t.alice, StoredStatus::Online, 1, 0),
                StoreOp::SessionAway {
                    id: s1,
                    away: true,
                    at: at(1),
                },
                opened(s2, t.bob, 2),
                StoreOp::SessionClosed { id: s2, at: at(3) },
                presence(t.bob, StoredStatus::Online, 1, 2),
                presence(t.alice, StoredStatus::Away, 1, 4),
                presence(t.bob, StoredStatus::Offline, 0, 3),
            ],
        )
        .await;

        let s1 = t.session(s1).await.unwrap();
        assert!(s1.away);
        assert_eq!(s1.ended_at, None);
        assert_eq!(t.session(s2).await.unwrap().ended_at, Some(at(3)));
        let alice = t.presence(t.alice).await;
        assert_eq!((alice.status.as_str(), alice.last_seen), ("away", at(4)));
        let bob = t.presence(t.bob).await;
        assert_eq!((bob.status.as_str(), bob.sessions), ("offline", 0));
    }

    /// A bad op (a session of an unknown user) fails alone; the rest of its batch is written.
    async fn failed_batch_falls_back_to_one_by_one(t: TestDb) {
        let (s1, bad, s2) = (
            SessionId::new_random(),
            SessionId::new_random(),
            SessionId::new_random(),
        );
        run_batch(
            &t.db,
            vec![
                opened(s1, t.alice, 0),
                opened(bad, UserId::new_random(), 0),
                opened(s2, t.bob, 1),
                StoreOp::SessionClosed { id: s1, at: at(2) },
                presence(t.bob, StoredStatus::Online, 1, 1),
            ],
        )
        .await;

        assert_eq!(t.session(s1).await.unwrap().ended_at, Some(at(2)));
        assert!(t.session(bad).await.is_none());
        assert_eq!(t.session(s2).await.unwrap().ended_at, None);
        assert_eq!(t.presence(t.bob).await.status, "online");
    }

    /// RemoveNode is answered only once what was queued before it is committed, and cleans only
    /// this node's rows: its sessions ended, its users' rows folded into node `''` (offline), while
    /// another node's session and presence stay as they were.
    async fn remove_node_cleans_only_its_own_rows(t: TestDb) {
        let (mine, theirs) = (SessionId::new_random(), SessionId::new_random());
        let writer = t.db.writer();
        Database::session_opened(writer, theirs, t.bob, "node-b", "chat", at(0))
            .await
            .unwrap();
        Database::upsert_presence(writer, t.bob, "node-b", StoredStatus::Online, 1, at(0))
            .await
            .unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let (done, answered) = oneshot::channel();
        tx.send(opened(mine, t.alice, 0)).unwrap();
        tx.send(presence(t.alice, StoredStatus::Online, 1, 0))
            .unwrap();
        tx.send(StoreOp::RemoveNode {
            boot: Uuid::new_v4(),
            done,
        })
        .unwrap();
        let before = Utc::now();
        let task = tokio::spawn(run(t.db.clone(), rx, "node-a".into()));

        answered.await.unwrap();
        assert!(t.session(mine).await.unwrap().ended_at.is_some());
        assert!(t.presence_on(t.alice, "node-a").await.is_none());
        let gone = t.presence_on(t.alice, "").await.unwrap();
        assert_eq!((gone.status.as_str(), gone.sessions), ("offline", 0));
        assert!(gone.last_seen >= before, "online until the stop");
        assert_eq!(t.session(theirs).await.unwrap().ended_at, None);
        let bob = t.presence_on(t.bob, "node-b").await.unwrap();
        assert_eq!((bob.status.as_str(), bob.sessions), ("online", 1));
        drop(tx);
        task.await.unwrap();
    }

    on_both_databases!(
        batch_applies_in_order,
        failed_batch_falls_back_to_one_by_one,
        remove_node_cleans_only_its_own_rows,
    );

    #[test]
    fn only_the_last_presence_of_a_user_stays() {
        let (alice, bob) = (UserId::new_random(), UserId::new_random());
        let s1 = SessionId::new_random();
        let mut batch = vec![
            presence(alice, StoredStatus::Online, 1, 0),
            opened(s1, alice, 0),
            presence(bob, StoredStatus::Online, 1, 1),
            presence(alice, StoredStatus::Away, 1, 2),
            StoreOp::RemoveNode {
                boot: Uuid::new_v4(),
                done: oneshot::channel().0,
            },
        ];
        drop_overwritten_presence(&mut batch);
        let kept: Vec<String> = batch
            .iter()
            .map(|op| match op {
                StoreOp::SessionOpened { .. } => "opened".into(),
                StoreOp::Presence { user, status, .. } => {
                    let who = if *user == alice { "alice" } else { "bob" };
                    format!("{who} {}", status.as_str())
                }
                StoreOp::RemoveNode { .. } => "remove".into(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(kept, ["opened", "bob online", "alice away", "remove"]);
    }
}
