//! What one seed client's `code_change` costs the hub on a 10 KiB document: choosing the base,
//! the character diff, resolving the base's snapshot and applying the Yjs update — against the
//! baseline measured in the same run, a Yjs client's one-character update applied.
//!
//! - `yjs_keystroke`: the baseline, a one-character Yjs update decoded and applied;
//! - `seed_keystroke`: a seed client's whole text with one character inserted (its base is its own
//!   last text);
//! - `seed_keystroke_behind`: the same, while another participant's edit arrived since its base
//!   (merged, as a lagging client's change is).
//!
//! The hub also needs each change's result (the text sent on, the next base), which it reads
//! from the document or, for a change made from an older text, works out (`Base::merged`); each
//! pair below measures the change with its result got both ways:
//! - `conflict_result_read` / `_worked_out`: two seed clients that never take what they are sent
//!   typing at the same place in turn (pure conflict: every change is made from an older text).
//!   (After a Yjs client's change the hub reads the next result: see `Base::find_runs`.)
//!
//! Each iteration inserts a character and the next deletes it, so the text stays 10 KiB (the
//! document keeps the deleted characters, as the hub's does).
//!
//! Run: `cargo bench -p duet-realtime-hub --bench seed_merge` (about a minute).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Bencher, Criterion};
use duet_realtime_hub::interview::docs::{new_doc, TEXT_NAME};
use duet_realtime_hub::interview::seed::{Base, Edit, SeedPeer};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, Text, TextRef, Transact, Update};

fn document() -> (Doc, TextRef, String) {
    let line = "    let total = values.iter().map(|v| v * factor).sum::<i64>(); // line\n";
    let text: String = line.repeat(10 * 1024 / line.len());
    let doc = new_doc();
    let t = doc.get_or_insert_text(TEXT_NAME);
    t.insert(&mut doc.transact_mut(), 0, &text);
    (doc, t, text)
}

fn base(doc: &Doc, text: &TextRef) -> Arc<Base> {
    let txn = doc.transact();
    let s = text.get_string(&txn);
    Base::capture(&txn, Arc::from(s.as_str()))
}

/// One seed change: the edit made and applied.
fn seed_change(doc: &Doc, text: &TextRef, peer: &mut SeedPeer, new: &str) -> Edit {
    let edit = peer
        .edit(
            &mut doc.transact_mut(),
            text,
            TEXT_NAME,
            new,
            Instant::now() + Duration::from_millis(50),
        )
        .expect("base resolves");
    if let Some(u) = &edit.update {
        doc.transact_mut()
            .apply_update(Update::decode_v1(u).unwrap())
            .unwrap();
    }
    peer.applied(&edit);
    edit
}

/// The document's text and state after `edit`, which was made and applied when `before` was: worked
/// out when `worked_out` (and possible), else read, as the hub does.
fn result(doc: &Doc, text: &TextRef, before: &Base, edit: &Edit, worked_out: bool) -> Arc<Base> {
    let after = if worked_out {
        let mut txn = doc.transact_mut();
        before.find_runs(&mut txn, text);
        before.merged(&mut txn, edit)
    } else {
        None
    };
    after.unwrap_or_else(|| base(doc, text))
}

/// Two seed clients that never take what they are sent change the text at the same place in turn.
fn conflict(b: &mut Bencher, worked_out: bool) {
    let (doc, text, s) = document();
    let start = base(&doc, &text);
    let mut peers = [
        SeedPeer::new(4242, start.clone()),
        SeedPeer::new(4343, start.clone()),
    ];
    let mid = s.len() / 2;
    let texts = [
        [format!("{}x{}", &s[..mid], &s[mid..]), s.clone()],
        [format!("{}y{}", &s[..mid], &s[mid..]), s.clone()],
    ];
    let mut current = start;
    let mut turn = 0usize;
    b.iter(|| {
        let (who, which) = (turn % 2, (turn / 2) % 2);
        turn += 1;
        let edit = seed_change(&doc, &text, &mut peers[who], &texts[who][which]);
        current = result(&doc, &text, &current, &edit, worked_out);
        black_box(&current.text);
    });
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("code_change_10k");

    g.bench_function("yjs_keystroke", |b| {
        let (doc, text, s) = document();
        let remote = new_doc();
        let rt = remote.get_or_insert_text(TEXT_NAME);
        remote
            .transact_mut()
            .apply_update(
                Update::decode_v1(
                    &doc.transact()
                        .encode_state_as_update_v1(&Default::default()),
                )
                .unwrap(),
            )
            .unwrap();
        let mid = (s.len() / 2) as u32;
        let mut insert = true;
        b.iter(|| {
            let update = {
                let mut txn = remote.transact_mut();
                if insert {
                    rt.insert(&mut txn, mid, "x");
                } else {
                    rt.remove_range(&mut txn, mid, 1);
                }
                txn.encode_update_v1()
            };
            insert = !insert;
            doc.transact_mut()
                .apply_update(Update::decode_v1(&update).unwrap())
                .unwrap();
            let _ = &text;
        });
    });

    g.bench_function("seed_keystroke", |b| {
        let (doc, text, s) = document();
        let mut peer = SeedPeer::new(4242, base(&doc, &text));
        let mid = s.len() / 2;
        let with = format!("{}x{}", &s[..mid], &s[mid..]);
        let mut insert = true;
        b.iter(|| {
            seed_change(&doc, &text, &mut peer, if insert { &with } else { &s });
            insert = !insert;
        });
    });

    g.bench_function("seed_keystroke_behind", |b| {
        let (doc, text, s) = document();
        let mut peer = SeedPeer::new(4242, base(&doc, &text));
        let mid = s.len() / 2;
        let with = format!("{}x{}", &s[..mid], &s[mid..]);
        let mut insert = true;
        let mut other = true;
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                // Someone else types at the start meanwhile (untimed).
                {
                    let mut txn = doc.transact_mut();
                    if other {
                        text.insert(&mut txn, 0, "o");
                    } else {
                        text.remove_range(&mut txn, 0, 1);
                    }
                }
                other = !other;
                let t = Instant::now();
                seed_change(&doc, &text, &mut peer, if insert { &with } else { &s });
                spent += t.elapsed();
                insert = !insert;
            }
            spent
        });
    });
    g.bench_function("conflict_result_read", |b| conflict(b, false));
    g.bench_function("conflict_result_worked_out", |b| conflict(b, true));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
