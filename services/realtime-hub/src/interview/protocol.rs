//! y-protocols framing (as y-websocket frames it) for the `yjs` event.
//!
//! The hub parses the outer framing itself instead of using `yrs::sync::MessageReader`, because that
//! reader treats a truncated message as the end of input: the hub must refuse anything that does not
//! decode completely, and it wants the raw bytes of awareness messages to relay them unchanged.
//! The contents (state vectors, updates, awareness updates) are decoded by yrs.

use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{StateVector, Update};

use super::awareness::AwarenessUpdate;
use super::scan::{scan, ScanError, UpdateStats};

/// `messageSync`.
pub const MSG_SYNC: u64 = 0;
/// `messageAwareness`.
pub const MSG_AWARENESS: u64 = 1;
/// `messageAuth` (never accepted from a client).
pub const MSG_AUTH: u64 = 2;
/// `messageQueryAwareness`.
pub const MSG_QUERY_AWARENESS: u64 = 3;
pub const SYNC_STEP1: u64 = 0;
pub const SYNC_STEP2: u64 = 1;
pub const SYNC_UPDATE: u64 = 2;

/// One decoded client message.
#[derive(Debug)]
pub enum ClientMessage {
    SyncStep1(StateVector),
    /// Step 2 or an incremental update (the hub treats both alike), with its encoded bytes and
    /// what it will cost to integrate.
    Update {
        update: Update,
        raw: Vec<u8>,
        stats: UpdateStats,
    },
    /// An awareness update, with the message's raw bytes for relaying.
    Awareness {
        update: AwarenessUpdate,
        raw: Vec<u8>,
    },
    QueryAwareness,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("truncated message")]
    Truncated,
    #[error("unsupported message type {0}")]
    Unsupported(u64),
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("empty message")]
    Empty,
    #[error("{0}")]
    Update(#[from] ScanError),
    #[error("awareness: {0}")]
    Awareness(#[from] super::awareness::AwarenessError),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn var_uint(&mut self) -> Result<u64, FrameError> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = *self.buf.get(self.pos).ok_or(FrameError::Truncated)?;
            self.pos += 1;
            if shift >= 63 && b > 1 {
                return Err(FrameError::Malformed("varint"));
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], FrameError> {
        let len = usize::try_from(self.var_uint()?).map_err(|_| FrameError::Truncated)?;
        let end = self.pos.checked_add(len).ok_or(FrameError::Truncated)?;
        let slice = self.buf.get(self.pos..end).ok_or(FrameError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }
}

/// Decodes every message of one `yjs` emit for the document whose shared text is the root type
/// `root`, or refuses the whole emit. Updates are checked by [`scan`] before yrs decodes them.
///
/// Decoding is wrapped in `catch_unwind`: yrs asserts on some out-of-range values in debug builds,
/// and a client must never be able to crash the hub.
pub fn decode(buf: &[u8], root: &str) -> Result<Vec<ClientMessage>, FrameError> {
    std::panic::catch_unwind(|| decode_inner(buf, root))
        .unwrap_or(Err(FrameError::Malformed("content")))
}

fn decode_inner(buf: &[u8], root: &str) -> Result<Vec<ClientMessage>, FrameError> {
    if buf.is_empty() {
        return Err(FrameError::Empty);
    }
    let mut r = Reader { buf, pos: 0 };
    let mut out = Vec::with_capacity(1);
    while r.pos < buf.len() {
        let start = r.pos;
        match r.var_uint()? {
            MSG_SYNC => {
                let sub = r.var_uint()?;
                let body = r.bytes()?;
                match sub {
                    SYNC_STEP1 => {
                        // yrs reserves room for as many entries as the vector claims (a few bytes
                        // could ask for gigabytes): each entry takes at least two bytes.
                        let claimed = Reader { buf: body, pos: 0 }.var_uint()?;
                        if claimed > body.len() as u64 / 2 {
                            return Err(FrameError::Malformed("state vector"));
                        }
                        out.push(ClientMessage::SyncStep1(
                            StateVector::decode_v1(body)
                                .map_err(|_| FrameError::Malformed("state vector"))?,
                        ))
                    }
                    SYNC_STEP2 | SYNC_UPDATE => {
                        let stats = scan(body, root)?;
                        out.push(ClientMessage::Update {
                            update: Update::decode_v1(body)
                                .map_err(|_| FrameError::Malformed("update"))?,
                            raw: body.to_vec(),
                            stats,
                        })
                    }
                    other => return Err(FrameError::Unsupported(other)),
                }
            }
            MSG_AWARENESS => {
                let body = r.bytes()?;
                let update = AwarenessUpdate::decode(body)?;
                out.push(ClientMessage::Awareness {
                    update,
                    raw: buf[start..r.pos].to_vec(),
                });
            }
            MSG_QUERY_AWARENESS => out.push(ClientMessage::QueryAwareness),
            other => return Err(FrameError::Unsupported(other)),
        }
    }
    Ok(out)
}

fn write_var(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn sync_message(sub: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    write_var(&mut out, MSG_SYNC);
    write_var(&mut out, sub);
    write_var(&mut out, body.len() as u64);
    out.extend_from_slice(body);
    out
}

/// `[messageSync, syncUpdate, update]`.
pub fn encode_update(update: &[u8]) -> Vec<u8> {
    sync_message(SYNC_UPDATE, update)
}

/// `[messageSync, syncStep2, update]`.
pub fn encode_step2(update: &[u8]) -> Vec<u8> {
    sync_message(SYNC_STEP2, update)
}

/// `[messageSync, syncStep1, stateVector]`.
pub fn encode_step1(sv: &StateVector) -> Vec<u8> {
    sync_message(SYNC_STEP1, &sv.encode_v1())
}

/// `[messageAwareness, update]`.
pub fn encode_awareness(update: &AwarenessUpdate) -> Vec<u8> {
    let body = update.encode();
    let mut out = Vec::with_capacity(body.len() + 4);
    write_var(&mut out, MSG_AWARENESS);
    write_var(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_state_vector_claiming_more_entries_than_its_bytes_is_refused() {
        // Found by the fuzzer: [sync, step 1, body [count 2^32 - 1]] made yrs reserve 146 GB.
        let mut msg = vec![MSG_SYNC as u8, SYNC_STEP1 as u8, 5];
        msg.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(matches!(
            decode(&msg, "code"),
            Err(FrameError::Malformed("state vector"))
        ));
        // A real one still decodes.
        let mut sv = StateVector::default();
        sv.set_max(yrs::block::ClientID::new(7), 3);
        let ok = encode_step1(&sv);
        assert!(matches!(
            decode(&ok, "code").unwrap().as_slice(),
            [ClientMessage::SyncStep1(_)]
        ));
    }

    use super::*;
    use yrs::{Doc, ReadTxn, Text, Transact};

    #[test]
    fn round_trips_sync_messages() {
        let doc = Doc::new();
        let text = doc.get_or_insert_text("code");
        let update = {
            let mut txn = doc.transact_mut();
            text.insert(&mut txn, 0, "hi");
            txn.encode_update_v1()
        };
        let sv = doc.transact().state_vector();
        let mut packet = encode_step1(&sv);
        packet.extend(encode_update(&update));
        let msgs = decode(&packet, "code").unwrap();
        assert!(matches!(msgs[0], ClientMessage::SyncStep1(ref s) if *s == sv));
        assert!(matches!(msgs[1], ClientMessage::Update { .. }));
    }

    #[test]
    fn refuses_truncated_and_unknown_messages() {
        let packet = encode_update(&[0, 0]);
        assert_eq!(
            decode(&packet[..packet.len() - 1], "code").unwrap_err(),
            FrameError::Truncated
        );
        assert_eq!(decode(&[], "code").unwrap_err(), FrameError::Empty);
        assert_eq!(
            decode(&[2, 0], "code").unwrap_err(),
            FrameError::Unsupported(2)
        );
        assert_eq!(
            decode(&[0, 7, 0], "code").unwrap_err(),
            FrameError::Unsupported(7)
        );
        assert!(decode(&[0, 2, 3, 0xff, 0xff, 0xff], "code").is_err());
        assert!(decode(&[0xff; 12], "code").is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..48);
            let mut buf: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if !buf.is_empty() {
                buf[0] = rng.gen_range(0..4);
            }
            let _ = decode(&buf, "code");
        }
    }
}
