//! The interviewer's events: `start_interview`, `end_interview`, `set_controls {editing_locked?,
//! runs_enabled?}`, `remove_participant {user_id}`. Interviewers only (a candidate gets
//! `forbidden`); each is stored first, then applied here, told to the other hubs, and everyone
//! hears `interview_state`. The ack carries the new state.

use duet_domain::{InterviewControl, InterviewState};
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::connection::{str_field, Connection};
use crate::error::HubError;
use crate::interview::lifecycle::{state_json, Action};
use crate::transport::AckFn;

/// One interviewer request.
enum ControlRequest {
    Move(InterviewState),
    Set {
        editing_locked: Option<bool>,
        runs_enabled: Option<bool>,
    },
    Remove(Uuid),
}

impl ControlRequest {
    /// `set_controls`' payload: at least one of the two flags, each a boolean.
    fn set_from(payload: &Value) -> Result<Self, HubError> {
        let flag = |key: &str| match payload.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(HubError::invalid(format!("{key} must be true or false"))),
        };
        let (editing_locked, runs_enabled) = (flag("editing_locked")?, flag("runs_enabled")?);
        if editing_locked.is_none() && runs_enabled.is_none() {
            return Err(HubError::invalid(
                "set_controls needs {editing_locked?, runs_enabled?}",
            ));
        }
        Ok(Self::Set {
            editing_locked,
            runs_enabled,
        })
    }

    /// `remove_participant`'s payload: `{user_id}`.
    fn remove_from(payload: &Value) -> Result<Self, HubError> {
        str_field(payload, "user_id")
            .and_then(|u| Uuid::parse_str(u).ok())
            .map(Self::Remove)
            .ok_or_else(|| HubError::invalid("remove_participant needs {user_id}"))
    }
}

/// The interviewer's events.
pub const EVENTS: [&str; 4] = [
    "start_interview",
    "end_interview",
    "set_controls",
    "remove_participant",
];

impl Connection {
    /// One of [`EVENTS`] with its payload.
    pub async fn control_event(&self, event: &str, payload: Value, ack: Option<AckFn>) {
        let request = match event {
            "start_interview" => Ok(ControlRequest::Move(InterviewState::Live)),
            "end_interview" => Ok(ControlRequest::Move(InterviewState::Ended)),
            "set_controls" => ControlRequest::set_from(&payload),
            _ => ControlRequest::remove_from(&payload),
        };
        self.control(request, ack).await
    }

    /// Handles one interviewer request; the refusal goes to this client only.
    async fn control(&self, request: Result<ControlRequest, HubError>, ack: Option<AckFn>) {
        let r = async {
            let (iv, user) = self.joined()?;
            iv.read(|c| c.permits(self.sink.id(), Action::Control))?;
            self.take_event_token()?;
            let request = request?;
            let storage = &self.rt.services.storage;
            let mut removed = Vec::new();
            let session = match request {
                ControlRequest::Move(to) => {
                    storage
                        .transition(iv.id, to, OffsetDateTime::now_utc())
                        .await?
                }
                ControlRequest::Set {
                    editing_locked,
                    runs_enabled,
                } => {
                    storage
                        .set_controls(iv.id, editing_locked, runs_enabled)
                        .await?
                }
                ControlRequest::Remove(target) => {
                    if target == user.user_id {
                        return Err(HubError::invalid("you cannot remove yourself"));
                    }
                    storage.remove_user(iv.id, target).await?;
                    removed.push(target);
                    storage
                        .session_by_id(iv.id)
                        .await?
                        .ok_or_else(HubError::internal)?
                }
            };
            let control = InterviewControl {
                removed,
                ..InterviewControl::of(&session)
            };
            tracing::info!(session = %iv.id, by = %user.user_id, state = %control.state, "interview controls changed");
            iv.run(|c, now, fx| c.set_control(now, control, fx));
            Ok::<_, HubError>(iv.read(|c| state_json(c.control())))
        }
        .await;
        match r {
            Ok(state) => {
                if let Some(ack) = ack {
                    ack(Ok(json!({"ok": true, "interview_state": state})));
                }
            }
            Err(e) => self.refuse(e, ack),
        }
    }
}
