//! Checks on how a request body is cut into gRPC messages, made before tonic decodes it.
//!
//! tonic answers broken framing with INTERNAL (a compression flag without `grpc-encoding`, a body
//! that ends inside a message, a unary call without a message, or whose body breaks off), so any
//! client could trip an alert on server errors. The fault is the caller's: these get
//! INVALID_ARGUMENT. (gRPC's compression spec asks for INTERNAL on a stray compressed flag; the
//! server departs from it on purpose, as its errors are for its own faults.) A unary call also
//! gets it for a second message, which tonic would otherwise read and decode to the end of the
//! body (a 512 MiB body of empty messages kept a core busy for seconds) before the call ran.
//! Once a call is answered, hyper stops reading its body: over HTTP/1.1 it closes the connection
//! rather than read the rest, over HTTP/2 it resets the stream.

use std::{
    collections::HashSet,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use axum::{
    body::Body,
    extract::{Request, State},
};
use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};
use prost::Message;
use tonic::Status;
use tower::BoxError;

/// The 5-byte prefix of every gRPC message: a compression flag and a big-endian length.
const PREFIX_LEN: usize = 5;

/// The paths (`/package.Service/Method`) of the methods that take exactly one request message.
/// A path not listed is held to the rules of a stream, so a service whose descriptors were left
/// out is checked less, never refused.
#[derive(Debug, Clone)]
pub struct UnaryMethods(Arc<HashSet<String>>);

impl UnaryMethods {
    /// The methods with one request message in the encoded descriptor sets of the services served.
    pub fn from_descriptor_sets(sets: &[&[u8]]) -> Result<Self, prost::DecodeError> {
        let mut paths = HashSet::new();
        for set in sets {
            for file in prost_types::FileDescriptorSet::decode(*set)?.file {
                for service in &file.service {
                    let qualified = match file.package() {
                        "" => service.name().to_owned(),
                        package => format!("{package}.{}", service.name()),
                    };
                    for method in service.method.iter().filter(|m| !m.client_streaming()) {
                        paths.insert(format!("/{qualified}/{}", method.name()));
                    }
                }
            }
        }
        Ok(Self(Arc::new(paths)))
    }

    fn contains(&self, path: &str) -> bool {
        self.0.contains(path)
    }
}

/// Wraps a gRPC request's body (after tonic-web has made it plain gRPC) in [`Framing`] checks.
pub async fn check_framing(State(unary): State<UnaryMethods>, request: Request) -> Request {
    // tonic takes `identity` for no compression at all.
    let compression_declared = request
        .headers()
        .get("grpc-encoding")
        .is_some_and(|encoding| encoding.as_bytes() != b"identity");
    let framing = Framing::new(unary.contains(request.uri().path()), compression_declared);
    request.map(|inner| Body::new(FramedBody { inner, framing }))
}

/// Where a request body stands in its gRPC framing.
#[derive(Debug)]
struct Framing {
    /// The method takes one request message.
    unary: bool,
    /// The request names a `grpc-encoding`, so compressed messages may come.
    compression_declared: bool,
    /// The prefix being read.
    prefix: [u8; PREFIX_LEN],
    /// How much of `prefix` has arrived.
    prefix_filled: usize,
    /// Bytes of the current message still to come.
    body_left: u32,
    /// Messages whose prefix has arrived.
    messages: u32,
}

impl Framing {
    /// A body yet to be read.
    fn new(unary: bool, compression_declared: bool) -> Self {
        Self {
            unary,
            compression_declared,
            prefix: [0; PREFIX_LEN],
            prefix_filled: 0,
            body_left: 0,
            messages: 0,
        }
    }

    /// Follows `data` through the framing; an error names the first rule it breaks.
    fn feed(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.body_left > 0 {
                let skipped = data.len().min(self.body_left as usize);
                self.body_left -= skipped as u32;
                data = &data[skipped..];
                continue;
            }
            let taken = data.len().min(PREFIX_LEN - self.prefix_filled);
            self.prefix[self.prefix_filled..self.prefix_filled + taken]
                .copy_from_slice(&data[..taken]);
            self.prefix_filled += taken;
            data = &data[taken..];
            if self.prefix_filled == PREFIX_LEN {
                self.prefix_filled = 0;
                self.start_message()?;
            }
        }
        Ok(())
    }

    /// Checks a message's prefix, which has just arrived whole.
    fn start_message(&mut self) -> Result<(), Status> {
        self.messages = self.messages.saturating_add(1);
        if self.unary && self.messages > 1 {
            return Err(Status::invalid_argument(
                "a unary call takes one request message; this one sent more",
            ));
        }
        match self.prefix[0] {
            0 => {}
            1 if self.compression_declared => {}
            1 => {
                return Err(Status::invalid_argument(
                    "a message has the compressed flag but the request has no grpc-encoding",
                ));
            }
            flag => {
                return Err(Status::invalid_argument(format!(
                    "a message has the compression flag {flag}; gRPC allows 0 and 1"
                )));
            }
        }
        self.body_left = (&self.prefix[1..]).get_u32();
        Ok(())
    }

    /// Checks the framing once the body has ended (tonic reads no further than trailers).
    fn finish(&self) -> Result<(), Status> {
        if self.prefix_filled > 0 || self.body_left > 0 {
            return Err(Status::invalid_argument(
                "the request body ends inside a message: it is cut short",
            ));
        }
        if self.unary && self.messages == 0 {
            return Err(Status::invalid_argument(
                "the call carries no request message",
            ));
        }
        Ok(())
    }
}

/// A request body whose framing is checked as it is read.
struct FramedBody {
    /// The body as it came.
    inner: Body,
    /// Where its framing stands.
    framing: Framing,
}

impl http_body::Body for FramedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            // tonic would answer a unary call whose body broke off (the client reset it, or
            // tonic-web could not decode it) with INTERNAL; a stream takes a reset as its end.
            Some(Err(err)) if self.framing.unary => {
                let status = Status::invalid_argument(format!("the request body broke off: {err}"));
                return Poll::Ready(Some(Err(status.into())));
            }
            Some(Err(err)) => return Poll::Ready(Some(Err(err.into()))),
            None => {
                return Poll::Ready(self.framing.finish().err().map(|status| Err(status.into())));
            }
        };
        let checked = match frame.data_ref() {
            Some(data) => self.framing.feed(data),
            None => self.framing.finish(), // trailers end the body
        };
        Poll::Ready(Some(match checked {
            Ok(()) => Ok(frame),
            Err(status) => Err(status.into()),
        }))
    }

    // Never at its end early: the framing is checked when the inner body says it has ended.
    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![flag];
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn messages_split_anywhere_are_followed() {
        let mut wire = message(0, b"hello");
        wire.extend(message(0, b""));
        wire.extend(message(1, b"zipped"));
        for cut in 0..wire.len() {
            let mut streaming = Framing::new(false, true);
            streaming.feed(&wire[..cut]).unwrap();
            streaming.feed(&wire[cut..]).unwrap();
            assert_eq!(streaming.messages, 3);
            streaming.finish().unwrap();
        }
    }

    #[test]
    fn broken_framing_is_invalid_argument() {
        let broken = [
            (Framing::new(true, false), message(0, b"one").repeat(2)),
            (Framing::new(false, false), message(1, b"zipped")),
            (Framing::new(false, true), message(7, b"odd flag")),
        ];
        for (mut framing, wire) in broken {
            let status = framing.feed(&wire).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        }
        let mut cut = Framing::new(true, false);
        cut.feed(&message(0, b"hello")[..7]).unwrap();
        assert_eq!(
            cut.finish().unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let empty = Framing::new(true, false);
        assert_eq!(
            empty.finish().unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn a_stream_may_carry_no_message() {
        Framing::new(false, false).finish().unwrap();
    }

    #[test]
    fn client_streams_are_not_unary() {
        let unary = UnaryMethods::from_descriptor_sets(&[
            crate::proto::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        ])
        .unwrap();
        assert!(unary.contains("/fastchat.v1.ChatService/SendMessage"));
        assert!(unary.contains("/fastchat.v1.ChatService/Subscribe"));
        assert!(!unary.contains("/fastchat.v1.ChatService/Chat"));
        assert!(!unary.contains("/fastchat.v1.PresenceService/Presence"));
        assert!(!unary.contains("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"));
    }
}
