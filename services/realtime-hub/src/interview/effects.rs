//! What the interview core asks its runtime to do. The core never performs IO: every input returns
//! (appends to) a list of [`Effect`]s, which the runtime executes in order while it still holds the
//! interview's lock, so every participant sees one order of events. Effects that could re-enter the
//! core (closing a connection runs its disconnect handler) are executed after the lock is released.

use bytes::Bytes;
use serde_json::Value;
use uuid::Uuid;

use crate::error::HubError;

/// A connection's id (the Socket.IO session id).
pub type ConnId = std::sync::Arc<str>;

/// An event's payload: JSON, or one binary attachment (`yjs`).
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Json(Value),
    Binary(Bytes),
}

/// An acknowledgement the client asked for: its connection and an id the runtime chose. The runtime
/// keeps whatever sends the reply; the core keeps only this token until the reply is due.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AckToken {
    pub conn: ConnId,
    pub id: u64,
}

/// Who receives a broadcast: a group of the interview's connections on this hub. The runtime maps
/// each audience to a transport room of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    /// Every participant.
    Everyone,
    /// Participants that edit through Yjs (they receive the code document's sync, updates and
    /// awareness).
    Editors,
    /// Seed-protocol participants (whole texts, `code_updated`).
    Seed,
    /// Interviewers that edit through Yjs: the private notes' sync, updates and awareness. Never
    /// a candidate connection.
    Interviewers,
}

impl Audience {
    pub const ALL: [Audience; 4] = [
        Audience::Everyone,
        Audience::Editors,
        Audience::Seed,
        Audience::Interviewers,
    ];
}

/// One thing for the runtime to do.
#[derive(Debug, PartialEq)]
pub enum Effect {
    /// Send an event to one connection.
    Emit {
        to: ConnId,
        event: &'static str,
        payload: Outgoing,
    },
    /// Send an event to an audience (encoded once for all), except one connection.
    Broadcast {
        to: Audience,
        except: Option<ConnId>,
        event: &'static str,
        payload: Outgoing,
    },
    /// Answer an acknowledgement.
    Ack {
        token: AckToken,
        result: Result<Value, HubError>,
    },
    /// Add a connection to an audience (or take it out).
    Enter {
        conn: ConnId,
        audience: Audience,
    },
    Exit {
        conn: ConnId,
        audience: Audience,
    },
    /// Close a connection. Executed once the interview's lock is released (closing runs the
    /// connection's disconnect handler, which comes back into the interview).
    Disconnect(ConnId),
    /// Publish a message on the interview's bus channel (already encoded, naming this hub).
    Publish(Bytes),
    /// Tell other hubs how far this hub's edits of the interview are committed (their inboxes).
    CommitNotice {
        upto: u64,
        hubs: Vec<String>,
    },
    /// Queue an update for the group-commit writer. `write_id` is the interview's next write id;
    /// the writer reports commits by it.
    Write {
        write_id: u64,
        /// Which of the interview's documents it edits.
        doc: duet_domain::DocKind,
        author: Option<Uuid>,
        data: Vec<u8>,
    },
    /// Something for the interview's worker (a resync, a snapshot or an unload may be due).
    Wake,
    /// Client updates wait to be integrated: call [`Interview::step`](super::Interview::step)
    /// until it says there is no more.
    Staged,
}

/// The effects of one input, in order.
#[derive(Debug, Default)]
pub struct Effects(pub Vec<Effect>);

impl Effects {
    pub fn new() -> Self {
        Self(Vec::new())
    }
    pub fn push(&mut self, e: Effect) {
        self.0.push(e);
    }
    pub fn emit(&mut self, to: &ConnId, event: &'static str, payload: Outgoing) {
        self.0.push(Effect::Emit {
            to: to.clone(),
            event,
            payload,
        });
    }
    pub fn broadcast(
        &mut self,
        to: Audience,
        except: Option<&ConnId>,
        event: &'static str,
        payload: Outgoing,
    ) {
        self.0.push(Effect::Broadcast {
            to,
            except: except.cloned(),
            event,
            payload,
        });
    }
    pub fn ack(&mut self, token: AckToken, result: Result<Value, HubError>) {
        self.0.push(Effect::Ack { token, result });
    }
    pub fn publish(&mut self, msg: Bytes) {
        self.0.push(Effect::Publish(msg));
    }
    pub fn wake(&mut self) {
        self.0.push(Effect::Wake);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn drain(&mut self) -> std::vec::Drain<'_, Effect> {
        self.0.drain(..)
    }
    pub fn iter(&self) -> std::slice::Iter<'_, Effect> {
        self.0.iter()
    }
}
