//! The tonic services: each call validates its input, calls the hub or the database, and maps
//! errors to statuses. No state lives here.

mod chat;
mod presence;
mod validate;

use std::{net::IpAddr, sync::Arc};

use tonic::{Request, metadata::MetadataMap};

pub use chat::ChatApi;
pub use presence::PresenceApi;

use crate::{
    App,
    error::{Error, Result},
    identity::AuthUser,
};

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
    app.identity.authenticate(&token).await
}
