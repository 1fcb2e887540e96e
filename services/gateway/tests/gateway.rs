//! The gateway in front of a real session-API (SQLite backend): API calls and pages go through it.

mod assets;

use std::net::TcpListener;
use std::sync::Arc;

use duet_config::Settings;
use duet_storage::{sqlite::SqliteStorage, Storage};
use reqwest::StatusCode;
use serde_json::Value;

async fn status_of(http: &reqwest::Client, url: String) -> StatusCode {
    http.get(url).send().await.unwrap().status()
}

async fn text_of(http: &reqwest::Client, url: String) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

async fn spawn_session_api() -> String {
    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::in_memory().unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = duet_session_api::Application::with_storage(listener, storage, 1_000_000).unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    base
}

fn settings(api_urls: Vec<String>, frontend: &std::path::Path) -> Settings {
    let mut s = Settings::load_from(Vec::<(String, String)>::new()).unwrap();
    s.port = 0;
    s.gateway.session_api_urls = api_urls;
    s.frontend_dir = frontend.to_path_buf();
    s
}

async fn spawn_gateway(s: &Settings) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = duet_gateway::Application::with_listener(s, listener, None).unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    base
}

#[tokio::test]
async fn api_and_pages_go_through_the_gateway() {
    let frontend = tempfile::tempdir().unwrap();
    std::fs::write(
        frontend.path().join("index.html"),
        "<!doctype html><title>landing</title>",
    )
    .unwrap();
    std::fs::write(
        frontend.path().join("editor.html"),
        "<!doctype html><title>editor</title>",
    )
    .unwrap();
    std::fs::create_dir(frontend.path().join("static")).unwrap();
    std::fs::write(frontend.path().join("static/app.js"), "console.log(1)").unwrap();
    std::fs::write(
        frontend.path().join("assets.json"),
        r#"{"version":1,"files":{"index.html":{"immutable":false},"editor.html":{"immutable":false},
            "static/app.js":{"immutable":false}}}"#,
    )
    .unwrap();

    let api = spawn_session_api().await;
    let gw = spawn_gateway(&settings(vec![api], frontend.path())).await;
    let http = reqwest::Client::new();

    let r = http
        .post(format!("{gw}/api/session"))
        .header("content-type", "application/json")
        .body(r#"{"language":"html"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let code = created["code"].as_str().unwrap();
    assert_eq!(created["language"], "html");

    let found: Value = http
        .get(format!("{gw}/api/session/{code}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["id"], created["id"]);

    // Errors pass through unchanged.
    let r = http
        .post(format!("{gw}/api/session"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");

    let page = http
        .get(format!("{gw}/interview/{code}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("editor"));
    assert_eq!(
        status_of(&http, format!("{gw}/interview/ZZZZ2222")).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_of(&http, format!("{gw}/interview/bad")).await,
        StatusCode::NOT_FOUND
    );
    assert!(text_of(&http, format!("{gw}/")).await.contains("landing"));
    assert_eq!(
        text_of(&http, format!("{gw}/static/app.js")).await,
        "console.log(1)"
    );
    assert_eq!(
        status_of(&http, format!("{gw}/readyz")).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn no_upstream_gives_a_json_502_and_not_ready() {
    let frontend = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}", duet_testkit::free_port());
    let gw = spawn_gateway(&settings(vec![dead], frontend.path())).await;
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{gw}/api/session/ZZZZ2222"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_unavailable");
    let r = http
        .get(format!(
            "{gw}/socket.io/?EIO=4&transport=polling&session=ZZZZ2222"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY, "no hub configured");
    assert_eq!(
        status_of(&http, format!("{gw}/readyz")).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        status_of(&http, format!("{gw}/interview/ZZZZ2222")).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Without a built client the landing page says so instead of failing.
    assert!(text_of(&http, format!("{gw}/"))
        .await
        .contains("not been built"));
}

#[tokio::test]
async fn hubs_are_discovered_from_their_registrations() {
    use duet_bus::Bus;
    let bus: Arc<dyn Bus> = Arc::new(duet_bus::LocalBus::new());
    let frontend = tempfile::tempdir().unwrap();
    let s = settings(vec![], frontend.path());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = duet_gateway::Application::with_listener(&s, listener, Some(bus.clone())).unwrap();
    let upstreams = app.upstreams();
    tokio::spawn(app.run_until_stopped());
    bus.set_with_ttl("duet:hub:a", "http://127.0.0.1:1", 2)
        .await
        .unwrap();
    bus.set_with_ttl("duet:hub:b", "http://127.0.0.1:2", 60)
        .await
        .unwrap();
    let wait_for = |want: Vec<&'static str>| {
        let upstreams = upstreams.clone();
        async move {
            for _ in 0..60 {
                let mut hubs = upstreams.hubs();
                hubs.sort();
                if hubs == want {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("hubs never became {want:?}: {:?}", upstreams.hubs());
        }
    };
    wait_for(vec!["http://127.0.0.1:1", "http://127.0.0.1:2"]).await;
    // Hub a stops refreshing its registration: it drops out when the TTL runs out.
    wait_for(vec!["http://127.0.0.1:2"]).await;
}

/// Engine.IO through the gateway to a real hub, over long-polling and over WebSocket.
#[actix_web::test]
async fn socketio_is_proxied_to_a_hub_over_polling_and_websocket() {
    use futures_util::{SinkExt, StreamExt};
    let data = tempfile::tempdir().unwrap();
    let mut hub_settings = settings(vec![], data.path());
    hub_settings.data_dir = data.path().to_path_buf();
    let hub = duet_realtime_hub::startup::Application::build(&hub_settings)
        .await
        .unwrap();
    let hub_url = format!("http://127.0.0.1:{}", hub.port());
    actix_web::rt::spawn(hub.run_until_stopped());

    let mut gw_settings = settings(vec![], data.path());
    gw_settings.gateway.hub_urls = vec![hub_url];
    let gw = spawn_gateway(&gw_settings).await;

    // Polling: the open packet, then a namespace connect answered through the same hub.
    let http = reqwest::Client::new();
    let open = text_of(
        &http,
        format!("{gw}/socket.io/?EIO=4&transport=polling&session=ZZZZ2222"),
    )
    .await;
    assert!(open.starts_with("0{"), "{open}");
    let sid = serde_json::from_str::<Value>(&open[1..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let posted = http
        .post(format!(
            "{gw}/socket.io/?EIO=4&transport=polling&session=ZZZZ2222&sid={sid}"
        ))
        .body("40")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::OK);
    let connected = text_of(
        &http,
        format!("{gw}/socket.io/?EIO=4&transport=polling&session=ZZZZ2222&sid={sid}"),
    )
    .await;
    assert!(connected.starts_with("40{\"sid\""), "{connected}");

    // WebSocket: frames pass through both ways.
    let ws_url = format!(
        "{}/socket.io/?EIO=4&transport=websocket&session=ZZZZ2222",
        gw.replacen("http", "ws", 1)
    );
    let (_, mut ws) = awc::Client::default().ws(ws_url).connect().await.unwrap();
    let first = ws.next().await.unwrap().unwrap();
    let awc::ws::Frame::Text(open) = first else {
        panic!("expected the open packet, got {first:?}")
    };
    assert!(open.starts_with(b"0{"), "{open:?}");
    ws.send(awc::ws::Message::Text("40".into())).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    let awc::ws::Frame::Text(reply) = reply else {
        panic!("expected the connect reply, got {reply:?}")
    };
    assert!(reply.starts_with(b"40{\"sid\""), "{reply:?}");
    // An event before join_session gets the hub's typed error, through the proxy.
    ws.send(awc::ws::Message::Text(
        "42[\"code_change\",{\"code\":\"x\"}]".into(),
    ))
    .await
    .unwrap();
    let err = ws.next().await.unwrap().unwrap();
    let awc::ws::Frame::Text(err) = err else {
        panic!("expected an error event, got {err:?}")
    };
    let err = String::from_utf8_lossy(&err);
    assert!(
        err.starts_with("42[\"error\"") && err.contains("not_joined"),
        "{err}"
    );
}
