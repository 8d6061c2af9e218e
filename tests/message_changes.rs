//! Messages that change after they are sent: edits, deletion for everyone, replies and reactions.
//! Who may change what, the field a bad request names, retries that change nothing, live
//! MessageUpdates to every session of both users, and the changes a client missed while away.

mod common;

use std::time::Duration;

use common::{ChatSession, TestServer, authed, bad_field};
use fastchat::proto::{
    ChatMessage, DeleteMessageRequest, EditMessageRequest, GetHistoryRequest, Hello, ReactRequest,
    SendMessageRequest, server_event::Event,
};
use fastchat::testing::{Backend, on_both_databases};
use sea_orm::{ConnectionTrait, Statement};
use tonic::{Code, Status};

/// Sends `text` from `from` to `to` (optionally replying to `reply_to`) and returns the message
/// as `to`'s session receives it.
async fn send(
    server: &TestServer,
    from: &ChatSession,
    to: &mut ChatSession,
    text: &str,
    reply_to: &str,
) -> ChatMessage {
    let request = SendMessageRequest {
        client_msg_id: format!("{text}-{}", uuid::Uuid::now_v7()),
        to_user_id: to.user_id(),
        text: text.to_owned(),
        reply_to_message_id: reply_to.to_owned(),
    };
    let mut client = server.chat().await.unwrap();
    let ack = client
        .send_message(authed(&from.token(), request))
        .await
        .unwrap()
        .into_inner();
    to.next_where(|e| match e {
        Event::Message(m) if m.message_id == ack.message_id => Some(m),
        _ => None,
    })
    .await
}

/// The next MessageUpdate for `message_id` on `session`.
async fn update_of(session: &mut ChatSession, message_id: &str) -> ChatMessage {
    session
        .next_where(|e| match e {
            Event::Update(u) => u.message.filter(|m| m.message_id == message_id),
            _ => None,
        })
        .await
}

async fn edit(
    server: &TestServer,
    who: &ChatSession,
    id: &str,
    text: &str,
) -> Result<ChatMessage, Status> {
    let request = EditMessageRequest {
        message_id: id.to_owned(),
        text: text.to_owned(),
    };
    let mut client = server.chat().await.unwrap();
    let response = client.edit_message(authed(&who.token(), request)).await?;
    Ok(response.into_inner().message.unwrap())
}

async fn delete(server: &TestServer, who: &ChatSession, id: &str) -> Result<ChatMessage, Status> {
    let request = DeleteMessageRequest {
        message_id: id.to_owned(),
    };
    let mut client = server.chat().await.unwrap();
    let response = client.delete_message(authed(&who.token(), request)).await?;
    Ok(response.into_inner().message.unwrap())
}

async fn react(
    server: &TestServer,
    who: &ChatSession,
    id: &str,
    emoji: &str,
    remove: bool,
) -> Result<ChatMessage, Status> {
    let request = ReactRequest {
        message_id: id.to_owned(),
        emoji: emoji.to_owned(),
        remove,
    };
    let mut client = server.chat().await.unwrap();
    let response = client.react(authed(&who.token(), request)).await?;
    Ok(response.into_inner().message.unwrap())
}

/// The conversation as `who` reads it from history.
async fn history(server: &TestServer, who: &ChatSession, peer: &ChatSession) -> Vec<ChatMessage> {
    let request = GetHistoryRequest {
        peer_user_id: peer.user_id(),
        ..Default::default()
    };
    let mut client = server.chat().await.unwrap();
    client
        .get_history(authed(&who.token(), request))
        .await
        .unwrap()
        .into_inner()
        .messages
}

/// The author edits: the recipient and the author's other session get the new text marked
/// edited, history has it; a retry with the same text changes nothing. No one else may edit, a
/// stranger cannot even find the message, and bad input names its field.
async fn edits_reach_both_users_and_only_the_author_edits(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let mut alice_too = alice.again(&server).await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;
    let carol = ChatSession::new_user(&server, "Carol").await;
    let sent = send(&server, &alice, &mut bob, "see you at 5", "").await;
    assert_eq!(sent.version, 0);
    assert!(sent.edited_at.is_none());

    let edited = edit(&server, &alice, &sent.message_id, "see you at 6")
        .await
        .unwrap();
    assert_eq!(edited.text, "see you at 6");
    assert!(edited.edited_at.is_some());
    assert!(edited.version > 0);
    for session in [&mut bob, &mut alice_too] {
        let update = update_of(session, &sent.message_id).await;
        assert_eq!(
            (update.text.as_str(), update.version),
            ("see you at 6", edited.version)
        );
        assert!(update.edited_at.is_some());
    }
    let stored = history(&server, &bob, &alice).await;
    assert_eq!(stored[0].text, "see you at 6");
    assert_eq!(stored[0].version, edited.version);

    // The same text again is a retry: no new version, no update.
    let again = edit(&server, &alice, &sent.message_id, "see you at 6")
        .await
        .unwrap();
    assert_eq!(again.version, edited.version);
    bob.assert_none_where(Duration::from_millis(300), |e| {
        matches!(e, Event::Update(_))
    })
    .await;

    let by_bob = edit(&server, &bob, &sent.message_id, "hacked")
        .await
        .unwrap_err();
    assert_eq!(by_bob.code(), Code::PermissionDenied, "{by_bob:?}");
    assert!(by_bob.message().contains("message_id"));
    let by_carol = edit(&server, &carol, &sent.message_id, "hacked")
        .await
        .unwrap_err();
    assert_eq!(by_carol.code(), Code::NotFound, "{by_carol:?}");
    let empty = edit(&server, &alice, &sent.message_id, "  ")
        .await
        .unwrap_err();
    assert_eq!(
        (empty.code(), bad_field(&empty)),
        (Code::InvalidArgument, "text".into())
    );
    let bad_id = edit(&server, &alice, "not-a-uuid", "x").await.unwrap_err();
    assert_eq!(
        (bad_id.code(), bad_field(&bad_id)),
        (Code::InvalidArgument, "message_id".into())
    );
    assert_eq!(history(&server, &bob, &alice).await[0].text, "see you at 6");
    server.stop().await;
}

/// Past the edit window an edit is refused; deleting still works.
async fn edits_end_with_the_edit_window(backend: Backend) {
    let server = TestServer::start_with(backend, |config| config.edit_window_secs = 1).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;
    let limits = alice.welcome.limits.unwrap();
    assert_eq!(
        (limits.edit_window_seconds, limits.max_message_chars),
        (1, 4_000)
    );
    assert_eq!(limits.max_reaction_emoji, 20);
    let sent = send(&server, &alice, &mut bob, "typo", "").await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let late = edit(&server, &alice, &sent.message_id, "fixed")
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition, "{late:?}");
    assert!(delete(&server, &alice, &sent.message_id).await.is_ok());
    server.stop().await;
}

/// Deleting for everyone erases the text (in storage too, and from search), the reactions and
/// the quotes in replies; both users see it live; a deleted message cannot be edited, reacted to
/// or answered, and deleting it again changes nothing. Only its author deletes it.
async fn deletion_erases_the_text_everywhere(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;
    let secret = send(&server, &alice, &mut bob, "the secret is swordfish", "").await;
    react(&server, &bob, &secret.message_id, "👍", false)
        .await
        .unwrap();
    update_of(&mut bob, &secret.message_id).await;
    let reply = send(&server, &bob, &mut alice, "got it", &secret.message_id).await;
    assert_eq!(
        reply.reply_to.as_ref().unwrap().text,
        "the secret is swordfish"
    );

    let by_bob = delete(&server, &bob, &secret.message_id).await.unwrap_err();
    assert_eq!(by_bob.code(), Code::PermissionDenied);
    let deleted = delete(&server, &alice, &secret.message_id).await.unwrap();
    assert!(deleted.deleted_at.is_some());
    assert_eq!(deleted.text, "");
    assert!(deleted.reactions.is_empty());
    let live = update_of(&mut bob, &secret.message_id).await;
    assert!(live.deleted_at.is_some() && live.text.is_empty());
    // The reply's quote goes too, for both users.
    let requoted = update_of(&mut alice, &reply.message_id).await;
    let quote = requoted.reply_to.unwrap();
    assert!(quote.deleted && quote.text.is_empty(), "{quote:?}");

    let rows = server
        .db()
        .await
        .query_all_raw(Statement::from_string(
            server.db().await.get_database_backend(),
            "SELECT text, reply_to_text FROM chat_messages",
        ))
        .await
        .unwrap();
    for row in rows {
        let text: String = row.try_get_by_index(0).unwrap();
        let quote: Option<String> = row.try_get_by_index(1).unwrap();
        assert!(!text.contains("swordfish") && !quote.unwrap_or_default().contains("swordfish"));
    }

    let again = delete(&server, &alice, &secret.message_id).await.unwrap();
    assert_eq!(again.version, deleted.version, "deleting twice is once");
    let edit_after = edit(&server, &alice, &secret.message_id, "x")
        .await
        .unwrap_err();
    assert_eq!(
        edit_after.code(),
        Code::FailedPrecondition,
        "{edit_after:?}"
    );
    let react_after = react(&server, &bob, &secret.message_id, "👍", false)
        .await
        .unwrap_err();
    assert_eq!(react_after.code(), Code::FailedPrecondition);
    let mut client = server.chat().await.unwrap();
    let answer = SendMessageRequest {
        client_msg_id: "answer-deleted".into(),
        to_user_id: alice.user_id(),
        text: "what was it?".into(),
        reply_to_message_id: secret.message_id.clone(),
    };
    let refused = client
        .send_message(authed(&bob.token(), answer))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("reply_to_message_id"));
    server.stop().await;
}

/// A reply carries a quote of the message it answers, kept current by that message's edits; a
/// reply may only answer a message of the same conversation.
async fn replies_quote_the_answered_message(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut alice = ChatSession::new_user(&server, "Alice").await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;
    let mut carol = ChatSession::new_user(&server, "Carol").await;
    let question = send(&server, &alice, &mut bob, "lunch?", "").await;
    let answer = send(&server, &bob, &mut alice, "yes", &question.message_id).await;
    let quote = answer.reply_to.clone().unwrap();
    assert_eq!(
        (
            quote.message_id.as_str(),
            quote.from_user_id.clone(),
            quote.text.as_str(),
            quote.deleted
        ),
        (
            question.message_id.as_str(),
            alice.user_id(),
            "lunch?",
            false
        )
    );
    assert_eq!(
        history(&server, &alice, &bob).await[1].reply_to,
        Some(quote)
    );

    edit(&server, &alice, &question.message_id, "dinner?")
        .await
        .unwrap();
    let requoted = update_of(&mut bob, &answer.message_id).await;
    assert_eq!(requoted.reply_to.unwrap().text, "dinner?");

    // Carol cannot answer (or learn of) a message of Alice and Bob's conversation.
    let elsewhere = send(&server, &carol, &mut alice, "hi", "").await;
    let mut client = server.chat().await.unwrap();
    for (reply_to, code, field) in [
        (
            question.message_id.clone(),
            Code::NotFound,
            "reply_to_message_id",
        ),
        (
            "nope".to_owned(),
            Code::InvalidArgument,
            "reply_to_message_id",
        ),
    ] {
        let request = SendMessageRequest {
            client_msg_id: format!("carol-{reply_to}"),
            to_user_id: alice.user_id(),
            text: "me too".into(),
            reply_to_message_id: reply_to,
        };
        let status = client
            .send_message(authed(&carol.token(), request))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(field), "{status:?}");
    }
    carol
        .assert_none_where(Duration::from_millis(200), |e| {
            matches!(e, Event::Update(_))
        })
        .await;
    assert!(elsewhere.reply_to.is_none());
    server.stop().await;
}

/// Reactions: one per user per emoji (adding twice or removing twice changes nothing), both
/// users see each change live with who reacted, any emoji (normalized) but nothing else, at most
/// 20 different emoji per message; a stranger cannot react.
async fn reactions_are_one_per_user_per_emoji(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let mut alice_watch = alice.again(&server).await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;
    let carol = ChatSession::new_user(&server, "Carol").await;
    let sent = send(&server, &alice, &mut bob, "done!", "").await;
    let id = &sent.message_id;

    let first = react(&server, &bob, id, "❤", false).await.unwrap();
    assert_eq!(first.reactions.len(), 1);
    assert_eq!(first.reactions[0].emoji, "❤️", "kept fully qualified");
    assert_eq!(first.reactions[0].user_ids, [bob.user_id()]);
    let seen = update_of(&mut alice_watch, id).await;
    assert_eq!(seen.reactions, first.reactions);
    let twice = react(&server, &bob, id, "❤️", false).await.unwrap();
    assert_eq!(
        (twice.version, twice.reactions.clone()),
        (first.version, first.reactions.clone())
    );
    let both = react(&server, &alice, id, "❤️", false).await.unwrap();
    assert_eq!(both.reactions[0].user_ids, [bob.user_id(), alice.user_id()]);
    let removed = react(&server, &bob, id, "❤️", true).await.unwrap();
    assert_eq!(removed.reactions[0].user_ids, [alice.user_id()]);
    let removed_twice = react(&server, &bob, id, "❤️", true).await.unwrap();
    assert_eq!(removed_twice.version, removed.version);

    for bad in ["", "a", "👍👍", ":+1:"] {
        let status = react(&server, &bob, id, bad, false).await.unwrap_err();
        assert_eq!(
            (status.code(), bad_field(&status)),
            (Code::InvalidArgument, "emoji".into())
        );
    }
    let stranger = react(&server, &carol, id, "👍", false).await.unwrap_err();
    assert_eq!(stranger.code(), Code::NotFound);

    // A flood of different emoji stops at the cap.
    let many: Vec<&emojis::Emoji> = emojis::iter()
        .filter(|e| e.as_str() != "❤️")
        .take(25)
        .collect();
    let mut refused = None;
    for emoji in &many {
        match react(&server, &bob, id, emoji.as_str(), false).await {
            Ok(message) => assert!(message.reactions.len() <= 20),
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let refused = refused.expect("the 21st emoji is refused");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("emoji"));
    let stored = history(&server, &alice, &bob).await;
    assert_eq!(stored[0].reactions.len(), 20);
    server.stop().await;
}

/// Past the message rate limit, reactions are refused with RESOURCE_EXHAUSTED like messages.
async fn reaction_floods_are_rate_limited(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.rate_messages_per_minute = 60;
        config.rate_messages_burst = 5;
    })
    .await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;
    let sent = send(&server, &alice, &mut bob, "react to me", "").await;
    let mut limited = None;
    for i in 0..20 {
        if let Err(status) = react(&server, &bob, &sent.message_id, "👍", i % 2 == 1).await {
            limited = Some(status);
            break;
        }
    }
    let limited = limited.expect("a flood of reactions hits the limit");
    assert_eq!(limited.code(), Code::ResourceExhausted, "{limited:?}");
    server.stop().await;
}

/// A user away while their messages changed gets every change on their next session after the
/// version they had (Welcome tells the latest), and none when they ask for none.
async fn changes_reach_users_who_were_away(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;
    let first = send(&server, &alice, &mut bob, "one", "").await;
    let second = send(&server, &alice, &mut bob, "two", "").await;
    let untouched = send(&server, &alice, &mut bob, "three", "").await;
    let cursor = bob.welcome.changes_up_to;
    let bob_hello = bob.hello_again();
    drop(bob);

    edit(&server, &alice, &first.message_id, "one!")
        .await
        .unwrap();
    let deleted = delete(&server, &alice, &second.message_id).await.unwrap();
    react(&server, &alice, &first.message_id, "🎉", false)
        .await
        .unwrap();

    let mut back = ChatSession::open(
        &server,
        Hello {
            changes_after: Some(cursor),
            ..bob_hello.clone()
        },
    )
    .await
    .unwrap();
    let latest = back.welcome.changes_up_to;
    assert!(latest >= deleted.version && !back.welcome.changes_truncated);
    let mut updates = Vec::new();
    while updates.len() < 2 {
        let update = back
            .next_where(|e| match e {
                Event::Update(u) => u.message,
                _ => None,
            })
            .await;
        updates.push(update);
    }
    updates.sort_by_key(|m| m.version);
    assert_eq!(updates[0].message_id, second.message_id);
    assert!(updates[0].deleted_at.is_some());
    assert_eq!(updates[1].message_id, first.message_id);
    assert_eq!(
        (updates[1].text.as_str(), updates[1].reactions.len()),
        ("one!", 1)
    );
    back.assert_none_where(Duration::from_millis(300), |e| match e {
        Event::Update(u) => u
            .message
            .as_ref()
            .is_some_and(|m| m.message_id == untouched.message_id),
        _ => false,
    })
    .await;

    // Up to date, or asking for none: no updates.
    for changes_after in [Some(latest), None] {
        let mut fresh = ChatSession::open(
            &server,
            Hello {
                changes_after,
                ..bob_hello.clone()
            },
        )
        .await
        .unwrap();
        fresh
            .assert_none_where(Duration::from_millis(300), |e| {
                matches!(e, Event::Update(_))
            })
            .await;
    }
    server.stop().await;
}

on_both_databases!(
    edits_reach_both_users_and_only_the_author_edits,
    edits_end_with_the_edit_window,
    deletion_erases_the_text_everywhere,
    replies_quote_the_answered_message,
    reactions_are_one_per_user_per_emoji,
    reaction_floods_are_rate_limited,
    changes_reach_users_who_were_away,
);
