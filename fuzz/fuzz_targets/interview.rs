//! One interview's core fed arbitrary client input, without sockets or a runtime: three
//! participants send y-protocols messages (real Yjs edits of their own replicas, mutated or raw
//! bytes), a seed-protocol participant sends whole texts with `code_change` (edits of the last text
//! it was sent, or raw text), the writer commits some or all pending writes, another hub relays updates, time passes.
//! Invariants: nothing panics; an emit carrying document content is acked `ok` only once every
//! write that existed when it arrived is committed (acked ⇒ stored); and at the end the stored
//! history, replayed into a fresh document, reads exactly as the live replica.
#![no_main]
use std::collections::HashMap;
use std::time::{Duration, Instant};

use duet_bus::relay::BusMessage;
use duet_domain::{Language, SessionCode};
use duet_realtime_hub::interview::guard::Usage;
use duet_realtime_hub::interview::presence::UserInfo;
use duet_realtime_hub::interview::{
    new_doc, protocol, AckToken, Audience, Command, ConnId, DocName, Effect, Effects, Interview,
    Joiner, Outgoing, Settings, TEXT_NAME,
};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, Options, ReadTxn, Text, Transact, Update};

struct Harness {
    core: Interview,
    now: Instant,
    /// Writes queued, not yet committed: (write id, data).
    pending: Vec<(u64, Vec<u8>)>,
    /// Committed, in order.
    stored: Vec<Vec<u8>>,
    committed_upto: u64,
    max_write: u64,
    /// For each ack token of an emit that carried content: the highest write id when it arrived.
    needs: HashMap<u64, u64>,
    next_ack: u64,
    /// The seed participant's connection and the last text it was sent.
    seed: ConnId,
    seed_text: String,
}

impl Harness {
    fn run(&mut self, out: Effects) {
        for e in out.0 {
            match e {
                Effect::Write { write_id, data, .. } => {
                    self.max_write = self.max_write.max(write_id);
                    self.pending.push((write_id, data));
                }
                Effect::Emit {
                    to,
                    event: "sync_code" | "code_updated",
                    payload: Outgoing::Json(v),
                } if to == self.seed => {
                    self.seed_text = v["code"].as_str().unwrap_or_default().to_string();
                }
                Effect::Broadcast {
                    to: Audience::Seed,
                    except,
                    event: "code_updated",
                    payload: Outgoing::Json(v),
                } if except.as_ref() != Some(&self.seed) => {
                    self.seed_text = v["code"].as_str().unwrap_or_default().to_string();
                }
                Effect::Ack { token, result } => {
                    if let (Ok(_), Some(need)) = (&result, self.needs.remove(&token.id)) {
                        assert!(
                            self.committed_upto >= need,
                            "acked with writes up to {need} needed and only {} committed",
                            self.committed_upto
                        );
                    }
                }
                _ => {}
            }
        }
    }

    fn commit(&mut self, n: usize) {
        let n = n.min(self.pending.len());
        if n == 0 {
            return;
        }
        let batch: Vec<_> = self.pending.drain(..n).collect();
        let upto = batch.iter().map(|(w, _)| *w).max().unwrap_or(0);
        self.committed_upto = self.committed_upto.max(upto);
        let count = batch.len() as u64;
        self.stored.extend(batch.into_iter().map(|(_, d)| d));
        let mut out = Effects::new();
        self.core.on_committed(self.now, upto, count, &mut out);
        self.run(out);
    }

    fn client(&mut self, conn: &ConnId, bytes: &[u8]) {
        let Ok(msgs) = protocol::decode(bytes, TEXT_NAME) else {
            return;
        };
        let carries = msgs
            .iter()
            .any(|m| matches!(m, protocol::ClientMessage::Update { .. }));
        self.next_ack += 1;
        let id = self.next_ack;
        if carries {
            self.needs.insert(id, self.max_write);
        }
        let token = AckToken {
            conn: conn.clone(),
            id,
        };
        let mut out = Effects::new();
        let r = self.core.on_client(
            self.now,
            conn,
            Command::Yjs {
                doc: DocName::Code,
                msgs,
                ack: Some(token),
                defer: id % 7 == 0,
            },
            &mut out,
        );
        // Writes made before a refusal stand; the refused emit's ack is answered by the edge.
        self.run(out);
        if r.is_err() {
            self.needs.remove(&id);
        }
    }

    /// The seed participant sends `text`.
    fn code_change(&mut self, text: String) {
        self.next_ack += 1;
        let id = self.next_ack;
        self.needs.insert(id, self.max_write);
        let token = AckToken {
            conn: self.seed.clone(),
            id,
        };
        let seed = self.seed.clone();
        let mut out = Effects::new();
        let r = self.core.on_client(
            self.now,
            &seed,
            Command::CodeChange {
                text,
                ack: Some(token),
            },
            &mut out,
        );
        self.run(out);
        if r.is_err() {
            self.needs.remove(&id);
        }
    }

    fn step(&mut self) -> bool {
        let mut out = Effects::new();
        let more = self.core.step(self.now, 4, &mut out);
        self.run(out);
        more
    }
}

fn doc(client: u64) -> Doc {
    Doc::with_options(Options {
        client_id: yrs::block::ClientID::new(client),
        offset_kind: yrs::OffsetKind::Utf16,
        ..Options::default()
    })
}

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let core = Interview::new(
        Uuid::nil(),
        SessionCode::parse("K7MX2QPA").unwrap(),
        Language::Python,
        duet_domain::InterviewControl {
            state: duet_domain::InterviewState::Live,
            started_at: None,
            ended_at: None,
            editing_locked: false,
            runs_enabled: true,
            removed: Vec::new(),
        },
        new_doc(),
        0,
        Usage::default(),
        Settings {
            hub_id: "h1".into(),
            peer_ttl: Duration::from_secs(3),
            snapshot_every: 50,
        },
        now,
    );
    let mut h = Harness {
        core,
        now,
        pending: Vec::new(),
        stored: Vec::new(),
        committed_upto: 0,
        max_write: 0,
        needs: HashMap::new(),
        next_ack: 0,
        seed: ConnId::from("seed"),
        seed_text: String::new(),
    };
    let conns: Vec<ConnId> = (0..3).map(|i| ConnId::from(format!("c{i}"))).collect();
    let replicas: Vec<Doc> = (0..3).map(|i| doc(100 + i)).collect();
    for (i, conn) in conns.iter().enumerate() {
        let mut out = Effects::new();
        let user_id = Uuid::from_u128(i as u128 + 1);
        let _ = h.core.admit(
            conn,
            Joiner {
                user: UserInfo {
                    user_id,
                    name: format!("u{i}"),
                    color: "#000000".into(),
                },
                yjs: true,
                row_id: Uuid::from_u128(1000 + i as u128),
                role: duet_domain::Role::Candidate,
                bound: false,
            },
            None,
            &mut out,
        );
        h.run(out);
    }
    {
        let seed = h.seed.clone();
        let mut out = Effects::new();
        let _ = h.core.admit(
            &seed,
            Joiner {
                user: UserInfo {
                    user_id: Uuid::from_u128(9),
                    name: "seed".into(),
                    color: "#000000".into(),
                },
                yjs: false,
                row_id: Uuid::from_u128(1009),
                role: duet_domain::Role::Candidate,
                bound: false,
            },
            None,
            &mut out,
        );
        h.run(out);
    }
    let mut relay_seq = 0u64;
    // What the other hub relayed is in the database from when it was relayed (that hub stored it
    // before publishing), so it takes its place in `stored` then: the database replays in commit
    // order. (Replaying the relayed updates after everything else — out of causal order — once
    // differed from the live text, in yrs' handling of updates waiting for missing ones.)
    let mut it = data.iter().copied();
    while let Some(op) = it.next() {
        let arg = it.next().unwrap_or(0);
        let who = (arg % 3) as usize;
        match op % 12 {
            // A real edit of a participant's own replica.
            0..=2 => {
                let d = &replicas[who];
                let text = d.get_or_insert_text(TEXT_NAME);
                let update = {
                    let mut txn = d.transact_mut();
                    let len = text.len(&txn);
                    let at = u32::from(it.next().unwrap_or(0)) % (len + 1);
                    if op % 3 == 1 && len > 0 {
                        let n = (u32::from(arg) % 4 + 1).min(len - at.min(len - 1));
                        text.remove_range(&mut txn, at.min(len - 1), n);
                    } else {
                        let s = ["a", "é", "😀", "\n", "xyz"][arg as usize % 5];
                        text.insert(&mut txn, at, s);
                    }
                    txn.encode_update_v1()
                };
                h.client(&conns[who], &protocol::encode_update(&update));
            }
            // The same, with a byte of the frame mutated.
            3 => {
                let d = &replicas[who];
                let text = d.get_or_insert_text(TEXT_NAME);
                let update = {
                    let mut txn = d.transact_mut();
                    text.insert(&mut txn, 0, "m");
                    txn.encode_update_v1()
                };
                let mut frame = protocol::encode_update(&update);
                let i = it.next().unwrap_or(0) as usize % frame.len();
                frame[i] ^= it.next().unwrap_or(1) | 1;
                h.client(&conns[who], &frame);
            }
            // Raw bytes from the input as one message.
            4 => {
                let n = arg as usize % 64;
                let raw: Vec<u8> = it.by_ref().take(n).collect();
                h.client(&conns[who], &raw);
            }
            // The writer commits some, or all, of what is pending.
            5 => h.commit(arg as usize % 4),
            6 => h.commit(usize::MAX),
            // Time passes (ticks: takeovers, notice repeats, purges).
            7 => {
                h.now += Duration::from_millis(u64::from(arg) * 20);
                let mut out = Effects::new();
                h.core.on_tick(h.now, &mut out);
                h.run(out);
            }
            // Another hub relays an edit of its own.
            8 => {
                relay_seq += 1;
                let d = doc(500);
                let text = d.get_or_insert_text(TEXT_NAME);
                let update = {
                    let mut txn = d.transact_mut();
                    text.insert(&mut txn, 0, "r");
                    txn.encode_update_v1()
                };
                h.stored.push(update.clone());
                let mut out = Effects::new();
                h.core.on_bus(
                    h.now,
                    "h2".into(),
                    BusMessage::Update {
                        seq: relay_seq,
                        author: None,
                        data: update.into(),
                    },
                    &mut out,
                );
                h.run(out);
                if arg % 2 == 0 {
                    let mut out = Effects::new();
                    h.core.on_remote_committed(h.now, "h2", relay_seq, &mut out);
                    h.run(out);
                }
            }
            // The seed participant edits the last text it was sent (characters in, a range out).
            10 => {
                let mut chars: Vec<char> = h.seed_text.chars().collect();
                let at = usize::from(it.next().unwrap_or(0)) % (chars.len() + 1);
                if arg % 3 == 0 && at < chars.len() {
                    let n = (usize::from(arg) % 5 + 1).min(chars.len() - at);
                    chars.drain(at..at + n);
                } else {
                    let s = ["b", "ü", "🎉", "\r\n", "e\u{301}", "fn f() {}\n"][usize::from(arg) % 6];
                    for (k, c) in s.chars().enumerate() {
                        chars.insert(at + k, c);
                    }
                }
                h.code_change(chars.into_iter().collect());
            }
            // The seed participant sends raw text from the input (not UTF-8 is replaced).
            11 => {
                let n = arg as usize % 32;
                let raw: Vec<u8> = it.by_ref().take(n).collect();
                h.code_change(String::from_utf8_lossy(&raw).replace('\0', ""));
            }
            // Staged work advances.
            _ => {
                h.step();
            }
        }
    }
    // Everything settles: staged updates integrated, every write committed.
    for _ in 0..100_000 {
        if !h.step() {
            break;
        }
        h.commit(usize::MAX);
    }
    h.commit(usize::MAX);
    let replay = new_doc();
    let text = replay.get_or_insert_text(TEXT_NAME);
    {
        let mut txn = replay.transact_mut();
        // The database holds this hub's writes and the other hub's own (relayed here).
        for u in &h.stored {
            txn.apply_update(Update::decode_v1(u).unwrap()).unwrap();
        }
    }
    assert_eq!(text.get_string(&replay.transact()), h.core.text());
    assert_eq!(
        replay.transact().state_vector(),
        h.core.state_vector(),
        "the stored history is the live replica"
    );
});
