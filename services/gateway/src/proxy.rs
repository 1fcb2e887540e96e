//! Reverse proxying: `/api/*` to the session-API pool (round robin) and `/socket.io/*` to a hub chosen by
//! rendezvous hashing of the interview's session code (the `session` query parameter the browser client
//! sends on every Engine.IO request), over both HTTP long-polling and WebSocket.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_web::{http::header, http::StatusCode, web, HttpRequest, HttpResponse};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;

/// Upstream requests may be Engine.IO long-polls, which the hub holds for up to a ping interval (25 s).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

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

/// The upstreams a gateway can reach.
pub struct Upstreams {
    apis: Vec<String>,
    next_api: AtomicUsize,
    hubs: RwLock<Vec<String>>,
}

impl Upstreams {
    pub fn new(apis: Vec<String>, hubs: Vec<String>) -> Self {
        Self {
            apis,
            next_api: AtomicUsize::new(0),
            hubs: RwLock::new(hubs),
        }
    }

    /// Replaces the set of live hubs (from Redis registration).
    pub fn set_hubs(&self, mut hubs: Vec<String>) {
        hubs.sort();
        if let Ok(mut h) = self.hubs.write() {
            *h = hubs;
        }
    }

    pub fn hubs(&self) -> Vec<String> {
        self.hubs.read().map(|h| h.clone()).unwrap_or_default()
    }

    fn api(&self) -> Option<&str> {
        if self.apis.is_empty() {
            return None;
        }
        let i = self.next_api.fetch_add(1, Ordering::Relaxed) % self.apis.len();
        Some(&self.apis[i])
    }

    /// Rendezvous (highest random weight) hashing: every gateway picks the same hub for a key, and when
    /// a hub leaves only its keys move, each to the next hub in its own order.
    pub fn hub_for(&self, key: &str) -> Option<String> {
        let hubs = self.hubs.read().ok()?;
        hubs.iter().max_by_key(|hub| score(key, hub)).cloned()
    }
}

fn score(key: &str, hub: &str) -> u64 {
    // DefaultHasher::new() uses fixed keys, so all replicas of one build agree.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    hub.hash(&mut h);
    h.finish()
}

fn bad_gateway(message: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::BAD_GATEWAY)
        .json(json!({"error": {"code": "upstream_unavailable", "message": message}}))
}

fn session_key(req: &HttpRequest) -> String {
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("session").map(|s| s.to_ascii_uppercase()))
        .unwrap_or_default()
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

async fn forward_http(
    req: &HttpRequest,
    payload: web::Payload,
    client: &awc::Client,
    upstream: &str,
) -> HttpResponse {
    let url = upstream_url(upstream, req);
    let mut fwd = client
        .request(req.method().clone(), &url)
        .no_decompress()
        .timeout(UPSTREAM_TIMEOUT);
    for (name, value) in req.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != header::HOST {
            fwd = fwd.append_header((name.clone(), value.clone()));
        }
    }
    if let Some(peer) = req.peer_addr() {
        fwd = fwd.insert_header(("x-forwarded-for", peer.ip().to_string()));
    }
    match fwd.send_stream(payload).await {
        Ok(res) => {
            let mut out = HttpResponse::build(res.status());
            for (name, value) in res.headers() {
                if !HOP_BY_HOP.contains(&name.as_str()) && name != header::CONTENT_LENGTH {
                    out.append_header((name.clone(), value.clone()));
                }
            }
            out.streaming(res)
        }
        Err(e) => {
            tracing::warn!(%url, error = %e, "upstream request failed");
            bad_gateway("the upstream service did not answer")
        }
    }
}

pub async fn api(
    req: HttpRequest,
    payload: web::Payload,
    client: web::Data<awc::Client>,
    up: web::Data<Arc<Upstreams>>,
) -> HttpResponse {
    match up.api() {
        Some(api) => forward_http(&req, payload, &client, api).await,
        None => bad_gateway("no session-API is configured"),
    }
}

pub async fn socketio(
    req: HttpRequest,
    payload: web::Payload,
    client: web::Data<awc::Client>,
    up: web::Data<Arc<Upstreams>>,
) -> HttpResponse {
    let Some(hub) = up.hub_for(&session_key(&req)) else {
        return bad_gateway("no realtime hub is available");
    };
    let is_ws = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if is_ws {
        forward_ws(req, payload, &client, &hub).await
    } else {
        forward_http(&req, payload, &client, &hub).await
    }
}

/// Bridges a browser WebSocket to the hub's: frames are passed through unchanged in both directions.
async fn forward_ws(
    req: HttpRequest,
    payload: web::Payload,
    client: &awc::Client,
    hub: &str,
) -> HttpResponse {
    // http://hub → ws://hub, https://hub → wss://hub
    let url = upstream_url(hub, &req).replacen("http", "ws", 1);
    let mut connect = client.ws(&url).max_frame_size(16 * 1024 * 1024);
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        connect = connect.origin(origin.clone());
    }
    let upstream = match connect.connect().await {
        Ok((_, framed)) => framed,
        Err(e) => {
            tracing::warn!(%url, error = %e, "upstream websocket failed");
            return bad_gateway("the realtime hub did not accept the connection");
        }
    };
    let (res, session, stream) = match actix_ws::handle(&req, payload) {
        Ok(x) => x,
        Err(e) => return HttpResponse::from_error(e),
    };
    let (mut up_tx, mut up_rx) = upstream.split();
    let mut down_session = session.clone();
    actix_web::rt::spawn(async move {
        while let Some(Ok(frame)) = up_rx.next().await {
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
                    let _ = down_session.close(reason).await;
                    return;
                }
                Frame::Continuation(_) => Ok(()),
            };
            if sent.is_err() {
                return;
            }
        }
        let _ = down_session.close(None).await;
    });
    let session_up = session;
    actix_web::rt::spawn(async move {
        let session = session_up;
        let mut stream = stream.aggregate_continuations();
        while let Some(Ok(msg)) = stream.next().await {
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
        let _ = session.close(None).await;
    });
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_is_stable_and_moves_only_the_dead_hubs_keys() {
        let hubs: Vec<String> = (1..=4).map(|i| format!("http://hub{i}")).collect();
        let up = Upstreams::new(vec![], hubs.clone());
        let keys: Vec<String> = (0..400).map(|i| format!("CODE{i:04}")).collect();
        let before: Vec<String> = keys.iter().map(|k| up.hub_for(k).unwrap()).collect();
        // Every hub gets a share.
        for h in &hubs {
            let n = before.iter().filter(|b| *b == h).count();
            assert!(n > 40, "{h} got {n} of 400");
        }
        // Same answer again (and in another instance).
        let again = Upstreams::new(vec![], hubs.iter().rev().cloned().collect());
        again.set_hubs(hubs.clone());
        for (k, b) in keys.iter().zip(&before) {
            assert_eq!(&again.hub_for(k).unwrap(), b);
        }
        // Remove hub2: only its keys move.
        again.set_hubs(
            hubs.iter()
                .filter(|h| !h.ends_with("hub2"))
                .cloned()
                .collect(),
        );
        for (k, b) in keys.iter().zip(&before) {
            let now = again.hub_for(k).unwrap();
            if !b.ends_with("hub2") {
                assert_eq!(&now, b);
            } else {
                assert_ne!(now, *b);
            }
        }
    }

    #[test]
    fn no_hubs_no_choice() {
        assert_eq!(Upstreams::new(vec![], vec![]).hub_for("X"), None);
    }
}
