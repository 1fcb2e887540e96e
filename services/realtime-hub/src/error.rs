//! The typed errors a client can receive (`error` event `{code, message}`, or an ack
//! `{ok: false, error: {code, message}}`). The codes are part of the wire protocol (docs/PROTOCOL.md);
//! messages are for people and never carry internals (causes are logged, not sent).

use serde_json::{json, Value};

/// Stable error codes, one per kind of refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// An interview event arrived before a successful `join_session`.
    NotJoined,
    /// `join_session` named a code that does not exist.
    SessionNotFound,
    /// The event's payload does not have the documented shape or values.
    InvalidPayload,
    /// A `yjs` message that does not decode or cannot be applied.
    InvalidUpdate,
    /// A payload over its documented size limit.
    PayloadTooLarge,
    /// The interview's document reached a size limit (structs, text or history in total).
    DocumentTooLarge,
    /// Too many events of one kind; the client should slow down.
    RateLimited,
    /// The database is unreachable: edits are kept by the client and re-sent.
    Unavailable,
    /// A bug or corrupt data on the server; details are in the server's log.
    Internal,
    /// A token that is missing where one is needed, forged, expired, for another interview, or
    /// of a removed participant.
    Unauthorized,
    /// Allowed to interviewers only (start, end, controls, removing someone).
    Forbidden,
    /// The interview has ended: everything is read-only, for everyone.
    InterviewEnded,
    /// The interview is still in its lobby: candidates wait until an interviewer starts it.
    InterviewNotStarted,
    /// An interviewer locked the candidate's editing.
    EditingLocked,
    /// An interviewer turned code running off for candidates.
    RunsDisabled,
    /// The lifecycle cannot move that way (nothing leaves `ended`).
    InvalidTransition,
    /// An interviewer removed this participant from the interview.
    Removed,
}

impl ErrorCode {
    /// Every code, in declaration order (`as usize` indexes it): the labels of
    /// `duet_hub_errors_total`.
    pub const ALL: [ErrorCode; 17] = [
        Self::NotJoined,
        Self::SessionNotFound,
        Self::InvalidPayload,
        Self::InvalidUpdate,
        Self::PayloadTooLarge,
        Self::DocumentTooLarge,
        Self::RateLimited,
        Self::Unavailable,
        Self::Internal,
        Self::Unauthorized,
        Self::Forbidden,
        Self::InterviewEnded,
        Self::InterviewNotStarted,
        Self::EditingLocked,
        Self::RunsDisabled,
        Self::InvalidTransition,
        Self::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotJoined => "not_joined",
            Self::SessionNotFound => "session_not_found",
            Self::InvalidPayload => "invalid_payload",
            Self::InvalidUpdate => "invalid_update",
            Self::PayloadTooLarge => "payload_too_large",
            Self::DocumentTooLarge => "document_too_large",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::InterviewEnded => "interview_ended",
            Self::InterviewNotStarted => "interview_not_started",
            Self::EditingLocked => "editing_locked",
            Self::RunsDisabled => "runs_disabled",
            Self::InvalidTransition => "invalid_transition",
            Self::Removed => "removed",
        }
    }
}

/// A refusal sent to one client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct HubError {
    pub code: ErrorCode,
    pub message: String,
}

impl HubError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn not_joined() -> Self {
        Self::new(
            ErrorCode::NotJoined,
            "join an interview with join_session first",
        )
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidPayload, message)
    }
    pub fn unavailable() -> Self {
        Self::new(
            ErrorCode::Unavailable,
            "the database is unavailable; try again shortly",
        )
    }
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error")
    }

    /// The body of an `error` event.
    pub fn to_json(&self) -> Value {
        json!({ "code": self.code.as_str(), "message": self.message })
    }

    /// The body of a refusing ack.
    pub fn to_ack(&self) -> Value {
        json!({ "ok": false, "error": self.to_json() })
    }
}

impl From<duet_storage::StorageError> for HubError {
    fn from(e: duet_storage::StorageError) -> Self {
        match e {
            duet_storage::StorageError::Unavailable(_) => Self::unavailable(),
            duet_storage::StorageError::NotFound => {
                Self::new(ErrorCode::SessionNotFound, "no interview with that code")
            }
            duet_storage::StorageError::Invalid(message) => Self::invalid(message),
            duet_storage::StorageError::InvalidTransition { .. } => Self::new(
                ErrorCode::InvalidTransition,
                "the interview cannot go back to that state",
            ),
            other => {
                tracing::error!(error = %other, "storage error");
                Self::internal()
            }
        }
    }
}
