//! What the hub needs from the transport (Socket.IO in production, a recorder in tests). Everything
//! here is non-blocking and never calls back into the hub synchronously — except
//! [`ConnSink::disconnect`], which runs the connection's disconnect handler and so is only ever
//! called with no interview lock held.

use std::sync::Arc;

use serde_json::Value;

pub use crate::interview::effects::{ConnId, Outgoing};

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

/// One connection, as the hub sees it.
pub trait ConnSink: Send + Sync + 'static {
    fn id(&self) -> &ConnId;
    fn emit(&self, event: &'static str, payload: Outgoing);
    fn join(&self, room: &str);
    fn leave(&self, room: &str);
    /// Closes the connection (protocol abuse, a broken interview).
    fn disconnect(&self);
}

/// Called once with an emit's outcome: `Ok(body)` or a refusal. The transport's reply to a
/// Socket.IO ack; the runtime keeps it while the interview core holds its token.
pub type AckFn = Box<dyn FnOnce(Result<Value, crate::error::HubError>) + Send>;

/// A shared connection handle.
pub type Sink = Arc<dyn ConnSink>;
