//! The Socket.IO server: namespaces on top of Engine.IO sessions.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use actix_web::web;
use bytes::Bytes;
use duet_sio_codec::sio::{self, Decoded, Encoded, PacketKind, Partial, Step};
use parking_lot::{Mutex, RwLock};
use serde_json::json;
use tokio::task::AbortHandle;

use crate::engine::{random_id, Conn, EngineHandler, EngineIo, ProtocolViolation};
use crate::handler::{self, ConnectHandler};
use crate::ns::{BroadcastOperator, Namespace, NamespaceRef};
use crate::socket::frames;
use crate::{DisconnectReason, SioConfig, Socket};

/// A Socket.IO server. Cheap to clone; mount it with [`SocketIo::configure`].
///
/// ```no_run
/// use duet_socketio::{Payload, SioConfig, SocketIo};
///
/// # async fn run() -> std::io::Result<()> {
/// let io = SocketIo::builder().config(SioConfig::default()).build();
/// io.ns("/", |socket| async move {
///     socket.join("lobby");
///     socket.on("chat", |socket, data: Payload, ack| async move {
///         socket.to("lobby").emit("chat", data.clone());
///         if let Some(ack) = ack {
///             let _ = ack.send(Payload::json("delivered"));
///         }
///     });
/// });
/// let app_io = io.clone();
/// actix_web::HttpServer::new(move || {
///     let io = app_io.clone();
///     actix_web::App::new().configure(move |cfg| io.configure(cfg))
/// })
/// .bind(("127.0.0.1", 3000))?
/// .run()
/// .await
/// # }
/// ```
#[derive(Clone)]
pub struct SocketIo {
    engine: EngineIo<SioHandler>,
}

/// Builds a [`SocketIo`].
#[derive(Default)]
pub struct SocketIoBuilder {
    config: SioConfig,
}

impl SocketIoBuilder {
    /// Sets all settings.
    #[must_use]
    pub fn config(mut self, config: SioConfig) -> Self {
        self.config = config;
        self
    }

    /// The server (no namespace registered yet: add them with [`SocketIo::ns`]).
    pub fn build(self) -> SocketIo {
        SocketIo::new(self.config)
    }
}

pub(crate) struct IoShared {
    config: SioConfig,
    limits: sio::Limits,
    namespaces: RwLock<HashMap<String, Arc<Namespace>>>,
}

/// The Socket.IO layer as an Engine.IO handler.
pub struct SioHandler {
    shared: Arc<IoShared>,
}

/// Per-connection Socket.IO state.
pub struct ClientState {
    /// Connected namespaces (a client rarely has more than one or two).
    sockets: Mutex<Vec<Socket>>,
    /// A binary packet waiting for attachments, and when it must be complete.
    partial: Mutex<Option<(Partial, tokio::time::Instant)>>,
    /// Whether this connection's attachment watchdog task is running (at most one per connection,
    /// however many binary packets the client sends).
    watchdog: AtomicBool,
    /// The pending connect-timeout timer, and its generation.
    connect_timer: Mutex<Option<AbortHandle>>,
}

impl SioHandler {
    pub(crate) fn config(&self) -> &SioConfig {
        &self.shared.config
    }

    pub(crate) fn remove_socket(&self, conn: &Arc<Conn<SioHandler>>, socket: &Socket) {
        let now_empty = {
            let mut sockets = conn.data().sockets.lock();
            sockets.retain(|s| s.id() != socket.id());
            sockets.is_empty()
        };
        // socket.io-protocol, "Connection to a namespace": a session must connect to a
        // namespace; one left with none gets `connect_timeout` to connect again.
        if now_empty && !conn.is_closed() {
            self.arm_connect_timer(conn);
        }
    }

    fn arm_connect_timer(&self, conn: &Arc<Conn<SioHandler>>) {
        let weak: Weak<Conn<SioHandler>> = Arc::downgrade(conn);
        let timeout = self.shared.config.connect_timeout;
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let task = rt.spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(conn) = weak.upgrade() {
                if conn.data().sockets.lock().is_empty() {
                    tracing::debug!(sid = conn.sid(), "no namespace connect in time");
                    conn.close(DisconnectReason::ConnectTimeout);
                }
            }
        });
        if let Some(old) = conn
            .data()
            .connect_timer
            .lock()
            .replace(task.abort_handle())
        {
            old.abort();
        }
    }

    /// Makes sure a watchdog closes the connection if the pending binary packet's attachments do
    /// not arrive by its deadline. One task per connection at most: it sleeps until the deadline of
    /// whatever packet is pending when it wakes, and ends when none is (a task and a timer per
    /// binary packet would cost more than the packet itself at typing rates).
    fn arm_attachment_watchdog(&self, conn: &Arc<Conn<SioHandler>>) {
        if conn.data().watchdog.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(conn);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            conn.data().watchdog.store(false, Ordering::Release);
            return;
        };
        rt.spawn(async move {
            loop {
                let deadline = {
                    let Some(conn) = weak.upgrade() else { return };
                    let pending = conn.data().partial.lock().as_ref().map(|(_, d)| *d);
                    match pending {
                        Some(d) if d <= tokio::time::Instant::now() => {
                            tracing::debug!(sid = conn.sid(), "binary attachments never arrived");
                            conn.close(DisconnectReason::ParseError);
                            return;
                        }
                        Some(d) => d,
                        None => {
                            conn.data().watchdog.store(false, Ordering::Release);
                            // A packet announced between the check and the store found the flag
                            // still set and relied on this task: look once more.
                            if conn.data().partial.lock().is_none()
                                || conn.data().watchdog.swap(true, Ordering::AcqRel)
                            {
                                return;
                            }
                            continue;
                        }
                    }
                };
                tokio::time::sleep_until(deadline).await;
            }
        });
    }

    fn socket_for(&self, conn: &Arc<Conn<SioHandler>>, ns: &str) -> Option<Socket> {
        conn.data()
            .sockets
            .lock()
            .iter()
            .find(|s| s.ns() == ns)
            .cloned()
    }

    fn connect(
        &self,
        conn: &Arc<Conn<SioHandler>>,
        ns_path: &str,
        auth: Option<serde_json::Value>,
    ) -> Result<(), ProtocolViolation> {
        let Some(ns) = self.shared.namespaces.read().get(ns_path).cloned() else {
            // socket.io-protocol test suite: "should disallow connection to an unknown
            // namespace" → `44/random,{"message":"Invalid namespace"}`.
            let enc =
                Encoded::connect_error(ns_path, &json!({"message": "Invalid namespace"}), true);
            let _ = conn.send_frames(&frames(enc));
            return Ok(());
        };
        if self.socket_for(conn, ns_path).is_some() {
            // Already connected to it: ignored, as the reference server does.
            return Ok(());
        }
        let socket = Socket::new(
            random_id(),
            ns.clone(),
            conn.clone(),
            auth.unwrap_or(json!({})),
        );
        conn.data().sockets.lock().push(socket.clone());
        ns.add_socket(socket.clone());
        if let Some(timer) = conn.data().connect_timer.lock().take() {
            timer.abort();
        }
        let enc = Encoded::connect(ns_path, Some(&json!({"sid": socket.id()})), true);
        if conn.send_frames(&frames(enc)).is_err() {
            return Ok(());
        }
        handler::run((ns.on_connect)(socket));
        Ok(())
    }

    fn dispatch(
        &self,
        conn: &Arc<Conn<SioHandler>>,
        packet: sio::Packet,
    ) -> Result<(), ProtocolViolation> {
        match packet.kind {
            PacketKind::Connect(auth) => self.connect(conn, &packet.ns, auth),
            PacketKind::Disconnect => {
                if let Some(s) = self.socket_for(conn, &packet.ns) {
                    s.close(DisconnectReason::ClientNamespaceDisconnect);
                }
                Ok(())
            }
            PacketKind::Event { name, payload, id } => {
                // Lifecycle names may not be emitted by a client (RESERVED_EVENTS).
                if sio::is_reserved_event(&name) {
                    return Err(ProtocolViolation);
                }
                // Packets for a namespace the client is not connected to are ignored, as the
                // reference server does.
                if let Some(s) = self.socket_for(conn, &packet.ns) {
                    s.dispatch_event(&name, payload, id);
                }
                Ok(())
            }
            PacketKind::Ack { id, payload } => {
                if let Some(s) = self.socket_for(conn, &packet.ns) {
                    s.resolve_ack(id, payload);
                }
                Ok(())
            }
            // Only a server sends CONNECT_ERROR.
            PacketKind::ConnectError(_) => Err(ProtocolViolation),
        }
    }
}

impl EngineHandler for SioHandler {
    type ConnData = ClientState;

    fn new_conn_data(&self) -> ClientState {
        ClientState {
            sockets: Mutex::new(Vec::new()),
            partial: Mutex::new(None),
            watchdog: AtomicBool::new(false),
            connect_timer: Mutex::new(None),
        }
    }

    fn on_open(&self, conn: &Arc<Conn<Self>>) {
        self.arm_connect_timer(conn);
    }

    fn on_message(&self, conn: &Arc<Conn<Self>>, text: &str) -> Result<(), ProtocolViolation> {
        if conn.data().partial.lock().is_some() {
            // socket.io-parser: "got plaintext data when reconstructing a packet".
            return Err(ProtocolViolation);
        }
        match sio::decode(text, &self.shared.limits) {
            Err(e) => {
                tracing::debug!(sid = conn.sid(), error = %e, "invalid socket.io packet");
                Err(ProtocolViolation)
            }
            Ok(Decoded::Complete(p)) => self.dispatch(conn, p),
            Ok(Decoded::NeedsAttachments(partial)) => {
                let deadline = tokio::time::Instant::now() + self.shared.config.attachment_timeout;
                *conn.data().partial.lock() = Some((partial, deadline));
                self.arm_attachment_watchdog(conn);
                Ok(())
            }
        }
    }

    fn on_binary(&self, conn: &Arc<Conn<Self>>, data: Bytes) -> Result<(), ProtocolViolation> {
        let step = {
            let mut slot = conn.data().partial.lock();
            // A binary frame nobody announced.
            let Some((partial, deadline)) = slot.take() else {
                return Err(ProtocolViolation);
            };
            match partial.push(data).map_err(|_| ProtocolViolation)? {
                Step::Pending(p) => {
                    *slot = Some((p, deadline));
                    return Ok(());
                }
                Step::Complete(p) => p,
            }
        };
        self.dispatch(conn, step)
    }

    fn on_close(&self, conn: &Arc<Conn<Self>>, reason: DisconnectReason) {
        if let Some(timer) = conn.data().connect_timer.lock().take() {
            timer.abort();
        }
        conn.data().partial.lock().take();
        let sockets = std::mem::take(&mut *conn.data().sockets.lock());
        for s in sockets {
            s.close(reason);
        }
    }
}

impl SocketIo {
    /// A builder, to set the configuration.
    pub fn builder() -> SocketIoBuilder {
        SocketIoBuilder::default()
    }

    /// A server with these settings.
    pub fn new(config: SioConfig) -> Self {
        let limits = sio::Limits {
            max_attachments: duet_sio_codec::limits::MAX_ATTACHMENTS,
            max_attachment_bytes: config.max_payload,
        };
        let shared = Arc::new(IoShared {
            config: config.clone(),
            limits,
            namespaces: RwLock::default(),
        });
        SocketIo {
            engine: EngineIo::new(config, SioHandler { shared }),
        }
    }

    fn shared(&self) -> &Arc<IoShared> {
        &self.engine.handler().shared
    }

    /// The settings.
    pub fn config(&self) -> &SioConfig {
        self.engine.config()
    }

    /// Registers namespace `path` (`/` is the main one) and the handler called for each socket
    /// that connects to it. Register event handlers with [`Socket::on`] before the handler's
    /// first `.await`, so that no event is missed.
    pub fn ns<F, Fut>(&self, path: impl Into<String>, on_connect: F)
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut path = path.into();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let handler: ConnectHandler = Arc::new(move |s| Box::pin(on_connect(s)));
        let ns = Arc::new(Namespace::new(path.as_str().into(), handler));
        self.shared().namespaces.write().insert(path, ns);
    }

    /// A registered namespace.
    pub fn of(&self, path: &str) -> Option<NamespaceRef> {
        self.shared()
            .namespaces
            .read()
            .get(path)
            .map(|ns| NamespaceRef { ns: ns.clone() })
    }

    fn main_ns(&self) -> Option<Arc<Namespace>> {
        self.shared()
            .namespaces
            .read()
            .get(sio::MAIN_NAMESPACE)
            .cloned()
    }

    /// Members of `room` in the main namespace (chain `.to(..)`, `.except(..)`, `.emit(..)`).
    pub fn to(&self, room: impl Into<String>) -> BroadcastOperator {
        BroadcastOperator::new(self.main_ns()).to(room)
    }

    /// Emits to every socket of the main namespace; returns the number of recipients.
    pub fn emit(&self, event: &str, payload: impl Into<duet_sio_codec::Payload>) -> usize {
        BroadcastOperator::new(self.main_ns()).emit(event, payload)
    }

    /// Number of sockets in `room` of the main namespace.
    pub fn sockets_in(&self, room: &str) -> usize {
        self.of(sio::MAIN_NAMESPACE)
            .map_or(0, |ns| ns.sockets_in(room))
    }

    /// A socket of the main namespace by id.
    pub fn socket(&self, id: &str) -> Option<Socket> {
        self.of(sio::MAIN_NAMESPACE).and_then(|ns| ns.socket(id))
    }

    /// Number of open Engine.IO sessions (connected clients, all namespaces).
    pub fn session_count(&self) -> usize {
        self.engine.session_count()
    }

    /// Disconnects every client (reason [`DisconnectReason::ServerShutdown`]); for graceful
    /// shutdown, before stopping the HTTP server.
    pub fn shutdown(&self) {
        self.engine.close_all(DisconnectReason::ServerShutdown);
    }

    /// Drains: new sessions are refused with 503 at once, then every open session's transport is
    /// closed, spread over `spread`. Clients see their transport close and reconnect (elsewhere,
    /// through a load balancer that honours the 503), unlike a namespace disconnect, after which
    /// `socket.io-client` does not reconnect by itself.
    pub async fn drain(&self, spread: std::time::Duration) {
        self.engine.drain();
        self.engine
            .close_all_over(DisconnectReason::ServerShutdown, spread)
            .await;
    }

    /// Mounts the server at its configured path (`/socket.io` and `/socket.io/`).
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        let path = self.config().path.clone();
        self.engine.configure_at(cfg, &path);
    }
}
