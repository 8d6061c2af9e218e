//! The nodes sharing this database: registration, heartbeats, and cleaning up the `sessions` and
//! `users_online` rows of a node that stopped or died.
//!
//! Times come from the nodes' clocks, so nodes on several machines need them synchronised (NTP)
//! to well within the dead-node timeout.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Value};
use uuid::Uuid;

use super::statement;
use crate::db::Database;

/// Whose rows [`clean_node_rows`] cleans.
enum NodeRows<'a> {
    /// One node's.
    Of(&'a str),
    /// Those of every node that is not registered (gone before `nodes` existed, or removed
    /// without its rows: a node cleaned up while it stalled and that then wrote more).
    Unregistered,
}

impl Database {
    /// Registers `node` for this run (`boot`), unless a live node holds the id: one whose latest
    /// heartbeat is not before `dead_before`. Returns false when the id is taken.
    pub async fn register_node(
        &self,
        node: &str,
        boot: Uuid,
        now: DateTime<Utc>,
        dead_before: DateTime<Utc>,
    ) -> Result<bool, DbErr> {
        let sql = "INSERT INTO nodes (node_id, boot_id, started_at, heartbeat_at)
                   VALUES ($1, $2, $3, $3)
                   ON CONFLICT (node_id) DO UPDATE SET boot_id = excluded.boot_id,
                       started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at
                   WHERE nodes.heartbeat_at < $4";
        let values: [Value; 4] = [node.into(), boot.into(), now.into(), dead_before.into()];
        let result = self
            .writer()
            .execute_raw(statement(self.backend(), sql, values))
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// At start, once registered: cleans what an earlier run of `node` left, and the rows of
    /// nodes that are not registered.
    pub async fn clean_leftovers(&self, node: &str, now: DateTime<Utc>) -> Result<(), DbErr> {
        self.transaction(|tx| async move {
            clean_node_rows(&*tx, NodeRows::Of(node), now).await?;
            clean_node_rows(&*tx, NodeRows::Unregistered, now).await
        })
        .await
    }

    /// Records a heartbeat of this run of `node`. Returns false when the registration is gone
    /// (another node found this one silent for too long and cleaned up after it).
    pub async fn node_heartbeat(
        &self,
        node: &str,
        boot: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, DbErr> {
        let sql = "UPDATE nodes SET heartbeat_at = $1 WHERE node_id = $2 AND boot_id = $3";
        let values: [Value; 3] = [now.into(), node.into(), boot.into()];
        let result = self
            .writer()
            .execute_raw(statement(self.backend(), sql, values))
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Removes every node whose latest heartbeat is before `dead_before` and cleans its rows, in
    /// one transaction; returns the ids removed. The delete is conditional, so when two nodes
    /// claim the same dead node at once, one of them removes it and the other finds nothing.
    pub async fn claim_dead_nodes(
        &self,
        now: DateTime<Utc>,
        dead_before: DateTime<Utc>,
    ) -> Result<Vec<String>, DbErr> {
        self.transaction(|tx| async move {
            let sql = "DELETE FROM nodes WHERE heartbeat_at < $1 RETURNING node_id";
            let rows = tx
                .query_all_raw(statement(
                    tx.get_database_backend(),
                    sql,
                    [dead_before.into()],
                ))
                .await?;
            let mut claimed = Vec::with_capacity(rows.len());
            for row in rows {
                let node: String = row.try_get("", "node_id")?;
                clean_node_rows(&*tx, NodeRows::Of(&node), now).await?;
                claimed.push(node);
            }
            Ok(claimed)
        })
        .await
    }

    /// At a graceful stop, after this node's last presence rows: unregisters this run of `node`
    /// and cleans its rows, unless another run holds the id now.
    pub async fn remove_node_on(
        conn: &impl ConnectionTrait,
        node: &str,
        boot: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        let backend = conn.get_database_backend();
        let sql = "DELETE FROM nodes WHERE node_id = $1 AND boot_id = $2";
        let values: [Value; 2] = [node.into(), boot.into()];
        conn.execute_raw(statement(backend, sql, values)).await?;
        let sql = "SELECT node_id FROM nodes WHERE node_id = $1";
        let held = conn
            .query_one_raw(statement(backend, sql, [node.into()]))
            .await?
            .is_some();
        if held {
            return Ok(());
        }
        clean_node_rows(conn, NodeRows::Of(node), now).await
    }
}

/// Ends the open sessions of the nodes `rows` names and folds their `users_online` rows into
/// node `''`: offline, with the latest `last_seen` of each user (`now` for users they had
/// online).
async fn clean_node_rows(
    conn: &impl ConnectionTrait,
    rows: NodeRows<'_>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let backend = conn.get_database_backend();
    let greatest = if backend == DbBackend::Sqlite {
        "max"
    } else {
        "GREATEST"
    };
    let node: Value = match rows {
        NodeRows::Of(node) => node.into(),
        NodeRows::Unregistered => "".into(),
    };
    let nodes = |placeholder: &str| match rows {
        NodeRows::Of(_) => format!("node_id = {placeholder}"),
        NodeRows::Unregistered => {
            format!("node_id <> {placeholder} AND node_id NOT IN (SELECT node_id FROM nodes)")
        }
    };
    let end_sessions = format!(
        "UPDATE sessions SET ended_at = $1 WHERE ended_at IS NULL AND {}",
        nodes("$2")
    );
    let values: [Value; 2] = [now.into(), node.clone()];
    conn.execute_raw(statement(backend, &end_sessions, values.clone()))
        .await?;
    let fold = format!(
        "INSERT INTO users_online (user_id, node_id, status, sessions, last_seen, updated_at)
         SELECT user_id, '', 'offline', 0,
                max(CASE WHEN status = 'offline' THEN last_seen ELSE $1 END), $1
         FROM users_online WHERE {} GROUP BY user_id
         ON CONFLICT (user_id, node_id) DO UPDATE SET
             last_seen = {greatest}(users_online.last_seen, excluded.last_seen),
             updated_at = excluded.updated_at",
        nodes("$2")
    );
    conn.execute_raw(statement(backend, &fold, values)).await?;
    let delete = format!("DELETE FROM users_online WHERE {}", nodes("$1"));
    conn.execute_raw(statement(backend, &delete, [node]))
        .await
        .map(|_| ())
}
