//! Pruning users who were claimed and never used. A claim costs one request, yet its row would
//! stay for good; a periodic sweep deletes the users who never opened a session, never sent nor
//! received a message, and have not been online since the cutoff.
//!
//! JWT users stay: their ids follow from the identity provider's subjects, so they can be
//! guessed, and their rows keep those ids from being claimed should JWT sign-in be turned off.

use std::{sync::Weak, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::DbErr;

use super::{Identity, JWT_TOKEN_HASH_PREFIX};
use crate::{App, db::ids::UserId};

/// Longest time between two sweeps.
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(3600);
/// Users read and deleted per statement, so that a sweep holds SQLite's one writer only briefly
/// at a time.
const BATCH: u64 = 500;

/// Sweeps for unused users every hour, or every --prune-unused-users-after-secs when that is
/// shorter, until the server is gone.
pub async fn prune_unused_users(app: Weak<App>) {
    let Some(keep_for) = app
        .upgrade()
        .and_then(|app| app.config.prune_unused_users_after())
    else {
        return;
    };
    loop {
        tokio::time::sleep(keep_for.min(MAX_SWEEP_INTERVAL)).await;
        let Some(app) = app.upgrade() else { return };
        let cutoff = Utc::now() - keep_for;
        // Users the hub holds may have session or presence rows not written yet.
        let in_use = |id| app.hub.presence_of(id).is_some();
        match app.identity.prune_unused(cutoff, in_use).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "deleted users claimed but never used"),
            Err(err) => tracing::warn!(error = %err, "pruning unused users failed"),
        }
    }
}

impl Identity {
    /// Deletes the users unused since `cutoff` ([`crate::db::Database::unused_users`]), except
    /// JWT users and those `in_use` says are active, a batch at a time, and forgets them here so
    /// their tokens stop working at once. Returns how many were deleted.
    pub async fn prune_unused(
        &self,
        cutoff: DateTime<Utc>,
        in_use: impl Fn(UserId) -> bool,
    ) -> Result<u64, DbErr> {
        let mut pruned = 0;
        let mut after = None;
        loop {
            let page = self.db.unused_users(cutoff, after, BATCH).await?;
            let Some((last, _)) = page.last() else {
                return Ok(pruned);
            };
            after = Some(*last);
            let full = page.len() as u64 == BATCH;
            let unused: Vec<(UserId, String)> = page
                .into_iter()
                .filter(|(id, hash)| !hash.starts_with(JWT_TOKEN_HASH_PREFIX) && !in_use(*id))
                .collect();
            let ids: Vec<UserId> = unused.iter().map(|(id, _)| *id).collect();
            pruned += self.db.delete_unused_users(&ids, cutoff).await?;
            // Those the delete spared are simply looked up again when next used.
            let mut cache = self.cache();
            for (id, token_hash) in &unused {
                cache.by_token.remove(token_hash);
                cache.known.remove(id);
            }
            drop(cache);
            if !full {
                return Ok(pruned);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        db::NewUser,
        error::Error,
        identity::{Claim, jwt_token_hash},
        testing::{TestDb, on_both_databases},
    };

    /// The prune deletes claimed users, whose tokens fail at once though the cache knew them, but
    /// neither JWT users nor users in use.
    async fn prunes_claims_but_not_jwt_users_nor_users_in_use(t: TestDb) {
        let identity = Identity::new(t.db.clone(), None, None);
        let claim = Claim {
            display_name: Some("Unused".into()),
            ..Default::default()
        };
        let resolved = identity.resolve(claim, "").await.unwrap();
        let (unused, token) = identity.admit(resolved).await.unwrap();
        let token = token.unwrap();
        identity.authenticate(&token).await.unwrap();
        let jwt_user = UserId::new_random();
        let signed_in = NewUser {
            id: jwt_user,
            display_name: "Jay".into(),
            token_hash: jwt_token_hash(jwt_user),
        };
        t.db.claim_users(&[signed_in]).await.unwrap();

        // Every user is older than a cutoff in the future; Alice is in use, Bob is not.
        let cutoff = Utc::now() + chrono::Duration::seconds(30);
        let pruned = identity
            .prune_unused(cutoff, |id| id == t.alice)
            .await
            .unwrap();
        assert_eq!(pruned, 2, "the new user and Bob");
        assert!(matches!(
            identity.authenticate(&token).await,
            Err(Error::Unauthenticated(_))
        ));
        assert!(!identity.exists(unused.id).await.unwrap());
        assert!(!identity.exists(t.bob).await.unwrap());
        assert!(identity.exists(jwt_user).await.unwrap());
        assert!(identity.exists(t.alice).await.unwrap());
    }

    on_both_databases!(prunes_claims_but_not_jwt_users_nor_users_in_use);
}
