//! What the transport-independent core needs from the transport (Socket.IO in production, a recorder
//! in unit tests). Everything here is non-blocking: the core calls it while holding an interview's lock
//! so that every participant sees that interview's events in one order.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

/// A connection's id (the Socket.IO session id).
pub type ConnId = Arc<str>;

/// An event's payload: JSON, or one binary attachment (`yjs`).
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Json(Value),
    Binary(Bytes),
}

/// Sends to every connection in a room. Implementations encode the packet once for all recipients.
pub trait Outbound: Send + Sync + 'static {
    fn broadcast(
        &self,
        room: &str,
        except: Option<&ConnId>,
        event: &'static str,
        payload: Outgoing,
    );
}

/// One connection, as the core sees it.
pub trait ConnSink: Send + Sync + 'static {
    fn id(&self) -> &ConnId;
    fn emit(&self, event: &'static str, payload: Outgoing);
    fn join(&self, room: &str);
    fn leave(&self, room: &str);
    /// Closes the connection (protocol abuse).
    fn disconnect(&self);
}

/// Called once with an emit's outcome: `Ok(body)` or a refusal. Used for Socket.IO acks.
pub type AckFn = Box<dyn FnOnce(Result<Value, crate::error::HubError>) + Send>;
