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
        },
    )
    .await
    .unwrap();
    assert_eq!(renamed.welcome.user.unwrap().display_name, "Annie");
    server.stop().await;
}

on_both_databases!(
    claimed_ids_need_their_token,
    unary_calls_act_as_the_token_user,
    server_picks_ids_and_renames,
);
