//! Identity: the first use of a user id claims it; later ones must present its token. No one can
//! pose as someone else.

mod common;

use common::{Backend, ChatSession, TestServer, authed};
use fastchat::proto::{
    Hello, ListConversationsRequest, SendMessageRequest, SubscribeRequest, server_event::Event,
};
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

on_both_databases!(
    claimed_ids_need_their_token,
    concurrent_claims_one_winner_per_id,
    unary_calls_act_as_the_token_user,
    server_picks_ids_and_renames,
);
