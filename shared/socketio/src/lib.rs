//! A Socket.IO server on actix-web: Engine.IO v4 (HTTP long-polling, WebSocket, upgrade,
//! heartbeat) and Socket.IO v5 (namespaces, events, acks both ways, binary
//! attachments, rooms, broadcast), so the official `socket.io-client` works unchanged.
//!
//! Wire formats come from [`duet_sio_codec`]; this crate is the transport and the API.
//!
//! ```no_run
//! use std::time::Duration;
//! use duet_socketio::{Payload, SioConfig, SocketIo};
//! use serde_json::json;
//!
//! # fn demo() {
//! let io = SocketIo::builder().config(SioConfig::default()).build();
//! let io2 = io.clone();
//! io.ns("/", move |socket| {
//!     let io = io2.clone();
//!     async move {
//!         let auth = socket.handshake().auth.clone();
//!         socket.on("join", |socket, data: Payload, ack| async move {
//!             let room: String = data.first().unwrap_or_default();
//!             socket.join(room.clone());
//!             socket.to(room).emit("user_joined", json!({"id": socket.id()}));
//!             if let Some(ack) = ack { let _ = ack.send(Payload::json("ok")); }
//!         });
//!         socket.on_disconnect(|socket, reason| async move {
//!             tracing::info!(id = socket.id(), %reason, "left");
//!         });
//!         let reply = socket.emit_with_ack("hello", json!(auth), Duration::from_secs(5)).await;
//!         let _ = (reply, io.sockets_in("room"));
//!     }
//! });
//! # }
//! ```
//!
//! Limits: see [`SioConfig`] and [`duet_sio_codec::limits`]. Every client gets a bounded
//! outbound queue ([`SioConfig::outbound_queue`]); a client that falls behind is disconnected
//! with [`DisconnectReason::SlowClient`], never silently skipped.

pub mod engine;
pub mod takeover;

mod config;
mod error;
mod handler;
mod io;
mod ns;
mod socket;

pub use config::*;
pub use duet_sio_codec::Payload;
pub use error::{AckError, DisconnectReason, SendError};
pub use io::{ClientState, SioHandler, SocketIo, SocketIoBuilder};
pub use ns::{BroadcastOperator, NamespaceRef};
pub use socket::{AckSender, Handshake, Socket};
