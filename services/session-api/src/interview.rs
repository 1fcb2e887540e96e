//! Who may do what in an interview, over REST: joining (a participant token), and the
//! interviewer's actions (start, end, controls, removing a participant), each announced to the hubs
//! on the interview's bus channel.

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use bytes::Bytes;
use duet_auth::{Claims, TokenError};
use duet_bus::relay::{self, BusMessage};
use duet_domain::{
    palette_color, DisplayName, InterviewControl, InterviewState, Role, Session, SessionCode,
};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::ApiError;
use crate::routes::{blocking, json_body, with_timeout, ApiState, MAX_PASSWORD_CHARS};

/// A bus publish that takes longer than this is answered with 503 (the change is stored; repeating
/// the call announces it again).
const PUBLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Join {
    name: String,
    password: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Controls {
    editing_locked: Option<bool>,
    runs_enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Remove {
    user_id: Uuid,
}

pub(crate) async fn session(state: &ApiState, raw: &str) -> Result<Session, ApiError> {
    let code = SessionCode::parse(raw)?;
    with_timeout(state.storage.session_by_code(&code))
        .await?
        .ok_or_else(|| ApiError::SessionNotFound(code.to_string()))
}

/// The `Authorization: Bearer` token, if the request has one. Another scheme is refused.
fn bearer(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::Unauthorized(
            "the Authorization header must be `Bearer <token>`",
        )),
    }
}

/// Checks `token` for `session`: signature, expiry, interview, and that its participant was not
/// removed.
async fn verify(state: &ApiState, session: &Session, token: &str) -> Result<Claims, ApiError> {
    let claims = state.tokens.verify(token, session.id).map_err(|e| {
        tracing::info!(code = %session.code, reason = %e, "token refused");
        ApiError::Unauthorized(match e {
            TokenError::Expired => "the token has expired",
            TokenError::WrongSession => "the token is for another interview",
            TokenError::Malformed | TokenError::BadSignature => "the token is not valid",
        })
    })?;
    if let Some(uid) = claims.uid {
        if with_timeout(state.storage.is_removed(session.id, uid)).await? {
            return Err(ApiError::Unauthorized(
                "this participant was removed from the interview",
            ));
        }
    }
    Ok(claims)
}

/// The caller's claims, which must be an interviewer's: 401 without a valid token, 403 for a
/// candidate's.
pub(crate) async fn interviewer(
    state: &ApiState,
    req: &HttpRequest,
    session: &Session,
) -> Result<Claims, ApiError> {
    let token = bearer(req)?.ok_or(ApiError::Unauthorized(
        "an interviewer token is needed (Authorization: Bearer <token>)",
    ))?;
    let claims = verify(state, session, token).await?;
    if claims.role != Role::Interviewer {
        return Err(ApiError::Forbidden);
    }
    Ok(claims)
}

/// Tells every hub of the interview (`relay::channel`) how it now is.
pub(crate) async fn announce(
    state: &ApiState,
    session_id: Uuid,
    control: &InterviewControl,
) -> Result<(), ApiError> {
    let json = serde_json::to_vec(control).map_err(|e| ApiError::Unexpected(e.into()))?;
    let message = BusMessage::Control {
        json: Bytes::from(json),
    }
    .encode(relay::API_ORIGIN);
    let channel = relay::channel(session_id);
    match tokio::time::timeout(PUBLISH_TIMEOUT, state.bus.publish(&channel, message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(%session_id, error = %e, "interview change stored but not announced");
            Err(ApiError::BusUnavailable)
        }
        Err(_) => {
            tracing::warn!(%session_id, "interview change stored but its announcement timed out");
            Err(ApiError::BusUnavailable)
        }
    }
}

async fn announced(
    state: &ApiState,
    session_id: Uuid,
    control: InterviewControl,
) -> Result<HttpResponse, ApiError> {
    announce(state, session_id, &control).await?;
    Ok(HttpResponse::Ok().json(control))
}

/// `POST /api/session/{code}/join` — body `{name, password?}`; `Authorization: Bearer` with an
/// interviewer token joins as interviewer (no password), anyone else as candidate. Answers a
/// participant token bound to a fresh user id and colour.
#[tracing::instrument(skip_all, fields(code = %code))]
pub async fn join(
    state: web::Data<ApiState>,
    req: HttpRequest,
    code: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let client = state.limits.client(&req);
    state.limits.take(&state.limits.joins, client).await?;
    let session = session(&state, &code).await?;
    let input: Join = json_body(&req, payload, state.max_body).await?;
    let name = DisplayName::parse(&input.name)?;
    let role = match bearer(&req)? {
        Some(token) => verify(&state, &session, token).await?.role,
        None => Role::Candidate,
    };
    if role == Role::Candidate && session.has_password {
        let password = match input.password {
            Some(p) if !p.is_empty() => p,
            _ => return Err(ApiError::PasswordRequired),
        };
        state.limits.password_allowed(client).await?;
        let hash = with_timeout(state.storage.password_hash(session.id)).await?;
        let ok = match hash {
            Some(hash) if password.chars().count() <= MAX_PASSWORD_CHARS => {
                blocking(move || duet_auth::verify_password(&password, &hash)).await?
            }
            _ => false,
        };
        if !ok {
            tracing::info!(code = %session.code, %client, "wrong interview password");
            state.limits.password_failed(client).await?;
            return Err(ApiError::InvalidPassword);
        }
    }
    let n = with_timeout(state.storage.next_token_number(session.id)).await?;
    let color = palette_color(n);
    let user_id = Uuid::new_v4();
    let token = state
        .tokens
        .participant_token(session.id, role, user_id, color);
    tracing::info!(code = %session.code, %role, %user_id, name = name.as_str(), "joined");
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "token": token,
            "role": role,
            "user_id": user_id,
            "color": color,
        })))
}

async fn transition(
    state: web::Data<ApiState>,
    req: HttpRequest,
    code: &str,
    to: InterviewState,
) -> Result<HttpResponse, ApiError> {
    let session = session(&state, code).await?;
    interviewer(&state, &req, &session).await?;
    let now = OffsetDateTime::now_utc();
    let session = with_timeout(state.storage.transition(session.id, to, now)).await?;
    tracing::info!(code = %session.code, state = %session.state, "interview state");
    announced(&state, session.id, InterviewControl::of(&session)).await
}

/// `POST /api/session/{code}/start` — waiting → live (interviewer only; repeating it changes
/// nothing).
#[tracing::instrument(skip_all, fields(code = %code))]
pub async fn start(
    state: web::Data<ApiState>,
    req: HttpRequest,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    transition(state, req, &code, InterviewState::Live).await
}

/// `POST /api/session/{code}/end` — to ended, for good (interviewer only; repeating it changes
/// nothing).
#[tracing::instrument(skip_all, fields(code = %code))]
pub async fn end(
    state: web::Data<ApiState>,
    req: HttpRequest,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    transition(state, req, &code, InterviewState::Ended).await
}

/// `POST /api/session/{code}/controls` — body `{editing_locked?, runs_enabled?}` (interviewer
/// only).
#[tracing::instrument(skip_all, fields(code = %code))]
pub async fn controls(
    state: web::Data<ApiState>,
    req: HttpRequest,
    code: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let session = session(&state, &code).await?;
    interviewer(&state, &req, &session).await?;
    let input: Controls = json_body(&req, payload, state.max_body).await?;
    let session = with_timeout(state.storage.set_controls(
        session.id,
        input.editing_locked,
        input.runs_enabled,
    ))
    .await?;
    tracing::info!(
        code = %session.code,
        editing_locked = session.editing_locked,
        runs_enabled = session.runs_enabled,
        "interview controls"
    );
    announced(&state, session.id, InterviewControl::of(&session)).await
}

/// `POST /api/session/{code}/remove` — body `{user_id}` (interviewer only): the participant's
/// tokens are refused from then on and the hubs close its connections.
#[tracing::instrument(skip_all, fields(code = %code))]
pub async fn remove(
    state: web::Data<ApiState>,
    req: HttpRequest,
    code: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let session = session(&state, &code).await?;
    interviewer(&state, &req, &session).await?;
    let input: Remove = json_body(&req, payload, state.max_body).await?;
    with_timeout(state.storage.remove_user(session.id, input.user_id)).await?;
    let session = with_timeout(state.storage.session_by_id(session.id))
        .await?
        .ok_or_else(|| ApiError::SessionNotFound(session.code.to_string()))?;
    tracing::info!(code = %session.code, user_id = %input.user_id, "participant removed");
    let mut control = InterviewControl::of(&session);
    control.removed = vec![input.user_id];
    announced(&state, session.id, control).await
}
