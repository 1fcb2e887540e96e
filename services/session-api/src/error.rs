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
            Self::Unavailable => "unavailable",
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
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Unexpected(cause) = self {
            tracing::error!(error = ?cause, "unexpected error");
        }
        let mut res = HttpResponse::build(self.status_code());
        if matches!(self, Self::Unavailable) {
            res.insert_header(("Retry-After", "2"));
        }
        res.json(json!({"error": {"code": self.code(), "message": self.to_string()}}))
    }
}

/// The same JSON shape for errors raised outside handlers (unknown routes, extractor failures).
pub fn json_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": {"code": code, "message": message}}))
}
