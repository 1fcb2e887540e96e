//! Server settings.

use std::time::Duration;

use duet_sio_codec::limits::DEFAULT_MAX_PAYLOAD;

/// Default `pingInterval`: the reference server's 25 s (engine.io-protocol, "Heartbeat").
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(25);
/// Default `pingTimeout`: the reference server's 20 s.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Default time a client has to connect to a namespace after the Engine.IO handshake (the
/// reference server's `connectTimeout`, 45 s). socket.io-protocol, "Connection to a namespace".
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(45);
/// Default wait for a client's acknowledgement of a server event.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a WebSocket may take between the upgrade request and the `upgrade` packet
/// (the reference server's `upgradeTimeout`, 10 s).
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time between a binary packet's header and its last attachment. The reference server
/// waits forever; a bounded wait keeps a half-sent packet from pinning memory.
pub const DEFAULT_ATTACHMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of frames that may wait in one connection's outbound queue.
///
/// A long-polling client collects its queue between two requests and a WebSocket client drains
/// it as fast as its network allows; one that falls this far behind is disconnected with
/// [`crate::DisconnectReason::SlowClient`] rather than being silently skipped. Broadcast frames
/// are shared (reference-counted), so a full queue costs little more than its pointers.
pub const DEFAULT_OUTBOUND_QUEUE: usize = 1024;
/// Default mount path (the Socket.IO client's default `path`).
pub const DEFAULT_PATH: &str = "/socket.io";

/// Settings of a [`crate::SocketIo`] server. Build with struct update syntax:
///
/// ```
/// use std::time::Duration;
/// use duet_socketio::SioConfig;
/// let cfg = SioConfig { ping_interval: Duration::from_millis(300), ..SioConfig::default() };
/// assert_eq!(cfg.max_payload, 1_000_000);
/// ```
#[derive(Debug, Clone)]
pub struct SioConfig {
    /// How often the server pings each client (`pingInterval` in the handshake).
    pub ping_interval: Duration,
    /// How long a client has to answer a ping (`pingTimeout`).
    pub ping_timeout: Duration,
    /// Largest accepted polling body or WebSocket frame, in bytes (`maxPayload`); also bounds
    /// the total size of one packet's binary attachments.
    pub max_payload: usize,
    /// Time allowed between the Engine.IO handshake and the first namespace `CONNECT` (and
    /// again after a client has left its last namespace).
    pub connect_timeout: Duration,
    /// Default wait for client acks, used when `emit_with_ack` is given `None`.
    pub ack_timeout: Duration,
    /// Frames one connection may have waiting before it is disconnected as too slow.
    pub outbound_queue: usize,
    /// Time allowed to complete a polling → WebSocket upgrade.
    pub upgrade_timeout: Duration,
    /// Time allowed for all attachments of a binary packet to arrive.
    pub attachment_timeout: Duration,
    /// Origins allowed to open a session (exact match against the `Origin` header, e.g.
    /// `https://duet.example`). `None` allows every origin. Requests without an `Origin`
    /// header (non-browser clients) are allowed either way.
    pub allowed_origins: Option<Vec<String>>,
    /// Without an allow-list: accept a browser's `Origin` only when it names the host the request
    /// was made to (`X-Forwarded-Host` set by a proxy in front, else `Host`) — a page of another
    /// site cannot open a session. `false` accepts every origin.
    pub same_host_origins: bool,
    /// Mount path, `/socket.io` by default (a trailing slash is accepted too).
    pub path: String,
    /// Keep a copy of the handshake request's headers for
    /// [`Handshake::header`](crate::Handshake::header). A server whose handlers never read them
    /// turns this off and saves the copy on every connection for its lifetime (a few hundred
    /// bytes to over a kilobyte with a browser's headers); the origin checks read the request
    /// itself either way.
    pub keep_headers: bool,
}

impl Default for SioConfig {
    fn default() -> Self {
        SioConfig {
            ping_interval: DEFAULT_PING_INTERVAL,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            max_payload: DEFAULT_MAX_PAYLOAD,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            outbound_queue: DEFAULT_OUTBOUND_QUEUE,
            upgrade_timeout: DEFAULT_UPGRADE_TIMEOUT,
            attachment_timeout: DEFAULT_ATTACHMENT_TIMEOUT,
            allowed_origins: None,
            same_host_origins: false,
            path: DEFAULT_PATH.to_owned(),
            keep_headers: true,
        }
    }
}

impl SioConfig {
    /// The settings of the protocol documents' test suites (engine.io-protocol and
    /// socket.io-protocol, "Test suite"): pingInterval 300 ms, pingTimeout 200 ms, maxPayload
    /// 1,000,000, connectTimeout 1,000 ms.
    pub fn conformance() -> Self {
        SioConfig {
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            max_payload: 1_000_000,
            connect_timeout: Duration::from_millis(1000),
            ..SioConfig::default()
        }
    }
}
