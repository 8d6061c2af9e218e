//! What the tasks that batch writes for the database share.

mod group_commit;

pub(crate) use group_commit::group_commit;
