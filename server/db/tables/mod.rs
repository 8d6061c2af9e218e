//! SeaORM entities for the tables created by the `migration` crate.

pub mod chat_messages;
pub mod conversation_members;
pub mod conversations;
pub mod nodes;
pub mod sessions;
pub mod stats_buckets;
pub mod users;
pub mod users_online;
