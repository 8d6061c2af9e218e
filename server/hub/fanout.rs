//! The fan-out seam: the one way events for users leave the code that makes them. The message
//! writer publishes stored messages and receipts through it, the services acks and typing. The
//! hub queues them on the sessions its registry holds; in cluster mode it then publishes them to
//! the other nodes (see [`crate::cluster`]), which queue them on theirs. The services and the
//! pipeline are the same either way.
//!
//! Presence changes are the registry's own (derived from the sessions it holds) and leave through
//! the same queues in `Hub::carry_out`, where a node's changes would also go to the bus.

use super::{Effects, Hub};
use crate::{
    cluster::Body,
    convert::{chat_message, server_event},
    db::{
        Marks, StoredMessage,
        ids::{SessionId, UserId},
    },
    proto::{ServerEvent, TypingEvent, server_event::Event},
};

/// Publishing to users' sessions, wherever they are connected.
pub trait FanOut: Send + Sync {
    /// A newly stored message: to every chat session of the recipient, and to the sender's other
    /// sessions (all but `origin`, which gets the ack). It ends the sender's typing towards the
    /// recipient. Returns how many of the recipient's sessions took it.
    fn publish_message(&self, message: &StoredMessage, origin: Option<SessionId>) -> usize;

    /// An event for every chat session of `user` (receipts: DELIVERED and READ); returns how
    /// many took it.
    fn publish_to_user(&self, user: UserId, event: ServerEvent) -> usize;

    /// An event for one session (acks and errors of its sends, pongs), if it is still open.
    fn publish_to_session(&self, session: SessionId, event: ServerEvent);

    /// `from` started or stopped typing towards `to` (from `session`, whose end ends it; None: a
    /// unary call). Only changes reach `to`.
    fn publish_typing(&self, from: UserId, to: UserId, is_typing: bool, session: Option<SessionId>);
}

impl FanOut for Hub {
    fn publish_message(&self, message: &StoredMessage, origin: Option<SessionId>) -> usize {
        let sender = message.sender_id;
        let recipient = message.recipient_id;
        let event = server_event(Event::Message(chat_message(message, Marks::default())));
        let taken = {
            let mut registry = self.lock();
            let mut out = Effects::default();
            let (recipients, senders) =
                registry.message_stored(sender, recipient, origin, &mut out);
            // The end of the sender's typing reaches the recipient before the message.
            self.carry_out(&mut registry, out);
            let taken = self.queue_all(&mut registry, &recipients, &event);
            self.queue_all(&mut registry, &senders, &event);
            taken
        };
        if let Some(cluster) = &self.cluster {
            cluster.publish(recipient, Body::Message(event.clone()));
            cluster.publish(sender, Body::Message(event));
        }
        taken
    }

    fn publish_to_user(&self, user: UserId, event: ServerEvent) -> usize {
        let taken = {
            let mut registry = self.lock();
            let sessions = registry.chat_sessions_of(user, None);
            self.queue_all(&mut registry, &sessions, &event)
        };
        if let Some(cluster) = &self.cluster {
            cluster.publish(user, Body::Event(event));
        }
        taken
    }

    fn publish_to_session(&self, session: SessionId, event: ServerEvent) {
        let mut registry = self.lock();
        self.queue_all(&mut registry, &[session], &event);
    }

    fn publish_typing(
        &self,
        from: UserId,
        to: UserId,
        is_typing: bool,
        session: Option<SessionId>,
    ) {
        self.change(|registry, out| registry.set_typing(from, to, is_typing, session, out));
        if let Some(cluster) = &self.cluster {
            let typing = TypingEvent {
                from_user_id: from.to_string(),
                is_typing,
            };
            cluster.publish(to, Body::Typing(typing));
        }
    }
}

impl Hub {
    /// What another node published on the subject of `user`, who has a session here: queued on
    /// this node's sessions of that user, as the publishing node did on its own.
    pub(crate) fn deliver_from_cluster(&self, user: UserId, body: Body) {
        match body {
            Body::Message(event) => {
                let Some(Event::Message(message)) = &event.event else {
                    return;
                };
                let (Ok(sender), Ok(recipient)) = (
                    message.from_user_id.parse().map(UserId),
                    message.to_user_id.parse().map(UserId),
                ) else {
                    tracing::warn!("cluster message with a bad user id");
                    return;
                };
                let mut registry = self.lock();
                let mut out = Effects::default();
                let (recipients, senders) =
                    registry.message_stored(sender, recipient, None, &mut out);
                self.carry_out(&mut registry, out);
                let sessions = if user == recipient {
                    recipients
                } else {
                    senders
                };
                self.queue_all(&mut registry, &sessions, &event);
            }
            Body::Event(event) => {
                let mut registry = self.lock();
                let sessions = registry.chat_sessions_of(user, None);
                self.queue_all(&mut registry, &sessions, &event);
            }
            Body::Typing(typing) => {
                let Ok(from) = typing.from_user_id.parse().map(UserId) else {
                    tracing::warn!("cluster typing event with a bad user id");
                    return;
                };
                self.change(|registry, out| {
                    registry.set_typing(from, user, typing.is_typing, None, out);
                });
            }
        }
    }
}
