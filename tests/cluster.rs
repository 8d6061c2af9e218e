//! Several FastChat nodes on one PostgreSQL database: what they need from the database to share
//! it without breaking each other.

mod common;

use std::process::{Child, Stdio};

use common::start_binary_on;
use fastchat::testing::{Backend, FreshDatabase, postgres_base_url};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Statement};

/// A node's process, killed when the test ends, whether it passed or not.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a node called `node_id` on `database_url`, with a data directory of its own.
async fn start_node(database_url: &str, node_id: &str, dir: &tempfile::TempDir) -> (Node, u16) {
    let extra = ["--node-id", node_id];
    let (child, port) = start_binary_on(database_url, dir.path(), &extra, Stdio::null()).await;
    (Node(child), port)
}

/// Three nodes booting at once on an empty database all come up, and the migrations are applied
/// once: each node migrates under an advisory lock, so the later ones wait for the first and then
/// find nothing to do. Without it they raced to create the same tables and the losers exited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_booting_at_once_on_an_empty_database_all_come_up() {
    if postgres_base_url().is_none() {
        return;
    }
    for _ in 0..3 {
        let database = FreshDatabase::create(Backend::Postgres).await;
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let (a, b, c) = tokio::join!(
            start_node(&database.url, "node-a", &dirs[0]),
            start_node(&database.url, "node-b", &dirs[1]),
            start_node(&database.url, "node-c", &dirs[2]),
        );
        for (_, port) in [&a, &b, &c] {
            assert!(
                common::health_ok(*port).await,
                "node on {port} is not healthy"
            );
        }

        let db = sea_orm::Database::connect(&database.url).await.unwrap();
        let applied = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM seaql_migrations",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        assert_eq!(applied as usize, Migrator::migrations().len());
        db.close().await.unwrap();
    }
}
