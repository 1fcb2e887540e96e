//! `join_session {session_code, name, user_id?, yjs?, token?}`, leaving, and the connection
//! closing. The token decides the role: a participant token (from `POST /api/session/<code>/join`)
//! carries role, user id and colour; the interviewer link's token makes an interviewer; without one,
//! a client (a seed-era one) joins as a candidate when the interview has no password.
//!
//! Each connection's joining and leaving goes into the interview record (`join {role, color}`,
//! `leave`).

use duet_auth::TokenKind;
use duet_domain::{DisplayName, Role, Session, SessionCode};
use serde_json::{json, Value};
use uuid::Uuid;

use super::connection::{str_field, Connection, Joined};
use crate::error::{ErrorCode, HubError};
use crate::interview::presence::{color_for, UserInfo};
use crate::interview::Joiner;
use crate::runtime::cluster::participant_row;
use crate::transport::AckFn;

/// Who a joining connection is.
struct Identity {
    role: Role,
    user_id: Uuid,
    color: Option<String>,
    /// The user id comes from a token (see `Interview::is_bound`).
    bound: bool,
}

/// Name given to a seed client that joins without one.
const DEFAULT_NAME: &str = "Guest";

impl Connection {
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
        let token = match payload.get("token") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) if !t.is_empty() => Some(t.clone()),
            Some(_) => {
                return fail(
                    HubError::invalid("token must be the string the interview's link gave"),
                    ack,
                )
            }
        };
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
        let result = self
            .join_interview(code, name, user_id, token, yjs, ack)
            .await;
        self.state.lock().joining = false;
        result
    }

    async fn join_interview(
        &self,
        code: SessionCode,
        name: DisplayName,
        user_id: Uuid,
        token: Option<String>,
        yjs: bool,
        ack: Option<AckFn>,
    ) -> Result<(), (HubError, Option<AckFn>)> {
        let session = match self.rt.services.storage.session_by_code(&code).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err((
                    HubError::new(ErrorCode::SessionNotFound, "no interview with that code"),
                    ack,
                ))
            }
            Err(e) => return Err((e.into(), ack)),
        };
        let who = match self.identify(&session, token.as_deref(), user_id).await {
            Ok(who) => who,
            Err(e) => return Err((e, ack)),
        };
        // Joining again (another interview, or the same one afresh) leaves the current one first.
        self.leave().await;
        let mut user = UserInfo {
            user_id: who.user_id,
            name: name.as_str().to_owned(),
            color: who
                .color
                .unwrap_or_else(|| color_for(who.user_id).to_owned()),
        };
        let row_id = Uuid::new_v4();
        let mut ack = ack;
        let iv = loop {
            let iv = match self.rt.interview_for(&session).await {
                Ok(iv) => iv,
                Err(e) => return Err((e, ack)),
            };
            // A client without a token cannot take a user id that a token holder has here.
            if !who.bound && iv.read(|c| c.is_bound(&user.user_id)) {
                user.user_id = Uuid::new_v4();
                user.color = color_for(user.user_id).to_owned();
            }
            let joiner = Joiner {
                user: user.clone(),
                yjs,
                row_id,
                role: who.role,
                bound: who.bound,
            };
            let joined = Joined {
                iv: iv.clone(),
                user: user.clone(),
                row_id,
            };
            match iv.admit(self.sink.clone(), joiner, ack, || {
                self.state.lock().joined = Some(joined)
            }) {
                Ok(()) => break iv,
                // Unloaded meanwhile: the next lookup loads it afresh.
                Err(back) => {
                    tracing::debug!(session = %session.id, "interview unloaded during join; retrying");
                    ack = back;
                    tokio::task::yield_now().await;
                }
            }
        };
        self.record(
            session.id,
            &user,
            "join",
            json!({"role": who.role, "color": user.color}),
        );
        if self.state.lock().closed {
            // Disconnected while joining.
            self.leave().await;
            return Ok(());
        }
        let row = participant_row(&self.rt.services, session.id, row_id, &user);
        match self.rt.services.storage.add_participant(&row).await {
            Ok(()) => {
                iv.run(|c, _, _| c.row_saved(row_id));
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

    /// Who is joining, from their token (or its absence): the role, the user id (a participant
    /// token's own; an interviewer link's holder keeps the id they give) and the colour.
    async fn identify(
        &self,
        session: &Session,
        token: Option<&str>,
        asked: Uuid,
    ) -> Result<Identity, HubError> {
        let unauthorized = |m: &str| HubError::new(ErrorCode::Unauthorized, m);
        let who = match token {
            Some(t) => {
                let claims = self.rt.services.cfg.tokens.verify(t, session.id).map_err(|e| {
                    tracing::debug!(session = %session.id, error = %e, "join token refused");
                    unauthorized("this link is not valid for the interview (expired or altered); ask the interviewer for a new one")
                })?;
                match (claims.kind, claims.uid) {
                    (TokenKind::Participant, Some(uid)) => Identity {
                        role: claims.role,
                        user_id: uid,
                        color: claims.color,
                        bound: true,
                    },
                    _ => Identity {
                        role: Role::Interviewer,
                        user_id: asked,
                        color: None,
                        bound: true,
                    },
                }
            }
            None if session.has_password => {
                return Err(unauthorized(
                    "this interview has a password: join through its link",
                ))
            }
            None => Identity {
                role: Role::Candidate,
                user_id: asked,
                color: None,
                bound: false,
            },
        };
        if self
            .rt
            .services
            .storage
            .is_removed(session.id, who.user_id)
            .await?
        {
            return Err(HubError::new(
                ErrorCode::Removed,
                "an interviewer removed you from this interview",
            ));
        }
        Ok(who)
    }

    async fn remove_row(&self, row_id: Uuid) {
        if self
            .rt
            .services
            .storage
            .remove_participant(row_id)
            .await
            .is_err()
        {
            self.rt.services.orphan_rows.lock().push(row_id);
        }
    }

    /// Leaves the joined interview, if any.
    async fn leave(&self) {
        let joined = self.state.lock().joined.take();
        if let Some(j) = joined {
            self.record(j.iv.id, &j.user, "leave", json!({}));
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
}
