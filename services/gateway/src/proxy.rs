//! Reverse proxying: `/api/*` to the session-API pool (round robin) and `/socket.io/*` to the hub that
//! serves the interview (the `session` query parameter the browser client sends on every Engine.IO
//! request; see [`crate::routing`]), over both HTTP long-polling and WebSocket.
//!
//! A handshake (an Engine.IO request without `sid`) that a hub refuses — connection refused, or 503
//! while it drains — is tried on the next hub at once, and a refusing hub is marked down, so a dead
//! hub costs its clients one reconnect and no error.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{http::header, http::StatusCode, web, HttpRequest, HttpResponse};
use awc::error::{SendRequestError, WsClientError};
use futures_util::{SinkExt, StreamExt};
use prometheus::IntCounterVec;
use serde_json::json;

use crate::hubs::{HubRef, Hubs};
use crate::routing::{session_code, Router};

/// Upstream requests may be Engine.IO long-polls, which the hub holds for up to a ping interval (25 s).
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest wait for a TCP connection to an upstream. Upstreams sit next to the gateway: a refused
/// connection comes back at once, and one not made in a second is a host that is gone.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Hubs a handshake is offered to before the gateway gives up with 502 (each refusing one is marked
/// down on the way, so the next handshake starts at a live one).
pub const HANDSHAKE_ATTEMPTS: usize = 4;

/// Largest WebSocket frame relayed (the hub enforces its own, smaller, payload limit).
const MAX_WS_FRAME: usize = 16 * 1024 * 1024;

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The upstreams a gateway can reach, and how it talks to them.
pub struct Upstreams {
    apis: Vec<String>,
    next_api: AtomicUsize,
    pub router: Arc<Router>,
    /// Peers whose `X-Forwarded-For` is extended rather than replaced.
    trusted_proxies: Vec<ipnet::IpNet>,
    /// `duet_gateway_upstream_errors_total{upstream, kind}`.
    pub errors: IntCounterVec,
    /// Largest long-poll body the gateway holds (`max_content_length`, as the hub's maxPayload).
    max_body: usize,
    /// Cancelled when the gateway stops: every WebSocket bridge closes at once.
    pub closing: tokio_util::sync::CancellationToken,
}

impl Upstreams {
    pub fn new(
        apis: Vec<String>,
        router: Arc<Router>,
        trusted_proxies: Vec<ipnet::IpNet>,
        max_body: usize,
    ) -> Self {
        let errors = IntCounterVec::new(
            prometheus::Opts::new(
                "duet_gateway_upstream_errors_total",
                "Upstream requests that failed: refused (connection refused, the upstream is marked \
                 down), draining (a hub refused a handshake with 503), failed (any other error).",
            ),
            &["upstream", "kind"],
        )
        .expect("valid metric");
        Self {
            apis,
            next_api: AtomicUsize::new(0),
            router,
            trusted_proxies,
            errors,
            max_body,
            closing: tokio_util::sync::CancellationToken::new(),
        }
    }

    pub fn hubs(&self) -> &Hubs {
        &self.router.hubs
    }

    fn api(&self) -> Option<&str> {
        if self.apis.is_empty() {
            return None;
        }
        let i = self.next_api.fetch_add(1, Ordering::Relaxed) % self.apis.len();
        Some(&self.apis[i])
    }

    fn count_error(&self, upstream: &str, kind: &str) {
        self.errors.with_label_values(&[upstream, kind]).inc();
    }

    /// The `X-Forwarded-For` to send upstream: the incoming chain extended by the peer when the peer
    /// is a trusted proxy, else the peer alone (a client cannot claim to be someone else).
    pub fn forwarded_for(&self, req: &HttpRequest) -> Option<String> {
        let peer = req.peer_addr()?.ip();
        let trusted = self.trusted_proxies.iter().any(|n| n.contains(&peer));
        let incoming: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        Some(if trusted && !incoming.is_empty() {
            format!("{}, {}", incoming.join(", "), peer_text(peer))
        } else {
            peer_text(peer)
        })
    }
}

fn peer_text(ip: IpAddr) -> String {
    // An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d; proxies write the plain form.
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// The HTTP client for upstreams: bounded connect time, so a vanished host is noticed quickly, and
/// TCP_NODELAY on every connection ([`upstream_connector`]). No limit on simultaneous connections:
/// awc's default (100 per client, one client per worker) counts a bridged WebSocket for its whole
/// life, so a gateway bridged at most 100 per worker and answered every further one 502; the
/// gateway's own connection cap (`http.max_connections`) bounds them instead.
pub fn upstream_client() -> awc::Client {
    awc::Client::builder()
        .connector(
            awc::Connector::new()
                .connector(upstream_connector())
                .timeout(CONNECT_TIMEOUT)
                .limit(0),
        )
        .timeout(UPSTREAM_TIMEOUT)
        .finish()
}

type TcpConnection = actix_tls::connect::Connection<awc::http::Uri, tokio::net::TcpStream>;

/// awc's TCP connector, with TCP_NODELAY set on the connections it makes. Edits are small frames, and
/// a Socket.IO binary event is two of them (the event, then its attachment), relayed as two writes:
/// with Nagle's algorithm the second waited for the hub's delayed ACK of the first, adding ~40 ms to
/// every edit and every ack through the gateway (docs/BENCHMARKS.md, "Scale-out"). The hubs and the
/// gateway's own listener set it on their side already.
fn upstream_connector() -> impl actix_service::Service<
    actix_tls::connect::ConnectInfo<awc::http::Uri>,
    Response = TcpConnection,
    Error = actix_tls::connect::ConnectError,
> + Clone {
    use actix_service::ServiceExt;
    actix_tls::connect::Connector::new(actix_tls::connect::Resolver::default())
        .service()
        .map(|conn: TcpConnection| {
            if let Err(e) = conn.io_ref().set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set on an upstream connection");
            }
            conn
        })
}

fn bad_gateway(message: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::BAD_GATEWAY)
        .json(json!({"error": {"code": "upstream_unavailable", "message": message}}))
}

/// The upstream URL for a request: the upstream's base with the request's path and query.
fn upstream_url(base: &str, req: &HttpRequest) -> String {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    format!("{}{}", base.trim_end_matches('/'), path)
}

/// The request to send upstream: method, path, end-to-end headers, `X-Forwarded-For`, and the host
/// the client asked for as `X-Forwarded-Host` (the upstream's own address replaces `Host`; links the
/// session-API builds, such as an interview's, must name the public host).
fn upstream_request(
    req: &HttpRequest,
    client: &awc::Client,
    up: &Upstreams,
    base: &str,
) -> awc::ClientRequest {
    let url = upstream_url(base, req);
    let mut fwd = client
        .request(req.method().clone(), &url)
        .no_decompress()
        .timeout(UPSTREAM_TIMEOUT);
    for (name, value) in req.headers() {
        if !HOP_BY_HOP.contains(&name.as_str())
            && name != header::HOST
            && name.as_str() != "x-forwarded-for"
            && name.as_str() != "x-forwarded-host"
        {
            fwd = fwd.append_header((name.clone(), value.clone()));
        }
    }
    if let Some(xff) = up.forwarded_for(req) {
        fwd = fwd.insert_header(("x-forwarded-for", xff));
    }
    if let Some(host) = req.headers().get(header::HOST) {
        fwd = fwd.insert_header(("x-forwarded-host", host.clone()));
    }
    // With tracing on, the upstream's request span is a child of this one (replacing a client's
    // `traceparent`, which this span already continues).
    for (name, value) in trace_headers() {
        fwd = fwd.insert_header((name, value));
    }
    fwd
}

/// The W3C trace context headers of the current request's span; none while tracing is off.
fn trace_headers() -> Vec<(header::HeaderName, header::HeaderValue)> {
    let mut headers = Vec::new();
    duet_telemetry::trace::inject(&tracing::Span::current(), |name, value| {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::try_from(name),
            header::HeaderValue::try_from(value),
        ) {
            headers.push((n, v));
        }
    });
    headers
}

/// The upstream's response, streamed back.
fn relay_response<S>(res: awc::ClientResponse<S>) -> HttpResponse
where
    S: futures_util::Stream<Item = Result<web::Bytes, awc::error::PayloadError>> + Unpin + 'static,
{
    let mut out = HttpResponse::build(res.status());
    for (name, value) in res.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != header::CONTENT_LENGTH {
            out.append_header((name.clone(), value.clone()));
        }
    }
    out.streaming(res)
}

fn is_refusal(e: &SendRequestError) -> bool {
    matches!(e, SendRequestError::Connect(_))
}

pub async fn api(
    req: HttpRequest,
    payload: web::Payload,
    client: web::Data<awc::Client>,
    up: web::Data<Arc<Upstreams>>,
) -> HttpResponse {
    let Some(api) = up.api() else {
        return bad_gateway("no session-API is configured");
    };
    match upstream_request(&req, &client, &up, api)
        .send_stream(payload)
        .await
    {
        Ok(res) => relay_response(res),
        Err(e) => {
            tracing::warn!(upstream = %api, error = %e, "session-API request failed");
            up.count_error(
                "session-api",
                if is_refusal(&e) { "refused" } else { "failed" },
            );
            bad_gateway("the upstream service did not answer")
        }
    }
}

/// What one attempt at a hub came to.
enum Attempt<T> {
    Answered(T),
    /// Connection refused: the hub is gone.
    Refused,
    /// 503 to a handshake: the hub drains.
    Draining,
    Failed(String),
}

pub async fn socketio(
    req: HttpRequest,
    payload: web::Payload,
    client: web::Data<awc::Client>,
    up: web::Data<Arc<Upstreams>>,
) -> HttpResponse {
    let query =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .map(|q| q.into_inner())
            .unwrap_or_default();
    let key = query
        .get("session")
        .map(|s| s.to_ascii_uppercase())
        .unwrap_or_default();
    let code = query.get("session").and_then(|s| session_code(s));
    let code = code.as_deref();
    let is_ws = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let handshake =
        !query.contains_key("sid") && (is_ws || req.method() == actix_web::http::Method::GET);
    let router = &up.router;

    if !handshake {
        return established(req, payload, &client, &up, code, &key, is_ws).await;
    }

    // A handshake: the interview's hub, or the next one that accepts.
    let mut failed_once: Option<String> = None;
    for _ in 0..HANDSHAKE_ATTEMPTS {
        let Some(hub) = router.for_handshake(code, &key).await else {
            break;
        };
        let attempt = if is_ws {
            match ws_attempt(&req, &client, &up, &hub).await {
                Attempt::Answered(upstream) => {
                    return bridge(&req, payload, upstream, &up, code, &hub)
                }
                other => other,
            }
        } else {
            match upstream_request(&req, &client, &up, &hub.url).send().await {
                Ok(res) if res.status() == StatusCode::SERVICE_UNAVAILABLE => Attempt::Draining,
                Ok(res) => {
                    if let Some(code) = code {
                        router.used(code, &hub.id);
                    }
                    return relay_response(res);
                }
                Err(e) if is_refusal(&e) => Attempt::Refused,
                Err(e) => Attempt::Failed(e.to_string()),
            }
        };
        match attempt {
            Attempt::Answered(_) => unreachable!("returned above"),
            Attempt::Refused => {
                up.count_error("hub", "refused");
                up.hubs().mark_down(&hub.id, "connection refused");
            }
            Attempt::Draining => {
                up.count_error("hub", "draining");
                up.hubs().mark_draining(&hub.id);
            }
            Attempt::Failed(e) => {
                up.count_error("hub", "failed");
                tracing::warn!(hub = %hub.id, error = %e, "hub handshake failed");
                // Once more on the same hub (a pooled connection it had closed); then give up
                // rather than move a live interview away from its hub.
                if failed_once.as_deref() == Some(hub.id.as_str()) {
                    return bad_gateway("the realtime hub did not accept the connection");
                }
                failed_once = Some(hub.id.clone());
            }
        }
    }
    bad_gateway("no realtime hub is available")
}

/// A request of an established Engine.IO session: it goes to the hub that holds the session. When
/// that hub refuses the connection (it died; another gateway may already have moved the interview),
/// the placement is read afresh once: the request then fails fast at the new hub ("Session ID
/// unknown"), and the client's next handshake lands there, instead of the client waiting out its
/// reconnection backoff twice. A long-poll request that the hub of a cached placement answers 400
/// is asked again the same way (the session may be new, on the hub the interview moved to).
async fn established(
    req: HttpRequest,
    payload: web::Payload,
    client: &awc::Client,
    up: &Arc<Upstreams>,
    code: Option<&str>,
    key: &str,
    is_ws: bool,
) -> HttpResponse {
    // A long-poll POST is small (Engine.IO's maxPayload); held in memory it can be sent again.
    let (mut payload, body) = if is_ws {
        (Some(payload), None)
    } else {
        match payload.to_bytes_limited(up.max_body).await {
            Ok(Ok(b)) => (None, Some(b)),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "client body not read");
                return HttpResponse::BadRequest().json(
                    json!({"error": {"code": "invalid_body", "message": "the request body could not be read"}}),
                );
            }
            Err(_) => {
                return HttpResponse::PayloadTooLarge().json(
                    json!({"error": {"code": "payload_too_large", "message": "the request body is too large"}}),
                )
            }
        }
    };
    let router = &up.router;
    let mut tried: Option<String> = None;
    // A 400 from the hub a cached placement named, kept while the placement is read afresh.
    let mut stale = None;
    for fresh in [false, true] {
        let Some(hub) = router.for_session(code, key, fresh).await else {
            return bad_gateway("no realtime hub is available");
        };
        if tried.as_deref() == Some(hub.id.as_str()) {
            break;
        }
        if let Some(code) = code {
            router.used(code, &hub.id);
        }
        let attempt = if let Some(body) = &body {
            match upstream_request(&req, client, up, &hub.url)
                .send_body(body.clone())
                .await
            {
                // "Session ID unknown" from the hub this gateway's cached placement names: the
                // interview may have moved within `PLACEMENT_CACHE` (its hub draining, another
                // gateway placing it elsewhere), and the client's new session be on another hub.
                // Asked again with the record read afresh, the request reaches it, instead of
                // failing and costing the client a second reconnect; the hub's answer stands if the
                // record names the same hub.
                Ok(res) if res.status() == StatusCode::BAD_REQUEST && !fresh && code.is_some() => {
                    stale = Some(res);
                    tried = Some(hub.id);
                    continue;
                }
                Ok(res) => return relay_response(res),
                Err(e) if is_refusal(&e) => Attempt::Refused,
                Err(e) => Attempt::Failed(e.to_string()),
            }
        } else {
            match ws_attempt(&req, client, up, &hub).await {
                Attempt::Answered(upstream) => {
                    let payload = payload.take().expect("a WebSocket keeps its payload");
                    return bridge(&req, payload, upstream, up, code, &hub);
                }
                other => other,
            }
        };
        match attempt {
            Attempt::Answered(_) => unreachable!("returned above"),
            Attempt::Refused => {
                up.count_error("hub", "refused");
                up.hubs().mark_down(&hub.id, "connection refused");
                tried = Some(hub.id);
            }
            Attempt::Draining => {
                up.count_error("hub", "draining");
                break;
            }
            Attempt::Failed(e) => {
                up.count_error("hub", "failed");
                tracing::warn!(hub = %hub.id, error = %e, "hub request failed");
                break;
            }
        }
    }
    if let Some(res) = stale {
        return relay_response(res);
    }
    // The client reconnects, and its handshake finds a hub that accepts.
    bad_gateway("the realtime hub did not accept the connection")
}

/// The close frame a stopping gateway sends: the client reconnects (elsewhere).
fn going_away() -> awc::ws::CloseReason {
    awc::ws::CloseReason {
        code: awc::ws::CloseCode::Away,
        description: Some("gateway stopping".to_owned()),
    }
}

type UpstreamWs = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// Opens the WebSocket to the hub (the browser's side is upgraded only once this succeeded).
async fn ws_attempt(
    req: &HttpRequest,
    client: &awc::Client,
    up: &Upstreams,
    hub: &HubRef,
) -> Attempt<UpstreamWs> {
    // http://hub → ws://hub, https://hub → wss://hub
    let url = upstream_url(&hub.url, req).replacen("http", "ws", 1);
    let mut connect = client.ws(&url).max_frame_size(MAX_WS_FRAME);
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        connect = connect.origin(origin.clone());
    }
    if let Some(xff) = up.forwarded_for(req) {
        connect = connect.set_header("x-forwarded-for", xff);
    }
    // The hub accepts a browser's Origin only for the host it asked for (see upstream_request).
    if let Some(host) = req.headers().get(header::HOST) {
        connect = connect.set_header("x-forwarded-host", host.clone());
    }
    for (name, value) in trace_headers() {
        connect = connect.set_header(name, value);
    }
    match connect.connect().await {
        Ok((_, framed)) => Attempt::Answered(framed),
        Err(WsClientError::SendRequest(e)) if is_refusal(&e) => Attempt::Refused,
        Err(WsClientError::InvalidResponseStatus(StatusCode::SERVICE_UNAVAILABLE)) => {
            Attempt::Draining
        }
        Err(e) => Attempt::Failed(format!("{url}: {e}")),
    }
}

/// Upgrades the browser's connection and bridges it to the hub's WebSocket: frames are passed through
/// unchanged in both directions.
fn bridge(
    req: &HttpRequest,
    payload: web::Payload,
    upstream: UpstreamWs,
    up: &Arc<Upstreams>,
    code: Option<&str>,
    hub: &HubRef,
) -> HttpResponse {
    let (res, session, stream) = match actix_ws::handle(req, payload) {
        Ok(x) => x,
        Err(e) => return HttpResponse::from_error(e),
    };
    let router = up.router.clone();
    let open = code.map(|c| (c.to_owned(), hub.id.clone()));
    if let Some((code, hub)) = &open {
        router.bridge(code, hub, true);
    }
    let (mut up_tx, mut up_rx) = upstream.split();
    let mut down_session = session.clone();
    let closing = up.closing.clone();
    actix_web::rt::spawn(async move {
        let mut close_reason = None;
        loop {
            let frame = tokio::select! {
                frame = up_rx.next() => frame,
                _ = closing.cancelled() => {
                    close_reason = Some(going_away());
                    break;
                }
            };
            let Some(Ok(frame)) = frame else { break };
            use awc::ws::Frame;
            let sent = match frame {
                Frame::Text(b) => match std::str::from_utf8(&b) {
                    Ok(t) => down_session.text(t.to_owned()).await,
                    Err(_) => break,
                },
                Frame::Binary(b) => down_session.binary(b).await,
                Frame::Ping(b) => down_session.ping(&b).await,
                Frame::Pong(b) => down_session.pong(&b).await,
                Frame::Close(reason) => {
                    close_reason = reason;
                    break;
                }
                Frame::Continuation(_) => Ok(()),
            };
            if sent.is_err() {
                break;
            }
        }
        let _ = down_session.close(close_reason).await;
        if let Some((code, hub)) = &open {
            router.bridge(code, hub, false);
        }
    });
    let closing = up.closing.clone();
    actix_web::rt::spawn(async move {
        let mut stream = stream.aggregate_continuations();
        loop {
            let msg = tokio::select! {
                msg = stream.next() => msg,
                _ = closing.cancelled() => {
                    let _ = up_tx.send(awc::ws::Message::Close(Some(going_away()))).await;
                    break;
                }
            };
            let Some(Ok(msg)) = msg else { break };
            use actix_ws::AggregatedMessage as M;
            let out = match msg {
                M::Text(t) => awc::ws::Message::Text(t.to_string().into()),
                M::Binary(b) => awc::ws::Message::Binary(b),
                M::Ping(b) => awc::ws::Message::Ping(b),
                M::Pong(b) => awc::ws::Message::Pong(b),
                M::Close(reason) => {
                    let _ = up_tx.send(awc::ws::Message::Close(reason)).await;
                    break;
                }
            };
            if up_tx.send(out).await.is_err() {
                break;
            }
        }
        let _ = up_tx.close().await;
        let _ = session.close(None).await;
    });
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_service::Service;

    #[actix_web::test]
    async fn upstream_connections_are_made_with_tcp_nodelay() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let uri: awc::http::Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
        let conn = upstream_connector()
            .call(actix_tls::connect::ConnectInfo::new(uri))
            .await
            .unwrap();
        assert!(conn.io_ref().nodelay().unwrap());
    }
}
