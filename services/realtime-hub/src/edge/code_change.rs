//! `code_change {code}`: a seed client's whole text.

use serde_json::Value;

use super::connection::{str_field, Connection};
use crate::error::{ErrorCode, HubError};
use crate::interview::Command;
use crate::limits::MAX_CODE_BYTES;
use crate::metrics::Stats;
use crate::transport::AckFn;

impl Connection {
    /// `code_change {code}`: the whole text.
    pub fn code_change(&self, payload: Value, ack: Option<AckFn>) {
        let r = (|| {
            let (iv, _) = self.joined()?;
            Self::check_target(&iv, &payload)?;
            self.take_event_token()?;
            let Some(code) = str_field(&payload, "code") else {
                return Err(HubError::invalid("code_change needs {code}"));
            };
            if code.contains('\0') {
                return Err(HubError::invalid("code may not contain NUL characters"));
            }
            let limit = MAX_CODE_BYTES.min(self.rt.services.cfg.max_message_bytes);
            if code.len() > limit {
                return Err(HubError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("code may be at most {limit} bytes"),
                ));
            }
            Ok((iv, code.to_owned()))
        })();
        match r {
            Ok((iv, text)) => {
                Stats::add(&self.rt.services.stats.messages_in, 1);
                if let Err((e, ack)) = iv.client(self.sink.id(), ack, |ack, _| {
                    Command::CodeChange { text, ack }
                }) {
                    self.refuse(e, ack);
                }
            }
            Err(e) => self.refuse(e, ack),
        }
    }
}
