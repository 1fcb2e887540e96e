//! One client connection: validates each event at the edge, enforces rate limits, and hands the
//! parsed request to its interview. Every refusal is a typed error (`error` event, and the ack when
//! the client asked for one).

use std::sync::Arc;

use duet_domain::{DisplayName, Language, SessionCode};
use duet_storage::NewRun;
use parking_lot::Mutex;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::core::{interview_for, participant_row};
use crate::ctx::{Ctx, Stats};
use crate::error::{ErrorCode, HubError};
use crate::interview::protocol::{self, ClientMessage};
use crate::interview::{Interview, Local};
use crate::limits::*;
use crate::presence::{color_for, UserInfo};
use crate::transport::{AckFn, ConnSink, Outgoing};

/// Name given to a seed client that joins without one.
const DEFAULT_NAME: &str = "Guest";

struct Joined {
    iv: Arc<Interview>,
    user: UserInfo,
    row_id: Uuid,
}

struct ConnState {
    joined: Option<Joined>,
    joining: bool,
    closed: bool,
    doc_bucket: TokenBucket,
    awareness_bucket: TokenBucket,
    event_bucket: TokenBucket,
    awareness_strikes: u32,
}

pub struct Connection {
    ctx: Arc<Ctx>,
    sink: Arc<dyn ConnSink>,
    state: Mutex<ConnState>,
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

impl Connection {
    pub(crate) fn new(ctx: Arc<Ctx>, sink: Arc<dyn ConnSink>) -> Self {
        Self {
            ctx,
            sink,
            state: Mutex::new(ConnState {
                joined: None,
                joining: false,
                closed: false,
                doc_bucket: TokenBucket::new(DOC_MESSAGES_PER_SEC, DOC_MESSAGES_BURST),
                awareness_bucket: TokenBucket::new(AWARENESS_PER_SEC, AWARENESS_BURST),
                event_bucket: TokenBucket::new(EVENTS_PER_SEC, EVENTS_BURST),
                awareness_strikes: 0,
            }),
        }
    }

    /// Sends a refusal: always as an `error` event, and as the ack when there is one.
    pub fn refuse(&self, e: HubError, ack: Option<AckFn>) {
        Stats::add(&self.ctx.stats.errors_sent, 1);
        self.sink.emit("error", Outgoing::Json(e.to_json()));
        if let Some(ack) = ack {
            ack(Err(e));
        }
    }

    fn joined(&self) -> Result<(Arc<Interview>, UserInfo), HubError> {
        let st = self.state.lock();
        match &st.joined {
            Some(j) => Ok((j.iv.clone(), j.user.clone())),
            None => Err(HubError::not_joined()),
        }
    }

    /// Refuses events naming another interview than the joined one.
    fn check_target(iv: &Interview, payload: &Value) -> Result<(), HubError> {
        match str_field(payload, "session_code") {
            Some(code) if SessionCode::parse(code).ok().as_ref() != Some(&iv.code) => Err(
                HubError::new(ErrorCode::NotJoined, "you have not joined that interview"),
            ),
            _ => Ok(()),
        }
    }

    fn take_event_token(&self) -> Result<(), HubError> {
        if self.state.lock().event_bucket.try_take() {
            Ok(())
        } else {
            Err(HubError::new(
                ErrorCode::RateLimited,
                "too many events; slow down",
            ))
        }
    }

    // ------------------------------------------------------------------ join / leave

    /// `join_session {session_code, name, user_id?, yjs?}`.
    pub async fn join(&self, payload: Value, ack: Option<AckFn>) {
        if let Err(e) = self.try_join(payload, ack).await {
            self.refuse(e.0, e.1);
        }
    }

    async fn try_join(
        &self,
        payload: Value,
        ack: Option<AckFn>,
    ) -> Result<(), (HubError, Option<AckFn>)> {
        let fail = |e: HubError, ack: Option<AckFn>| Err((e, ack));
        if let Err(e) = self.take_event_token() {
            return fail(e, ack);
        }
        let Some(code) = str_field(&payload, "session_code") else {
            return fail(
                HubError::invalid("join_session needs {session_code, name}"),
                ack,
            );
        };
        let Ok(code) = SessionCode::parse(code) else {
            return fail(
                HubError::new(ErrorCode::SessionNotFound, "no interview with that code"),
                ack,
            );
        };
        let raw_name = str_field(&payload, "name")
            .or_else(|| str_field(&payload, "user_name"))
            .unwrap_or(DEFAULT_NAME);
        let name = match DisplayName::parse(raw_name) {
            Ok(n) => n,
            Err(e) => return fail(HubError::invalid(e.to_string()), ack),
        };
        let user_id = str_field(&payload, "user_id")
            .and_then(|u| Uuid::parse_str(u).ok())
            .unwrap_or_else(Uuid::new_v4);
        let yjs = payload.get("yjs").and_then(Value::as_bool).unwrap_or(false);
        {
            let mut st = self.state.lock();
            if st.closed {
                return Ok(());
            }
            if st.joining {
                drop(st);
                return fail(HubError::invalid("a join is already in progress"), ack);
            }
            st.joining = true;
        }
        let result = self.join_interview(code, name, user_id, yjs, ack).await;
        self.state.lock().joining = false;
        result
    }

    async fn join_interview(
        &self,
        code: SessionCode,
        name: DisplayName,
        user_id: Uuid,
        yjs: bool,
        ack: Option<AckFn>,
    ) -> Result<(), (HubError, Option<AckFn>)> {
        let session = match self.ctx.storage.session_by_code(&code).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err((
                    HubError::new(ErrorCode::SessionNotFound, "no interview with that code"),
                    ack,
                ))
            }
            Err(e) => return Err((e.into(), ack)),
        };
        // Joining again (another interview, or the same one afresh) leaves the current one first.
        self.leave().await;
        let user = UserInfo {
            user_id,
            name: name.as_str().to_owned(),
            color: color_for(user_id).to_owned(),
        };
        let row_id = Uuid::new_v4();
        let mut ack = ack;
        let mut local = Local {
            user: user.clone(),
            yjs,
            sink: self.sink.clone(),
            awareness_ids: Vec::new(),
            row_id,
            row_saved: false,
            seed_last: None,
        };
        let iv = loop {
            let iv = match interview_for(&self.ctx, &session).await {
                Ok(iv) => iv,
                Err(e) => return Err((e, ack)),
            };
            let joined = Joined {
                iv: iv.clone(),
                user: user.clone(),
                row_id,
            };
            match iv.admit(local, ack, || self.state.lock().joined = Some(joined)) {
                Ok(()) => break iv,
                // Unloaded meanwhile: the next lookup loads it afresh.
                Err(back) => {
                    let (l, a) = *back;
                    tracing::debug!(session = %session.id, "interview unloaded during join; retrying");
                    local = l;
                    ack = a;
                    tokio::task::yield_now().await;
                }
            }
        };
        if self.state.lock().closed {
            // Disconnected while joining.
            self.leave().await;
            return Ok(());
        }
        let row = participant_row(&self.ctx, session.id, row_id, &user);
        match self.ctx.storage.add_participant(&row).await {
            Ok(()) => {
                iv.row_saved(row_id);
                let still_here = self
                    .state
                    .lock()
                    .joined
                    .as_ref()
                    .is_some_and(|j| j.row_id == row_id);
                if !still_here {
                    self.remove_row(row_id).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "participant row not written; the heartbeat retries")
            }
        }
        tracing::debug!(session = %session.id, user = %user.user_id, yjs, "joined");
        Ok(())
    }

    async fn remove_row(&self, row_id: Uuid) {
        if self.ctx.storage.remove_participant(row_id).await.is_err() {
            self.ctx.orphan_rows.lock().push(row_id);
        }
    }

    /// Leaves the joined interview, if any.
    async fn leave(&self) {
        let joined = self.state.lock().joined.take();
        if let Some(j) = joined {
            let saved =
                j.iv.leave(self.sink.id())
                    .map(|l| l.row_saved)
                    .unwrap_or(false);
            if saved {
                self.remove_row(j.row_id).await;
            }
        }
    }

    /// The connection closed (client left, heartbeat timeout, or disconnected for abuse).
    pub async fn disconnected(&self) {
        self.state.lock().closed = true;
        self.leave().await;
    }

    // ------------------------------------------------------------------ Yjs

    /// `yjs` with one binary attachment holding a y-protocols message.
    pub fn yjs(&self, data: &[u8], ack: Option<AckFn>) {
        if let Err((e, ack, disconnect)) = self.try_yjs(data, ack) {
            self.refuse(e, ack);
            if disconnect {
                self.sink.disconnect();
            }
        }
    }

    fn try_yjs(
        &self,
        data: &[u8],
        ack: Option<AckFn>,
    ) -> Result<(), (HubError, Option<AckFn>, bool)> {
        let (iv, _) = match self.joined() {
            Ok(j) => j,
            Err(e) => return Err((e, ack, false)),
        };
        iv.count_in();
        let limit = MAX_YJS_MESSAGE_BYTES.min(self.ctx.cfg.max_message_bytes);
        if data.len() > limit {
            return Err((
                HubError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("a yjs message may be at most {limit} bytes"),
                ),
                ack,
                false,
            ));
        }
        let msgs = match protocol::decode(data) {
            Ok(m) => m,
            Err(e) => {
                return Err((
                    HubError::new(
                        ErrorCode::InvalidUpdate,
                        format!("yjs message does not decode: {e}"),
                    ),
                    ack,
                    false,
                ))
            }
        };
        let has_doc = msgs.iter().any(|m| {
            matches!(
                m,
                ClientMessage::Update { .. } | ClientMessage::SyncStep1(_)
            )
        });
        {
            let mut st = self.state.lock();
            if has_doc && !st.doc_bucket.try_take() {
                drop(st);
                return Err((
                    HubError::new(ErrorCode::RateLimited, "too many document messages"),
                    ack,
                    true,
                ));
            }
            if !has_doc {
                if st.awareness_bucket.try_take() {
                    st.awareness_strikes = 0;
                } else {
                    st.awareness_strikes += 1;
                    let abusive = st.awareness_strikes >= AWARENESS_STRIKES_BEFORE_DISCONNECT;
                    drop(st);
                    return Err((
                        HubError::new(ErrorCode::RateLimited, "too many awareness messages"),
                        ack,
                        abusive,
                    ));
                }
            }
        }
        let mut ack = ack;
        let tracked = ack.take();
        // On refusal the ack comes back through the error path, so keep a slot for it.
        let slot: Arc<Mutex<Option<AckFn>>> = Arc::new(Mutex::new(tracked));
        let for_hub = {
            let slot = slot.clone();
            if slot.lock().is_some() {
                Some(Box::new(move |r| {
                    if let Some(a) = slot.lock().take() {
                        a(r);
                    }
                }) as AckFn)
            } else {
                None
            }
        };
        match iv.handle_yjs(self.sink.id(), msgs, for_hub) {
            Ok(()) => Ok(()),
            Err(e) => Err((e, slot.lock().take(), false)),
        }
    }

    // ------------------------------------------------------------------ seed events

    /// `code_change {code}`: the whole text.
    pub fn code_change(&self, payload: Value, ack: Option<AckFn>) {
        let r = (|| {
            let (iv, _) = self.joined()?;
            Self::check_target(&iv, &payload)?;
            self.take_event_token()?;
            let Some(code) = str_field(&payload, "code") else {
                return Err(HubError::invalid("code_change needs {code}"));
            };
            let limit = MAX_CODE_BYTES.min(self.ctx.cfg.max_message_bytes);
            if code.len() > limit {
                return Err(HubError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("code may be at most {limit} bytes"),
                ));
            }
            Ok((iv, code.to_owned()))
        })();
        match r {
            Ok((iv, code)) => {
                iv.count_in();
                if let Err((e, ack)) = iv.code_change(self.sink.id(), code, ack) {
                    self.refuse(e, ack);
                }
            }
            Err(e) => self.refuse(e, ack),
        }
    }

    /// `language_change {language}`.
    pub async fn language_change(&self, payload: Value, ack: Option<AckFn>) {
        let r = async {
            let (iv, user) = self.joined()?;
            Self::check_target(&iv, &payload)?;
            self.take_event_token()?;
            let raw = str_field(&payload, "language")
                .ok_or_else(|| HubError::invalid("language_change needs {language}"))?;
            let language = Language::parse(raw).map_err(|e| HubError::invalid(e.to_string()))?;
            self.ctx.storage.set_language(iv.id, language).await?;
            iv.set_language(self.sink.id(), language, user.user_id);
            Ok::<_, HubError>(language)
        }
        .await;
        match r {
            Ok(language) => {
                if let Some(ack) = ack {
                    ack(Ok(json!({"ok": true, "language": language.as_str()})));
                }
            }
            Err(e) => self.refuse(e, ack),
        }
    }

    /// `execute_code {language?, output, status?, duration_ms?}`: a run made in the browser.
    pub async fn execute_code(&self, payload: Value, ack: Option<AckFn>) {
        let r = async {
            let (iv, user) = self.joined()?;
            Self::check_target(&iv, &payload)?;
            self.take_event_token()?;
            let language = match str_field(&payload, "language") {
                Some(l) => Language::parse(l).map_err(|e| HubError::invalid(e.to_string()))?,
                None => iv.snapshot_language(),
            };
            let output = str_field(&payload, "output")
                .ok_or_else(|| HubError::invalid("execute_code needs {output}"))?;
            if output.len() > MAX_RUN_OUTPUT_BYTES {
                return Err(HubError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("output may be at most {MAX_RUN_OUTPUT_BYTES} bytes"),
                ));
            }
            let status = str_field(&payload, "status").unwrap_or("ok");
            if !matches!(status, "ok" | "error" | "timeout") {
                return Err(HubError::invalid("status must be ok, error or timeout"));
            }
            let duration_ms = match payload.get("duration_ms") {
                None | Some(Value::Null) => 0,
                Some(v) => v
                    .as_i64()
                    .filter(|d| (0..=MAX_RUN_DURATION_MS).contains(d))
                    .ok_or_else(|| {
                        HubError::invalid(format!(
                            "duration_ms must be an integer from 0 to {MAX_RUN_DURATION_MS}"
                        ))
                    })?,
            };
            let run = self
                .ctx
                .storage
                .record_run(NewRun {
                    session_id: iv.id,
                    user_id: Some(user.user_id),
                    user_name: user.name.clone(),
                    language,
                    output: output.to_owned(),
                    status: status.to_owned(),
                    duration_ms,
                })
                .await?;
            let body = json!({
                "id": run.id,
                "user_id": run.user_id,
                "user_name": run.user_name,
                "language": run.language.as_str(),
                "output": run.output,
                "status": run.status,
                "duration_ms": run.duration_ms,
                "created_at": run.created_at.format(&Rfc3339).unwrap_or_default(),
            });
            iv.share_run(body);
            Ok::<_, HubError>(run.id)
        }
        .await;
        match r {
            Ok(id) => {
                if let Some(ack) = ack {
                    ack(Ok(json!({"ok": true, "id": id})));
                }
            }
            Err(e) => self.refuse(e, ack),
        }
    }
}
