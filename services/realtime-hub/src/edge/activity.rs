//! `activity {kind, size?, doc?}`: the browser reports a paste (`paste`, with its size in UTF-16
//! units and the document pasted into) or the page being left (`blur`: the tab hidden or the window
//! left) and come back to (`focus`). Recorded in the interview's record (the activity writer, never
//! waited for) and shown live to the interviewers on every hub; a candidate never receives it.
//! Candidates and interviewers both report; refused once the interview has ended.
//!
//! The hub also records what it sees itself: each connection joining and leaving, and language
//! changes ([`Connection::record`]).

use duet_storage::NewEvent;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::connection::{str_field, Connection};
use crate::error::{ErrorCode, HubError};
use crate::interview::lifecycle::Action;
use crate::interview::presence::UserInfo;
use crate::interview::Command;
use crate::limits::MAX_PASTE_SIZE;
use crate::transport::AckFn;
use duet_domain::Role;

/// One validated `activity` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Activity {
    Paste { size: u64, notes: bool },
    Blur,
    Focus,
}

impl Activity {
    fn parse(payload: &Value) -> Result<Self, HubError> {
        if !payload.is_object() {
            return Err(HubError::invalid("activity needs {kind, size?, doc?}"));
        }
        match str_field(payload, "kind") {
            Some("paste") => {
                let size = payload
                    .get("size")
                    .and_then(Value::as_u64)
                    .filter(|s| *s <= MAX_PASTE_SIZE)
                    .ok_or_else(|| {
                        HubError::invalid(format!(
                            "a paste needs {{size}}: an integer from 0 to {MAX_PASTE_SIZE}"
                        ))
                    })?;
                let notes = match payload.get("doc") {
                    None | Some(Value::Null) => false,
                    Some(Value::String(d)) if d == "code" => false,
                    Some(Value::String(d)) if d == "notes" => true,
                    Some(_) => return Err(HubError::invalid("doc must be \"code\" or \"notes\"")),
                };
                Ok(Self::Paste { size, notes })
            }
            Some("blur") => Ok(Self::Blur),
            Some("focus") => Ok(Self::Focus),
            _ => Err(HubError::invalid(
                "activity kind must be paste, blur or focus",
            )),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Paste { .. } => "paste",
            Self::Blur => "blur",
            Self::Focus => "focus",
        }
    }

    /// The record's `data`.
    fn data(&self) -> Value {
        match self {
            Self::Paste { size, notes } => {
                json!({"size": size, "doc": if *notes { "notes" } else { "code" }})
            }
            Self::Blur | Self::Focus => json!({}),
        }
    }
}

/// RFC 3339, as every time the hub sends.
fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

impl Connection {
    /// Queues one event of the interview record (`kind` and its `data` object), by `user`, now.
    pub(super) fn record(&self, session_id: Uuid, user: &UserInfo, kind: &str, data: Value) {
        self.record_at(session_id, user, kind, data, OffsetDateTime::now_utc());
    }

    fn record_at(
        &self,
        session_id: Uuid,
        user: &UserInfo,
        kind: &str,
        data: Value,
        at: OffsetDateTime,
    ) {
        self.rt.services.record_event(NewEvent {
            session_id,
            user_id: Some(user.user_id),
            user_name: user.name.clone(),
            kind: kind.to_owned(),
            data: data.to_string(),
            at,
        });
    }

    /// `activity {kind, size?, doc?}`.
    pub fn activity(&self, payload: Value, ack: Option<AckFn>) {
        let r = (|| {
            let (iv, user) = self.joined()?;
            iv.read(|c| c.permits(self.sink.id(), Action::Activity))?;
            if !self.state.lock().activity_bucket.try_take() {
                return Err(HubError::new(
                    ErrorCode::RateLimited,
                    "too many activity events; slow down",
                ));
            }
            let activity = Activity::parse(&payload)?;
            if matches!(activity, Activity::Paste { notes: true, .. })
                && iv.read(|c| c.role_of(self.sink.id())) != Some(Role::Interviewer)
            {
                return Err(HubError::new(
                    ErrorCode::Forbidden,
                    "the notes are the interviewers' own",
                ));
            }
            let at = OffsetDateTime::now_utc();
            let data = activity.data();
            self.record_at(iv.id, &user, activity.kind(), data.clone(), at);
            let mut body = Map::new();
            body.insert("kind".into(), activity.kind().into());
            body.insert("user_id".into(), json!(user.user_id));
            body.insert("name".into(), user.name.clone().into());
            body.insert("at".into(), rfc3339(at).into());
            if let Value::Object(fields) = data {
                body.extend(fields);
            }
            iv.client(self.sink.id(), None, |_, _| Command::Activity {
                body: Value::Object(body),
            })
            .map_err(|(e, _)| e)
        })();
        match r {
            Ok(()) => {
                if let Some(ack) = ack {
                    ack(Ok(json!({"ok": true})));
                }
            }
            Err(e) => self.refuse(e, ack),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_validated() {
        let ok = |v: Value| Activity::parse(&v).unwrap();
        assert_eq!(
            ok(json!({"kind": "paste", "size": 312})),
            Activity::Paste {
                size: 312,
                notes: false
            }
        );
        assert_eq!(
            ok(json!({"kind": "paste", "size": 0, "doc": "notes"})),
            Activity::Paste {
                size: 0,
                notes: true
            }
        );
        assert_eq!(ok(json!({"kind": "blur"})), Activity::Blur);
        assert_eq!(ok(json!({"kind": "focus", "size": 3})), Activity::Focus);
        for bad in [
            json!(null),
            json!("paste"),
            json!({}),
            json!({"kind": "typing"}),
            json!({"kind": "paste"}),
            json!({"kind": "paste", "size": -1}),
            json!({"kind": "paste", "size": 1.5}),
            json!({"kind": "paste", "size": "12"}),
            json!({"kind": "paste", "size": MAX_PASTE_SIZE + 1}),
            json!({"kind": "paste", "size": 1, "doc": "other"}),
        ] {
            let e = Activity::parse(&bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidPayload, "{bad}");
        }
    }
}
