//! Identity: the first use of a user id claims it; later ones must present its token. No one can
//! pose as someone else. Users claimed and never used are deleted after a while.

mod common;

use std::time::Duration;

use common::{ChatSession, TestServer, WAIT, authed, within};
use fastchat::testing::{Backend, on_both_databases};
use fastchat::{
    db::tables::users,
    proto::{
        HeartbeatRequest, Hello, ListConversationsRequest, SendMessageRequest, SubscribeRequest,
        server_event::Event,
    },
};
use sea_orm::{DatabaseConnection, EntityTrait};
use tonic::Code;

/// A claimed id cannot be used without its token, nor with another user's token.
async fn claimed_ids_need_their_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let chosen = uuid::Uuid::new_v4().to_string();
    let alice = ChatSession::open(
        &server,
        Hello {
            user_id: chosen.clone(),
            display_name: "Alice".into(),
            token: String::new(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(alice.user_id(), chosen, "the client picks its id");
    assert!(alice.token().len() >= 32, "a token of at least 128 bits");
    let mallory = ChatSession::new_user(&server, "Mallory").await;

    let as_alice = |token: &str| Hello {
        user_id: chosen.clone(),
        display_name: "Alice".into(),
        token: token.to_owned(),
        ..Default::default()
    };
    let status = ChatSession::open(&server, as_alice(""))
        .await
        .err()
        .unwrap();
    assert_eq!(status.code(), Code::Unauthenticated, "no token");
    let status = ChatSession::open(&server, as_alice(&mallory.token()))
        .await
        .err()
        .unwrap();
    assert_eq!(status.code(), Code::Unauthenticated, "someone else's token");
    let status = ChatSession::open(&server, as_alice(&"0".repeat(64)))
        .await
        .err()
        .unwrap();
    assert_eq!(status.code(), Code::Unauthenticated, "a forged token");
    ChatSession::open(&server, as_alice(&alice.token()))
        .await
        .expect("the right token");

    // Subscribe takes the token from `authorization` metadata too.
    let mut client = server.chat().await.unwrap();
    let hello = Hello {
        user_id: chosen.clone(),
        ..Default::default()
    };
    let mut stream = client
        .subscribe(authed(
            &alice.token(),
            SubscribeRequest {
                hello: Some(hello.clone()),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(matches!(first.event, Some(Event::Welcome(_))));
    let status = client
        .subscribe(authed(
            &mallory.token(),
            SubscribeRequest { hello: Some(hello) },
        ))
        .await
        .err()
        .unwrap();
    assert_eq!(status.code(), Code::Unauthenticated);
    server.stop().await;
}

/// Unary calls need a valid bearer token, and the sender is always the token's user.
async fn unary_calls_act_as_the_token_user(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = ChatSession::new_user(&server, "Alice").await;
    let mut bob = ChatSession::new_user(&server, "Bob").await;
    let mut client = server.chat().await.unwrap();

    let status = client
        .list_conversations(ListConversationsRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "no metadata");
    let status = client
        .list_conversations(authed("forged", ListConversationsRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "unknown token");

    let request = SendMessageRequest {
        client_msg_id: "m".into(),
        to_user_id: bob.user_id(),
        text: "from the token's user".into(),
        ..Default::default()
    };
    client
        .send_message(authed(&alice.token(), request))
        .await
        .unwrap();
    let got = bob
        .next_where(|e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .await;
    assert_eq!(got.from_user_id, alice.user_id());
    server.stop().await;
}

/// An empty user id lets the server pick one; a later Hello with the token may rename the user.
async fn server_picks_ids_and_renames(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = ChatSession::new_user(&server, "Ann").await;
    assert!(uuid::Uuid::parse_str(&first.user_id()).is_ok());
    let renamed = ChatSession::open(
        &server,
        Hello {
            user_id: first.user_id(),
            display_name: "Annie".into(),
            token: first.token(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(renamed.welcome.user.unwrap().display_name, "Annie");
    server.stop().await;
}

/// Claims arriving together are committed together; when several claim the same id at once,
/// exactly one gets it, and every other new user gets their own.
async fn concurrent_claims_one_winner_per_id(backend: Backend) {
    let server = TestServer::start(backend).await;
    let contested = uuid::Uuid::new_v4().to_string();
    let mut claims = tokio::task::JoinSet::new();
    for index in 0..40 {
        let channel = server.channel().await.unwrap();
        let user_id = if index % 2 == 0 {
            contested.clone()
        } else {
            String::new()
        };
        claims.spawn(async move {
            let hello = Hello {
                user_id,
                display_name: format!("user-{index}"),
                token: String::new(),
                ..Default::default()
            };
            (index, ChatSession::open_on(channel, hello).await)
        });
    }
    let (mut winners, mut others) = (Vec::new(), std::collections::HashSet::new());
    while let Some(joined) = claims.join_next().await {
        match joined.unwrap() {
            (index, Ok(session)) if index % 2 == 0 => winners.push(session),
            (_, Ok(session)) => assert!(others.insert(session.user_id()), "an id given twice"),
            (index, Err(status)) => {
                assert_eq!(index % 2, 0, "a claim of a fresh id failed: {status:?}");
                assert_eq!(status.code(), Code::Unauthenticated);
            }
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one claim of the contested id wins"
    );
    assert_eq!(winners[0].user_id(), contested);
    assert_eq!(others.len(), 20);
    // The winner's token is the one stored: it opens another session.
    winners[0].again(&server).await;
    server.stop().await;
}

/// Whether the server's database holds the user.
async fn stored(db: &DatabaseConnection, user_id: &str) -> bool {
    let id = uuid::Uuid::parse_str(user_id).unwrap();
    users::Entity::find_by_id(id)
        .one(db)
        .await
        .unwrap()
        .is_some()
}

/// A user claimed by a heartbeat and never used again is deleted once the prune time has passed,
/// and their token stops working. Users who opened a session, sent or received a message, or are
/// still kept online by heartbeats stay.
async fn users_claimed_and_never_used_are_pruned(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.prune_unused_users_after_secs = 1;
        c.presence_ttl_secs = 1;
    })
    .await;
    let presence = server.presence().await.unwrap();
    // A new user by heartbeat: their id and token.
    let claim = async |name: &str| {
        let request = HeartbeatRequest {
            display_name: name.to_owned(),
            ..Default::default()
        };
        let response = presence.clone().heartbeat(request).await.unwrap();
        let response = response.into_inner();
        (
            response.presence.unwrap().user.unwrap().user_id,
            response.token,
        )
    };
    let unused = claim("Unused").await;
    let sender = claim("Sender").await;
    let recipient = claim("Recipient").await;
    let heartbeating = claim("Heartbeating").await;
    let with_session = ChatSession::new_user(&server, "Session").await.user_id();
    let message = SendMessageRequest {
        client_msg_id: "m-1".into(),
        to_user_id: recipient.0.clone(),
        text: "hello".into(),
        ..Default::default()
    };
    server
        .chat()
        .await
        .unwrap()
        .send_message(authed(&sender.1, message))
        .await
        .unwrap();

    let db = server.db().await;
    let heartbeat = async |token: &str| {
        let request = authed(token, HeartbeatRequest::default());
        presence.clone().heartbeat(request).await
    };
    within(WAIT, async {
        while stored(&db, &unused.0).await {
            heartbeat(&heartbeating.1).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    let status = heartbeat(&unused.1).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // Two more sweeps (one a second) pass without taking anyone else.
    for _ in 0..8 {
        heartbeat(&heartbeating.1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for user in [&sender.0, &recipient.0, &heartbeating.0, &with_session] {
        assert!(stored(&db, user).await, "{user} was pruned");
    }
    heartbeat(&sender.1)
        .await
        .expect("the sender's token still works");
    server.stop().await;
}

on_both_databases!(
    users_claimed_and_never_used_are_pruned,
    claimed_ids_need_their_token,
    concurrent_claims_one_winner_per_id,
    unary_calls_act_as_the_token_user,
    server_picks_ids_and_renames,
);
