//! Socket.IO v5 packets (socket.io-protocol, sections "Exchange protocol" and "Packet encoding").
//!
//! Format: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]`, the namespace only
//! when it is not `/`, followed (for `BINARY_EVENT` and `BINARY_ACK`) by one binary frame per
//! attachment.

use bytes::Bytes;
use serde_json::Value;
use thiserror::Error;

use crate::limits::{
    DEFAULT_MAX_PAYLOAD, MAX_ACK_ID, MAX_ATTACHMENTS, MAX_EVENT_NAME_LEN, MAX_NAMESPACE_LEN,
};
use crate::Payload;

/// The main namespace, left out of the encoding.
pub const MAIN_NAMESPACE: &str = "/";

/// Event names a client may not emit: they are the names of the socket's own lifecycle events in
/// the reference implementations (socket.io-parser's `RESERVED_EVENTS`), plus `error`, which Duet
/// uses for typed server errors (DESIGN.md, "Wire protocol").
pub const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "error",
    "newListener",
    "removeListener",
];

/// True if a client may not use `name` as an event name (see [`RESERVED_EVENTS`]).
pub fn is_reserved_event(name: &str) -> bool {
    RESERVED_EVENTS.contains(&name)
}

/// Packet type ids (socket.io-protocol, "Exchange protocol").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketType {
    /// 0
    Connect = 0,
    /// 1
    Disconnect = 1,
    /// 2
    Event = 2,
    /// 3
    Ack = 3,
    /// 4
    ConnectError = 4,
    /// 5
    BinaryEvent = 5,
    /// 6
    BinaryAck = 6,
}

impl PacketType {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    fn byte(self) -> u8 {
        b'0' + self as u8
    }
}

/// A decoded Socket.IO packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// The namespace, `/` for the main one.
    pub ns: String,
    /// What the packet says.
    pub kind: PacketKind,
}

/// The content of a packet, by type.
#[derive(Debug, Clone, PartialEq)]
pub enum PacketKind {
    /// `CONNECT`: from a client, the optional auth object; from the server, `{"sid": ...}`.
    Connect(Option<Value>),
    /// `DISCONNECT` from a namespace.
    Disconnect,
    /// `EVENT` / `BINARY_EVENT`: an event name and its arguments, with an ack id if the sender
    /// wants an acknowledgement.
    Event {
        /// The event name (the first element of the JSON array).
        name: String,
        /// The remaining arguments and the attachments.
        payload: Payload,
        /// Ack id requested by the sender.
        id: Option<u64>,
    },
    /// `ACK` / `BINARY_ACK`: the answer to the event with the same id.
    Ack {
        /// The ack id.
        id: u64,
        /// The ack's arguments.
        payload: Payload,
    },
    /// `CONNECT_ERROR`: the server refused the namespace connection.
    ConnectError(Value),
}

/// Why a text is not a valid Socket.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PacketError {
    /// Empty text.
    #[error("empty packet")]
    Empty,
    /// The first character is not a packet type 0–6.
    #[error("unknown packet type")]
    UnknownType,
    /// The `<n>-` attachment count is missing, malformed or above the limit.
    #[error("illegal attachments header")]
    IllegalAttachments,
    /// Namespace too long or not followed by a valid packet.
    #[error("invalid namespace")]
    InvalidNamespace,
    /// Ack id too large, missing where required, or present where not allowed.
    #[error("invalid ack id")]
    InvalidAckId,
    /// The payload is not valid JSON.
    #[error("invalid JSON payload")]
    InvalidJson,
    /// The payload has the wrong shape for the packet type (socket.io-protocol: the payload of an
    /// `EVENT` "MUST be a non-empty array", of an `ACK` an array, of a `CONNECT` an object).
    #[error("invalid payload for this packet type")]
    InvalidPayload,
    /// Event name not a string, or too long.
    #[error("invalid event name")]
    InvalidEventName,
    /// A placeholder refers to an attachment that the header does not announce.
    #[error("placeholder refers to a missing attachment")]
    InvalidPlaceholder,
    /// The attachments add up to more than the limit.
    #[error("attachments exceed {0} bytes")]
    AttachmentsTooLarge(usize),
}

/// Decoder limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum attachments per packet (at most [`MAX_ATTACHMENTS`] is sensible).
    pub max_attachments: usize,
    /// Maximum total size in bytes of one packet's attachments.
    pub max_attachment_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_attachments: MAX_ATTACHMENTS,
            max_attachment_bytes: DEFAULT_MAX_PAYLOAD,
        }
    }
}

/// The result of decoding a packet's text.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// The packet is complete.
    Complete(Packet),
    /// A binary packet waiting for its attachments, which follow as separate binary frames.
    NeedsAttachments(Partial),
}

/// A binary packet whose attachments have not all arrived yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Partial {
    packet: Packet,
    expected: usize,
    received_bytes: usize,
    max_bytes: usize,
}

/// The result of adding an attachment to a [`Partial`].
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// More attachments are expected.
    Pending(Partial),
    /// All attachments arrived.
    Complete(Packet),
}

impl Partial {
    /// Attachments announced by the header.
    pub fn expected(&self) -> usize {
        self.expected
    }

    /// Attachments received so far.
    pub fn received(&self) -> usize {
        self.payload().binaries.len()
    }

    /// The namespace of the packet being assembled.
    pub fn ns(&self) -> &str {
        &self.packet.ns
    }

    fn payload(&self) -> &Payload {
        match &self.packet.kind {
            PacketKind::Event { payload, .. } | PacketKind::Ack { payload, .. } => payload,
            _ => unreachable_payload(),
        }
    }

    /// Adds the next attachment (in order).
    pub fn push(mut self, data: Bytes) -> Result<Step, PacketError> {
        self.received_bytes = self.received_bytes.saturating_add(data.len());
        if self.received_bytes > self.max_bytes {
            return Err(PacketError::AttachmentsTooLarge(self.max_bytes));
        }
        let expected = self.expected;
        let binaries = match &mut self.packet.kind {
            PacketKind::Event { payload, .. } | PacketKind::Ack { payload, .. } => {
                &mut payload.binaries
            }
            // A Partial is only built for events and acks.
            _ => return Err(PacketError::IllegalAttachments),
        };
        binaries.push(data);
        if binaries.len() >= expected {
            Ok(Step::Complete(self.packet))
        } else {
            Ok(Step::Pending(self))
        }
    }
}

fn unreachable_payload() -> &'static Payload {
    static EMPTY: Payload = Payload {
        args: Vec::new(),
        binaries: Vec::new(),
    };
    &EMPTY
}

/// Decodes the text of a Socket.IO packet (the data of an Engine.IO `message` packet).
///
/// Follows the reference parser (socket.io-parser `decodeString`): type digit, attachment count
/// and `-` for binary types, namespace up to `,` when it starts with `/`, ack id digits, then the
/// JSON payload, whose shape is checked against the type.
pub fn decode(text: &str, limits: &Limits) -> Result<Decoded, PacketError> {
    let bytes = text.as_bytes();
    let kind = PacketType::from_byte(*bytes.first().ok_or(PacketError::Empty)?)
        .ok_or(PacketError::UnknownType)?;
    let mut i = 1;

    // `<n>-`: only for the binary types.
    let mut attachments = 0usize;
    if matches!(kind, PacketType::BinaryEvent | PacketType::BinaryAck) {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 3 || bytes.get(i) != Some(&b'-') {
            return Err(PacketError::IllegalAttachments);
        }
        attachments = text[start..i]
            .parse()
            .map_err(|_| PacketError::IllegalAttachments)?;
        if attachments > limits.max_attachments.min(MAX_ATTACHMENTS) {
            return Err(PacketError::IllegalAttachments);
        }
        i += 1;
    }

    // `<namespace>,`: only when it starts with `/` (the main namespace is left out).
    let mut ns = MAIN_NAMESPACE;
    if bytes.get(i) == Some(&b'/') {
        let start = i;
        let end = text[start..].find(',').map_or(text.len(), |p| start + p);
        ns = &text[start..end];
        i = if end < text.len() { end + 1 } else { end };
        if ns.len() > MAX_NAMESPACE_LEN {
            return Err(PacketError::InvalidNamespace);
        }
    }

    // Ack id: digits.
    let mut id = None;
    let start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    if i > start {
        // More than 16 digits cannot be <= MAX_ACK_ID; the check also avoids u64 overflow.
        if i - start > 16 {
            return Err(PacketError::InvalidAckId);
        }
        let n: u64 = text[start..i]
            .parse()
            .map_err(|_| PacketError::InvalidAckId)?;
        if n > MAX_ACK_ID {
            return Err(PacketError::InvalidAckId);
        }
        id = Some(n);
    }

    let rest = &text[i..];
    let data: Option<Value> = if rest.is_empty() {
        None
    } else {
        Some(serde_json::from_str(rest).map_err(|_| PacketError::InvalidJson)?)
    };

    let ns = ns.to_owned();
    let packet_kind = match kind {
        PacketType::Connect => {
            // socket.io-parser isPayloadValid: CONNECT payload is absent or an object.
            if id.is_some() {
                return Err(PacketError::InvalidAckId);
            }
            match data {
                None => PacketKind::Connect(None),
                Some(v @ Value::Object(_)) => PacketKind::Connect(Some(v)),
                Some(_) => return Err(PacketError::InvalidPayload),
            }
        }
        PacketType::Disconnect => {
            if id.is_some() {
                return Err(PacketError::InvalidAckId);
            }
            if data.is_some() {
                return Err(PacketError::InvalidPayload);
            }
            PacketKind::Disconnect
        }
        PacketType::ConnectError => {
            if id.is_some() {
                return Err(PacketError::InvalidAckId);
            }
            match data {
                Some(v @ (Value::Object(_) | Value::String(_))) => PacketKind::ConnectError(v),
                _ => return Err(PacketError::InvalidPayload),
            }
        }
        PacketType::Event | PacketType::BinaryEvent => {
            let Some(Value::Array(mut args)) = data else {
                return Err(PacketError::InvalidPayload);
            };
            if args.is_empty() {
                return Err(PacketError::InvalidPayload);
            }
            let name = match args.remove(0) {
                Value::String(s) if s.len() <= MAX_EVENT_NAME_LEN => s,
                _ => return Err(PacketError::InvalidEventName),
            };
            PacketKind::Event {
                name,
                payload: Payload::args(args),
                id,
            }
        }
        PacketType::Ack | PacketType::BinaryAck => {
            let id = id.ok_or(PacketError::InvalidAckId)?;
            let Some(Value::Array(args)) = data else {
                return Err(PacketError::InvalidPayload);
            };
            PacketKind::Ack {
                id,
                payload: Payload::args(args),
            }
        }
    };
    let packet = Packet {
        ns,
        kind: packet_kind,
    };

    if attachments == 0 {
        return Ok(Decoded::Complete(packet));
    }
    // socket.io-parser reconstructPacket: every placeholder must name an announced attachment.
    let args = match &packet.kind {
        PacketKind::Event { payload, .. } | PacketKind::Ack { payload, .. } => &payload.args,
        _ => return Err(PacketError::IllegalAttachments),
    };
    if !args.iter().all(|v| placeholders_valid(v, attachments)) {
        return Err(PacketError::InvalidPlaceholder);
    }
    let mut packet = packet;
    if let PacketKind::Event { payload, .. } | PacketKind::Ack { payload, .. } = &mut packet.kind {
        payload.binaries.reserve_exact(attachments);
    }
    Ok(Decoded::NeedsAttachments(Partial {
        packet,
        expected: attachments,
        received_bytes: 0,
        max_bytes: limits.max_attachment_bytes,
    }))
}

/// True if every `{"_placeholder": true, ...}` object in `v` has a `num` below `count`.
/// Depth is bounded by serde_json's recursion limit (128) on the way in.
fn placeholders_valid(v: &Value, count: usize) -> bool {
    match v {
        Value::Object(map) => {
            if map.get("_placeholder") == Some(&Value::Bool(true)) {
                return map
                    .get("num")
                    .and_then(Value::as_u64)
                    .is_some_and(|n| n < count as u64);
            }
            map.values().all(|v| placeholders_valid(v, count))
        }
        Value::Array(items) => items.iter().all(|v| placeholders_valid(v, count)),
        _ => true,
    }
}

/// An encoded packet: the text frame and the binary frames that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The text, with the Engine.IO `message` prefix `4` when asked for.
    pub text: String,
    /// One binary frame per attachment, in order.
    pub attachments: Vec<Bytes>,
}

/// Starts a packet header: prefix, type, attachment count, namespace.
fn header(out: &mut Vec<u8>, engine_prefix: bool, kind: PacketType, attachments: usize, ns: &str) {
    if engine_prefix {
        out.push(b'4');
    }
    out.push(kind.byte());
    if matches!(kind, PacketType::BinaryEvent | PacketType::BinaryAck) {
        out.extend_from_slice(attachments.to_string().as_bytes());
        out.push(b'-');
    }
    if ns != MAIN_NAMESPACE && !ns.is_empty() {
        out.extend_from_slice(ns.as_bytes());
        out.push(b',');
    }
}

fn push_json(out: &mut Vec<u8>, v: &Value) {
    // Writing a `Value` to a Vec cannot fail: no IO error, and Value keys are strings.
    let _ = serde_json::to_writer(&mut *out, v);
}

fn finish(out: Vec<u8>, attachments: Vec<Bytes>) -> Encoded {
    // Everything written is UTF-8 (ASCII header, `&str` namespace, serde_json output).
    let text = String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Encoded { text, attachments }
}

impl Encoded {
    /// `EVENT` or `BINARY_EVENT` (chosen by whether the payload has attachments).
    pub fn event(
        ns: &str,
        name: &str,
        payload: &Payload,
        id: Option<u64>,
        engine_prefix: bool,
    ) -> Encoded {
        let kind = if payload.has_binary() {
            PacketType::BinaryEvent
        } else {
            PacketType::Event
        };
        let mut out = Vec::with_capacity(32 + name.len());
        header(&mut out, engine_prefix, kind, payload.binaries.len(), ns);
        if let Some(id) = id {
            out.extend_from_slice(id.to_string().as_bytes());
        }
        out.push(b'[');
        let _ = serde_json::to_writer(&mut out, name);
        for arg in &payload.args {
            out.push(b',');
            push_json(&mut out, arg);
        }
        out.push(b']');
        finish(out, payload.binaries.clone())
    }

    /// `ACK` or `BINARY_ACK`.
    pub fn ack(ns: &str, id: u64, payload: &Payload, engine_prefix: bool) -> Encoded {
        let kind = if payload.has_binary() {
            PacketType::BinaryAck
        } else {
            PacketType::Ack
        };
        let mut out = Vec::with_capacity(32);
        header(&mut out, engine_prefix, kind, payload.binaries.len(), ns);
        out.extend_from_slice(id.to_string().as_bytes());
        out.push(b'[');
        for (i, arg) in payload.args.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_json(&mut out, arg);
        }
        out.push(b']');
        finish(out, payload.binaries.clone())
    }

    /// `CONNECT`, with an optional payload (`{"sid": ...}` from the server).
    pub fn connect(ns: &str, data: Option<&Value>, engine_prefix: bool) -> Encoded {
        let mut out = Vec::with_capacity(48);
        header(&mut out, engine_prefix, PacketType::Connect, 0, ns);
        if let Some(v) = data {
            push_json(&mut out, v);
        }
        finish(out, Vec::new())
    }

    /// `CONNECT_ERROR` with its payload (`{"message": ...}`).
    pub fn connect_error(ns: &str, data: &Value, engine_prefix: bool) -> Encoded {
        let mut out = Vec::with_capacity(48);
        header(&mut out, engine_prefix, PacketType::ConnectError, 0, ns);
        push_json(&mut out, data);
        finish(out, Vec::new())
    }

    /// `DISCONNECT`.
    pub fn disconnect(ns: &str, engine_prefix: bool) -> Encoded {
        let mut out = Vec::with_capacity(8);
        header(&mut out, engine_prefix, PacketType::Disconnect, 0, ns);
        finish(out, Vec::new())
    }

    /// Any packet.
    pub fn packet(packet: &Packet, engine_prefix: bool) -> Encoded {
        let ns = packet.ns.as_str();
        match &packet.kind {
            PacketKind::Connect(data) => Encoded::connect(ns, data.as_ref(), engine_prefix),
            PacketKind::Disconnect => Encoded::disconnect(ns, engine_prefix),
            PacketKind::Event { name, payload, id } => {
                Encoded::event(ns, name, payload, *id, engine_prefix)
            }
            PacketKind::Ack { id, payload } => Encoded::ack(ns, *id, payload, engine_prefix),
            PacketKind::ConnectError(data) => Encoded::connect_error(ns, data, engine_prefix),
        }
    }
}

/// Decodes a packet and its attachments in one call (for tests and tools).
pub fn decode_with_attachments(
    text: &str,
    attachments: &[Bytes],
    limits: &Limits,
) -> Result<Packet, PacketError> {
    match decode(text, limits)? {
        Decoded::Complete(p) if attachments.is_empty() => Ok(p),
        Decoded::Complete(_) => Err(PacketError::IllegalAttachments),
        Decoded::NeedsAttachments(mut partial) => {
            let mut iter = attachments.iter();
            loop {
                let next = iter.next().ok_or(PacketError::IllegalAttachments)?;
                match partial.push(next.clone())? {
                    Step::Pending(p) => partial = p,
                    Step::Complete(p) => {
                        return if iter.next().is_none() {
                            Ok(p)
                        } else {
                            Err(PacketError::IllegalAttachments)
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dec(s: &str) -> Result<Packet, PacketError> {
        decode_with_attachments(s, &[], &Limits::default())
    }

    #[test]
    fn spec_examples_decode() {
        // socket.io-protocol, "Packet encoding / Examples".
        assert_eq!(
            dec("0").unwrap(),
            Packet {
                ns: "/".into(),
                kind: PacketKind::Connect(None)
            }
        );
        assert_eq!(
            dec(r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#).unwrap(),
            Packet {
                ns: "/admin".into(),
                kind: PacketKind::Connect(Some(json!({"sid":"oSO0OpakMV_3jnilAAAA"})))
            }
        );
        assert_eq!(
            dec(r#"4{"message":"Not authorized"}"#).unwrap().kind,
            PacketKind::ConnectError(json!({"message":"Not authorized"}))
        );
        assert_eq!(
            dec(r#"2["foo"]"#).unwrap().kind,
            PacketKind::Event {
                name: "foo".into(),
                payload: Payload::empty(),
                id: None
            }
        );
        assert_eq!(dec(r#"2/admin,["bar"]"#).unwrap().ns, "/admin");
        assert_eq!(
            dec(r#"212["foo"]"#).unwrap().kind,
            PacketKind::Event {
                name: "foo".into(),
                payload: Payload::empty(),
                id: Some(12)
            }
        );
        assert_eq!(
            dec(r#"3/admin,13["bar"]"#).unwrap(),
            Packet {
                ns: "/admin".into(),
                kind: PacketKind::Ack {
                    id: 13,
                    payload: Payload::json("bar")
                }
            }
        );
        assert_eq!(dec("1").unwrap().kind, PacketKind::Disconnect);
        assert_eq!(dec("1/admin,").unwrap().ns, "/admin");
        // No trailing comma (socket.io-protocol test suite sends `40/custom`).
        assert_eq!(dec("0/custom").unwrap().ns, "/custom");

        let bin = Bytes::from_static(&[1, 2, 3, 4]);
        let p = decode_with_attachments(
            r#"51-["baz",{"_placeholder":true,"num":0}]"#,
            std::slice::from_ref(&bin),
            &Limits::default(),
        )
        .unwrap();
        let PacketKind::Event { name, payload, .. } = p.kind else {
            panic!()
        };
        assert_eq!(name, "baz");
        assert_eq!(payload.binary(&payload.args[0]), Some(&bin));
        let p = decode_with_attachments(
            r#"61-15["bar",{"_placeholder":true,"num":0}]"#,
            &[bin],
            &Limits::default(),
        )
        .unwrap();
        assert!(matches!(p.kind, PacketKind::Ack { id: 15, .. }));
    }

    #[test]
    fn spec_examples_encode() {
        assert_eq!(Encoded::connect("/", None, false).text, "0");
        assert_eq!(
            Encoded::connect("/admin", Some(&json!({"sid":"x"})), false).text,
            r#"0/admin,{"sid":"x"}"#
        );
        assert_eq!(
            Encoded::event("/", "foo", &Payload::empty(), Some(12), false).text,
            r#"212["foo"]"#
        );
        assert_eq!(
            Encoded::ack("/admin", 13, &Payload::json("bar"), false).text,
            r#"3/admin,13["bar"]"#
        );
        assert_eq!(Encoded::disconnect("/admin", true).text, "41/admin,");
        let p = Payload::args(vec![json!("baz")])
            .with_binary(vec![1u8, 2])
            .with_binary(vec![3u8, 4]);
        let e = Encoded::event(
            "/admin",
            "baz",
            &Payload::args(p.args[1..].to_vec()),
            None,
            false,
        );
        assert_eq!(
            e.text,
            r#"2/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );
        let e = Encoded::event(
            "/admin",
            "baz",
            &Payload::new(p.args[1..].to_vec(), p.binaries),
            None,
            false,
        );
        assert_eq!(
            e.text,
            r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );
        assert_eq!(e.attachments.len(), 2);
        assert_eq!(
            Encoded::connect_error("/random", &json!({"message":"Invalid namespace"}), true).text,
            r#"44/random,{"message":"Invalid namespace"}"#
        );
    }

    #[test]
    fn rejects_malformed() {
        // The issue's list: `4abc`, `42{}`, `42abc[...]`, `442["x"`, `0[]` (engine prefix removed).
        assert_eq!(dec("abc"), Err(PacketError::UnknownType));
        assert_eq!(dec("2{}"), Err(PacketError::InvalidPayload));
        assert_eq!(
            dec(r#"2abc["message-with-ack",1]"#),
            Err(PacketError::InvalidJson)
        );
        assert_eq!(dec(r#"42["x""#), Err(PacketError::InvalidJson));
        assert_eq!(dec("0[]"), Err(PacketError::InvalidPayload));
        assert_eq!(dec(""), Err(PacketError::Empty));
        assert_eq!(dec("2[]"), Err(PacketError::InvalidPayload));
        assert_eq!(dec("2[1]"), Err(PacketError::InvalidEventName));
        assert_eq!(dec(r#"3["x"]"#), Err(PacketError::InvalidAckId));
        assert_eq!(
            dec(r#"299999999999999999["x"]"#),
            Err(PacketError::InvalidAckId)
        );
        assert_eq!(
            dec(r#"29007199254740992["x"]"#),
            Err(PacketError::InvalidAckId)
        );
        assert!(dec(r#"29007199254740991["x"]"#).is_ok());
        assert_eq!(dec(r#"5["x"]"#), Err(PacketError::IllegalAttachments));
        assert_eq!(dec(r#"511-["x"]"#), Err(PacketError::IllegalAttachments));
        assert_eq!(dec(r#"5a-["x"]"#), Err(PacketError::IllegalAttachments));
        assert_eq!(
            dec(r#"51-["x",{"_placeholder":true,"num":1}]"#),
            Err(PacketError::InvalidPlaceholder)
        );
        assert_eq!(dec("1{}"), Err(PacketError::InvalidPayload));
        let long_ns = format!("2/{}", "a".repeat(MAX_NAMESPACE_LEN));
        assert_eq!(dec(&long_ns), Err(PacketError::InvalidNamespace));
        // Too many attachment frames, too few, too large.
        let one = Bytes::from_static(b"x");
        let header = r#"51-["x",{"_placeholder":true,"num":0}]"#;
        assert!(
            decode_with_attachments(header, &[one.clone(), one.clone()], &Limits::default())
                .is_err()
        );
        assert!(decode_with_attachments(header, &[], &Limits::default()).is_err());
        let small = Limits {
            max_attachments: 10,
            max_attachment_bytes: 0,
        };
        assert_eq!(
            decode_with_attachments(header, &[one], &small),
            Err(PacketError::AttachmentsTooLarge(0))
        );
    }

    #[test]
    fn reserved_names() {
        for n in ["connect", "disconnect", "error"] {
            assert!(is_reserved_event(n));
        }
        assert!(!is_reserved_event("message"));
    }
}
