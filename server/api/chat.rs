//! ChatService: the Chat and Subscribe session streams and the unary calls browsers act with.

use std::{collections::HashMap, net::IpAddr, pin::Pin, sync::Arc, time::Instant};

use chrono::Utc;

use tokio::sync::{Semaphore, oneshot};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::{authenticate, bearer_token, client_ip, record_session, record_user, validate};
use crate::{
    App,
    convert::{chat_message, now_timestamp, server_event, status_event, timestamp, update_event},
    db::{
        Change, ChangeOutcome, Marks, NewMessage, Refusal, StoredMessage,
        ids::{MessageId, SessionId, UserId},
    },
    error::{Error, Result},
    hub::{FanOut, SessionKind},
    identity::AuthUser,
    limits::Action,
    metrics::{MessageKind, Transport},
    pipeline::AckTo,
    proto::{
        AcknowledgeRequest, AcknowledgeResponse, ChatMessage, ClientEvent, Conversation,
        DeleteMessageRequest, DeleteMessageResponse, EditMessageRequest, EditMessageResponse,
        GetHistoryRequest, GetHistoryResponse, ListConversationsRequest, ListConversationsResponse,
        MarkReadRequest, MarkReadResponse, MessageStatus, Pong, Presence, PresenceStatus,
        ReactRequest, ReactResponse, SearchHit, SearchMessagesRequest, SearchMessagesResponse,
        SearchUsersRequest, SearchUsersResponse, SendMessageRequest, SendMessageResponse,
        ServerEvent, SetTypingRequest, SetTypingResponse, SubscribeRequest, TextRange, User,
        chat_service_server::ChatService, client_event, server_event::Event,
    },
    snippet::snippet,
};

/// Sends of one Chat stream that may wait for their ack at once. It bounds how many acks can
/// reach the session in one burst, well below its queue.
const MAX_IN_FLIGHT_SENDS: usize = 64;

/// The events of a session, as the service returns them.
type EventStream = Pin<Box<dyn Stream<Item = Result<ServerEvent, Status>> + Send>>;

/// The ChatService implementation.
#[derive(Debug, Clone)]
pub struct ChatApi {
    /// Shared server state.
    app: Arc<App>,
}

impl ChatApi {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    /// Checks a message and hands it to the hub; the ack goes to `ack_to` after the commit.
    /// `prefix` is the path of the request in error field names (`send_message.` on a stream).
    async fn send(
        &self,
        sender: &AuthUser,
        request: SendMessageRequest,
        prefix: &str,
        ack_to: AckTo,
    ) -> Result<()> {
        let received = Instant::now();
        self.app.limits.check(Action::Message, sender.id)?;
        let client_msg_id =
            validate::client_msg_id(&format!("{prefix}client_msg_id"), request.client_msg_id)?;
        let text = validate::text(
            &format!("{prefix}text"),
            request.text,
            self.app.config.max_message_chars,
        )?;
        let recipient = self
            .peer(sender, &format!("{prefix}to_user_id"), &request.to_user_id)
            .await?;
        let reply_field = format!("{prefix}reply_to_message_id");
        let reply_to = validate::optional_message_id(&reply_field, &request.reply_to_message_id)?;
        if let Some(answered) = reply_to {
            self.answerable(sender.id, recipient, &reply_field, answered)
                .await?;
        }
        let message =
            NewMessage::new(sender.id, recipient, client_msg_id, text).replying_to(reply_to);
        self.app
            .pipeline
            .send_message(message, received, ack_to)
            .await
    }

    /// Checks that a reply may answer `answered`: a message of the conversation, not deleted.
    async fn answerable(
        &self,
        me: UserId,
        peer: UserId,
        field: &str,
        answered: MessageId,
    ) -> Result<()> {
        match self.app.db.message_between(me, peer, answered).await? {
            None => Err(Error::NotFound(format!(
                "{field}: no message {answered} in this conversation"
            ))),
            Some(message) if message.deleted_at.is_some() => Err(Error::FailedPrecondition(
                format!("{field}: message {answered} was deleted"),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Applies a change by `me` to the message named in `field`, tells every session of both
    /// its users (and of the users of replies whose quote changed), and returns it as it stands.
    async fn change(
        &self,
        me: &AuthUser,
        field: &str,
        message_id: &str,
        change: Change,
    ) -> Result<ChatMessage> {
        self.app.limits.check(Action::Message, me.id)?;
        let id = validate::message_id(field, message_id)?;
        if !self.app.hub.config().keeps_history() {
            return Err(Error::FailedPrecondition(
                "this server keeps no history, so messages cannot change".into(),
            ));
        }
        let rules = self.app.config.change_rules();
        let outcome = self
            .app
            .db
            .change_message(me.id, id, &change, rules, Utc::now())
            .await?;
        let message = match outcome {
            ChangeOutcome::Refused(refusal) => return Err(refused(field, id, refusal, &rules)),
            ChangeOutcome::Unchanged(message) => message,
            ChangeOutcome::Changed { message, replies } => {
                for changed in std::iter::once(&message).chain(&replies) {
                    self.publish_update(changed).await?;
                }
                message
            }
        };
        let marks = self.recipient_marks(&message).await?;
        Ok(chat_message(&message, marks))
    }

    /// Sends a changed message's new state to every session of both its users.
    async fn publish_update(&self, message: &StoredMessage) -> Result<()> {
        let event = update_event(message, self.recipient_marks(message).await?);
        let hub = &self.app.hub;
        hub.publish_to_user(message.recipient_id, event.clone());
        hub.publish_to_user(message.sender_id, event);
        Ok(())
    }

    /// The recipient's marks on the sender of `message`, which give its status.
    async fn recipient_marks(&self, message: &StoredMessage) -> Result<Marks> {
        Ok(self
            .app
            .db
            .marks(message.recipient_id, message.sender_id)
            .await?)
    }

    /// A peer: a known user other than `me`.
    async fn peer(&self, me: &AuthUser, field: &str, value: &str) -> Result<UserId> {
        let peer = validate::user_id(field, value)?;
        if peer == me.id {
            return Err(Error::invalid(
                field,
                "must be another user than the caller",
            ));
        }
        if !self.app.identity.exists(peer).await? {
            return Err(Error::NotFound(format!("{field}: no user with id {peer}")));
        }
        Ok(peer)
    }

    async fn set_typing_for(
        &self,
        me: &AuthUser,
        request: &SetTypingRequest,
        prefix: &str,
        session: Option<SessionId>,
    ) -> Result<()> {
        self.app.limits.check(Action::Typing, me.id)?;
        let peer = self
            .peer(me, &format!("{prefix}to_user_id"), &request.to_user_id)
            .await?;
        self.app
            .hub
            .publish_typing(me.id, peer, request.is_typing, session);
        Ok(())
    }

    async fn mark_read_for(
        &self,
        me: &AuthUser,
        request: &MarkReadRequest,
        prefix: &str,
    ) -> Result<u64> {
        self.app.limits.check(Action::Request, me.id)?;
        let peer = self
            .peer(me, &format!("{prefix}peer_user_id"), &request.peer_user_id)
            .await?;
        let up_to = validate::seq(&format!("{prefix}up_to_seq"), request.up_to_seq)?;
        let (mark, newly_read) = self.app.db.advance_read_mark(me.id, peer, up_to).await?;
        if let Some(message) = newly_read {
            let update = status_event(&message, me.id, MessageStatus::Read);
            self.app.hub.publish_to_user(message.sender_id, update);
        }
        Ok(mark.to_api())
    }

    /// Acts on one event of a Chat stream. Errors go back to the client as ErrorEvents.
    async fn handle_event(
        &self,
        me: &AuthUser,
        session: SessionId,
        in_flight: &Arc<Semaphore>,
        event: ClientEvent,
    ) {
        use client_event::Event as E;
        self.app.metrics.message(match &event.event {
            Some(E::SendMessage(_)) => MessageKind::SendMessage,
            Some(E::Typing(_)) => MessageKind::Typing,
            Some(E::MarkRead(_)) => MessageKind::MarkRead,
            Some(E::Ping(_)) => MessageKind::Ping,
            Some(E::Presence(_)) => MessageKind::Presence,
            Some(E::Received(_)) => MessageKind::Received,
            Some(E::Hello(_)) | None => MessageKind::Invalid,
        });
        let (client_msg_id, result) = match event.event {
            Some(E::SendMessage(request)) => {
                // Waiting here stops reading the stream, which slows the client down.
                let permit = in_flight
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("never closed");
                let ack_to = AckTo::Session {
                    session,
                    in_flight: permit,
                };
                // Kept for the error event, which names the send it refuses.
                let client_msg_id = request.client_msg_id.clone();
                let result = self.send(me, request, "send_message.", ack_to).await;
                (client_msg_id, result)
            }
            Some(E::Typing(request)) => (
                String::new(),
                self.set_typing_for(me, &request, "typing.", Some(session))
                    .await,
            ),
            Some(E::MarkRead(request)) => (
                String::new(),
                self.mark_read_for(me, &request, "mark_read.")
                    .await
                    .map(|_| ()),
            ),
            Some(E::Ping(ping)) => {
                let result = self
                    .app
                    .limits
                    .check(Action::Ping, me.id)
                    .map_err(Error::from)
                    .map(|()| {
                        let pong = Pong {
                            nonce: ping.nonce,
                            server_time: Some(now_timestamp()),
                        };
                        self.app
                            .hub
                            .publish_to_session(session, server_event(Event::Pong(pong)));
                    });
                (String::new(), result)
            }
            Some(E::Presence(update)) => {
                let result = self
                    .app
                    .limits
                    .check(Action::Request, me.id)
                    .map_err(Error::from)
                    .and_then(|()| away_from_status("presence.status", update.status))
                    .and_then(|away| {
                        self.app
                            .hub
                            .set_away(me.id, Some(session), away)
                            .map(|_| ())
                    });
                (String::new(), result)
            }
            Some(E::Received(receipt)) => (
                String::new(),
                validate::seq("received.up_to_seq", receipt.up_to_seq)
                    .and_then(|up_to| self.app.hub.acknowledge(me.id, session, up_to)),
            ),
            Some(E::Hello(_)) => (
                String::new(),
                Err(Error::invalid(
                    "hello",
                    "only the first event may be a hello",
                )),
            ),
            None => (
                String::new(),
                Err(Error::invalid(
                    "event",
                    "empty event: set one of its fields",
                )),
            ),
        };
        if let Err(err) = result {
            self.app.hub.publish_to_session(
                session,
                server_event(Event::Error(err.to_event(&client_msg_id))),
            );
        }
    }

    /// Opens a session for a Hello from `ip` that came by `transport` and returns its stream.
    async fn open(
        &self,
        hello: &crate::proto::Hello,
        bearer: Option<String>,
        ip: Option<IpAddr>,
        prefix: &str,
        transport: Transport,
    ) -> Result<(AuthUser, crate::hub::SessionStream)> {
        let claim = validate::hello(prefix, hello, bearer)?;
        let presented = claim.token.clone();
        // Limits before writes: a refused Hello neither claims an id nor renames its user.
        let resolved = self.app.identity.resolve(claim, prefix).await?;
        record_user(resolved.user_id());
        if resolved.is_claim() {
            self.app.limits.check_claim(ip)?;
        }
        self.app
            .limits
            .check_new_session(Some(resolved.user_id()), ip)?;
        let (user, new_token) = self.app.identity.admit(resolved).await?;
        self.app.hub.rename(user.id, &user.display_name);
        let token = new_token.or(presented).unwrap_or_default();
        let stream = self
            .app
            .hub
            .open_session(
                Some(&user),
                SessionKind::Chat,
                transport,
                token,
                hello.receipts,
                hello.changes_after,
            )
            .await?;
        record_session(stream.id());
        tracing::info!("session opened");
        Ok((user, stream))
    }
}

/// The error for a refused change of message `id`, named in `field`.
fn refused(field: &str, id: MessageId, refusal: Refusal, rules: &crate::db::ChangeRules) -> Error {
    match refusal {
        Refusal::NotFound => {
            Error::NotFound(format!("{field}: no message {id} in your conversations"))
        }
        Refusal::NotAuthor => Error::PermissionDenied(format!(
            "{field}: only its author may edit or delete message {id}"
        )),
        Refusal::Deleted => Error::FailedPrecondition(format!("{field}: message {id} was deleted")),
        Refusal::TooOldToEdit => Error::FailedPrecondition(format!(
            "{field}: a message can be edited for {} hours after it was sent",
            rules.edit_window.num_minutes() as f64 / 60.0
        )),
        Refusal::TooManyEmoji => Error::FailedPrecondition(format!(
            "emoji: message {id} already has reactions with {} different emoji",
            rules.max_reaction_emoji
        )),
    }
}

/// ONLINE or AWAY from a client's status; anything else is refused.
pub(super) fn away_from_status(field: &str, status: i32) -> Result<bool> {
    match PresenceStatus::try_from(status) {
        Ok(PresenceStatus::Online) => Ok(false),
        Ok(PresenceStatus::Away) => Ok(true),
        _ => Err(Error::invalid(
            field,
            "must be PRESENCE_STATUS_ONLINE or PRESENCE_STATUS_AWAY",
        )),
    }
}

#[tonic::async_trait]
impl ChatService for ChatApi {
    type ChatStream = EventStream;
    type SubscribeStream = EventStream;

    async fn chat(
        &self,
        request: Request<Streaming<ClientEvent>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        let bearer = bearer_token(request.metadata());
        let ip = client_ip(&request);
        let transport = Transport::of(request.extensions());
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(self.app.config.hello_timeout(), inbound.message())
            .await
            .map_err(|_| {
                Status::from(Error::invalid(
                    "hello",
                    "the first event must be a hello, sent within the hello timeout",
                ))
            })??;
        let hello = match first.and_then(|e| e.event) {
            Some(client_event::Event::Hello(hello)) => hello,
            _ => return Err(Error::invalid("hello", "the first event must be a hello").into()),
        };
        let (user, stream) = self.open(&hello, bearer, ip, "hello.", transport).await?;
        let session = stream.id();
        let ended = stream.ended();
        let api = self.clone();
        tokio::spawn(
            async move {
                let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_SENDS));
                loop {
                    tokio::select! {
                        _ = ended.cancelled() => break,
                        next = inbound.message() => match next {
                            // Boxed: the handler's future is large, and this task lives as long as
                            // the session, mostly idle.
                            Ok(Some(event)) => {
                                Box::pin(api.handle_event(&user, session, &in_flight, event)).await
                            }
                                                    Ok(None) => {
                                // The client is done sending: end the session once every send it
                                // made has its ack.
                                let all = MAX_IN_FLIGHT_SENDS as u32;
                                let _ = in_flight.acquire_many(all).await;
                                break;
                            }
                            Err(status) => {
                                // Oversize or broken frames: the stream ends with tonic's reason.
                                api.app.hub.end_session(session, status);
                                return;
                            }
                        },
                    }
                }
                api.app.hub.close_session(session);
            }
            .instrument(tracing::Span::current()),
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let bearer = bearer_token(request.metadata());
        let ip = client_ip(&request);
        let transport = Transport::of(request.extensions());
        let hello = request.into_inner().hello.unwrap_or_default();
        let (_, stream) = self.open(&hello, bearer, ip, "hello.", transport).await?;
        Ok(Response::new(Box::pin(stream)))
    }

    async fn send_message(
        &self,
        request: Request<SendMessageRequest>,
    ) -> Result<Response<SendMessageResponse>, Status> {
        self.app.metrics.message(MessageKind::SendMessage);
        let me = authenticate(&self.app, request.metadata()).await?;
        let (reply, ack) = oneshot::channel();
        self.send(&me, request.into_inner(), "", AckTo::Caller(reply))
            .await?;
        let response = ack
            .await
            .map_err(|_| Status::from(Error::WriterStopped))??;
        Ok(Response::new(response))
    }

    async fn acknowledge(
        &self,
        request: Request<AcknowledgeRequest>,
    ) -> Result<Response<AcknowledgeResponse>, Status> {
        self.app.metrics.message(MessageKind::Received);
        let me = authenticate(&self.app, request.metadata()).await?;
        let request = request.get_ref();
        let session = validate::session_id("session_id", &request.session_id)?;
        let up_to = validate::seq("up_to_seq", request.up_to_seq)?;
        self.app.hub.acknowledge(me.id, session, up_to)?;
        Ok(Response::new(AcknowledgeResponse {}))
    }

    async fn set_typing(
        &self,
        request: Request<SetTypingRequest>,
    ) -> Result<Response<SetTypingResponse>, Status> {
        self.app.metrics.message(MessageKind::Typing);
        let me = authenticate(&self.app, request.metadata()).await?;
        self.set_typing_for(&me, request.get_ref(), "", None)
            .await?;
        Ok(Response::new(SetTypingResponse {}))
    }

    async fn mark_read(
        &self,
        request: Request<MarkReadRequest>,
    ) -> Result<Response<MarkReadResponse>, Status> {
        self.app.metrics.message(MessageKind::MarkRead);
        let me = authenticate(&self.app, request.metadata()).await?;
        let read_up_to_seq = self.mark_read_for(&me, request.get_ref(), "").await?;
        Ok(Response::new(MarkReadResponse { read_up_to_seq }))
    }

    async fn get_history(
        &self,
        request: Request<GetHistoryRequest>,
    ) -> Result<Response<GetHistoryResponse>, Status> {
        let me = authenticate(&self.app, request.metadata()).await?;
        self.app.limits.check(Action::Request, me.id)?;
        let request = request.get_ref();
        let peer = self
            .peer(&me, "peer_user_id", &request.peer_user_id)
            .await?;
        let before_seq = validate::seq("before_seq", request.before_seq)?;
        let limit = validate::history_limit("limit", request.limit)?;
        if !self.app.hub.config().keeps_history() {
            return Ok(Response::new(GetHistoryResponse::default())); // no history is kept
        }
        let db = &self.app.db;
        let (page, has_more) = db
            .history(me.id, peer, before_seq, u64::from(limit))
            .await
            .map_err(Error::from)?;
        let my_marks = db.marks(me.id, peer).await.map_err(Error::from)?;
        let peer_marks = db.marks(peer, me.id).await.map_err(Error::from)?;
        let messages = page
            .iter()
            .map(|m| {
                chat_message(
                    m,
                    if m.sender_id == me.id {
                        peer_marks
                    } else {
                        my_marks
                    },
                )
            })
            .collect();
        Ok(Response::new(GetHistoryResponse {
            messages,
            has_more,
            peer_read_up_to_seq: peer_marks.read.to_api(),
        }))
    }

    async fn list_conversations(
        &self,
        request: Request<ListConversationsRequest>,
    ) -> Result<Response<ListConversationsResponse>, Status> {
        let me = authenticate(&self.app, request.metadata()).await?;
        self.app.limits.check(Action::Request, me.id)?;
        if !self.app.hub.config().keeps_history() {
            return Ok(Response::new(ListConversationsResponse::default())); // no history is kept
        }
        let rows = self
            .app
            .db
            .conversations_of(me.id)
            .await
            .map_err(Error::from)?;
        let peer_ids: Vec<UserId> = rows.iter().map(|r| r.peer.id).collect();
        let last_seen = self
            .app
            .db
            .last_seen_of(&peer_ids)
            .await
            .map_err(Error::from)?;
        let conversations = rows
            .into_iter()
            .map(|row| {
                let peer_id = row.peer.id;
                let peer = User {
                    user_id: peer_id.to_string(),
                    display_name: row.peer.display_name.clone(),
                };
                let marks_of_recipient = if row.last_message.sender_id == me.id {
                    row.peer_marks
                } else {
                    row.marks
                };
                let peer_presence = self
                    .app
                    .hub
                    .presence_of(peer_id)
                    .unwrap_or_else(|| Presence {
                        user: Some(peer.clone()),
                        status: PresenceStatus::Offline as i32,
                        last_seen: last_seen.get(&peer_id).copied().map(timestamp),
                        sessions: 0,
                    });
                Conversation {
                    last_message: Some(chat_message(&row.last_message, marks_of_recipient)),
                    peer: Some(peer),
                    unread_count: row.unread_count.min(u64::from(u32::MAX)) as u32,
                    read_up_to_seq: row.marks.read.to_api(),
                    peer_read_up_to_seq: row.peer_marks.read.to_api(),
                    peer_presence: Some(peer_presence),
                }
            })
            .collect();
        Ok(Response::new(ListConversationsResponse { conversations }))
    }

    async fn edit_message(
        &self,
        request: Request<EditMessageRequest>,
    ) -> Result<Response<EditMessageResponse>, Status> {
        self.app.metrics.message(MessageKind::Edit);
        let me = authenticate(&self.app, request.metadata()).await?;
        let request = request.into_inner();
        let text = validate::text("text", request.text, self.app.config.max_message_chars)?;
        let message = self
            .change(&me, "message_id", &request.message_id, Change::Edit(text))
            .await?;
        Ok(Response::new(EditMessageResponse {
            message: Some(message),
        }))
    }

    async fn delete_message(
        &self,
        request: Request<DeleteMessageRequest>,
    ) -> Result<Response<DeleteMessageResponse>, Status> {
        self.app.metrics.message(MessageKind::Delete);
        let me = authenticate(&self.app, request.metadata()).await?;
        let message = self
            .change(
                &me,
                "message_id",
                &request.get_ref().message_id,
                Change::Delete,
            )
            .await?;
        Ok(Response::new(DeleteMessageResponse {
            message: Some(message),
        }))
    }

    async fn react(
        &self,
        request: Request<ReactRequest>,
    ) -> Result<Response<ReactResponse>, Status> {
        self.app.metrics.message(MessageKind::React);
        let me = authenticate(&self.app, request.metadata()).await?;
        let request = request.into_inner();
        let emoji = validate::emoji("emoji", &request.emoji)?;
        let change = Change::React {
            emoji,
            remove: request.remove,
        };
        let message = self
            .change(&me, "message_id", &request.message_id, change)
            .await?;
        Ok(Response::new(ReactResponse {
            message: Some(message),
        }))
    }

    async fn search_messages(
        &self,
        request: Request<SearchMessagesRequest>,
    ) -> Result<Response<SearchMessagesResponse>, Status> {
        self.app.metrics.message(MessageKind::Search);
        let me = authenticate(&self.app, request.metadata()).await?;
        self.app.limits.check(Action::Request, me.id)?;
        let request = request.get_ref();
        let words = validate::search_words("query", &request.query)?;
        let before = validate::seq("before_seq", request.before_seq)?;
        let limit = validate::search_limit("limit", request.limit)?;
        if !self.app.hub.config().keeps_history() {
            return Ok(Response::new(SearchMessagesResponse::default())); // no history is kept
        }
        let db = &self.app.db;
        let mut found = db
            .search_messages(me.id, &words, before, u64::from(limit) + 1)
            .await
            .map_err(Error::from)?;
        let has_more = found.len() > limit as usize;
        found.truncate(limit as usize);

        let peer_of = |m: &StoredMessage| {
            if m.sender_id == me.id {
                m.recipient_id
            } else {
                m.sender_id
            }
        };
        let mut peer_ids: Vec<UserId> = found.iter().map(peer_of).collect();
        peer_ids.sort_unstable();
        peer_ids.dedup();
        let names: HashMap<UserId, String> = db
            .users_by_ids(&peer_ids)
            .await
            .map_err(Error::from)?
            .into_iter()
            .map(|user| (user.id, user.display_name))
            .collect();
        // Status comes from the recipient's marks: the peer's for my messages, mine for theirs.
        let mut marks = HashMap::new();
        for &peer in &peer_ids {
            marks.insert(
                (peer, me.id),
                db.marks(peer, me.id).await.map_err(Error::from)?,
            );
            marks.insert(
                (me.id, peer),
                db.marks(me.id, peer).await.map_err(Error::from)?,
            );
        }
        let hits = found
            .iter()
            .map(|m| {
                let peer = peer_of(m);
                let (snippet, ranges) = snippet(&m.text, &words);
                SearchHit {
                    message: Some(chat_message(m, marks[&(m.recipient_id, m.sender_id)])),
                    peer: Some(User {
                        user_id: peer.to_string(),
                        display_name: names.get(&peer).cloned().unwrap_or_default(),
                    }),
                    snippet,
                    highlights: ranges
                        .into_iter()
                        .map(|r| TextRange {
                            start: r.start as u32,
                            end: r.end as u32,
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(Response::new(SearchMessagesResponse { hits, has_more }))
    }

    async fn search_users(
        &self,
        request: Request<SearchUsersRequest>,
    ) -> Result<Response<SearchUsersResponse>, Status> {
        self.app.metrics.message(MessageKind::Search);
        let me = authenticate(&self.app, request.metadata()).await?;
        self.app.limits.check(Action::Request, me.id)?;
        let request = request.get_ref();
        let query = validate::name_query("query", &request.query)?;
        let limit = validate::search_limit("limit", request.limit)?;
        let users = self
            .app
            .db
            .search_users(me.id, &query, u64::from(limit))
            .await
            .map_err(Error::from)?
            .into_iter()
            .map(|user| User {
                user_id: user.id.to_string(),
                display_name: user.display_name,
            })
            .collect();
        Ok(Response::new(SearchUsersResponse { users }))
    }
}
