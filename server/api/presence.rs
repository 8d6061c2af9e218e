//! PresenceService: presence streams for native clients and browsers, status, heartbeats, lists.

use std::{pin::Pin, sync::Arc};

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::{
    authenticate, bearer_token, chat::away_from_status, client_ip, record_session, record_user,
    validate,
};
use crate::{
    App,
    error::Result,
    hub::{SessionKind, SessionStream},
    identity::Claim,
    limits::Action,
    metrics::{MessageKind, Transport},
    proto::{
        HeartbeatRequest, HeartbeatResponse, ListOnlineRequest, ListOnlineResponse, PresenceEvent,
        PresenceUpdate, SetStatusRequest, SetStatusResponse, WatchPresenceRequest,
        presence_service_server::PresenceService, server_event::Event,
    },
};

/// Presence events, as the service returns them.
type PresenceStream = Pin<Box<dyn Stream<Item = Result<PresenceEvent, Status>> + Send>>;

/// The PresenceService implementation.
#[derive(Debug, Clone)]
pub struct PresenceApi {
    /// Shared server state.
    app: Arc<App>,
}

impl PresenceApi {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

/// Keeps the presence events of a session's stream.
fn presence_only(stream: SessionStream) -> PresenceStream {
    Box::pin(stream.filter_map(|item| match item {
        Ok(event) => match event.event {
            Some(Event::Presence(presence)) => Some(Ok(presence)),
            _ => None,
        },
        Err(status) => Some(Err(status)),
    }))
}

#[tonic::async_trait]
impl PresenceService for PresenceApi {
    type PresenceStream = PresenceStream;
    type WatchPresenceStream = PresenceStream;

    async fn presence(
        &self,
        request: Request<Streaming<PresenceUpdate>>,
    ) -> Result<Response<Self::PresenceStream>, Status> {
        let me = authenticate(&self.app, request.metadata()).await?;
        let transport = Transport::of(request.extensions());
        self.app
            .limits
            .check_new_session(Some(me.id), client_ip(&request))?;
        let mut updates = request.into_inner();
        let stream = self
            .app
            .hub
            .open_session(
                Some(&me),
                SessionKind::Presence,
                transport,
                String::new(),
                false,
                None,
            )
            .await?;
        let session = stream.id();
        record_session(session);
        tracing::info!("session opened");
        let ended = stream.ended();
        let hub = self.app.hub.clone();
        let metrics = self.app.metrics.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = ended.cancelled() => break,
                    next = updates.message() => match next {
                        Ok(Some(update)) => {
                            metrics.message(MessageKind::Presence);
                            // A bad update cannot be answered on this stream (it carries only
                            // presence events), so it ends the stream with the reason.
                            let result = away_from_status("status", update.status)
                                .and_then(|away| hub.set_away(me.id, Some(session), away).map(|_| ()));
                            if let Err(err) = result {
                                hub.end_session(session, err.into());
                                return;
                            }
                        }
                                                // The client is done sending: the session lives on while it listens.
                        Ok(None) => return,
                        Err(status) => {
                            hub.end_session(session, status);
                            return;
                        }
                    },
                }
            }
            hub.close_session(session);
        }.instrument(tracing::Span::current()));
        Ok(Response::new(presence_only(stream)))
    }

    async fn watch_presence(
        &self,
        request: Request<WatchPresenceRequest>,
    ) -> Result<Response<Self::WatchPresenceStream>, Status> {
        let transport = Transport::of(request.extensions());
        self.app
            .limits
            .check_new_session(None, client_ip(&request))?;
        let kind = if request.get_ref().every_user {
            SessionKind::EveryonesPresence
        } else {
            SessionKind::Presence
        };
        let stream = self
            .app
            .hub
            .open_session(None, kind, transport, String::new(), false, None)
            .await?;
        record_session(stream.id());
        Ok(Response::new(presence_only(stream)))
    }

    async fn set_status(
        &self,
        request: Request<SetStatusRequest>,
    ) -> Result<Response<SetStatusResponse>, Status> {
        self.app.metrics.message(MessageKind::Presence);
        let me = authenticate(&self.app, request.metadata()).await?;
        self.app.limits.check(Action::Request, me.id)?;
        let request = request.get_ref();
        let away = away_from_status("status", request.status)?;
        let session = validate::optional_session_id("session_id", &request.session_id)?;
        if let Some(session) = session {
            record_session(session);
        }
        let presence = self.app.hub.set_status(me.id, session, away).await?;
        Ok(Response::new(SetStatusResponse {
            presence: Some(presence),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        self.app.metrics.message(MessageKind::Heartbeat);
        let bearer = bearer_token(request.metadata());
        let ip = client_ip(&request);
        let request = request.get_ref();
        let claim = Claim {
            user_id: validate::optional_user_id("user_id", &request.user_id)?,
            display_name: validate::optional_display_name("display_name", &request.display_name)?,
            token: bearer,
        };
        // Limits before writes: a refused heartbeat neither claims an id nor renames its user.
        let resolved = self.app.identity.resolve(claim, "").await?;
        record_user(resolved.user_id());
        if resolved.is_claim() {
            self.app.limits.check_claim(ip)?;
        }
        self.app.limits.check(Action::Ping, resolved.user_id())?;
        let (user, token) = self.app.identity.admit(resolved).await?;
        let presence = self.app.hub.heartbeat(&user);
        Ok(Response::new(HeartbeatResponse {
            presence: Some(presence),
            token: token.unwrap_or_default(),
        }))
    }

    async fn list_online(
        &self,
        request: Request<ListOnlineRequest>,
    ) -> Result<Response<ListOnlineResponse>, Status> {
        let exclude =
            validate::optional_user_id("exclude_user_id", &request.get_ref().exclude_user_id)?;
        let users = self.app.hub.list_online(exclude);
        let count = users.len() as u32;
        Ok(Response::new(ListOnlineResponse { users, count }))
    }
}
