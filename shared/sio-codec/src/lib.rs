//! Sans-IO codec for the Socket.IO wire protocol.
//!
//! Two layers, as in the specification documents:
//!
//! * [`engine`]: Engine.IO v4 packets (`socketio/engine.io-protocol`, section "Protocol") and
//!   [`polling`]: the HTTP long-polling payload (section "Packet encoding / HTTP long-polling":
//!   packets joined by the record separator `\x1e`, binary packets as `b` + base64).
//! * [`sio`]: Socket.IO v5 packets (`socketio/socket.io-protocol`, section "Packet encoding"),
//!   carried inside Engine.IO `message` packets, with namespaces, ack ids and binary attachments.
//!
//! Nothing here does IO or knows about time: bytes in, values out, values in, bytes out. Every
//! decoder returns an error instead of panicking on any input (each has a `cargo fuzz` target in
//! the repository's `fuzz/` folder), and every limit is a named constant in [`limits`].
//!
//! ```
//! use duet_sio_codec::{engine, sio, Payload};
//!
//! // An Engine.IO frame as read from a WebSocket text frame.
//! let frame = r#"42/admin,7["hello",{"n":1}]"#;
//! let engine::Packet::Message(text) = engine::decode_text(frame).unwrap() else { panic!() };
//! let sio::Decoded::Complete(packet) = sio::decode(text, &sio::Limits::default()).unwrap() else {
//!     panic!()
//! };
//! assert_eq!(packet.ns, "/admin");
//! let sio::PacketKind::Event { name, payload, id } = packet.kind else { panic!() };
//! assert_eq!((name.as_str(), id), ("hello", Some(7)));
//! assert_eq!(payload.args[0]["n"], 1);
//!
//! // Encoding an ack with the Engine.IO `message` prefix, ready for the wire.
//! let out = sio::Encoded::ack("/admin", 7, &Payload::json("ok"), true);
//! assert_eq!(out.text, r#"43/admin,7["ok"]"#);
//! ```

pub mod engine;
pub mod limits;
pub mod polling;
pub mod sio;

mod payload;

pub use payload::Payload;
