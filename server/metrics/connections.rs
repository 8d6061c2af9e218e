//! Counting TCP connections: each accepted connection carries a guard that counts it open until
//! it is dropped. It wraps whatever the listener side yields (the capped [`crate::connections`]).

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;

use super::{ConnectionGuard, Metrics};

/// An accepted connection, counted open while it lives.
#[derive(Debug)]
pub struct CountedConnection<C> {
    /// The connection itself.
    stream: C,
    /// Counts the connection closed when dropped.
    _open: ConnectionGuard,
}

/// Counts every connection `incoming` accepts.
pub fn count_connections<C>(
    incoming: impl Stream<Item = io::Result<C>>,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = io::Result<CountedConnection<C>>> {
    incoming.map(move |accepted| {
        accepted.map(|stream| CountedConnection {
            stream,
            _open: metrics.connection_opened(),
        })
    })
}

impl<C: Connected> Connected for CountedConnection<C> {
    type ConnectInfo = C::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for CountedConnection<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for CountedConnection<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
