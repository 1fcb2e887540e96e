//! `yjs` with one binary attachment holding a y-protocols message (Duet's client), and `notes`, the
//! same for the interviewers' private notes.

use super::connection::Connection;
use crate::error::{ErrorCode, HubError};
use crate::interview::protocol::{self, ClientMessage};
use crate::interview::{Command, DocName};
use crate::limits::*;
use crate::metrics::Stats;
use crate::transport::AckFn;

impl Connection {
    /// `yjs` with one binary attachment holding a y-protocols message.
    pub fn yjs(&self, data: &[u8], ack: Option<AckFn>) {
        self.yjs_doc(DocName::Code, data, ack)
    }

    /// `notes`: the same, for the interviewers' private notes (interviewers only).
    pub fn notes(&self, data: &[u8], ack: Option<AckFn>) {
        self.yjs_doc(DocName::Notes, data, ack)
    }

    /// A y-protocols message for `doc` (on its event, `DocName::event`).
    pub fn yjs_doc(&self, doc: DocName, data: &[u8], ack: Option<AckFn>) {
        if let Err((e, ack, disconnect)) = self.try_yjs(doc, data, ack) {
            self.refuse(e, ack);
            if disconnect {
                self.sink.disconnect();
            }
        }
    }

    fn try_yjs(
        &self,
        doc: DocName,
        data: &[u8],
        ack: Option<AckFn>,
    ) -> Result<(), (HubError, Option<AckFn>, bool)> {
        let (iv, _) = match self.joined() {
            Ok(j) => j,
            Err(e) => return Err((e, ack, false)),
        };
        Stats::add(&self.rt.services.stats.messages_in, 1);
        let limit = MAX_YJS_MESSAGE_BYTES.min(self.rt.services.cfg.max_message_bytes);
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
        let msgs = match protocol::decode(data, doc.root()) {
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
        iv.client(self.sink.id(), ack, |ack, defer| Command::Yjs {
            doc,
            msgs,
            ack,
            defer,
        })
        .map_err(|(e, ack)| (e, ack, false))
    }
}
