//! OpenTelemetry through the gateway: with an OTLP endpoint configured, a REST call through the
//! gateway to the session-API, and a WebSocket through the gateway to a hub, are each one trace —
//! the client's `traceparent` is continued by the gateway's request span, whose child is the
//! upstream's. (A test binary of its own: tracing is set up once per process, shared by its tests,
//! each of which follows a trace id of its own.)

use std::net::TcpListener;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use duet_config::Settings;
use duet_storage::{sqlite::SqliteStorage, Storage};
use duet_testkit::otlp::Receiver;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The process's receiver, exporter and settings (tracing on, spans as JSON to the receiver).
fn traced() -> &'static (Receiver, duet_telemetry::Tracing, Settings) {
    static TRACED: OnceLock<(Receiver, duet_telemetry::Tracing, Settings)> = OnceLock::new();
    TRACED.get_or_init(|| {
        let receiver = std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(Receiver::start())
        })
        .join()
        .unwrap();
        let settings = Settings::load_from([
            ("DUET_OTEL__ENDPOINT".to_owned(), receiver.endpoint()),
            ("DUET_OTEL__PROTOCOL".to_owned(), "http/json".to_owned()),
        ])
        .unwrap();
        let tracing = duet_telemetry::init("duet-test", &settings).unwrap();
        assert!(duet_telemetry::trace::enabled());
        (receiver, tracing, settings)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_call_through_the_gateway_is_one_trace() {
    let (receiver, tracing, settings) = traced();
    let mut settings = settings.clone();

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
            tracing.flush();
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

/// A WebSocket through the gateway to a real hub: the hub's span for the upgrade is a child of the
/// gateway's (the context `ws_attempt` injects).
#[actix_web::test]
async fn a_websocket_through_the_gateway_to_a_hub_is_one_trace() {
    const WS_TRACE: &str = "5ce929d0e0e47364bf92f3577b34da6a";
    let (receiver, tracing, settings) = traced();
    let data = tempfile::tempdir().unwrap();
    let mut hub_settings = settings.clone();
    hub_settings.port = 0;
    hub_settings.data_dir = data.path().to_path_buf();
    hub_settings.secret_key = Some("gateway-tests-secret-0123456789".to_owned().into());
    let hub = duet_realtime_hub::startup::Application::build(&hub_settings)
        .await
        .unwrap();
    let hub_url = format!("http://127.0.0.1:{}", hub.port());
    actix_web::rt::spawn(hub.run_until_stopped());

    let frontend = tempfile::tempdir().unwrap();
    std::fs::write(frontend.path().join("index.html"), "<!doctype html>").unwrap();
    std::fs::write(
        frontend.path().join("assets.json"),
        r#"{"version":1,"files":{"index.html":{"immutable":false}}}"#,
    )
    .unwrap();
    let mut gw_settings = settings.clone();
    gw_settings.port = 0;
    gw_settings.gateway.hub_urls = vec![hub_url];
    gw_settings.frontend_dir = frontend.path().to_path_buf();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let gw = duet_gateway::Application::with_listener(&gw_settings, listener, None).unwrap();
    let gw_url = format!("ws://127.0.0.1:{}", gw.port());
    actix_web::rt::spawn(gw.run_until_stopped());

    let (_, ws) = awc::Client::default()
        .ws(format!(
            "{gw_url}/socket.io/?EIO=4&transport=websocket&session=ZZZZ2222"
        ))
        .set_header("traceparent", format!("00-{WS_TRACE}-{CLIENT_SPAN}-01"))
        .connect()
        .await
        .unwrap();
    drop(ws);

    let found = receiver
        .wait_for(Duration::from_secs(10), |spans| {
            tracing.flush();
            let gateway = spans
                .iter()
                .find(|s| s.trace_id == WS_TRACE && s.parent_span_id == CLIENT_SPAN)?;
            let hub = spans
                .iter()
                .find(|s| s.trace_id == WS_TRACE && s.parent_span_id == gateway.span_id)?;
            Some((gateway.clone(), hub.clone()))
        })
        .await;
    let Some((gateway, hub)) = found else {
        panic!(
            "no gateway → hub trace; received {:#?}",
            receiver
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == WS_TRACE)
                .collect::<Vec<_>>()
        );
    };
    assert_eq!(gateway.name, "GET /socket.io/{tail:.*}", "{gateway:?}");
    assert!(hub.name.starts_with("GET /socket.io"), "{hub:?}");
    assert!(receiver.rejected().is_empty(), "{:?}", receiver.rejected());
}
