//! The Engine.IO v4 server: handshake, HTTP long-polling, WebSocket, upgrade and heartbeat
//! (engine.io-protocol, sections "Transports" and "Protocol").
//!
//! The layer above (Socket.IO, or a raw echo for the conformance suite) plugs in as an
//! [`EngineHandler`]; it receives each session's messages and sends with [`Conn::send_frames`].

mod conn;
mod polling;
mod ws;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::HeaderValue;
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use duet_sio_codec::engine::Packet;
use parking_lot::RwLock;
use serde::Deserialize;

pub(crate) use conn::Transport;
pub use conn::{Conn, ConnInfo, Frame};

use crate::{DisconnectReason, SioConfig};

/// The peer broke the protocol; the session is closed as a parse error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("protocol violation")]
pub struct ProtocolViolation;

/// The layer above Engine.IO.
///
/// Callbacks run on the task that read the packet; they must not block.
pub trait EngineHandler: Send + Sync + Sized + 'static {
    /// Per-session state of the layer above.
    type ConnData: Send + Sync + 'static;
    /// State for a new session.
    fn new_conn_data(&self) -> Self::ConnData;
    /// A session was opened (its `open` packet is queued).
    fn on_open(&self, conn: &Arc<Conn<Self>>);
    /// A text `message` packet arrived. An `Err` closes the session as a parse error.
    fn on_message(&self, conn: &Arc<Conn<Self>>, text: &str) -> Result<(), ProtocolViolation>;
    /// A binary `message` arrived. An `Err` closes the session as a parse error.
    fn on_binary(&self, conn: &Arc<Conn<Self>>, data: Bytes) -> Result<(), ProtocolViolation>;
    /// The session closed.
    fn on_close(&self, conn: &Arc<Conn<Self>>, reason: DisconnectReason);
}

pub(crate) struct EngineShared<H: EngineHandler> {
    pub(crate) config: SioConfig,
    pub(crate) handler: H,
    conns: RwLock<HashMap<Arc<str>, Arc<Conn<H>>>>,
    /// Set when the server is draining: new sessions are refused with 503 (a load balancer or the
    /// gateway offers them to another server), open ones are served until they close.
    draining: std::sync::atomic::AtomicBool,
}

impl<H: EngineHandler> EngineShared<H> {
    pub(crate) fn remove(&self, sid: &str) {
        self.conns.write().remove(sid);
    }

    fn get(&self, sid: &str) -> Option<Arc<Conn<H>>> {
        self.conns.read().get(sid).cloned()
    }

    /// The sessions currently open.
    pub(crate) fn all(&self) -> Vec<Arc<Conn<H>>> {
        self.conns.read().values().cloned().collect()
    }
}

/// An Engine.IO server for one handler, mountable in an actix-web app.
pub struct EngineIo<H: EngineHandler> {
    shared: Arc<EngineShared<H>>,
}

impl<H: EngineHandler> Clone for EngineIo<H> {
    fn clone(&self) -> Self {
        EngineIo {
            shared: self.shared.clone(),
        }
    }
}

/// Error bodies of the reference server (`{"code": n, "message": ...}`).
#[derive(Debug, Clone, Copy)]
enum EngineHttpError {
    UnknownTransport,
    UnknownSid,
    BadHandshakeMethod,
    BadRequest,
    Forbidden,
    UnsupportedProtocolVersion,
    PayloadTooLarge,
}

impl EngineHttpError {
    fn response(self) -> HttpResponse {
        let (status, code, message) = match self {
            Self::UnknownTransport => (StatusCode::BAD_REQUEST, 0, "Transport unknown"),
            Self::UnknownSid => (StatusCode::BAD_REQUEST, 1, "Session ID unknown"),
            Self::BadHandshakeMethod => (StatusCode::BAD_REQUEST, 2, "Bad handshake method"),
            Self::BadRequest => (StatusCode::BAD_REQUEST, 3, "Bad request"),
            Self::Forbidden => (StatusCode::FORBIDDEN, 4, "Forbidden"),
            Self::UnsupportedProtocolVersion => {
                (StatusCode::BAD_REQUEST, 5, "Unsupported protocol version")
            }
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, 3, "Payload too large"),
        };
        HttpResponse::build(status).json(serde_json::json!({ "code": code, "message": message }))
    }
}

#[derive(Debug, Deserialize)]
struct EngineQuery {
    #[serde(rename = "EIO")]
    eio: Option<String>,
    transport: Option<String>,
    sid: Option<String>,
    /// The client's per-request cache buster (polling): tells a proxy's retry of a request from a
    /// new request.
    t: Option<String>,
}

/// Random session and socket ids: 15 bytes from the thread's CSPRNG, base64url, 20 characters
/// (the reference server's ids are 20 characters too).
pub(crate) fn random_id() -> Arc<str> {
    use base64::Engine as _;
    let bytes: [u8; 15] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(bytes)
        .into()
}

impl<H: EngineHandler> EngineIo<H> {
    /// A server with these settings and this handler.
    pub fn new(config: SioConfig, handler: H) -> Self {
        EngineIo {
            shared: Arc::new(EngineShared {
                config,
                handler,
                conns: RwLock::new(HashMap::new()),
                draining: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &SioConfig {
        &self.shared.config
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.shared.handler
    }

    /// Number of open sessions.
    pub fn session_count(&self) -> usize {
        self.shared.conns.read().len()
    }

    /// Closes every session.
    pub fn close_all(&self, reason: DisconnectReason) {
        for conn in self.shared.all() {
            conn.close(reason);
        }
    }

    /// Starts draining: from now on a request that would open a session is answered 503
    /// (`{"error": {"code": "draining", ...}}`); open sessions are not touched.
    pub fn drain(&self) {
        self.shared
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Closes every session, spread evenly over `spread` (so their clients do not all reconnect
    /// elsewhere in the same instant); returns when the last is closed.
    pub async fn close_all_over(&self, reason: DisconnectReason, spread: std::time::Duration) {
        const STEPS: u32 = 10;
        let conns = self.shared.all();
        let per_step = conns.len().div_ceil(STEPS as usize).max(1);
        for (i, batch) in conns.chunks(per_step).enumerate() {
            if i > 0 {
                tokio::time::sleep(spread / STEPS).await;
            }
            for conn in batch {
                conn.close(reason);
            }
        }
    }

    /// Mounts the server at `path` (with and without a trailing slash), all methods.
    pub fn configure_at(&self, cfg: &mut web::ServiceConfig, path: &str) {
        let base = path.trim_end_matches('/').to_owned();
        let with_slash = format!("{base}/");
        let engine = self.clone();
        cfg.service(web::resource([base, with_slash]).route(web::route().to(
            move |req: HttpRequest, body: web::Payload| {
                let engine = engine.clone();
                async move { engine.handle(req, body).await }
            },
        )));
    }

    fn cors(&self, req: &HttpRequest, mut res: HttpResponse) -> HttpResponse {
        // Only an allowed origin is echoed (with credentials): never a foreign one.
        if !self.origin_allowed(req) {
            return res;
        }
        if let Some(origin) = req.headers().get(header::ORIGIN).cloned() {
            let h = res.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                header::HeaderValue::from_static("true"),
            );
        }
        res
    }

    fn origin_allowed(&self, req: &HttpRequest) -> bool {
        // Non-browser clients send no Origin; the check is a browser (CSRF) defence.
        let Some(origin) = req.headers().get(header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let config = &self.shared.config;
        if let Some(allowed) = &config.allowed_origins {
            return allowed.iter().any(|a| a == origin || a == "*");
        }
        if !config.same_host_origins {
            return true;
        }
        let host = req
            .headers()
            .get("x-forwarded-host")
            .or_else(|| req.headers().get(header::HOST))
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.split(',').next())
            .map(str::trim);
        same_host(origin, host)
    }

    /// Handles one HTTP request to the Engine.IO path.
    pub async fn handle(&self, req: HttpRequest, body: web::Payload) -> HttpResponse {
        let res = self.route(&req, body).await;
        self.cors(&req, res)
    }

    async fn route(&self, req: &HttpRequest, body: web::Payload) -> HttpResponse {
        if req.method() == Method::OPTIONS {
            return preflight(req);
        }
        let Ok(q) = web::Query::<EngineQuery>::from_query(req.query_string()) else {
            return EngineHttpError::BadRequest.response();
        };
        // engine.io-protocol, "Query parameters": EIO and transport are mandatory, 400 if not.
        if q.eio.as_deref() != Some("4") {
            return EngineHttpError::UnsupportedProtocolVersion.response();
        }
        let websocket = match q.transport.as_deref() {
            Some("polling") => false,
            Some("websocket") => true,
            _ => return EngineHttpError::UnknownTransport.response(),
        };
        if !self.origin_allowed(req) {
            return EngineHttpError::Forbidden.response();
        }
        if q.sid.is_none()
            && self
                .shared
                .draining
                .load(std::sync::atomic::Ordering::SeqCst)
        {
            return HttpResponse::ServiceUnavailable().json(serde_json::json!({
                "error": {"code": "draining", "message": "this server is shutting down; try another"}
            }));
        }
        match (&q.sid, websocket) {
            (None, false) => {
                if req.method() != Method::GET {
                    return EngineHttpError::BadHandshakeMethod.response();
                }
                self.open_polling(req)
            }
            (None, true) => self.open_websocket(req, body),
            (Some(sid), false) => {
                let Some(conn) = self.shared.get(sid) else {
                    return EngineHttpError::UnknownSid.response();
                };
                match *req.method() {
                    Method::GET => {
                        polling::get(&self.shared, conn, polling::retry_t(q.t.as_deref())).await
                    }
                    Method::POST => {
                        let key = polling::retry_key(req, q.t.as_deref());
                        polling::post(&self.shared, conn, req, body, key).await
                    }
                    _ => EngineHttpError::BadRequest.response(),
                }
            }
            (Some(sid), true) => {
                let Some(conn) = self.shared.get(sid) else {
                    return EngineHttpError::UnknownSid.response();
                };
                ws::upgrade(&self.shared, conn, req, body)
            }
        }
    }

    fn new_conn(&self, req: &HttpRequest, transport: Transport) -> Arc<Conn<H>> {
        let headers = if self.shared.config.keep_headers {
            req.headers()
                .iter()
                .filter_map(|(n, v)| Some((n.clone(), HeaderValue::from_bytes(v.as_bytes()).ok()?)))
                .collect()
        } else {
            Box::default()
        };
        let info = Arc::new(ConnInfo {
            headers,
            query: req.query_string().to_owned(),
            peer_addr: req.peer_addr(),
        });
        let conn = Arc::new(Conn::new(random_id(), transport, info, self.shared.clone()));
        self.shared
            .conns
            .write()
            .insert(conn.sid_arc().clone(), conn.clone());
        conn
    }

    /// The `open` packet (engine.io-protocol, "Handshake").
    fn open_packet(&self, sid: &str, upgrades: &[&str]) -> String {
        let c = &self.shared.config;
        let data = serde_json::json!({
            "sid": sid,
            "upgrades": upgrades,
            "pingInterval": duration_ms(c.ping_interval),
            "pingTimeout": duration_ms(c.ping_timeout),
            "maxPayload": c.max_payload,
        });
        Packet::Open(&data.to_string()).encode()
    }

    fn open_polling(&self, req: &HttpRequest) -> HttpResponse {
        let conn = self.new_conn(req, Transport::Polling);
        let open = self.open_packet(conn.sid(), &["websocket"]);
        tracing::debug!(sid = conn.sid(), "polling session opened");
        polling::spawn_heartbeat(self.shared.clone(), conn.clone());
        self.shared.handler.on_open(&conn);
        polling::text_response(open)
    }

    fn open_websocket(&self, req: &HttpRequest, body: web::Payload) -> HttpResponse {
        if actix_http::ws::verify_handshake(req.head()).is_err() {
            return EngineHttpError::BadRequest.response();
        }
        let conn = self.new_conn(req, Transport::WebSocket);
        let open = self.open_packet(conn.sid(), &[]);
        // Cannot fail: the queue of a new session is empty.
        let _ = conn.send_text(open);
        match ws::open(&self.shared, conn.clone(), req, body) {
            Some(res) => {
                tracing::debug!(sid = conn.sid(), "websocket session opened");
                self.shared.handler.on_open(&conn);
                res
            }
            None => {
                self.shared.remove(conn.sid());
                EngineHttpError::BadRequest.response()
            }
        }
    }
}

fn preflight(req: &HttpRequest) -> HttpResponse {
    let mut res = HttpResponse::NoContent();
    res.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"));
    // The headers asked for, except those a proxy vouches for: a page of another site must not
    // name the host it pretends to be on.
    if let Some(asked) = req
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|h| h.to_str().ok())
    {
        let allowed: Vec<&str> = asked
            .split(',')
            .map(str::trim)
            .filter(|h| {
                let h = h.to_ascii_lowercase();
                !h.starts_with("x-forwarded-") && h != "forwarded"
            })
            .collect();
        if !allowed.is_empty() {
            res.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, allowed.join(", ")));
        }
    }
    res.finish()
}

/// Whether the browser `origin` (`scheme://host[:port]`) names `host` (`host[:port]` as a `Host`
/// header has it); default ports match their absence.
fn same_host(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host.filter(|h| !h.is_empty()) else {
        return false;
    };
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let norm = |a: &str| a.strip_suffix(default).unwrap_or(a).to_ascii_lowercase();
    norm(authority) == norm(host)
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What an incoming packet asks of the transport.
pub(crate) enum Incoming {
    Continue,
    /// The client closed the session (`close` packet).
    Close,
}

/// Handles one decoded packet from the client, for either transport (engine.io-protocol,
/// "Protocol"). `Err` means the session must close as a parse error.
pub(crate) fn handle_packet<H: EngineHandler>(
    conn: &Arc<Conn<H>>,
    packet: Packet<'_>,
) -> Result<Incoming, ProtocolViolation> {
    match packet {
        Packet::Message(text) => conn.handler().on_message(conn, text)?,
        Packet::Binary(data) => conn.handler().on_binary(conn, data)?,
        Packet::Pong(_) => conn.note_pong(),
        // v4: the server pings, but answering a client's ping costs nothing.
        Packet::Ping(data) => {
            let _ = conn.send_text(format!("3{data}"));
        }
        Packet::Close => return Ok(Incoming::Close),
        Packet::Noop => {}
        // `open` only goes server → client; `upgrade` only on a probed WebSocket (handled there).
        Packet::Open(_) | Packet::Upgrade => return Err(ProtocolViolation),
    }
    Ok(Incoming::Continue)
}

#[cfg(test)]
mod origin_tests {
    use super::same_host;

    #[test]
    fn an_origin_matches_its_own_host_only() {
        assert!(same_host("https://duet.example", Some("duet.example")));
        assert!(same_host("https://duet.example", Some("duet.example:443")));
        assert!(same_host("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(same_host("https://Duet.Example", Some("duet.example")));
        assert!(!same_host("http://127.0.0.1:8081", Some("127.0.0.1:8080")));
        assert!(!same_host("https://evil.example", Some("duet.example")));
        assert!(!same_host(
            "https://duet.example.evil.example",
            Some("duet.example")
        ));
        assert!(!same_host("null", Some("duet.example")));
        assert!(!same_host("https://duet.example", None));
        assert!(!same_host("ftp://duet.example", Some("duet.example")));
    }
}
