//! Several FastChat nodes on one PostgreSQL database: what they need from the database to share
//! it without breaking each other.

mod common;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{ChatSession, start_binary_on};
use fastchat::{
    node::DEAD_AFTER,
    proto::Hello,
    testing::{Backend, FreshDatabase, postgres_base_url},
};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

/// A node's process, killed when the test ends, whether it passed or not.
struct Node(Child);

impl Node {
    /// Sends `signal` (`TERM`, `KILL`) to the process.
    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([format!("-{signal}"), self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Stops the node with SIGTERM and waits for it to exit cleanly.
    async fn stop(&mut self) {
        self.signal("TERM");
        let status = exited(&mut self.0, Duration::from_secs(15)).await;
        assert!(status.success(), "a graceful stop exited with {status}");
    }
}

/// Waits for `child` to exit, at most `limit`.
async fn exited(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "still running after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

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

/// A new user named `name` with a Chat session on the node at `port`.
async fn user_on(port: u16, name: &str) -> ChatSession {
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let hello = Hello {
        display_name: name.into(),
        ..Default::default()
    };
    ChatSession::open_on(channel, hello).await.unwrap()
}

/// The first column of the first row `sql` returns, as a number.
async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
}

/// What the database holds for `node`: its registrations, its open sessions, its users'
/// presence rows, and of these the ONLINE ones.
async fn rows_of(db: &DatabaseConnection, node: &str) -> [i64; 4] {
    [
        count(
            db,
            &format!("SELECT COUNT(*) FROM nodes WHERE node_id = '{node}'"),
        )
        .await,
        count(
            db,
            &format!("SELECT COUNT(*) FROM sessions WHERE node_id = '{node}' AND ended_at IS NULL"),
        )
        .await,
        count(
            db,
            &format!("SELECT COUNT(*) FROM users_online WHERE node_id = '{node}'"),
        )
        .await,
        count(
            db,
            &format!(
                "SELECT COUNT(*) FROM users_online WHERE node_id = '{node}' AND status = 'online'"
            ),
        )
        .await,
    ]
}

/// Polls `rows_of(node)` until it is `expected`, at most `limit`.
async fn wait_for_rows(db: &DatabaseConnection, node: &str, expected: [i64; 4], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let rows = rows_of(db, node).await;
        if rows == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rows of {node} (nodes, open sessions, presence rows, online): {rows:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `fastchat_dead_nodes_cleaned_total` of the node at `port`.
async fn dead_nodes_cleaned(port: u16) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    stream.write_all(request).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    common::series(&response, "fastchat_dead_nodes_cleaned_total").unwrap()
}

/// A second process given the id of a live node exits at start with an error that says so; once
/// that node stopped gracefully (unregistering), the id starts again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_nodes_id_is_refused_until_it_stops() {
    if postgres_base_url().is_none() {
        return;
    }
    let database = FreshDatabase::create(Backend::Postgres).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (mut first, _) = start_node(&database.url, "node-a", &dirs[0]).await;

    let mut second = Command::new(common::BINARY)
        .args([
            "--node-id",
            "node-a",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dirs[1].path())
        .env("DATABASE_URL", &database.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = exited(&mut second, Duration::from_secs(30)).await;
    let output = second.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!status.success());
    assert!(said.contains("belongs to a live node"), "it said: {said}");

    first.stop().await;
    let (_again, port) = start_node(&database.url, "node-a", &dirs[2]).await;
    assert!(common::health_ok(port).await);
}

/// A node that stops gracefully ends only its own sessions and presence rows: a user of another
/// node stays ONLINE with their session open, and the stopped node's user is left with one
/// offline row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_leaves_the_other_nodes_rows_alone() {
    if postgres_base_url().is_none() {
        return;
    }
    let database = FreshDatabase::create(Backend::Postgres).await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (mut a, port_a) = start_node(&database.url, "node-a", &dirs[0]).await;
    let (_b, port_b) = start_node(&database.url, "node-b", &dirs[1]).await;
    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    let alice = user_on(port_a, "Alice").await;
    let _bob = user_on(port_b, "Bob").await;
    let limit = common::WAIT;
    wait_for_rows(&db, "node-a", [1, 1, 1, 1], limit).await;
    wait_for_rows(&db, "node-b", [1, 1, 1, 1], limit).await;

    a.stop().await;
    assert_eq!(rows_of(&db, "node-a").await, [0, 0, 0, 0]);
    assert_eq!(rows_of(&db, "node-b").await, [1, 1, 1, 1]);
    let left = format!(
        "SELECT COUNT(*) FROM users_online WHERE user_id = '{}' AND node_id = '' \
         AND status = 'offline'",
        alice.user_id()
    );
    assert_eq!(count(&db, &left).await, 1);
    db.close().await.unwrap();
}

/// A node killed with SIGKILL (no chance to clean up) is noticed once its heartbeats stop: one
/// survivor, and only one, claims it, ends its sessions and removes its users' presence rows,
/// while the survivors' own rows stay as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_cleaned_up_after_by_exactly_one_survivor() {
    if postgres_base_url().is_none() {
        return;
    }
    let database = FreshDatabase::create(Backend::Postgres).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (_a, port_a) = start_node(&database.url, "node-a", &dirs[0]).await;
    let (_b, port_b) = start_node(&database.url, "node-b", &dirs[1]).await;
    let (c, port_c) = start_node(&database.url, "node-c", &dirs[2]).await;
    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    let _alice = user_on(port_a, "Alice").await;
    let _bob = user_on(port_b, "Bob").await;
    let _carol = user_on(port_c, "Carol").await;
    let _dave = user_on(port_c, "Dave").await;
    let limit = common::WAIT;
    wait_for_rows(&db, "node-a", [1, 1, 1, 1], limit).await;
    wait_for_rows(&db, "node-b", [1, 1, 1, 1], limit).await;
    wait_for_rows(&db, "node-c", [1, 2, 2, 2], limit).await;

    c.signal("KILL");
    // Noticed after DEAD_AFTER of silence, by a survivor's next look (once a second); the rest
    // of the limit is room for a loaded machine.
    wait_for_rows(&db, "node-c", [0, 0, 0, 0], DEAD_AFTER + limit).await;
    assert_eq!(rows_of(&db, "node-a").await, [1, 1, 1, 1]);
    assert_eq!(rows_of(&db, "node-b").await, [1, 1, 1, 1]);
    let left_offline =
        "SELECT COUNT(*) FROM users_online WHERE node_id = '' AND status = 'offline'";
    assert_eq!(count(&db, left_offline).await, 2);
    // Both survivors keep looking; only one ever claims the dead node.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let claims = dead_nodes_cleaned(port_a).await + dead_nodes_cleaned(port_b).await;
    assert_eq!(claims, 1.0);
    db.close().await.unwrap();
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
