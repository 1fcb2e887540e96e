//! Interviews, not just pads: tokens and roles at `join_session`, the lifecycle (waiting → live →
//! ended), the interviewer's controls, removing someone — enforced by the hub, over the same edge
//! the Socket.IO server uses, on two hubs sharing a bus and SQLite.

use std::sync::Arc;

use duet_auth::{Claims, TokenKey, TokenKind};
use duet_bus::relay::{self, BusMessage};
use duet_bus::{Bus, LocalBus};
use duet_domain::{
    InterviewControl, InterviewState, Language, NewSession, Role, Session, SessionCode, Title,
};
use duet_realtime_hub::interview::{protocol, NOTES_NAME};
use duet_realtime_hub::transport::Outgoing;
use duet_storage::sqlite::SqliteStorage;
use duet_storage::Storage;
use serde_json::{json, Value};
use uuid::Uuid;
use yrs::{GetString, ReadTxn, Text, Transact};

use crate::common::*;

fn sqlite() -> Arc<dyn Storage> {
    Arc::new(SqliteStorage::in_memory().unwrap())
}

async fn session(storage: &Arc<dyn Storage>, lobby: bool, password: Option<&str>) -> Session {
    storage
        .create_session(NewSession {
            code: SessionCode::generate(),
            title: Title::parse("t").unwrap(),
            language: Language::Python,
            lobby,
            password_hash: password.map(duet_auth::hash_password),
        })
        .await
        .unwrap()
}

fn candidate_token(s: &Session) -> (String, Uuid) {
    let uid = Uuid::new_v4();
    (
        test_key().participant_token(s.id, Role::Candidate, uid, "#e6194b"),
        uid,
    )
}

async fn control(c: &YClient, event: &str, payload: Value) -> Result<Value, String> {
    let (ack, slot) = recorder();
    c.conn.control_event(event, payload, Some(ack)).await;
    let r = slot.lock().take();
    r.unwrap_or_else(|| Err("no ack".into()))
}

/// The `interview_state` events a client received (pumped).
fn states(c: &mut YClient) -> Vec<Value> {
    c.pump();
    jsons(&c.other, "interview_state")
        .into_iter()
        .cloned()
        .collect()
}

async fn history_len(storage: &Arc<dyn Storage>, s: &Session) -> usize {
    storage
        .history(s.id, duet_domain::DocKind::Code)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn tokens_decide_role_and_identity_and_bad_ones_are_refused() {
    let storage = sqlite();
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let hub = TestHub::start("h1", storage.clone(), bus).await;
    let s = session(&storage, false, None).await;
    let other = session(&storage, false, None).await;

    // A participant token: its role, its user id (whatever the client claims) and its colour.
    let (token, uid) = candidate_token(&s);
    let claimed = Uuid::new_v4();
    let cand = YClient::join_with(
        &hub,
        &s.code,
        "Cara",
        json!({"token": token, "user_id": claimed}),
    )
    .await
    .unwrap();
    assert_eq!(cand.joined["role"], "candidate");
    assert_eq!(cand.joined["user_id"], json!(uid));
    assert_eq!(cand.joined["color"], "#e6194b");
    assert_eq!(cand.joined["interview_state"]["state"], "live");

    // The interviewer link's token makes an interviewer.
    let link = test_key().link_token(s.id);
    let int = YClient::join_with(&hub, &s.code, "Ivan", json!({"token": link}))
        .await
        .unwrap();
    assert_eq!(int.joined["role"], "interviewer");

    // No token, no password: a candidate (a seed-era client) — but not under a token's user id.
    let seedish = YClient::join_with(&hub, &s.code, "Mallory", json!({"user_id": uid}))
        .await
        .unwrap();
    assert_eq!(seedish.joined["role"], "candidate");
    assert_ne!(
        seedish.joined["user_id"],
        json!(uid),
        "a bound id was taken"
    );
    let free = Uuid::new_v4();
    let plain = YClient::join_with(&hub, &s.code, "Sam", json!({"user_id": free}))
        .await
        .unwrap();
    assert_eq!(plain.joined["user_id"], json!(free));

    // Forged (another key), for another interview, expired, garbage, not a string.
    let forged = TokenKey::new("another-secret-entirely-0123")
        .unwrap()
        .link_token(s.id);
    let elsewhere = test_key().link_token(other.id);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expired = test_key().sign(&Claims {
        sid: s.id,
        role: Role::Interviewer,
        kind: TokenKind::Link,
        uid: None,
        color: None,
        iat: now - 7200,
        exp: now - 3600,
    });
    for bad in [forged, elsewhere, expired, "not.a.token".to_owned()] {
        let r = YClient::join_with(&hub, &s.code, "X", json!({"token": bad})).await;
        assert_eq!(r.err().as_deref(), Some("unauthorized"));
    }
    let r = YClient::join_with(&hub, &s.code, "X", json!({"token": 42})).await;
    assert_eq!(r.err().as_deref(), Some("invalid_payload"));

    // A password: a client without a token is refused; a token holder is not.
    let locked = session(&storage, false, Some("open sesame")).await;
    let r = YClient::join_with(&hub, &locked.code, "X", json!({})).await;
    assert_eq!(r.err().as_deref(), Some("unauthorized"));
    let (t, _) = candidate_token(&locked);
    assert!(
        YClient::join_with(&hub, &locked.code, "Cara", json!({"token": t}))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn lobby_live_ended_gate_every_edit_path_on_both_hubs() {
    let storage = sqlite();
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let h1 = TestHub::start("h1", storage.clone(), bus.clone()).await;
    let h2 = TestHub::start("h2", storage.clone(), bus).await;
    let s = session(&storage, true, None).await;
    let (token, _) = candidate_token(&s);
    let link = test_key().link_token(s.id);
    let mut int = YClient::join_with(&h1, &s.code, "Ivan", json!({"token": link}))
        .await
        .unwrap();
    let mut cand = YClient::join_with(&h2, &s.code, "Cara", json!({"token": token}))
        .await
        .unwrap();
    assert_eq!(cand.joined["interview_state"]["state"], "waiting");

    // Waiting: a candidate cannot edit or run (a second connection of theirs tries; its refused
    // edit stays in its own replica only); the interviewer prepares the code.
    let (t2, _) = candidate_token(&s);
    let mut early = YClient::join_with(&h2, &s.code, "Eve", json!({"token": t2}))
        .await
        .unwrap();
    early.insert(0, "early");
    assert!(eventually(5, || early.acks.lock().len() == early.sent).await);
    assert_eq!(
        early
            .acks
            .lock()
            .last()
            .unwrap()
            .as_ref()
            .err()
            .map(String::as_str),
        Some("interview_not_started")
    );
    int.insert(0, "def f():\n");
    assert!(int.all_acked().await);
    let (ack, slot) = recorder();
    cand.conn
        .execute_code(json!({"output": "hi"}), Some(ack))
        .await;
    assert_eq!(
        slot.lock().take().unwrap().err().as_deref(),
        Some("interview_not_started")
    );

    // A candidate cannot start it; an interviewer can, and both hubs' participants hear it.
    assert_eq!(
        control(&cand, "start_interview", json!({}))
            .await
            .err()
            .as_deref(),
        Some("forbidden")
    );
    let r = control(&int, "start_interview", json!({})).await.unwrap();
    assert_eq!(r["interview_state"]["state"], "live");
    assert!(r["interview_state"]["started_at"].is_string());
    assert!(
        eventually(5, || states(&mut cand).iter().any(|v| v["state"] == "live")).await,
        "the candidate on the other hub heard the start"
    );
    assert!(cand.sees("def f():\n").await);
    cand.insert(9, "    return 1\n");
    assert!(eventually(5, || cand.acked_ok() == 2).await);
    assert!(int.sees("def f():\n    return 1\n").await);

    // A seed-protocol client (no token, no Yjs) is a candidate too.
    let (seed, seed_sink) = h2.connect();
    let (ack, slot) = recorder();
    seed.join(
        json!({"session_code": s.code.as_str(), "name": "Old"}),
        Some(ack),
    )
    .await;
    assert_eq!(slot.lock().take().unwrap().unwrap()["role"], "candidate");

    // Ended: read-only for everyone, nothing stored; a repeated end is fine; no way back.
    let r = control(&int, "end_interview", json!({})).await.unwrap();
    let ended_at = r["interview_state"]["ended_at"].clone();
    assert!(ended_at.is_string());
    assert!(
        eventually(5, || states(&mut cand)
            .iter()
            .any(|v| v["state"] == "ended"))
        .await
    );
    let stored = history_len(&storage, &s).await;
    int.insert(0, "# late\n");
    cand.insert(0, "# late too\n");
    assert!(
        eventually(5, || int.acks.lock().len() == int.sent
            && cand.acks.lock().len() == cand.sent)
        .await
    );
    assert_eq!(
        int.acks
            .lock()
            .last()
            .unwrap()
            .as_ref()
            .err()
            .map(String::as_str),
        Some("interview_ended")
    );
    assert_eq!(
        cand.acks
            .lock()
            .last()
            .unwrap()
            .as_ref()
            .err()
            .map(String::as_str),
        Some("interview_ended")
    );
    let (ack, slot) = recorder();
    seed.code_change(json!({"code": "replaced"}), Some(ack));
    assert!(eventually(5, || slot.lock().is_some()).await);
    assert_eq!(
        slot.lock().take().unwrap().err().as_deref(),
        Some("interview_ended")
    );
    let _ = seed_sink.take();
    let (ack, slot) = recorder();
    int.conn
        .language_change(json!({"language": "javascript"}), Some(ack))
        .await;
    assert_eq!(
        slot.lock().take().unwrap().err().as_deref(),
        Some("interview_ended")
    );
    assert_eq!(
        history_len(&storage, &s).await,
        stored,
        "nothing was stored"
    );
    let again = control(&int, "end_interview", json!({})).await.unwrap();
    assert_eq!(again["interview_state"]["ended_at"], ended_at);
    assert_eq!(
        control(&int, "start_interview", json!({}))
            .await
            .err()
            .as_deref(),
        Some("invalid_transition")
    );

    // Someone joining afterwards (a reconnect) syncs and sees the final code; their sync step 2,
    // holding nothing new, is accepted.
    let late = YClient::join_with(
        &h1,
        &s.code,
        "Late",
        json!({"token": test_key().link_token(s.id)}),
    )
    .await
    .unwrap();
    let mut late = late;
    assert!(late.sees("def f():\n    return 1\n").await);
    assert!(late.all_acked().await, "{:?}", late.acks.lock());
    assert_eq!(
        stored_text(&storage, s.id).await,
        "def f():\n    return 1\n"
    );
}

#[tokio::test]
async fn controls_lock_editing_and_runs_for_candidates_and_removal_sticks() {
    let storage = sqlite();
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let hub = TestHub::start("h1", storage.clone(), bus.clone()).await;
    let s = session(&storage, false, None).await;
    let (token, cand_id) = candidate_token(&s);
    let mut int = YClient::join_with(
        &hub,
        &s.code,
        "Ivan",
        json!({"token": test_key().link_token(s.id)}),
    )
    .await
    .unwrap();
    let mut cand = YClient::join_with(&hub, &s.code, "Cara", json!({"token": token.clone()}))
        .await
        .unwrap();

    for bad in [json!({}), json!({"editing_locked": "yes"})] {
        assert_eq!(
            control(&int, "set_controls", bad).await.err().as_deref(),
            Some("invalid_payload")
        );
    }
    assert_eq!(
        control(&cand, "set_controls", json!({"editing_locked": false}))
            .await
            .err()
            .as_deref(),
        Some("forbidden")
    );
    let r = control(
        &int,
        "set_controls",
        json!({"editing_locked": true, "runs_enabled": false}),
    )
    .await
    .unwrap();
    assert_eq!(r["interview_state"]["editing_locked"], true);
    assert_eq!(r["interview_state"]["runs_enabled"], false);
    assert!(
        eventually(5, || states(&mut cand)
            .iter()
            .any(|v| v["editing_locked"] == true))
        .await
    );
    cand.insert(0, "x");
    assert!(eventually(5, || cand.acks.lock().len() == cand.sent).await);
    assert_eq!(
        cand.acks
            .lock()
            .last()
            .unwrap()
            .as_ref()
            .err()
            .map(String::as_str),
        Some("editing_locked")
    );
    let (ack, slot) = recorder();
    cand.conn
        .execute_code(json!({"output": "1"}), Some(ack))
        .await;
    assert_eq!(
        slot.lock().take().unwrap().err().as_deref(),
        Some("runs_disabled")
    );
    int.insert(0, "ok");
    assert!(int.all_acked().await);
    let (ack, slot) = recorder();
    int.conn
        .execute_code(json!({"output": "1"}), Some(ack))
        .await;
    assert!(
        slot.lock().take().unwrap().is_ok(),
        "interviewers still run"
    );
    control(&int, "set_controls", json!({"editing_locked": false}))
        .await
        .unwrap();
    // The refused "x" is in this client's replica only: its next edit builds on it, so the hub
    // holds it (it depends on a struct it never got) instead of acking what it cannot store. A
    // client starts afresh from the server's document after a refusal (the browser's does).
    cand.pump();
    let answered = cand.acks.lock().len();
    cand.insert(0, "y");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        cand.acks.lock().len(),
        answered,
        "the stale replica's edit is held, not acked: {:?}",
        cand.acks.lock()
    );
    let mut fresh = YClient::join_with(&hub, &s.code, "Cara", json!({"token": token.clone()}))
        .await
        .unwrap();
    assert!(fresh.sees("ok").await);
    fresh.insert(0, "y");
    assert!(fresh.all_acked().await, "{:?}", fresh.acks.lock());
    assert!(int.sees("yok").await);

    // Removed: told, disconnected, and the token no longer joins; a candidate cannot remove.
    assert_eq!(
        control(
            &cand,
            "remove_participant",
            json!({"user_id": int.user_id()})
        )
        .await
        .err()
        .as_deref(),
        Some("forbidden")
    );
    control(&int, "remove_participant", json!({"user_id": cand_id}))
        .await
        .unwrap();
    assert!(
        eventually(5, || cand
            .sink
            .disconnected
            .load(std::sync::atomic::Ordering::SeqCst))
        .await
    );
    cand.pump();
    assert!(errors(&cand.other).contains(&"removed".to_owned()));
    let r = YClient::join_with(&hub, &s.code, "Cara", json!({"token": token})).await;
    assert_eq!(r.err().as_deref(), Some("removed"));
}

#[tokio::test]
async fn a_control_message_from_the_session_api_reaches_every_hub() {
    let storage = sqlite();
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let h1 = TestHub::start("h1", storage.clone(), bus.clone()).await;
    let h2 = TestHub::start("h2", storage.clone(), bus.clone()).await;
    let s = session(&storage, true, None).await;
    let (t1, _) = candidate_token(&s);
    let (t2, removed) = candidate_token(&s);
    let mut a = YClient::join_with(&h1, &s.code, "A", json!({"token": t1}))
        .await
        .unwrap();
    let mut b = YClient::join_with(&h2, &s.code, "B", json!({"token": t2}))
        .await
        .unwrap();

    // What the session-API does on POST /start and /remove: store, then publish.
    let live = storage
        .transition(s.id, InterviewState::Live, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    storage.remove_user(s.id, removed).await.unwrap();
    let body = InterviewControl {
        removed: vec![removed],
        ..InterviewControl::of(&live)
    };
    let msg = BusMessage::Control {
        json: serde_json::to_vec(&body).unwrap().into(),
    }
    .encode(relay::API_ORIGIN);
    bus.publish(&relay::channel(s.id), msg).await.unwrap();

    assert!(eventually(5, || states(&mut a).iter().any(|v| v["state"] == "live")).await);
    assert!(
        eventually(5, || b
            .sink
            .disconnected
            .load(std::sync::atomic::Ordering::SeqCst))
        .await
    );
    b.pump();
    assert!(errors(&b.other).contains(&"removed".to_owned()));
    // The session-API is no hub: it is not counted as one sharing the interview.
    a.insert(0, "live now");
    assert!(a.all_acked().await);
    // A malformed control message changes nothing and breaks nothing.
    let junk = BusMessage::Control {
        json: b"{".to_vec().into(),
    }
    .encode(relay::API_ORIGIN);
    bus.publish(&relay::channel(s.id), junk).await.unwrap();
    a.insert(0, "> ");
    assert!(a.all_acked().await);
}

/// An interviewer's replica of the notes, fed by the `notes` events a [`YClient`] received.
struct Notes {
    doc: yrs::Doc,
}

impl Notes {
    fn new() -> Self {
        let doc = duet_realtime_hub::interview::new_doc();
        doc.get_or_insert_text(NOTES_NAME);
        Self { doc }
    }

    /// Sends a `notes` message; the slot holds the ack.
    fn send(c: &YClient, msg: Vec<u8>) -> AckSlot {
        let (ack, slot) = recorder();
        c.conn.notes(&msg, Some(ack));
        slot
    }

    fn sync(&self, c: &YClient) -> AckSlot {
        let sv = self.doc.transact().state_vector();
        Self::send(c, protocol::encode_step1(&sv))
    }

    fn insert(&self, c: &YClient, index: u32, s: &str) -> AckSlot {
        let text = self.doc.get_or_insert_text(NOTES_NAME);
        let update = {
            let mut txn = self.doc.transact_mut();
            text.insert(&mut txn, index, s);
            txn.encode_update_v1()
        };
        Self::send(c, protocol::encode_update(&update))
    }

    /// Applies every `notes` message `c` received so far.
    fn pump(&self, c: &mut YClient) {
        c.pump();
        let (notes, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut c.other)
            .into_iter()
            .partition(|(e, _)| e == "notes");
        c.other = rest;
        for (_, p) in notes {
            if let Outgoing::Binary(b) = p {
                for m in protocol::decode(&b, NOTES_NAME).expect("valid notes message") {
                    if let protocol::ClientMessage::Update { update, .. } = m {
                        self.doc.transact_mut().apply_update(update).unwrap();
                    }
                }
            }
        }
    }

    fn text(&self) -> String {
        let text = self.doc.get_or_insert_text(NOTES_NAME);
        text.get_string(&self.doc.transact())
    }

    async fn sees(&self, c: &mut YClient, want: &str) -> bool {
        eventually(5, || {
            self.pump(c);
            self.text() == want
        })
        .await
    }
}

/// Every byte a connection was sent, as text (binary payloads lossily), to look for a secret.
fn everything_sent(c: &mut YClient) -> String {
    c.pump();
    let mut all = String::new();
    for (e, p) in &c.other {
        all.push_str(e);
        match p {
            Outgoing::Json(v) => all.push_str(&v.to_string()),
            Outgoing::Binary(b) => all.push_str(&String::from_utf8_lossy(b)),
        }
    }
    all.push_str(&c.text());
    all
}

#[tokio::test]
async fn private_notes_reach_interviewers_on_every_hub_and_never_a_candidate() {
    const SECRET: &str = "strong on recursion, weak on tests";
    let storage = sqlite();
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let h1 = TestHub::start("h1", storage.clone(), bus.clone()).await;
    let h2 = TestHub::start("h2", storage.clone(), bus.clone()).await;
    let s = session(&storage, false, None).await;
    let link = test_key().link_token(s.id);
    let mut a = YClient::join_with(&h1, &s.code, "Ann", json!({"token": link.clone()}))
        .await
        .unwrap();
    let mut b = YClient::join_with(&h2, &s.code, "Ben", json!({"token": link.clone()}))
        .await
        .unwrap();
    let (t1, _) = candidate_token(&s);
    let (t2, _) = candidate_token(&s);
    let mut c1 = YClient::join_with(&h1, &s.code, "Cara", json!({"token": t1}))
        .await
        .unwrap();
    let mut c2 = YClient::join_with(&h2, &s.code, "Dan", json!({"token": t2}))
        .await
        .unwrap();
    let (seed, seed_sink) = h1.connect();
    seed.join(
        json!({"session_code": s.code.as_str(), "name": "Old"}),
        None,
    )
    .await;

    let (na, nb) = (Notes::new(), Notes::new());
    assert!(eventually(5, || na.sync(&a).lock().is_some()).await);
    nb.sync(&b);
    let ack = na.insert(&a, 0, SECRET);
    assert!(eventually(5, || ack.lock().is_some()).await);
    assert!(
        ack.lock().take().unwrap().is_ok(),
        "the notes edit is acked once stored"
    );
    assert!(
        nb.sees(&mut b, SECRET).await,
        "the interviewer on the other hub sees it"
    );
    // The code document is untouched, and everyone's code editing goes on.
    a.insert(0, "def f(): pass\n");
    assert!(c2.sees("def f(): pass\n").await);

    // A candidate asking for the notes is refused and sent nothing of them.
    let cn = Notes::new();
    let refused = cn.sync(&c1);
    assert!(eventually(5, || refused.lock().is_some()).await);
    assert_eq!(
        refused.lock().take().unwrap().err().as_deref(),
        Some("forbidden")
    );
    let refused = cn.insert(&c2, 0, "sneaky");
    assert!(eventually(5, || refused.lock().is_some()).await);
    assert_eq!(
        refused.lock().take().unwrap().err().as_deref(),
        Some("forbidden")
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for c in [&mut c1, &mut c2] {
        let got = everything_sent(c);
        assert!(
            !got.contains("recursion"),
            "a candidate received the notes: {got}"
        );
    }
    let seed_got: String = seed_sink
        .take()
        .iter()
        .map(|(e, p)| format!("{e}{p:?}"))
        .collect();
    assert!(
        !seed_got.contains("recursion"),
        "a seed client received the notes"
    );

    // Stored as the notes document, not the code's, and loaded by a hub that starts afresh.
    let notes_rows = storage
        .history(s.id, duet_domain::DocKind::Notes)
        .await
        .unwrap();
    assert!(!notes_rows.is_empty());
    assert!(!stored_text(&storage, s.id).await.contains("recursion"));
    drop((a, b, c1, c2));
    let h3 = TestHub::start("h3", storage.clone(), bus.clone()).await;
    let mut late = YClient::join_with(&h3, &s.code, "Lee", json!({"token": link}))
        .await
        .unwrap();
    let nl = Notes::new();
    nl.sync(&late);
    assert!(
        nl.sees(&mut late, SECRET).await,
        "the notes came back from storage"
    );

    // Ended: the notes are read-only too.
    control(&late, "end_interview", json!({})).await.unwrap();
    let r = nl.insert(&late, 0, "after the end: ");
    assert!(eventually(5, || r.lock().is_some()).await);
    assert_eq!(
        r.lock().take().unwrap().err().as_deref(),
        Some("interview_ended")
    );
}
