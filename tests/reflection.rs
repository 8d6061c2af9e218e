//! Server reflection answers in both v1 and v1alpha (grpcurl 1.8 speaks v1alpha), listing the API.

mod common;

use common::TestServer;
use fastchat::testing::{Backend, on_both_databases};
use tonic_reflection::pb::{v1, v1alpha};

const EXPECTED: [&str; 4] = [
    "fastchat.v1.ChatService",
    "fastchat.v1.PresenceService",
    "fastchat.v1.MetricsService",
    "grpc.health.v1.Health",
];

async fn reflection_lists_services_in_v1_and_v1alpha(backend: Backend) {
    let server = TestServer::start(backend).await;

    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(server.channel().await.unwrap());
    let request = v1::ServerReflectionRequest {
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
        ..Default::default()
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("unexpected v1 answer: {answer:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in EXPECTED {
        assert!(
            names.iter().any(|n| n == name),
            "v1 lists {name}: {names:?}"
        );
    }

    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(
        server.channel().await.unwrap(),
    );
    let request = v1alpha::ServerReflectionRequest {
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "fastchat.v1.ChatService".into(),
            ),
        ),
        ..Default::default()
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        answer.message_response
    else {
        panic!("unexpected v1alpha answer: {answer:?}")
    };
    assert!(
        !files.file_descriptor_proto.is_empty(),
        "v1alpha returns the chat.proto descriptor"
    );
    server.stop().await;
}

on_both_databases!(reflection_lists_services_in_v1_and_v1alpha);

/// grpcurl decodes error details (BadRequest, RetryInfo) by asking reflection for their types;
/// an answer of NOT_FOUND there would leave the details unreadable.
#[tokio::test]
async fn reflection_describes_the_error_detail_types() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(
        server.channel().await.unwrap(),
    );
    for symbol in ["google.rpc.BadRequest", "google.rpc.RetryInfo"] {
        let request = v1alpha::ServerReflectionRequest {
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                    symbol.into(),
                ),
            ),
            ..Default::default()
        };
        let mut answers = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.message().await.unwrap().unwrap();
        assert!(
            matches!(
                answer.message_response,
                Some(
                    v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_)
                )
            ),
            "reflection knows {symbol}: {answer:?}"
        );
    }
    server.stop().await;
}
