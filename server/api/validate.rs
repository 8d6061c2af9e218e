//! Field checks shared by the services. Every failure names its field.

use uuid::Uuid;

use crate::{
    db::ids::{SessionId, UserId},
    error::{Error, Result},
    identity::Claim,
    proto::Hello,
};

/// Longest display name, in characters.
const MAX_DISPLAY_NAME_CHARS: usize = 50;
/// Longest client message id, in characters.
const MAX_CLIENT_MSG_ID_CHARS: usize = 64;
/// History page size when the request leaves it at 0.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;
/// Largest history page.
const MAX_HISTORY_LIMIT: u32 = 100;

/// A required UUID.
pub fn user_id(field: &str, value: &str) -> Result<UserId> {
    if value.is_empty() {
        return Err(Error::invalid(field, "required"));
    }
    Uuid::parse_str(value)
        .map(UserId)
        .map_err(|_| Error::invalid(field, "must be a UUID"))
}

/// An optional UUID: empty means none.
pub fn optional_user_id(field: &str, value: &str) -> Result<Option<UserId>> {
    if value.is_empty() {
        Ok(None)
    } else {
        user_id(field, value).map(Some)
    }
}

/// An optional session id (a UUID): empty means none.
pub fn optional_session_id(field: &str, value: &str) -> Result<Option<SessionId>> {
    Ok(optional_user_id(field, value)?.map(|id| SessionId(id.0)))
}

/// A display name: trimmed, 1 to 50 characters, no control characters. Empty means none.
pub fn optional_display_name(field: &str, value: &str) -> Result<Option<String>> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(Error::invalid(field, "must be at most 50 characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(Some(trimmed.to_owned()))
}

/// A Hello's fields, checked; `bearer` is the `authorization` metadata's token, if any.
pub fn hello(prefix: &str, hello: &Hello, bearer: Option<String>) -> Result<Claim> {
    let token = Some(hello.token.trim().to_owned())
        .filter(|t| !t.is_empty())
        .or(bearer);
    Ok(Claim {
        user_id: optional_user_id(&format!("{prefix}user_id"), &hello.user_id)?,
        display_name: optional_display_name(&format!("{prefix}display_name"), &hello.display_name)?,
        token,
    })
}

/// Message text: 1 to `max_chars` characters, not only whitespace. Kept as written.
pub fn text(field: &str, value: &str, max_chars: u32) -> Result<String> {
    if value.trim().is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.chars().count() > max_chars as usize {
        return Err(Error::invalid(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if value.contains('\0') {
        // PostgreSQL text cannot hold NUL; refusing it here keeps it out of the writer's batch.
        return Err(Error::invalid(field, "must not contain NUL characters"));
    }
    Ok(value.to_owned())
}

/// A client's idempotency key: 1 to 64 characters, no control characters.
pub fn client_msg_id(field: &str, value: &str) -> Result<String> {
    if value.is_empty() {
        return Err(Error::invalid(
            field,
            "required (the client's idempotency key)",
        ));
    }
    if value.chars().count() > MAX_CLIENT_MSG_ID_CHARS {
        return Err(Error::invalid(field, "must be at most 64 characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

/// A history page size: 0 means the default, otherwise 1 to 100.
pub fn history_limit(field: &str, value: u32) -> Result<u32> {
    match value {
        0 => Ok(DEFAULT_HISTORY_LIMIT),
        1..=MAX_HISTORY_LIMIT => Ok(value),
        _ => Err(Error::invalid(field, "must be between 1 and 100")),
    }
}

/// A seq from a client: the database keeps seqs as signed 64-bit numbers.
pub fn seq(field: &str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::invalid(field, "is out of range"))
}

/// How many statistics buckets to return: 1 to `max`.
pub fn bucket_count(field: &str, value: u32, max: u32) -> Result<u32> {
    if (1..=max).contains(&value) {
        Ok(value)
    } else {
        Err(Error::invalid(
            field,
            format!("must be between 1 and {max}"),
        ))
    }
}
