//! A check of a Yjs update (v1 encoding) before yrs sees it.
//!
//! yrs reads clocks as 32-bit numbers that silently wrap (for Yjs compatibility), reserves memory for
//! counts a client declares before reading the entries, and integrates whatever content types an
//! update carries. An update from a client is therefore walked here first, without allocating:
//! - every count is checked against the bytes that remain (a few bytes cannot declare millions of
//!   entries);
//! - every clock range must end below 2^32 (an update whose range crosses it is applied, stored and
//!   replayed differently; one at 2^40 can never merge);
//! - only what a shared text holds is accepted — strings and deleted runs, with their parent the
//!   document's one root type — so a client cannot grow the document with maps, arrays, embeds or
//!   other root types nobody sees;
//! - it counts what integrating the update will cost (structs, clients, inserted UTF-16 units), so
//!   the caller can bound one message's work.
//!
//! The format (lib0 v1): `[clients]{[structs][client][clock]{struct}*}*` then the delete set
//! `[clients]{[client][ranges]{[clock][len]}*}*`; a struct is `info`, then origin / right origin ids
//! when flagged, else the parent (root name or id) and the map key when flagged, then the content.

/// Yjs client ids are at most 53 bits (JavaScript's safe integers); yrs agrees.
pub const MAX_CLIENT_ID: u64 = (1 << 53) - 1;
/// Clocks are 32-bit: a struct's range must end at or below this.
const CLOCK_LIMIT: u64 = 1 << 32;

const REF_GC: u8 = 0;
const REF_DELETED: u8 = 1;
const REF_STRING: u8 = 4;
const REF_SKIP: u8 = 10;
const HAS_ORIGIN: u8 = 0x80;
const HAS_RIGHT_ORIGIN: u8 = 0x40;
const HAS_PARENT_SUB: u8 = 0x20;
const CONTENT_MASK: u8 = 0x1f;

/// What an update will cost to integrate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateStats {
    /// Structs (items, GC and skip runs).
    pub structs: u64,
    /// Clients with structs (each one's structs are integrated as a run).
    pub clients: u64,
    /// UTF-16 units of inserted text.
    pub inserted_units: u64,
    /// Delete-set ranges.
    pub delete_ranges: u64,
    /// The clients whose structs carry content, with the clock their structs end at (for
    /// client-id ownership: only structs beyond what the document has are new).
    pub authors: Vec<(u64, u64)>,
    /// Each client section's clock range `[first, end)` (skip runs at its start left out).
    pub sections: Vec<(u64, u64, u64)>,
    /// The highest clock, plus one, each origin of the update names, per client: the document must
    /// hold that much of the client (or the update itself supply it) for the update to integrate
    /// where its author put it.
    pub origins: Vec<(u64, u64)>,
}

impl UpdateStats {
    /// Whether the update depends on something neither `has` (a client's clock in the document)
    /// nor the update itself holds: a struct starting past its client's clock, or an origin the
    /// document lacks. yrs integrates such an update at once (out of causal order, and leaves it out
    /// of the transaction's encoded delta) where Yjs would hold it back; the hub holds it instead.
    pub fn has_gap(&self, sv: &yrs::StateVector) -> bool {
        let has = |c: u64| u64::from(sv.get(&yrs::block::ClientID::new(c)));
        // What the document and the update together hold of a client, contiguously from 0.
        let avail = |client: u64| {
            let mut a = has(client);
            for &(c, first, end) in &self.sections {
                if c == client && first <= a {
                    a = a.max(end);
                }
            }
            a
        };
        self.sections
            .iter()
            .any(|&(c, first, _)| first > has(c) && first > avail(c))
            || self.origins.iter().any(|&(c, need)| need > avail(c))
    }
}

/// Where one client's run of structs lies in an update, for splitting it into pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    client: u64,
    /// The clock of the first struct.
    clock: u64,
    /// The struct encodings, each as a byte range of the update, with its clock length.
    structs: Vec<(std::ops::Range<usize>, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("update is truncated or has trailing bytes")]
    Truncated,
    #[error("a count is larger than the update could hold")]
    Count,
    #[error("a number does not fit its field")]
    Overflow,
    #[error("a clock range goes past 2^32")]
    Clock,
    #[error("a client id over 53 bits")]
    ClientId,
    #[error("content of a kind a shared text does not hold")]
    Content,
    #[error("content outside the document's text")]
    Parent,
    #[error("text that is not UTF-8")]
    Utf8,
    #[error("text with a NUL character")]
    Nul,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn u8(&mut self) -> Result<u8, ScanError> {
        let b = *self.buf.get(self.pos).ok_or(ScanError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn var(&mut self) -> Result<u64, ScanError> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.u8()?;
            if shift >= 63 && b > 1 {
                return Err(ScanError::Overflow);
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    /// A count of things that take at least `min_bytes` each.
    fn count(&mut self, min_bytes: usize) -> Result<u64, ScanError> {
        let n = self.var()?;
        if n > (self.remaining() / min_bytes.max(1)) as u64 {
            return Err(ScanError::Count);
        }
        Ok(n)
    }

    fn clock(&mut self) -> Result<u64, ScanError> {
        let c = self.var()?;
        if c >= CLOCK_LIMIT {
            return Err(ScanError::Clock);
        }
        Ok(c)
    }

    fn client(&mut self) -> Result<u64, ScanError> {
        let c = self.var()?;
        if c > MAX_CLIENT_ID {
            return Err(ScanError::ClientId);
        }
        Ok(c)
    }

    fn id(&mut self) -> Result<(u64, u64), ScanError> {
        let client = self.client()?;
        let clock = self.clock()?;
        Ok((client, clock))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ScanError> {
        let len = usize::try_from(self.var()?).map_err(|_| ScanError::Overflow)?;
        let end = self.pos.checked_add(len).ok_or(ScanError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(ScanError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn string(&mut self) -> Result<&'a str, ScanError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| ScanError::Utf8)
    }
}

fn write_var(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Walks an update meant for a document whose one shared text is the root type `root`.
pub fn scan(update: &[u8], root: &str) -> Result<UpdateStats, ScanError> {
    walk(update, Some(root), None).map(|(stats, _)| stats)
}

/// What a stored update depends on (its sections and origins), whatever its content: for replaying a
/// history in causal order. `None` for bytes that are no update.
pub fn dependencies(update: &[u8]) -> Option<UpdateStats> {
    walk(update, None, None).ok().map(|(stats, _)| stats)
}

/// Splits a (scanned) update into pieces of at most `per_piece` structs each, then the delete set:
/// applied in order, the pieces have the update's effect, and each can be integrated on its own
/// (a struct's encoding does not depend on the structs before it but for its clock, which each
/// piece's header states). Lets the hub integrate a large update a little at a time.
pub fn split(update: &[u8], root: &str, per_piece: usize) -> Result<Vec<Vec<u8>>, ScanError> {
    let mut spans = Vec::new();
    let (_, ds) = walk(update, Some(root), Some(&mut spans))?;
    let per_piece = per_piece.max(1);
    let mut pieces = Vec::new();
    for span in &spans {
        let mut clock = span.clock;
        for group in span.structs.chunks(per_piece) {
            let mut p = Vec::new();
            write_var(&mut p, 1);
            write_var(&mut p, group.len() as u64);
            write_var(&mut p, span.client);
            write_var(&mut p, clock);
            for (range, len) in group {
                p.extend_from_slice(&update[range.clone()]);
                clock += len;
            }
            p.push(0); // no delete set
            pieces.push(p);
        }
    }
    if ds.len() > 1 || pieces.is_empty() {
        let mut last = vec![0]; // no structs
        last.extend_from_slice(&update[ds]);
        pieces.push(last);
    }
    Ok(pieces)
}

/// `root`: the one shared text's name, which every struct's parent must be (`None`: not checked,
/// and any content is read past).
fn walk(
    update: &[u8],
    root: Option<&str>,
    mut spans: Option<&mut Vec<Span>>,
) -> Result<(UpdateStats, std::ops::Range<usize>), ScanError> {
    let mut c = Cursor {
        buf: update,
        pos: 0,
    };
    let mut stats = UpdateStats::default();
    // A client section is at least three bytes (structs, client, clock).
    let clients = c.count(3)?;
    for _ in 0..clients {
        // A struct is at least two bytes (info and a length or a content byte).
        let structs = c.count(2)?;
        let client = c.client()?;
        let first = c.clock()?;
        let mut clock = first;
        let mut authored = false;
        // The clock of the first struct that is not a skip run.
        let mut begins = None;
        let mut ranges = Vec::new();
        for _ in 0..structs {
            let start = c.pos;
            let info = c.u8()?;
            if info != REF_SKIP && begins.is_none() {
                begins = Some(clock);
            }
            let len = match info {
                REF_GC | REF_SKIP => c.var()?,
                _ => {
                    authored = true;
                    let has_origin = info & HAS_ORIGIN != 0;
                    let has_right = info & HAS_RIGHT_ORIGIN != 0;
                    for present in [has_origin, has_right] {
                        if present {
                            let (oc, ok) = c.id()?;
                            let need = ok.saturating_add(1);
                            match stats.origins.iter_mut().find(|(x, _)| *x == oc) {
                                Some((_, n)) => *n = (*n).max(need),
                                None => stats.origins.push((oc, need)),
                            }
                        }
                    }
                    if !has_origin && !has_right {
                        // The parent: 1 = a root type by name, else a nested type's id.
                        match root {
                            Some(root) => {
                                if c.var()? != 1 || c.string()? != root {
                                    return Err(ScanError::Parent);
                                }
                                if info & HAS_PARENT_SUB != 0 {
                                    return Err(ScanError::Parent);
                                }
                            }
                            None => {
                                if c.var()? == 1 {
                                    c.string()?;
                                } else {
                                    c.id()?;
                                }
                                if info & HAS_PARENT_SUB != 0 {
                                    c.string()?;
                                }
                            }
                        }
                    }
                    match info & CONTENT_MASK {
                        REF_DELETED => c.var()?,
                        REF_STRING => {
                            let s = c.string()?;
                            if s.contains('\0') {
                                return Err(ScanError::Nul);
                            }
                            let units = s.encode_utf16().count() as u64;
                            stats.inserted_units += units;
                            units
                        }
                        _ => return Err(ScanError::Content),
                    }
                }
            };
            if len == 0 {
                return Err(ScanError::Truncated);
            }
            clock = clock.checked_add(len).ok_or(ScanError::Clock)?;
            if clock > CLOCK_LIMIT {
                return Err(ScanError::Clock);
            }
            stats.structs += 1;
            if spans.is_some() {
                ranges.push((start..c.pos, len));
            }
        }
        if structs > 0 {
            stats.clients += 1;
        }
        if let Some(begins) = begins {
            stats.sections.push((client, begins, clock));
        }
        if authored {
            stats.authors.push((client, clock));
        }
        if let Some(spans) = spans.as_deref_mut() {
            if !ranges.is_empty() {
                spans.push(Span {
                    client,
                    clock: first,
                    structs: ranges,
                });
            }
        }
    }
    // The delete set.
    let ds_start = c.pos;
    let clients = c.count(2)?;
    for _ in 0..clients {
        c.client()?;
        let ranges = c.count(2)?;
        for _ in 0..ranges {
            let clock = c.clock()?;
            let len = c.var()?;
            if clock + len > CLOCK_LIMIT {
                return Err(ScanError::Clock);
            }
            stats.delete_ranges += 1;
        }
    }
    if c.remaining() != 0 {
        return Err(ScanError::Truncated);
    }
    Ok((stats, ds_start..c.pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::updates::decoder::Decode;
    use yrs::{Doc, GetString, Map, Options, ReadTxn, StateVector, Text, Transact, Update};

    fn doc(client: u64) -> Doc {
        Doc::with_options(Options {
            client_id: yrs::block::ClientID::new(client),
            offset_kind: yrs::OffsetKind::Utf16,
            ..Options::default()
        })
    }

    fn edit(d: &Doc, f: impl FnOnce(&yrs::TextRef, &mut yrs::TransactionMut)) -> Vec<u8> {
        let text = d.get_or_insert_text("code");
        let mut txn = d.transact_mut();
        f(&text, &mut txn);
        txn.encode_update_v1()
    }

    fn var(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// One string struct of `client` at `clock`, parent the root `root`.
    fn hand_made(client: u64, clock: u64, root: &str, s: &str) -> Vec<u8> {
        let mut u = vec![];
        var(&mut u, 1);
        var(&mut u, 1);
        var(&mut u, client);
        var(&mut u, clock);
        u.push(REF_STRING);
        var(&mut u, 1);
        var(&mut u, root.len() as u64);
        u.extend_from_slice(root.as_bytes());
        var(&mut u, s.len() as u64);
        u.extend_from_slice(s.as_bytes());
        var(&mut u, 0);
        u
    }

    #[test]
    fn accepts_what_text_editing_produces_and_counts_it() {
        let a = doc(7);
        let u1 = edit(&a, |t, txn| t.insert(txn, 0, "hello 😀"));
        let s = scan(&u1, "code").unwrap();
        assert_eq!((s.structs, s.clients, s.inserted_units), (1, 1, 8));
        assert_eq!(s.authors, vec![(7, 8)]);
        let u2 = edit(&a, |t, txn| {
            t.remove_range(txn, 0, 2);
            t.insert(txn, 3, "xy");
        });
        assert!(scan(&u2, "code").is_ok());
        let full = a
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        let s = scan(&full, "code").unwrap();
        assert!(s.delete_ranges >= 1);
        // The hand-made encoder agrees with yrs.
        let made = hand_made(9, 0, "code", "hi");
        assert_eq!(scan(&made, "code").unwrap().inserted_units, 2);
        let b = doc(1);
        b.transact_mut()
            .apply_update(Update::decode_v1(&made).unwrap())
            .unwrap();
        assert_eq!(b.get_or_insert_text("code").get_string(&b.transact()), "hi");
    }

    #[test]
    fn refuses_clock_ranges_past_32_bits() {
        assert_eq!(
            scan(&hand_made(9, (1 << 32) - 2, "code", "hello"), "code"),
            Err(ScanError::Clock)
        );
        assert_eq!(
            scan(&hand_made(9, 1 << 40, "code", "x"), "code"),
            Err(ScanError::Clock)
        );
        assert!(scan(&hand_made(9, (1 << 32) - 5, "code", "hello"), "code").is_ok());
    }

    #[test]
    fn refuses_other_roots_other_content_and_huge_ids() {
        assert_eq!(
            scan(&hand_made(9, 0, "other", "x"), "code"),
            Err(ScanError::Parent)
        );
        let m = doc(3);
        let map = m.get_or_insert_map("code");
        let u = {
            let mut txn = m.transact_mut();
            map.insert(&mut txn, "k", "v");
            txn.encode_update_v1()
        };
        assert!(scan(&u, "code").is_err());
        assert_eq!(
            scan(&hand_made(1 << 60, 0, "code", "x"), "code"),
            Err(ScanError::ClientId)
        );
    }

    #[test]
    fn refuses_impossible_counts_truncation_and_trailing_bytes() {
        // Three bytes declaring a million clients.
        assert_eq!(scan(&[0xc0, 0x84, 0x3d], "code"), Err(ScanError::Count));
        let ok = hand_made(9, 0, "code", "x");
        for cut in 0..ok.len() {
            assert!(scan(&ok[..cut], "code").is_err(), "cut at {cut}");
        }
        let mut long = ok.clone();
        long.push(0);
        assert_eq!(scan(&long, "code"), Err(ScanError::Truncated));
    }

    #[test]
    fn refuses_nul_characters() {
        assert_eq!(
            scan(&hand_made(9, 0, "code", "a\0b"), "code"),
            Err(ScanError::Nul)
        );
    }

    #[test]
    fn split_pieces_have_the_updates_effect() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let a = doc(7);
        let b = doc(8);
        let mut updates = Vec::new();
        for i in 0..60u32 {
            let (d, other) = if i % 3 == 0 { (&b, &a) } else { (&a, &b) };
            let u = edit(d, |t, txn| {
                let len = t.len(txn);
                if len > 4 && rng.gen_bool(0.3) {
                    t.remove_range(txn, rng.gen_range(0..len - 2), 2);
                } else {
                    t.insert(txn, rng.gen_range(0..=len), "ab😀");
                }
            });
            other
                .transact_mut()
                .apply_update(Update::decode_v1(&u).unwrap())
                .unwrap();
            updates.push(u);
        }
        let full = a
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        let expected = a.get_or_insert_text("code").get_string(&a.transact());
        for per_piece in [1, 2, 7, 1000] {
            let pieces = split(&full, "code", per_piece).unwrap();
            let c = doc(99);
            for p in &pieces {
                assert!(scan(p, "code").is_ok());
                c.transact_mut()
                    .apply_update(Update::decode_v1(p).unwrap())
                    .unwrap();
            }
            let text = c.get_or_insert_text("code").get_string(&c.transact());
            assert_eq!(text, expected, "per_piece {per_piece}");
        }
        // A delete-only update is one piece.
        let del = edit(&a, |t, txn| t.remove_range(txn, 0, 1));
        assert_eq!(split(&del, "code", 1).unwrap().len(), 1);
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let base = hand_made(9, 0, "code", "hello");
        for _ in 0..20_000 {
            let mut b = base.clone();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..b.len());
                b[i] = rng.gen();
            }
            let _ = scan(&b, "code");
        }
    }
}
