//! The hub under hostile and faulty input (issue: no deadlock, no stall, bounded memory, nothing
//! acked lost), on the all-in-one backends, driven through the same edge the Socket.IO server uses.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use duet_bus::LocalBus;
use duet_realtime_hub::interview::{protocol, TEXT_NAME};
use duet_realtime_hub::transport::Outgoing;
use duet_storage::sqlite::SqliteStorage;
use duet_storage::Storage;
use serde_json::json;
use yrs::updates::decoder::Decode;
use yrs::{GetString, ReadTxn, StateVector, Transact, Update};

use crate::common::*;

fn sqlite() -> Arc<dyn Storage> {
    Arc::new(SqliteStorage::in_memory().unwrap())
}

fn var(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A Yjs update, encoded by hand: for each `(client, clock, text)` one string struct at the start
/// of the root text (no origins), and no deletions.
fn crafted(structs: &[(u64, u64, &str)]) -> Vec<u8> {
    let mut u = vec![];
    var(&mut u, structs.len() as u64);
    for &(client, clock, s) in structs {
        var(&mut u, 1);
        var(&mut u, client);
        var(&mut u, clock);
        u.push(4); // a string, parent by name
        var(&mut u, 1);
        var(&mut u, TEXT_NAME.len() as u64);
        u.extend_from_slice(TEXT_NAME.as_bytes());
        var(&mut u, s.len() as u64);
        u.extend_from_slice(s.as_bytes());
    }
    var(&mut u, 0);
    u
}

/// One client's `n` one-character structs in one update, each inserted after the previous (a
/// chain), starting at `clock`.
fn chain(client: u64, clock: u64, n: u64) -> Vec<u8> {
    let mut u = vec![];
    var(&mut u, 1);
    var(&mut u, n);
    var(&mut u, client);
    var(&mut u, clock);
    for i in 0..n {
        if i == 0 {
            u.push(4);
            var(&mut u, 1);
            var(&mut u, TEXT_NAME.len() as u64);
            u.extend_from_slice(TEXT_NAME.as_bytes());
        } else {
            u.push(0x80 | 4); // origin: the previous character
            var(&mut u, client);
            var(&mut u, clock + i - 1);
        }
        var(&mut u, 1);
        u.push(b'x');
    }
    var(&mut u, 0);
    u
}

async fn stored_update_count(storage: &Arc<dyn Storage>, id: uuid::Uuid) -> usize {
    storage
        .history(id, duet_domain::DocKind::Code)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn refused_writes_close_one_interview_without_stalling_the_hub() {
    let flaky = Flaky::new(sqlite());
    let storage: Arc<dyn Storage> = flaky.clone();
    let hub = TestHub::start("a", storage.clone(), Arc::new(LocalBus::new())).await;
    let broken = new_session(&storage).await;
    let healthy = new_session(&storage).await;
    let mut a = YClient::join(&hub, &broken.code, "A").await;
    let mut b = YClient::join(&hub, &broken.code, "B").await;
    let mut c = YClient::join(&hub, &healthy.code, "C").await;
    *flaky.refuse_session.lock() = Some(broken.id);
    a.insert(0, "never stored");
    // The writer gives up on that interview: its participants are told and disconnected, and their
    // disconnect handlers (which leave the interview) run while the hub carries on.
    assert!(
        eventually(10, || a.sink.disconnected.load(Ordering::SeqCst)
            && b.sink.disconnected.load(Ordering::SeqCst))
        .await,
        "the broken interview's participants are disconnected"
    );
    a.pump();
    b.pump();
    assert!(errors(&b.other).contains(&"internal".to_owned()));
    {
        // The handshake's two messages carry no content and were acked; the edit never is.
        let acks = a.acks.lock();
        assert_eq!(acks.len(), 3, "{acks:?}");
        assert_eq!(acks[2], Err("internal".to_owned()), "its edit is refused");
    }
    // Another interview on the same hub is still served: edits acked, joins answered.
    c.insert(0, "fine");
    assert!(c.all_acked().await, "an edit elsewhere is acked");
    let d = tokio::time::timeout(
        Duration::from_secs(5),
        YClient::join(&hub, &healthy.code, "D"),
    )
    .await
    .expect("a join is answered");
    assert_eq!(d.joined["count"], 2);
    // Once storage takes its writes again, the interview can be joined afresh.
    *flaky.refuse_session.lock() = None;
    let mut e = tokio::time::timeout(
        Duration::from_secs(5),
        YClient::join(&hub, &broken.code, "E"),
    )
    .await
    .expect("the broken interview can be joined again");
    e.insert(0, "ok ");
    assert!(e.all_acked().await);
    assert!(hub.core.ready().await);
}

#[tokio::test]
async fn clock_ranges_past_32_bits_are_refused_and_nothing_is_stored() {
    let storage = sqlite();
    let hub = TestHub::start("a", storage.clone(), Arc::new(LocalBus::new())).await;
    let session = new_session(&storage).await;
    let mut a = YClient::join(&hub, &session.code, "A").await;
    a.insert(0, "BASE AFTER");
    assert!(a.all_acked().await);
    for update in [
        // "hello" at clock 2^32 - 2: its range crosses 2^32.
        crafted(&[(4242, (1 << 32) - 2, "hello")]),
        // A clock yrs cannot even hold.
        crafted(&[(4243, 1 << 40, "hello")]),
    ] {
        let (ack, slot) = recorder();
        a.conn.yjs(&protocol::encode_update(&update), Some(ack));
        assert_eq!(slot.lock().take().unwrap().unwrap_err(), "invalid_update");
    }
    assert_eq!(stored_update_count(&storage, session.id).await, 1);
    assert_eq!(stored_text(&storage, session.id).await, "BASE AFTER");
    assert_eq!(
        hub.core.interview(session.id).unwrap().snapshot_text().0,
        "BASE AFTER"
    );
}

#[tokio::test]
async fn an_update_under_another_participants_client_id_is_refused() {
    let storage = sqlite();
    let hub = TestHub::start("a", storage.clone(), Arc::new(LocalBus::new())).await;
    let session = new_session(&storage).await;
    let mut victim = YClient::join(&hub, &session.code, "Victim").await;
    let mut mallory = YClient::join(&hub, &session.code, "Mallory").await;
    victim.insert(0, "mine ");
    assert!(victim.all_acked().await);
    mallory.pump();
    // Mallory writes at the victim's next clock, under the victim's client id (which she sees in
    // awareness), before the victim's concurrent edit arrives.
    let vid = victim.doc.client_id().get();
    let next = u64::from(
        victim
            .doc
            .transact()
            .state_vector()
            .get(&victim.doc.client_id()),
    );
    let (ack, slot) = recorder();
    mallory.conn.yjs(
        &protocol::encode_update(&crafted(&[(vid, next, "EVIL")])),
        Some(ack),
    );
    assert_eq!(slot.lock().take().unwrap().unwrap_err(), "invalid_update");
    victim.insert(5, "also mine");
    assert!(victim.all_acked().await);
    assert_eq!(stored_text(&storage, session.id).await, "mine also mine");
    // Mallory's own edits still work.
    mallory.insert(0, ">");
    assert!(mallory.all_acked().await);
}

#[tokio::test]
async fn awareness_states_that_are_not_json_are_refused_and_never_relayed() {
    let storage = sqlite();
    let hub = TestHub::start("a", storage.clone(), Arc::new(LocalBus::new())).await;
    let session = new_session(&storage).await;
    let mut a = YClient::join(&hub, &session.code, "A").await;
    let raw = |json: &str| {
        let mut body = vec![];
        var(&mut body, 1);
        var(&mut body, 777);
        var(&mut body, 1);
        var(&mut body, json.len() as u64);
        body.extend_from_slice(json.as_bytes());
        let mut msg = vec![1];
        var(&mut msg, body.len() as u64);
        msg.extend(body);
        msg
    };
    a.send(raw("{\"user\": nope"));
    a.pump();
    assert_eq!(errors(&a.other), ["invalid_update"]);
    // A later joiner receives no awareness at all (nothing valid was published), and every
    // message it gets decodes.
    let (conn, sink) = hub.connect();
    conn.join(
        json!({"session_code": session.code.as_str(), "name": "B", "yjs": true}),
        None,
    )
    .await;
    conn.yjs(&protocol::encode_step1(&StateVector::default()), None);
    for (event, payload) in sink.take() {
        if let ("yjs", Outgoing::Binary(b)) = (event.as_str(), payload) {
            let msgs = protocol::decode(&b, TEXT_NAME).expect("decodes");
            assert!(msgs
                .iter()
                .all(|m| !matches!(m, protocol::ClientMessage::Awareness { .. })));
        }
    }
}

#[tokio::test]
async fn nul_characters_are_refused_with_typed_errors() {
    let storage = sqlite();
    let hub = TestHub::start("a", storage.clone(), Arc::new(LocalBus::new())).await;
    let session = new_session(&storage).await;
    let a = YClient::join(&hub, &session.code, "A").await;
    let (seed, seed_sink) = hub.connect();
    seed.join(
        json!({"session_code": session.code.as_str(), "name": "S"}),
        None,
    )
    .await;
    seed_sink.take();
    let (ack, slot) = recorder();
    seed.code_change(json!({"code": "a\u{0}b"}), Some(ack));
    assert_eq!(slot.lock().take().unwrap().unwrap_err(), "invalid_payload");
    let (ack, slot) = recorder();
    seed.execute_code(json!({"output": "x\u{0}y"}), Some(ack))
        .await;
    assert_eq!(slot.lock().take().unwrap().unwrap_err(), "invalid_payload");
    let (ack, slot) = recorder();
    a.conn.yjs(
        &protocol::encode_update(&crafted(&[(31337, 0, "a\u{0}b")])),
        Some(ack),
    );
    assert_eq!(slot.lock().take().unwrap().unwrap_err(), "invalid_update");
    assert_eq!(stored_update_count(&storage, session.id).await, 0);
    assert!(storage
        .recent_runs(session.id, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn one_message_cannot_grow_or_stall_an_interview_without_bound() {
    let storage = sqlite();
    let hub = TestHub::start("a", storage.clone(), Arc::new(LocalBus::new())).await;
    let attacked = new_session(&storage).await;
    let a = YClient::join(&hub, &attacked.code, "A").await;
    let mut b = YClient::join(&hub, &attacked.code, "B").await;
    // 14,000 structs in one message: refused outright.
    let (ack, slot) = recorder();
    let many: Vec<(u64, u64, &str)> = (0..14_000).map(|i| (10_000 + i, 0, "x")).collect();
    a.conn
        .yjs(&protocol::encode_update(&crafted(&many)), Some(ack));
    assert_eq!(
        slot.lock().take().unwrap().unwrap_err(),
        "payload_too_large"
    );
    assert_eq!(stored_update_count(&storage, attacked.id).await, 0);
    // A long chain is integrated a few structs at a time (staged), acked once all of it is stored.
    let (ack, slot) = recorder();
    a.conn
        .yjs(&protocol::encode_update(&chain(555, 0, 5_000)), Some(ack));
    assert!(
        slot.lock().is_none(),
        "not acked before it is integrated and stored"
    );
    assert!(
        eventually(20, || slot.lock().as_ref().is_some_and(|r| r.is_ok())).await,
        "acked once stored: {:?}",
        slot.lock()
    );
    assert_eq!(stored_text(&storage, attacked.id).await, "x".repeat(5_000));
    assert!(
        b.sees(&"x".repeat(5_000)).await,
        "relayed to the others as it integrates"
    );
    // The document's struct cap: more chains until it refuses, with a typed error.
    let mut refused = None;
    for round in 0..20u64 {
        let (ack, slot) = recorder();
        a.conn.yjs(
            &protocol::encode_update(&chain(600 + round, 0, 4_000)),
            Some(ack),
        );
        let answer = slot.lock().take();
        if let Some(Err(code)) = answer {
            refused = Some(code);
            break;
        }
    }
    assert_eq!(refused.as_deref(), Some("document_too_large"));
}

#[tokio::test]
async fn an_attacked_interview_does_not_hold_up_the_others() {
    let storage = sqlite();
    let hub = TestHub::start("a", storage.clone(), Arc::new(LocalBus::new())).await;
    let attacked = new_session(&storage).await;
    let other = new_session(&storage).await;
    let mallory = YClient::join(&hub, &attacked.code, "M").await;
    let mut bob = YClient::join(&hub, &other.code, "Bob").await;
    // Thousands of concurrent one-character inserts at one place, then as many again under higher
    // client ids: each of the second batch is compared with every one of the first (YATA's
    // costliest case; inline, the second message took seconds).
    let first: Vec<(u64, u64, &str)> = (0..5_000).map(|i| (10_000 + i, 0, "x")).collect();
    let second: Vec<(u64, u64, &str)> = (0..5_000).map(|i| (20_000 + i, 0, "y")).collect();
    let (a, b) = (
        protocol::encode_update(&crafted(&first)),
        protocol::encode_update(&crafted(&second)),
    );
    let conn = mallory.conn.clone();
    let attack = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        conn.yjs(&a, None);
        tokio::time::sleep(Duration::from_millis(50)).await;
        conn.yjs(&b, None);
    });
    // Bob types meanwhile; every edit of his is acked promptly, also while Mallory's second
    // message is still being integrated.
    let live = || hub.core.interview(attacked.id).unwrap();
    let mut slowest = Duration::ZERO;
    let mut acked_meanwhile = 0;
    for i in 0..30u32 {
        let t0 = Instant::now();
        bob.insert(i, "b");
        assert!(
            eventually(10, || bob.acked_ok() == bob.sent).await,
            "Bob's edit {i} is acked"
        );
        slowest = slowest.max(t0.elapsed());
        if live().read(|c| c.staged()) > 0 {
            acked_meanwhile += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    attack.await.unwrap();
    assert!(
        acked_meanwhile >= 5,
        "only {acked_meanwhile} of Bob's edits were acked while the attack was being integrated"
    );
    // Generous for a shared, loaded machine; integrated inline, the second message held every
    // interview of the hub for seconds.
    assert!(
        slowest < Duration::from_secs(2),
        "slowest ack of the other interview: {slowest:?}"
    );
}

#[tokio::test]
async fn a_seed_client_streaming_whole_texts_is_slowed_down() {
    let storage = sqlite();
    let hub = TestHub::start("a", storage.clone(), Arc::new(LocalBus::new())).await;
    let session = new_session(&storage).await;
    let (seed, sink) = hub.connect();
    seed.join(
        json!({"session_code": session.code.as_str(), "name": "S"}),
        None,
    )
    .await;
    let mut limited = false;
    // 500 KB texts, each different (so each is an edit of the whole text): at most a few minutes'
    // allowance of history gets in.
    for i in 0..40 {
        let text = format!("{i:04}").repeat(125_000);
        let (ack, slot) = recorder();
        seed.code_change(json!({"code": text}), Some(ack));
        let answer = slot.lock().take();
        if let Some(Err(code)) = answer {
            assert!(
                code == "rate_limited" || code == "document_too_large",
                "{code}"
            );
            limited = true;
            break;
        }
    }
    assert!(limited, "the stream is refused before 20 MB of history");
    let _ = sink.take();
    let stored: usize = storage
        .history(session.id, duet_domain::DocKind::Code)
        .await
        .unwrap()
        .iter()
        .map(|u| u.data.len())
        .sum();
    assert!(
        stored <= duet_realtime_hub::limits::MAX_HISTORY_BYTES_PER_MINUTE as usize + 600_000,
        "{stored} bytes of history"
    );
}

#[allow(dead_code)]
fn text_of(data: &[u8]) -> String {
    let doc = duet_realtime_hub::interview::new_doc();
    let text = doc.get_or_insert_text(TEXT_NAME);
    doc.transact_mut()
        .apply_update(Update::decode_v1(data).unwrap())
        .unwrap();
    let s = text.get_string(&doc.transact());
    s
}
