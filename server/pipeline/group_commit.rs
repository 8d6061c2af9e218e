//! Group commit: a batch of writes in one commit (on SQLite one fsync, however many rows) and, when
//! that fails, each write in a commit of its own, so one bad row fails only itself. The message
//! writer, the presence store and the claim writer batch this way.

use std::future::Future;

use sea_orm::DbErr;

/// Commits `items` with one call of `commit`, which answers one outcome per item it is given, in
/// order. When that fails and there are several items, logs it once, naming the batch `what`, and
/// calls `commit` for each item on its own. Returns each item's outcome, in order.
pub(crate) async fn group_commit<'a, I, O, F, Fut>(
    what: &str,
    items: &'a [I],
    commit: F,
) -> Vec<Result<O, DbErr>>
where
    F: Fn(&'a [I]) -> Fut,
    Fut: Future<Output = Result<Vec<O>, DbErr>>,
{
    let err = match commit(items).await {
        Ok(outcomes) => return outcomes.into_iter().map(Ok).collect(),
        Err(err) => err,
    };
    if items.len() <= 1 {
        return items.iter().map(|_| Err(err.clone())).collect();
    }
    tracing::warn!(error = %err, batch = items.len(), "{what} failed; committing one by one");
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        let single = commit(std::slice::from_ref(item)).await;
        outcomes.push(
            single.and_then(|single| single.into_iter().next().ok_or(DbErr::RecordNotInserted)),
        );
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Commits numbers, failing any slice that holds a negative one; notes each slice it is given.
    async fn commit_all(calls: &Mutex<Vec<Vec<i32>>>, items: &[i32]) -> Result<Vec<i32>, DbErr> {
        calls.lock().unwrap().push(items.to_vec());
        if items.iter().any(|n| *n < 0) {
            return Err(DbErr::Custom(format!("bad batch {items:?}")));
        }
        Ok(items.iter().map(|n| n * 10).collect())
    }

    #[tokio::test]
    async fn a_batch_that_commits_is_one_call() {
        let calls = Mutex::new(Vec::new());
        let outcomes = group_commit("test batch", &[1, 2, 3], |items| commit_all(&calls, items));
        let outcomes: Vec<_> = outcomes.await.into_iter().map(Result::unwrap).collect();
        assert_eq!(outcomes, [10, 20, 30]);
        assert_eq!(calls.into_inner().unwrap(), [vec![1, 2, 3]]);
    }

    #[tokio::test]
    async fn a_bad_item_fails_alone() {
        let calls = Mutex::new(Vec::new());
        let outcomes =
            group_commit("test batch", &[1, -2, 3], |items| commit_all(&calls, items)).await;

        assert_eq!(outcomes[0], Ok(10));
        assert_eq!(outcomes[1], Err(DbErr::Custom("bad batch [-2]".into())));
        assert_eq!(outcomes[2], Ok(30));
        let calls = calls.into_inner().unwrap();
        assert_eq!(calls, [vec![1, -2, 3], vec![1], vec![-2], vec![3]]);
    }

    #[tokio::test]
    async fn a_lone_item_is_not_committed_twice() {
        let calls = Mutex::new(Vec::new());
        let outcomes = group_commit("test batch", &[-1], |items| commit_all(&calls, items)).await;

        assert_eq!(outcomes, [Err(DbErr::Custom("bad batch [-1]".into()))]);
        assert_eq!(calls.into_inner().unwrap(), [vec![-1]]);
    }
}
