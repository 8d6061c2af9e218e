//! Searching: one's own messages by their words (full-text on either database), and people by
//! name. No one finds what is in another's conversations.

mod common;

use common::{ChatSession, TestServer, authed, bad_field, http_get, series};
use fastchat::proto::{
    DeleteMessageRequest, EditMessageRequest, SearchMessagesRequest, SearchMessagesResponse,
    SearchUsersRequest, SendMessageRequest,
};
use fastchat::testing::{Backend, on_both_databases};
use tonic::{Code, Status};

/// Sends `text` from `from` to `to`; returns the message id.
async fn send(server: &TestServer, from: &ChatSession, to: &ChatSession, text: &str) -> String {
    let request = SendMessageRequest {
        client_msg_id: uuid::Uuid::now_v7().to_string(),
        to_user_id: to.user_id(),
        text: text.to_owned(),
        ..Default::default()
    };
    let mut client = server.chat().await.unwrap();
    let ack = client
        .send_message(authed(&from.token(), request))
        .await
        .unwrap();
    ack.into_inner().message_id
}

async fn search(
    server: &TestServer,
    who: &ChatSession,
    query: &str,
    before_seq: u64,
    limit: u32,
) -> Result<SearchMessagesResponse, Status> {
    let request = SearchMessagesRequest {
        query: query.to_owned(),
        before_seq,
        limit,
    };
    let mut client = server.chat().await.unwrap();
    Ok(client
        .search_messages(authed(&who.token(), request))
        .await?
        .into_inner())
}

/// The ids of the messages `who` finds with `query`, newest first.
async fn found(server: &TestServer, who: &ChatSession, query: &str) -> Vec<String> {
    let response = search(server, who, query, 0, 0).await.unwrap();
    response
        .hits
        .into_iter()
        .map(|hit| hit.message.unwrap().message_id)
        .collect()
}

/// Every word must start a word of the text, across the caller's conversations, newest first,
/// with the other user and a snippet whose highlights cover the matches; another user's
/// conversations are never searched; edits are found by their new words, deleted messages not
/// at all; pages go back with before_seq; bad queries name the field.
async fn messages_are_found_only_in_ones_own_conversations(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let bob = ChatSession::new_user(&server, "Bob").await;
    let carol = ChatSession::new_user(&server, "Carol").await;
    let with_bob = send(&server, &alice, &bob, "The Quarterly report is due Friday").await;
    let from_carol = send(
        &server,
        &carol,
        &alice,
        "did you read the quarterly REPORT?",
    )
    .await;
    let unrelated = send(&server, &carol, &alice, "reporting for duty").await;
    let bob_and_carol = send(&server, &bob, &carol, "quarterly report, bob to carol").await;

    assert_eq!(
        found(&server, &alice, "quarterly report").await,
        [from_carol.clone(), with_bob.clone()]
    );
    assert_eq!(
        found(&server, &alice, "quart").await.len(),
        2,
        "the last word may be a prefix"
    );
    assert_eq!(
        found(&server, &alice, "report").await.len(),
        3,
        "report starts reporting"
    );
    assert!(
        found(&server, &alice, "port").await.is_empty(),
        "words match at their start"
    );
    // Bob finds his conversation with Alice and his with Carol, never Alice and Carol's.
    assert_eq!(
        found(&server, &bob, "quarterly").await,
        [bob_and_carol.clone(), with_bob.clone()]
    );
    assert!(!found(&server, &bob, "read").await.contains(&from_carol));

    let response = search(&server, &alice, "quarterly report", 0, 0)
        .await
        .unwrap();
    let hit = &response.hits[0];
    assert_eq!(hit.peer.as_ref().unwrap().display_name, "Carol");
    let chars: Vec<char> = hit.snippet.chars().collect();
    let marked: Vec<String> = hit
        .highlights
        .iter()
        .map(|r| chars[r.start as usize..r.end as usize].iter().collect())
        .collect();
    assert_eq!(marked, ["quarterly", "REPORT"]);

    // Paging: one at a time, going back.
    let first = search(&server, &alice, "report", 0, 1).await.unwrap();
    assert!(first.has_more);
    let first_seq = first.hits[0].message.as_ref().unwrap().seq;
    let second = search(&server, &alice, "report", first_seq, 1)
        .await
        .unwrap();
    assert_eq!(
        second.hits[0].message.as_ref().unwrap().message_id,
        from_carol
    );
    assert_ne!(unrelated, from_carol);

    // Edits are found by their new words; deleted messages are not found at all.
    let mut client = server.chat().await.unwrap();
    let edit = EditMessageRequest {
        message_id: with_bob.clone(),
        text: "The budget is due Monday".into(),
    };
    client
        .edit_message(authed(&alice.token(), edit))
        .await
        .unwrap();
    assert_eq!(
        found(&server, &alice, "quarterly").await,
        std::slice::from_ref(&from_carol)
    );
    assert_eq!(found(&server, &alice, "budget").await, [with_bob]);
    let delete = DeleteMessageRequest {
        message_id: from_carol,
    };
    client
        .delete_message(authed(&carol.token(), delete))
        .await
        .unwrap();
    assert!(found(&server, &alice, "quarterly").await.is_empty());

    for (query, limit) in [("", 0), ("!!! ???", 0), (&*"x ".repeat(11), 0), ("ok", 51)] {
        let status = search(&server, &alice, query, 0, limit).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{query:?}");
        let field = if limit > 50 { "limit" } else { "query" };
        assert_eq!(bad_field(&status), field);
    }
    let (_, _, body) = http_get(&server, "/metrics").await;
    let text = String::from_utf8_lossy(&body);
    assert!(series(&text, r#"fastchat_messages_total{kind="search"}"#).unwrap() >= 8.0);
    assert_eq!(
        series(&text, r#"fastchat_messages_total{kind="edit"}"#),
        Some(1.0)
    );
    assert_eq!(
        series(&text, r#"fastchat_messages_total{kind="delete"}"#),
        Some(1.0)
    );
    server.stop().await;
}

/// People are found by any part of their name, ignoring case, names starting with the query
/// first; the caller is left out; `%` and `_` are plain characters.
async fn people_are_found_by_name(backend: Backend) {
    let server = TestServer::start(backend).await;
    let me = ChatSession::new_user(&server, "Ann Searcher").await;
    for name in ["Annabel", "Joanna", "Bob", "100%_real"] {
        ChatSession::new_user(&server, name).await;
    }
    let mut client = server.chat().await.unwrap();
    let mut names = async |query: &str| -> Result<Vec<String>, Status> {
        let request = SearchUsersRequest {
            query: query.to_owned(),
            limit: 0,
        };
        let users = client.search_users(authed(&me.token(), request)).await?;
        Ok(users
            .into_inner()
            .users
            .into_iter()
            .map(|u| u.display_name)
            .collect())
    };
    assert_eq!(names("ANN").await.unwrap(), ["Annabel", "Joanna"]);
    assert_eq!(names("%_").await.unwrap(), ["100%_real"]);
    assert!(names("_").await.unwrap() == ["100%_real"]);
    assert!(names("zzz").await.unwrap().is_empty());
    let empty = names("  ").await.unwrap_err();
    assert_eq!(
        (empty.code(), bad_field(&empty)),
        (Code::InvalidArgument, "query".into())
    );
    server.stop().await;
}

on_both_databases!(
    messages_are_found_only_in_ones_own_conversations,
    people_are_found_by_name,
);
