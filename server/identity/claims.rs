//! Group commit for claims: one task inserts the new users of many sessions in one statement,
//! like the message writer, so a crowd of new users costs one commit (one fsync on SQLite) per
//! batch instead of one each.

use std::collections::HashSet;

use sea_orm::DbErr;
use tokio::sync::{mpsc, oneshot};

use crate::{
    db::{Database, NewUser},
    pipeline::group_commit,
};

/// Claims waiting for the next batch; claimers wait (backpressure) when it is full.
const QUEUE: usize = 4096;
/// Most users inserted in one statement.
const MAX_BATCH: usize = 512;

/// One claim and where its answer goes: whether this claim got the id.
type ClaimRequest = (NewUser, oneshot::Sender<Result<bool, DbErr>>);

/// Hands claims to the batching task.
#[derive(Debug)]
pub(super) struct ClaimWriter {
    /// The task's queue; it ends when this is dropped.
    requests: mpsc::Sender<ClaimRequest>,
}

impl ClaimWriter {
    /// Starts the task on the current runtime.
    pub(super) fn start(db: Database) -> Self {
        let (requests, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, queue));
        Self { requests }
    }

    /// Claims `user.id`: true once the row is committed, false when the id was already taken.
    pub(super) async fn claim(&self, user: NewUser) -> Result<bool, DbErr> {
        let (reply, answer) = oneshot::channel();
        let stopped = || DbErr::Custom("the claim writer stopped".into());
        self.requests
            .send((user, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(db: Database, mut queue: mpsc::Receiver<ClaimRequest>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let users: Vec<NewUser> = batch.iter().map(|(user, _)| user.clone()).collect();
        let won = group_commit("claim batch", &users, |users| claim(&db, users)).await;
        for ((_, reply), won) in batch.drain(..).zip(won) {
            let _ = reply.send(won);
        }
    }
}

/// Claims `users` in one statement; answers for each claim whether it got the id.
async fn claim(db: &Database, users: &[NewUser]) -> Result<Vec<bool>, DbErr> {
    let inserted = db.claim_users(users).await?;
    // The same id twice in one batch: only its first claim inserted the row.
    let mut answered = HashSet::new();
    Ok(users
        .iter()
        .map(|user| inserted.contains(&user.id) && answered.insert(user.id))
        .collect())
}
