//! `execute_code {language?, output, status?, duration_ms?}`: a run made in the browser.

use duet_domain::Language;
use duet_storage::NewRun;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;

use super::connection::{str_field, Connection};
use crate::error::{ErrorCode, HubError};
use crate::interview::lifecycle::Action;
use crate::interview::Command;
use crate::limits::{MAX_RUN_DURATION_MS, MAX_RUN_OUTPUT_BYTES};
use crate::transport::AckFn;

impl Connection {
    /// `execute_code`: recorded, then shared with every participant (sender included).
    pub async fn execute_code(&self, payload: Value, ack: Option<AckFn>) {
        let r = async {
            let (iv, user) = self.joined()?;
            Self::check_target(&iv, &payload)?;
            iv.read(|c| c.permits(self.sink.id(), Action::Run))?;
            self.take_event_token()?;
            let language = match str_field(&payload, "language") {
                Some(l) => Language::parse(l).map_err(|e| HubError::invalid(e.to_string()))?,
                None => iv.snapshot_text().1,
            };
            let output = str_field(&payload, "output")
                .ok_or_else(|| HubError::invalid("execute_code needs {output}"))?;
            if output.contains('\0') {
                return Err(HubError::invalid("output may not contain NUL characters"));
            }
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
                .rt
                .services
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
            iv.client(self.sink.id(), None, |_, _| Command::Run { body })
                .map_err(|(e, _)| e)?;
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
