//! A seed-protocol client as a Yjs peer.
//!
//! A client written against the original design sends its whole text with `code_change` on every
//! change. The hub treats each such connection as a Yjs peer with a client id of its own that edits
//! the last text it saw. Per connection it keeps the texts the client may have based its change on —
//! the text it last sent, and the texts sent to it since (`sync_code`, `code_updated`) — each with a
//! [`Snapshot`] of the document when the client had it (a [`Base`]). A new text is diffed (by
//! characters, Myers) against the one it was most likely made from ([`Rank`]: the fewest changed
//! places, then the fewest deleted characters its own last text did not have, then the fewest
//! changed characters), and the diff is encoded as the update an offline Yjs peer at that snapshot
//! would have made: each insertion between the two characters around it in the base (its left and
//! right origins), each deletion naming the characters that were there.
//! Applied to the document, it merges with everything that happened since exactly as that peer's
//! edit would; a client alone always ends with exactly its own text.
//!
//! A base names characters that may have been deleted since, so the document keeps deleted
//! characters (`skip_gc`, see [`super::docs::new_doc`]).
//!
//! Cost: a change is diffed in the window around what it changed (the texts' common start and end
//! are compared as bytes, not diffed), and its base's characters are known without walking the
//! document: the text an edit gives gets them from its base (less what it deleted, plus what it
//! inserted), a text sent to clients has them read from the document once, the first time a change
//! is made from it. An edit made from the document's current text gives exactly the client's text,
//! which is not read back; one made from an older text gives a text worked out from the document's
//! text before it and what the edit wrote ([`Base::merged`]), not read back either: reading walks
//! every item the document keeps, deleted ones too, so it grows with the interview's history.
//!
//! Memory: per connection at most [`MAX_BASES`] bases holding [`MAX_BASE_BYTES`] of text. A base
//! is the text, a snapshot (one entry per client of the document and one per deleted range,
//! bounded by the document caps) and, once known, where its characters live (16 bytes per piece of
//! one author's consecutive writing), shared with every seed connection it was sent to; a client
//! that lags further behind than that has its change merged against the oldest text still kept.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use similar::algorithms::{myers, Capture};
use similar::DiffOp;
use yrs::encoding::write::Write;
use yrs::types::text::{ChangeKind, YChange};
use yrs::updates::encoder::Encode;
use yrs::{
    Any, Assoc, ClientID, IdSet, Out, ReadTxn, Snapshot, StateVector, StickyIndex, Text, TextRef,
    TransactionMut, ID,
};

/// Bases kept per seed connection: the text it last sent, and the most recent texts sent to it.
pub const MAX_BASES: usize = 32;
/// And at most this much of their text (the texts are shared with the other connections they were
/// sent to).
pub const MAX_BASE_BYTES: usize = 4 << 20;

/// A text a seed client had, with the state of the document when it had it.
pub struct Base {
    pub text: Arc<str>,
    /// The text's length in UTF-16 units.
    units: u64,
    snapshot: Snapshot,
    /// Where its units live in the document, once known: made with the edit that wrote the text
    /// (the base's runs, less what it deleted, plus what it inserted), or read from the document the
    /// first time a change is made from it (a text sent to clients) — so a client editing its own
    /// last text never walks the document.
    runs: OnceLock<Runs>,
    /// The document's version (changed by every update, see [`super::docs::SharedDoc`]) at
    /// which this was the document's text, when known: an edit made from it while the document is
    /// still at that version gives exactly the client's text, which need not be read back.
    version: OnceLock<u64>,
}

impl std::fmt::Debug for Base {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Base")
            .field("units", &self.units)
            .finish_non_exhaustive()
    }
}

impl Base {
    /// Whether the document is still in the state this base was captured in.
    pub fn matches<T: ReadTxn>(&self, txn: &T) -> bool {
        self.snapshot.state_map == txn.state_vector()
    }

    /// The document's current state, whose text is `text`.
    pub fn capture<T: ReadTxn>(txn: &T, text: Arc<str>) -> Arc<Base> {
        Arc::new(Base {
            units: utf16_len(&text),
            text,
            snapshot: txn.snapshot(),
            runs: OnceLock::new(),
            version: OnceLock::new(),
        })
    }

    /// This text is the document's at `version` (the first call counts).
    pub fn at_version(&self, version: u64) {
        let _ = self.version.set(version);
    }

    /// Whether this text is known to be the document's at `version`.
    pub fn is_at_version(&self, version: u64) -> bool {
        self.version.get() == Some(&version)
    }

    /// The document's text and state once `edit` is applied, when this base was the document's
    /// text and state just before (see [`Base::is_at_version`]): worked out from this text, where
    /// its units live, and what the edit wrote, so the document's text is not read back (an edit
    /// made from an older text merges with what others did since, and reading the result walks
    /// every item the document keeps, deleted ones too, and builds the text).
    ///
    /// Deletions remove the units this text still has. An insertion lands between its origins in
    /// the document, whatever else lies there: when they are neighbours in this text (or the
    /// text's ends) it lands between them here too. Otherwise (others wrote between them, or
    /// deleted one of them, since the edit's base) the document says where it landed: the units
    /// before it, counted leftwards from it (yrs' sticky index), a walk over part of the document
    /// without building any text. `None` when where this text's units live is not known (see
    /// [`Base::find_runs`]).
    pub fn merged(&self, txn: &mut TransactionMut, edit: &Edit) -> Option<Arc<Base>> {
        let w = &edit.written;
        edit.update.as_ref()?;
        let runs = self.runs.get()?;
        let n = runs.len();
        // The units it deletes that this text has, in order, joined.
        let mut gone = Vec::with_capacity(w.deleted.len());
        for &range in &w.deleted {
            runs.offsets_of(range, &mut gone);
        }
        gone.sort_unstable();
        let mut dels: Vec<(u32, u32)> = Vec::with_capacity(gone.len());
        for (a, b) in gone {
            match dels.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => dels.push((a, b)),
            }
        }
        // This text less what it deletes: `kept`, with its runs.
        let old = &*self.text;
        let mut kept = String::with_capacity(old.len());
        let mut kept_runs = Runs::with_capacity(runs.runs.len() + dels.len());
        let mut cursor = Cursor::new(old);
        for &(from, to) in dels.iter().chain(std::iter::once(&(n, n))) {
            cursor.copy_to(from, runs, &mut kept, &mut kept_runs)?;
            cursor.advance(to)?;
        }
        // Each insertion's place in `kept`: from its origins here when they are neighbours, else
        // from the document (its offset there less the units inserted before it: the edit's
        // insertions keep their order, each lies between its origins).
        let deleted_before =
            |p: u32| -> u32 { dels.iter().map(|&(a, b)| b.min(p).saturating_sub(a)).sum() };
        let mut at = Vec::with_capacity(w.inserted.len());
        let mut inserted_before = 0u32;
        for ins in &w.inserted {
            let left = ins.left.map(|id| runs.offset_of(id));
            let right = ins.right.map(|id| runs.offset_of(id));
            let here = match (left, right) {
                (Some(Some(l)), Some(Some(r))) if r == l + 1 => Some(r),
                (Some(Some(l)), None) if l + 1 == n => Some(n),
                (None, Some(Some(0))) => Some(0),
                (None, None) if n == 0 => Some(0),
                _ => None,
            };
            let pos = match here {
                Some(p) => p - deleted_before(p),
                None => {
                    let id = ID::new(ClientID::new(w.client), ins.clock);
                    let offset = StickyIndex::from_id(id, Assoc::After).get_offset(txn)?;
                    offset.index.checked_sub(inserted_before)?
                }
            };
            at.push(pos);
            inserted_before += ins.units;
        }
        if at.windows(2).any(|p| p[0] > p[1]) || at.last().is_some_and(|&p| p > kept_runs.len()) {
            return None;
        }
        // The insertions put in.
        let mut out = String::with_capacity(
            kept.len() + w.inserted.iter().map(|i| i.text.len()).sum::<usize>(),
        );
        let mut new_runs = Runs::with_capacity(kept_runs.runs.len() + 2 * at.len());
        let mut cursor = Cursor::new(&kept);
        let kept_len = kept_runs.len();
        for (ins, &p) in w
            .inserted
            .iter()
            .zip(at.iter())
            .map(|(i, p)| (Some(i), p))
            .chain(std::iter::once((None, &kept_len)))
        {
            cursor.copy_to(p, &kept_runs, &mut out, &mut new_runs)?;
            if let Some(ins) = ins {
                out.push_str(&ins.text);
                new_runs.push(w.client, ins.clock, ins.units);
            }
        }

        let mut snapshot = Snapshot::new(
            self.snapshot.state_map.clone(),
            self.snapshot.delete_set.clone(),
        );
        if !w.inserted.is_empty() {
            snapshot.state_map.set_max(ClientID::new(w.client), w.clock);
        }
        for &(c, k, len) in &w.deleted {
            snapshot
                .delete_set
                .insert(ID::new(ClientID::new(c), k), len);
        }
        Some(Arc::new(Base {
            units: u64::from(new_runs.len()),
            text: Arc::from(out),
            snapshot,
            runs: OnceLock::from(new_runs),
            version: OnceLock::new(),
        }))
    }

    /// Finds where this text's units live in the document (`text`), unless known: a walk over the
    /// document's items through a snapshot, dearer than reading the text, so worth it only for a
    /// text several changes will be worked out from ([`Base::merged`]: each result comes with
    /// them).
    pub fn find_runs(&self, txn: &mut TransactionMut, text: &TextRef) {
        if self.runs.get().is_none() {
            if let Some(runs) = Runs::resolve(txn, text, &self.snapshot, &self.text) {
                let _ = self.runs.set(runs);
            }
        }
    }

    /// (Debug builds) The runs known for this text are where the document (`text`) has it.
    #[cfg(debug_assertions)]
    pub fn check_runs(&self, txn: &mut TransactionMut, text: &TextRef) {
        if let Some(runs) = self.runs.get() {
            let read = Runs::resolve(txn, text, &self.snapshot, &self.text);
            assert_eq!(read.as_ref(), Some(runs), "runs of {:?}", self.text);
        }
    }
}

/// One piece of a base's text: `len` UTF-16 units written by `client` from `clock` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    client: u64,
    clock: u32,
    len: u32,
}

/// Where each UTF-16 unit of a base's text lives in the document.
#[derive(Debug, PartialEq, Eq)]
struct Runs {
    runs: Vec<Run>,
    /// `starts[i]`: the text offset of `runs[i]`.
    starts: Vec<u32>,
}

impl Runs {
    fn with_capacity(n: usize) -> Runs {
        Runs {
            runs: Vec::with_capacity(n),
            starts: Vec::with_capacity(n),
        }
    }

    /// The characters visible at `snapshot`, in document order, with their ids; `None` when they do
    /// not spell `expected` (characters of the base were dropped from the document).
    fn resolve(
        txn: &mut TransactionMut,
        text: &TextRef,
        snapshot: &Snapshot,
        expected: &str,
    ) -> Option<Runs> {
        let nothing = Snapshot::new(StateVector::default(), IdSet::default());
        // Every piece visible at `snapshot` and not at `nothing` comes back as "added", one chunk per
        // item, with the id of its first unit.
        let chunks = text.diff_range(txn, Some(snapshot), Some(&nothing), YChange::identity);
        let mut runs = Runs::with_capacity(chunks.len());
        let mut rest = expected;
        for chunk in chunks {
            let (Out::Any(Any::String(s)), Some(change)) = (&chunk.insert, chunk.ychange) else {
                return None;
            };
            if !matches!(change.kind, ChangeKind::Added) {
                return None;
            }
            rest = rest.strip_prefix(&**s)?;
            let len = s.encode_utf16().count() as u32;
            runs.push(change.id.client.get(), change.id.clock, len);
        }
        rest.is_empty().then_some(runs)
    }

    /// The id of the unit at `offset`.
    fn id_at(&self, offset: u32) -> (u64, u32) {
        let i = self.starts.partition_point(|&s| s <= offset) - 1;
        let r = self.runs[i];
        (r.client, r.clock + (offset - self.starts[i]))
    }

    /// The offset of the unit `clock` of `client`, when the text has it.
    fn offset_of(&self, (client, clock): (u64, u32)) -> Option<u32> {
        self.runs
            .iter()
            .zip(&self.starts)
            .find(|(r, _)| r.client == client && r.clock <= clock && clock - r.clock < r.len)
            .map(|(r, &s)| s + (clock - r.clock))
    }

    /// The offsets of the units of `client` from `clock` on (`len` of them) that the text has, as
    /// ranges, added to `out`.
    fn offsets_of(&self, (client, clock, len): (u64, u32, u32), out: &mut Vec<(u32, u32)>) {
        let end = clock + len;
        for (r, &s) in self.runs.iter().zip(&self.starts) {
            if r.client == client && r.clock < end && clock < r.clock + r.len {
                let from = clock.max(r.clock);
                let to = end.min(r.clock + r.len);
                out.push((s + (from - r.clock), s + (to - r.clock)));
            }
        }
    }

    /// The ids of the units in `from..to`, piece by piece: `f(client, clock, len)`.
    fn pieces(&self, from: u32, to: u32, mut f: impl FnMut(u64, u32, u32)) {
        let mut at = from;
        while at < to {
            let i = self.starts.partition_point(|&s| s <= at) - 1;
            let r = self.runs[i];
            let skip = at - self.starts[i];
            let len = (r.len - skip).min(to - at);
            f(r.client, r.clock + skip, len);
            at += len;
        }
    }

    /// Appends the runs of the units in `from..to` to `out`.
    fn copy_into(&self, from: u32, to: u32, out: &mut Runs) {
        self.pieces(from, to, |c, k, len| out.push(c, k, len));
    }

    /// The ids of the units in `from..to`, as `(client, clock, len)` ranges.
    fn ids(&self, from: u32, to: u32, out: &mut Vec<(u64, u32, u32)>) {
        self.pieces(from, to, |c, k, len| out.push((c, k, len)));
    }

    /// The text's length in UTF-16 units.
    fn len(&self) -> u32 {
        self.starts
            .last()
            .map_or(0, |&s| s + self.runs.last().map_or(0, |r| r.len))
    }

    /// Appends `len` units from `client`'s `clock` on, joined to the last run when they continue it.
    fn push(&mut self, client: u64, clock: u32, len: u32) {
        if len == 0 {
            return;
        }
        let end = self.len();
        if let Some(last) = self.runs.last_mut() {
            if last.client == client && last.clock + last.len == clock {
                last.len += len;
                return;
            }
        }
        self.starts.push(end);
        self.runs.push(Run { client, clock, len });
    }

    /// The runs of the text `hunks` make of this one, the insertions written by `client` from
    /// `clock` on, in order.
    fn edited(&self, hunks: &[Hunk], client: u64, mut clock: u32) -> Runs {
        let mut out = Runs::with_capacity(self.runs.len() + 2 * hunks.len());
        let mut at = 0;
        for h in hunks {
            self.copy_into(at, h.at, &mut out);
            let len = h.ins.encode_utf16().count() as u32;
            out.push(client, clock, len);
            clock += len;
            at = h.at + h.del;
        }
        self.copy_into(at, self.len(), &mut out);
        out
    }
}

/// A place in a text, in UTF-16 units and bytes, moving forwards.
struct Cursor<'a> {
    text: &'a str,
    unit: u32,
    byte: usize,
    /// Units are bytes.
    ascii: bool,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor {
            text,
            unit: 0,
            byte: 0,
            ascii: text.is_ascii(),
        }
    }

    /// Moves to the unit `to`, adding the text passed to `text` and its runs (`runs`: this text's)
    /// to `into`.
    fn copy_to(&mut self, to: u32, runs: &Runs, text: &mut String, into: &mut Runs) -> Option<()> {
        let (unit, byte) = (self.unit, self.byte);
        self.advance(to)?;
        text.push_str(&self.text[byte..self.byte]);
        runs.copy_into(unit, to, into);
        Some(())
    }

    /// Moves to the unit `to`; `None` when that is behind, past the text or inside a character.
    fn advance(&mut self, to: u32) -> Option<()> {
        if to < self.unit {
            return None;
        }
        let bytes = self.text.as_bytes();
        if self.ascii {
            let at = usize::try_from(to).ok()?;
            if at > bytes.len() {
                return None;
            }
            (self.unit, self.byte) = (to, at);
            return Some(());
        }
        // A character's first byte counts its units (two for four bytes), the others none.
        while self.unit < to && self.byte < bytes.len() {
            let b = bytes[self.byte];
            self.unit += u32::from(b >= 0xF0) + 1;
            self.byte += 1;
            while self.byte < bytes.len() && bytes[self.byte] & 0xC0 == 0x80 {
                self.byte += 1;
            }
        }
        (self.unit == to).then_some(())
    }
}

/// One change of a base: at UTF-16 offset `at`, `del` units removed and `ins` inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hunk {
    at: u32,
    del: u32,
    ins: String,
    /// The deleted characters' indices in the old text's characters.
    chars: std::ops::Range<usize>,
}

/// The minimal changes from `old` to `new` (characters; UTF-16 offsets). The diff gives up on
/// minimality at `deadline` (it is still exact). Built from the runs both texts share (the diff's
/// "equal" operations): what lies between two of them is one change. A pure insertion or deletion
/// that could sit at several places (`ab|ab` + `ab`) is moved to where its ends fall on the most
/// natural boundaries — line breaks, then spaces, then punctuation — as diff-match-patch's lossless
/// semantic clean-up does: that is most likely where the person's edit was, so it merges with
/// edits around it as theirs would.
///
/// `open`: whether `old` and `new` are windows whose start (end) is not the texts' — then a change
/// that reaches that end, or would slide past it, cannot be placed here (`None`).
fn hunks(old: &[char], new: &[char], deadline: Instant, open: (bool, bool)) -> Option<Vec<Hunk>> {
    let mut capture = Capture::new();
    // Capture's hooks cannot fail.
    let _ = myers::diff_deadline(
        &mut capture,
        old,
        0..old.len(),
        new,
        0..new.len(),
        Some(deadline),
    );
    // Old-text ranges replaced by new characters, in order.
    let mut raw: Vec<(usize, usize, Vec<char>)> = Vec::new();
    let (mut po, mut pn) = (0usize, 0usize);
    let mut gap = |po: usize, pn: usize, eo: usize, en: usize| {
        if eo > po || en > pn {
            raw.push((po, eo, new[pn..en].to_vec()));
        }
    };
    for op in capture.into_ops() {
        if let DiffOp::Equal {
            old_index,
            new_index,
            len,
        } = op
        {
            gap(po, pn, old_index, new_index);
            po = old_index + len;
            pn = new_index + len;
        }
    }
    gap(po, pn, old.len(), new.len());

    let mut placed: Vec<(usize, usize, Vec<char>)> = Vec::with_capacity(raw.len());
    for i in 0..raw.len() {
        let lo = placed.last().map_or(0, |p| p.1);
        let hi = raw.get(i + 1).map_or(old.len(), |r| r.0);
        let (o, oe, ins, reached) = slide(old, raw[i].clone(), lo, hi);
        if (open.0 && (o == 0 || reached.0)) || (open.1 && (oe == old.len() || reached.1)) {
            return None;
        }
        match placed.last_mut() {
            // Touching the previous change: one change (one insertion point).
            Some(prev) if prev.1 == o => {
                prev.1 = oe;
                prev.2.extend(ins);
            }
            _ => placed.push((o, oe, ins)),
        }
    }
    let mut units = Vec::with_capacity(old.len() + 1);
    let mut acc = 0u32;
    units.push(0);
    for c in old {
        acc += c.len_utf16() as u32;
        units.push(acc);
    }
    let hunks = placed
        .into_iter()
        .map(|(o, oe, ins)| Hunk {
            at: units[o],
            del: units[oe] - units[o],
            ins: ins.into_iter().collect(),
            chars: o..oe,
        })
        .collect();
    Some(hunks)
}

/// Characters kept on each side of what two texts do not share, for [`hunks`] to place changes in.
const MARGIN: usize = 64;

/// The part of two texts a diff looks at: what lies between their common start and end, with up to
/// [`MARGIN`] shared characters on each side — so a keystroke in a long text does not turn the
/// whole text into characters, twice, and diff it.
struct Window {
    old: Vec<char>,
    new: Vec<char>,
    /// UTF-16 units of the old text before the window.
    shift: u32,
    /// Whether the window starts after the texts' start, ends before their end.
    open: (bool, bool),
}

impl Window {
    fn new(old: &str, new: &str) -> Window {
        let (a, b) = (old.as_bytes(), new.as_bytes());
        let mut head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        while !old.is_char_boundary(head) {
            head -= 1;
        }
        let mut tail = a[head..]
            .iter()
            .rev()
            .zip(b[head..].iter().rev())
            .take_while(|(x, y)| x == y)
            .count();
        while !old.is_char_boundary(old.len() - tail) {
            tail -= 1;
        }
        let start = old[..head]
            .char_indices()
            .rev()
            .nth(MARGIN - 1)
            .map_or(0, |(i, _)| i);
        let suffix = &old[old.len() - tail..];
        let keep = suffix
            .char_indices()
            .nth(MARGIN)
            .map_or(suffix.len(), |(i, _)| i);
        let dropped = tail - keep;
        Window {
            old: old[start..old.len() - dropped].chars().collect(),
            new: new[start..new.len() - dropped].chars().collect(),
            shift: utf16_len(&old[..start]) as u32,
            open: (start > 0, dropped > 0),
        }
    }

    /// The changes from the old text to the new (see [`hunks`]), at offsets in the whole text;
    /// their `chars` index [`Window::old`]. A change that could slide out of the window has the
    /// whole texts diffed instead (the window then is the whole texts).
    fn diff(&mut self, old: &str, new: &str, deadline: Instant) -> Vec<Hunk> {
        if let Some(mut h) = hunks(&self.old, &self.new, deadline, self.open) {
            for x in &mut h {
                x.at += self.shift;
            }
            return h;
        }
        self.old = old.chars().collect();
        self.new = new.chars().collect();
        self.shift = 0;
        self.open = (false, false);
        hunks(&self.old, &self.new, deadline, self.open).unwrap_or_default()
    }
}

/// Moves a pure insertion or deletion within `lo..hi` of the old text to its best-scored place.
fn slide(
    old: &[char],
    (mut o, mut oe, mut ins): (usize, usize, Vec<char>),
    lo: usize,
    hi: usize,
) -> (usize, usize, Vec<char>, (bool, bool)) {
    let at = |i: usize| if i < old.len() { Some(old[i]) } else { None };
    let before = |i: usize| if i > 0 { Some(old[i - 1]) } else { None };
    if ins.is_empty() && oe > o {
        while o > lo && old[o - 1] == old[oe - 1] {
            o -= 1;
            oe -= 1;
        }
        let first = o == 0;
        let score = |o: usize, oe: usize| boundary(before(o), at(o)) + boundary(before(oe), at(oe));
        let mut best = (score(o, oe), o);
        while oe < hi && old[o] == old[oe] {
            o += 1;
            oe += 1;
            let s = score(o, oe);
            if s >= best.0 {
                best = (s, o);
            }
        }
        let len = oe - o;
        return (best.1, best.1 + len, ins, (first, oe == old.len()));
    }
    if oe == o && !ins.is_empty() {
        while o > lo && old[o - 1] == ins[ins.len() - 1] {
            ins.rotate_right(1);
            o -= 1;
        }
        let first = o == 0;
        let score = |o: usize, ins: &[char]| {
            boundary(before(o), ins.first().copied()) + boundary(ins.last().copied(), at(o))
        };
        let mut best = (score(o, &ins), o, ins.clone());
        while o < hi && old[o] == ins[0] {
            ins.rotate_left(1);
            o += 1;
            let s = score(o, &ins);
            if s >= best.0 {
                best = (s, o, ins.clone());
            }
        }
        return (best.1, best.1, best.2, (first, o == old.len()));
    }
    (o, oe, ins, (false, false))
}

/// How natural a place between `a` and `b` is for an edit to begin or end (after
/// diff-match-patch's scores, without its end-of-sentence rule, which code does not follow): the
/// text's ends 6, a line break 4, a space 2, punctuation 1. Among equals the rightmost place wins,
/// so a deleted line or word takes its own line break or space with it.
fn boundary(a: Option<char>, b: Option<char>) -> u8 {
    let (Some(a), Some(b)) = (a, b) else {
        return 6;
    };
    let (na, nb) = (!a.is_alphanumeric(), !b.is_alphanumeric());
    let (wa, wb) = (na && a.is_whitespace(), nb && b.is_whitespace());
    let (la, lb) = (
        wa && matches!(a, '\n' | '\r'),
        wb && matches!(b, '\n' | '\r'),
    );
    if la || lb {
        4
    } else if wa || wb {
        2
    } else if na || nb {
        1
    } else {
        0
    }
}

/// Whether `a` becomes `b` with at most `max` characters deleted and inserted: the edit distance
/// without substitutions, in a band of `max` around the diagonal, after the common ends.
fn within(a: &[char], b: &[char], max: usize) -> bool {
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[head..], &b[head..]);
    let tail = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (a, b) = (&a[..a.len() - tail], &b[..b.len() - tail]);
    let (n, m) = (a.len(), b.len());
    if n.abs_diff(m) > max {
        return false;
    }
    // row[j - i + max]: the distance from a[..i] to b[..j], for j within `max` of i.
    const FAR: usize = usize::MAX / 2;
    let width = 2 * max + 1;
    let mut prev = vec![FAR; width];
    for j in 0..=max.min(m) {
        prev[j + max] = j;
    }
    let mut row = vec![FAR; width];
    for i in 1..=n {
        row.fill(FAR);
        let mut least = FAR;
        for j in i.saturating_sub(max)..=(i + max).min(m) {
            let k = j + max - i;
            let mut d = if k + 1 < width { prev[k + 1] + 1 } else { FAR };
            if k > 0 {
                d = d.min(row[k - 1] + 1);
            }
            if j > 0 && a[i - 1] == b[j - 1] {
                d = d.min(prev[k]);
            }
            row[k] = d;
            least = least.min(d);
        }
        if least > max {
            return false;
        }
        std::mem::swap(&mut prev, &mut row);
    }
    prev[m + max - n] <= max
}

/// How far `new` is from a base, by the changes that turn one into the other: first the places
/// changed, then the UTF-16 units deleted and inserted. A client's change is mostly one place (a
/// keystroke, a paste); against a base it never had, what others did meanwhile shows as more
/// places.
fn distance(hunks: &[Hunk]) -> (usize, u64) {
    let units = hunks
        .iter()
        .map(|h| u64::from(h.del) + h.ins.encode_utf16().count() as u64)
        .sum();
    (hunks.len(), units)
}

/// The text a hunk deletes from `old`.
fn deleted(old: &[char], h: &Hunk) -> String {
    old[h.chars.clone()].iter().collect()
}

/// A text's length in UTF-16 units, from its UTF-8 bytes: one per character (every byte but a
/// continuation byte), two for a character of four bytes.
fn utf16_len(s: &str) -> u64 {
    s.bytes()
        .map(|b| u64::from(b & 0xC0 != 0x80) + u64::from(b >= 0xF0))
        .sum()
}

/// How likely a base is to be the one a text was made from, lowest first (docs/PROTOCOL.md, "Seed
/// clients"): the places changed; the units deleted that the client's own last text did not have;
/// the units changed; whether it is a text sent to the client rather than its own last text.
type Rank = (usize, u64, u64, bool);

/// A candidate base: its rank, its number, the base, the changes from it.
type Choice = (Rank, u64, Arc<Base>, Vec<Hunk>);

/// What [`SeedPeer::choose`] found.
enum Chosen {
    /// `new` is this base's text.
    Same(u64, Arc<Base>),
    /// The likeliest base and the changes from it.
    Diff(u64, Arc<Base>, Vec<Hunk>),
}

/// One insertion of an [`Edit`]: `units` UTF-16 units written from `clock` on, between the
/// base's units `left` and `right` (its origins; `None`: the text's start, end).
#[derive(Debug)]
struct Inserted {
    left: Option<(u64, u32)>,
    right: Option<(u64, u32)>,
    clock: u32,
    units: u32,
    text: String,
}

/// What an [`Edit`]'s update writes, for [`Base::merged`].
#[derive(Debug, Default)]
struct Written {
    inserted: Vec<Inserted>,
    /// The units it deletes, as `(client, clock, len)`, in the base's order.
    deleted: Vec<(u64, u32, u32)>,
    /// Its writer (the seed connection's client id), and the writer's clock after it.
    client: u64,
    clock: u32,
}

/// A seed client's text as a Yjs update.
#[derive(Debug)]
pub struct Edit {
    /// The update (v1) under the connection's client id; `None` when the text is a base already.
    pub update: Option<Vec<u8>>,
    /// What the update writes.
    written: Written,
    /// The client's new text with the state it stands for: its next base.
    pub base: Arc<Base>,
    /// The base it was made from.
    from: u64,
    /// That base.
    pub made_from: Arc<Base>,
}

/// Why a text could not be made into an edit of its base.
#[derive(Debug, PartialEq, Eq)]
pub enum SeedError {
    /// The base's characters are no longer all in the document.
    BaseLost,
}

/// A seed connection as a Yjs peer.
#[derive(Debug, Clone)]
pub struct SeedPeer {
    client: u64,
    /// The texts sent to it, numbered in the order they were sent, oldest first.
    seen: VecDeque<(u64, Arc<Base>)>,
    /// What it last sent, numbered as the text it was made from: the client had not seen anything
    /// sent after that one when it made it.
    own: Option<(u64, Arc<Base>)>,
    next: u64,
    /// The last text sent to it (numbered `next - 1`).
    last: Option<Arc<str>>,
}

impl SeedPeer {
    /// A peer writing under `client` (a client id no one else writes under), which was just sent
    /// `base`.
    pub fn new(client: u64, base: Arc<Base>) -> Self {
        let mut peer = Self {
            client,
            seen: VecDeque::new(),
            own: None,
            next: 0,
            last: None,
        };
        peer.saw(base);
        peer
    }

    pub fn client(&self) -> u64 {
        self.client
    }

    /// The client was sent `base`. The oldest texts sent to it go first past [`MAX_BASES`] or
    /// [`MAX_BASE_BYTES`].
    pub fn saw(&mut self, base: Arc<Base>) {
        if self.seen.back().is_some_and(|(_, b)| Arc::ptr_eq(b, &base)) {
            return;
        }
        self.last = Some(base.text.clone());
        self.seen.push_back((self.next, base));
        self.next += 1;
        let own = self.own.as_ref().map_or(0, |(_, b)| b.text.len());
        let mut bytes = own + self.seen.iter().map(|(_, b)| b.text.len()).sum::<usize>();
        while self.seen.len() > 1 && (self.bases() > MAX_BASES || bytes > MAX_BASE_BYTES) {
            if let Some((_, b)) = self.seen.pop_front() {
                bytes -= b.text.len();
            }
        }
    }

    /// Whether the client, whose change `sent` was just applied, must be sent the document's text
    /// `current`: it differs from what the client sent, or a text was sent to it after the one its
    /// change was made from, and the last such (it may arrive after this change and replace it: the
    /// seed protocol replaces the editor's text) is not `current` — so a client that echoes what
    /// it is sent is not answered again. Call after [`SeedPeer::applied`].
    pub fn must_be_sent(&self, sent: &str, current: &str) -> bool {
        let on_its_way = match (&self.own, self.next.checked_sub(1)) {
            (Some((from, _)), Some(last)) => last > *from,
            _ => false,
        };
        sent != current || (on_its_way && self.last.as_deref().is_some_and(|t| t != current))
    }

    /// Bases kept.
    pub fn bases(&self) -> usize {
        self.seen.len() + usize::from(self.own.is_some())
    }

    /// The edit was applied: the client's text is its newest base, and the texts sent to it before
    /// the one it edited are behind it (those sent after may still be what it edits next).
    pub fn applied(&mut self, edit: &Edit) {
        self.seen.retain(|(n, _)| *n > edit.from);
        self.own = Some((edit.from, edit.base.clone()));
    }

    /// The base `new` was most likely made from, and the changes from it.
    fn choose(&self, new: &str, deadline: Instant) -> Option<Chosen> {
        // Its own last text first (see `Rank`), then what was sent to it, newest first.
        let mut candidates: Vec<&(u64, Arc<Base>)> = self.own.iter().collect();
        candidates.extend(self.seen.iter().rev());
        // The same text may have been sent more than once (nothing changed it in between, or it
        // came back): the client may have had the oldest of them, so that is the one the texts
        // sent before it are dropped behind (`applied`).
        let oldest = |text: &str| {
            candidates
                .iter()
                .filter(|(_, b)| &*b.text == text)
                .map(|(n, _)| *n)
                .min()
        };
        if let Some((_, same)) = candidates.iter().find(|(_, b)| &*b.text == new) {
            // An echo of a text sent to it, or its own edit that happens to give that text: no
            // change, and nothing it may still edit is dropped.
            let first = candidates.iter().map(|(n, _)| *n).min()?;
            return Some(Chosen::Same(first, same.clone()));
        }
        let new_units = utf16_len(new);
        // The likeliest base: see `Rank`; the most recent of equal rank. Its own text is ranked
        // first (it is most often the one), and a text that cannot rank better is not diffed — a
        // change always has a place and at least as many units as the lengths differ by (a client
        // that never takes what it is sent would otherwise have every text kept diffed each time).
        let mut best: Option<Choice> = None;
        for (i, (n, base)) in candidates.iter().enumerate() {
            let is_own = i == 0 && self.own.is_some();
            let least = (1, 0, base.units.abs_diff(new_units), !is_own);
            if best.as_ref().is_some_and(|(r, ..)| least >= *r) {
                continue;
            }
            if candidates[..i].iter().any(|(_, b)| b.text == base.text) {
                // Its own text or a newer base with this text was ranked already and wins ties.
                continue;
            }
            let mut w = Window::new(&base.text, new);
            if let Some(((1, 0, units, _), ..)) = &best {
                // One place and nothing unseen deleted: only fewer changed units rank better, and
                // a character is at least one unit (the usual case — a client that takes what it
                // is sent has several texts of one length kept, all but one far from its change).
                let fewer = usize::try_from(units.saturating_sub(1)).unwrap_or(usize::MAX);
                if !within(&w.old, &w.new, fewer) {
                    continue;
                }
            }
            let h = w.diff(&base.text, new, deadline);
            let (places, units) = distance(&h);
            let rank = (places, self.unseen_deleted(&w.old, &h), units, !is_own);
            if best.as_ref().is_none_or(|(r, ..)| rank < *r) {
                best = Some((rank, *n, base.clone(), h));
            }
        }
        let (_, _, base, hunks) = best?;
        Some(Chosen::Diff(oldest(&base.text)?, base, hunks))
    }

    /// How many UTF-16 units `hunks` delete from a base that the client's own last text did not
    /// have: if that base is not what the client edited, they are someone's recent work it may
    /// never have seen. (By text, not by author: resolving every candidate's characters to their
    /// authors walks the whole document per candidate, which a client replacing its whole text
    /// several times a second cannot afford.)
    fn unseen_deleted(&self, old: &[char], hunks: &[Hunk]) -> u64 {
        let Some((_, own)) = &self.own else {
            return 0;
        };
        hunks
            .iter()
            .filter(|h| h.del > 0 && !own.text.contains(deleted(old, h).as_str()))
            .map(|h| u64::from(h.del))
            .sum()
    }

    /// The update that turns the likeliest base (see [`Rank`]) into `new`, applied at that base's state
    /// (`text` is the document's root type `root`); no update when `new` is one of the bases
    /// already. Call [`SeedPeer::applied`] once it is applied. The diff stops looking for the smallest
    /// change at `deadline` (a huge whole-text change; the result is exact regardless).
    pub fn edit(
        &self,
        txn: &mut TransactionMut,
        text: &TextRef,
        root: &str,
        new: &str,
        deadline: Instant,
    ) -> Result<Edit, SeedError> {
        let (from, base, hunks) = match self.choose(new, deadline).ok_or(SeedError::BaseLost)? {
            Chosen::Same(from, base) => {
                return Ok(Edit {
                    update: None,
                    written: Written::default(),
                    made_from: base.clone(),
                    base,
                    from,
                })
            }
            Chosen::Diff(from, base, hunks) => (from, base, hunks),
        };
        let runs = match base.runs.get() {
            Some(runs) => runs,
            None => {
                let resolved = Runs::resolve(txn, text, &base.snapshot, &base.text)
                    .ok_or(SeedError::BaseLost)?;
                base.runs.get_or_init(|| resolved)
            }
        };
        let client = ClientID::new(self.client);
        let start = txn.state_vector().get(&client);
        let base_len = runs.len();

        // The structs: one string item per insertion, anchored in the base; the characters it
        // deleted, as yrs' own delete set (it sorts and merges the ranges).
        let mut items = Vec::new();
        let mut clock = start;
        let mut deleted = IdSet::default();
        let mut ranges = Vec::new();
        let mut written = Written::default();
        for h in &hunks {
            if !h.ins.is_empty() {
                let left = (h.at > 0).then(|| runs.id_at(h.at - 1));
                let right = (h.at < base_len).then(|| runs.id_at(h.at));
                let units = h.ins.encode_utf16().count() as u32;
                written.inserted.push(Inserted {
                    left,
                    right,
                    clock,
                    units,
                    // Moved in from the hunk once its runs are made (below).
                    text: String::new(),
                });
                let mut info = 4u8; // string content
                if left.is_some() {
                    info |= 0x80;
                }
                if right.is_some() {
                    info |= 0x40;
                }
                items.write_u8(info);
                for (c, k) in left.iter().chain(right.iter()) {
                    items.write_var(*c);
                    items.write_var(*k);
                }
                if left.is_none() && right.is_none() {
                    items.write_var(1u32); // parent: a root type, by name
                    items.write_string(root);
                }
                items.write_string(&h.ins);
                clock += units;
            }
            ranges.clear();
            runs.ids(h.at, h.at + h.del, &mut ranges);
            for (c, k, len) in &ranges {
                deleted.insert(ID::new(ClientID::new(*c), *k), *len);
            }
            written.deleted.extend_from_slice(&ranges);
        }
        written.client = self.client;
        written.clock = clock;
        let structs = hunks.iter().filter(|h| !h.ins.is_empty()).count() as u32;
        let mut update = Vec::with_capacity(items.len() + 32);
        if structs > 0 {
            update.write_var(1u32);
            update.write_var(structs);
            update.write_var(self.client);
            update.write_var(start);
            update.extend_from_slice(&items);
        } else {
            update.write_var(0u32);
        }
        update.extend_from_slice(&deleted.encode_v1());

        // The client's new text stands for the base, plus its new characters, minus what it
        // deleted and minus anything of its own it wrote after the base and has since dropped.
        let mut snapshot = Snapshot::new(
            base.snapshot.state_map.clone(),
            base.snapshot.delete_set.clone(),
        );
        let at_base = base.snapshot.state_map.get(&client);
        if start > at_base {
            snapshot
                .delete_set
                .insert(ID::new(client, at_base), start - at_base);
        }
        if clock > start {
            snapshot.state_map.set_max(client, clock);
        }
        snapshot.delete_set.merge_with(deleted);
        let own = Arc::new(Base {
            text: Arc::from(new),
            units: utf16_len(new),
            snapshot,
            runs: OnceLock::from(runs.edited(&hunks, self.client, start)),
            version: OnceLock::new(),
        });
        let texts = hunks.into_iter().map(|h| h.ins).filter(|t| !t.is_empty());
        for (ins, text) in written.inserted.iter_mut().zip(texts) {
            ins.text = text;
        }
        Ok(Edit {
            update: Some(update),
            written,
            base: own,
            from,
            made_from: base,
        })
    }
}

#[cfg(test)]
mod tests;
