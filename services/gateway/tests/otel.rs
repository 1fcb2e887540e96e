//! OpenTelemetry through the gateway: with an OTLP endpoint configured, a REST call through the
//! gateway to the session-API is one trace — the client's `traceparent` is continued by the
//! gateway's request span, whose child is the session-API's. (A test binary of its own: tracing is
//! set up once per process.)

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use duet_config::Settings;
use duet_storage::{sqlite::SqliteStorage, Storage};
use duet_testkit::otlp::Receiver;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_call_through_the_gateway_is_one_trace() {
    let receiver = Receiver::start().await;
    let mut settings = Settings::load_from([
        ("DUET_OTEL__ENDPOINT".to_owned(), receiver.endpoint()),
        ("DUET_OTEL__PROTOCOL".to_owned(), "http/json".to_owned()),
    ])
    .unwrap();
    let tracing = duet_telemetry::init("duet-test", &settings).unwrap();
    assert!(duet_telemetry::trace::enabled());

    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::in_memory().unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let api = duet_session_api::Application::with_storage(
        listener,
        storage,
        1_000_000,
        duet_telemetry::connections::ConnectionLimits::default(),
    )
    .unwrap();
    let api_url = format!("http://127.0.0.1:{}", api.port());
    tokio::spawn(api.run_until_stopped());

    let frontend = tempfile::tempdir().unwrap();
    std::fs::write(frontend.path().join("index.html"), "<!doctype html>").unwrap();
    std::fs::write(
        frontend.path().join("assets.json"),
        r#"{"version":1,"files":{"index.html":{"immutable":false}}}"#,
    )
    .unwrap();
    settings.port = 0;
    settings.gateway.session_api_urls = vec![api_url];
    settings.frontend_dir = frontend.path().to_path_buf();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let gw = duet_gateway::Application::with_listener(&settings, listener, None).unwrap();
    let gw_url = format!("http://127.0.0.1:{}", gw.port());
    tokio::spawn(gw.run_until_stopped());

    let r = reqwest::Client::new()
        .post(format!("{gw_url}/api/session"))
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{TRACE}-{CLIENT_SPAN}-01"))
        .body(r#"{"language":"python"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);

    // The spans end as the responses finish: flush (off the runtime's threads, which serve the
    // receiver) until they are all there.
    let found = receiver
        .wait_for(Duration::from_secs(10), |spans| {
            tokio::task::block_in_place(|| tracing.flush());
            let gateway = spans
                .iter()
                .find(|s| s.trace_id == TRACE && s.parent_span_id == CLIENT_SPAN)?;
            let api = spans
                .iter()
                .find(|s| s.trace_id == TRACE && s.parent_span_id == gateway.span_id)?;
            Some((gateway.clone(), api.clone()))
        })
        .await;
    let Some((gateway, api)) = found else {
        panic!(
            "no gateway → session-API trace; received {:#?}, rejected {:?}",
            receiver.spans(),
            receiver.rejected()
        );
    };
    assert_eq!(gateway.service, "duet-test");
    assert!(gateway.name.starts_with("POST "), "{gateway:?}");
    assert_eq!(api.name, "POST /api/session", "{api:?}");
    assert_eq!(api.attribute("http.route"), Some("/api/session"));
    assert_ne!(api.span_id, gateway.span_id);
    // Every other span of the trace (the handlers' own, such as `create_session`) hangs below
    // these: none is orphaned, none starts a trace of its own.
    let spans: Vec<_> = receiver
        .spans()
        .into_iter()
        .filter(|s| s.trace_id == TRACE)
        .collect();
    for s in &spans {
        assert!(
            s.parent_span_id == CLIENT_SPAN || spans.iter().any(|p| p.span_id == s.parent_span_id),
            "{s:?} has no parent in the trace"
        );
    }
    assert!(
        spans
            .iter()
            .any(|s| s.name == "create_session" && s.parent_span_id == api.span_id),
        "{spans:#?}"
    );
    assert!(receiver.rejected().is_empty(), "{:?}", receiver.rejected());
}
