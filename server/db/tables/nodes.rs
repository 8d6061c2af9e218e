//! `nodes`: the FastChat nodes that share this database, each with its latest heartbeat.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nodes")]
pub struct Model {
    /// The node's id (`--node-id`), the `node_id` of its `sessions` and `users_online` rows.
    #[sea_orm(primary_key, auto_increment = false)]
    pub node_id: String,
    /// Chosen at each start, so a node can tell its own registration from a later one's.
    pub boot_id: Uuid,
    /// When this run of the node registered.
    pub started_at: DateTimeUtc,
    /// The node's latest heartbeat; a node silent for longer than the dead-node timeout is
    /// cleaned up by a survivor.
    pub heartbeat_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
