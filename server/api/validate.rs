//! Field checks shared by the services. Every failure names its field.

use uuid::Uuid;

use crate::{
    db::ids::{MessageId, Seq, SessionId, UserId},
    error::{Error, Result},
    identity::{Claim, MAX_DISPLAY_NAME_CHARS},
    proto::Hello,
};

/// Longest client message id, in characters.
const MAX_CLIENT_MSG_ID_CHARS: usize = 64;
/// History page size when the request leaves it at 0.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;
/// Largest history page.
const MAX_HISTORY_LIMIT: u32 = 100;
/// Longest search query, in characters.
const MAX_SEARCH_CHARS: usize = 200;
/// Most words in a search query.
const MAX_SEARCH_WORDS: usize = 10;
/// Search page size when the request leaves it at 0.
const DEFAULT_SEARCH_LIMIT: u32 = 20;
/// Largest search page.
const MAX_SEARCH_LIMIT: u32 = 50;

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

/// A required message id (a UUID).
pub fn message_id(field: &str, value: &str) -> Result<MessageId> {
    user_id(field, value).map(|id| MessageId(id.0))
}

/// An optional message id (a UUID): empty means none.
pub fn optional_message_id(field: &str, value: &str) -> Result<Option<MessageId>> {
    Ok(optional_user_id(field, value)?.map(|id| MessageId(id.0)))
}

/// One emoji as Unicode lists it (with skin tone or other modifiers), in its fully-qualified
/// form, so "❤" and "❤️" are the same reaction.
pub fn emoji(field: &str, value: &str) -> Result<String> {
    if value.is_empty() {
        return Err(Error::invalid(field, "required"));
    }
    emojis::get(value)
        .map(|emoji| emoji.as_str().to_owned())
        .ok_or_else(|| Error::invalid(field, "must be exactly one emoji"))
}

/// A search query: 1 to 200 characters holding at most 10 words (runs of letters and digits),
/// returned in lower case.
pub fn search_words(field: &str, value: &str) -> Result<Vec<String>> {
    if value.chars().count() > MAX_SEARCH_CHARS {
        return Err(Error::invalid(field, "must be at most 200 characters"));
    }
    let words = crate::snippet::words_of(value);
    match words.len() {
        0 => Err(Error::invalid(field, "must hold a letter or digit")),
        1..=MAX_SEARCH_WORDS => Ok(words),
        _ => Err(Error::invalid(field, "must hold at most 10 words")),
    }
}

/// A people search: 1 to 50 characters after trimming.
pub fn name_query(field: &str, value: &str) -> Result<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid(field, "required"));
    }
    if trimmed.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(Error::invalid(field, "must be at most 50 characters"));
    }
    Ok(trimmed.to_owned())
}

/// A search page size: 0 means 20, otherwise 1 to 50.
pub fn search_limit(field: &str, value: u32) -> Result<u32> {
    match value {
        0 => Ok(DEFAULT_SEARCH_LIMIT),
        1..=MAX_SEARCH_LIMIT => Ok(value),
        _ => Err(Error::invalid(field, "must be between 1 and 50")),
    }
}

/// A required session id (a UUID).
pub fn session_id(field: &str, value: &str) -> Result<SessionId> {
    user_id(field, value).map(|id| SessionId(id.0))
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
/// Takes the request's own string, so the text is not copied on its way to the database.
pub fn text(field: &str, value: String, max_chars: u32) -> Result<String> {
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
    Ok(value)
}

/// A client's idempotency key: 1 to 64 characters, no control characters.
pub fn client_msg_id(field: &str, value: String) -> Result<String> {
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
    Ok(value)
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
pub fn seq(field: &str, value: u64) -> Result<Seq> {
    Seq::from_api(value).ok_or_else(|| Error::invalid(field, "is out of range"))
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

/// Fuzzed input through every check: none panics, every refusal is INVALID_ARGUMENT naming the
/// field it was given, and what passes keeps the documented limits.
#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn an_emoji_is_kept_in_its_fully_qualified_form() {
        assert_eq!(emoji("emoji", "❤").unwrap(), "❤️");
        assert_eq!(emoji("emoji", "👍🏽").unwrap(), "👍🏽");
        assert!(emoji("emoji", "👍👍").is_err());
        assert!(emoji("emoji", "a").is_err());
    }

    /// Strings of the kinds the checks look at: arbitrary Unicode, UUIDs and near-UUIDs, blanks
    /// and control characters, and long runs around the length limits.
    fn hostile_string() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()),
            "[0-9a-fA-F{}urn:-]{0,45}",
            "[ \t\r\n\u{0}\u{7}\u{1b}\u{7f}\u{85}\u{a0}\u{2028}\u{3000}]{0,8}",
            ("\\PC{0,40}", "[\u{0}-\u{1f}\u{7f}-\u{9f}]", "\\PC{0,40}")
                .prop_map(|(before, control, after)| format!("{before}{control}{after}")),
            (any::<char>(), 0..17_000usize).prop_map(|(c, n)| c.to_string().repeat(n)),
        ]
    }

    /// Passes `Ok` through; an error must be INVALID_ARGUMENT on `field`.
    fn refused_on<T>(field: &str, result: Result<T>) -> Result<Option<T>, TestCaseError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(Error::InvalidArgument {
                field: named,
                description,
            }) => {
                prop_assert_eq!(named, field);
                prop_assert!(!description.is_empty());
                Ok(None)
            }
            Err(other) => Err(TestCaseError::fail(format!(
                "not INVALID_ARGUMENT: {other}"
            ))),
        }
    }

    proptest! {
        #[test]
        fn user_ids_are_uuids(value in hostile_string()) {
            let parsed = refused_on("to_user_id", user_id("to_user_id", &value))?;
            prop_assert_eq!(parsed.map(|id| id.0), Uuid::parse_str(&value).ok());
            let optional = refused_on("peer", optional_user_id("peer", &value))?;
            prop_assert_eq!(optional.is_some(), value.is_empty() || parsed.is_some());
            refused_on("session_id", optional_session_id("session_id", &value))?;
        }

        #[test]
        fn display_names_are_short_and_printable(value in hostile_string()) {
            let field = "hello.display_name";
            if let Some(name) = refused_on(field, optional_display_name(field, &value))?.flatten() {
                prop_assert_eq!(name.as_str(), value.trim());
                prop_assert!((1..=MAX_DISPLAY_NAME_CHARS).contains(&name.chars().count()));
                prop_assert!(!name.chars().any(char::is_control));
            }
        }

        #[test]
        fn texts_fit_the_limit(value in hostile_string(), max_chars in 1..=16_000u32) {
            let field = "send_message.text";
            if let Some(text) = refused_on(field, text(field, value.clone(), max_chars))? {
                prop_assert_eq!(&text, &value);
                prop_assert!(!text.trim().is_empty());
                prop_assert!(text.chars().count() <= max_chars as usize);
                prop_assert!(!text.contains('\0'));
            }
        }

        #[test]
        fn emoji_are_one_known_emoji(value in hostile_string()) {
            if let Some(emoji) = refused_on("emoji", emoji("emoji", &value))? {
                prop_assert!(emojis::get(&emoji).is_some());
            }
        }

        #[test]
        fn search_queries_are_a_few_safe_words(value in hostile_string()) {
            if let Some(words) = refused_on("query", search_words("query", &value))? {
                prop_assert!((1..=MAX_SEARCH_WORDS).contains(&words.len()));
                for word in words {
                    prop_assert!(!word.is_empty());
                    prop_assert!(word.chars().all(char::is_alphanumeric));
                }
            }
            if let Some(name) = refused_on("query", name_query("query", &value))? {
                prop_assert!((1..=MAX_DISPLAY_NAME_CHARS).contains(&name.chars().count()));
            }
        }

        #[test]
        fn client_msg_ids_are_short_and_printable(value in hostile_string()) {
            if let Some(id) = refused_on("client_msg_id", client_msg_id("client_msg_id", value.clone()))? {
                prop_assert!((1..=MAX_CLIENT_MSG_ID_CHARS).contains(&id.chars().count()));
                prop_assert!(!id.chars().any(char::is_control));
            }
        }

        #[test]
        fn numbers_stay_in_range(
            limit in prop_oneof![0..=MAX_HISTORY_LIMIT + 1, any::<u32>()],
            seq_value in prop_oneof![Just(i64::MAX as u64), Just(1 << 63), any::<u64>()],
        ) {
            if let Some(limit) = refused_on("limit", history_limit("limit", limit))? {
                prop_assert!((1..=MAX_HISTORY_LIMIT).contains(&limit));
            }
            let checked = refused_on("before_seq", seq("before_seq", seq_value))?;
            let fits = seq_value <= i64::MAX as u64;
            prop_assert_eq!(checked.map(Seq::to_api), fits.then_some(seq_value));
        }

        #[test]
        fn hellos_name_their_field(
            user_id in hostile_string(),
            display_name in hostile_string(),
            token in hostile_string(),
            bearer in proptest::option::of(hostile_string()),
        ) {
            let request = Hello { user_id, display_name, token, receipts: false, ..Default::default() };
            match hello("hello.", &request, bearer.clone()) {
                Ok(claim) => {
                    let token = Some(request.token.trim()).filter(|t| !t.is_empty());
                    prop_assert_eq!(claim.token, token.map(str::to_owned).or(bearer));
                }
                Err(Error::InvalidArgument { field, .. }) => {
                    let named = ["hello.user_id", "hello.display_name"];
                    prop_assert!(named.contains(&field.as_str()), "{}", field);
                }
                Err(other) => prop_assert!(false, "not INVALID_ARGUMENT: {}", other),
            }
        }
    }
}
