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

/// GETs `path` over HTTP/1.1 with an `Accept-Encoding` of `encodings` (None: no header):
/// status, response headers (names lowercased; one sent several times, as Vary is, has its
/// values joined) and body.
async fn get_encoded(
    server: &TestServer,
    path: &str,
    encodings: Option<&str>,
) -> (u16, std::collections::HashMap<String, String>, Vec<u8>) {
    let accept: Vec<_> = encodings
        .map(|e| ("accept-encoding", e))
        .into_iter()
        .collect();
    let (status, headers, body) = common::http_get_from(&server.url(), path, &accept).await;
    let mut joined = std::collections::HashMap::<String, String>::new();
    for (name, value) in &headers {
        let values = joined.entry(name.as_str().to_owned()).or_default();
        if !values.is_empty() {
            values.push_str(", ");
        }
        values.push_str(&value.to_str().unwrap().to_ascii_lowercase());
    }
    (status, joined, body.to_vec())
}

/// The build's precompressed copies go to browsers that accept them (brotli first), the
/// original to the others; hashed assets are cached for good and the rest revalidated; a
/// missing file is 404 (not the client's page), a client route gets index.html.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_precompressed_files_with_cache_headers() {
    let web = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| std::fs::write(web.path().join(name), body).unwrap();
    std::fs::create_dir(web.path().join("assets")).unwrap();
    write("index.html", "<!doctype html><p>index</p>");
    write("index.html.br", "index-as-brotli");
    write("assets/app-1234.js", "console.log('plain')");
    write("assets/app-1234.js.br", "app-as-brotli");
    write("assets/app-1234.js.gz", "app-as-gzip");
    let web_dir = web.path().to_owned();
    let server = TestServer::start_with(Backend::Sqlite, move |c| c.web_dir = web_dir).await;

    let asset = "/assets/app-1234.js";
    for (accept, encoding, body) in [
        (Some("gzip, deflate, br"), Some("br"), "app-as-brotli"),
        (Some("gzip"), Some("gzip"), "app-as-gzip"),
        (None, None, "console.log('plain')"),
    ] {
        let (status, headers, served) = get_encoded(&server, asset, accept).await;
        assert_eq!(status, 200);
        assert_eq!(
            headers.get("content-encoding").map(String::as_str),
            encoding
        );
        assert_eq!(String::from_utf8_lossy(&served), body);
        assert!(
            headers["content-type"].contains("javascript"),
            "{headers:?}"
        );
        assert_eq!(
            headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert!(headers["vary"].contains("accept-encoding"), "{headers:?}");
    }

    for path in ["/", "/chat/some-peer"] {
        let (status, headers, served) = get_encoded(&server, path, Some("br")).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            String::from_utf8_lossy(&served),
            "index-as-brotli",
            "{path}"
        );
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
    }
    for missing in ["/favicon.ico", "/assets/gone-5678.js"] {
        let (status, headers, _) = get_encoded(&server, missing, None).await;
        assert_eq!(status, 404, "{missing}: {headers:?}");
    }
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
