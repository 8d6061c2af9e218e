//! Accepting TCP connections, at most a set number at once. Past the cap a new connection is
//! closed as soon as it is accepted: the client sees it fail at once (gRPC clients report
//! UNAVAILABLE or CANCELLED and retry) instead of hanging in the listen backlog.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tokio_stream::{Stream, StreamExt, wrappers::TcpListenerStream};
use tonic::transport::server::Connected;

/// An accepted connection; its slot under the cap is freed when it is dropped.
pub type Connection = Guarded<TcpStream, OwnedSemaphorePermit>;

/// The connections `listener` accepts, at most `max` open at once.
pub fn accept(
    listener: TcpListener,
    max: usize,
) -> impl Stream<Item = io::Result<Connection>> + Send {
    let slots = Arc::new(Semaphore::new(max));
    TcpListenerStream::new(listener).filter_map(move |accepted| {
        let stream = match accepted {
            Ok(stream) => stream,
            Err(err) => return Some(Err(err)),
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(max, "connection refused: the server holds its maximum");
            return None; // dropping the socket closes it
        };
        // Events are small and latency matters more than packet count.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY");
        }
        Some(Ok(Guarded::new(stream, slot)))
    })
}

/// A connection that holds `G` for as long as it lives (a slot under the connection cap, a count
/// of open connections), given back when the connection is dropped. Reads and writes pass through.
#[derive(Debug)]
pub struct Guarded<IO, G> {
    /// The connection itself.
    io: IO,
    /// Held until the connection is dropped.
    _guard: G,
}

impl<IO, G> Guarded<IO, G> {
    /// `io`, holding `guard` while it lives.
    pub fn new(io: IO, guard: G) -> Self {
        Self { io, _guard: guard }
    }
}

impl<IO: Connected, G> Connected for Guarded<IO, G> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<IO: AsyncRead + Unpin, G: Unpin> AsyncRead for Guarded<IO, G> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin, G: Unpin> AsyncWrite for Guarded<IO, G> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
