//! Counting TCP connections: each accepted connection carries a guard that counts it open until
//! it is dropped. It wraps whatever the listener side yields (the capped [`crate::connections`]).

use std::{io, sync::Arc};

use tokio_stream::{Stream, StreamExt};

use super::{ConnectionGuard, Metrics};
use crate::connections::Guarded;

/// An accepted connection, counted open while it lives.
pub type CountedConnection<C> = Guarded<C, ConnectionGuard>;

/// Counts every connection `incoming` accepts.
pub fn count_connections<C>(
    incoming: impl Stream<Item = io::Result<C>>,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = io::Result<CountedConnection<C>>> {
    incoming.map(move |accepted| {
        accepted.map(|stream| Guarded::new(stream, metrics.connection_opened()))
    })
}
