//! Typed ids and seq, so a user id is never passed where a session id belongs. They are the
//! entity columns' own types (SeaORM value types), so rows carry them and nothing rewraps them.

use std::fmt;

use sea_orm::{DbErr, DeriveValueType, TryFromU64};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, DeriveValueType,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random id.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        /// Required of primary keys; a UUID never comes from an auto-increment.
        impl TryFromU64 for $name {
            fn try_from_u64(_: u64) -> Result<Self, DbErr> {
                Err(DbErr::ConvertFromU64(stringify!($name)))
            }
        }
    };
}

uuid_id!(
    /// A user's id: a UUID the client picks (or the server, when the client leaves it empty).
    UserId
);
uuid_id!(
    /// One session: a Chat, Subscribe or Presence stream.
    SessionId
);
uuid_id!(
    /// A message's public id, given by the server (UUIDv7: time-ordered).
    MessageId
);

/// A message's place in the total order of messages: assigned at insert, strictly increasing.
/// The API carries it as a `uint64`; [`Seq::to_api`] and `validate::seq` are the two crossings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, DeriveValueType)]
pub struct Seq(pub i64);

impl Seq {
    /// Before every message: a read mark or a page that starts at the beginning.
    pub const ZERO: Self = Self(0);

    /// From the API's `uint64`; None when it is beyond every seq (only a client sends one).
    pub fn from_api(seq: u64) -> Option<Self> {
        i64::try_from(seq).ok().map(Self)
    }

    /// As the API carries it. Seqs are positive, so nothing is lost.
    pub fn to_api(self) -> u64 {
        self.0 as u64
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A conversation between two users: a compact key their messages carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, DeriveValueType)]
pub struct ConversationId(pub i64);

/// Both users of a conversation, lower first, so either side finds the same row.
pub fn conversation_pair(a: UserId, b: UserId) -> (UserId, UserId) {
    if a <= b { (a, b) } else { (b, a) }
}
