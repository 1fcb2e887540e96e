//! Limits enforced by the decoders. Each one bounds the memory or work a single peer can cause.

/// Default maximum size in bytes of one HTTP long-polling body or one WebSocket frame.
///
/// The Engine.IO handshake advertises it as `maxPayload` (engine.io-protocol, "Handshake"); the
/// reference server and the protocol test suites use 1,000,000. Duet's services take theirs from
/// `MAX_CONTENT_LENGTH`, with this as the default.
pub const DEFAULT_MAX_PAYLOAD: usize = 1_000_000;

/// Maximum number of binary attachments one Socket.IO packet may announce (`<n>-` in the header).
///
/// Attachments arrive as separate frames after the header and are buffered until the packet is
/// complete; a peer announcing thousands of them could make the server hold every frame. Duet's
/// own events carry at most one binary (a Yjs update), so 10 is generous.
pub const MAX_ATTACHMENTS: usize = 10;

/// Largest acknowledgement id accepted: `Number.MAX_SAFE_INTEGER` (2^53 - 1).
///
/// The JavaScript client counts ids up from 0 in a JavaScript number; anything larger cannot have
/// come from it and could not be represented exactly on the way back.
pub const MAX_ACK_ID: u64 = (1 << 53) - 1;

/// Maximum length in bytes of a namespace name (`/admin`).
///
/// The protocol sets no limit; namespaces are looked up in a map, and an unknown one is answered
/// with a `CONNECT_ERROR` that echoes the name, so a cap keeps that echo small.
pub const MAX_NAMESPACE_LEN: usize = 256;

/// Maximum length in bytes of an event name.
///
/// Event names are map keys on the server; no sane client sends long ones.
pub const MAX_EVENT_NAME_LEN: usize = 256;
