//! The SeaORM migrations apply, roll back completely, and apply again, on both databases.

mod common;

use fastchat::testing::{Backend, FreshDatabase, on_both_databases};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Statement};
use uuid::Uuid;

async fn table_exists(db: &sea_orm::DatabaseConnection, table: &str) -> bool {
    let sql = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            format!("SELECT 1 FROM information_schema.tables WHERE table_name = '{table}'")
        }
        _ => format!("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '{table}'"),
    };
    let statement = Statement::from_string(db.get_database_backend(), sql);
    db.query_one_raw(statement).await.unwrap().is_some()
}

async fn column_exists(db: &sea_orm::DatabaseConnection, table: &str, column: &str) -> bool {
    let sql = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => format!(
            "SELECT 1 FROM information_schema.columns \
             WHERE table_name = '{table}' AND column_name = '{column}'"
        ),
        _ => format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = '{column}'"),
    };
    let statement = Statement::from_string(db.get_database_backend(), sql);
    db.query_one_raw(statement).await.unwrap().is_some()
}

async fn migrations_go_up_down_and_up_again(backend: Backend) {
    let database = FreshDatabase::create(backend).await;
    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    let tables = [
        "users",
        "users_online",
        "sessions",
        "chat_messages",
        "conversations",
        "conversation_members",
        "stats_buckets",
        "nodes",
    ];

    Migrator::up(&db, None).await.unwrap();
    for table in tables {
        assert!(table_exists(&db, table).await, "{table} after up");
    }
    assert!(
        Migrator::get_pending_migrations(&db)
            .await
            .unwrap()
            .is_empty()
    );

    Migrator::down(&db, None).await.unwrap();
    for table in tables {
        assert!(!table_exists(&db, table).await, "{table} after down");
    }

    Migrator::up(&db, None).await.unwrap();
    for table in tables {
        assert!(table_exists(&db, table).await, "{table} after up again");
    }
    db.close().await.unwrap();
}

/// Migration 7 renames `sessions.transport` to `kind`, and its `down` renames it back.
async fn sessions_transport_is_renamed_kind(backend: Backend) {
    let database = FreshDatabase::create(backend).await;
    let db = sea_orm::Database::connect(&database.url).await.unwrap();

    Migrator::up(&db, Some(7)).await.unwrap();
    assert!(column_exists(&db, "sessions", "kind").await);
    assert!(!column_exists(&db, "sessions", "transport").await);

    Migrator::down(&db, Some(1)).await.unwrap();
    assert!(column_exists(&db, "sessions", "transport").await);
    assert!(!column_exists(&db, "sessions", "kind").await);
    db.close().await.unwrap();
}

/// Runs `sql`, written with `$n` placeholders, with `values` bound the way the server binds them.
async fn exec(db: &sea_orm::DatabaseConnection, sql: &str, values: Vec<sea_orm::Value>) {
    let statement = fastchat::db::statement(db.get_database_backend(), sql, values);
    db.execute_raw(statement).await.unwrap();
}

/// Migration 8 converts a database made by the layout before it (a `conversation_key` and a
/// `delivered_at` on every message, and `read_marks`) in place: history, read marks, unread
/// counts, idempotency keys and the seq counter are kept; every undelivered message is still
/// waiting; and its `down` restores the old layout.
async fn conversations_are_made_from_existing_messages(backend: Backend) {
    use chrono::Utc;
    use fastchat::db::{
        Database, NewMessage,
        ids::{Seq, UserId},
    };

    let database = FreshDatabase::create(backend).await;
    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    Migrator::up(&db, Some(7)).await.unwrap();

    let [alice, bob, carol] = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
    for (i, id) in [alice, bob, carol].into_iter().enumerate() {
        exec(
            &db,
            "INSERT INTO users (id, display_name, token_hash, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4)",
            vec![
                id.into(),
                format!("user {i}").into(),
                format!("hash {i}").into(),
                Utc::now().into(),
            ],
        )
        .await;
    }
    let key = |a: Uuid, b: Uuid| {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        format!("{low}:{high}")
    };
    // (seq, from, to, delivered): Alice's third message to Bob never reached him, her fourth did.
    let messages = [
        (1, alice, bob, true),
        (2, alice, bob, true),
        (3, alice, bob, false),
        (4, alice, bob, true),
        (5, bob, alice, true),
        (6, carol, bob, false),
        (7, carol, bob, false),
        (8, alice, carol, true),
    ];
    for (seq, from, to, delivered) in messages {
        exec(
            &db,
            "INSERT INTO chat_messages (message_id, conversation_key, sender_id, recipient_id,
                 client_msg_id, text, sent_at, delivered_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![
                Uuid::now_v7().into(),
                key(from, to).into(),
                from.into(),
                to.into(),
                format!("m{seq}").into(),
                format!("text {seq}").into(),
                Utc::now().into(),
                delivered.then(Utc::now).into(),
            ],
        )
        .await;
    }
    // The newest message is gone (retention), but its seq must never be given again.
    exec(&db, "DELETE FROM chat_messages WHERE seq = 8", vec![]).await;
    for (reader, peer, seq) in [(bob, alice, 2i64), (alice, bob, 5)] {
        exec(
            &db,
            "INSERT INTO read_marks (reader_id, peer_id, read_up_to_seq, updated_at)
             VALUES ($1, $2, $3, $4)",
            vec![reader.into(), peer.into(), seq.into(), Utc::now().into()],
        )
        .await;
    }
    db.close().await.unwrap();

    let store = Database::connect(&database.url).await.unwrap();
    store.migrate().await.unwrap(); // migration 8, as the server runs it at start
    let [alice, bob, carol] = [alice, bob, carol].map(UserId);
    let seqs = |messages: &[fastchat::db::StoredMessage]| -> Vec<i64> {
        messages.iter().map(|m| m.seq.0).collect()
    };

    let (history, has_more) = store.history(bob, alice, Seq::ZERO, 10).await.unwrap();
    assert_eq!(seqs(&history), [1, 2, 3, 4, 5]);
    assert!(!has_more);
    assert_eq!(history[2].text, "text 3");
    assert_eq!(history[2].client_msg_id, "m3");

    // Undelivered: from the oldest undelivered message of each conversation on (4 again).
    let waiting = store
        .undelivered_page(bob, Seq::ZERO, Seq(i64::MAX), 100)
        .await
        .unwrap();
    assert_eq!(seqs(&waiting), [3, 4, 6, 7]);
    assert!(
        store
            .undelivered_page(alice, Seq::ZERO, Seq(i64::MAX), 100)
            .await
            .unwrap()
            .is_empty()
    );

    let bob_on_alice = store.marks(bob, alice).await.unwrap();
    assert_eq!(
        (bob_on_alice.delivered, bob_on_alice.read),
        (Seq(2), Seq(2))
    );
    let alice_on_bob = store.marks(alice, bob).await.unwrap();
    assert_eq!(
        (alice_on_bob.delivered, alice_on_bob.read),
        (Seq(5), Seq(5))
    );

    let conversations = store.conversations_of(bob).await.unwrap();
    let unread: Vec<(UserId, i64, u64)> = conversations
        .iter()
        .map(|c| (c.peer.id, c.last_message.seq.0, c.unread_count))
        .collect();
    assert_eq!(unread, [(carol, 7, 2), (alice, 5, 2)]);

    // A retried key finds its message; a new message gets a seq past the deleted one.
    let retry = NewMessage::new(alice, bob, "m2".into(), "text 2".into());
    let new = NewMessage::new(carol, alice, "m9".into(), "text 9".into());
    let round = store.commit_messages(&[&retry, &new], &[]).await.unwrap();
    assert_eq!(
        (round.messages[0].0.seq, round.messages[0].1),
        (Seq(2), false)
    );
    assert!(round.messages[1].1);
    assert!(round.messages[1].0.seq > Seq(8), "seq 8 was given again");
    store.close().await.unwrap();

    // Down: the old columns, with delivered_at set on what the delivered marks cover.
    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    let after_seven = Migrator::migrations().len() as u32 - 7;
    Migrator::down(&db, Some(after_seven)).await.unwrap();
    assert!(column_exists(&db, "chat_messages", "conversation_key").await);
    assert!(!column_exists(&db, "chat_messages", "conversation_id").await);
    assert!(table_exists(&db, "read_marks").await);
    assert!(!table_exists(&db, "conversations").await);
    let backend = db.get_database_backend();
    let undelivered = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT seq FROM chat_messages WHERE delivered_at IS NULL ORDER BY seq",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<i64>("", "seq").unwrap())
        .collect::<Vec<_>>();
    assert_eq!(undelivered[..4], [3, 4, 6, 7]);
    let key_of_1 = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT conversation_key FROM chat_messages WHERE seq = 1",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "conversation_key")
        .unwrap();
    assert_eq!(key_of_1, key(alice.0, bob.0));
    Migrator::up(&db, None).await.unwrap();
    db.close().await.unwrap();
}

/// `(user_id, node_id, status, last_seen)` of every `users_online` row, in that order.
async fn presence_rows(db: &sea_orm::DatabaseConnection) -> Vec<(Uuid, String, String, String)> {
    let has_node = column_exists(db, "users_online", "node_id").await;
    let node = if has_node {
        "node_id"
    } else {
        "'-' AS node_id"
    };
    let sql = format!(
        "SELECT user_id, {node}, status, last_seen FROM users_online ORDER BY user_id, node_id"
    );
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .iter()
        .map(|row| {
            let at: chrono::DateTime<chrono::Utc> = row.try_get("", "last_seen").unwrap();
            (
                row.try_get("", "user_id").unwrap(),
                row.try_get("", "node_id").unwrap(),
                row.try_get("", "status").unwrap(),
                at.to_rfc3339(),
            )
        })
        .collect()
}

/// Migration 9 gives every presence row a node: the rows from before keep their user's presence
/// under node `''`, a user can then have a row per node, and `down` keeps each user's latest row,
/// offline.
async fn presence_rows_get_a_node(backend: Backend) {
    let database = FreshDatabase::create(backend).await;
    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    Migrator::up(&db, Some(8)).await.unwrap();
    let user = Uuid::new_v4();
    let (earlier, later) = (
        chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        chrono::DateTime::from_timestamp(1_700_000_100, 0).unwrap(),
    );
    exec(
        &db,
        "INSERT INTO users (id, display_name, token_hash, created_at, updated_at)
         VALUES ($1, 'Alice', 'hash', $2, $2)",
        vec![user.into(), earlier.into()],
    )
    .await;
    exec(
        &db,
        "INSERT INTO users_online (user_id, status, sessions, last_seen, updated_at)
         VALUES ($1, 'offline', 0, $2, $2)",
        vec![user.into(), earlier.into()],
    )
    .await;

    Migrator::up(&db, Some(1)).await.unwrap();
    assert!(table_exists(&db, "nodes").await);
    let moved = (
        user,
        String::new(),
        "offline".to_owned(),
        earlier.to_rfc3339(),
    );
    assert_eq!(presence_rows(&db).await, std::slice::from_ref(&moved));
    exec(
        &db,
        "INSERT INTO users_online (user_id, node_id, status, sessions, last_seen, updated_at)
         VALUES ($1, 'node-a', 'online', 1, $2, $2)",
        vec![user.into(), later.into()],
    )
    .await;
    let on_a = (
        user,
        "node-a".to_owned(),
        "online".to_owned(),
        later.to_rfc3339(),
    );
    assert_eq!(presence_rows(&db).await, [moved, on_a]);

    Migrator::down(&db, Some(1)).await.unwrap();
    assert!(!table_exists(&db, "nodes").await);
    let latest = (
        user,
        "-".to_owned(),
        "offline".to_owned(),
        later.to_rfc3339(),
    );
    assert_eq!(presence_rows(&db).await, [latest]);
    Migrator::up(&db, None).await.unwrap();
    db.close().await.unwrap();
}

/// Migrations 10 and 11 (changing messages, search) come off and on again over stored messages:
/// the messages keep their text, and the search index built on the way up finds the ones from
/// before it.
async fn search_indexes_messages_from_before_it(backend: Backend) {
    use fastchat::db::{
        Database, NewMessage, NewUser,
        ids::{Seq, UserId},
    };
    let database = FreshDatabase::create(backend).await;
    let store = Database::connect(&database.url).await.unwrap();
    store.migrate().await.unwrap();
    let [alice, bob] = [Uuid::new_v4(), Uuid::new_v4()].map(UserId);
    for (id, name) in [(alice, "Alice"), (bob, "Bob")] {
        let user = NewUser {
            id,
            display_name: name.into(),
            token_hash: format!("hash-{id}"),
        };
        store.claim_users(&[user]).await.unwrap();
    }
    let old = NewMessage::new(alice, bob, "m1".into(), "an elderly message".into());
    store.commit_messages(&[&old], &[]).await.unwrap();
    store.close().await.unwrap();

    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    Migrator::down(&db, Some(2)).await.unwrap();
    assert!(!column_exists(&db, "chat_messages", "version").await);
    assert!(!table_exists(&db, "counters").await);
    Migrator::up(&db, None).await.unwrap();
    db.close().await.unwrap();

    let store = Database::connect(&database.url).await.unwrap();
    let words = ["elder".to_owned()];
    let found = store
        .search_messages(bob, &words, Seq::ZERO, 10)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].text.as_str(), found[0].version),
        ("an elderly message", 0)
    );
    assert_eq!(store.latest_version().await.unwrap(), 0);
    store.close().await.unwrap();
}

on_both_databases!(
    migrations_go_up_down_and_up_again,
    sessions_transport_is_renamed_kind,
    conversations_are_made_from_existing_messages,
    presence_rows_get_a_node,
    search_indexes_messages_from_before_it,
);
