//! The gateway in front of a real session-API (SQLite backend): API calls and pages go through it.

mod assets;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

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
    let app = duet_session_api::Application::with_storage(
        listener,
        storage,
        1_000_000,
        duet_telemetry::connections::ConnectionLimits::default(),
    )
    .unwrap();
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
    let code = created["session_code"].as_str().unwrap();
    assert_eq!(created["code"], "");
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
    assert_eq!(found["session_code"], code);

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

/// The gateway's own paths: `HEAD` wherever `GET`, 405 with `Allow` and the JSON error otherwise;
/// the API's answers (405 included) pass through.
#[tokio::test]
async fn head_works_wherever_get_does_and_wrong_methods_get_405() {
    let frontend = tempfile::tempdir().unwrap();
    std::fs::write(frontend.path().join("index.html"), "<!doctype html>").unwrap();
    std::fs::write(frontend.path().join("editor.html"), "<!doctype html>").unwrap();
    std::fs::create_dir(frontend.path().join("static")).unwrap();
    std::fs::write(frontend.path().join("static/app.js"), "console.log(1)").unwrap();
    let api = spawn_session_api().await;
    let gw = spawn_gateway(&settings(vec![api], frontend.path())).await;
    let created: Value = reqwest::Client::new()
        .post(format!("{gw}/api/session"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = created["session_code"].as_str().unwrap();
    let interview = format!("/interview/{code}");
    let session = format!("/api/session/{code}");
    for path in [
        "/",
        interview.as_str(),
        "/interview/ZZZZ2222",
        "/static/app.js",
        session.as_str(),
        "/healthz",
        "/readyz",
    ] {
        duet_testkit::http::assert_head_like_get(&gw, path).await;
    }
    for (method, path, allow) in [
        ("POST", "/", "GET, HEAD"),
        ("DELETE", interview.as_str(), "GET, HEAD"),
        ("PUT", "/static/app.js", "GET, HEAD"),
        ("POST", "/healthz", "GET, HEAD"),
        ("PATCH", "/readyz", "GET, HEAD"),
        ("PUT", "/api/session", "POST"),
        ("PUT", session.as_str(), "GET, HEAD, DELETE"),
    ] {
        duet_testkit::http::assert_method_not_allowed(&gw, method, path, allow).await;
    }
    // DELETE goes through to the session-API: the interviewer erases the interview.
    let http = reqwest::Client::new();
    let r = http
        .delete(format!("{gw}{session}"))
        .bearer_auth(created["interviewer_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = http.get(format!("{gw}{session}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
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

/// The registered hubs' URLs the gateway knows (retired ones left out), sorted.
fn known(app_hubs: &duet_gateway::hubs::Hubs) -> Vec<String> {
    let mut urls: Vec<String> = app_hubs
        .snapshot()
        .into_iter()
        .filter(|s| !matches!(s.source, duet_gateway::hubs::Source::Retired { .. }))
        .map(|s| s.hub.url)
        .collect();
    urls.sort();
    urls
}

/// Polls `check` every 50 ms for up to `within`; returns whether it became true.
async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + within;
    while std::time::Instant::now() < end {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

#[tokio::test]
async fn hubs_are_discovered_from_their_registrations() {
    use duet_bus::Bus;
    let bus: Arc<dyn Bus> = Arc::new(duet_bus::LocalBus::new());
    let frontend = tempfile::tempdir().unwrap();
    let mut s = settings(vec![], frontend.path());
    s.hub.heartbeat_ttl_secs = 3;
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
    let both = ["http://127.0.0.1:1", "http://127.0.0.1:2"];
    assert!(
        eventually(Duration::from_secs(3), || known(upstreams.hubs()) == both).await,
        "{:?}",
        upstreams.hubs().snapshot()
    );
    // Hub a stops renewing its registration: it is retired once the TTL has run out (and the
    // start-up grace, one registration TTL, is over).
    assert!(
        eventually(Duration::from_secs(8), || known(upstreams.hubs())
            == ["http://127.0.0.1:2"])
        .await,
        "{:?}",
        upstreams.hubs().snapshot()
    );
}

/// Engine.IO through the gateway to a real hub, over long-polling and over WebSocket.
#[actix_web::test]
async fn socketio_is_proxied_to_a_hub_over_polling_and_websocket() {
    use futures_util::{SinkExt, StreamExt};
    let data = tempfile::tempdir().unwrap();
    let hub_url = spawn_hub(data.path(), 0, None).await;

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

#[actix_web::test]
async fn more_websockets_than_awcs_default_pool_limit_are_bridged() {
    // awc's connector allows 100 simultaneous connections per client (one client per worker), and a
    // bridged WebSocket holds its connection for its whole life: the gateway answered the 101st
    // WebSocket of a worker 502. More than every worker's 100 at once must be bridged.
    use futures_util::StreamExt;
    let data = tempfile::tempdir().unwrap();
    let hub_url = spawn_hub(data.path(), 0, None).await;
    let mut gw_settings = settings(vec![], data.path());
    gw_settings.gateway.hub_urls = vec![hub_url];
    let gw = spawn_gateway(&gw_settings).await;

    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let n = 100 * workers + 20;
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(0))
        .finish();
    let ws_url = format!(
        "{}/socket.io/?EIO=4&transport=websocket&session=ZZZZ2222",
        gw.replacen("http", "ws", 1)
    );
    let mut open = Vec::new();
    for i in 0..n {
        let (res, mut ws) = client
            .ws(&ws_url)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("WebSocket {i} of {n}: {e}"));
        assert_eq!(res.status().as_u16(), 101);
        let first = ws.next().await.unwrap().unwrap();
        assert!(
            matches!(&first, awc::ws::Frame::Text(t) if t.starts_with(b"0{")),
            "WebSocket {i}: {first:?}"
        );
        open.push(ws);
    }
    assert_eq!(open.len(), n);
}

/// The gateway binary, with nothing behind it: `/healthz` is its own liveness.
const GATEWAY_ENV: &[(&str, &str)] = &[
    ("DUET_GATEWAY__SESSION_API_URLS", "http://127.0.0.1:9"),
    ("DUET_GATEWAY__HUB_URLS", "http://127.0.0.1:9"),
];

#[tokio::test]
async fn silent_connections_are_closed_after_the_handshake_timeout() {
    duet_testkit::service::silent_connections_are_closed_after_the_handshake_timeout(
        env!("CARGO_BIN_EXE_duet-gateway"),
        GATEWAY_ENV,
    )
    .await;
}

#[tokio::test]
async fn a_silent_flood_never_starves_healthz_under_a_low_open_files_limit() {
    duet_testkit::service::a_silent_flood_never_starves_healthz(
        env!("CARGO_BIN_EXE_duet-gateway"),
        GATEWAY_ENV,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------------
// Hub selection: failover, placement, Redis outages. Which hub holds an Engine.IO session is checked
// against the hubs themselves: only the hub that made a sid accepts a POST with it.

/// Valid session codes, in a fixed order.
fn codes() -> impl Iterator<Item = String> {
    let a = duet_domain::CODE_ALPHABET;
    (0..a.len() * a.len())
        .map(move |i| format!("K7MX2Q{}{}", a[i / a.len()] as char, a[i % a.len()] as char))
}

/// A code whose rendezvous order over `ids` starts with `first`.
fn code_hashing_to(ids: &[&str], first: &str) -> String {
    let hubs = duet_gateway::hubs::Hubs::new(&[]);
    let refs: Vec<_> = ids
        .iter()
        .map(|id| duet_gateway::hubs::HubRef {
            id: (*id).to_owned(),
            url: format!("http://{id}"),
        })
        .collect();
    hubs.apply_registrations(&refs, true);
    codes()
        .find(|c| hubs.candidates(c)[0].id == first)
        .expect("some code hashes there")
}

/// A real hub on `port` (0: any), SQLite under `dir`, registered in Redis as `id` when `redis` is set.
async fn spawn_hub(dir: &std::path::Path, port: u16, redis: Option<(&str, &str)>) -> String {
    let mut s = settings(vec![], dir);
    s.data_dir = dir.to_path_buf();
    s.secret_key = Some("gateway-tests-secret-0123456789".to_owned().into());
    s.port = port;
    if let Some((url, id)) = redis {
        s.redis_url = Some(url.to_owned());
        s.hub.id = Some(id.to_owned());
        s.hub.heartbeat_ttl_secs = 3;
    }
    let hub = duet_realtime_hub::startup::Application::build(&s)
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{}", hub.port());
    actix_web::rt::spawn(hub.run_until_stopped());
    url
}

async fn spawn_gateway_with_bus(
    s: &Settings,
    bus: Option<Arc<dyn duet_bus::Bus>>,
) -> (String, Arc<duet_gateway::proxy::Upstreams>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = duet_gateway::Application::with_listener(s, listener, bus).unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let up = app.upstreams();
    actix_web::rt::spawn(app.run_until_stopped());
    (base, up)
}

/// An Engine.IO polling handshake through `gw` for interview `code`: the status and, on 200, the sid.
async fn handshake(http: &reqwest::Client, gw: &str, code: &str) -> (StatusCode, Option<String>) {
    let r = http
        .get(format!(
            "{gw}/socket.io/?EIO=4&transport=polling&session={code}"
        ))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    let sid = body
        .strip_prefix('0')
        .and_then(|j| serde_json::from_str::<Value>(j).ok())
        .and_then(|v| v["sid"].as_str().map(str::to_owned));
    (status, sid)
}

/// Whether the hub at `hub` holds Engine.IO session `sid` (it accepts a namespace connect for it).
async fn holds(http: &reqwest::Client, hub: &str, sid: &str) -> bool {
    http.post(format!(
        "{hub}/socket.io/?EIO=4&transport=polling&sid={sid}"
    ))
    .body("40")
    .send()
    .await
    .unwrap()
    .status()
        == StatusCode::OK
}

#[actix_web::test]
async fn a_refusing_hub_is_skipped_at_once_and_marked_down_until_it_answers() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let live = spawn_hub(dir.path(), 0, None).await;
    // The second hub's port accepts connections (so the probes see nothing wrong) until the hub
    // "dies" just before the first handshake: the refusal is met by the handshake itself.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = listener.local_addr().unwrap().port();
    let dead = format!("http://127.0.0.1:{dead_port}");
    let mut s = settings(vec![], dir.path());
    s.gateway.hub_urls = vec![live.clone(), dead.clone()];
    let (gw, up) = spawn_gateway_with_bus(&s, None).await;
    let http = reqwest::Client::new();
    // Static hubs are known by their URL.
    let code = code_hashing_to(&[&live, &dead], &dead);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(listener);

    // Long-polling: answered by the live hub, no error for the client.
    let started = std::time::Instant::now();
    let (status, sid) = handshake(&http, &gw, &code).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(holds(&http, &live, &sid.unwrap()).await);
    let health = |url: &str| {
        up.hubs()
            .snapshot()
            .into_iter()
            .find(|h| h.hub.url == url)
            .map(|h| h.health)
    };
    assert_eq!(health(&dead), Some(duet_gateway::hubs::Health::Down));

    // WebSocket, for another interview hashing to the dead hub: straight to the live one.
    let code2 = codes()
        .filter(|c| *c != code)
        .find(|c| {
            let h = duet_gateway::hubs::Hubs::new(&[live.clone(), dead.clone()]);
            h.candidates(c)[0].url == dead
        })
        .unwrap();
    let ws_url = format!(
        "{}/socket.io/?EIO=4&transport=websocket&session={code2}",
        gw.replacen("http", "ws", 1)
    );
    let (_, mut ws) = awc::Client::default().ws(ws_url).connect().await.unwrap();
    let open = ws.next().await.unwrap().unwrap();
    assert!(
        matches!(&open, awc::ws::Frame::Text(t) if t.starts_with(b"0{")),
        "{open:?}"
    );

    let metrics = text_of(&http, format!("{gw}/metrics")).await;
    assert!(
        metrics.contains("duet_gateway_upstream_errors_total{kind=\"refused\",upstream=\"hub\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("duet_gateway_hubs{state=\"down\"} 1"),
        "{metrics}"
    );

    // The dead hub comes back on its port: a probe finds it, and its interviews go there again.
    spawn_hub(dir.path(), dead_port, None).await;
    assert!(
        eventually(Duration::from_secs(3), || health(&dead)
            == Some(duet_gateway::hubs::Health::Up))
        .await
    );
    let (status, sid) = handshake(&http, &gw, &code).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        holds(&http, &live, &sid.unwrap()).await,
        "an interview in use stays where it moved"
    );
    let fresh = codes()
        .filter(|c| *c != code && *c != code2)
        .find(|c| {
            let h = duet_gateway::hubs::Hubs::new(&[live.clone(), dead.clone()]);
            h.candidates(c)[0].url == dead
        })
        .unwrap();
    let (status, sid) = handshake(&http, &gw, &fresh).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        holds(&http, &dead, &sid.unwrap()).await,
        "new interviews hash there again"
    );
}

#[actix_web::test]
async fn placed_interviews_stay_on_their_hub_while_hubs_join_across_gateways() {
    use duet_bus::Bus;
    let redis = duet_testkit::redis::TestRedis::start();
    let url = redis.url();
    let bus: Arc<dyn Bus> = Arc::new(duet_bus::RedisBus::connect(&url).await.unwrap());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let hub_a = spawn_hub(dir_a.path(), 0, Some((&url, "hub-a"))).await;

    let mut s = settings(vec![], dir_a.path());
    s.hub.heartbeat_ttl_secs = 3;
    let mut gateways = Vec::new();
    for _ in 0..2 {
        let bus: Arc<dyn Bus> = Arc::new(duet_bus::RedisBus::connect(&url).await.unwrap());
        gateways.push(spawn_gateway_with_bus(&s, Some(bus)).await);
    }
    let knows = |n: usize| {
        gateways
            .iter()
            .all(|(_, up)| up.hubs().candidates("").len() == n)
    };
    assert!(eventually(Duration::from_secs(5), || knows(1)).await);
    let http = reqwest::Client::new();
    let (g1, g2) = (&gateways[0].0, &gateways[1].0);

    // An interview starts while only hub-a exists; it would hash to hub-b once that joins.
    let code = code_hashing_to(&["hub-a", "hub-b"], "hub-b");
    let (status, sid) = handshake(&http, g1, &code).await;
    assert_eq!(status, StatusCode::OK);
    let sid = sid.unwrap();
    assert_eq!(
        duet_bus::placement::placement(bus.as_ref(), &code)
            .await
            .unwrap()
            .as_deref(),
        Some("hub-a"),
        "the first routing writes the placement record"
    );

    let hub_b = spawn_hub(dir_b.path(), 0, Some((&url, "hub-b"))).await;
    assert!(eventually(Duration::from_secs(5), || knows(2)).await);

    // The long-polling session goes on through the other gateway: its requests reach hub-a.
    let r = http
        .post(format!(
            "{g2}/socket.io/?EIO=4&transport=polling&session={code}&sid={sid}"
        ))
        .body("40")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let connected = text_of(
        &http,
        format!("{g2}/socket.io/?EIO=4&transport=polling&session={code}&sid={sid}"),
    )
    .await;
    assert!(connected.starts_with("40{\"sid\""), "{connected}");
    // A new participant of the same interview, through either gateway, joins it on hub-a.
    for gw in [g1, g2] {
        let (_, sid) = handshake(&http, gw, &code).await;
        assert!(holds(&http, &hub_a, &sid.unwrap()).await, "via {gw}");
    }
    // A new interview is placed by hashing over both hubs.
    let fresh = codes()
        .filter(|c| *c != code)
        .find(|c| {
            let h = duet_gateway::hubs::Hubs::new(&[]);
            h.apply_registrations(
                &[
                    duet_gateway::hubs::HubRef {
                        id: "hub-a".into(),
                        url: String::new(),
                    },
                    duet_gateway::hubs::HubRef {
                        id: "hub-b".into(),
                        url: String::new(),
                    },
                ],
                true,
            );
            h.candidates(c)[0].id == "hub-b"
        })
        .unwrap();
    let (_, sid) = handshake(&http, g2, &fresh).await;
    assert!(holds(&http, &hub_b, &sid.unwrap()).await);
    assert_eq!(
        duet_bus::placement::placement(bus.as_ref(), &fresh)
            .await
            .unwrap()
            .as_deref(),
        Some("hub-b")
    );
    // Input that is not a session code never becomes a record.
    let (status, _) = handshake(&http, g1, "not-a-code").await;
    assert_eq!(status, StatusCode::OK);
    assert!(bus
        .keys_with_prefix(duet_bus::placement::PLACEMENT_KEY_PREFIX)
        .await
        .unwrap()
        .iter()
        .all(|k| k.ends_with(&code) || k.ends_with(&fresh)));
}

#[actix_web::test]
async fn a_long_poll_follows_its_interview_to_another_hub_within_the_placement_cache() {
    // Issue 16: a hub draining closes its clients; a long-polling one reconnects through one gateway
    // (placed on the other hub), and its next request goes through the other gateway, whose cached
    // placement (up to PLACEMENT_CACHE old) still names the draining hub, which answers "Session ID
    // unknown": the client was disconnected twice. The gateway now reads the placement afresh.
    use duet_bus::Bus;
    let redis = duet_testkit::redis::TestRedis::start();
    let url = redis.url();
    let bus: Arc<dyn Bus> = Arc::new(duet_bus::RedisBus::connect(&url).await.unwrap());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let hub_a = spawn_hub(dir_a.path(), 0, Some((&url, "hub-a"))).await;
    spawn_hub(dir_b.path(), 0, Some((&url, "hub-b"))).await;
    let mut s = settings(vec![], dir_a.path());
    s.hub.heartbeat_ttl_secs = 3;
    let mut gateways = Vec::new();
    for _ in 0..2 {
        let bus: Arc<dyn Bus> = Arc::new(duet_bus::RedisBus::connect(&url).await.unwrap());
        gateways.push(spawn_gateway_with_bus(&s, Some(bus)).await);
    }
    assert!(
        eventually(Duration::from_secs(5), || gateways.iter().all(|(_, up)| up
            .hubs()
            .candidates("")
            .len()
            == 2))
        .await
    );
    let http = reqwest::Client::new();
    let (g1, g2) = (&gateways[0].0, &gateways[1].0);

    let code = code_hashing_to(&["hub-a", "hub-b"], "hub-a");
    let (_, old) = handshake(&http, g2, &code).await;
    assert!(holds(&http, &hub_a, &old.unwrap()).await);
    // The interview moves to hub-b (as a gateway does when hub-a refuses a handshake) and the
    // client's new session is made there; g2 still has hub-a cached.
    let moved = duet_bus::placement::claim(bus.as_ref(), &code, "hub-b", Some("hub-a"))
        .await
        .unwrap();
    assert_eq!(moved, "hub-b");
    let (status, sid) = handshake(&http, g1, &code).await;
    assert_eq!(status, StatusCode::OK);
    let sid = sid.unwrap();
    let r = http
        .post(format!(
            "{g2}/socket.io/?EIO=4&transport=polling&session={code}&sid={sid}"
        ))
        .body("40")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let connected = text_of(
        &http,
        format!("{g2}/socket.io/?EIO=4&transport=polling&session={code}&sid={sid}"),
    )
    .await;
    assert!(connected.starts_with("40{\"sid\""), "{connected}");
    // A sid that no hub knows still gets the hub's own answer.
    let r = http
        .post(format!(
            "{g2}/socket.io/?EIO=4&transport=polling&session={code}&sid=nope"
        ))
        .body("40")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("Session ID unknown"));
}

#[actix_web::test]
async fn a_redis_restart_does_not_make_the_hubs_unknown() {
    use duet_bus::Bus;
    let mut redis = duet_testkit::redis::TestRedis::start();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    // The hub itself uses no Redis here: its registration is written by the test, so that it is not
    // renewed after the restart and the gateway's grace is what is tested.
    let hub = spawn_hub(dir.path(), 0, None).await;
    let bus: Arc<dyn Bus> = Arc::new(duet_bus::RedisBus::connect(&url).await.unwrap());
    bus.set_with_ttl("duet:hub:solo", &hub, 60).await.unwrap();

    // k8s/configmap.yaml's settings: no static hub list.
    let mut s = settings(vec![], dir.path());
    s.hub.heartbeat_ttl_secs = 4;
    let gw_bus: Arc<dyn Bus> = Arc::new(duet_bus::RedisBus::connect(&url).await.unwrap());
    let (gw, up) = spawn_gateway_with_bus(&s, Some(gw_bus)).await;
    assert!(
        eventually(Duration::from_secs(3), || up.hubs().candidates("").len()
            == 1)
        .await
    );
    let http = reqwest::Client::new();
    let code = codes().next().unwrap();
    assert!(
        bus_up_becomes(&http, &gw, 1).await,
        "Redis up: the bus gauge is 1"
    );

    redis.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        handshake(&http, &gw, &code).await.0,
        StatusCode::OK,
        "Redis down"
    );
    assert!(
        bus_up_becomes(&http, &gw, 0).await,
        "Redis down: the bus gauge is 0"
    );
    redis.start_again();
    // Back, empty: for a registration TTL the gateway keeps what it knew.
    let back = std::time::Instant::now();
    while back.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            handshake(&http, &gw, &code).await.0,
            StatusCode::OK,
            "{:?} after Redis came back",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The hub renews its registration (as a live hub does within a third of its TTL): all is well
    // after the grace too, and the placement record is written again.
    bus.set_with_ttl("duet:hub:solo", &hub, 60).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(handshake(&http, &gw, &code).await.0, StatusCode::OK);
    assert_eq!(
        duet_bus::placement::placement(bus.as_ref(), &code)
            .await
            .unwrap()
            .as_deref(),
        Some("solo")
    );
}

/// Whether the gateway's `duet_gateway_bus_up` reads `value` within 5 s.
async fn bus_up_becomes(http: &reqwest::Client, gw: &str, value: i64) -> bool {
    for _ in 0..50 {
        let text = text_of(http, format!("{gw}/metrics")).await;
        let now = text
            .lines()
            .find_map(|l| l.strip_prefix("duet_gateway_bus_up "))
            .and_then(|v| v.parse::<i64>().ok());
        if now == Some(value) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// An upstream that answers with the `X-Forwarded-For` it received (`X-Forwarded-Host` under
/// `/api/host`).
async fn spawn_echo() -> String {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let server = HttpServer::new(|| {
        App::new().default_service(web::to(|req: HttpRequest| async move {
            let name = if req.path() == "/api/host" {
                "x-forwarded-host"
            } else {
                "x-forwarded-for"
            };
            let xff = req
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            HttpResponse::Ok().body(xff)
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}", server.addrs()[0]);
    actix_web::rt::spawn(server.run());
    url
}

#[actix_web::test]
async fn x_forwarded_for_is_extended_only_for_trusted_proxies() {
    let echo = spawn_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let seen = |gw: String| {
        let http = http.clone();
        async move {
            http.get(format!("{gw}/api/x"))
                .header("x-forwarded-for", "203.0.113.7")
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    // Not trusted (the default): a client cannot pass for someone else.
    let s = settings(vec![echo.clone()], dir.path());
    let (gw, _) = spawn_gateway_with_bus(&s, None).await;
    assert_eq!(seen(gw).await, "127.0.0.1");
    // From a trusted proxy (nginx on this host), the chain is kept and the proxy appended.
    let mut s = settings(vec![echo], dir.path());
    s.gateway.trusted_proxies = vec!["127.0.0.0/8".into()];
    let (gw, _) = spawn_gateway_with_bus(&s, None).await;
    assert_eq!(seen(gw.clone()).await, "203.0.113.7, 127.0.0.1");
    // The host the client asked for goes upstream as X-Forwarded-Host (the session-API builds an
    // interview's links from it); one the client sent itself is replaced.
    let host = http
        .get(format!("{gw}/api/host"))
        .header("x-forwarded-host", "evil.example")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(host, gw.trim_start_matches("http://"));
}

#[actix_web::test]
async fn metrics_count_requests_by_route_and_status_with_latency() {
    let api = spawn_session_api().await;
    let dir = tempfile::tempdir().unwrap();
    let (gw, _) = spawn_gateway_with_bus(&settings(vec![api], dir.path()), None).await;
    let http = reqwest::Client::new();
    assert_eq!(
        status_of(&http, format!("{gw}/api/session/ZZZZ2222")).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_of(&http, format!("{gw}/api/session/ZZZZ2222")).await,
        StatusCode::NOT_FOUND
    );
    let r = http.get(format!("{gw}/metrics")).send().await.unwrap();
    assert!(r
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    assert!(
        text.contains(
            "duet_http_requests_total{method=\"GET\",route=\"/api/{tail:.*}\",service=\"gateway\",status=\"404\"} 2"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "duet_http_request_duration_seconds_count{method=\"GET\",route=\"/api/{tail:.*}\",service=\"gateway\"} 2"
        ),
        "{text}"
    );
    assert!(
        text.contains("duet_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    // The connection this scrape came on, at least, is open.
    let open: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("duet_http_open_connections{service=\"gateway\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no open-connections gauge: {text}"));
    assert!(open >= 1, "{text}");
    // This gateway has no Redis: its bus is not up.
    assert!(text.contains("\nduet_gateway_bus_up 0\n"), "{text}");
    // Paths no route matched share one label value.
    let _ = status_of(&http, format!("{gw}/no/such/{}", "x".repeat(20))).await;
    let text = text_of(&http, format!("{gw}/metrics")).await;
    assert!(!text.contains("xxxxxxxx"), "{text}");
}

#[actix_web::test]
async fn a_gateway_just_started_routes_to_the_hubs_it_has_not_read_yet() {
    // Issue 16's rolling restart: nginx sends a restarted gateway requests the moment it listens,
    // before it has read which hubs exist. It answered them 502 ("no realtime hub is available"), and a
    // long-polling client whose request landed there was disconnected a second time in that step.
    // Requests now wait for the first read (bounded), and /readyz says not ready until it is done.
    use duet_bus::Bus;
    let redis = duet_testkit::redis::TestRedis::start();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let hub = spawn_hub(dir.path(), 0, Some((&url, "hub-a"))).await;
    let mut s = settings(vec![], dir.path());
    s.hub.heartbeat_ttl_secs = 3;
    let bus: Arc<dyn Bus> = Arc::new(duet_bus::RedisBus::connect(&url).await.unwrap());
    let (g1, up1) = spawn_gateway_with_bus(&s, Some(bus)).await;
    assert!(
        eventually(Duration::from_secs(5), || up1.hubs().candidates("").len()
            == 1)
        .await
    );
    let http = reqwest::Client::new();
    let code = code_hashing_to(&["hub-a"], "hub-a");
    let (status, sid) = handshake(&http, &g1, &code).await;
    assert_eq!(status, StatusCode::OK);
    let sid = sid.unwrap();

    // Redis stalls as the second gateway starts: its first read of the registrations waits.
    let bus: Arc<dyn Bus> = Arc::new(duet_bus::RedisBus::connect(&url).await.unwrap());
    let paused = redis.pause();
    let started = std::time::Instant::now();
    let (g2, up2) = spawn_gateway_with_bus(&s, Some(bus)).await;
    assert!(up2.hubs().candidates("").is_empty(), "nothing read yet");
    let r = http.get(format!("{g2}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().await.unwrap().contains("hub-discovery"));
    // The established session's request and a new handshake, both before the first read has ended.
    let post = async {
        let r = http
            .post(format!(
                "{g2}/socket.io/?EIO=4&transport=polling&session={code}&sid={sid}"
            ))
            .body("40")
            .send()
            .await;
        (r, started.elapsed())
    };
    let stall = Duration::from_millis(600);
    let resume = async {
        tokio::time::sleep(stall).await;
        drop(paused);
    };
    let ((post, answered_after), (status, new_sid), ()) =
        tokio::join!(post, handshake(&http, &g2, &code), resume);
    let post = post.unwrap();
    assert!(
        answered_after >= stall,
        "answered after the read, not before: {answered_after:?}"
    );
    assert_eq!(
        post.status(),
        StatusCode::OK,
        "{}",
        post.text().await.unwrap()
    );
    assert_eq!(status, StatusCode::OK);
    assert!(holds(&http, &hub, &new_sid.unwrap()).await);
    let connected = text_of(
        &http,
        format!("{g2}/socket.io/?EIO=4&transport=polling&session={code}&sid={sid}"),
    )
    .await;
    assert!(connected.starts_with("40{\"sid\""), "{connected}");
    let r = http.get(format!("{g2}/readyz")).send().await.unwrap();
    assert!(
        !r.text().await.unwrap().contains("hub-discovery"),
        "discovery is done (the session-API check still fails: none configured)"
    );
}
