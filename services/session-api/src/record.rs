//! The interview record over REST (interviewer token only): `GET /record` (the interview, its
//! final code and notes, participants, runs and activity events), `GET /history?doc=` (every
//! update of a document, for the replay), `GET /export` (all of it as a zip), and
//! `DELETE /api/session/{code}` (erasure).

use std::collections::HashMap;
use std::io::Write;

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use base64::Engine;
use duet_domain::{DocKind, InterviewControl, InterviewState, Language, Session};
use duet_storage::{DocumentState, Event, Run, StoredUpdate};
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;
use yrs::updates::decoder::Decode;
use yrs::{GetString, Transact, Update};

use crate::error::ApiError;
use crate::interview::{announce, interviewer, session};
use crate::routes::{blocking, rfc3339, with_timeout, ApiState};

/// The root name of each document's shared text (as the hub and the browser name them).
fn root(doc: DocKind) -> &'static str {
    match doc {
        DocKind::Code => "code",
        DocKind::Notes => "notes",
    }
}

/// The file extension of the solution in the export.
fn extension(language: Language) -> &'static str {
    match language {
        Language::Python => "py",
        Language::Javascript => "js",
        Language::Html => "html",
    }
}

/// The document's text rebuilt from storage: the snapshot and every later update merged into one
/// update and applied at once (a merged update has no causal gaps, whatever order two hubs
/// committed its parts in). Rows that do not decode are skipped and logged.
pub(crate) fn rebuild_text(session: Uuid, doc: DocKind, state: &DocumentState) -> String {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(state.updates.len() + 1);
    if let Some(s) = &state.snapshot {
        parts.push(&s.data);
    }
    parts.extend(state.updates.iter().map(|u| u.data.as_slice()));
    let ydoc = yrs::Doc::new();
    let text = ydoc.get_or_insert_text(root(doc));
    {
        let mut txn = ydoc.transact_mut();
        let merged = yrs::merge_updates_v1(&parts)
            .ok()
            .and_then(|m| Update::decode_v1(&m).ok());
        let updates: Vec<Update> = match merged {
            Some(u) => vec![u],
            None => parts
                .iter()
                .filter_map(|p| match Update::decode_v1(p) {
                    Ok(u) => Some(u),
                    Err(e) => {
                        tracing::error!(%session, %doc, error = %e, "stored update does not decode; skipped");
                        None
                    }
                })
                .collect(),
        };
        for u in updates {
            if let Err(e) = txn.apply_update(u) {
                tracing::error!(%session, %doc, error = %e, "stored update does not apply; skipped");
            }
        }
    }
    let txn = ydoc.transact();
    text.get_string(&txn)
}

async fn document_text(
    state: &ApiState,
    session: &Session,
    doc: DocKind,
) -> Result<String, ApiError> {
    let stored = with_timeout(state.storage.load_document(session.id, doc)).await?;
    if stored.snapshot.is_none() && stored.updates.is_empty() {
        // Never edited: the plain copy (an interview's code before its first edit).
        return Ok(if doc == DocKind::Code {
            session.text.clone()
        } else {
            String::new()
        });
    }
    let id = session.id;
    blocking(move || rebuild_text(id, doc, &stored)).await
}

fn run_json(r: &Run) -> Value {
    json!({
        "id": r.id, "user_id": r.user_id, "user_name": r.user_name, "language": r.language,
        "status": r.status, "output": r.output, "duration_ms": r.duration_ms,
        "created_at": rfc3339(r.created_at),
    })
}

fn event_json(e: &Event) -> Value {
    json!({
        "seq": e.seq,
        "at": rfc3339(e.at),
        "kind": e.kind,
        "user_id": e.user_id,
        "user_name": e.user_name,
        "data": serde_json::from_str::<Value>(&e.data).unwrap_or_else(|_| json!({})),
    })
}

/// Who took part, from the `join` / `leave` events: one entry per user, in the order they first
/// joined; the name of their latest event, the role and colour of their latest join.
fn participants(events: &[Event]) -> Vec<Value> {
    struct P {
        user_id: Uuid,
        name: String,
        role: Value,
        color: Value,
        first_joined: Option<String>,
        last_left: Option<String>,
    }
    let mut order: Vec<Uuid> = Vec::new();
    let mut by_user: HashMap<Uuid, P> = HashMap::new();
    for e in events {
        let Some(user_id) = e.user_id else { continue };
        if e.kind != "join" && e.kind != "leave" {
            continue;
        }
        let p = by_user.entry(user_id).or_insert_with(|| {
            order.push(user_id);
            P {
                user_id,
                name: String::new(),
                role: Value::Null,
                color: Value::Null,
                first_joined: None,
                last_left: None,
            }
        });
        p.name.clone_from(&e.user_name);
        if e.kind == "join" {
            let data: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
            if let Some(role) = data.get("role") {
                p.role = role.clone();
            }
            if let Some(color) = data.get("color") {
                p.color = color.clone();
            }
            p.first_joined.get_or_insert_with(|| rfc3339(e.at));
        } else {
            p.last_left = Some(rfc3339(e.at));
        }
    }
    order
        .iter()
        .filter_map(|id| by_user.get(id))
        .map(|p| {
            json!({
                "user_id": p.user_id, "name": p.name, "role": p.role, "color": p.color,
                "first_joined": p.first_joined, "last_left": p.last_left,
            })
        })
        .collect()
}

/// The record of an interview (the body of `GET /record`, `record.json` in the export).
async fn record_json(state: &ApiState, session: &Session) -> Result<Value, ApiError> {
    let code = document_text(state, session, DocKind::Code).await?;
    let notes = document_text(state, session, DocKind::Notes).await?;
    let runs = with_timeout(state.storage.runs(session.id)).await?;
    let events = with_timeout(state.storage.events(session.id)).await?;
    Ok(json!({
        "id": session.id,
        "session_code": session.code,
        "title": session.title.as_str(),
        "language": session.language,
        "state": session.state,
        "created_at": rfc3339(session.created_at),
        "started_at": session.started_at.map(rfc3339),
        "ended_at": session.ended_at.map(rfc3339),
        "code": code,
        "notes": notes,
        "participants": participants(&events),
        "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
    }))
}

fn history_json(doc: DocKind, updates: &[StoredUpdate]) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    json!({
        "doc": doc.as_str(),
        "updates": updates.iter().map(|u| json!({
            "seq": u.seq,
            "at": rfc3339(u.created_at),
            "author": u.author,
            "data": b64.encode(&u.data),
        })).collect::<Vec<_>>(),
    })
}

/// The `/history` body written straight into a string: the same JSON as [`history_json`] without a
/// `Value` per update (a long interview has tens of thousands).
fn history_body(doc: DocKind, updates: &[StoredUpdate]) -> String {
    use std::fmt::Write as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let size: usize = updates.iter().map(|u| u.data.len() * 4 / 3 + 110).sum();
    let mut out = String::with_capacity(size + 32);
    out.push_str("{\"doc\":\"");
    out.push_str(doc.as_str());
    out.push_str("\",\"updates\":[");
    for (i, u) in updates.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"seq\":{},\"at\":\"{}\",\"author\":",
            u.seq,
            rfc3339(u.created_at)
        );
        match u.author {
            Some(a) => {
                let _ = write!(out, "\"{a}\"");
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"data\":\"");
        b64.encode_string(&u.data, &mut out);
        out.push_str("\"}");
    }
    out.push_str("]}");
    out
}

/// `doc=code|notes` from the query string (`code` when absent).
fn doc_param(req: &HttpRequest) -> Result<DocKind, ApiError> {
    let mut doc = DocKind::Code;
    for pair in req.query_string().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "doc" {
            doc = match value {
                "code" => DocKind::Code,
                "notes" => DocKind::Notes,
                _ => {
                    return Err(ApiError::InvalidField(
                        "doc: must be `code` or `notes`".into(),
                    ))
                }
            };
        }
    }
    Ok(doc)
}

fn private_json(body: &Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// `GET /api/session/{code}/record` (interviewer only).
#[tracing::instrument(skip_all, fields(code = %code))]
pub async fn record(
    state: web::Data<ApiState>,
    req: HttpRequest,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let session = session(&state, &code).await?;
    interviewer(&state, &req, &session).await?;
    Ok(private_json(&record_json(&state, &session).await?))
}

/// `GET /api/session/{code}/history?doc=code|notes` (interviewer only): every update of the
/// document, ordered by `seq`, each as base64 of its Yjs v1 encoding.
#[tracing::instrument(skip_all, fields(code = %code))]
pub async fn history(
    state: web::Data<ApiState>,
    req: HttpRequest,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let doc = doc_param(&req)?;
    let session = session(&state, &code).await?;
    interviewer(&state, &req, &session).await?;
    let updates = with_timeout(state.storage.history(session.id, doc)).await?;
    let body = blocking(move || history_body(doc, &updates)).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("application/json")
        .body(body))
}

fn pretty(value: &Value) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec_pretty(value).map_err(|e| ApiError::Unexpected(e.into()))
}

/// The export's files, in order: name and contents.
fn zip_bytes(files: Vec<(String, Vec<u8>)>) -> Result<Vec<u8>, ApiError> {
    let unexpected = |e: zip::result::ZipError| ApiError::Unexpected(e.into());
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for (name, data) in files {
        zip.start_file(name, options).map_err(unexpected)?;
        zip.write_all(&data)
            .map_err(|e| ApiError::Unexpected(e.into()))?;
    }
    Ok(zip.finish().map_err(unexpected)?.into_inner())
}

/// `GET /api/session/{code}/export` (interviewer only): a zip of `solution.<ext>`, `notes.md`,
/// `runs.json`, `events.json`, `record.json`, `history/code.json` and `history/notes.json`.
#[tracing::instrument(skip_all, fields(code = %code))]
pub async fn export(
    state: web::Data<ApiState>,
    req: HttpRequest,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let session = session(&state, &code).await?;
    interviewer(&state, &req, &session).await?;
    let record = record_json(&state, &session).await?;
    let code_history = with_timeout(state.storage.history(session.id, DocKind::Code)).await?;
    let notes_history = with_timeout(state.storage.history(session.id, DocKind::Notes)).await?;
    let ext = extension(session.language);
    let zipped = blocking(move || {
        let text = |key: &str| record[key].as_str().unwrap_or_default().as_bytes().to_vec();
        zip_bytes(vec![
            (format!("solution.{ext}"), text("code")),
            ("notes.md".into(), text("notes")),
            ("runs.json".into(), pretty(&record["runs"])?),
            ("events.json".into(), pretty(&record["events"])?),
            ("record.json".into(), pretty(&record)?),
            (
                "history/code.json".into(),
                pretty(&history_json(DocKind::Code, &code_history))?,
            ),
            (
                "history/notes.json".into(),
                pretty(&history_json(DocKind::Notes, &notes_history))?,
            ),
        ])
    })
    .await??;
    tracing::info!(code = %session.code, bytes = zipped.len(), "interview exported");
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"duet-{}.zip\"", session.code),
        ))
        .body(zipped))
}

/// `DELETE /api/session/{code}` (interviewer only): erases the interview and every row of it.
/// 204; afterwards the interview is unknown (404) everywhere. The hubs are told it ended (a
/// `Control` with state `ended`, editing locked, runs off).
#[tracing::instrument(skip_all, fields(code = %code))]
pub async fn erase(
    state: web::Data<ApiState>,
    req: HttpRequest,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let session = session(&state, &code).await?;
    interviewer(&state, &req, &session).await?;
    if !with_timeout(state.storage.erase_session(session.id)).await? {
        // Erased by another request meanwhile.
        return Err(ApiError::SessionNotFound(session.code.to_string()));
    }
    tracing::info!(code = %session.code, id = %session.id, "interview erased");
    // The hubs still holding it end it for whoever is connected (read-only, runs off), so no
    // further edit is attempted. Best effort: the erasure stands whatever the bus says.
    let closed = InterviewControl {
        state: InterviewState::Ended,
        ended_at: session.ended_at.or(Some(OffsetDateTime::now_utc())),
        editing_locked: true,
        runs_enabled: false,
        ..InterviewControl::of(&session)
    };
    if announce(&state, session.id, &closed).await.is_err() {
        tracing::warn!(code = %session.code, "erased interview not announced to the hubs");
    }
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written `/history` body is the JSON of [`history_json`].
    #[test]
    fn the_history_body_is_the_history_json() {
        let t = time::macros::datetime!(2026-01-02 03:04:05.123456 UTC);
        let updates = [
            StoredUpdate {
                seq: 1,
                author: Some(Uuid::nil()),
                data: vec![0, 1, 2, 250, 251, 252, 253],
                created_at: t,
            },
            StoredUpdate {
                seq: 7,
                author: None,
                data: Vec::new(),
                created_at: t,
            },
        ];
        for doc in DocKind::ALL {
            for u in [&updates[..], &updates[..1], &[]] {
                let body: Value = serde_json::from_str(&history_body(doc, u)).unwrap();
                assert_eq!(body, history_json(doc, u));
            }
        }
    }
}
