//! A client's connection to one namespace.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use bytestring::ByteString;
use duet_sio_codec::limits::MAX_ACK_ID;
use duet_sio_codec::sio::Encoded;
use duet_sio_codec::Payload;
use futures_util::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::engine::{Conn, ConnInfo, Frame};
use crate::handler::{self, DisconnectHandler, EventHandler, FallbackHandler};
use crate::io::SioHandler;
use crate::ns::{BroadcastOperator, Namespace};
use crate::{AckError, DisconnectReason, SendError};

/// The data a client sent when it connected.
#[derive(Clone)]
pub struct Handshake {
    /// The `CONNECT` packet's payload (the client's `auth` option), `{}` when absent.
    pub auth: Value,
    info: Arc<ConnInfo>,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// Headers of the request that opened the Engine.IO session.
    pub fn headers(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.info.headers.iter().map(|(n, v)| (n, v))
    }

    /// The first value of one header of that request (case-insensitive name), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.info.header(name).and_then(|v| v.to_str().ok())
    }

    /// Raw query string of that request.
    pub fn query(&self) -> &str {
        &self.info.query
    }

    /// One decoded query parameter of that request.
    pub fn query_param(&self, key: &str) -> Option<String> {
        let map =
            actix_web::web::Query::<HashMap<String, String>>::from_query(&self.info.query).ok()?;
        map.into_inner().remove(key)
    }

    /// Address of the peer (of the proxy, behind one).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.info.peer_addr
    }
}

pub(crate) struct SocketInner {
    id: Arc<str>,
    pub(crate) ns: Arc<Namespace>,
    pub(crate) conn: Arc<Conn<SioHandler>>,
    handshake: Handshake,
    handlers: RwLock<HashMap<String, EventHandler>>,
    /// Events without a handler of their own (see [`Socket::on_fallback`]).
    fallback: RwLock<Option<FallbackHandler>>,
    on_disconnect: Mutex<Option<DisconnectHandler>>,
    acks: Mutex<HashMap<u64, oneshot::Sender<Payload>>>,
    next_ack: AtomicU64,
    pub(crate) rooms: Mutex<Vec<Arc<str>>>,
    connected: AtomicBool,
}

/// A client connected to a namespace. Cheap to clone (all clones are the same socket).
///
/// Every method may be called from any thread or task.
#[derive(Clone)]
pub struct Socket {
    pub(crate) inner: Arc<SocketInner>,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.id())
            .field("ns", &self.ns())
            .finish_non_exhaustive()
    }
}

/// Answers a client's event that asked for an acknowledgement (socket.io-protocol,
/// "Acknowledgement": "The receiver MUST respond with an ACK packet with the same event ID").
pub struct AckSender {
    socket: Socket,
    id: u64,
}

impl fmt::Debug for AckSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckSender").field("id", &self.id).finish()
    }
}

impl AckSender {
    /// Sends the ack with these arguments (`BINARY_ACK` if it has attachments).
    pub fn send(self, payload: impl Into<Payload>) -> Result<(), SendError> {
        let enc = Encoded::ack(self.socket.ns(), self.id, &payload.into(), true);
        self.socket.send_encoded(enc)
    }

    /// The ack id the client chose.
    pub fn id(&self) -> u64 {
        self.id
    }
}

pub(crate) fn frames(enc: Encoded) -> Vec<Frame> {
    let mut frames = Vec::with_capacity(1 + enc.attachments.len());
    frames.push(Frame::Text(ByteString::from(enc.text)));
    frames.extend(enc.attachments.into_iter().map(Frame::Binary));
    frames
}

impl Socket {
    pub(crate) fn new(
        id: Arc<str>,
        ns: Arc<Namespace>,
        conn: Arc<Conn<SioHandler>>,
        auth: Value,
    ) -> Socket {
        let info = conn.info().clone();
        Socket {
            inner: Arc::new(SocketInner {
                id,
                ns,
                conn,
                handshake: Handshake { auth, info },
                handlers: RwLock::new(HashMap::new()),
                fallback: RwLock::new(None),
                on_disconnect: Mutex::new(None),
                acks: Mutex::new(HashMap::new()),
                next_ack: AtomicU64::new(0),
                rooms: Mutex::new(Vec::new()),
                connected: AtomicBool::new(true),
            }),
        }
    }

    /// The socket id (sent to the client in the `CONNECT` answer; distinct from the Engine.IO
    /// session id).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub(crate) fn id_arc(&self) -> &Arc<str> {
        &self.inner.id
    }

    /// The namespace, e.g. `/`.
    pub fn ns(&self) -> &str {
        &self.inner.ns.path
    }

    /// The Engine.IO session id of the underlying connection.
    pub fn engine_sid(&self) -> &str {
        self.inner.conn.sid()
    }

    /// What the client sent when connecting.
    pub fn handshake(&self) -> &Handshake {
        &self.inner.handshake
    }

    /// False once disconnected.
    pub fn connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    /// Registers the handler of `event` (replacing any previous one). The handler gets the
    /// socket, the arguments, and an [`AckSender`] when the client asked for an ack.
    ///
    /// Handlers of one socket start in the order the events arrived; each runs as its own task
    /// after its first `.await`.
    pub fn on<F, Fut>(&self, event: impl Into<String>, handler: F)
    where
        F: Fn(Socket, Payload, Option<AckSender>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let h: EventHandler = Arc::new(move |s, p, a| Box::pin(handler(s, p, a)));
        self.inner.handlers.write().insert(event.into(), h);
    }

    /// Registers the handler of every event that has no handler of its own ([`Socket::on`]); it
    /// gets the event's name too, and returns its future boxed. One handler for all of a socket's
    /// events costs the socket one entry instead of a map of them (about 1 KB for a dozen events,
    /// which a server holding many idle sockets feels). Otherwise as [`Socket::on`].
    pub fn on_fallback<F>(&self, handler: F)
    where
        F: Fn(Socket, &str, Payload, Option<AckSender>) -> BoxFuture<'static, ()>
            + Send
            + Sync
            + 'static,
    {
        *self.inner.fallback.write() = Some(Arc::new(handler));
    }

    /// Registers the handler called once when the socket disconnects, for any reason.
    pub fn on_disconnect<F, Fut>(&self, handler: F)
    where
        F: Fn(Socket, DisconnectReason) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let h: DisconnectHandler = Arc::new(move |s, r| Box::pin(handler(s, r)));
        *self.inner.on_disconnect.lock() = Some(h);
    }

    pub(crate) fn send_encoded(&self, enc: Encoded) -> Result<(), SendError> {
        if !self.connected() {
            return Err(SendError::Closed);
        }
        self.inner.conn.send_frames(&frames(enc))
    }

    pub(crate) fn send_frames(&self, frames: &[Frame]) -> Result<(), SendError> {
        if !self.connected() {
            return Err(SendError::Closed);
        }
        self.inner.conn.send_frames(frames)
    }

    /// Sends an event to this client. `Err(QueueFull)` means the client could not keep up and
    /// is being disconnected.
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) -> Result<(), SendError> {
        self.send_encoded(Encoded::event(
            self.ns(),
            event,
            &payload.into(),
            None,
            true,
        ))
    }

    /// Sends an event and waits for the client's acknowledgement, at most `timeout` (`None`:
    /// the configured `ack_timeout`). The event is queued when this is called; the future only
    /// waits for the answer.
    pub fn emit_with_ack(
        &self,
        event: &str,
        payload: impl Into<Payload>,
        timeout: impl Into<Option<Duration>>,
    ) -> impl Future<Output = Result<Payload, AckError>> + Send + 'static {
        let timeout = timeout
            .into()
            .unwrap_or(self.inner.conn.handler().config().ack_timeout);
        let id = self.inner.next_ack.fetch_add(1, Ordering::Relaxed) % (MAX_ACK_ID + 1);
        let (tx, rx) = oneshot::channel();
        self.inner.acks.lock().insert(id, tx);
        let sent = self.send_encoded(Encoded::event(
            self.ns(),
            event,
            &payload.into(),
            Some(id),
            true,
        ));
        let socket = self.clone();
        async move {
            if let Err(e) = sent {
                socket.inner.acks.lock().remove(&id);
                return Err(AckError::Send(e));
            }
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(payload)) => Ok(payload),
                Ok(Err(_)) => Err(AckError::Disconnected),
                Err(_) => {
                    socket.inner.acks.lock().remove(&id);
                    Err(AckError::Timeout)
                }
            }
        }
    }

    /// Joins a room of this namespace (no effect if already in it).
    pub fn join(&self, room: impl Into<String>) {
        let room: Arc<str> = room.into().into();
        {
            let mut rooms = self.inner.rooms.lock();
            if rooms.contains(&room) || !self.connected() {
                return;
            }
            rooms.push(room.clone());
        }
        self.inner.ns.add_to_room(room, self.clone());
    }

    /// Leaves a room.
    pub fn leave(&self, room: &str) {
        {
            let mut rooms = self.inner.rooms.lock();
            let Some(pos) = rooms.iter().position(|r| &**r == room) else {
                return;
            };
            rooms.swap_remove(pos);
        }
        self.inner.ns.remove_from_room(room, self.id());
    }

    /// The rooms this socket is in.
    pub fn rooms(&self) -> Vec<String> {
        self.inner
            .rooms
            .lock()
            .iter()
            .map(|r| r.to_string())
            .collect()
    }

    /// Everyone in `room` of this namespace except this socket.
    pub fn to(&self, room: impl Into<String>) -> BroadcastOperator {
        BroadcastOperator::new(Some(self.inner.ns.clone()))
            .to(room)
            .except(self.id())
    }

    /// Everyone in this namespace except this socket.
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(Some(self.inner.ns.clone())).except(self.id())
    }

    /// Disconnects this socket from its namespace: the client receives a `DISCONNECT` packet
    /// (its socket.io-client reports "io server disconnect" and does not reconnect).
    pub fn disconnect(&self) {
        if self.connected() {
            let _ = self
                .inner
                .conn
                .send_frames(&frames(Encoded::disconnect(self.ns(), true)));
        }
        self.close(DisconnectReason::ServerNamespaceDisconnect);
    }

    /// Closes the whole underlying connection (all namespaces of this client).
    pub fn close_connection(&self) {
        self.inner
            .conn
            .close(DisconnectReason::ServerNamespaceDisconnect);
    }

    /// Marks the socket disconnected, removes it everywhere, fails pending acks and runs the
    /// disconnect handler. Idempotent.
    pub(crate) fn close(&self, reason: DisconnectReason) {
        if !self.inner.connected.swap(false, Ordering::AcqRel) {
            return;
        }
        let rooms = std::mem::take(&mut *self.inner.rooms.lock());
        for room in rooms {
            self.inner.ns.remove_from_room(&room, self.id());
        }
        self.inner.ns.remove_socket(self.id());
        self.inner
            .conn
            .handler()
            .remove_socket(&self.inner.conn, self);
        // Dropping the senders fails every pending `emit_with_ack` with `Disconnected`.
        self.inner.acks.lock().clear();
        // Handlers often hold what holds the socket: dropped here, or the socket would never be.
        self.inner.handlers.write().clear();
        self.inner.fallback.write().take();
        let on_disconnect = self.inner.on_disconnect.lock().take();
        if let Some(h) = on_disconnect {
            handler::run(h(self.clone(), reason));
        }
    }

    pub(crate) fn dispatch_event(&self, name: &str, payload: Payload, id: Option<u64>) {
        let ack = |id: Option<u64>| {
            id.map(|id| AckSender {
                socket: self.clone(),
                id,
            })
        };
        let h = self.inner.handlers.read().get(name).cloned();
        if let Some(h) = h {
            handler::run(h(self.clone(), payload, ack(id)));
            return;
        }
        let fallback = self.inner.fallback.read().clone();
        match fallback {
            Some(f) => handler::run(f(self.clone(), name, payload, ack(id))),
            None => tracing::trace!(event = name, "no handler"),
        }
    }

    pub(crate) fn resolve_ack(&self, id: u64, payload: Payload) {
        if let Some(tx) = self.inner.acks.lock().remove(&id) {
            let _ = tx.send(payload);
        }
    }
}
