//! Turning a seed client's whole-text `code_change` into a minimal edit of the shared document.
//!
//! A seed client sends its entire text after each keystroke, computed from the last text it saw. A
//! blind overwrite would revert whatever other participants typed meanwhile, so the hub:
//!
//! 1. picks the *base* the client most likely edited (of the recent texts it was sent and its own last
//!    text, the one closest to the new text),
//! 2. takes the client's change as one replaced range of that base (common prefix/suffix, UTF-16 units,
//!    the unit Yjs and the browser count in),
//! 3. moves that range over the changes made since the base (also one replaced range), and applies it.
//!
//! Concurrent edits elsewhere in the text survive; only truly overlapping edits can conflict.

/// One replaced range: `[start, end)` of the old text (UTF-16 units) replaced by `insert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splice {
    pub start: u32,
    pub end: u32,
    pub insert: String,
}

impl Splice {
    pub fn is_noop(&self) -> bool {
        self.start == self.end && self.insert.is_empty()
    }
}

fn is_high_surrogate(u: u16) -> bool {
    (0xD800..0xDC00).contains(&u)
}
fn is_low_surrogate(u: u16) -> bool {
    (0xDC00..0xE000).contains(&u)
}

/// The replaced range that turns `old` into `new` (common prefix and suffix removed), never splitting
/// a surrogate pair. Lengths are in UTF-16 units.
pub fn diff_units(old: &[u16], new: &[u16]) -> (usize, usize, usize) {
    let max = old.len().min(new.len());
    let mut prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    if prefix > 0
        && prefix < old.len().max(new.len())
        && is_high_surrogate(old.get(prefix - 1).copied().unwrap_or(0))
    {
        prefix -= 1;
    }
    let mut suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count()
        .min(max - prefix);
    if suffix > 0 && is_low_surrogate(old[old.len() - suffix]) {
        suffix -= 1;
    }
    (prefix, old.len() - suffix, new.len() - suffix)
}

/// The splice that turns `old` into `new`.
pub fn diff(old: &str, new: &str) -> Splice {
    let o: Vec<u16> = old.encode_utf16().collect();
    let n: Vec<u16> = new.encode_utf16().collect();
    let (start, old_end, new_end) = diff_units(&o, &n);
    Splice {
        start: start as u32,
        end: old_end as u32,
        insert: String::from_utf16_lossy(&n[start..new_end]),
    }
}

/// How bad an edit is as an explanation of the client's change: first what it deletes (deleting text
/// the client never saw is how concurrent work gets wiped), then its size.
fn cost(s: &Splice) -> (u32, usize) {
    (
        s.end - s.start,
        (s.end - s.start) as usize + s.insert.encode_utf16().count(),
    )
}

/// Where the client's change (made against one of `bases`) lands in `current`.
///
/// `bases` are the texts the client may have edited; the one that explains `new` with the fewest
/// deleted units wins, then the smallest edit (ties: the latest, which is last in the slice).
pub fn rebase(bases: &[&str], current: &str, new: &str) -> Splice {
    let mut best: Option<(&str, Splice)> = None;
    for base in bases.iter().rev().chain(std::iter::once(&current)) {
        let s = diff(base, new);
        if best.as_ref().is_none_or(|(_, b)| cost(&s) < cost(b)) {
            best = Some((base, s));
        }
    }
    let Some((base, mine)) = best else {
        return diff(current, new);
    };
    if base == current {
        return mine;
    }
    // What happened to the base meanwhile, as one replaced range [cs, ce) -> `theirs_len` units.
    let theirs = diff(base, current);
    let theirs_len = theirs.insert.encode_utf16().count() as u32;
    let shift = |p: u32, is_end: bool| -> u32 {
        // A position where someone else inserted text lands after it (their text came first).
        if p < theirs.start || (p == theirs.start && theirs.start < theirs.end && !is_end) {
            p
        } else if p >= theirs.end {
            p - (theirs.end - theirs.start) + theirs_len
        } else if is_end {
            // Inside a range someone else replaced: keep their text, end after it.
            theirs.start + theirs_len
        } else {
            theirs.start
        }
    };
    let start = shift(mine.start, false);
    let end = if mine.start == mine.end {
        start
    } else {
        shift(mine.end, true).max(start)
    };
    Splice {
        start,
        end,
        insert: mine.insert,
    }
}

/// Applies a splice to a string (test helper and sanity check).
pub fn apply(text: &str, s: &Splice) -> String {
    let units: Vec<u16> = text.encode_utf16().collect();
    let mut out: Vec<u16> = units[..s.start as usize].to_vec();
    out.extend(s.insert.encode_utf16());
    out.extend_from_slice(&units[s.end as usize..]);
    String::from_utf16_lossy(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_finds_the_single_changed_range() {
        assert_eq!(
            diff("hello world", "hello brave world"),
            Splice {
                start: 6,
                end: 6,
                insert: "brave ".into()
            }
        );
        assert_eq!(
            diff("abc", "abc"),
            Splice {
                start: 3,
                end: 3,
                insert: String::new()
            }
        );
        assert_eq!(
            diff("abcdef", "abef"),
            Splice {
                start: 2,
                end: 4,
                insert: String::new()
            }
        );
        assert_eq!(
            diff("", "x"),
            Splice {
                start: 0,
                end: 0,
                insert: "x".into()
            }
        );
    }

    #[test]
    fn diff_never_splits_surrogate_pairs() {
        // 😀 and 😃 share their high surrogate.
        let s = diff("a😀b", "a😃b");
        assert_eq!(
            s,
            Splice {
                start: 1,
                end: 3,
                insert: "😃".into()
            }
        );
        let s = diff("😀", "😀😀");
        assert_eq!(apply("😀", &s), "😀😀");
        let s = diff("x😀", "x😃");
        assert_eq!(s.start, 1);
        assert_eq!(apply("x😀", &s), "x😃");
    }

    #[test]
    fn rebase_keeps_concurrent_work_elsewhere() {
        // The client typed "!" at the end of "abc"; meanwhile someone prepended "XY".
        let s = rebase(&["abc"], "XYabc", "abc!");
        assert_eq!(apply("XYabc", &s), "XYabc!");
        // The client deleted "b" while someone appended "Z".
        let s = rebase(&["abc"], "abcZ", "ac");
        assert_eq!(apply("abcZ", &s), "acZ");
    }

    #[test]
    fn rebase_prefers_the_closest_base() {
        let bases = ["fn main() {}", "fn main() { x }"];
        let s = rebase(&bases, "// top\nfn main() { x }", "fn main() { xy }");
        assert_eq!(
            apply("// top\nfn main() { x }", &s),
            "// top\nfn main() { xy }"
        );
    }

    #[test]
    fn rebase_does_not_turn_an_insert_into_a_replacement() {
        // The client typed "s2;" (applied: current has it), then got a stale text without it and typed
        // "s4;" on that. Replacing "2" by "4" is the smallest edit, but it would wipe "s2;".
        let bases = ["s0;", "a1;s0;", "a1;s0;s2;", "s0;s2;"];
        let s = rebase(&bases, "a1;s0;s2;", "a1;s0;s4;");
        assert_eq!(apply("a1;s0;s2;", &s), "a1;s0;s2;s4;");
    }

    #[test]
    fn rebase_with_current_base_is_plain_diff() {
        let s = rebase(&[], "hello", "help");
        assert_eq!(apply("hello", &s), "help");
    }

    #[test]
    fn random_splices_round_trip() {
        use rand::{Rng, SeedableRng};
        let alphabet: Vec<char> = "ab é😀\n".chars().collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..2000 {
            let a: String = (0..rng.gen_range(0..12))
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            let b: String = (0..rng.gen_range(0..12))
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            let s = diff(&a, &b);
            assert_eq!(apply(&a, &s), b, "{a:?} -> {b:?}");
        }
    }
}
