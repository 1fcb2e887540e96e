//! Transport tests over real sockets: every item of the issue's "Bad input" list (the server
//! closes that one connection or answers 4xx, and keeps serving others), the slow-client rule,
//! origins, and server → client ack timeouts. One test binary for the crate.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer};
use awc::ws::{Frame, Message};
use bytes::Bytes;
use duet_socketio::{AckError, DisconnectReason, Payload, SioConfig, Socket, SocketIo};
use futures_util::{SinkExt as _, StreamExt as _};
use parking_lot::Mutex;

type Framed = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

struct TestServer {
    port: u16,
    base: String,
    ws: String,
    io: SocketIo,
    reasons: Arc<Mutex<Vec<DisconnectReason>>>,
    sockets: Arc<Mutex<Vec<Socket>>>,
    /// Held by every connected socket's fallback handler.
    fallback_token: Arc<()>,
}

fn test_config() -> SioConfig {
    SioConfig {
        // Long heartbeat, so that only the behaviour under test closes a connection.
        ping_interval: Duration::from_secs(20),
        ping_timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(20),
        ..SioConfig::default()
    }
}

/// How the test server serves WebSockets.
#[derive(Debug, Clone, Copy)]
enum Serving {
    /// Taken out of actix-http's dispatcher after the handshake (`duet_socketio::takeover`), as
    /// the services serve them.
    Takeover,
    /// Through the dispatcher (actix-web's `HttpServer`).
    Dispatcher,
}

async fn spawn(config: SioConfig) -> TestServer {
    spawn_with(config, Serving::Takeover).await
}

async fn spawn_with(config: SioConfig, serving: Serving) -> TestServer {
    let io = SocketIo::builder().config(config).build();
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let sockets = Arc::new(Mutex::new(Vec::new()));
    let fallback_token = Arc::new(());
    let (r, s, t) = (reasons.clone(), sockets.clone(), fallback_token.clone());
    io.ns("/", move |socket| {
        let r = r.clone();
        let t = t.clone();
        s.lock().push(socket.clone());
        async move {
            // Every other event: `fallback [name, first argument]`, and the name as the ack.
            socket.on_fallback(move |socket, event, data: Payload, ack| {
                let _held = &t;
                let first: serde_json::Value = data.first().unwrap_or_default();
                let _ = socket.emit("fallback", Payload::args(vec![event.into(), first]));
                if let Some(ack) = ack {
                    let _ = ack.send(Payload::json(event));
                }
                Box::pin(async {})
            });
            socket.on_disconnect(move |_, reason| {
                r.lock().push(reason);
                async {}
            });
            socket.on("echo", |socket, data: Payload, _| async move {
                let _ = socket.emit("echo", data);
            });
        }
    });
    let app_io = io.clone();
    let app = move || {
        let io = app_io.clone();
        App::new().configure(move |cfg| io.configure(cfg))
    };
    let port = match serving {
        Serving::Takeover => {
            let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = actix_server::Server::build()
                .workers(1)
                .disable_signals()
                .listen("test", listener, move || {
                    duet_socketio::takeover::tcp(app.clone())
                })
                .unwrap()
                .run();
            actix_rt::spawn(server);
            port
        }
        Serving::Dispatcher => {
            let server = HttpServer::new(app)
                .workers(1)
                .disable_signals()
                .bind(("127.0.0.1", 0))
                .unwrap();
            let port = server.addrs()[0].port();
            actix_rt::spawn(server.run());
            port
        }
    };
    TestServer {
        port,
        base: format!("http://127.0.0.1:{port}/socket.io/?EIO=4"),
        ws: format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"),
        io,
        reasons,
        sockets,
        fallback_token,
    }
}

fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish()
}

impl TestServer {
    fn polling(&self) -> String {
        format!("{}&transport=polling", self.base)
    }

    async fn get(&self, query: &str) -> (u16, String) {
        let mut res = client()
            .get(format!("{}{query}", self.base))
            .send()
            .await
            .unwrap();
        let body = res.body().await.unwrap();
        (
            res.status().as_u16(),
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    async fn post(&self, sid: &str, body: impl Into<Bytes>) -> u16 {
        let url = format!("{}&sid={sid}", self.polling());
        let res = client().post(url).send_body(body.into()).await.unwrap();
        res.status().as_u16()
    }

    async fn open_polling(&self) -> String {
        let (status, body) = self.get("&transport=polling").await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body[1..]).unwrap();
        v["sid"].as_str().unwrap().to_owned()
    }

    async fn poll(&self, sid: &str) -> (u16, String) {
        self.get(&format!("&transport=polling&sid={sid}")).await
    }

    async fn open_ws(&self) -> Framed {
        let (_, mut framed) = client().ws(&self.ws).connect().await.unwrap();
        let open = next_text(&mut framed).await.unwrap();
        assert!(open.starts_with('0'), "{open}");
        framed
    }

    async fn open_ws_connected(&self) -> Framed {
        let mut framed = self.open_ws().await;
        framed.send(Message::Text("40".into())).await.unwrap();
        let connect = next_text(&mut framed).await.unwrap();
        assert!(connect.starts_with("40{"), "{connect}");
        framed
    }

    /// The server still works for a new client.
    async fn still_serves(&self) {
        let mut framed = self.open_ws_connected().await;
        framed
            .send(Message::Text(r#"42["echo","still up"]"#.into()))
            .await
            .unwrap();
        assert_eq!(
            next_text(&mut framed).await.unwrap(),
            r#"42["echo","still up"]"#
        );
    }
}

/// Next text frame (skipping Engine.IO pings), `None` on close or after 3 s.
async fn next_text(framed: &mut Framed) -> Option<String> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(3), framed.next())
            .await
            .ok()??;
        match frame.ok()? {
            Frame::Text(t) if &t[..] == b"2" => continue,
            Frame::Text(t) => return Some(String::from_utf8_lossy(&t).into_owned()),
            Frame::Close(_) => return None,
            _ => continue,
        }
    }
}

/// Waits until the server closes the WebSocket (close frame or end of stream).
async fn assert_closed(framed: &mut Framed, within: Duration) {
    let closed = tokio::time::timeout(within, async {
        while let Some(frame) = framed.next().await {
            match frame {
                Ok(Frame::Close(_)) | Err(_) => return,
                _ => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "websocket not closed within {within:?}");
}

#[actix_rt::test]
async fn handshake_query_errors() {
    let srv = spawn(test_config()).await;
    // Missing / invalid EIO, unknown transport: 400 with the reference server's error codes.
    for q in [
        "&transport=polling",
        "&EIO=3&transport=polling",
        "&transport=tobi",
        "",
    ] {
        let url = srv.base.replace("EIO=4", "x=1") + q;
        let mut res = client().get(url).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 400, "{q}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert!(body["code"].is_number());
    }
    assert_eq!(srv.get("&transport=tobi").await.0, 400);
    // WebSocket with a bad transport or version is refused before the upgrade.
    let bad_ws = srv.ws.replace("EIO=4", "EIO=abc");
    assert!(client().ws(bad_ws).connect().await.is_err());
    srv.still_serves().await;
}

#[actix_rt::test]
async fn unknown_sid_is_400_on_every_transport() {
    let srv = spawn(test_config()).await;
    // Unknown, or issued by another hub (same shape, not in this server's map).
    for sid in ["nope", "AAAAAAAAAAAAAAAAAAAA"] {
        assert_eq!(srv.poll(sid).await.0, 400);
        assert_eq!(srv.post(sid, "40").await, 400);
        assert!(client()
            .ws(format!("{}&sid={sid}", srv.ws))
            .connect()
            .await
            .is_err());
    }
    srv.still_serves().await;
}

#[actix_rt::test]
async fn post_over_the_limit_is_413_and_closes_the_session() {
    let srv = spawn(SioConfig {
        max_payload: 1000,
        ..test_config()
    })
    .await;
    let sid = srv.open_polling().await;
    let body = format!("4{}", "x".repeat(1000));
    assert_eq!(srv.post(&sid, body).await, 413);
    assert_eq!(srv.poll(&sid).await.0, 400);
    srv.still_serves().await;
}

#[actix_rt::test]
async fn concurrent_polls_close_the_session() {
    let srv = spawn(test_config()).await;
    let sid = srv.open_polling().await;
    let first = srv.poll(&sid);
    let second = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        srv.poll(&sid).await
    };
    let ((s1, b1), (s2, _)) = futures_util::join!(first, second);
    assert_eq!(
        (s1, b1.as_str()),
        (200, "1"),
        "the pending poll gets a close packet"
    );
    assert_eq!(s2, 400);
    assert_eq!(srv.poll(&sid).await.0, 400);
    srv.still_serves().await;
}

/// A proxy (nginx's `proxy_next_upstream`) retries a long-poll GET whose upstream failed — the
/// same request, same `t`. A retry of an answered GET gets the same answer (its packets are not
/// lost with the dead hop); a retry of a GET still waiting replaces it (no 400, the session lives).
#[actix_rt::test]
async fn a_retried_poll_gets_its_answer_again_or_replaces_the_waiting_one() {
    let srv = spawn(test_config()).await;
    let sid = srv.open_polling().await;
    let poll_t = |t: &'static str| {
        let (srv, query) = (&srv, format!("&transport=polling&sid={sid}&t={t}"));
        async move { srv.get(&query).await }
    };
    assert_eq!(srv.post(&sid, "40").await, 200);
    let (status, first) = poll_t("a").await;
    assert_eq!(status, 200);
    assert!(first.starts_with("40{"), "{first}");
    assert_eq!(
        poll_t("a").await,
        (200, first.clone()),
        "a retry of an answered poll"
    );
    // The next request (another `t`) shows the answer arrived: a later retry of `a` is a new poll.
    assert_eq!(srv.post(&sid, r#"42["echo","one"]"#).await, 200);
    assert_eq!(poll_t("b").await, (200, r#"42["echo","one"]"#.to_owned()));

    // A retry while the first is still waiting: the first ends with a noop, the retry gets what
    // comes next.
    let waiting = poll_t("c");
    let retry = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let retry = poll_t("c");
        let send = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            srv.post(&sid, r#"42["echo","two"]"#).await
        };
        let (answer, posted) = futures_util::join!(retry, send);
        assert_eq!(posted, 200);
        answer
    };
    let ((s1, b1), (s2, b2)) = futures_util::join!(waiting, retry);
    assert_eq!((s1, b1.as_str()), (200, "6"), "the replaced poll");
    assert_eq!((s2, b2.as_str()), (200, r#"42["echo","two"]"#));
    assert!(srv.reasons.lock().is_empty(), "{:?}", srv.reasons.lock());
    // Two polls with different `t` at once are still a protocol violation.
    let first = poll_t("d");
    let second = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        poll_t("e").await
    };
    let ((s1, b1), (s2, _)) = futures_util::join!(first, second);
    assert_eq!((s1, b1.as_str(), s2), (200, "1", 400));
    srv.still_serves().await;
}

/// nginx resends a long-poll POST whose gateway died before answering (`non_idempotent` in
/// deploy/nginx.conf) — the same request, same `t` and request id. A retry of a POST whose packets
/// were taken is answered `ok` and takes nothing twice; a retry that comes while the first is still
/// being read waits for it; another POST at the same time (another `t`) is still a protocol
/// violation.
#[actix_rt::test]
async fn a_retried_post_is_taken_once() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let srv = spawn(test_config()).await;
    let sid = srv.open_polling().await;
    assert_eq!(srv.post(&sid, "40").await, 200);
    assert!(srv.poll(&sid).await.1.starts_with("40{"));
    let post_t = |t: &'static str, body: &'static str| {
        let (srv, sid) = (&srv, &sid);
        async move {
            let url = format!("{}&sid={sid}&t={t}", srv.polling());
            let mut res = client().post(url).send_body(body).await.unwrap();
            let answer = res.body().await.unwrap();
            (
                res.status().as_u16(),
                String::from_utf8_lossy(&answer).into_owned(),
            )
        }
    };
    let one = r#"42["echo","one"]"#;
    assert_eq!(post_t("p1", one).await, (200, "ok".to_owned()));
    assert_eq!(post_t("p1", one).await, (200, "ok".to_owned()), "the retry");
    assert_eq!(srv.poll(&sid).await, (200, one.to_owned()), "echoed once");

    // The first is still being read (half its body sent) when its retry arrives.
    let two = r#"42["echo","two"]"#;
    let mut first = tokio::net::TcpStream::connect(("127.0.0.1", srv.port))
        .await
        .unwrap();
    let head = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid}&t=p2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{}",
        two.len(),
        &two[..5]
    );
    first.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let retry = post_t("p2", two);
    let rest = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        first.write_all(&two.as_bytes()[5..]).await.unwrap();
        let mut answer = Vec::new();
        let read = first.read_buf(&mut answer);
        tokio::time::timeout(Duration::from_secs(3), read)
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    };
    let (retried, first_answer) = futures_util::join!(retry, rest);
    assert!(first_answer.starts_with("HTTP/1.1 200"), "{first_answer}");
    assert_eq!(
        retried,
        (200, "ok".to_owned()),
        "the retry waited for the first"
    );
    assert_eq!(srv.poll(&sid).await, (200, two.to_owned()), "echoed once");
    assert!(srv.reasons.lock().is_empty(), "{:?}", srv.reasons.lock());

    // A new request (another `t`) is taken as such, even with the same packets.
    assert_eq!(post_t("p3", one).await.0, 200);
    assert_eq!(srv.poll(&sid).await, (200, one.to_owned()));

    // A client that sends no `t` (python-engineio's POSTs): nginx's request id tells a retry from
    // the next request.
    let post_id = |id: &'static str, body: &'static str| {
        let (srv, sid) = (&srv, &sid);
        async move {
            let url = format!("{}&sid={sid}", srv.polling());
            let req = client().post(url).insert_header(("x-request-id", id));
            req.send_body(body).await.unwrap().status().as_u16()
        }
    };
    assert_eq!(post_id("r1", one).await, 200);
    assert_eq!(post_id("r1", one).await, 200, "the retry");
    assert_eq!(post_id("r2", one).await, 200, "the next request");
    let both = format!("{one}\u{1e}{one}");
    assert_eq!(
        srv.poll(&sid).await,
        (200, both),
        "two requests, two echoes"
    );

    // Another POST while one is being read: 400, and the session closes.
    let mut first = tokio::net::TcpStream::connect(("127.0.0.1", srv.port))
        .await
        .unwrap();
    let head = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid}&t=p4 HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Length: 10\r\n\r\n42"
    );
    first.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(post_t("p5", two).await.0, 400);
    assert_eq!(srv.poll(&sid).await.0, 400);
    srv.still_serves().await;
}

#[actix_rt::test]
async fn undecodable_packets_close_the_connection() {
    let srv = spawn(test_config()).await;
    let cases = [
        "4abc",
        "42{}",
        r#"42abc["message-with-ack",1]"#,
        r#"442["x""#,
        "0[]",
        "40[]",
        "7",
        "",
    ];
    for case in cases {
        let mut ws = srv.open_ws_connected().await;
        ws.send(Message::Text(case.into())).await.unwrap();
        assert_closed(&mut ws, Duration::from_secs(2)).await;

        let sid = srv.open_polling().await;
        assert_eq!(srv.post(&sid, "40").await, 200);
        assert_eq!(srv.post(&sid, case).await, 400, "{case:?}");
        assert_eq!(srv.poll(&sid).await.0, 400, "{case:?}");
    }
    // Not UTF-8, or not base64 after `b`.
    let sid = srv.open_polling().await;
    assert_eq!(srv.post(&sid, Bytes::from_static(&[0x34, 0xff])).await, 400);
    let sid = srv.open_polling().await;
    assert_eq!(srv.post(&sid, "b!!!").await, 400);
    srv.still_serves().await;
}

/// An event without a handler of its own reaches the fallback handler with its name, acks
/// included; an event with one keeps it; a closed socket drops its handlers (they often hold what
/// holds the socket, which would then never be freed).
#[actix_rt::test]
async fn fallback_handler_gets_the_other_events_and_is_dropped_on_close() {
    let srv = spawn(test_config()).await;
    let held = Arc::strong_count(&srv.fallback_token);
    let mut ws = srv.open_ws_connected().await;
    assert_eq!(Arc::strong_count(&srv.fallback_token), held + 1);
    ws.send(Message::Text(r#"42["echo","mine"]"#.into()))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await.unwrap(), r#"42["echo","mine"]"#);
    ws.send(Message::Text(r#"427["other",{"a":1}]"#.into()))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut ws).await.unwrap(),
        r#"42["fallback","other",{"a":1}]"#
    );
    assert_eq!(next_text(&mut ws).await.unwrap(), r#"437["other"]"#);
    ws.send(Message::Close(None)).await.unwrap();
    let released = async {
        while Arc::strong_count(&srv.fallback_token) > held {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(3), released)
        .await
        .expect("the closed socket's fallback handler is dropped");
}

/// The handshake's headers are kept for the handlers unless `keep_headers` is off (a server whose
/// handlers never read them saves the copy on every connection); the query string is kept either way.
#[actix_rt::test]
async fn handshake_headers_are_kept_unless_turned_off() {
    for keep in [true, false] {
        let srv = spawn(SioConfig {
            keep_headers: keep,
            ..test_config()
        })
        .await;
        let _ws = srv.open_ws_connected().await;
        let sockets = srv.sockets.lock();
        let handshake = sockets[0].handshake();
        assert_eq!(handshake.header("host").is_some(), keep);
        assert_eq!(handshake.headers().count() > 0, keep);
        assert!(handshake.query().contains("transport=websocket"));
    }
}

#[actix_rt::test]
async fn reserved_event_names_close_the_connection() {
    let srv = spawn(test_config()).await;
    for name in [
        "connect",
        "disconnect",
        "error",
        "connect_error",
        "disconnecting",
    ] {
        let mut ws = srv.open_ws_connected().await;
        ws.send(Message::Text(format!(r#"42["{name}",1]"#).into()))
            .await
            .unwrap();
        assert_closed(&mut ws, Duration::from_secs(2)).await;
    }
    assert!(srv
        .reasons
        .lock()
        .iter()
        .all(|r| *r == DisconnectReason::ParseError));
    srv.still_serves().await;
}

#[actix_rt::test]
async fn too_many_attachments_close_the_connection() {
    let srv = spawn(test_config()).await;
    let mut ws = srv.open_ws_connected().await;
    ws.send(Message::Text(
        r#"4511-["echo",{"_placeholder":true,"num":0}]"#.into(),
    ))
    .await
    .unwrap();
    assert_closed(&mut ws, Duration::from_secs(2)).await;
    // A placeholder pointing past the announced attachments.
    let mut ws = srv.open_ws_connected().await;
    ws.send(Message::Text(
        r#"451-["echo",{"_placeholder":true,"num":3}]"#.into(),
    ))
    .await
    .unwrap();
    assert_closed(&mut ws, Duration::from_secs(2)).await;
    srv.still_serves().await;
}

#[actix_rt::test]
async fn attachments_that_never_arrive_time_out() {
    let srv = spawn(SioConfig {
        attachment_timeout: Duration::from_millis(300),
        ..test_config()
    })
    .await;
    let mut ws = srv.open_ws_connected().await;
    ws.send(Message::Text(
        r#"452-["echo",{"_placeholder":true,"num":0}]"#.into(),
    ))
    .await
    .unwrap();
    ws.send(Message::Binary(Bytes::from_static(b"one of two")))
        .await
        .unwrap();
    assert_closed(&mut ws, Duration::from_secs(2)).await;
    // And a text packet while attachments are pending is a protocol error too.
    let mut ws = srv.open_ws_connected().await;
    ws.send(Message::Text(
        r#"451-["echo",{"_placeholder":true,"num":0}]"#.into(),
    ))
    .await
    .unwrap();
    ws.send(Message::Text(r#"42["echo",1]"#.into()))
        .await
        .unwrap();
    assert_closed(&mut ws, Duration::from_secs(2)).await;
    srv.still_serves().await;
}

/// One attachment watchdog serves a connection's whole stream of binary packets: complete packets
/// over several timeout periods leave the connection alone, and a packet that stalls after them
/// is still caught.
#[actix_rt::test]
async fn a_stream_of_binary_packets_is_watched_by_one_timer() {
    let srv = spawn(SioConfig {
        attachment_timeout: Duration::from_millis(200),
        ..test_config()
    })
    .await;
    let mut ws = srv.open_ws_connected().await;
    for i in 0..8 {
        ws.send(Message::Text(
            r#"451-["echo",{"_placeholder":true,"num":0}]"#.into(),
        ))
        .await
        .unwrap();
        ws.send(Message::Binary(Bytes::from(format!("part {i}"))))
            .await
            .unwrap();
        // The echo arrives: the connection outlived the earlier packets' deadlines.
        let echo = next_text(&mut ws)
            .await
            .expect("echo while packets complete");
        assert!(echo.starts_with("451-[\"echo\""), "{echo}");
        actix_rt::time::sleep(Duration::from_millis(60)).await;
    }
    ws.send(Message::Text(
        r#"451-["echo",{"_placeholder":true,"num":0}]"#.into(),
    ))
    .await
    .unwrap();
    assert_closed(&mut ws, Duration::from_secs(2)).await;
    srv.still_serves().await;
}

/// Of three connections, the two whose binary packets stall are closed, each by its own deadline,
/// and the one whose packets complete across both deadlines stays open.
#[actix_rt::test]
async fn stalled_binary_packets_close_their_connection_and_no_other() {
    let srv = spawn(SioConfig {
        attachment_timeout: Duration::from_millis(300),
        ..test_config()
    })
    .await;
    let header = || Message::Text(r#"451-["echo",{"_placeholder":true,"num":0}]"#.into());
    let mut stalled_first = srv.open_ws_connected().await;
    let mut healthy = srv.open_ws_connected().await;
    let mut stalled_later = srv.open_ws_connected().await;
    stalled_first.send(header()).await.unwrap();
    // The healthy connection completes a packet now and then, across both stalled deadlines.
    for i in 0..6 {
        healthy.send(header()).await.unwrap();
        healthy
            .send(Message::Binary(Bytes::from(format!("part {i}"))))
            .await
            .unwrap();
        let echo = next_text(&mut healthy).await.expect("echo");
        assert!(echo.starts_with("451-[\"echo\""), "{echo}");
        if i == 2 {
            stalled_later.send(header()).await.unwrap();
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_closed(&mut stalled_first, Duration::from_secs(2)).await;
    assert_closed(&mut stalled_later, Duration::from_secs(2)).await;
    // Still open and served after both deadlines.
    healthy.send(header()).await.unwrap();
    healthy
        .send(Message::Binary(Bytes::from_static(b"last")))
        .await
        .unwrap();
    let echo = next_text(&mut healthy)
        .await
        .expect("echo after the others closed");
    assert!(echo.starts_with("451-[\"echo\""), "{echo}");
    srv.still_serves().await;
}

#[actix_rt::test]
async fn stray_binary_frames_close_the_connection() {
    let srv = spawn(test_config()).await;
    let mut ws = srv.open_ws_connected().await;
    ws.send(Message::Binary(Bytes::from_static(&[1, 2, 3])))
        .await
        .unwrap();
    assert_closed(&mut ws, Duration::from_secs(2)).await;
    // Over polling too (`b` + base64 with no binary header before it).
    let sid = srv.open_polling().await;
    assert_eq!(srv.post(&sid, "40").await, 200);
    assert_eq!(srv.post(&sid, "bAQID").await, 400);
    srv.still_serves().await;
}

#[actix_rt::test]
async fn oversize_websocket_frames_close_the_connection() {
    let srv = spawn(SioConfig {
        max_payload: 1000,
        ..test_config()
    })
    .await;
    let mut ws = srv.open_ws_connected().await;
    let big = format!(r#"42["echo","{}"]"#, "x".repeat(2000));
    ws.send(Message::Text(big.into())).await.unwrap();
    assert_closed(&mut ws, Duration::from_secs(2)).await;
    let mut ws = srv.open_ws_connected().await;
    ws.send(Message::Binary(Bytes::from(vec![0u8; 2000])))
        .await
        .unwrap();
    assert_closed(&mut ws, Duration::from_secs(2)).await;
    srv.still_serves().await;
}

#[actix_rt::test]
async fn upgrade_without_probe_is_refused_and_polling_goes_on() {
    let srv = spawn(test_config()).await;
    let sid = srv.open_polling().await;
    let (_, mut ws) = client()
        .ws(format!("{}&sid={sid}", srv.ws))
        .connect()
        .await
        .unwrap();
    ws.send(Message::Text("5".into())).await.unwrap();
    assert_closed(&mut ws, Duration::from_secs(2)).await;
    // The polling session is intact.
    assert_eq!(srv.post(&sid, "40").await, 200);
    let (status, body) = srv.poll(&sid).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("40{"), "{body}");
    // A proper upgrade still works afterwards.
    let (_, mut ws) = client()
        .ws(format!("{}&sid={sid}", srv.ws))
        .connect()
        .await
        .unwrap();
    ws.send(Message::Text("2probe".into())).await.unwrap();
    assert_eq!(next_text(&mut ws).await.unwrap(), "3probe");
    ws.send(Message::Text("5".into())).await.unwrap();
    ws.send(Message::Text(r#"42["echo","upgraded"]"#.into()))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut ws).await.unwrap(),
        r#"42["echo","upgraded"]"#
    );
}

/// Sends an `echo` event and expects it back.
async fn echo(ws: &mut Framed, text: &str) {
    let msg = format!(r#"42["echo","{text}"]"#);
    ws.send(Message::Text(msg.clone().into())).await.unwrap();
    assert_eq!(next_text(ws).await.unwrap(), msg);
}

/// engine.io-protocol, "Upgrade": a client must not open a second WebSocket for a session; should
/// it happen, the server must close that WebSocket. It is accepted (101) and then closed, whether
/// it comes while the first upgrade is probing, once it has completed, or for a session opened as a
/// WebSocket; the session goes on on its first WebSocket.
#[actix_rt::test]
async fn a_second_websocket_for_a_session_is_accepted_then_closed() {
    let srv = spawn(test_config()).await;
    let second = |sid: String| {
        let url = format!("{}&sid={sid}", srv.ws);
        async move {
            let (res, mut ws) = client()
                .ws(url)
                .connect()
                .await
                .expect("the second WebSocket's handshake is accepted");
            assert_eq!(res.status().as_u16(), 101);
            match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
                Ok(Some(Ok(Frame::Close(Some(reason))))) => {
                    assert_eq!(reason.code, awc::ws::CloseCode::Policy)
                }
                other => panic!("expected a close frame, got {other:?}"),
            }
            // And the connection ends even though this client never answers the close frame
            // (within the server's client disconnect timeout, 1 s by default).
            match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
                Ok(None | Some(Err(_))) => {}
                other => panic!("expected the end of the connection, got {other:?}"),
            }
        }
    };
    // While the first upgrade is probing, then once it is complete.
    let sid = srv.open_polling().await;
    assert_eq!(srv.post(&sid, "40").await, 200);
    assert!(srv.poll(&sid).await.1.starts_with("40{"));
    let (_, mut first) = client()
        .ws(format!("{}&sid={sid}", srv.ws))
        .connect()
        .await
        .unwrap();
    first.send(Message::Text("2probe".into())).await.unwrap();
    assert_eq!(next_text(&mut first).await.unwrap(), "3probe");
    second(sid.clone()).await;
    first.send(Message::Text("5".into())).await.unwrap();
    echo(&mut first, "upgraded").await;
    second(sid.clone()).await;
    echo(&mut first, "still upgraded").await;
    // The published suites' order: `2probe` and `5` at once, the second WebSocket right after.
    let sid = srv.open_polling().await;
    let (_, mut first) = client()
        .ws(format!("{}&sid={sid}", srv.ws))
        .connect()
        .await
        .unwrap();
    first.send(Message::Text("2probe".into())).await.unwrap();
    first.send(Message::Text("5".into())).await.unwrap();
    second(sid.clone()).await;
    first.send(Message::Text("40".into())).await.unwrap();
    assert_eq!(next_text(&mut first).await.unwrap(), "3probe");
    assert!(next_text(&mut first).await.unwrap().starts_with("40{"));

    // A session opened as a WebSocket.
    let (_, mut ws) = client().ws(&srv.ws).connect().await.unwrap();
    let open = next_text(&mut ws).await.unwrap();
    let open: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    ws.send(Message::Text("40".into())).await.unwrap();
    assert!(next_text(&mut ws).await.unwrap().starts_with("40{"));
    second(open["sid"].as_str().unwrap().to_owned()).await;
    echo(&mut ws, "websocket-only").await;

    assert!(
        srv.reasons.lock().is_empty(),
        "no session was closed: {:?}",
        srv.reasons.lock()
    );
    srv.still_serves().await;
}

#[actix_rt::test]
async fn no_namespace_connect_closes_after_the_connect_timeout() {
    let srv = spawn(SioConfig {
        connect_timeout: Duration::from_millis(300),
        ..test_config()
    })
    .await;
    let mut ws = srv.open_ws().await;
    let t0 = std::time::Instant::now();
    assert_closed(&mut ws, Duration::from_secs(2)).await;
    assert!(t0.elapsed() >= Duration::from_millis(250));
    let sid = srv.open_polling().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(srv.poll(&sid).await.0, 400);
    assert_eq!(srv.io.session_count(), 0);
    srv.still_serves().await;
}

#[actix_rt::test]
async fn a_slow_client_is_disconnected_with_a_reason() {
    let srv = spawn(SioConfig {
        outbound_queue: 16,
        ..test_config()
    })
    .await;
    let sid = srv.open_polling().await;
    assert_eq!(srv.post(&sid, "40").await, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The client never polls: its queue fills and it is dropped, not silently skipped.
    let mut delivered = 0;
    for i in 0..40 {
        delivered += srv.io.emit("tick", i);
    }
    assert!(delivered < 40);
    assert_eq!(
        srv.reasons.lock().as_slice(),
        &[DisconnectReason::SlowClient]
    );
    assert_eq!(srv.poll(&sid).await.0, 400);
    srv.still_serves().await;
}

#[actix_rt::test]
async fn origins_outside_the_allow_list_are_refused() {
    let srv = spawn(SioConfig {
        allowed_origins: Some(vec!["https://duet.example".into()]),
        ..test_config()
    })
    .await;
    let url = srv.polling();
    let res = client()
        .get(&url)
        .insert_header(("Origin", "https://evil.example"))
        .send()
        .await;
    assert_eq!(res.unwrap().status().as_u16(), 403);
    let res = client()
        .get(&url)
        .insert_header(("Origin", "https://duet.example"))
        .send()
        .await;
    let res = res.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        res.headers().get("access-control-allow-origin").unwrap(),
        "https://duet.example"
    );
    assert!(client()
        .ws(&srv.ws)
        .origin("https://evil.example")
        .connect()
        .await
        .is_err());
    srv.still_serves().await;
}

#[actix_rt::test]
async fn without_a_list_only_the_requests_own_host_may_be_the_origin() {
    let srv = spawn(SioConfig {
        same_host_origins: true,
        ..test_config()
    })
    .await;
    let url = srv.polling();
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let status = |origin: String, forwarded: Option<&'static str>| {
        let url = url.clone();
        async move {
            let mut req = client().get(&url).insert_header(("Origin", origin));
            if let Some(f) = forwarded {
                req = req.insert_header(("X-Forwarded-Host", f));
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(status("https://evil.example".into(), None).await, 403);
    assert_eq!(status(format!("http://{host}"), None).await, 200);
    // Behind a proxy, the host the browser asked for is the proxy's.
    assert_eq!(
        status("https://duet.example".into(), Some("duet.example")).await,
        200
    );
    assert_eq!(
        status(format!("http://{host}"), Some("duet.example")).await,
        403
    );
    // No Origin: not a browser.
    assert_eq!(
        client().get(&url).send().await.unwrap().status().as_u16(),
        200
    );
    assert!(client()
        .ws(&srv.ws)
        .origin("https://evil.example")
        .connect()
        .await
        .is_err());
    // A preflight never lets a page send the proxy's headers.
    let res = client()
        .request(actix_web::http::Method::OPTIONS, &url)
        .insert_header(("Origin", "https://evil.example"))
        .insert_header(("Access-Control-Request-Method", "POST"))
        .insert_header((
            "Access-Control-Request-Headers",
            "content-type, x-forwarded-host",
        ))
        .send()
        .await
        .unwrap();
    let allowed = res
        .headers()
        .get("access-control-allow-headers")
        .map(|h| h.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(allowed, "content-type");
    srv.still_serves().await;
}

#[actix_rt::test]
async fn server_acks_time_out_and_resolve() {
    let srv = spawn(test_config()).await;
    let mut ws = srv.open_ws_connected().await;
    let socket = srv.sockets.lock()[0].clone();
    // No answer: timeout.
    let res = socket
        .emit_with_ack("q", 1, Duration::from_millis(200))
        .await;
    assert_eq!(res.unwrap_err(), AckError::Timeout);
    assert_eq!(next_text(&mut ws).await.unwrap(), r#"420["q",1]"#);
    // Answered (with a binary attachment).
    let pending = socket.emit_with_ack("q", 2, None);
    assert_eq!(next_text(&mut ws).await.unwrap(), r#"421["q",2]"#);
    ws.send(Message::Text(
        r#"461-1["ok",{"_placeholder":true,"num":0}]"#.into(),
    ))
    .await
    .unwrap();
    ws.send(Message::Binary(Bytes::from_static(b"bin")))
        .await
        .unwrap();
    let p = pending.await.unwrap();
    assert_eq!(p.args[0], "ok");
    assert_eq!(&p.binary(&p.args[1]).unwrap()[..], b"bin");
    // Disconnect while waiting.
    let pending = socket.emit_with_ack("q", 3, None);
    drop(ws);
    assert_eq!(pending.await.unwrap_err(), AckError::Disconnected);
}

/// A WebSocket client on a raw socket, for what awc will not do: half frames, unmasked frames,
/// frames sent together with the handshake.
struct RawWs {
    stream: tokio::net::TcpStream,
    codec: actix_http::ws::Codec,
    buf: bytes::BytesMut,
}

/// The request head of a WebSocket handshake for `path`.
fn handshake_head(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Masked client frames for `msgs`.
fn client_frames(msgs: Vec<actix_http::ws::Message>) -> bytes::BytesMut {
    use actix_codec::Encoder as _;
    let mut codec = actix_http::ws::Codec::new().client_mode();
    let mut out = bytes::BytesMut::new();
    for msg in msgs {
        codec.encode(msg, &mut out).unwrap();
    }
    out
}

impl TestServer {
    /// Sends `head` and `extra` in one write; returns the status line and the connection.
    async fn raw(&self, head: &str, extra: &[u8]) -> (String, RawWs) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let mut request = head.as_bytes().to_vec();
        request.extend_from_slice(extra);
        stream.write_all(&request).await.unwrap();
        let mut buf = bytes::BytesMut::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = tokio::time::timeout(Duration::from_secs(3), stream.read_buf(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed before the response head");
        };
        let head = String::from_utf8_lossy(&buf.split_to(end)).into_owned();
        let raw = RawWs {
            stream,
            codec: actix_http::ws::Codec::new().client_mode(),
            buf,
        };
        (head, raw)
    }

    /// A WebSocket-only session on a raw socket, connected to the main namespace.
    async fn raw_ws_connected(&self) -> RawWs {
        let (head, mut ws) = self
            .raw(
                &handshake_head("/socket.io/?EIO=4&transport=websocket"),
                &[],
            )
            .await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(ws.next_text().await.unwrap().starts_with('0'));
        ws.send(vec![actix_http::ws::Message::Text("40".into())])
            .await;
        assert!(ws.next_text().await.unwrap().starts_with("40{"));
        ws
    }
}

impl RawWs {
    async fn send(&mut self, msgs: Vec<actix_http::ws::Message>) {
        self.send_bytes(&client_frames(msgs)).await;
    }

    async fn send_bytes(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt as _;
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next frame, `None` at the end of the stream or after 3 s.
    async fn next(&mut self) -> Option<actix_http::ws::Frame> {
        use actix_codec::Decoder as _;
        use tokio::io::AsyncReadExt as _;
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf).unwrap() {
                return Some(frame);
            }
            let read =
                tokio::time::timeout(Duration::from_secs(3), self.stream.read_buf(&mut self.buf))
                    .await;
            match read {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// The next text frame other than an Engine.IO ping; `None` on a close frame or the end.
    async fn next_text(&mut self) -> Option<String> {
        loop {
            match self.next().await? {
                actix_http::ws::Frame::Text(t) if &t[..] == b"2" => continue,
                actix_http::ws::Frame::Text(t) => {
                    return Some(String::from_utf8_lossy(&t).into_owned())
                }
                actix_http::ws::Frame::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Reads until a close frame (returned) and then the end of the stream.
    async fn closed(&mut self) -> Option<actix_http::ws::CloseReason> {
        let mut reason = None;
        loop {
            match self.next().await {
                Some(actix_http::ws::Frame::Close(r)) => reason = r,
                Some(_) => continue,
                None => return reason,
            }
        }
    }
}

/// A client that sends part of a frame and stalls cannot hold the connection: pings still go out
/// (the write side does not wait for the read side), and without pongs the heartbeat closes it.
#[actix_rt::test]
async fn a_client_that_stalls_mid_frame_is_closed_by_the_heartbeat() {
    let srv = spawn(SioConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(300),
        ..test_config()
    })
    .await;
    let mut ws = srv.raw_ws_connected().await;
    let frame = client_frames(vec![actix_http::ws::Message::Text(
        r#"42["echo","never finished"]"#.into(),
    )]);
    ws.send_bytes(&frame[..frame.len() / 2]).await;
    assert!(
        matches!(ws.next().await, Some(actix_http::ws::Frame::Text(t)) if &t[..] == b"2"),
        "the ping goes out"
    );
    let reason = ws.closed().await.expect("a close frame");
    assert_eq!(reason.description.as_deref(), Some("ping timeout"));
    assert_eq!(
        srv.reasons.lock().as_slice(),
        [DisconnectReason::PingTimeout]
    );
    srv.still_serves().await;
}

/// Fragmented messages are reassembled, with control frames between fragments answered; their
/// total size is limited by `max_payload` like a single frame's.
#[actix_rt::test]
async fn fragmented_messages_are_reassembled_and_limited() {
    use actix_http::ws::{Item, Message as M};
    let srv = spawn(SioConfig {
        max_payload: 1000,
        ..test_config()
    })
    .await;
    let mut ws = srv.raw_ws_connected().await;
    ws.send(vec![
        M::Continuation(Item::FirstText(Bytes::from_static(b"42[\"echo\","))),
        M::Ping(Bytes::from_static(b"between")),
        M::Continuation(Item::Continue(Bytes::from_static(b"\"in three "))),
        M::Continuation(Item::Last(Bytes::from_static(b"parts\"]"))),
    ])
    .await;
    assert!(
        matches!(ws.next().await, Some(actix_http::ws::Frame::Pong(b)) if &b[..] == b"between")
    );
    assert_eq!(
        ws.next_text().await.unwrap(),
        r#"42["echo","in three parts"]"#
    );
    // Each fragment under the limit, all of them over it.
    let part = Bytes::from(vec![b'x'; 600]);
    ws.send(vec![
        M::Continuation(Item::FirstText(Bytes::from_static(b"42[\"echo\",\""))),
        M::Continuation(Item::Continue(part.clone())),
        M::Continuation(Item::Last(part)),
    ])
    .await;
    assert!(ws.closed().await.is_some());
    assert_eq!(
        srv.reasons.lock().as_slice(),
        [DisconnectReason::TransportError]
    );
    srv.still_serves().await;
}

/// A client's close frame is answered with a close frame, and the server ends the connection.
#[actix_rt::test]
async fn the_close_handshake() {
    let srv = spawn(test_config()).await;
    let mut ws = srv.raw_ws_connected().await;
    ws.send(vec![actix_http::ws::Message::Close(Some(
        actix_http::ws::CloseCode::Normal.into(),
    ))])
    .await;
    let reason = ws
        .closed()
        .await
        .expect("the server answers with a close frame");
    assert_eq!(reason.code, actix_http::ws::CloseCode::Normal);
    assert_eq!(
        srv.reasons.lock().as_slice(),
        [DisconnectReason::TransportClose]
    );
}

/// Frames that arrive in the same packet as the handshake request are not lost in the hand-over.
#[actix_rt::test]
async fn frames_sent_with_the_handshake_are_read() {
    let srv = spawn(test_config()).await;
    let connect = client_frames(vec![actix_http::ws::Message::Text("40".into())]);
    let (head, mut ws) = srv
        .raw(
            &handshake_head("/socket.io/?EIO=4&transport=websocket"),
            &connect,
        )
        .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(ws.next_text().await.unwrap().starts_with('0'));
    assert!(ws.next_text().await.unwrap().starts_with("40{"));
}

/// Unmasked client frames break RFC 6455: the connection is closed.
#[actix_rt::test]
async fn unmasked_frames_close_the_connection() {
    use actix_codec::Encoder as _;
    let srv = spawn(test_config()).await;
    let mut ws = srv.raw_ws_connected().await;
    let mut unmasked = bytes::BytesMut::new();
    actix_http::ws::Codec::new()
        .encode(actix_http::ws::Message::Text("40".into()), &mut unmasked)
        .unwrap();
    ws.send_bytes(&unmasked).await;
    ws.closed().await;
    assert_eq!(
        srv.reasons.lock().as_slice(),
        [DisconnectReason::TransportError]
    );
    srv.still_serves().await;
}

/// A WebSocket handshake the app does not take over gets the app's answer, and the connection
/// closes.
#[actix_rt::test]
async fn other_websocket_requests_get_the_apps_answer() {
    let srv = spawn(test_config()).await;
    let (head, mut raw) = srv.raw(&handshake_head("/elsewhere"), &[]).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(raw.next().await.is_none(), "then the connection closes");
    let (head, _) = srv
        .raw(
            &handshake_head("/socket.io/?EIO=3&transport=websocket"),
            &[],
        )
        .await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let (head, _) = srv
        .raw(
            &handshake_head("/socket.io/?EIO=4&transport=websocket&sid=nope"),
            &[],
        )
        .await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    srv.still_serves().await;
}

/// Behind actix-web's `HttpServer` (no takeover) the same WebSocket task runs through the
/// dispatcher.
#[actix_rt::test]
async fn websockets_work_through_the_dispatcher_too() {
    let srv = spawn_with(
        SioConfig {
            max_payload: 1000,
            ..test_config()
        },
        Serving::Dispatcher,
    )
    .await;
    let mut ws = srv.open_ws_connected().await;
    echo(&mut ws, "through the dispatcher").await;
    ws.send(Message::Text(
        format!(r#"42["echo","{}"]"#, "x".repeat(2000)).into(),
    ))
    .await
    .unwrap();
    assert_closed(&mut ws, Duration::from_secs(2)).await;
    // An upgrade from polling.
    let sid = srv.open_polling().await;
    assert_eq!(srv.post(&sid, "40").await, 200);
    assert!(srv.poll(&sid).await.1.starts_with("40{"));
    let (_, mut ws) = client()
        .ws(format!("{}&sid={sid}", srv.ws))
        .connect()
        .await
        .unwrap();
    ws.send(Message::Text("2probe".into())).await.unwrap();
    assert_eq!(next_text(&mut ws).await.unwrap(), "3probe");
    ws.send(Message::Text("5".into())).await.unwrap();
    echo(&mut ws, "upgraded").await;
    ws.send(Message::Close(None)).await.unwrap();
    assert_closed(&mut ws, Duration::from_secs(2)).await;
    srv.still_serves().await;
}
