//! `/api/session` handlers.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use duet_auth::TokenKey;
use duet_bus::Bus;
use duet_config::Settings;
use duet_domain::{Language, NewSession, Session, SessionCode, Title};
use duet_storage::{Storage, StorageError};
use futures_util::StreamExt;
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::json;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use crate::error::ApiError;
use crate::limits::Limits;

/// How many fresh codes to try before giving up; with 30^8 codes a second collision is already
/// astronomically unlikely, so hitting this means something else is wrong.
const CODE_ATTEMPTS: usize = 5;
/// A storage call that takes longer than this is answered with 503 rather than left hanging.
const STORAGE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest interview password, in characters.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub storage: Arc<dyn Storage>,
    /// Where interviewer actions are announced to the hubs (`relay::channel(session id)`).
    pub bus: Arc<dyn Bus>,
    /// Signs and checks interview tokens (`SECRET_KEY`).
    pub tokens: TokenKey,
    /// Per-IP abuse limits.
    pub limits: Arc<Limits>,
    /// Largest accepted request body, in bytes (`MAX_CONTENT_LENGTH`).
    pub max_body: usize,
    /// The background jobs' counters (webhooks, retention), on `/metrics`.
    pub job_metrics: crate::jobs::JobMetrics,
}

impl ApiState {
    /// The state for `settings` (body limit, abuse limits and trusted proxies) over the given
    /// backends and key.
    pub fn new(
        settings: &Settings,
        storage: Arc<dyn Storage>,
        bus: Arc<dyn Bus>,
        tokens: TokenKey,
    ) -> Self {
        Self {
            storage,
            bus,
            tokens,
            limits: Arc::new(Limits::from_settings(settings)),
            max_body: settings.max_content_length,
            job_metrics: crate::jobs::JobMetrics::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSession {
    language: Option<String>,
    title: Option<String>,
    #[serde(default)]
    lobby: bool,
    password: Option<String>,
}

pub(crate) async fn with_timeout<T>(
    fut: impl std::future::Future<Output = Result<T, StorageError>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(STORAGE_TIMEOUT, fut).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(_) => Err(ApiError::Unavailable),
    }
}

/// Reads the body up to `limit` bytes; a longer one is refused with 413 before it is all read.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::InvalidJson(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads a JSON body into `T` (`415` for another content type; an empty body reads as `{}`).
pub(crate) async fn json_body<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<T, ApiError> {
    let body = read_body(req, payload, limit).await?;
    if !body.is_empty() {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.is_empty() && !ct.starts_with("application/json") {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &body
    };
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::InvalidField(e.to_string()),
        _ => ApiError::InvalidJson(e.to_string()),
    })
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A session in the seed's names: `session_code` is the human-readable code, `code` the
/// interview's current text (the plain-text copy the hub keeps; `""` for a new interview).
fn session_json(s: &Session) -> serde_json::Value {
    json!({
        "id": s.id,
        "session_code": s.code,
        "code": s.text,
        "title": s.title.as_str(),
        "language": s.language,
        "created_at": rfc3339(s.created_at),
        "state": s.state,
        "started_at": s.started_at.map(rfc3339),
        "ended_at": s.ended_at.map(rfc3339),
        "has_password": s.has_password,
        "editing_locked": s.editing_locked,
        "runs_enabled": s.runs_enabled,
    })
}

/// `POST /api/session` — body (optional) `{"language": "python", "title": "Round 2", "lobby": true,
/// "password": "…"}`. Answers the interview with its interviewer token and both links.
#[tracing::instrument(skip_all)]
pub async fn create_session(
    state: web::Data<ApiState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let client = state.limits.client(&req);
    state.limits.take(&state.limits.creates, client).await?;
    let input: CreateSession = json_body(&req, payload, state.max_body).await?;
    let language = match input.language.as_deref() {
        Some(l) => Language::parse(l)?,
        None => Language::default(),
    };
    let title = Title::parse(input.title.as_deref().unwrap_or(""))?;
    let password_hash = match input.password.as_deref() {
        None | Some("") => None,
        Some(p) if p.chars().count() > MAX_PASSWORD_CHARS => {
            return Err(ApiError::InvalidField(format!(
                "password: at most {MAX_PASSWORD_CHARS} characters"
            )))
        }
        Some(p) => {
            let p = p.to_owned();
            Some(blocking(move || duet_auth::hash_password(&p)).await?)
        }
    };

    for _ in 0..CODE_ATTEMPTS {
        let new = NewSession {
            code: SessionCode::generate(),
            title: title.clone(),
            language,
            lobby: input.lobby,
            password_hash: password_hash.clone(),
        };
        match with_timeout(state.storage.create_session(new)).await {
            Ok(session) => {
                tracing::info!(code = %session.code, language = %session.language, "session created");
                let token = state.tokens.link_token(session.id);
                let info = req.connection_info();
                let candidate = format!(
                    "{}://{}/interview/{}",
                    info.scheme(),
                    info.host(),
                    session.code
                );
                let mut body = session_json(&session);
                body["interviewer_token"] = json!(token);
                body["links"] = json!({
                    "interviewer": format!("{candidate}#token={token}"),
                    "candidate": candidate,
                });
                return Ok(HttpResponse::Created()
                    .insert_header((header::LOCATION, format!("/api/session/{}", session.code)))
                    .insert_header((header::CACHE_CONTROL, "no-store"))
                    .json(body));
            }
            Err(ApiError::Unexpected(e))
                if matches!(
                    e.downcast_ref::<StorageError>(),
                    Some(StorageError::CodeTaken)
                ) =>
            {
                tracing::warn!("session code collision, retrying");
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Unexpected(anyhow::anyhow!(
        "no free session code after {CODE_ATTEMPTS} attempts"
    )))
}

/// Runs CPU-heavy work (Argon2) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Unexpected(anyhow::Error::new(e)))
}

/// `GET /api/session/{code}`
#[tracing::instrument(skip(state))]
pub async fn get_session(
    state: web::Data<ApiState>,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let raw = code.into_inner();
    let code = SessionCode::parse(&raw)?;
    let session = with_timeout(state.storage.session_by_code(&code))
        .await?
        .ok_or_else(|| ApiError::SessionNotFound(code.to_string()))?;
    let users = with_timeout(state.storage.connected_count(session.id)).await?;
    let mut body = session_json(&session);
    body["connected_users"] = json!(users);
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /api/session/{code}/runs` — the newest runs (most recent first).
#[tracing::instrument(skip(state))]
pub async fn get_runs(
    state: web::Data<ApiState>,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let code = SessionCode::parse(&code.into_inner())?;
    let session = with_timeout(state.storage.session_by_code(&code))
        .await?
        .ok_or_else(|| ApiError::SessionNotFound(code.to_string()))?;
    let runs = with_timeout(state.storage.recent_runs(session.id, 50)).await?;
    let runs: Vec<_> = runs
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "user_id": r.user_id, "user_name": r.user_name, "language": r.language,
                "output": r.output, "status": r.status, "duration_ms": r.duration_ms,
                "created_at": rfc3339(r.created_at),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "runs": runs })))
}

/// `GET /api/languages` — the closed list of languages an interview can use.
pub async fn languages() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "languages": Language::ALL }))
}
