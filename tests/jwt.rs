//! JWT sign-in (`--jwt-secret` or `--jwt-public-key`): the token's `sub` is the user, `name` the
//! display name; forged, expired, foreign and misdirected tokens are UNAUTHENTICATED, and ids can
//! no longer be claimed without a token.

mod common;

use std::path::PathBuf;

use clap::Parser;
use common::{ChatSession, TestServer, WAIT, authed, test_config};
use fastchat::testing::{Backend, on_both_databases};
use fastchat::{
    config::Config,
    proto::{
        HeartbeatRequest, Hello, ListConversationsRequest, SendMessageRequest, SubscribeRequest,
        server_event::Event,
    },
};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tonic::{Code, Status};
use uuid::Uuid;

/// The HS256 secret the test servers share with the tests.
const SECRET: &str = "the-test-secret-that-is-long-enough";

/// Claims for `sub` valid for an hour, with `extra` added or overriding.
fn claims(sub: &str, extra: Value) -> Value {
    let mut claims = json!({ "sub": sub, "exp": get_current_timestamp() + 3600 });
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
    claims
}

/// A token signed with `key` using `algorithm`.
fn sign(algorithm: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    encode(&Header::new(algorithm), claims, key).unwrap()
}

/// A token signed with the servers' HS256 secret.
fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

/// A key pair file from `tests/fixtures/jwt`.
fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// A server that signs users in with the HS256 secret, changed by `tweak`.
async fn jwt_server(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(backend, |config| {
        config.jwt_secret = Some(SECRET.into());
        tweak(config);
    })
    .await
}

fn hello(token: &str) -> Hello {
    Hello {
        token: token.to_owned(),
        ..Default::default()
    }
}

/// Opens a session that must be refused as UNAUTHENTICATED with a message containing `reason`.
async fn assert_refused(server: &TestServer, hello: Hello, reason: &str) {
    let status: Status = ChatSession::open(server, hello)
        .await
        .err()
        .unwrap_or_else(|| panic!("a session was opened; expected a refusal for {reason:?}"));
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains(reason),
        "the refusal says {reason:?}: {status:?}"
    );
}

/// A valid HS256 token names the user: the id is `sub` (a UUID) or derived from `iss` and `sub`,
/// the name comes from `name` before the Hello's, Welcome echoes the token, messages are
/// attributed to `sub`, and a later token with another name renames the user.
async fn a_valid_token_names_the_user(backend: Backend) {
    let server = jwt_server(backend, |_| {}).await;
    let alice_id = Uuid::new_v4();
    let alice_token = hs256(&claims(&alice_id.to_string(), json!({ "name": "Alice" })));
    let alice = ChatSession::open(
        &server,
        Hello {
            display_name: "Not the token's name".into(),
            ..hello(&alice_token)
        },
    )
    .await
    .expect("a valid token opens a session");
    let user = alice.welcome.user.clone().unwrap();
    assert_eq!(
        user.user_id,
        alice_id.to_string(),
        "the id is the token's sub"
    );
    assert_eq!(
        user.display_name, "Alice",
        "the name is the token's name claim"
    );
    assert_eq!(
        alice.token(),
        alice_token,
        "Welcome echoes the presented JWT"
    );

    // A sub that is not a UUID: the id is the UUIDv5 of `<iss>#<sub>` in the URL namespace.
    let bob_token = hs256(&claims(
        "bob@example.com",
        json!({ "iss": "https://id.example" }),
    ));
    let mut bob = ChatSession::open(
        &server,
        Hello {
            display_name: "Bob".into(),
            ..hello(&bob_token)
        },
    )
    .await
    .unwrap();
    let bob_id = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"https://id.example#bob@example.com");
    assert_eq!(bob.user_id(), bob_id.to_string());
    assert_eq!(
        bob.welcome.user.as_ref().unwrap().display_name,
        "Bob",
        "without a name claim the Hello's name is taken"
    );

    alice.send_message(&bob.user_id(), "jwt-1", "hi Bob").await;
    let message = bob
        .next_where(|event| match event {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .await;
    assert_eq!(message.from_user_id, alice_id.to_string());
    assert_eq!(message.text, "hi Bob");

    // The same user id with a new name in the token: renamed, and stored so.
    let renamed = ChatSession::open(
        &server,
        hello(&hs256(&claims(
            &alice_id.to_string(),
            json!({ "name": "Alice Liddell" }),
        ))),
    )
    .await
    .unwrap();
    assert_eq!(renamed.welcome.user.unwrap().display_name, "Alice Liddell");
    let again = ChatSession::open(
        &server,
        hello(&hs256(&claims(&alice_id.to_string(), json!({})))),
    )
    .await
    .unwrap();
    assert_eq!(
        again.welcome.user.unwrap().display_name,
        "Alice Liddell",
        "without a name anywhere the stored name stays"
    );

    // Neither a name claim nor a Hello name: a default name from the id.
    let carol_id = Uuid::new_v4();
    let carol = ChatSession::open(
        &server,
        hello(&hs256(&claims(&carol_id.to_string(), json!({})))),
    )
    .await
    .unwrap();
    let expected = format!("user-{}", &carol_id.simple().to_string()[..8]);
    assert_eq!(carol.welcome.user.unwrap().display_name, expected);
    server.stop().await;
}

/// Tokens that are forged, expired, another user's, malformed or missing are UNAUTHENTICATED, each
/// with its reason; with JWT sign-in on, a Hello cannot claim an id.
async fn bad_tokens_are_refused(backend: Backend) {
    let server = jwt_server(backend, |_| {}).await;
    let alice_id = Uuid::new_v4().to_string();
    let bob_id = Uuid::new_v4().to_string();
    let valid = hs256(&claims(&alice_id, json!({ "name": "Alice" })));

    assert_refused(&server, Hello::default(), "sign-in is by JWT").await;
    assert_refused(
        &server,
        Hello {
            user_id: alice_id.clone(),
            display_name: "Alice".into(),
            token: String::new(),
            ..Default::default()
        },
        "sign-in is by JWT",
    )
    .await;

    let expired = hs256(&claims(
        &alice_id,
        json!({ "exp": get_current_timestamp() - 600 }),
    ));
    assert_refused(&server, hello(&expired), "expired").await;

    let wrong_secret = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-that-is-long-enough!"),
        &claims(&alice_id, json!({})),
    );
    assert_refused(&server, hello(&wrong_secret), "signature").await;

    // Alice's signature over Bob's claims: the payload was changed after signing.
    let bobs = hs256(&claims(&bob_id, json!({})));
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        bobs.split('.').nth(1).unwrap(),
        parts[2]
    );
    assert_refused(&server, hello(&tampered), "signature").await;

    // Alice's token with Bob's id.
    assert_refused(
        &server,
        Hello {
            user_id: bob_id.clone(),
            ..hello(&valid)
        },
        "not the token's user",
    )
    .await;

    // `{"alg":"none","typ":"JWT"}`, unsigned.
    let unsigned = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        valid.split('.').nth(1).unwrap()
    );
    assert_refused(&server, hello(&unsigned), "`none` is never accepted").await;

    let no_exp = hs256(&json!({ "sub": alice_id }));
    assert_refused(&server, hello(&no_exp), "`exp`").await;
    let no_sub = hs256(&json!({ "exp": get_current_timestamp() + 3600 }));
    assert_refused(&server, hello(&no_sub), "`sub`").await;
    let not_yet = hs256(&claims(
        &alice_id,
        json!({ "nbf": get_current_timestamp() + 600 }),
    ));
    assert_refused(&server, hello(&not_yet), "not valid yet").await;
    assert_refused(&server, hello(&"0".repeat(64)), "not a valid JWT").await;

    // A token presented as metadata is checked the same way.
    let status = server
        .chat()
        .await
        .unwrap()
        .subscribe(authed(
            &expired,
            SubscribeRequest {
                hello: Some(Hello::default()),
            },
        ))
        .await
        .expect_err("an expired bearer JWT opens no Subscribe stream");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("expired"), "{status:?}");

    ChatSession::open(&server, hello(&valid))
        .await
        .expect("after all that, the valid token still works");
    server.stop().await;
}

/// With `--jwt-issuer` and `--jwt-audience`, tokens from another issuer or for another audience
/// are refused, and so are tokens without them.
async fn issuer_and_audience_are_checked(backend: Backend) {
    let server = jwt_server(backend, |config| {
        config.jwt_issuer = Some("https://id.example".into());
        config.jwt_audience = Some("fastchat".into());
    })
    .await;
    let sub = Uuid::new_v4().to_string();
    let with = |extra: Value| hs256(&claims(&sub, extra));

    let ok = ChatSession::open(
        &server,
        hello(&with(
            json!({ "iss": "https://id.example", "aud": ["other", "fastchat"] }),
        )),
    )
    .await
    .expect("the right issuer, and an audience list that includes ours");
    assert_eq!(ok.user_id(), sub);

    let wrong_issuer = with(json!({ "iss": "https://evil.example", "aud": "fastchat" }));
    assert_refused(&server, hello(&wrong_issuer), "issuer").await;
    let wrong_audience = with(json!({ "iss": "https://id.example", "aud": "other" }));
    assert_refused(&server, hello(&wrong_audience), "audience").await;
    assert_refused(&server, hello(&with(json!({ "aud": "fastchat" }))), "`iss`").await;
    assert_refused(
        &server,
        hello(&with(json!({ "iss": "https://id.example" }))),
        "`aud`",
    )
    .await;
    server.stop().await;
}

/// Unary calls and Heartbeat take the JWT as `authorization: Bearer`: a user seen first on a unary
/// call is created, the sender is the token's user, forged tokens fail, and a heartbeat cannot
/// claim an id or mint a token.
async fn unary_calls_and_heartbeats_take_the_jwt(backend: Backend) {
    let server = jwt_server(backend, |_| {}).await;
    let alice_id = Uuid::new_v4().to_string();
    let alice_token = hs256(&claims(&alice_id, json!({ "name": "Alice" })));
    let mut bob = ChatSession::open(
        &server,
        hello(&hs256(&claims(
            &Uuid::new_v4().to_string(),
            json!({ "name": "Bob" }),
        ))),
    )
    .await
    .unwrap();
    let mut chat = server.chat().await.unwrap();

    let request = SendMessageRequest {
        client_msg_id: "unary-1".into(),
        to_user_id: bob.user_id(),
        text: "sent with a bearer JWT".into(),
        ..Default::default()
    };
    chat.send_message(authed(&alice_token, request.clone()))
        .await
        .expect("a unary call with a valid bearer JWT");
    let message = bob
        .next_where(|event| match event {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .await;
    assert_eq!(message.from_user_id, alice_id);

    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-that-is-long-enough!"),
        &claims(&alice_id, json!({})),
    );
    let status = chat
        .send_message(authed(&forged, request.clone()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("signature"), "{status:?}");
    let status = chat
        .list_conversations(ListConversationsRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "no metadata");
    let conversations = chat
        .list_conversations(authed(&alice_token, ListConversationsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(conversations.conversations.len(), 1);

    let mut presence = server.presence().await.unwrap();
    let beat = presence
        .heartbeat(authed(&alice_token, HeartbeatRequest::default()))
        .await
        .expect("a heartbeat with a bearer JWT")
        .into_inner();
    let user = beat.presence.unwrap().user.unwrap();
    assert_eq!(user.user_id, alice_id);
    assert_eq!(user.display_name, "Alice");
    assert!(beat.token.is_empty(), "no FastChat token is minted");
    let status = presence
        .heartbeat(HeartbeatRequest {
            user_id: String::new(),
            display_name: "Claimer".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "no claims by heartbeat"
    );
    server.stop().await;
}

/// `--jwt-public-key` with an RSA key verifies RS256 tokens; tokens signed by a foreign key, or
/// HS256 tokens that use the public key as their secret, are refused.
async fn rs256_public_key(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.jwt_public_key = Some(fixture("rsa-public.pem"));
    })
    .await;
    let sub = Uuid::new_v4().to_string();
    let claims = claims(&sub, json!({ "name": "Rsa" }));
    let key = EncodingKey::from_rsa_pem(&fixture_bytes("rsa-private.pem")).unwrap();
    let session = ChatSession::open(&server, hello(&sign(Algorithm::RS256, &key, &claims)))
        .await
        .expect("an RS256 token signed by the configured key");
    assert_eq!(session.user_id(), sub);

    let foreign = EncodingKey::from_rsa_pem(&fixture_bytes("rsa-foreign-private.pem")).unwrap();
    assert_refused(
        &server,
        hello(&sign(Algorithm::RS256, &foreign, &claims)),
        "signature",
    )
    .await;
    let confused = EncodingKey::from_secret(&fixture_bytes("rsa-public.pem"));
    assert_refused(
        &server,
        hello(&sign(Algorithm::HS256, &confused, &claims)),
        "must be signed with RS256",
    )
    .await;
    server.stop().await;
}

/// `--jwt-public-key` with an EC (P-256) key verifies ES256 tokens; a foreign key's are refused.
async fn es256_public_key(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.jwt_public_key = Some(fixture("ec-public.pem"));
    })
    .await;
    let sub = Uuid::new_v4().to_string();
    let claims = claims(&sub, json!({}));
    let key = EncodingKey::from_ec_pem(&fixture_bytes("ec-private.pem")).unwrap();
    let session = ChatSession::open(&server, hello(&sign(Algorithm::ES256, &key, &claims)))
        .await
        .expect("an ES256 token signed by the configured key");
    assert_eq!(session.user_id(), sub);

    let foreign = EncodingKey::from_ec_pem(&fixture_bytes("ec-foreign-private.pem")).unwrap();
    assert_refused(
        &server,
        hello(&sign(Algorithm::ES256, &foreign, &claims)),
        "signature",
    )
    .await;
    server.stop().await;
}

/// `--jwt-algorithm` picks the one accepted algorithm: HS512 tokens pass, HS256 ones do not.
async fn jwt_algorithm_is_the_only_one_accepted(backend: Backend) {
    let server = jwt_server(backend, |config| {
        config.jwt_algorithm = Some(Algorithm::HS512);
    })
    .await;
    let claims = claims(&Uuid::new_v4().to_string(), json!({}));
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    ChatSession::open(&server, hello(&sign(Algorithm::HS512, &key, &claims)))
        .await
        .expect("an HS512 token");
    assert_refused(&server, hello(&hs256(&claims)), "must be signed with HS512").await;
    server.stop().await;
}

on_both_databases!(
    a_valid_token_names_the_user,
    bad_tokens_are_refused,
    issuer_and_audience_are_checked,
    unary_calls_and_heartbeats_take_the_jwt,
    rs256_public_key,
    es256_public_key,
    jwt_algorithm_is_the_only_one_accepted,
);

/// The flags are checked when parsed: secret or key (not both), a long enough secret, known
/// algorithms, and issuer, audience and algorithm only with one of them.
#[test]
fn jwt_flags_are_validated() {
    let parse = |args: &[&str]| {
        Config::try_parse_from(std::iter::once("fastchat").chain(args.iter().copied()))
    };
    let long = "x".repeat(32);
    assert!(parse(&["--jwt-secret", &long]).is_ok());
    let refused = [
        (vec!["--jwt-secret", "short"], "at least 32 bytes"),
        (
            vec!["--jwt-secret", &long, "--jwt-public-key", "key.pem"],
            "cannot be used with",
        ),
        (vec!["--jwt-issuer", "https://id.example"], "--jwt-secret"),
        (vec!["--jwt-audience", "fastchat"], "--jwt-secret"),
        (vec!["--jwt-algorithm", "HS256"], "--jwt-secret"),
        (
            vec!["--jwt-secret", &long, "--jwt-algorithm", "none"],
            "must be one of",
        ),
        (
            vec!["--jwt-secret", &long, "--jwt-issuer", ""],
            "--jwt-issuer",
        ),
    ];
    for (args, expected) in refused {
        let error = parse(&args)
            .err()
            .unwrap_or_else(|| panic!("{args:?} was accepted"));
        assert!(error.to_string().contains(expected), "{args:?}: {error}");
    }
}

/// A key file that cannot be read or used, or an algorithm that does not fit the key, stops the
/// start with a message saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_keys_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key").unwrap();
    let config = |public_key: Option<PathBuf>, secret: Option<&str>, algorithm| {
        let mut config = test_config();
        config.data_dir = dir.path().join("data");
        config.jwt_public_key = public_key;
        config.jwt_secret = secret.map(str::to_owned);
        config.jwt_algorithm = algorithm;
        config
    };
    let cases = [
        (
            config(Some("/nonexistent/key.pem".into()), None, None),
            "/nonexistent/key.pem: cannot read the file",
        ),
        (
            config(Some(garbage), None, None),
            "not a PEM RSA or EC public key",
        ),
        (
            config(
                Some(fixture("rsa-public.pem")),
                None,
                Some(Algorithm::ES256),
            ),
            "does not fit the key in --jwt-public-key",
        ),
        (
            config(None, Some(SECRET), Some(Algorithm::RS256)),
            "does not fit --jwt-secret",
        ),
    ];
    for (config, expected) in cases {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let result = tokio::time::timeout(
            WAIT,
            fastchat::run(config, listener, std::future::pending()),
        )
        .await
        .expect("a bad JWT setting must stop the start, not serve");
        let error = format!("{:#}", result.expect_err("a bad JWT setting must fail"));
        assert!(error.contains(expected), "{error}");
    }
}
