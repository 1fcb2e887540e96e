//! The API's error type: one table of stable codes, each with its HTTP status. The JSON body is
//! `{"error": {"code": "...", "message": "..."}}`. Causes of 5xx are logged, never sent to the client.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use duet_domain::DomainError;
use duet_storage::StorageError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidField(String),
    #[error("{0}")]
    UnknownLanguage(String),
    #[error("{0}")]
    TitleTooLong(String),
    #[error("{0}")]
    InvalidCode(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("no session with code {0}")]
    SessionNotFound(String),
    #[error("the database is unavailable; try again shortly")]
    Unavailable,
    /// The change is stored, but the hubs could not be told (the bus is down). Repeating the call
    /// is safe (every interviewer call is idempotent) and announces it again.
    #[error(
        "the change is saved but could not be announced to the participants; try again shortly"
    )]
    BusUnavailable,
    /// No token, or one that does not verify for this interview (forged, expired, another
    /// interview's, a removed participant's).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A genuine token whose role may not do this (a candidate asking for an interviewer's action).
    #[error("only an interviewer may do this")]
    Forbidden,
    #[error("this interview needs a password")]
    PasswordRequired,
    #[error("wrong password")]
    InvalidPassword,
    #[error("{0}")]
    InvalidTransition(String),
    /// A per-IP limit was reached; the client may try again after this many seconds.
    #[error("too many requests; try again in {0} s")]
    RateLimited(u64),
    #[error("unexpected error")]
    Unexpected(#[source] anyhow::Error),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidField(_) => "invalid_field",
            Self::UnknownLanguage(_) => "unknown_language",
            Self::TitleTooLong(_) => "title_too_long",
            Self::InvalidCode(_) => "invalid_code",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::SessionNotFound(_) => "session_not_found",
            Self::Unavailable | Self::BusUnavailable => "unavailable",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::PasswordRequired => "password_required",
            Self::InvalidPassword => "invalid_password",
            Self::InvalidTransition(_) => "invalid_transition",
            Self::RateLimited(_) => "rate_limited",
            Self::Unexpected(_) => "internal",
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::InvalidCode => Self::InvalidCode(e.to_string()),
            DomainError::UnknownLanguage(_) => Self::UnknownLanguage(e.to_string()),
            DomainError::TitleTooLong => Self::TitleTooLong(e.to_string()),
            DomainError::InvalidTitle | DomainError::InvalidName | DomainError::NulCharacter(_) => {
                Self::InvalidField(e.to_string())
            }
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(_) => Self::Unavailable,
            StorageError::Invalid(message) => Self::InvalidField(message),
            e @ StorageError::InvalidTransition { .. } => Self::InvalidTransition(e.to_string()),
            other => Self::Unexpected(anyhow::Error::new(other)),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidJson(_) | Self::InvalidField(_) | Self::InvalidCode(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::UnknownLanguage(_) | Self::TitleTooLong(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::SessionNotFound(_) => StatusCode::NOT_FOUND,
            Self::Unavailable | Self::BusUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthorized(_) | Self::PasswordRequired | Self::InvalidPassword => {
                StatusCode::UNAUTHORIZED
            }
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::InvalidTransition(_) => StatusCode::CONFLICT,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Unexpected(cause) = self {
            tracing::error!(error = ?cause, "unexpected error");
        }
        let mut res = HttpResponse::build(self.status_code());
        match self {
            Self::Unavailable | Self::BusUnavailable => {
                res.insert_header(("Retry-After", "2"));
            }
            Self::RateLimited(secs) => {
                res.insert_header(("Retry-After", secs.to_string()));
            }
            Self::Unauthorized(_) => {
                res.insert_header(("WWW-Authenticate", "Bearer"));
            }
            _ => {}
        }
        res.json(json!({"error": {"code": self.code(), "message": self.to_string()}}))
    }
}

/// The same JSON shape for errors raised outside handlers (unknown routes, extractor failures).
pub fn json_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": {"code": code, "message": message}}))
}
