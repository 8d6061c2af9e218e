//! SetStatus across nodes. A user's sessions may be held by other nodes than the one a SetStatus
//! call reaches; the call asks every other live node, on `{cluster}.status.{node}`, to set its
//! sessions of the user (or the one named), and each answers with the user's presence there or
//! with "not here".

use std::{sync::Arc, time::Duration};

use futures_util::{StreamExt, future::join_all};
use prost::Message as _;

use super::Cluster;
use crate::{
    db::ids::{SessionId, UserId},
    error::Error,
    hub::Hub,
    proto::{Presence, PresenceStatus},
};

/// Longest wait for a node's answer; a node silent this long is about to be declared dead.
const ANSWER_LIMIT: Duration = Duration::from_secs(1);

/// A SetStatus passed on to another node.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {
    #[prost(string, tag = "1")]
    pub user_id: String,
    /// The session to set; empty sets every session of the user on the node.
    #[prost(string, tag = "2")]
    pub session_id: String,
    #[prost(bool, tag = "3")]
    pub away: bool,
}

/// A node's answer to a [`StatusRequest`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusAnswer {
    /// The user's presence after the change; None when the node holds no such session.
    #[prost(message, optional, tag = "1")]
    pub presence: Option<Presence>,
}

/// What another node said to a passed-on SetStatus.
pub enum Elsewhere {
    /// It set its sessions; the user's presence as it sees it.
    Set(Presence),
    /// It holds no session that fits.
    NotHere,
    /// It did not answer in time.
    Silent,
}

impl Cluster {
    /// Answers the other nodes' SetStatus requests for sessions held here, until the cluster or
    /// the hub is gone.
    pub async fn start_status(self: &Arc<Self>, hub: &Arc<Hub>) -> anyhow::Result<()> {
        let mut requests = self
            .client
            .subscribe(self.status_subject(&self.node))
            .await?;
        let (cluster, hub) = (Arc::downgrade(self), Arc::downgrade(hub));
        tokio::spawn(async move {
            while let Some(message) = requests.next().await {
                let (Some(cluster), Some(hub), Some(reply)) =
                    (cluster.upgrade(), hub.upgrade(), message.reply)
                else {
                    continue;
                };
                let presence = StatusRequest::decode(message.payload)
                    .ok()
                    .and_then(|request| {
                        let user = UserId(request.user_id.parse().ok()?);
                        let session = match request.session_id.as_str() {
                            "" => None,
                            id => Some(SessionId(id.parse().ok()?)),
                        };
                        hub.set_away(user, session, request.away).ok()
                    });
                cluster.send(reply.to_string(), StatusAnswer { presence }.encode_to_vec());
            }
        });
        Ok(())
    }

    /// Asks every other live node to set `user`'s sessions there (or `session`, wherever it
    /// is) ONLINE or AWAY.
    pub async fn set_away_elsewhere(
        &self,
        user: UserId,
        session: Option<SessionId>,
        away: bool,
    ) -> Vec<Elsewhere> {
        let request = StatusRequest {
            user_id: user.to_string(),
            session_id: session.map(|id| id.to_string()).unwrap_or_default(),
            away,
        }
        .encode_to_vec();
        let asks = self.live_peers().into_iter().map(|node| {
            let (client, subject) = (self.client.clone(), self.status_subject(&node));
            let payload = request.clone().into();
            async move {
                match tokio::time::timeout(ANSWER_LIMIT, client.request(subject, payload)).await {
                    Ok(Ok(message)) => match StatusAnswer::decode(message.payload) {
                        Ok(StatusAnswer {
                            presence: Some(presence),
                        }) => Elsewhere::Set(presence),
                        _ => Elsewhere::NotHere,
                    },
                    // No responders: the node is gone, and with it its sessions.
                    Ok(Err(err))
                        if err.kind() == async_nats::client::RequestErrorKind::NoResponders =>
                    {
                        Elsewhere::NotHere
                    }
                    Ok(Err(_)) | Err(_) => {
                        tracing::warn!(%node, "a node did not answer a SetStatus in time");
                        Elsewhere::Silent
                    }
                }
            }
        });
        join_all(asks).await
    }

    /// Where `node` answers SetStatus requests.
    fn status_subject(&self, node: &str) -> String {
        format!("{}.status.{node}", self.name)
    }
}

/// The outcome of a SetStatus for `session` (None: all of the user's sessions) from this node's
/// own answer and the other nodes': the presence from whichever node set something (and, when
/// every session of the user was set, the status they all have now); NOT_FOUND when none did;
/// UNAVAILABLE when none did but a node did not answer.
pub fn combine(
    here: crate::error::Result<Presence>,
    elsewhere: Vec<Elsewhere>,
    session: Option<SessionId>,
    away: bool,
) -> crate::error::Result<Presence> {
    let mut silent = false;
    let mut found = here.ok();
    for answer in elsewhere {
        match answer {
            Elsewhere::Set(presence) => {
                found.get_or_insert(presence);
            }
            Elsewhere::NotHere => {}
            Elsewhere::Silent => silent = true,
        }
    }
    match found {
        Some(mut presence) => {
            if session.is_none() && !silent {
                // Each node saw only its own change; together they set every session.
                let status = if away {
                    PresenceStatus::Away
                } else {
                    PresenceStatus::Online
                };
                presence.status = status.into();
            }
            Ok(presence)
        }
        None if silent => Err(Error::Overloaded(
            "a node of the cluster did not answer; retry",
        )),
        None if session.is_some() => Err(Error::NotFound(
            "no open session of the caller has that session_id".into(),
        )),
        None => Err(Error::NotFound("the user has no open session".into())),
    }
}
