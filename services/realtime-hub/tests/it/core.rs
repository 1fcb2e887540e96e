//! The hub core on the all-in-one backends (SQLite + in-process bus), driven by Rust Yjs clients that
//! speak the real y-protocols messages.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use duet_bus::{Bus, LocalBus};
use duet_realtime_hub::interview::protocol;
use duet_realtime_hub::runtime::HubConfig;
use duet_storage::sqlite::SqliteStorage;
use duet_storage::Storage;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::common::*;

fn sqlite() -> Arc<dyn Storage> {
    Arc::new(SqliteStorage::in_memory().unwrap())
}

#[tokio::test]
async fn refusals_are_typed_and_change_nothing() {
    let storage = sqlite();
    let hub = TestHub::start("a", storage.clone(), Arc::new(LocalBus::new())).await;
    let session = new_session(&storage).await;

    // Before joining.
    let (conn, sink) = hub.connect();
    let (ack, slot) = recorder();
    conn.yjs(&protocol::encode_update(&[0, 0]), Some(ack));
    assert_eq!(slot.lock().take().unwrap().unwrap_err(), "not_joined");
    conn.code_change(json!({"code": "x"}), None);
    conn.language_change(json!({"language": "html"}), None)
        .await;
    conn.execute_code(json!({"output": "1"}), None).await;
    assert_eq!(errors(&sink.take()), ["not_joined"; 4]);

    // Bad joins.
    for (payload, code) in [
        (
            json!({"session_code": "ZZZZZZZZ", "name": "a"}),
            "session_not_found",
        ),
        (
            json!({"session_code": "nope", "name": "a"}),
            "session_not_found",
        ),
        (json!({"name": "a"}), "invalid_payload"),
        (
            json!({"session_code": session.code.as_str(), "name": "a\u{7}"}),
            "invalid_payload",
        ),
        (
            json!({"session_code": session.code.as_str(), "name": "x".repeat(65)}),
            "invalid_payload",
        ),
    ] {
        let (ack, slot) = recorder();
        conn.join(payload.clone(), Some(ack)).await;
        assert_eq!(slot.lock().take().unwrap().unwrap_err(), code, "{payload}");
    }
    sink.take();

    // A bystander who must not be affected.
    let mut other = YClient::join(&hub, &session.code, "Bystander").await;
    other.insert(0, "safe");
    other.pump();
    let mut bad = YClient::join(&hub, &session.code, "Mallory").await;
    bad.pump();
    other.pump();
    other.other.clear();
    bad.sink.take();

    // Undecodable, oversize, unknown message types.
    for (msg, code) in [
        (vec![0, 2, 5, 1, 2], "invalid_update"),
        (vec![7, 1, 2], "invalid_update"),
        (vec![2, 0], "invalid_update"),
        (vec![], "invalid_update"),
        (
            protocol::encode_update(&vec![0u8; 600 * 1024]),
            "payload_too_large",
        ),
    ] {
        let (ack, slot) = recorder();
        bad.conn.yjs(&msg, Some(ack));
        assert_eq!(slot.lock().take().unwrap().unwrap_err(), code);
    }
    // Events for another interview than the joined one.
    bad.conn
        .code_change(json!({"code": "x", "session_code": "ZZZZZZZZ"}), None);
    // Bad values.
    bad.conn
        .language_change(json!({"language": "cobol"}), None)
        .await;
    bad.conn
        .execute_code(json!({"language": "python"}), None)
        .await;
    bad.conn
        .execute_code(json!({"output": "x", "status": "weird"}), None)
        .await;
    bad.conn
        .execute_code(json!({"output": "x", "duration_ms": -4}), None)
        .await;
    bad.conn.code_change(json!({"text": "x"}), None);
    assert_eq!(
        errors(&bad.sink.take()),
        [
            "invalid_update",
            "invalid_update",
            "invalid_update",
            "invalid_update",
            "payload_too_large",
            "not_joined",
            "invalid_payload",
            "invalid_payload",
            "invalid_payload",
            "invalid_payload",
            "invalid_payload"
        ]
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    other.pump();
    assert_eq!(other.text(), "safe");
    assert!(
        errors(&other.other).is_empty(),
        "the bystander saw no error: {:?}",
        other.other
    );
    let history = storage
        .history(session.id, duet_domain::DocKind::Code)
        .await
        .unwrap();
    assert_eq!(history.len(), 1, "only the bystander's edit is stored");

    // Awareness for another client's id is refused.
    let aw = |client: u64, clock: u32| {
        use duet_realtime_hub::interview::awareness::{AwarenessUpdate, Entry};
        protocol::encode_awareness(&AwarenessUpdate {
            entries: vec![Entry {
                client,
                clock,
                json: r#"{"user":{"name":"x"}}"#.into(),
            }],
        })
    };
    other.send(aw(1001, 1));
    bad.send(aw(1001, 2));
    assert_eq!(errors(&bad.sink.take()), ["invalid_update"]);

    // An awareness flood is rate limited, then the connection is closed.
    for i in 0..400 {
        bad.send(aw(2002, i + 1));
    }
    let errs = errors(&bad.sink.take());
    assert!(
        errs.iter().all(|e| e == "rate_limited") && errs.len() >= 200,
        "{errs:?}"
    );
    assert!(
        bad.sink.disconnected.load(Ordering::SeqCst),
        "abusive connection closed"
    );
    assert!(errors(&other.sink.take()).is_empty());
}

#[tokio::test]
async fn yjs_and_seed_clients_converge_and_acks_follow_commits() {
    let storage = sqlite();
    let hub = TestHub::start("a", storage.clone(), Arc::new(LocalBus::new())).await;
    let session = new_session(&storage).await;
    let mut a = YClient::join(&hub, &session.code, "Ada").await;
    let mut b = YClient::join(&hub, &session.code, "Bob").await;
    let (seed, seed_sink) = hub.connect();
    seed.join(
        json!({"session_code": session.code.as_str(), "name": "Seed"}),
        None,
    )
    .await;
    let sync = seed_sink.take();
    assert_eq!(jsons(&sync, "sync_code")[0]["code"], "");

    a.insert(0, "fn main() {}\n");
    a.pump();
    b.pump();
    assert_eq!(b.text(), "fn main() {}\n");
    let updated = seed_sink.take();
    let mut seed_text = jsons(&updated, "code_updated").last().unwrap()["code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(seed_text, "fn main() {}\n");

    // Concurrently: the seed client types at the end from its (soon stale) text, while Yjs clients type
    // at the start and in the middle.
    b.insert(0, "// héllo 😀\n");
    seed_text.push_str("print(1)\n");
    seed.code_change(json!({"code": seed_text}), None);
    a.insert(3, "🚀");
    for _ in 0..3 {
        a.pump();
        b.pump();
    }
    let expected = a.text();
    assert_eq!(b.text(), expected);
    assert!(
        expected.contains("// héllo 😀")
            && expected.contains("print(1)")
            && expected.contains("🚀"),
        "{expected}"
    );
    let last_seed = jsons(&seed_sink.take(), "code_updated")
        .last()
        .map(|v| v["code"].as_str().unwrap().to_owned());
    assert_eq!(last_seed.as_deref(), Some(expected.as_str()));

    // Every document emit is acknowledged after its commit, and the stored document matches.
    assert!(eventually(5, || { a.acked_ok() == a.sent && b.acked_ok() == b.sent }).await);
    assert_eq!(stored_text(&storage, session.id).await, expected);
    // The REST copy of the text is kept current (debounced).
    assert_eq!(rest_text(&storage, session.id, &expected).await, expected);
}

/// Seed clients that take what they are sent and edit their own line, as the seed's editor does:
/// each change is made from the document's current text (the hub knows the result without reading
/// the document back, and the next base's characters without resolving them — debug builds check
/// both against the document), and nobody's line is lost.
#[tokio::test]
async fn seed_clients_in_step_keep_every_line() {
    let storage = sqlite();
    let hub = TestHub::start("a", storage.clone(), Arc::new(LocalBus::new())).await;
    let session = new_session(&storage).await;
    let mut y = YClient::join(&hub, &session.code, "Yan").await;
    let mut seeds = Vec::new();
    for name in ["S0", "S1"] {
        let (conn, sink) = hub.connect();
        conn.join(
            json!({"session_code": session.code.as_str(), "name": name}),
            None,
        )
        .await;
        let text = jsons(&sink.take(), "sync_code")[0]["code"]
            .as_str()
            .unwrap()
            .to_owned();
        seeds.push((conn, sink, text));
    }
    for round in 0..12 {
        for i in 0..seeds.len() {
            let (conn, _, text) = &mut seeds[i];
            let line = format!("s{i} round {round} ✓\n");
            let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
            match lines.iter().position(|l| l.starts_with(&format!("s{i} "))) {
                Some(at) => lines[at] = line,
                None => lines.push(line),
            }
            *text = lines.concat();
            conn.code_change(json!({"code": text.as_str()}), None);
            for (_, sink, t) in seeds.iter_mut() {
                if let Some(v) = jsons(&sink.take(), "code_updated").last() {
                    *t = v["code"].as_str().unwrap().to_owned();
                }
            }
        }
        if round % 4 == 3 {
            y.insert(0, "// y\n");
        }
        y.pump();
    }
    for _ in 0..3 {
        y.pump();
    }
    for (_, sink, t) in seeds.iter_mut() {
        if let Some(v) = jsons(&sink.take(), "code_updated").last() {
            *t = v["code"].as_str().unwrap().to_owned();
        }
    }
    let expected = y.text();
    for (i, (_, _, text)) in seeds.iter().enumerate() {
        assert!(
            expected.contains(&format!("s{i} round 11 ✓\n")),
            "{expected}"
        );
        assert_eq!(*text, expected, "seed client {i} shows the document");
    }
    assert_eq!(expected.matches("// y\n").count(), 3, "{expected}");
    assert_eq!(expected.lines().count(), 5, "{expected}");
}

#[tokio::test]
async fn late_joiners_and_reloads_get_the_full_document() {
    let storage = sqlite();
    let hub = TestHub::start("a", storage.clone(), Arc::new(LocalBus::new())).await;
    let session = new_session(&storage).await;
    let mut a = YClient::join(&hub, &session.code, "Ada").await;
    // More than `snapshot_every` updates, so a snapshot is written.
    for i in 0..120 {
        a.insert(a.len(), if i % 10 == 9 { "😀\n" } else { "x" });
        if i % 7 == 0 {
            a.delete(0, 1);
        }
    }
    a.pump();
    assert!(eventually(5, || a.acked_ok() == a.sent).await);
    let text = a.text();
    let late = YClient::join(&hub, &session.code, "Late").await;
    assert_eq!(late.text(), text);

    // Everyone leaves; the interview unloads and loads again from snapshot + later updates.
    a.conn.disconnected().await;
    late.conn.disconnected().await;
    assert!(
        eventually(5, || hub.core.interview(session.id).is_none()).await,
        "unloaded after idle"
    );
    let state = storage
        .load_document(session.id, duet_domain::DocKind::Code)
        .await
        .unwrap();
    assert!(state.snapshot.is_some(), "a snapshot was written");
    // Every emit but the two sync messages carried an edit.
    assert_eq!(
        storage
            .history(session.id, duet_domain::DocKind::Code)
            .await
            .unwrap()
            .len(),
        a.sent - 2,
        "history keeps every update"
    );
    let again = YClient::join(&hub, &session.code, "Again").await;
    assert_eq!(again.text(), text);
    assert_eq!(
        storage
            .session_by_id(session.id)
            .await
            .unwrap()
            .unwrap()
            .text,
        text
    );
}

#[tokio::test]
async fn presence_counts_follow_joins_leaves_and_dead_hubs() {
    let storage = sqlite();
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let h1 = TestHub::start("h1", storage.clone(), bus.clone()).await;
    let h2 = TestHub::start("h2", storage.clone(), bus.clone()).await;
    let session = new_session(&storage).await;
    let mut a = YClient::join(&h1, &session.code, "Ada").await;
    let count = |c: &mut YClient| {
        c.pump();
        jsons(&c.other, "user_joined")
            .last()
            .map(|v| v["count"].as_u64().unwrap())
    };
    let b = YClient::join(&h1, &session.code, "Bob").await;
    assert_eq!(count(&mut a), Some(2));
    let c = YClient::join(&h2, &session.code, "Cy").await;
    assert!(
        eventually(2, || count(&mut a) == Some(3)).await,
        "a remote join is announced"
    );
    assert_eq!(storage.connected_count(session.id).await.unwrap(), 3);
    // The same user in a second tab is one participant.
    let (tab, _) = h2.connect();
    tab.join(json!({"session_code": session.code.as_str(), "name": "Ada", "yjs": true, "user_id": a.user_id()}), None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(count(&mut a), Some(3));
    b.conn.disconnected().await;
    a.pump();
    assert_eq!(jsons(&a.other, "user_left").last().unwrap()["count"], 2);
    // Hub 2 dies without a word: its participants disappear when its reports expire.
    h2.core.halt();
    drop(c);
    assert!(
        eventually(8, || {
            a.pump();
            jsons(&a.other, "user_left")
                .last()
                .is_some_and(|v| v["count"] == 1)
        })
        .await,
        "participants of a dead hub time out"
    );
    // Clean shutdown removes the hub's rows.
    h1.core.shutdown().await;
    assert!(storage.connected_count(session.id).await.unwrap() <= 2);
}

#[tokio::test]
async fn acks_are_withheld_while_the_database_is_down() {
    let flaky = Flaky::new(sqlite());
    let storage: Arc<dyn Storage> = flaky.clone();
    let hub = TestHub::start("a", storage.clone(), Arc::new(LocalBus::new())).await;
    let session = new_session(&storage).await;
    let mut a = YClient::join(&hub, &session.code, "Ada").await;
    let mut b = YClient::join(&hub, &session.code, "Bob").await;
    a.insert(0, "saved ");
    assert!(eventually(5, || a.acked_ok() == a.sent).await);
    flaky.down.store(true, Ordering::SeqCst);
    a.insert(6, "pending");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        a.acked_ok(),
        a.sent - 1,
        "no ack while the database is down"
    );
    b.pump();
    assert_eq!(b.text(), "saved pending", "edits still reach the others");
    assert!(
        errors(&b.other).contains(&"unavailable".to_owned()),
        "clients are told"
    );
    assert!(!hub.core.ready().await);
    // Long enough for the plain text's save to come due (and fail) during the outage.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    flaky.down.store(false, Ordering::SeqCst);
    assert!(
        eventually(5, || a.acked_ok() == a.sent).await,
        "recovers by itself"
    );
    assert_eq!(stored_text(&storage, session.id).await, "saved pending");
    assert!(hub.core.ready().await);
    // The REST copy of the text catches up too: a failed save is tried again.
    assert_eq!(
        rest_text(&storage, session.id, "saved pending").await,
        "saved pending"
    );
}

#[tokio::test]
async fn relayed_edits_and_acks_flow_while_a_snapshot_waits_for_the_database() {
    let flaky = Flaky::new(sqlite());
    let storage: Arc<dyn Storage> = flaky.clone();
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let cfg = HubConfig {
        snapshot_every: 3,
        ..config()
    };
    let h1 = TestHub::start_with("h1", storage.clone(), bus.clone(), cfg.clone()).await;
    let h2 = TestHub::start_with("h2", storage.clone(), bus.clone(), cfg).await;
    let session = new_session(&storage).await;
    let mut a = YClient::join(&h1, &session.code, "Ada").await;
    let mut b = YClient::join(&h2, &session.code, "Bob").await;

    // From here on, reading an interview back from the database hangs, as a snapshot's read of a
    // long history does on a busy database.
    flaky.stall_loads.store(true, Ordering::SeqCst);
    let loads = flaky.loads.load(Ordering::SeqCst);
    for _ in 0..3 {
        a.insert(0, "a");
    }
    assert!(
        eventually(5, || flaky.loads.load(Ordering::SeqCst) > loads).await,
        "three commits on h1 start its snapshot"
    );
    // Bob types after seeing Ada's edits, so the order of the text is decided.
    assert!(
        eventually(3, || {
            b.pump();
            b.text() == "aaa"
        })
        .await
    );
    b.insert(0, "from bob ");
    assert!(
        eventually(3, || {
            a.pump();
            a.text() == "from bob aaa"
        })
        .await,
        "h1 relays the other hub's edit while its snapshot waits: {:?}",
        a.text()
    );
    assert!(
        eventually(3, || b.acked_ok() == b.sent).await,
        "bob's edit (built on h1's) is acked: h1's commit notices are not held back either"
    );

    flaky.stall_loads.store(false, Ordering::SeqCst);
    let mut snapshot = None;
    for _ in 0..500 {
        snapshot = storage
            .load_document(session.id, duet_domain::DocKind::Code)
            .await
            .unwrap()
            .snapshot;
        if snapshot.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        snapshot.is_some(),
        "the snapshot completes once the database answers"
    );
}

/// Updates stored for a session (no snapshot is due in these tests).
async fn stored_updates(storage: &Arc<dyn Storage>, id: uuid::Uuid) -> usize {
    storage
        .load_document(id, duet_domain::DocKind::Code)
        .await
        .unwrap()
        .updates
        .len()
}

#[tokio::test]
async fn commit_notices_release_the_other_hubs_acks_without_a_takeover() {
    let storage = sqlite();
    let lossy = LossyInbox::new(Arc::new(LocalBus::new()));
    let bus: Arc<dyn Bus> = lossy.clone();
    let h1 = TestHub::start("h1", storage.clone(), bus.clone()).await;
    let h2 = TestHub::start("h2", storage.clone(), bus.clone()).await;
    let session = new_session(&storage).await;
    let mut a = YClient::join(&h1, &session.code, "Ada").await;
    let mut b = YClient::join(&h2, &session.code, "Bob").await;

    // Bob's edit builds on Ada's, which h2 only relayed: it is acked once h1 says Ada's are
    // committed. Had h2 waited for the takeover instead, it would have stored Ada's three again.
    for _ in 0..3 {
        a.insert(0, "a");
    }
    assert!(a.all_acked().await);
    assert!(b.sees("aaa").await);
    b.insert(0, "b");
    assert!(b.all_acked().await, "bob's edit acked");
    assert_eq!(
        stored_updates(&storage, session.id).await,
        4,
        "each edit stored once: h1's commit notice reached h2 (no takeover)"
    );

    // The notices of Ada's next edits are lost: h1 repeats the last one once the interview goes
    // quiet, still well before h2 would take the edits over.
    assert!(a.sees("baaa").await);
    lossy.drop_inbox.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        a.insert(0, "c");
    }
    assert!(a.all_acked().await);
    tokio::time::sleep(Duration::from_millis(30)).await;
    lossy.drop_inbox.store(false, Ordering::SeqCst);
    assert!(
        lossy.dropped.load(Ordering::SeqCst) > 0,
        "the notice was lost"
    );
    assert!(b.sees("ccbaaa").await);
    b.insert(0, "d");
    assert!(b.all_acked().await, "bob's second edit acked");
    assert_eq!(
        stored_updates(&storage, session.id).await,
        7,
        "each edit stored once: the repeated notice reached h2 (no takeover)"
    );
    assert_eq!(stored_text(&storage, session.id).await, "dccbaaa");
}

#[tokio::test]
async fn two_hubs_converge_under_random_concurrent_edits() {
    for seed in [1u64, 2, 3] {
        let storage = sqlite();
        let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
        let hubs = [
            TestHub::start("h1", storage.clone(), bus.clone()).await,
            TestHub::start("h2", storage.clone(), bus.clone()).await,
        ];
        let session = new_session(&storage).await;
        let mut clients = Vec::new();
        for i in 0..6 {
            clients.push(YClient::join(&hubs[i % 2], &session.code, &format!("c{i}")).await);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let words = ["a", "é", "😀", "漢字", "\n", "let x = 1;", "👩‍💻"];
        for _round in 0..40 {
            for c in clients.iter_mut() {
                let len = c.len();
                if len > 0 && rng.gen_bool(0.3) {
                    let at = rng.gen_range(0..len);
                    // Never split a surrogate pair: delete whole chars by re-reading the text.
                    let s = c.text();
                    let units: Vec<u16> = s.encode_utf16().collect();
                    let mut start = at as usize;
                    while start > 0 && (0xDC00..0xE000).contains(&units[start]) {
                        start -= 1;
                    }
                    let ch_len = char::decode_utf16(units[start..].iter().copied())
                        .next()
                        .unwrap()
                        .unwrap()
                        .len_utf16();
                    c.delete(start as u32, ch_len as u32);
                } else {
                    let s = c.text();
                    let units: Vec<u16> = s.encode_utf16().collect();
                    let mut at = rng.gen_range(0..=len) as usize;
                    while at > 0 && at < units.len() && (0xDC00..0xE000).contains(&units[at]) {
                        at -= 1;
                    }
                    c.insert(at as u32, words[rng.gen_range(0..words.len())]);
                }
            }
            if rng.gen_bool(0.5) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            for c in clients.iter_mut() {
                if rng.gen_bool(0.6) {
                    c.pump();
                }
            }
        }
        let converged = eventually(10, || {
            clients.iter_mut().for_each(YClient::pump);
            let t = clients[0].text();
            clients.iter().all(|c| c.text() == t)
        })
        .await;
        assert!(converged, "seed {seed}: clients converge");
        assert!(
            eventually(10, || clients.iter().all(|c| c.acked_ok() == c.sent)).await,
            "seed {seed}: all acked"
        );
        let text = clients[0].text();
        assert_eq!(
            stored_text(&storage, session.id).await,
            text,
            "seed {seed}: stored document"
        );
        for h in &hubs {
            assert_eq!(
                h.core.interview(session.id).unwrap().snapshot_text().0,
                text,
                "seed {seed}: hub replica"
            );
        }
    }
}

/// `/metrics` has the edit → commit latency histogram, and it counts every committed edit.
#[tokio::test]
async fn metrics_count_each_edit_in_the_commit_latency_histogram() {
    let storage = sqlite();
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let hub = TestHub::start("h1", storage.clone(), bus).await;
    let session = new_session(&storage).await;
    let mut a = YClient::join(&hub, &session.code, "Ada").await;
    for i in 0..5 {
        a.insert(i, "x");
    }
    assert!(a.all_acked().await);
    let text = hub.core.metrics();
    let value = |line: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(line))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{line} missing:\n{text}"))
    };
    assert!(text.contains("# TYPE duet_hub_edit_commit_seconds histogram"));
    assert_eq!(value("duet_hub_edit_commit_seconds_count "), 5.0);
    assert_eq!(
        value("duet_hub_edit_commit_seconds_bucket{le=\"+Inf\"} "),
        5.0
    );
    // Committed within the group-commit window and a SQLite fsync, not seconds.
    assert!(value("duet_hub_edit_commit_seconds_bucket{le=\"1\"} ") >= 5.0);
    assert!(value("duet_hub_edit_commit_seconds_sum ") > 0.0);
}

#[tokio::test]
async fn metrics_time_each_edit_to_its_delivery() {
    let storage = sqlite();
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let hub = TestHub::start("h1", storage.clone(), bus).await;
    let session = new_session(&storage).await;
    let mut a = YClient::join(&hub, &session.code, "Ada").await;
    let mut b = YClient::join(&hub, &session.code, "Bob").await;
    let count = |text: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with("duet_hub_edit_delivery_seconds_count "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("delivery histogram missing:\n{text}"))
    };
    // Joining (sync messages) delivers no edit.
    assert_eq!(count(&hub.core.metrics()), 0.0);
    for i in 0..4 {
        a.insert(i, "x");
    }
    b.insert(0, "y");
    assert!(a.all_acked().await && b.all_acked().await);
    assert!(
        eventually(5, || {
            a.pump();
            b.pump();
            a.len() == 5 && a.text() == b.text()
        })
        .await
    );
    let text = hub.core.metrics();
    assert!(text.contains("# TYPE duet_hub_edit_delivery_seconds histogram"));
    assert_eq!(count(&text), 5.0, "{text}");
    // Queued to the other participant within the call that took the edit: well under a second.
    assert!(
        text.contains("duet_hub_edit_delivery_seconds_bucket{le=\"1\"} 5\n"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_failed_bus_publishes() {
    let mut redis = duet_testkit::redis::TestRedis::start();
    let storage = sqlite();
    let bus1: Arc<dyn Bus> = Arc::new(duet_bus::RedisBus::connect(&redis.url()).await.unwrap());
    let bus2: Arc<dyn Bus> = Arc::new(duet_bus::RedisBus::connect(&redis.url()).await.unwrap());
    let h1 = TestHub::start("h1", storage.clone(), bus1).await;
    let h2 = TestHub::start("h2", storage.clone(), bus2).await;
    let session = new_session(&storage).await;
    let mut a = YClient::join(&h1, &session.code, "Ada").await;
    let mut b = YClient::join(&h2, &session.code, "Bob").await;
    a.insert(0, "x");
    assert!(b.sees("x").await);
    let failures = |hub: &TestHub| -> f64 {
        let text = hub.core.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix("duet_hub_bus_publish_failures_total "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no publish failures counter:\n{text}"))
    };
    assert_eq!(failures(&h1), 0.0);
    // Redis goes away: the edits Ada goes on making are published to no one, and counted.
    redis.stop();
    for i in 0..3 {
        a.insert(i, "y");
    }
    assert!(
        eventually(15, || failures(&h1) >= 1.0).await,
        "publish failures counted: {}",
        h1.core.metrics()
    );
}
