//! What hubs say to each other: on an interview's bus channel (`duet:interview:<session_id>`), and
//! in a hub's inbox (`duet:hub-inbox:<hub_id>`, [`inbox`]), where other hubs send it what concerns
//! many interviews at once.
//!
//! Binary, small, encoded once per message: `[version][kind][origin len][origin][body]`. Every message
//! names its origin hub so a hub ignores its own (Redis delivers a publisher's messages back to it).
//!
//! | kind | body | meaning |
//! |---|---|---|
//! | `Update` | seq u64, author flag + uuid, Yjs update | an edit made on the origin hub; `seq` is the origin's write id in that interview |
//! | `Commits` (inbox) | `[uuid][seq u64]`… | for each interview listed, the origin committed all its edits up to `seq` |
//! | `Awareness` | y-protocols awareness message | relayed as is to local Yjs clients |
//! | `SyncStep1` | want_reply u8, state vector | "send me what I lack" (resync after a missed message) |
//! | `SyncReply` | target len, target, Yjs update | the diff for `target`'s state vector |
//! | `Presence` | JSON participants | the origin's full list of local participants |
//! | `Language` | JSON `{language, user_id}` | someone switched the language |
//! | `Run` | JSON execution result | someone shared a run |
//! | `NotesUpdate` | as `Update` | an edit of the interviewers' private notes (a document of its own) |
//! | `NotesAwareness` | as `Awareness` | interviewers' cursors in the notes |
//! | `Control` | JSON `{state, started_at, ended_at, editing_locked, runs_enabled, removed?}` | the interview's lifecycle and controls changed (from a hub or the session-API): a full snapshot of them, plus the removed user ids when someone was removed |
//! | `Activity` | JSON `{kind, user_id, name, at, size?, doc?}` | a participant pasted, or left or came back to the page: for the interviewers only |
//! | `Trace` (15) | trace id (16 bytes), span id (8), flags u8 (bit 0: sampled) | the W3C trace context of the span that made the **next** message of the same payload (an `Update` or `NotesUpdate`); sent only by a hub with tracing on ([`traced`]), skipped like any unknown kind by hubs that do not read it, so the format's version is unchanged |
//!
//! A bus payload is either one message or a **batch** (kind 9): `[version][9][origin len][origin]`
//! followed by `[u32 length][message]…`, the messages of one channel in publishing order. The hub's
//! publisher packs whatever queued up for a channel while the previous publishes were on their way
//! into one batch ([`batch`]), so a busy hub issues one `PUBLISH` per channel per round instead of one
//! per keystroke, and every subscribing hub is woken once per batch. [`decode_all`] reads both forms.

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

/// Format version; a hub drops messages of another version (rolling upgrades resync from the database).
/// Version 2 added batches; version 3 replaced the per-interview `Committed` notice with `Commits`
/// in the inbox.
pub const VERSION: u8 = 3;

/// The kind byte of a batch (see the module documentation).
const BATCH_KIND: u8 = 9;

/// The kind byte of a trace context (see the module documentation).
const TRACE_KIND: u8 = 15;

/// A trace context's body: trace id, span id, flags.
const TRACE_LEN: usize = 16 + 8 + 1;

/// Bytes per interview in a `Commits` body: session id and sequence number.
const COMMIT_ENTRY: usize = 16 + 8;

/// Packs already encoded messages of one channel (in order) into one bus payload. A single message
/// is returned as is. A part that is itself a batch (a [`traced`] message) is inlined: batches do
/// not nest.
pub fn batch(origin: &str, mut parts: Vec<Bytes>) -> Bytes {
    if parts.len() == 1 {
        return parts.pop().unwrap_or_default();
    }
    let frames = |p: &Bytes| -> Option<usize> { is_batch(p).then(|| 3 + p[2] as usize) };
    let len = 3
        + origin.len()
        + parts
            .iter()
            .map(|p| match frames(p) {
                Some(start) => p.len().saturating_sub(start),
                None => 4 + p.len(),
            })
            .sum::<usize>();
    let mut b = BytesMut::with_capacity(len);
    b.put_u8(VERSION);
    b.put_u8(BATCH_KIND);
    b.put_u8(origin.len() as u8);
    b.put_slice(origin.as_bytes());
    for p in &parts {
        match frames(p) {
            // Already `[u32 length][message]…`.
            Some(start) => b.put_slice(p.get(start..).unwrap_or_default()),
            None => {
                b.put_u32(p.len() as u32);
                b.put_slice(p);
            }
        }
    }
    b.freeze()
}

fn is_batch(raw: &[u8]) -> bool {
    raw.len() >= 3 && raw[0] == VERSION && raw[1] == BATCH_KIND
}

/// Calls `f` with each message of a bus payload, in order: the payload itself, or a batch's parts
/// (a malformed frame ends the batch there; batches do not nest).
fn for_each_message(raw: &Bytes, mut f: impl FnMut(Bytes)) {
    if !is_batch(raw) {
        f(raw.clone());
        return;
    }
    let mut pos = 3 + raw[2] as usize;
    while pos + 4 <= raw.len() {
        let len = u32::from_be_bytes([raw[pos], raw[pos + 1], raw[pos + 2], raw[pos + 3]]) as usize;
        pos += 4;
        let Some(end) = pos.checked_add(len).filter(|&e| e <= raw.len()) else {
            break;
        };
        let part = raw.slice(pos..end);
        if part.get(1) != Some(&BATCH_KIND) {
            f(part);
        }
        pos = end;
    }
}

/// Decodes a bus payload, one message or a batch, into its messages with their origins, in order.
/// Malformed messages are skipped; a malformed batch frame ends the batch there.
pub fn decode_all(raw: &Bytes) -> Vec<(String, BusMessage)> {
    let mut out = Vec::new();
    for_each_message(raw, |part| out.extend(BusMessage::decode(&part)));
    out
}

/// The W3C trace context (binary) of the span that made a message: what a receiving hub's span
/// takes as its parent, so an edit relayed across hubs is one trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceContext {
    fn decode(part: &[u8]) -> Option<Self> {
        let origin = *part.get(2)? as usize;
        let body = part.get(3 + origin..)?;
        if part[0] != VERSION || part[1] != TRACE_KIND || body.len() != TRACE_LEN {
            return None;
        }
        Some(Self {
            trace_id: body[..16].try_into().ok()?,
            span_id: body[16..24].try_into().ok()?,
            sampled: body[24] & 1 == 1,
        })
    }
}

/// One encoded message preceded by the trace context of the span that made it: a batch of the two
/// (which [`batch`] inlines into a larger one), so they travel in one payload. A hub that does not
/// read trace contexts skips the first and takes the message as ever.
pub fn traced(origin: &str, cx: &TraceContext, msg: Bytes) -> Bytes {
    let mut t = BytesMut::with_capacity(3 + origin.len() + TRACE_LEN);
    t.put_u8(VERSION);
    t.put_u8(TRACE_KIND);
    t.put_u8(origin.len() as u8);
    t.put_slice(origin.as_bytes());
    t.put_slice(&cx.trace_id);
    t.put_slice(&cx.span_id);
    t.put_u8(u8::from(cx.sampled));
    batch(origin, vec![t.freeze(), msg])
}

/// As [`decode_all`], with the trace context that came right before each message, if any.
pub fn decode_all_traced(raw: &Bytes) -> Vec<(String, BusMessage, Option<TraceContext>)> {
    let mut out = Vec::new();
    let mut pending = None;
    for_each_message(raw, |part| {
        if part.get(1) == Some(&TRACE_KIND) {
            pending = TraceContext::decode(&part);
            return;
        }
        let cx = pending.take();
        if let Some((origin, msg)) = BusMessage::decode(&part) {
            out.push((origin, msg, cx));
        }
    });
    out
}

/// Whether an encoded message is an edit (`Update` or `NotesUpdate`): the messages a hub sends
/// with their trace context.
pub fn is_update(raw: &[u8]) -> bool {
    raw.len() >= 3 && raw[0] == VERSION && matches!(raw[1], 1 | 12)
}

/// Whether a bus payload (one message or a batch) was published by `hub_id`: the hub's
/// subscriptions skip these (Redis hands a publisher its own messages back).
pub fn is_from(raw: &[u8], hub_id: &str) -> bool {
    let id = hub_id.as_bytes();
    raw.len() >= 3 + id.len()
        && raw[0] == VERSION
        && raw[2] as usize == id.len()
        && &raw[3..3 + id.len()] == id
}

/// The origin the session-API publishes its [`BusMessage::Control`] messages under. It is no hub:
/// a hub does not count it among the interview's peers (it sends no presence and commits nothing).
pub const API_ORIGIN: &str = "session-api";

/// The channel of one interview.
pub fn channel(session_id: Uuid) -> String {
    format!("duet:interview:{session_id}")
}

/// A hub's inbox: the channel other hubs send it their [`BusMessage::Commits`] on.
pub fn inbox(hub_id: &str) -> String {
    format!("duet:hub-inbox:{hub_id}")
}

/// The registration key of one hub.
pub fn hub_key(hub_id: &str) -> String {
    format!("duet:hub:{hub_id}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusMessage {
    Update {
        seq: u64,
        author: Option<Uuid>,
        data: Bytes,
    },
    /// Sent to another hub's inbox after a group commit: for every interview the two share whose
    /// commits advanced, how far (`seq` = the origin's write id). One message per commit and peer,
    /// where a notice per interview on its own channel cost a publish, a delivery and a wake-up per
    /// edit.
    Commits {
        entries: Vec<(Uuid, u64)>,
    },
    Awareness {
        data: Bytes,
    },
    SyncStep1 {
        want_reply: bool,
        sv: Bytes,
    },
    SyncReply {
        target: String,
        data: Bytes,
    },
    Presence {
        json: Bytes,
    },
    Language {
        json: Bytes,
    },
    Run {
        json: Bytes,
    },
    /// The interview's state and interviewer controls as they now are (a full snapshot, so a
    /// late or repeated one is harmless): `{"state", "started_at", "ended_at", "editing_locked",
    /// "runs_enabled", "removed": [uuid]?}`. Published by the hub or the session-API that made the
    /// change; `removed` lists the interview's removed user ids when one was removed.
    Control {
        json: Bytes,
    },
    /// An edit of the interviewers' private notes, as [`BusMessage::Update`] is of the code. A hub
    /// sends it only to its interviewer connections.
    NotesUpdate {
        seq: u64,
        author: Option<Uuid>,
        data: Bytes,
    },
    /// Awareness of the notes document.
    NotesAwareness {
        data: Bytes,
    },
    /// A participant's activity (a paste, leaving the page or coming back): the body of the
    /// `activity` event, `{"kind", "user_id", "name", "at", "size"?, "doc"?}`. A hub sends it only to
    /// its interviewer connections.
    Activity {
        json: Bytes,
    },
}

impl BusMessage {
    fn kind(&self) -> u8 {
        match self {
            Self::Update { .. } => 1,
            Self::Commits { .. } => 10,
            Self::Awareness { .. } => 3,
            Self::SyncStep1 { .. } => 4,
            Self::SyncReply { .. } => 5,
            Self::Presence { .. } => 6,
            Self::Language { .. } => 7,
            Self::Run { .. } => 8,
            Self::Control { .. } => 11,
            Self::NotesUpdate { .. } => 12,
            Self::NotesAwareness { .. } => 13,
            Self::Activity { .. } => 14,
        }
    }

    /// Encodes the message with its origin. Origins are hub ids, at most 255 bytes (checked at start).
    pub fn encode(&self, origin: &str) -> Bytes {
        let mut b = BytesMut::with_capacity(64 + origin.len());
        b.put_u8(VERSION);
        b.put_u8(self.kind());
        b.put_u8(origin.len() as u8);
        b.put_slice(origin.as_bytes());
        match self {
            Self::Update { seq, author, data } | Self::NotesUpdate { seq, author, data } => {
                b.put_u64(*seq);
                match author {
                    Some(a) => {
                        b.put_u8(1);
                        b.put_slice(a.as_bytes());
                    }
                    None => b.put_u8(0),
                }
                b.put_slice(data);
            }
            Self::Commits { entries } => {
                b.reserve(entries.len() * COMMIT_ENTRY);
                for (id, seq) in entries {
                    b.put_slice(id.as_bytes());
                    b.put_u64(*seq);
                }
            }
            Self::Awareness { data } | Self::NotesAwareness { data } => b.put_slice(data),
            Self::SyncStep1 { want_reply, sv } => {
                b.put_u8(u8::from(*want_reply));
                b.put_slice(sv);
            }
            Self::SyncReply { target, data } => {
                b.put_u8(target.len() as u8);
                b.put_slice(target.as_bytes());
                b.put_slice(data);
            }
            Self::Presence { json }
            | Self::Language { json }
            | Self::Run { json }
            | Self::Control { json }
            | Self::Activity { json } => b.put_slice(json),
        }
        b.freeze()
    }

    /// Decodes a message and its origin; `None` for anything malformed or of another version.
    pub fn decode(raw: &Bytes) -> Option<(String, BusMessage)> {
        let mut pos = 0usize;
        let take = |pos: &mut usize, n: usize| -> Option<Bytes> {
            let end = pos.checked_add(n)?;
            if end > raw.len() {
                return None;
            }
            let s = raw.slice(*pos..end);
            *pos = end;
            Some(s)
        };
        let head = take(&mut pos, 3)?;
        if head[0] != VERSION {
            return None;
        }
        let origin = String::from_utf8(take(&mut pos, head[2] as usize)?.to_vec()).ok()?;
        let rest = |pos: usize| raw.slice(pos..);
        let u64_at = |pos: &mut usize| -> Option<u64> {
            let s = take(pos, 8)?;
            Some(u64::from_be_bytes(s[..].try_into().ok()?))
        };
        let msg = match head[1] {
            kind @ (1 | 12) => {
                let seq = u64_at(&mut pos)?;
                let flag = take(&mut pos, 1)?[0];
                let author = if flag == 1 {
                    Some(Uuid::from_slice(&take(&mut pos, 16)?).ok()?)
                } else {
                    None
                };
                let data = rest(pos);
                if kind == 1 {
                    Self::Update { seq, author, data }
                } else {
                    Self::NotesUpdate { seq, author, data }
                }
            }
            10 => {
                let body = rest(pos);
                if body.len() % COMMIT_ENTRY != 0 {
                    return None;
                }
                let entries = body
                    .chunks_exact(COMMIT_ENTRY)
                    .map(|e| {
                        let id = Uuid::from_slice(&e[..16]).ok()?;
                        Some((id, u64::from_be_bytes(e[16..].try_into().ok()?)))
                    })
                    .collect::<Option<Vec<_>>>()?;
                Self::Commits { entries }
            }
            3 => Self::Awareness { data: rest(pos) },
            4 => {
                let want_reply = take(&mut pos, 1)?[0] == 1;
                Self::SyncStep1 {
                    want_reply,
                    sv: rest(pos),
                }
            }
            5 => {
                let len = take(&mut pos, 1)?[0] as usize;
                let target = String::from_utf8(take(&mut pos, len)?.to_vec()).ok()?;
                Self::SyncReply {
                    target,
                    data: rest(pos),
                }
            }
            6 => Self::Presence { json: rest(pos) },
            7 => Self::Language { json: rest(pos) },
            8 => Self::Run { json: rest(pos) },
            11 => Self::Control { json: rest(pos) },
            13 => Self::NotesAwareness { data: rest(pos) },
            14 => Self::Activity { json: rest(pos) },
            _ => return None,
        };
        Some((origin, msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commits(seq: u64) -> BusMessage {
        BusMessage::Commits {
            entries: vec![(Uuid::nil(), seq)],
        }
    }

    #[test]
    fn is_from_reads_the_origin_of_messages_and_batches() {
        let one = commits(7).encode("hub-a");
        assert!(is_from(&one, "hub-a"));
        assert!(!is_from(&one, "hub-b"));
        // A prefix or extension of the id is another hub.
        assert!(!is_from(&one, "hub-"));
        assert!(!is_from(&one, "hub-aa"));
        let two = batch("hub-b", vec![one.clone(), commits(8).encode("hub-b")]);
        assert!(is_from(&two, "hub-b"));
        assert!(!is_from(&two, "hub-a"));
        assert!(!is_from(b"", "hub-a"));
        assert!(!is_from(&[VERSION, 1], "hub-a"));
    }

    #[test]
    fn every_kind_round_trips() {
        let msgs = [
            BusMessage::Update {
                seq: 7,
                author: Some(Uuid::new_v4()),
                data: Bytes::from_static(b"\x01\x02"),
            },
            BusMessage::Update {
                seq: u64::MAX,
                author: None,
                data: Bytes::new(),
            },
            commits(42),
            BusMessage::Commits {
                entries: vec![(Uuid::new_v4(), 1), (Uuid::new_v4(), u64::MAX)],
            },
            BusMessage::Commits { entries: vec![] },
            BusMessage::Awareness {
                data: Bytes::from_static(b"aw"),
            },
            BusMessage::SyncStep1 {
                want_reply: true,
                sv: Bytes::from_static(b"\x00"),
            },
            BusMessage::SyncReply {
                target: "hub-b".into(),
                data: Bytes::from_static(b"\x00\x00"),
            },
            BusMessage::Presence {
                json: Bytes::from_static(b"[]"),
            },
            BusMessage::Language {
                json: Bytes::from_static(b"{}"),
            },
            BusMessage::Run {
                json: Bytes::from_static(b"{}"),
            },
            BusMessage::Control {
                json: Bytes::from_static(br#"{"state":"ended","removed":[]}"#),
            },
            BusMessage::NotesUpdate {
                seq: 7,
                author: Some(Uuid::new_v4()),
                data: Bytes::from_static(b"\x00\x00"),
            },
            BusMessage::NotesAwareness {
                data: Bytes::from_static(b"naw"),
            },
            BusMessage::Activity {
                json: Bytes::from_static(br#"{"kind":"paste","size":312}"#),
            },
            BusMessage::Activity { json: Bytes::new() },
        ];
        for m in msgs {
            let raw = m.encode("hub-a");
            assert_eq!(BusMessage::decode(&raw), Some(("hub-a".to_owned(), m)));
        }
    }

    #[test]
    fn batches_round_trip_in_order() {
        let msgs = vec![
            BusMessage::Update {
                seq: 1,
                author: Some(Uuid::new_v4()),
                data: Bytes::from_static(b"\x01"),
            },
            commits(1),
            BusMessage::Awareness {
                data: Bytes::from_static(b"aw"),
            },
        ];
        let parts = msgs.iter().map(|m| m.encode("hub-a")).collect();
        let raw = batch("hub-a", parts);
        let got: Vec<_> = decode_all(&raw)
            .into_iter()
            .map(|(o, m)| {
                assert_eq!(o, "hub-a");
                m
            })
            .collect();
        assert_eq!(got, msgs);
        // One message is published as itself, and reads back the same way.
        let one = msgs[1].encode("hub-a");
        assert_eq!(batch("hub-a", vec![one.clone()]), one);
        assert_eq!(
            decode_all(&one),
            vec![("hub-a".to_owned(), msgs[1].clone())]
        );
        // A truncated batch yields the messages before the cut.
        let cut = raw.slice(..raw.len() - 1);
        assert_eq!(decode_all(&cut).len(), 2);
        // Garbage inside a batch is skipped, nested batches are not followed (`batch` inlines a
        // batch part; this one is framed by hand).
        let mut bad = BytesMut::new();
        bad.put_slice(&[VERSION, BATCH_KIND, 5]);
        bad.put_slice(b"hub-a");
        for p in [Bytes::from_static(b"\x02\x01"), raw.clone(), one.clone()] {
            bad.put_u32(p.len() as u32);
            bad.put_slice(&p);
        }
        assert_eq!(
            decode_all(&bad.freeze()),
            vec![("hub-a".to_owned(), msgs[1].clone())]
        );
        // `batch` inlines a batch among its parts.
        let flat = batch("hub-a", vec![raw.clone(), one]);
        assert_eq!(decode_all(&flat).len(), 4);
    }

    #[test]
    fn a_traced_message_keeps_its_context_through_batches() {
        let cx = TraceContext {
            trace_id: [7; 16],
            span_id: [9; 8],
            sampled: true,
        };
        let update = BusMessage::Update {
            seq: 3,
            author: None,
            data: Bytes::from_static(b"\x01"),
        };
        let aw = BusMessage::Awareness {
            data: Bytes::from_static(b"aw"),
        };
        let one = traced("hub-a", &cx, update.encode("hub-a"));
        assert!(is_from(&one, "hub-a"));
        assert_eq!(
            decode_all_traced(&one),
            vec![("hub-a".to_owned(), update.clone(), Some(cx))]
        );
        // Read as before (a hub that knows no trace context): the update alone.
        assert_eq!(decode_all(&one), vec![("hub-a".to_owned(), update.clone())]);
        // Packed with others by the publisher: inlined, not nested; the context stays with its
        // message and no other.
        let raw = batch(
            "hub-a",
            vec![aw.encode("hub-a"), one.clone(), update.encode("hub-a")],
        );
        assert_eq!(
            decode_all_traced(&raw),
            vec![
                ("hub-a".to_owned(), aw.clone(), None),
                ("hub-a".to_owned(), update.clone(), Some(cx)),
                ("hub-a".to_owned(), update.clone(), None),
            ]
        );
        assert_eq!(decode_all(&raw).len(), 3);
        // A context whose message is missing or malformed attaches to nothing.
        let cut = batch(
            "hub-a",
            vec![one.clone(), Bytes::from_static(b"\x03\x01\x00")],
        );
        assert_eq!(decode_all_traced(&cut).len(), 1);
        assert!(is_update(&update.encode("hub-a")));
        assert!(!is_update(&aw.encode("hub-a")));
    }

    #[test]
    fn garbage_is_ignored() {
        for raw in [
            &b""[..],
            b"\x03",
            // Another version.
            b"\x02\x0a\x00",
            // An update without its sequence number; an origin longer than the message.
            b"\x03\x01\x00",
            b"\x03\x01\x05ab",
            // A batch is not one message; an unknown kind.
            b"\x03\x09\x00",
            b"\x03\x02\x00",
            // Commits whose body is not whole entries.
            b"\x03\x0a\x00\x01",
            // A notes update too short for its sequence number; a kind no version has used.
            b"\x03\x0c\x00{}",
            b"\x03\x63\x00{}",
        ] {
            assert_eq!(
                BusMessage::decode(&Bytes::copy_from_slice(raw)),
                None,
                "{raw:?}"
            );
        }
    }
}
