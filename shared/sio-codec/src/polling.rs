//! The HTTP long-polling payload (engine.io-protocol, "Packet encoding / HTTP long-polling").
//!
//! Packets are joined with the record separator `\x1e`; binary packets are written as `b`
//! followed by the base64 of their data ("Binary payloads MUST be base64-encoded and prefixed
//! with a `b` character"). The v4 protocol always uses base64 for binary when polling
//! ("From v3 to v4").

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::Bytes;

use crate::engine::{decode_text, EngineError, Packet};

/// The record separator between packets of a payload.
pub const SEPARATOR: char = '\x1e';

/// Standard alphabet; padding accepted with or without, as browsers' `atob` does.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Checks a polling body against `max_len` and UTF-8, then iterates over its packets.
///
/// Each item is one decoded packet or the reason it is invalid; a server closes the session on
/// the first error (engine.io-protocol test suite: "closes the session upon invalid packet
/// format").
pub fn decode_payload(body: &[u8], max_len: usize) -> Result<PayloadIter<'_>, EngineError> {
    if body.len() > max_len {
        return Err(EngineError::TooLarge {
            len: body.len(),
            max: max_len,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| EngineError::InvalidUtf8)?;
    Ok(PayloadIter { rest: Some(text) })
}

/// Iterator over the packets of a polling payload; see [`decode_payload`].
#[derive(Debug, Clone)]
pub struct PayloadIter<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for PayloadIter<'a> {
    type Item = Result<Packet<'a>, EngineError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest?;
        let (part, tail) = match rest.split_once(SEPARATOR) {
            Some((part, tail)) => (part, Some(tail)),
            None => (rest, None),
        };
        self.rest = tail;
        Some(decode_part(part))
    }
}

fn decode_part(part: &str) -> Result<Packet<'_>, EngineError> {
    match part.strip_prefix('b') {
        Some(b64) => BASE64
            .decode(b64)
            .map(|data| Packet::Binary(Bytes::from(data)))
            .map_err(|_| EngineError::InvalidBase64),
        None => decode_text(part),
    }
}

/// Appends `b` + base64(`data`) to `out`.
pub fn push_base64(out: &mut String, data: &[u8]) {
    out.push('b');
    BASE64.encode_string(data, out);
}

/// Builds a polling payload packet by packet.
#[derive(Debug, Default, Clone)]
pub struct PayloadEncoder {
    buf: String,
    count: usize,
}

impl PayloadEncoder {
    /// An empty payload.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty payload with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        PayloadEncoder {
            buf: String::with_capacity(bytes),
            count: 0,
        }
    }

    fn separate(&mut self) {
        if self.count > 0 {
            self.buf.push(SEPARATOR);
        }
        self.count += 1;
    }

    /// Appends an already encoded text packet (`<type>[<data>]`).
    pub fn push_encoded_text(&mut self, packet: &str) {
        self.separate();
        self.buf.push_str(packet);
    }

    /// Appends a binary message packet (`b<base64>`).
    pub fn push_binary(&mut self, data: &[u8]) {
        self.separate();
        push_base64(&mut self.buf, data);
    }

    /// Appends any packet.
    pub fn push(&mut self, packet: &Packet<'_>) {
        self.separate();
        packet.encode_into(&mut self.buf);
    }

    /// Number of packets so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True before the first packet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded payload.
    pub fn finish(self) -> String {
        self.buf
    }
}

/// Encodes a whole payload.
pub fn encode_payload(packets: &[Packet<'_>]) -> String {
    let mut enc = PayloadEncoder::new();
    for p in packets {
        enc.push(p);
    }
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        // engine.io-protocol, "Packet encoding / HTTP long-polling".
        let p: Vec<_> = decode_payload(b"4hello\x1e2\x1e4world", 100)
            .unwrap()
            .collect();
        assert_eq!(
            p,
            vec![
                Ok(Packet::Message("hello")),
                Ok(Packet::Ping("")),
                Ok(Packet::Message("world"))
            ]
        );
        let p: Vec<_> = decode_payload(b"4hello\x1ebAQIDBA==", 100)
            .unwrap()
            .collect();
        assert_eq!(
            p,
            vec![
                Ok(Packet::Message("hello")),
                Ok(Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])))
            ]
        );
        assert_eq!(
            encode_payload(&[
                Packet::Message("hello"),
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4]))
            ]),
            "4hello\x1ebAQIDBA=="
        );
    }

    #[test]
    fn rejects_bad_bodies() {
        assert_eq!(
            decode_payload(b"4abc", 3).unwrap_err(),
            EngineError::TooLarge { len: 4, max: 3 }
        );
        assert_eq!(
            decode_payload(&[0x34, 0xff], 10).unwrap_err(),
            EngineError::InvalidUtf8
        );
        let p: Vec<_> = decode_payload(b"abc", 10).unwrap().collect();
        assert_eq!(p, vec![Err(EngineError::UnknownType('a'))]);
        let p: Vec<_> = decode_payload(b"4a\x1e", 10).unwrap().collect();
        assert_eq!(p, vec![Ok(Packet::Message("a")), Err(EngineError::Empty)]);
        let p: Vec<_> = decode_payload(b"b!!", 10).unwrap().collect();
        assert_eq!(p, vec![Err(EngineError::InvalidBase64)]);
    }
}
