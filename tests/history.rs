//! History paging, conversations with unread counts, and read marks that only move forward.

mod common;

use common::{ChatSession, TestServer, authed};
use fastchat::proto::{
    GetHistoryRequest, ListConversationsRequest, MarkReadRequest, MessageStatus, SendMessageRequest,
};
use fastchat::testing::{Backend, FreshDatabase, on_both_databases};

/// Sends `count` messages from `from` to `to` through the unary call; returns their seqs.
async fn send_many(
    server: &TestServer,
    from: &ChatSession,
    to: &ChatSession,
    count: usize,
) -> Vec<u64> {
    let mut client = server.chat().await.unwrap();
    let mut seqs = Vec::new();
    for i in 0..count {
        let request = SendMessageRequest {
            client_msg_id: format!("{}-{i}", from.user_id()),
            to_user_id: to.user_id(),
            text: format!("message {i}"),
            ..Default::default()
        };
        let ack = client
            .send_message(authed(&from.token(), request))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ack.status(), MessageStatus::Sent);
        seqs.push(ack.seq);
    }
    seqs
}

/// Pages go backwards from the newest with `before_seq`, each in ascending seq, `has_more` false
/// on the last; seqs strictly increase.
async fn history_pages_backwards(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let bob = ChatSession::new_user(&server, "Bob").await;
    let seqs = send_many(&server, &alice, &bob, 7).await;
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq strictly increases: {seqs:?}"
    );

    let mut client = server.chat().await.unwrap();
    let mut pages = Vec::new();
    let mut before_seq = 0;
    loop {
        let request = GetHistoryRequest {
            peer_user_id: alice.user_id(),
            before_seq,
            limit: 3,
        };
        let page = client
            .get_history(authed(&bob.token(), request))
            .await
            .unwrap()
            .into_inner();
        let texts: Vec<String> = page.messages.iter().map(|m| m.text.clone()).collect();
        before_seq = page.messages.first().map_or(0, |m| m.seq);
        pages.push((texts, page.has_more));
        if !page.has_more {
            break;
        }
    }
    let text = |i: usize| format!("message {i}");
    assert_eq!(
        pages,
        vec![
            (vec![text(4), text(5), text(6)], true),
            (vec![text(1), text(2), text(3)], true),
            (vec![text(0)], false),
        ]
    );

    // The default page size is 50; both sides see the same conversation.
    let request = GetHistoryRequest {
        peer_user_id: bob.user_id(),
        ..Default::default()
    };
    let all = client
        .get_history(authed(&alice.token(), request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.messages.len(), 7);
    assert!(!all.has_more);
    server.stop().await;
}

/// ListConversations gives each peer's last message and the unread count; MarkRead clears it and
/// never moves back; the sender's history then shows READ.
async fn conversations_unread_and_read_marks(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let bob = ChatSession::new_user(&server, "Bob").await;
    let carol = ChatSession::new_user(&server, "Carol").await;
    let from_alice = send_many(&server, &alice, &bob, 3).await;
    send_many(&server, &carol, &bob, 2).await;

    let mut client = server.chat().await.unwrap();
    let list_client = client.clone();
    let list = |token: String| {
        let mut client = list_client.clone();
        async move {
            client
                .list_conversations(authed(&token, ListConversationsRequest {}))
                .await
                .unwrap()
                .into_inner()
                .conversations
        }
    };
    let conversations = list(bob.token()).await;
    assert_eq!(conversations.len(), 2);
    let peer_name =
        |c: &fastchat::proto::Conversation| c.peer.as_ref().unwrap().display_name.clone();
    assert_eq!(
        peer_name(&conversations[0]),
        "Carol",
        "newest activity first"
    );
    assert_eq!(conversations[0].unread_count, 2);
    assert_eq!(peer_name(&conversations[1]), "Alice");
    assert_eq!(conversations[1].unread_count, 3);
    assert_eq!(
        conversations[1].last_message.as_ref().unwrap().text,
        "message 2"
    );

    let mark = |up_to_seq: u64| MarkReadRequest {
        peer_user_id: alice.user_id(),
        up_to_seq,
    };
    let read = client
        .mark_read(authed(&bob.token(), mark(from_alice[1])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.read_up_to_seq, from_alice[1]);
    let behind = client
        .mark_read(authed(&bob.token(), mark(from_alice[0])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        behind.read_up_to_seq, from_alice[1],
        "read marks only move forward"
    );

    let conversations = list(bob.token()).await;
    let with_alice = conversations
        .iter()
        .find(|c| peer_name(c) == "Alice")
        .unwrap();
    assert_eq!(with_alice.unread_count, 1);
    assert_eq!(with_alice.read_up_to_seq, from_alice[1]);

    let request = GetHistoryRequest {
        peer_user_id: bob.user_id(),
        ..Default::default()
    };
    let history = client
        .get_history(authed(&alice.token(), request))
        .await
        .unwrap()
        .into_inner();
    let statuses: Vec<MessageStatus> = history.messages.iter().map(|m| m.status()).collect();
    assert_eq!(statuses[..2], [MessageStatus::Read, MessageStatus::Read]);
    assert_ne!(statuses[2], MessageStatus::Read);
    assert_eq!(history.peer_read_up_to_seq, from_alice[1]);

    let alice_view = list(alice.token()).await;
    assert_eq!(alice_view.len(), 1);
    assert_eq!(
        alice_view[0].unread_count, 0,
        "own messages are never unread"
    );
    assert_eq!(alice_view[0].peer_read_up_to_seq, from_alice[1]);
    server.stop().await;
}

/// Messages older than the retention period are deleted (the sweep runs at start-up, then
/// hourly); younger ones stay.
async fn retention_deletes_messages_past_their_days(backend: Backend) {
    use fastchat::db::tables::chat_messages;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

    let database = FreshDatabase::create(backend).await;
    let server = TestServer::start_on(&database.url, |_| {}).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let bob = ChatSession::new_user(&server, "Bob").await;
    let seqs = send_many(&server, &alice, &bob, 2).await;
    let (alice_token, bob_id) = (alice.token(), bob.user_id());
    drop((alice, bob));
    server.stop().await;

    // Age the first message past the 30-day default.
    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    let long_ago = chrono::Utc::now() - chrono::Duration::days(31);
    chat_messages::Entity::update_many()
        .col_expr(chat_messages::Column::SentAt, Expr::value(long_ago))
        .filter(chat_messages::Column::Seq.eq(seqs[0] as i64))
        .exec(&db)
        .await
        .unwrap();

    let server = TestServer::start_on(&database.url, |_| {}).await;
    let mut client = server.chat().await.unwrap();
    common::within(common::WAIT, async {
        loop {
            let request = GetHistoryRequest {
                peer_user_id: bob_id.clone(),
                ..Default::default()
            };
            let history = client
                .get_history(authed(&alice_token, request))
                .await
                .unwrap()
                .into_inner();
            let kept: Vec<u64> = history.messages.iter().map(|m| m.seq).collect();
            if kept == [seqs[1]] {
                return;
            }
            assert!(kept == seqs, "only the old message may go: {kept:?}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    server.stop().await;
}

on_both_databases!(
    history_pages_backwards,
    conversations_unread_and_read_marks,
    retention_deletes_messages_past_their_days,
);
