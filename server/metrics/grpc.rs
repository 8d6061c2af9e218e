//! Two middlewares around the gRPC routes: one notes which transport a request came by (before
//! tonic-web turns grpc-web into gRPC), the other counts the error statuses calls and streams end
//! with (inside tonic-web, where they are still gRPC headers and trailers).

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use axum::{
    body::Body,
    extract::{Request, State},
    response::Response,
};
use bytes::Bytes;
use http::{HeaderMap, header};
use http_body::Frame;
use tonic::Code;

use super::{Metrics, Transport};
use crate::error::code_name;

/// Tags a request with the [`Transport`] it came by: grpc-web when its content type says so.
pub async fn tag_transport(mut request: Request) -> Request {
    let grpc_web = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc-web"));
    if grpc_web {
        request.extensions_mut().insert(Transport::GrpcWeb);
    }
    request
}

/// Counts a response's error status: from its headers when the call failed at once (a
/// trailers-only response), otherwise from its trailers when the body ends.
pub async fn count_error_statuses(
    State(metrics): State<Arc<Metrics>>,
    response: Response,
) -> Response {
    if count_status(&metrics, response.headers()) {
        return response;
    }
    response.map(|inner| Body::new(WatchTrailers { inner, metrics }))
}

/// Counts the `grpc-status` in `headers` if it is an error; returns whether there was one at all.
fn count_status(metrics: &Metrics, headers: &HeaderMap) -> bool {
    let Some(status) = headers.get("grpc-status") else {
        return false;
    };
    let code = Code::from_bytes(status.as_bytes());
    if code != Code::Ok {
        metrics.error(code_name(code));
    }
    true
}

/// A response body that counts the status in its trailers.
struct WatchTrailers {
    /// The body tonic made.
    inner: Body,
    /// Where the status is counted.
    metrics: Arc<Metrics>,
}

impl http_body::Body for WatchTrailers {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(trailers) = frame.trailers_ref()
        {
            count_status(&self.metrics, trailers);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
