//! One error type for the whole server, mapped to a gRPC status (or a stream's ErrorEvent) here.

use sea_orm::DbErr;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{limits::RateLimited, proto::ErrorEvent};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of the request is invalid; `field` is its path, for example `send_message.text`.
    #[error("{field}: {description}")]
    InvalidArgument { field: String, description: String },
    /// The request is valid but names something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// No credentials, or credentials that do not fit.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not see or do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The request does not fit the state of what it names.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The user went past a rate limit; the action was dropped.
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    /// The user already holds as many open sessions as allowed.
    #[error("this user already has {0} sessions open, the most allowed; close one first")]
    TooManySessions(u32),
    /// As many streams watch every user's presence as allowed.
    #[error("{0} streams already watch every user's presence, the most allowed; retry later")]
    TooManyWatchers(usize),
    /// The server is at capacity; clients should back off and retry.
    #[error("{0}")]
    Overloaded(&'static str),
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// The database failed; the details go to the log, not the client.
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    /// The message writer is gone (only during shutdown).
    #[error("message writer stopped")]
    WriterStopped,
}

/// Shorthand for results in the server.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An InvalidArgument error for `field`.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            description: description.into(),
        }
    }

    /// The gRPC code the error maps to.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument { .. } => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::RateLimited(_) | Self::TooManySessions(_) | Self::TooManyWatchers(_) => {
                Code::ResourceExhausted
            }
            Self::Overloaded(_) | Self::ShuttingDown | Self::WriterStopped => Code::Unavailable,
            Self::Database(_) => Code::Internal,
        }
    }

    /// What a client is told: internal details stay in the log ([`Self::log_internal`]).
    fn public_message(&self) -> String {
        match self {
            Self::Database(_) => "internal storage error".to_owned(),
            other => other.to_string(),
        }
    }

    /// Logs what the client is not told: the database error behind an INTERNAL.
    fn log_internal(&self) {
        if let Self::Database(err) = self {
            tracing::error!(error = %err, "database error");
        }
    }

    /// The event a stream sends instead of ending, for the send with `client_msg_id` (may be empty).
    pub fn to_event(&self, client_msg_id: &str) -> ErrorEvent {
        self.log_internal();
        let (code, retry_after_ms) = match self {
            Self::RateLimited(limited) => ("RATE_LIMITED", limited.retry_after.as_millis()),
            _ => (code_name(self.code()), 0),
        };
        ErrorEvent {
            code: code.to_owned(),
            message: self.public_message(),
            client_msg_id: client_msg_id.to_owned(),
            retry_after_ms: retry_after_ms.try_into().unwrap_or(u32::MAX),
            field: match self {
                Self::InvalidArgument { field, .. } => field.clone(),
                _ => String::new(),
            },
        }
    }
}

impl From<RateLimited> for Status {
    fn from(limited: RateLimited) -> Self {
        Error::from(limited).into()
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        err.log_internal();
        let message = err.public_message();
        match &err {
            Error::InvalidArgument { field, description } => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request_violation(field.clone(), description.clone()),
            ),
            // RetryInfo tells gRPC clients when the allowance has grown back.
            Error::RateLimited(limited) => Status::with_error_details(
                Code::ResourceExhausted,
                message,
                ErrorDetails::with_retry_info(Some(limited.retry_after)),
            ),
            _ => Status::new(err.code(), message),
        }
    }
}

/// The canonical upper-snake name of a gRPC code, as `ErrorEvent.code` carries it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
