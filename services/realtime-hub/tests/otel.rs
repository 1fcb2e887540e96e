//! OpenTelemetry across hubs: with an OTLP endpoint configured, an edit made on one hub and relayed
//! over Redis to another is one trace — the receiving hub's span is a child of the sending hub's
//! edit span. (A test binary of its own: tracing is set up once per process.)

#[path = "it/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{new_session, TestHub, YClient};
use duet_bus::{Bus, RedisBus};
use duet_config::Settings;
use duet_storage::{sqlite::SqliteStorage, Storage};
use duet_testkit::otlp::Receiver;
use duet_testkit::redis::TestRedis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_relayed_to_another_hub_is_one_trace() {
    let receiver = Receiver::start().await;
    let settings = Settings::load_from([
        ("DUET_OTEL__ENDPOINT".to_owned(), receiver.endpoint()),
        ("DUET_OTEL__PROTOCOL".to_owned(), "http/json".to_owned()),
    ])
    .unwrap();
    let tracing = duet_telemetry::init("duet-realtime-hub", &settings).unwrap();
    assert!(duet_telemetry::trace::enabled());

    let redis = TestRedis::start();
    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::in_memory().unwrap());
    let bus1: Arc<dyn Bus> = Arc::new(RedisBus::connect(&redis.url()).await.unwrap());
    let bus2: Arc<dyn Bus> = Arc::new(RedisBus::connect(&redis.url()).await.unwrap());
    let h1 = TestHub::start("h1", storage.clone(), bus1).await;
    let h2 = TestHub::start("h2", storage.clone(), bus2).await;
    let session = new_session(&storage).await;
    let mut ada = YClient::join(&h1, &session.code, "Ada").await;
    let mut bob = YClient::join(&h2, &session.code, "Bob").await;
    ada.insert(0, "hello");
    assert!(ada.all_acked().await);
    assert!(bob.sees("hello").await, "the edit reached the other hub");
    bob.insert(5, "!");
    assert!(ada.sees("hello!").await);

    let found = receiver
        .wait_for(Duration::from_secs(10), |spans| {
            tokio::task::block_in_place(|| tracing.flush());
            let pairs: Vec<_> = spans
                .iter()
                .filter(|s| s.name == "hub.edit")
                .filter_map(|edit| {
                    let relayed = spans.iter().find(|r| {
                        r.name == "hub.relayed_edit"
                            && r.trace_id == edit.trace_id
                            && r.parent_span_id == edit.span_id
                    })?;
                    Some((edit.clone(), relayed.clone()))
                })
                .collect();
            (pairs.len() >= 2).then_some(pairs)
        })
        .await;
    let Some(pairs) = found else {
        panic!(
            "no cross-hub edit traces; received {:#?}, rejected {:?}",
            receiver.spans(),
            receiver.rejected()
        );
    };
    // Ada's edit went h1 → h2, Bob's h2 → h1: each relayed span names the other hub as its origin,
    // and the two edits are two traces.
    let origins: Vec<&str> = pairs
        .iter()
        .filter_map(|(_, r)| r.attribute("origin"))
        .collect();
    assert!(
        origins.iter().any(|o| o.starts_with("h1-"))
            && origins.iter().any(|o| o.starts_with("h2-")),
        "{pairs:#?}"
    );
    assert_ne!(pairs[0].0.trace_id, pairs[1].0.trace_id);
    for (edit, _) in &pairs {
        assert_eq!(
            edit.parent_span_id, "",
            "an edit starts its trace: {edit:?}"
        );
        assert_eq!(
            edit.attribute("interview"),
            Some(session.id.to_string().as_str())
        );
    }
    assert!(receiver.rejected().is_empty(), "{:?}", receiver.rejected());
}
