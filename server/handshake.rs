//! A deadline for connections that never start. hyper-util reads the first bytes of a connection
//! to tell HTTP/1.1 from the HTTP/2 preface, and h2 then reads the rest of the preface, both
//! without a time limit: a client that connects and sends nothing, or half a preface, would hold
//! its connection (a task and a file descriptor) forever. Once the protocol is known, hyper's own
//! limits take over: the HTTP/1.1 header read timeout, and HTTP/2 keepalive pings.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Sleep,
};
use tonic::transport::server::Connected;

/// What every HTTP/2 connection starts with (RFC 9113, section 3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection that is closed (its reads fail with `TimedOut`) unless its first bytes show the
/// protocol before the deadline: the whole HTTP/2 preface, or a byte that departs from it (so
/// HTTP/1.1).
#[derive(Debug)]
pub struct HandshakeDeadline<IO> {
    /// The connection.
    io: IO,
    /// How many bytes of the HTTP/2 preface the client has sent so far.
    preface_seen: usize,
    /// Until the protocol is known; None after.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<IO> HandshakeDeadline<IO> {
    /// Guards `io`, accepted just now, with a deadline `timeout` from now.
    pub fn new(io: IO, timeout: Duration) -> Self {
        Self {
            io,
            preface_seen: 0,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
        }
    }

    /// Looks at bytes the client sent, and lifts the deadline once they show the protocol.
    fn observe(&mut self, bytes: &[u8]) {
        if self.deadline.is_none() {
            return;
        }
        let expected = &HTTP2_PREFACE[self.preface_seen..];
        let compared = bytes.len().min(expected.len());
        if bytes[..compared] != expected[..compared] {
            self.deadline = None; // not HTTP/2, so HTTP/1.1: hyper times its headers
        } else {
            self.preface_seen += compared;
            if self.preface_seen == HTTP2_PREFACE.len() {
                self.deadline = None; // HTTP/2: keepalive pings find a silent client from here on
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for HandshakeDeadline<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.observe(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    tracing::debug!("closing a connection that did not start in time");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the connection did not start within the handshake timeout",
                    )));
                }
                Poll::Pending
            }
            failed => failed,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for HandshakeDeadline<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The connection's own info (its addresses), so `Request::remote_addr` keeps working.
impl<IO: Connected> Connected for HandshakeDeadline<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(chunks: &[&[u8]]) -> HandshakeDeadline<()> {
        let mut guard = HandshakeDeadline {
            io: (),
            preface_seen: 0,
            deadline: Some(Box::pin(tokio::time::sleep(Duration::from_secs(60)))),
        };
        for chunk in chunks {
            guard.observe(chunk);
        }
        guard
    }

    #[tokio::test]
    async fn the_deadline_holds_until_the_protocol_shows() {
        assert!(observed(&[]).deadline.is_some());
        assert!(observed(&[b"PRI * HTTP/2.0\r\n"]).deadline.is_some());
        assert!(
            observed(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r"])
                .deadline
                .is_some()
        );
        // The whole preface, at once or in pieces, and with the SETTINGS frame behind it.
        assert!(observed(&[HTTP2_PREFACE]).deadline.is_none());
        assert!(
            observed(&[b"PRI * HT", b"TP/2.0\r\n\r\nSM\r\n\r\n"])
                .deadline
                .is_none()
        );
        assert!(
            observed(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04"])
                .deadline
                .is_none()
        );
        // HTTP/1.1 departs from the preface at its first byte, or later ("PUT" shares the "P").
        assert!(observed(&[b"G"]).deadline.is_none());
        assert!(observed(&[b"P", b"UT / HTTP/1.1\r\n"]).deadline.is_none());
    }
}
