//! Seed clients as Yjs peers, against yrs directly: one client always ends with exactly its text;
//! a lagging client, bursts, and a client whose typing was overwritten keep everyone's text;
//! several seed clients and a Yjs client with random delays converge.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, OffsetKind, Options, ReadTxn, Text, TextRef, Transact, Update};

use super::*;
use crate::interview::docs::{new_doc, TEXT_NAME};

/// The hub's side: the document and one Yjs peer per seed connection.
struct Hub {
    doc: Doc,
    text: TextRef,
    peers: Vec<SeedPeer>,
    /// The document's text and state as [`Base::merged`] worked them out from the last seed edit.
    current: Option<Arc<Base>>,
    /// Seed edits whose result was worked out, and those whose result had to be read.
    merged: usize,
    read: usize,
}

impl Hub {
    fn new(initial: &str, seeds: usize) -> Self {
        let doc = new_doc();
        let text = doc.get_or_insert_text(TEXT_NAME);
        if !initial.is_empty() {
            text.insert(&mut doc.transact_mut(), 0, initial);
        }
        let mut hub = Hub {
            doc,
            text,
            peers: Vec::new(),
            current: None,
            merged: 0,
            read: 0,
        };
        for i in 0..seeds {
            let base = hub.base();
            hub.peers.push(SeedPeer::new(1_000 + i as u64, base));
        }
        hub
    }

    fn value(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    fn base(&self) -> Arc<Base> {
        let txn = self.doc.transact();
        let text = self.text.get_string(&txn);
        Base::capture(&txn, Arc::from(text.as_str()))
    }

    /// Seed client `i` sent `new`: returns the update applied (if any).
    fn code_change(&mut self, i: usize, new: &str) -> Option<Vec<u8>> {
        // The document's text and state before the edit: the last one worked out while nothing
        // else changed the document, else read.
        let before = match self.current.take() {
            Some(b) if b.matches(&self.doc.transact()) => b,
            _ => self.base(),
        };
        let edit = {
            let mut txn = self.doc.transact_mut();
            self.peers[i]
                .edit(&mut txn, &self.text, TEXT_NAME, new, far())
                .expect("the base is in the document")
        };
        let delta = edit.update.as_ref().map(|u| {
            let mut txn = self.doc.transact_mut();
            txn.apply_update(Update::decode_v1(u).unwrap()).unwrap();
            assert!(
                !txn.has_missing_updates(),
                "a seed edit depends only on what the hub has"
            );
            txn.encode_update_v1()
        });
        self.peers[i].applied(&edit);
        if edit.update.is_some() {
            let merged = {
                let mut txn = self.doc.transact_mut();
                before.find_runs(&mut txn, &self.text);
                before.merged(&mut txn, &edit)
            };
            match &merged {
                Some(after) => {
                    // Worked out, not read: exactly what the document holds, where it holds it.
                    assert_eq!(*after.text, self.value(), "the text worked out");
                    assert_eq!(after.units, utf16_len(&after.text), "its length");
                    assert!(after.matches(&self.doc.transact()), "its state vector");
                    let mut txn = self.doc.transact_mut();
                    let read = Runs::resolve(&mut txn, &self.text, &after.snapshot, &after.text)
                        .expect("the text is in the document at its snapshot");
                    assert_eq!(after.runs.get(), Some(&read), "its runs");
                    self.merged += 1;
                }
                None => self.read += 1,
            }
            self.current = merged;
        } else {
            self.current = Some(before);
        }
        if let Some(derived) = edit.base.runs.get() {
            // The runs an edit derived for its text (not read from the document) are where the
            // document has that text.
            let mut txn = self.doc.transact_mut();
            let read = Runs::resolve(&mut txn, &self.text, &edit.base.snapshot, &edit.base.text)
                .expect("the text is in the document");
            assert_eq!(*derived, read, "runs of {:?}", edit.base.text);
        }
        delta
    }

    fn apply(&mut self, update: &[u8]) -> Vec<u8> {
        self.current = None;
        let mut txn = self.doc.transact_mut();
        txn.apply_update(Update::decode_v1(update).unwrap())
            .unwrap();
        txn.encode_update_v1()
    }
}

#[test]
fn utf16_lengths_are_counted_from_the_bytes() {
    for s in [
        "",
        "abc",
        "é",
        "e\u{301}",
        "😀",
        "👩‍💻 x",
        "\r\n",
        "日本語",
        "a😀b\u{10FFFF}",
    ] {
        assert_eq!(utf16_len(s), s.encode_utf16().count() as u64, "{s:?}");
    }
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

#[test]
fn one_client_ends_with_exactly_its_text() {
    let mut hub = Hub::new("", 1);
    for text in [
        "hello world\n",
        "hello there\n",
        "",
        "fn main() {\n    println!(\"hi\");\n}\n",
        "fn main() {\n    println!(\"bye\");\n}\n",
        "    println!(\"bye\");\n}\n",
        "    println!(\"bye\");\n",
        "something else entirely",
        "something else entirely",
        "é😀 e\u{301}\r\nx",
        "😀",
        "",
    ] {
        hub.code_change(0, text);
        assert_eq!(hub.value(), text);
    }
}

#[test]
fn an_edit_carries_only_what_changed() {
    let line = "let value = compute(alpha, beta, gamma); // a line of code\n";
    let big: String = line.repeat(10 * 1024 / line.len());
    let mut hub = Hub::new(&big, 1);
    let mut edited = big.clone();
    edited.insert_str(5 * line.len() + 4, "mut ");
    let update = hub.code_change(0, &edited).unwrap();
    assert_eq!(hub.value(), edited);
    assert!(
        update.len() < 40,
        "{} bytes for a 4-character insert",
        update.len()
    );
    // Two changes far apart: two small pieces, not one big replacement.
    let mut two = edited.clone();
    two.replace_range(10..13, "VAL");
    two.push_str("// end\n");
    let update = hub.code_change(0, &two).unwrap();
    assert_eq!(hub.value(), two);
    assert!(
        update.len() < 80,
        "{} bytes for two small changes",
        update.len()
    );
}

#[test]
fn a_lagging_client_keeps_what_the_other_saved() {
    // F saves 20 changes; L, who never received them, changes the text it had.
    let mut hub = Hub::new("line\n", 2);
    let mut f = String::from("line\n");
    for i in 0..20 {
        f.push_str(&format!("F{i}\n"));
        hub.code_change(0, &f);
    }
    hub.code_change(1, "line changed by L\n");
    let value = hub.value();
    for i in 0..20 {
        assert!(value.contains(&format!("F{i}\n")), "F{i} lost: {value:?}");
    }
    assert!(value.starts_with("line changed by L\n"), "{value:?}");
}

#[test]
fn bursts_in_two_places_merge_without_splicing() {
    let start = "a1\na2\na3\nb1\nb2\nb3\n";
    let mut hub = Hub::new(start, 2);
    // Both send without hearing from each other.
    let mut a = start.to_string();
    let mut b = start.to_string();
    for i in 0..10 {
        a = a.replacen("a2\n", &format!("a2\nA{i}\n"), 1);
        b = b.replacen("b3\n", &format!("b3\nB{i}\n"), 1);
        hub.code_change(0, &a);
        hub.code_change(1, &b);
    }
    let value = hub.value();
    for i in 0..10 {
        assert_eq!(value.matches(&format!("A{i}\n")).count(), 1, "{value:?}");
        assert_eq!(value.matches(&format!("B{i}\n")).count(), 1, "{value:?}");
    }
    for line in ["a1\n", "a2\n", "a3\n", "b1\n", "b2\n", "b3\n"] {
        assert_eq!(value.matches(line).count(), 1, "{value:?}");
    }
}

#[test]
fn a_client_that_drops_its_typing_for_a_newer_text_keeps_both() {
    // A types X; before the hub has it, A is sent B's change and shows it (without X); A types Y.
    let mut hub = Hub::new("base\n", 2);
    hub.code_change(1, "base\nfrom B\n");
    let after_b = hub.base();
    // A had not received that when it typed X.
    hub.code_change(0, "X\nbase\n");
    // Then it received B's text (sent before X arrived) and typed Y on it.
    hub.peers[0].saw(after_b);
    hub.code_change(0, "base\nfrom B\nY\n");
    let value = hub.value();
    assert!(
        value.contains("X\n") && value.contains("Y\n") && value.contains("from B\n"),
        "{value:?}"
    );
}

#[test]
fn replacements_made_from_old_texts_are_worked_out_not_read() {
    // As `tools/loadgen --mode seed-replace`: five clients each replace the whole text with their
    // own line and never take what they are sent, so every change is made from an older text.
    let mut hub = Hub::new("", 5);
    let mut changes = 0;
    for round in 0..40 {
        for i in 0..5 {
            let line = format!("~{i}.{}~ {}é😀\n", round * 7, "x".repeat(20 + round % 3));
            if hub.code_change(i, &line).is_some() {
                changes += 1;
            }
            let b = hub.base();
            for j in (0..5).filter(|&j| j != i) {
                hub.peers[j].saw(b.clone());
            }
        }
    }
    // `code_change` asserts each result worked out against the document's.
    assert_eq!((hub.merged, hub.read), (changes, 0));
}

#[test]
fn an_insertion_between_characters_others_wrote_between_is_placed_where_the_document_put_it() {
    for (first, second) in [("aXb", "aYb"), ("aYb", "aXb")] {
        let mut hub = Hub::new("ab", 2);
        hub.code_change(0, first);
        // Client 1 still has "ab": its character goes between `a` and `b`, where client 0's now is
        // too — which side of it is Yjs' to say (`code_change` asserts the result worked out is the
        // document's).
        hub.code_change(1, second);
        let v = hub.value();
        assert!(v == "aXYb" || v == "aYXb", "{v:?}");
        // It deletes the `a` it had, next to either.
        hub.code_change(1, &second[1..]);
        // Client 0 still has its first text, whose left neighbour is gone.
        hub.code_change(0, &format!("{}Z", &first[..2]));
        assert_eq!((hub.merged, hub.read), (4, 0));
        assert_eq!(hub.value().chars().filter(|c| c.is_uppercase()).count(), 3);
    }
}

#[test]
fn a_first_change_that_only_deletes_from_an_older_text_is_worked_out() {
    let mut hub = Hub::new("abc", 2);
    hub.code_change(0, "abcd");
    // Client 1 has written nothing: the state worked out must not name it (`code_change` asserts
    // the state vector is the document's).
    hub.code_change(1, "bc");
    assert_eq!(hub.value(), "bcd");
    assert_eq!((hub.merged, hub.read), (2, 0));
}

#[test]
fn bases_are_bounded() {
    let mut hub = Hub::new("", 1);
    for i in 0..50 {
        let b = {
            hub.text.insert(&mut hub.doc.transact_mut(), 0, "x");
            hub.base()
        };
        hub.peers[0].saw(b);
        assert!(hub.peers[0].bases() <= MAX_BASES, "{i}");
    }
    let text = hub.value() + "!";
    hub.code_change(0, &text);
    assert_eq!(hub.value(), text);
}

#[test]
fn a_huge_whole_text_change_is_exact_past_the_deadline() {
    let old: String = (0..20_000)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    let new: String = (0..20_000)
        .map(|i| char::from(b'a' + (i * 11 % 26) as u8))
        .collect();
    let mut hub = Hub::new(&old, 1);
    let edit = {
        let mut txn = hub.doc.transact_mut();
        hub.peers[0]
            .edit(&mut txn, &hub.text, TEXT_NAME, &new, Instant::now())
            .unwrap()
    };
    hub.apply(edit.update.as_ref().unwrap());
    assert_eq!(hub.value(), new);
}

// ---------------------------------------------------------------------------------- properties

/// A random next text: inserts, deletes, replacements, whole-text replacements, with emoji,
/// combining marks and CRLF.
fn mutate(rng: &mut StdRng, text: &str) -> String {
    const PIECES: [&str; 10] = [
        "a",
        "fn x() {}\n",
        "é",
        "e\u{301}",
        "😀",
        "👩‍💻",
        "\r\n",
        " ",
        "ж",
        "line\n",
    ];
    let piece = |rng: &mut StdRng| -> String {
        (0..rng.gen_range(1..4))
            .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
            .collect()
    };
    let chars: Vec<char> = text.chars().collect();
    let at = |rng: &mut StdRng| rng.gen_range(0..=chars.len());
    let s = |cs: &[char]| cs.iter().collect::<String>();
    match rng.gen_range(0..6) {
        0 | 1 => {
            let i = at(rng);
            format!("{}{}{}", s(&chars[..i]), piece(rng), s(&chars[i..]))
        }
        2 => {
            let (i, j) = (at(rng), at(rng));
            let (i, j) = (i.min(j), i.max(j));
            format!("{}{}", s(&chars[..i]), s(&chars[j..]))
        }
        3 => {
            let (i, j) = (at(rng), at(rng));
            let (i, j) = (i.min(j), i.max(j));
            format!("{}{}{}", s(&chars[..i]), piece(rng), s(&chars[j..]))
        }
        4 => piece(rng),
        _ => {
            // Two places at once.
            let i = at(rng);
            let mut t = format!("{}{}{}", s(&chars[..i]), piece(rng), s(&chars[i..]));
            t.push_str(&piece(rng));
            t
        }
    }
}

proptest! {
    /// Diffing the window around what two texts do not share places every change where diffing
    /// the whole texts does — also a change in a long run of repeats, which slides past the margin.
    #[test]
    fn the_window_diffs_as_the_whole_texts(
        around in "[ab \n😀é]{0,4}",
        reps in 0usize..200,
        tail in "[ab\n😀]{0,80}",
        middle_old in "[ab \n😀é]{0,6}",
        middle_new in "[ab \n😀é]{0,6}",
    ) {
        let head = around.repeat(reps);
        let old = format!("{head}{middle_old}{tail}");
        let new = format!("{head}{middle_new}{tail}");
        prop_assume!(old != new);
        let whole: Vec<_> = {
            let (a, b): (Vec<char>, Vec<char>) = (old.chars().collect(), new.chars().collect());
            hunks(&a, &b, far(), (false, false))
                .unwrap()
                .into_iter()
                .map(|h| (h.at, h.del, h.ins))
                .collect()
        };
        let mut w = Window::new(&old, &new);
        let windowed: Vec<_> = w
            .diff(&old, &new, far())
            .into_iter()
            .map(|h| (h.at, h.del, h.ins))
            .collect();
        prop_assert_eq!(windowed, whole);
    }

    /// The banded bound `choose` skips candidates with agrees with the minimal diff.
    #[test]
    fn the_banded_bound_agrees_with_the_diff(
        a in "[ab\n😀é]{0,24}",
        b in "[ab\n😀é]{0,24}",
        max in 0usize..8,
    ) {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        let distance: usize = hunks(&a, &b, far(), (false, false))
            .unwrap()
            .iter()
            .map(|h| h.chars.len() + h.ins.chars().count())
            .sum();
        prop_assert_eq!(within(&a, &b, max), distance <= max, "distance {}", distance);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn one_seed_client_always_ends_with_its_last_text(seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut hub = Hub::new("", 1);
        let mut text = String::new();
        for _ in 0..40 {
            text = mutate(&mut rng, &text);
            hub.code_change(0, &text);
            prop_assert_eq!(hub.value(), text.clone());
        }
    }

    #[test]
    fn seed_and_yjs_clients_converge(seed in any::<u64>(), seeds in 2usize..=3) {
        let _ = simulate(seed, seeds, MAX_BASES / 2);
    }

    /// Clients that have every text sent to them before they edit (their change may still cross one
    /// on the wire) lose no one's words.
    #[test]
    fn seed_clients_in_step_lose_no_words(seed in any::<u64>(), seeds in 2usize..=3) {
        let lost = simulate(seed, seeds, 0);
        prop_assert!(lost.is_empty(), "words lost: {:?}", lost);
    }
}

/// What travels to the hub, in each connection's order.
enum ToHub {
    /// A seed client's text, and how many texts the hub had sent it by the time it had received
    /// the one it edited.
    Code(String, u64),
    Yjs(Vec<u8>),
}

struct SeedClient {
    text: String,
    inbox: VecDeque<String>,
    inserted: HashSet<String>,
    deleted: HashSet<String>,
}

/// Positions between tokens (texts are made of words, each ending with a space).
fn boundaries(text: &str) -> Vec<usize> {
    let mut b = vec![0];
    b.extend(text.match_indices(' ').map(|(i, _)| i + 1));
    b
}

/// The tokens in `text`.
fn tokens(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_string).collect()
}

/// A word of its own (identifiers in code differ by more than a digit).
fn word(rng: &mut StdRng, n: usize) -> String {
    let letters: String = (0..5)
        .map(|_| char::from(b'a' + rng.gen_range(0..26u8)))
        .collect();
    format!("{letters}{n}")
}

const FLAVOURS: [&str; 6] = ["", "é", "😀", "\r\n", "e\u{301}", "👩‍💻"];

/// `seeds` seed clients and one Yjs client edit at random; every message waits a random time.
/// Each client inserts words of its own and deletes only its own. At the end every replica — the
/// hub, the Yjs client, every seed client — has the same text (asserted); returned: the words
/// missing from it that their author did not delete. A seed client is at most `lag` texts behind
/// (those on their way to it, and those sent since the text its oldest change on the way was made
/// from).
fn simulate(seed: u64, seeds: usize, lag: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut hub = Hub::new("", seeds);
    let mut clients: Vec<SeedClient> = (0..seeds)
        .map(|_| SeedClient {
            text: String::new(),
            inbox: VecDeque::new(),
            inserted: HashSet::new(),
            deleted: HashSet::new(),
        })
        .collect();
    let ydoc = Doc::with_options(Options {
        offset_kind: OffsetKind::Utf16,
        client_id: yrs::ClientID::new(77),
        ..Options::default()
    });
    let ytext = ydoc.get_or_insert_text(TEXT_NAME);
    let mut y_inbox: VecDeque<Vec<u8>> = VecDeque::new();
    let mut y_inserted = HashSet::new();
    let mut y_deleted = HashSet::new();
    // Per sender (seed i, or `seeds` for the Yjs client), in order.
    let mut to_hub: BTreeMap<usize, VecDeque<ToHub>> = BTreeMap::new();
    let mut n = 0;

    // The hub handles one message: the result goes out as the real hub sends it.
    let hub_step = |hub: &mut Hub,
                    clients: &mut Vec<SeedClient>,
                    y_inbox: &mut VecDeque<Vec<u8>>,
                    from: usize,
                    msg: ToHub| {
        let before = hub.value();
        let delta = match msg {
            ToHub::Code(text, _) => {
                let d = hub.code_change(from, &text);
                let after = hub.value();
                if hub.peers[from].must_be_sent(&text, &after) {
                    clients[from].inbox.push_back(after.clone());
                    let b = hub.base();
                    hub.peers[from].saw(b);
                }
                d
            }
            ToHub::Yjs(u) => Some(hub.apply(&u)),
        };
        let after = hub.value();
        if let Some(d) = delta {
            if from != seeds {
                y_inbox.push_back(d);
            }
        }
        if after != before {
            let b = hub.base();
            for (j, c) in clients.iter_mut().enumerate() {
                if j != from {
                    c.inbox.push_back(after.clone());
                    hub.peers[j].saw(b.clone());
                }
            }
        }
    };

    for _ in 0..120 {
        // A client lags at most half as many texts as the hub keeps for it (beyond that its change
        // is merged against the oldest text kept; see `MAX_BASES`): both the texts on their way to
        // it and those the hub sent since what its oldest change on the way was made from.
        for i in 0..seeds {
            while let Some(ToHub::Code(_, received)) = to_hub.get(&i).and_then(|q| q.front()) {
                if hub.peers[i].next - received <= lag as u64 {
                    break;
                }
                let msg = to_hub.get_mut(&i).unwrap().pop_front().unwrap();
                hub_step(&mut hub, &mut clients, &mut y_inbox, i, msg);
            }
        }
        for c in clients.iter_mut() {
            while c.inbox.len() > lag {
                c.text = c.inbox.pop_front().unwrap();
            }
        }
        match rng.gen_range(0..10) {
            // A seed client edits.
            0..=2 => {
                let i = rng.gen_range(0..seeds);
                let c = &mut clients[i];
                let received = hub.peers[i].next - c.inbox.len() as u64;
                let own: Vec<String> = tokens(&c.text)
                    .into_iter()
                    .filter(|t| c.inserted.contains(t))
                    .collect();
                if !own.is_empty() && rng.gen_bool(0.3) {
                    let t = &own[rng.gen_range(0..own.len())];
                    c.text = c.text.replacen(t.as_str(), "", 1);
                    c.deleted.insert(t.clone());
                } else {
                    n += 1;
                    let t = format!("s{i}{}{} ", word(&mut rng, n), FLAVOURS[n % FLAVOURS.len()]);
                    let b = boundaries(&c.text);
                    let at = b[rng.gen_range(0..b.len())];
                    c.text.insert_str(at, &t);
                    c.inserted.insert(t);
                }
                to_hub
                    .entry(i)
                    .or_default()
                    .push_back(ToHub::Code(c.text.clone(), received));
            }
            // The Yjs client edits.
            3 => {
                let mut txn = ydoc.transact_mut();
                let text = ytext.get_string(&txn);
                let own: Vec<String> = tokens(&text)
                    .into_iter()
                    .filter(|t| y_inserted.contains(t))
                    .collect();
                if !own.is_empty() && rng.gen_bool(0.3) {
                    let t = &own[rng.gen_range(0..own.len())];
                    let at = text.find(t.as_str()).unwrap();
                    let from = text[..at].encode_utf16().count() as u32;
                    ytext.remove_range(&mut txn, from, t.encode_utf16().count() as u32);
                    y_deleted.insert(t.clone());
                } else {
                    n += 1;
                    let t = format!("y{}{} ", word(&mut rng, n), FLAVOURS[n % FLAVOURS.len()]);
                    let b = boundaries(&text);
                    let at = b[rng.gen_range(0..b.len())];
                    ytext.insert(&mut txn, text[..at].encode_utf16().count() as u32, &t);
                    y_inserted.insert(t);
                }
                let u = txn.encode_update_v1();
                to_hub.entry(seeds).or_default().push_back(ToHub::Yjs(u));
            }
            // The hub handles a message.
            4..=6 => {
                let senders: Vec<usize> = to_hub
                    .iter()
                    .filter(|(_, q)| !q.is_empty())
                    .map(|(k, _)| *k)
                    .collect();
                if let Some(&from) = senders.get(rng.gen_range(0..senders.len().max(1))) {
                    let msg = to_hub.get_mut(&from).unwrap().pop_front().unwrap();
                    hub_step(&mut hub, &mut clients, &mut y_inbox, from, msg);
                }
            }
            // Something reaches a client.
            _ => {
                let k = rng.gen_range(0..=seeds);
                if k == seeds {
                    if let Some(u) = y_inbox.pop_front() {
                        ydoc.transact_mut()
                            .apply_update(Update::decode_v1(&u).unwrap())
                            .unwrap();
                    }
                } else if let Some(t) = clients[k].inbox.pop_front() {
                    clients[k].text = t;
                }
            }
        }
    }
    // Everything is delivered.
    loop {
        let senders: Vec<usize> = to_hub
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, _)| *k)
            .collect();
        let Some(&from) = senders.first() else { break };
        let msg = to_hub.get_mut(&from).unwrap().pop_front().unwrap();
        hub_step(&mut hub, &mut clients, &mut y_inbox, from, msg);
    }
    while let Some(u) = y_inbox.pop_front() {
        ydoc.transact_mut()
            .apply_update(Update::decode_v1(&u).unwrap())
            .unwrap();
    }
    for c in &mut clients {
        while let Some(t) = c.inbox.pop_front() {
            c.text = t;
        }
    }

    let value = hub.value();
    assert_eq!(ytext.get_string(&ydoc.transact()), value, "the Yjs client");
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(c.text, value, "seed client {i}");
    }
    // No one deletes another's words, so every word should survive whole that its author did not
    // delete (its space may be the one before it: an insertion is moved to the most natural
    // boundary). The words that did not.
    let mut lost: Vec<String> = clients
        .iter()
        .map(|c| (&c.inserted, &c.deleted))
        .chain([(&y_inserted, &y_deleted)])
        .flat_map(|(inserted, deleted)| inserted.difference(deleted))
        .filter(|t| !value.contains(t.trim_end_matches(' ')))
        .cloned()
        .collect();
    lost.sort();
    lost
}

/// With clients further behind, which base a change was made from is a guess (PROTOCOL.md, "Seed
/// clients"): over fixed random histories with clients up to four texts behind, a word is lost in
/// 112 of 1,000 (434 when the closest base was taken by distance alone), in 23 of the 200 here;
/// this keeps it rare.
#[test]
fn lagging_seed_clients_rarely_lose_a_word() {
    let lost = (0..200u64)
        .filter(|seed| !simulate(seed * 7919 + 13, 2 + (seed % 2) as usize, 4).is_empty())
        .count();
    assert!(lost <= 30, "{lost} of 200 histories lost a word");
}
