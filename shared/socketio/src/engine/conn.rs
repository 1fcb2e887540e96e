//! One Engine.IO session: its outbound queue, transport state and close logic.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix_web::http::header::{HeaderName, HeaderValue};
use bytes::Bytes;
use bytestring::ByteString;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{EngineHandler, EngineShared};
use crate::{DisconnectReason, SendError};

/// One outbound Engine.IO packet, already encoded. Cloning shares the bytes, which is how a
/// broadcast sends the same encoded packet to every recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text packet, type digit included (`42[...]`, `2`, `3probe`).
    Text(ByteString),
    /// A binary message (a Socket.IO attachment).
    Binary(Bytes),
    /// A WebSocket-level pong (answer to a WebSocket ping frame); never sent over polling.
    Pong(Bytes),
}

/// The transport a session currently uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Polling,
    /// A WebSocket answered the probe; polling requests get `noop` until the `upgrade` packet.
    Upgrading,
    WebSocket,
}

/// What is known about the HTTP request that opened a session.
#[derive(Debug)]
pub struct ConnInfo {
    /// The handshake request's headers, copied into a flat list: a clone of actix's `HeaderMap`
    /// costs about 6.6 KB per connection (measured with massif), this a few hundred bytes, and
    /// copying the values keeps the request's read buffer from being pinned. Empty unless
    /// [`SioConfig::keep_headers`](crate::SioConfig::keep_headers).
    pub headers: Box<[(HeaderName, HeaderValue)]>,
    /// The handshake request's query string, undecoded.
    pub query: String,
    /// The peer's address as seen by this server (the proxy's, behind one).
    pub peer_addr: Option<SocketAddr>,
}

impl ConnInfo {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

pub(crate) struct State {
    queue: VecDeque<Frame>,
    pub(crate) transport: Transport,
    pub(crate) closed: Option<DisconnectReason>,
    pub(crate) get_active: bool,
    /// Counts the long-poll GETs that became active: a GET replaced by a retry of itself (see
    /// [`PollRetry`]) sees a newer number and ends without taking anything.
    pub(crate) get_gen: u32,
    pub(crate) post_active: bool,
    /// The `t` of the active GET and the last answer, while a polling session has them.
    pub(crate) poll: Option<Box<PollRetry>>,
    /// A WebSocket is attached for an upgrade (in probe or done).
    pub(crate) ws_attached: bool,
    /// The WebSocket writer to wake when frames are queued.
    pub(crate) ws: Option<Arc<WsCtl>>,
}

impl State {
    /// Takes everything queued (see [`Conn::take_queue`]).
    pub(crate) fn take_queue(&mut self) -> VecDeque<Frame> {
        std::mem::take(&mut self.queue)
    }
}

/// What makes long-poll requests safe to retry. A proxy in front (nginx with `proxy_next_upstream`)
/// retries a request whose upstream failed before answering it — the same request, with the same
/// `t` query parameter (the client's per-request cache buster).
///
/// A `GET`: when the failure came after this server had answered (a gateway that died with the
/// answer in hand), the packets in that answer would be lost with no error at the client: the retry
/// is then given the same answer again. When the first request is still waiting here (its
/// downstream gone, which the server does not see), the retry replaces it instead of counting as a
/// second concurrent GET.
///
/// A `POST` (nginx resends one only with `non_idempotent`, which deploy/nginx.conf sets for
/// Engine.IO), recognised by its `t` and by the request id nginx sends with it (a client may send
/// no `t` with its POSTs): when its packets were already taken, the retry is answered `ok` again
/// without taking them twice; when the first is still being read, the retry waits for it instead
/// of counting as a second concurrent POST.
#[derive(Default)]
pub(crate) struct PollRetry {
    /// The `t` of the GET that is active.
    pub(crate) active_t: Option<Box<str>>,
    /// The last answer and the `t` of the GET it answered; dropped when the next GET (another `t`)
    /// shows the client has it.
    pub(crate) last: Option<(Box<str>, Bytes)>,
    /// The retry key (`t`, or nginx's request id, or both) of the last POST that began, and whether
    /// its packets were taken.
    pub(crate) post: Option<(Box<str>, bool)>,
    /// A retry of the active POST waits for it (woken through `Conn::notify`).
    pub(crate) post_waiting: bool,
}

/// Shared between a WebSocket's response body (the writer) and its reader task.
#[derive(Default)]
pub(crate) struct WsCtl {
    pub(crate) waker: AtomicWaker,
    pub(crate) state: Mutex<WsCtlState>,
}

#[derive(Default)]
pub(crate) struct WsCtlState {
    /// Frames for this WebSocket only (the upgrade probe's `3probe`).
    pub(crate) direct: Vec<Frame>,
    /// Set when this WebSocket is the session's transport: it drains the session queue.
    pub(crate) attached: bool,
    /// Close this WebSocket with this frame (the session may live on, after a failed upgrade).
    pub(crate) close: Option<Option<actix_http::ws::CloseReason>>,
}

impl WsCtl {
    pub(crate) fn send_direct(&self, frame: Frame) {
        self.state.lock().direct.push(frame);
        self.waker.wake();
    }

    pub(crate) fn close(&self, reason: Option<actix_http::ws::CloseReason>) {
        self.state.lock().close.get_or_insert(reason);
        self.waker.wake();
    }
}

/// One Engine.IO session, shared by its transport tasks and the layer above.
pub struct Conn<H: EngineHandler> {
    sid: Arc<str>,
    pub(crate) state: Mutex<State>,
    /// Woken when frames are queued or the transport changes (one consumer at a time: the
    /// pending long-poll request or the WebSocket task).
    pub(crate) notify: Notify,
    /// Cancelled when the session closes.
    pub(crate) closed: CancellationToken,
    /// Counts pongs, so the polling heartbeat can tell a fresh pong from an old one.
    pub(crate) pongs: AtomicU64,
    pub(crate) pong_notify: Notify,
    info: Arc<ConnInfo>,
    engine: Arc<EngineShared<H>>,
    data: H::ConnData,
}

impl<H: EngineHandler> Conn<H> {
    pub(crate) fn new(
        sid: Arc<str>,
        transport: Transport,
        info: Arc<ConnInfo>,
        engine: Arc<EngineShared<H>>,
    ) -> Self {
        let data = engine.handler.new_conn_data();
        Conn {
            sid,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                transport,
                closed: None,
                get_active: false,
                get_gen: 0,
                post_active: false,
                poll: None,
                ws_attached: false,
                ws: None,
            }),
            notify: Notify::new(),
            closed: CancellationToken::new(),
            pongs: AtomicU64::new(0),
            pong_notify: Notify::new(),
            info,
            engine,
            data,
        }
    }

    /// The Engine.IO session id.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    pub(crate) fn sid_arc(&self) -> &Arc<str> {
        &self.sid
    }

    /// The handshake request.
    pub fn info(&self) -> &Arc<ConnInfo> {
        &self.info
    }

    /// The upper layer's per-connection state.
    pub fn data(&self) -> &H::ConnData {
        &self.data
    }

    /// The engine handler (the upper layer).
    pub fn handler(&self) -> &H {
        &self.engine.handler
    }

    /// True once the session is closed.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed.is_some()
    }

    /// Queues frames as one unit: all of them or none. A full queue closes the session with
    /// [`DisconnectReason::SlowClient`] (the rule: never skip a slow client silently).
    pub fn send_frames(self: &Arc<Self>, frames: &[Frame]) -> Result<(), SendError> {
        {
            let mut s = self.state.lock();
            if s.closed.is_some() {
                return Err(SendError::Closed);
            }
            if s.queue.len() + frames.len() > self.engine.config.outbound_queue {
                drop(s);
                tracing::info!(sid = %self.sid, "outbound queue full, disconnecting slow client");
                self.close(DisconnectReason::SlowClient);
                return Err(SendError::QueueFull);
            }
            s.queue.extend(frames.iter().cloned());
            if let Some(ws) = &s.ws {
                ws.waker.wake();
            }
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Queues one text packet.
    pub fn send_text(self: &Arc<Self>, text: impl Into<ByteString>) -> Result<(), SendError> {
        self.send_frames(&[Frame::Text(text.into())])
    }

    /// Queues one binary message.
    pub fn send_binary(self: &Arc<Self>, data: impl Into<Bytes>) -> Result<(), SendError> {
        self.send_frames(&[Frame::Binary(data.into())])
    }

    /// Takes everything queued. The queue's buffer goes with it, so an idle session holds none.
    pub(crate) fn take_queue(&self) -> VecDeque<Frame> {
        self.state.lock().take_queue()
    }

    pub(crate) fn note_pong(&self) {
        self.pongs.fetch_add(1, Ordering::Relaxed);
        self.pong_notify.notify_one();
    }

    /// Closes the session (first call wins): removes it from the server, wakes its transport
    /// tasks (which send a close frame or `1` to a pending long-poll) and tells the layer above.
    pub fn close(self: &Arc<Self>, reason: DisconnectReason) {
        {
            let mut s = self.state.lock();
            if s.closed.is_some() {
                return;
            }
            s.closed = Some(reason);
            if let Some(ws) = &s.ws {
                ws.waker.wake();
            }
        }
        tracing::debug!(sid = %self.sid, %reason, "engine session closed");
        self.engine.remove(&self.sid);
        self.closed.cancel();
        self.notify.notify_one();
        self.engine.handler.on_close(self, reason);
    }

    pub(crate) fn close_reason(&self) -> Option<DisconnectReason> {
        self.state.lock().closed
    }
}
