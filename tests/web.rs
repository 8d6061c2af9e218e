//! The web client on the API's port: the built files at `/`, index.html for the client's own
//! routes, a clear page when it is not built, and gRPC UNIMPLEMENTED (not HTML) for unknown methods.

mod common;

use common::{TestServer, http_get};
use fastchat::testing::Backend;

/// GETs `path` over HTTP/1.1: status, content type and body as text.
async fn get(server: &TestServer, path: &str) -> (u16, String, String) {
    let (status, content_type, body) = http_get(server, path).await;
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_built_web_client() {
    let web = tempfile::tempdir().unwrap();
    std::fs::write(
        web.path().join("index.html"),
        "<!doctype html><p>fastchat-test-index</p>",
    )
    .unwrap();
    std::fs::create_dir(web.path().join("assets")).unwrap();
    std::fs::write(
        web.path().join("assets/app.js"),
        "console.log('fastchat-test-js')",
    )
    .unwrap();
    let web_dir = web.path().to_owned();
    let server = TestServer::start_with(Backend::Sqlite, move |c| c.web_dir = web_dir).await;

    let (status, content_type, body) = get(&server, "/").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(body.contains("fastchat-test-index"));

    let (status, content_type, body) = get(&server, "/assets/app.js").await;
    assert_eq!(status, 200);
    assert!(content_type.contains("javascript"), "{content_type}");
    assert!(body.contains("fastchat-test-js"));

    let (status, _, body) = get(&server, "/chat/some-peer").await;
    assert_eq!(status, 200, "a client route gets index.html");
    assert!(body.contains("fastchat-test-index"));

    let (status, content_type, _) = get(&server, "/health").await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/json"),
        "API routes come first"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn says_so_when_the_web_client_is_not_built() {
    let empty = tempfile::tempdir().unwrap();
    let web_dir = empty.path().to_owned();
    let server = TestServer::start_with(Backend::Sqlite, move |c| c.web_dir = web_dir).await;
    let (status, content_type, body) = get(&server, "/").await;
    assert_eq!(status, 404);
    assert!(content_type.starts_with("text/html"));
    assert!(
        body.contains("not built") && body.contains("npm run build"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_grpc_methods_are_unimplemented() {
    let web = tempfile::tempdir().unwrap();
    std::fs::write(web.path().join("index.html"), "<p>index</p>").unwrap();
    let web_dir = web.path().to_owned();
    let server = TestServer::start_with(Backend::Sqlite, move |c| c.web_dir = web_dir).await;

    let mut grpc = tonic::client::Grpc::new(server.channel().await.unwrap());
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/nope.v1.Nope/Call");
    let codec = tonic_prost::ProstCodec::<
        fastchat::proto::ListOnlineRequest,
        fastchat::proto::ListOnlineResponse,
    >::default();
    let status = grpc
        .unary(
            tonic::Request::new(fastchat::proto::ListOnlineRequest::default()),
            path,
            codec,
        )
        .await
        .expect_err("an unknown service must fail");
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    server.stop().await;
}
