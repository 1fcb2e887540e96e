//! Error and reason types.

use std::fmt;

use thiserror::Error;

/// Why a message could not be queued for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SendError {
    /// The client's outbound queue is full: it is being disconnected as too slow.
    #[error("outbound queue full: client disconnected as too slow")]
    QueueFull,
    /// The connection or the socket is already closed.
    #[error("socket closed")]
    Closed,
}

/// Why an acknowledgement did not come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AckError {
    /// The client did not answer in time.
    #[error("ack timed out")]
    Timeout,
    /// The socket disconnected before answering.
    #[error("socket disconnected before the ack")]
    Disconnected,
    /// The event could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Why a socket or connection ended. `Display` gives the reference server's reason strings
/// where one exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed the transport (WebSocket close, TCP reset, Engine.IO `close` packet).
    TransportClose,
    /// The transport failed (read error, oversize frame, cancelled long-poll).
    TransportError,
    /// The client did not answer a ping within `pingTimeout`.
    PingTimeout,
    /// The client left the namespace (`DISCONNECT` packet).
    ClientNamespaceDisconnect,
    /// The server called [`crate::Socket::disconnect`].
    ServerNamespaceDisconnect,
    /// The client sent something that is not valid Engine.IO / Socket.IO.
    ParseError,
    /// The client's outbound queue overflowed: it could not keep up.
    SlowClient,
    /// The client never connected to a namespace within `connectTimeout`.
    ConnectTimeout,
    /// The server is shutting down.
    ServerShutdown,
}

impl DisconnectReason {
    /// The reason as a short string (`"ping timeout"`, `"transport close"`...).
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::SlowClient => "slow client: outbound queue full",
            DisconnectReason::ConnectTimeout => "connect timeout",
            DisconnectReason::ServerShutdown => "server shutting down",
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
