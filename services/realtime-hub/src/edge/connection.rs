//! One client connection: what it needs across events — the joined interview, rate limits — and
//! how a refusal reaches it (an `error` event, and the ack when the client asked for one).

use std::sync::Arc;

use duet_domain::SessionCode;
use parking_lot::Mutex;
use serde_json::Value;
use uuid::Uuid;

use super::rate::TokenBucket;
use crate::error::{ErrorCode, HubError};
use crate::interview::presence::UserInfo;
use crate::limits::*;
use crate::metrics::Stats;
use crate::runtime::live::Live;
use crate::runtime::Runtime;
use crate::transport::{AckFn, ConnSink, Outgoing};

pub(super) struct Joined {
    pub iv: Arc<Live>,
    pub user: UserInfo,
    pub row_id: Uuid,
}

pub(super) struct ConnState {
    pub joined: Option<Joined>,
    pub joining: bool,
    pub closed: bool,
    pub doc_bucket: TokenBucket,
    pub awareness_bucket: TokenBucket,
    pub event_bucket: TokenBucket,
    pub activity_bucket: TokenBucket,
    pub awareness_strikes: u32,
}

pub struct Connection {
    pub(super) rt: Arc<Runtime>,
    pub(super) sink: Arc<dyn ConnSink>,
    pub(super) state: Mutex<ConnState>,
}

pub(super) fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

impl Connection {
    /// A new connection of the hub `rt`.
    pub fn new(rt: Arc<Runtime>, sink: Arc<dyn ConnSink>) -> Self {
        Stats::add(&rt.services.stats.connections, 1);
        Self {
            rt,
            sink,
            state: Mutex::new(ConnState {
                joined: None,
                joining: false,
                closed: false,
                doc_bucket: TokenBucket::new(DOC_MESSAGES_PER_SEC, DOC_MESSAGES_BURST),
                awareness_bucket: TokenBucket::new(AWARENESS_PER_SEC, AWARENESS_BURST),
                event_bucket: TokenBucket::new(EVENTS_PER_SEC, EVENTS_BURST),
                activity_bucket: TokenBucket::new(ACTIVITY_PER_SEC, ACTIVITY_BURST),
                awareness_strikes: 0,
            }),
        }
    }

    /// Sends a refusal: always as an `error` event, and as the ack when there is one.
    pub fn refuse(&self, e: HubError, ack: Option<AckFn>) {
        self.rt.services.stats.error_sent(e.code);
        self.sink.emit("error", Outgoing::Json(e.to_json()));
        if let Some(ack) = ack {
            ack(Err(e));
        }
    }

    pub(super) fn joined(&self) -> Result<(Arc<Live>, UserInfo), HubError> {
        let st = self.state.lock();
        match &st.joined {
            Some(j) => Ok((j.iv.clone(), j.user.clone())),
            None => Err(HubError::not_joined()),
        }
    }

    /// Refuses events naming another interview than the joined one.
    pub(super) fn check_target(iv: &Live, payload: &Value) -> Result<(), HubError> {
        match str_field(payload, "session_code") {
            Some(code) if SessionCode::parse(code).ok().as_ref() != Some(&iv.code) => Err(
                HubError::new(ErrorCode::NotJoined, "you have not joined that interview"),
            ),
            _ => Ok(()),
        }
    }

    pub(super) fn take_event_token(&self) -> Result<(), HubError> {
        if self.state.lock().event_bucket.try_take() {
            Ok(())
        } else {
            Err(HubError::new(
                ErrorCode::RateLimited,
                "too many events; slow down",
            ))
        }
    }
}
