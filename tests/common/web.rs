//! A grpc-web client as a browser's grpc-web library uses it: tonic-web's client layer over a
//! hyper client that speaks HTTP/1.1 (or HTTP/2 with prior knowledge), checking that every
//! answer is grpc-web over that version.

use http::{Response, Version};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tonic::body::Body;
use tonic_web::{GrpcWebCall, GrpcWebClientLayer, GrpcWebClientService};
use tower::{ServiceBuilder, util::MapResponse};

/// The hyper client under the grpc-web layer, checking every response's version.
pub type WebChannel = GrpcWebClientService<
    MapResponse<
        Client<HttpConnector, GrpcWebCall<Body>>,
        fn(Response<hyper::body::Incoming>) -> Response<hyper::body::Incoming>,
    >,
>;

/// Fails the call (and so the test) unless the response is grpc-web and came over HTTP/1.1. Plain
/// gRPC over HTTP/1.1 can get through hyper too, so the content type tells that tonic-web answered.
fn assert_grpc_web_over_http11(
    response: Response<hyper::body::Incoming>,
) -> Response<hyper::body::Incoming> {
    assert_grpc_web(response, Version::HTTP_11)
}

/// The same for a client that speaks HTTP/2 (as browsers do over TLS).
fn assert_grpc_web_over_http2(
    response: Response<hyper::body::Incoming>,
) -> Response<hyper::body::Incoming> {
    assert_grpc_web(response, Version::HTTP_2)
}

fn assert_grpc_web(
    response: Response<hyper::body::Incoming>,
    version: Version,
) -> Response<hyper::body::Incoming> {
    assert_eq!(
        response.version(),
        version,
        "grpc-web over the expected HTTP version"
    );
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/grpc-web"),
        "the server must answer grpc-web, not {content_type:?}"
    );
    response
}

/// A grpc-web channel to `url` (`http://host:port`) speaking `version` (HTTP/1.1, or HTTP/2 with
/// prior knowledge), with the origin to give the generated clients.
pub fn web_channel_to(url: &str, version: Version) -> (WebChannel, http::Uri) {
    // The legacy client speaks HTTP/1.1 unless told `http2_only`, and plain http has no ALPN.
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let http2 = version == Version::HTTP_2;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build(connector);
    let check: fn(Response<hyper::body::Incoming>) -> Response<hyper::body::Incoming> = if http2 {
        assert_grpc_web_over_http2
    } else {
        assert_grpc_web_over_http11
    };
    let channel = ServiceBuilder::new()
        .layer(GrpcWebClientLayer::new())
        .map_response(check)
        .service(client);
    (channel, url.parse().unwrap())
}
