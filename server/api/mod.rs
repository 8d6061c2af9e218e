//! The tonic services: each call validates its input, calls the hub or the database, and maps
//! errors to statuses. No state lives here.

mod chat;
mod metrics;
mod presence;
mod validate;

use std::{net::IpAddr, sync::Arc};

use tonic::{Request, metadata::MetadataMap};
use tracing::{Span, field};

pub use chat::ChatApi;
pub use metrics::MetricsApi;
pub use presence::PresenceApi;

use crate::{
    App,
    db::ids::{SessionId, UserId},
    error::{Error, Result},
    identity::AuthUser,
    metrics::Transport,
};

/// The span each gRPC call and stream runs in (made by the trace layer around the services): the
/// RPC and its transport, and the user and session once the handler knows them. Nothing from
/// the request body or the metadata goes in, so no token or message text reaches the logs.
pub fn rpc_span<B>(request: &http::Request<B>) -> Span {
    tracing::info_span!(
        "rpc",
        rpc = request.uri().path().trim_start_matches('/'),
        transport = Transport::of(request.extensions()).as_str(),
        user_id = field::Empty,
        session_id = field::Empty,
    )
}

/// Notes the caller in the current call's span.
fn record_user(user: UserId) {
    Span::current().record("user_id", field::display(user));
}

/// Notes the session in the current call's span.
fn record_session(session: SessionId) {
    Span::current().record("session_id", field::display(session));
}

/// The token of `authorization: Bearer <token>` metadata, if present.
fn bearer_token(metadata: &MetadataMap) -> Option<String> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The address the call came from, for limits per client address.
fn client_ip<T>(request: &Request<T>) -> Option<IpAddr> {
    request.remote_addr().map(|addr| addr.ip())
}

/// The user a unary call's bearer token belongs to.
async fn authenticate(app: &Arc<App>, metadata: &MetadataMap) -> Result<AuthUser> {
    let token = bearer_token(metadata).ok_or_else(|| {
        Error::Unauthenticated("missing `authorization: Bearer <token>` metadata".into())
    })?;
    let user = app.identity.authenticate(&token).await?;
    record_user(user.id);
    Ok(user)
}
