//! `impl Database` blocks, one file per domain.

pub mod conversations;
pub mod messages;
pub mod presence;
pub mod read_marks;
pub mod stats;
pub mod users;
