//! The interview record's activity: the `activity` event (pastes, leaving the page and coming back)
//! validated, rate-limited and refused once the interview has ended; shown live to the
//! interviewers on every hub (two hubs over a real Redis) and never to a candidate; joins, leaves,
//! language changes and activity stored in order with their authors by the batched event writer,
//! whose failures never hold up an edit.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use duet_bus::{Bus, RedisBus};
use duet_domain::{Language, NewSession, Role, Session, SessionCode, Title};
use duet_storage::sqlite::SqliteStorage;
use duet_storage::{Event, Storage};
use duet_testkit::redis::TestRedis;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::*;

fn sqlite() -> Arc<dyn Storage> {
    Arc::new(SqliteStorage::in_memory().unwrap())
}

async fn session(storage: &Arc<dyn Storage>) -> Session {
    storage
        .create_session(NewSession {
            code: SessionCode::generate(),
            title: Title::parse("t").unwrap(),
            language: Language::Python,
            lobby: false,
            password_hash: None,
        })
        .await
        .unwrap()
}

async fn join(hub: &TestHub, s: &Session, name: &str, role: Role) -> YClient {
    let token = match role {
        Role::Interviewer => test_key().link_token(s.id),
        Role::Candidate => {
            test_key().participant_token(s.id, Role::Candidate, Uuid::new_v4(), "#3cb44b")
        }
    };
    YClient::join_with(hub, &s.code, name, json!({"token": token}))
        .await
        .unwrap()
}

/// Sends `activity`; the ack's outcome (`Err` holds the error code).
fn activity(c: &YClient, payload: Value) -> Result<Value, String> {
    let (ack, slot) = recorder();
    c.conn.activity(payload, Some(ack));
    let r = slot.lock().take();
    r.unwrap_or_else(|| Err("no ack".into()))
}

/// The `activity` events a client received so far (pumped), taken out of its inbox.
fn live(c: &mut YClient) -> Vec<Value> {
    c.pump();
    let (got, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut c.other)
        .into_iter()
        .partition(|(e, _)| e == "activity");
    c.other = rest;
    got.into_iter()
        .filter_map(|(_, p)| match p {
            duet_realtime_hub::transport::Outgoing::Json(v) => Some(v),
            _ => None,
        })
        .collect()
}

/// Waits until `c` has received `n` `activity` events (up to 5 s) and returns them.
async fn live_n(c: &mut YClient, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    eventually(5, || {
        got.extend(live(c));
        got.len() >= n
    })
    .await;
    got
}

/// The stored events once `done` says they are complete (up to 5 s), or what is there then.
async fn stored(
    storage: &Arc<dyn Storage>,
    s: &Session,
    done: impl Fn(&[Event]) -> bool,
) -> Vec<Event> {
    let mut events = Vec::new();
    for _ in 0..100 {
        events = storage.events(s.id).await.unwrap();
        if done(&events) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    events
}

fn by<'a>(events: &'a [Event], user: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e.user_id.map(|u| u.to_string()).as_deref() == Some(user))
        .map(|e| e.kind.as_str())
        .collect()
}

#[tokio::test]
async fn activity_is_recorded_and_reaches_the_interviewers_on_every_hub_only() {
    let redis = TestRedis::start();
    let storage = sqlite();
    let bus1: Arc<dyn Bus> = Arc::new(RedisBus::connect(&redis.url()).await.unwrap());
    let bus2: Arc<dyn Bus> = Arc::new(RedisBus::connect(&redis.url()).await.unwrap());
    let h1 = TestHub::start("h1", storage.clone(), bus1).await;
    let h2 = TestHub::start("h2", storage.clone(), bus2).await;
    let s = session(&storage).await;
    let mut ann = join(&h1, &s, "Ann", Role::Interviewer).await;
    let mut ben = join(&h2, &s, "Ben", Role::Interviewer).await;
    let mut cara = join(&h1, &s, "Cara", Role::Candidate).await;
    let mut dan = join(&h2, &s, "Dan", Role::Candidate).await;
    // Everyone sees everyone (the hubs have exchanged presence) before the activity starts.
    assert!(
        eventually(5, || {
            [&h1, &h2].iter().all(|h| {
                h.core
                    .interview(s.id)
                    .is_some_and(|iv| iv.participant_count() == 4)
            })
        })
        .await
    );

    // The candidate on hub 1 pastes, leaves the tab and comes back.
    assert_eq!(
        activity(&cara, json!({"kind": "paste", "size": 312})),
        Ok(json!({"ok": true}))
    );
    assert!(activity(&cara, json!({"kind": "blur"})).is_ok());
    assert!(activity(&cara, json!({"kind": "focus"})).is_ok());
    for ivr in [&mut ann, &mut ben] {
        let got = live_n(ivr, 3).await;
        let kinds: Vec<_> = got.iter().map(|v| v["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["paste", "blur", "focus"], "{got:?}");
        assert_eq!(got[0]["size"], 312);
        assert_eq!(got[0]["doc"], "code");
        assert_eq!(got[0]["name"], "Cara");
        assert_eq!(got[0]["user_id"], json!(cara.user_id()));
        let at = got[0]["at"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(),
            "{at}"
        );
    }
    // An interviewer's own activity goes to the other interviewers, not back to them.
    assert!(activity(&ben, json!({"kind": "paste", "size": 7, "doc": "notes"})).is_ok());
    let got = live_n(&mut ann, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0]["name"].clone(), got[0]["doc"].clone()),
        (json!("Ben"), json!("notes"))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(live(&mut ben).is_empty(), "the sender got its own activity");

    // Candidates never receive it, on either hub.
    for c in [&mut cara, &mut dan] {
        assert!(live(c).is_empty(), "a candidate received activity");
    }

    // Refusals: a kind nobody knows, a bad size, a candidate's paste into the notes, before
    // joining — each answered with its error, and nothing recorded or relayed.
    for bad in [
        json!({"kind": "typing"}),
        json!({"kind": "paste", "size": -3}),
        json!("blur"),
    ] {
        assert_eq!(
            activity(&dan, bad).err().as_deref(),
            Some("invalid_payload")
        );
    }
    assert_eq!(
        activity(&dan, json!({"kind": "paste", "size": 1, "doc": "notes"}))
            .err()
            .as_deref(),
        Some("forbidden")
    );
    dan.pump();
    assert!(errors(&dan.other).contains(&"invalid_payload".to_owned()));
    let (stranger, _) = h2.connect();
    let (ack, slot) = recorder();
    stranger.activity(json!({"kind": "blur"}), Some(ack));
    assert_eq!(
        slot.lock().take().unwrap().err().as_deref(),
        Some("not_joined")
    );

    // Rate-limited per connection: a burst beyond the limit is refused.
    let refused = (0..60)
        .filter(|_| {
            activity(&dan, json!({"kind": "focus"})).err().as_deref() == Some("rate_limited")
        })
        .count();
    assert!(refused > 0, "60 activity events at once were all accepted");
    assert!(refused < 60);

    // A language change and a departure are recorded too.
    let (ack, slot) = recorder();
    ann.conn
        .language_change(json!({"language": "javascript"}), Some(ack))
        .await;
    assert!(slot.lock().take().unwrap().is_ok());
    cara.conn.disconnected().await;

    let cara_id = cara.user_id();
    let events = stored(&storage, &s, |e| by(e, &cara_id).contains(&"leave")).await;
    assert_eq!(
        by(&events, &cara_id),
        ["join", "paste", "blur", "focus", "leave"],
        "{events:#?}"
    );
    let cara_events: Vec<_> = events
        .iter()
        .filter(|e| e.user_id.map(|u| u.to_string()) == Some(cara_id.clone()))
        .collect();
    assert!(cara_events.iter().all(|e| e.user_name == "Cara"));
    let data: Value = serde_json::from_str(&cara_events[0].data).unwrap();
    assert_eq!(data, json!({"role": "candidate", "color": "#3cb44b"}));
    let data: Value = serde_json::from_str(&cara_events[1].data).unwrap();
    assert_eq!(data, json!({"size": 312, "doc": "code"}));
    assert!(cara_events.windows(2).all(|w| w[0].at <= w[1].at));
    let ann_id = ann.user_id();
    let lang = events
        .iter()
        .find(|e| e.kind == "language")
        .expect("the language change is recorded");
    assert_eq!(lang.user_id.map(|u| u.to_string()), Some(ann_id.clone()));
    assert_eq!(
        serde_json::from_str::<Value>(&lang.data).unwrap(),
        json!({"language": "javascript"})
    );
    let joins = events.iter().filter(|e| e.kind == "join").count();
    assert_eq!(joins, 4, "one join per connection");
    // Dan's refused events left nothing; his accepted focus events are there.
    let dan_kinds = by(&events, &dan.user_id());
    assert!(!dan_kinds.contains(&"paste"));
    assert!(dan_kinds.iter().filter(|k| **k == "focus").count() >= 1);
    assert!(!h1
        .core
        .metrics()
        .contains("duet_hub_events_recorded_total 0\n"));

    // Ended: activity is refused, for candidates and interviewers alike.
    let (ack, slot) = recorder();
    ann.conn
        .control_event("end_interview", json!({}), Some(ack))
        .await;
    assert!(slot.lock().take().unwrap().is_ok());
    assert_eq!(
        activity(&ann, json!({"kind": "blur"})).err().as_deref(),
        Some("interview_ended")
    );
    // The other hub hears of the end over the bus.
    assert!(
        eventually(5, || activity(&dan, json!({"kind": "blur"}))
            .err()
            .as_deref()
            == Some("interview_ended"))
        .await
    );
}

#[tokio::test]
async fn a_failing_event_store_never_holds_up_edits() {
    let flaky = Flaky::new(sqlite());
    let storage: Arc<dyn Storage> = flaky.clone();
    let bus: Arc<dyn Bus> = Arc::new(duet_bus::LocalBus::new());
    let hub = TestHub::start("h1", storage.clone(), bus).await;
    let s = session(&storage).await;
    flaky.fail_events.store(true, Ordering::SeqCst);
    let mut a = join(&hub, &s, "Ann", Role::Interviewer).await;
    let mut c = join(&hub, &s, "Cara", Role::Candidate).await;
    for i in 0..20u32 {
        c.insert(i, "x");
        assert!(activity(&c, json!({"kind": "paste", "size": 1})).is_ok());
    }
    // Every edit is stored and acked, and reaches the other side, while no event can be stored.
    assert!(c.all_acked().await, "edits waited for the event store");
    assert!(a.sees(&"x".repeat(20)).await);
    assert_eq!(live_n(&mut a, 20).await.len(), 20, "live activity goes on");
    let metrics = hub.core.metrics();
    assert!(
        eventually(5, || !hub
            .core
            .metrics()
            .contains("duet_hub_events_failed_total 0\n"))
        .await,
        "lost events are counted: {metrics}"
    );
    // (Only the storage's own `start`, written when the interview was created live.)
    let kept = storage.events(s.id).await.unwrap();
    assert!(kept.iter().all(|e| e.kind == "start"), "{kept:#?}");

    // Once the store works again, new events are recorded.
    flaky.fail_events.store(false, Ordering::SeqCst);
    assert!(activity(&c, json!({"kind": "blur"})).is_ok());
    let events = stored(&storage, &s, |e| e.iter().any(|e| e.kind == "blur")).await;
    assert_eq!(events.iter().filter(|e| e.kind == "blur").count(), 1);
}

#[tokio::test]
async fn a_hub_that_shuts_down_records_everyones_leaving_once() {
    let storage = sqlite();
    let bus: Arc<dyn Bus> = Arc::new(duet_bus::LocalBus::new());
    let hub = TestHub::start("h1", storage.clone(), bus).await;
    let s = session(&storage).await;
    let ann = join(&hub, &s, "Ann", Role::Interviewer).await;
    let cara = join(&hub, &s, "Cara", Role::Candidate).await;
    hub.core.shutdown().await;
    // Stored by the time shutdown returns; the sockets closing afterwards add nothing.
    let events = storage.events(s.id).await.unwrap();
    for c in [&ann, &cara] {
        assert_eq!(by(&events, &c.user_id()), ["join", "leave"], "{events:#?}");
    }
    ann.conn.disconnected().await;
    cara.conn.disconnected().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = storage.events(s.id).await.unwrap();
    assert_eq!(after.len(), events.len(), "a second leave: {after:#?}");
}
