//! Engine.IO v4 packets (engine.io-protocol, section "Protocol").
//!
//! A packet is a type digit followed by optional data. Over WebSocket each packet is one frame:
//! text frames carry `<type>[<data>]`, binary frames carry the raw bytes of a `message` packet
//! (section "Packet encoding / WebSocket": "Binary payloads are sent as is").

use bytes::Bytes;
use thiserror::Error;

/// An Engine.IO packet, borrowing its text from the frame it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0` + handshake JSON. Only ever sent by the server.
    Open(&'a str),
    /// `1`: the transport is closing.
    Close,
    /// `2` (+ `probe` during an upgrade).
    Ping(&'a str),
    /// `3` (+ `probe` during an upgrade).
    Pong(&'a str),
    /// `4` + text: a message (carries one Socket.IO packet in Socket.IO).
    Message(&'a str),
    /// A message with binary data: a WebSocket binary frame, or `b<base64>` when polling.
    Binary(Bytes),
    /// `5`: completes a transport upgrade.
    Upgrade,
    /// `6`: no-op, used to end a pending long-polling request during an upgrade.
    Noop,
}

/// Why a frame is not a valid Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EngineError {
    /// An empty frame or an empty packet inside a polling payload.
    #[error("empty packet")]
    Empty,
    /// The first character is not a packet type digit 0–6.
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    /// A polling body that is not UTF-8 text.
    #[error("payload is not valid UTF-8")]
    InvalidUtf8,
    /// A `b`-prefixed polling packet whose data is not base64.
    #[error("invalid base64 in binary packet")]
    InvalidBase64,
    /// A polling body larger than the allowed maximum.
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Size received.
        len: usize,
        /// Limit in force.
        max: usize,
    },
}

/// Decodes one text frame (WebSocket text frame, or one packet of a polling payload).
///
/// Packets that carry no data (`close`, `upgrade`, `noop`) ignore anything after the type digit,
/// as the reference parser does.
pub fn decode_text(frame: &str) -> Result<Packet<'_>, EngineError> {
    let mut chars = frame.chars();
    let kind = chars.next().ok_or(EngineError::Empty)?;
    let data = chars.as_str();
    Ok(match kind {
        '0' => Packet::Open(data),
        '1' => Packet::Close,
        '2' => Packet::Ping(data),
        '3' => Packet::Pong(data),
        '4' => Packet::Message(data),
        '5' => Packet::Upgrade,
        '6' => Packet::Noop,
        other => return Err(EngineError::UnknownType(other)),
    })
}

/// Decodes one WebSocket binary frame: always a `message` packet with binary data.
pub fn decode_binary(frame: Bytes) -> Packet<'static> {
    Packet::Binary(frame)
}

impl Packet<'_> {
    /// The type digit of this packet (`4` for binary messages).
    pub fn type_char(&self) -> char {
        match self {
            Packet::Open(_) => '0',
            Packet::Close => '1',
            Packet::Ping(_) => '2',
            Packet::Pong(_) => '3',
            Packet::Message(_) | Packet::Binary(_) => '4',
            Packet::Upgrade => '5',
            Packet::Noop => '6',
        }
    }

    /// Appends the text encoding of this packet to `out`.
    ///
    /// Binary packets have no text form over WebSocket; they are appended as `b<base64>`, the
    /// polling form (see [`crate::polling`]).
    pub fn encode_into(&self, out: &mut String) {
        match self {
            Packet::Binary(data) => crate::polling::push_base64(out, data),
            Packet::Open(d) | Packet::Ping(d) | Packet::Pong(d) | Packet::Message(d) => {
                out.push(self.type_char());
                out.push_str(d);
            }
            Packet::Close | Packet::Upgrade | Packet::Noop => out.push(self.type_char()),
        }
    }

    /// The text encoding of this packet (see [`Packet::encode_into`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.encode_into(&mut out);
        out
    }
}
