//! Typing indicators: forwarded to the peer on a change, ended by the server 6 s (configurable)
//! after the last `is_typing = true`, when the typist sends a message, or when their session ends.

use tokio::time::Instant;

use super::{Hub, State};
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
    session: Option<SessionId>,
}

impl Hub {
    /// `from` started or stopped typing towards `to`. Only changes reach the peer.
    pub fn set_typing(
        &self,
        from: UserId,
        to: UserId,
        is_typing: bool,
        session: Option<SessionId>,
    ) {
        let mut state = self.lock();
        if is_typing {
            let entry = TypingEntry {
                deadline: Instant::now() + self.config.typing_timeout,
                session,
            };
            if state.typing.insert((from, to), entry).is_none() {
                self.send_typing(&mut state, from, to, true);
            }
        } else {
            self.stop_typing(&mut state, from, to);
        }
    }

    /// Ends `from`'s typing towards `to`, telling `to` if it was on.
    pub(super) fn stop_typing(&self, state: &mut State, from: UserId, to: UserId) {
        if state.typing.remove(&(from, to)).is_some() {
            self.send_typing(state, from, to, false);
        }
    }

    fn send_typing(&self, state: &mut State, from: UserId, to: UserId, is_typing: bool) {
        let event = server_event(Event::Typing(TypingEvent {
            from_user_id: from.to_string(),
            is_typing,
        }));
        self.push_to_user(state, to, &event, None);
    }

    /// Ends the typing states that have run out.
    pub(super) fn expire_typing(&self, state: &mut State, now: Instant) {
        let expired: Vec<(UserId, UserId)> = state
            .typing
            .iter()
            .filter(|(_, entry)| entry.deadline <= now)
            .map(|(key, _)| *key)
            .collect();
        for (from, to) in expired {
            self.stop_typing(state, from, to);
        }
    }

    /// A session of `user` ended: end the typing it set, and, when it was the user's last
    /// session, the typing set by unary calls too.
    pub(super) fn end_typing_of_session(
        &self,
        state: &mut State,
        user: UserId,
        session: SessionId,
    ) {
        let last_session = state.users.get(&user).is_none_or(|u| u.sessions.is_empty());
        let ended: Vec<(UserId, UserId)> = state
            .typing
            .iter()
            .filter(|((from, _), entry)| {
                *from == user
                    && (entry.session == Some(session) || (entry.session.is_none() && last_session))
            })
            .map(|(key, _)| *key)
            .collect();
        for (from, to) in ended {
            self.stop_typing(state, from, to);
        }
    }
}
