//! `language_change {language}`.

use duet_domain::Language;
use serde_json::{json, Value};

use super::connection::{str_field, Connection};
use crate::error::HubError;
use crate::interview::lifecycle::Action;
use crate::interview::Command;
use crate::transport::AckFn;

impl Connection {
    /// `language_change {language}`: stored, then shared with everyone.
    pub async fn language_change(&self, payload: Value, ack: Option<AckFn>) {
        let r = async {
            let (iv, user) = self.joined()?;
            Self::check_target(&iv, &payload)?;
            iv.read(|c| c.permits(self.sink.id(), Action::Language))?;
            self.take_event_token()?;
            let raw = str_field(&payload, "language")
                .ok_or_else(|| HubError::invalid("language_change needs {language}"))?;
            let language = Language::parse(raw).map_err(|e| HubError::invalid(e.to_string()))?;
            self.rt
                .services
                .storage
                .set_language(iv.id, language)
                .await?;
            iv.client(self.sink.id(), None, |_, _| Command::Language {
                language,
                user_id: user.user_id,
            })
            .map_err(|(e, _)| e)?;
            self.record(
                iv.id,
                &user,
                "language",
                json!({"language": language.as_str()}),
            );
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
}
