//! Typing indicators: forwarded to the peer on a change, ended by the server 6 s (configurable)
//! after the last `is_typing = true`, when the typist sends a message, or when their session ends.

use tokio::time::Instant;

use super::{Effects, Registry};
use crate::{
    convert::server_event,
    db::ids::{SessionId, UserId},
    proto::{TypingEvent, server_event::Event},
};

/// One typing state.
#[derive(Debug)]
pub(super) struct TypingEntry {
    /// When the server ends it unless refreshed.
    deadline: Instant,
    /// The session that set it; None when set by a unary call.
    pub(super) session: Option<SessionId>,
}

impl Registry {
    /// `from` started or stopped typing towards `to`. Only changes reach the peer.
    pub(in crate::hub) fn set_typing(
        &mut self,
        from: UserId,
        to: UserId,
        is_typing: bool,
        session: Option<SessionId>,
        out: &mut Effects,
    ) {
        if is_typing {
            let entry = TypingEntry {
                deadline: Instant::now() + self.config.typing_timeout,
                session,
            };
            if self.typing.insert((from, to), entry).is_none() {
                self.send_typing(from, to, true, out);
            }
        } else {
            self.stop_typing(from, to, out);
        }
    }

    /// Ends `from`'s typing towards `to`, telling `to` if it was on.
    pub(super) fn stop_typing(&mut self, from: UserId, to: UserId, out: &mut Effects) {
        if self.typing.remove(&(from, to)).is_some() {
            self.send_typing(from, to, false, out);
        }
    }

    fn send_typing(&self, from: UserId, to: UserId, is_typing: bool, out: &mut Effects) {
        let event = server_event(Event::Typing(TypingEvent {
            from_user_id: from.to_string(),
            is_typing,
        }));
        out.send_all(self.chat_sessions_of(to, None), &event);
    }

    /// Ends the typing states that have run out.
    pub(super) fn expire_typing(&mut self, now: Instant, out: &mut Effects) {
        let expired: Vec<(UserId, UserId)> = self
            .typing
            .iter()
            .filter(|(_, entry)| entry.deadline <= now)
            .map(|(key, _)| *key)
            .collect();
        for (from, to) in expired {
            self.stop_typing(from, to, out);
        }
    }

    /// A session of `user` ended: end the typing it set, and, when it was the user's last
    /// session, the typing set by unary calls too.
    pub(super) fn end_typing_of_session(
        &mut self,
        user: UserId,
        session: SessionId,
        out: &mut Effects,
    ) {
        let last_session = self.users.get(&user).is_none_or(|u| u.sessions.is_empty());
        let ended: Vec<(UserId, UserId)> = self
            .typing
            .iter()
            .filter(|((from, _), entry)| {
                *from == user
                    && (entry.session == Some(session) || (entry.session.is_none() && last_session))
            })
            .map(|(key, _)| *key)
            .collect();
        for (from, to) in ended {
            self.stop_typing(from, to, out);
            out.typing_ended.push((from, to));
        }
    }
}
