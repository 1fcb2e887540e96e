//! HTTP long-polling transport (engine.io-protocol, "HTTP long-polling").

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use duet_sio_codec::polling::{decode_payload, PayloadEncoder};
use futures_util::StreamExt as _;

use super::Transport;
use super::{
    handle_packet, Conn, EngineHandler, EngineHttpError, EngineShared, Frame, Incoming,
    ProtocolViolation,
};
use crate::DisconnectReason;

pub(crate) fn text_response(body: impl Into<Bytes>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=UTF-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body.into())
}

fn encode(frames: impl IntoIterator<Item = Frame>, trailer: Option<&str>) -> String {
    let mut enc = PayloadEncoder::new();
    for f in frames {
        match f {
            Frame::Text(t) => enc.push_encoded_text(&t),
            Frame::Binary(b) => enc.push_binary(&b),
            Frame::Pong(_) => {}
        }
    }
    if let Some(t) = trailer {
        enc.push_encoded_text(t);
    }
    enc.finish()
}

/// Clears `get_active` when the request ends; if the request was dropped before answering
/// (the client went away mid-poll), closes the session, as the reference server does
/// ("closes the session upon cancelled polling request"). A GET replaced by a retry of itself
/// (another `get_gen`) leaves both to the retry.
struct GetGuard<H: EngineHandler> {
    conn: Arc<Conn<H>>,
    gen: u32,
    answered: bool,
}

impl<H: EngineHandler> Drop for GetGuard<H> {
    fn drop(&mut self) {
        let current = {
            let mut s = self.conn.state.lock();
            let current = s.get_gen == self.gen;
            if current {
                s.get_active = false;
                if let Some(p) = s.poll.as_mut() {
                    p.active_t = None;
                }
            }
            current
        };
        if current && !self.answered {
            self.conn.close(DisconnectReason::TransportError);
        }
    }
}

/// A long-poll `GET`: answers at once with whatever is queued, or waits until something is.
/// `t` is the request's cache buster, which makes a proxy's retry of it recognisable (see
/// [`PollRetry`](super::conn::PollRetry)).
pub(crate) async fn get<H: EngineHandler>(
    _engine: &Arc<EngineShared<H>>,
    conn: Arc<Conn<H>>,
    t: Option<&str>,
) -> HttpResponse {
    let gen = {
        let mut s = conn.state.lock();
        if s.closed.is_some() || s.transport == Transport::WebSocket {
            // After an upgrade, polling requests are refused (test suite: "ignores HTTP
            // requests with same sid after upgrade").
            return EngineHttpError::BadRequest.response();
        }
        if let (Some(t), Some((last_t, body))) = (t, s.poll.as_ref().and_then(|p| p.last.as_ref()))
        {
            if **last_t == *t && !s.get_active {
                // A retry of a GET already answered: its answer was lost on the way.
                return text_response(body.clone());
            }
        }
        // The same request again while the first still waits: a proxy's retry (see PollRetry).
        let retry = t.is_some() && s.poll.as_ref().and_then(|p| p.active_t.as_deref()) == t;
        if s.get_active && !retry {
            // "a client MUST NOT have more than one active GET request. Should it happen, the
            // server MUST return an HTTP 400 error status and close the session."
            drop(s);
            conn.close(DisconnectReason::TransportError);
            return EngineHttpError::BadRequest.response();
        }
        if s.transport == Transport::Upgrading {
            // Upgrade: "send a noop packet to any pending GET request".
            return text_response("6");
        }
        // This GET is active (replacing an earlier one with the same `t`, which then ends);
        // the previous answer has arrived, since the client asks again.
        s.get_active = true;
        s.get_gen = s.get_gen.wrapping_add(1);
        match t {
            Some(t) => {
                let p = s.poll.get_or_insert_with(Default::default);
                p.active_t = Some(t.into());
                p.last = None;
            }
            // Kept for a POST's record, if one made it.
            None => {
                if let Some(p) = s.poll.as_mut() {
                    p.active_t = None;
                    p.last = None;
                }
            }
        }
        s.get_gen
    };
    // Wake a request this one replaces.
    conn.notify.notify_waiters();
    let mut guard = GetGuard {
        conn: conn.clone(),
        gen,
        answered: false,
    };
    loop {
        let notified = conn.notify.notified();
        {
            let mut s = conn.state.lock();
            if s.get_gen != gen {
                // Replaced by a retry of this very request: whoever asked is gone.
                guard.answered = true;
                return text_response("6");
            }
            let frames = s.take_queue();
            let body = if let Some(reason) = s.closed {
                // The server closed: tell the client with a `close` packet after what is left.
                // The client closed (`close` packet in a POST): end this poll with a `noop`
                // (engine.io-protocol test suite, "forcefully closes the session").
                let trailer = if reason != DisconnectReason::TransportClose {
                    Some("1")
                } else if frames.is_empty() {
                    Some("6")
                } else {
                    None
                };
                Some(encode(frames, trailer))
            } else if !frames.is_empty() {
                Some(encode(frames, None))
            } else if s.transport != Transport::Polling {
                Some("6".to_owned())
            } else {
                None
            };
            if let Some(body) = body {
                // Answered: no longer active, and the answer kept for a retry — under the same
                // lock, so that a retry arriving now finds one or the other.
                guard.answered = true;
                s.get_active = false;
                let body = Bytes::from(body);
                if let (Some(t), Some(p)) = (t, s.poll.as_mut()) {
                    p.active_t = None;
                    p.last = Some((t.into(), body.clone()));
                }
                return text_response(body);
            }
        }
        tokio::select! {
            _ = notified => {}
            _ = conn.closed.cancelled() => {}
        }
    }
}

/// Clears `post_active` when the request ends, and wakes a retry of it that waits.
struct PostGuard<H: EngineHandler>(Arc<Conn<H>>);

impl<H: EngineHandler> Drop for PostGuard<H> {
    fn drop(&mut self) {
        let waiting = {
            let mut s = self.0.state.lock();
            s.post_active = false;
            s.poll
                .as_mut()
                .is_some_and(|p| std::mem::take(&mut p.post_waiting))
        };
        if waiting {
            self.0.notify.notify_waiters();
        }
    }
}

/// Longest time a proxy's retry of a POST waits for the first, still being read, to end; then it
/// counts as a second concurrent POST.
const POST_RETRY_WAIT: Duration = Duration::from_secs(5);

/// What a POST may do, given the one before it.
enum PostStart {
    /// Take its packets.
    Take,
    /// A retry of a POST whose packets were taken: answer `ok` again.
    Taken,
    /// A retry of the POST still being read: wait for it.
    Wait,
    /// Refused (closed session, upgraded, or a second concurrent POST that is no retry).
    Refuse,
}

/// Longest `t` or `X-Request-Id` kept to recognise a retry (the official clients' `t` has about ten
/// characters); a longer one is not kept, and its request not recognised when retried.
const MAX_RETRY_ID: usize = 128;

/// `t`, if it is short enough to be kept for a retry.
pub(crate) fn retry_t(t: Option<&str>) -> Option<&str> {
    t.filter(|t| t.len() <= MAX_RETRY_ID)
}

/// What a proxy's retry of a POST has in common with the first and no other request of the client
/// has: the client's `t` cache buster, and the request id nginx gives each request it receives
/// (`X-Request-Id`, deploy/nginx.conf; the same for its retries), which stands in for `t` for a
/// client that sends none (python-engineio's POSTs). Neither: `None`, and no retry is recognised.
/// Made once per POST and kept as it is when the POST begins.
pub(crate) fn retry_key(req: &HttpRequest, t: Option<&str>) -> Option<Box<str>> {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_RETRY_ID);
    match (retry_t(t), id) {
        (Some(t), Some(id)) => {
            let mut key = String::with_capacity(t.len() + 1 + id.len());
            key.extend([t, " ", id]);
            Some(key.into_boxed_str())
        }
        (t, id) => t.or(id).map(Box::from),
    }
}

/// A `POST` with a payload of packets from the client. `key` is what makes a proxy's retry of it
/// recognisable ([`retry_key`]; see [`PollRetry`](super::conn::PollRetry)).
pub(crate) async fn post<H: EngineHandler>(
    engine: &Arc<EngineShared<H>>,
    conn: Arc<Conn<H>>,
    req: &HttpRequest,
    mut body: web::Payload,
    mut key: Option<Box<str>>,
) -> HttpResponse {
    let keyed = key.is_some();
    let deadline = tokio::time::Instant::now() + POST_RETRY_WAIT;
    loop {
        // Made before the state is read, so the first POST's end cannot be missed.
        let notified = conn.notify.notified();
        match start_post(&conn, &mut key, tokio::time::Instant::now() < deadline) {
            PostStart::Take => break,
            PostStart::Taken => return posted(),
            PostStart::Refuse => return EngineHttpError::BadRequest.response(),
            PostStart::Wait => {}
        }
        tokio::select! {
            _ = notified => {}
            _ = conn.closed.cancelled() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
    let _guard = PostGuard(conn.clone());
    let max = engine.config.max_payload;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        conn.close(DisconnectReason::TransportError);
        return EngineHttpError::PayloadTooLarge.response();
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(max));
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            conn.close(DisconnectReason::TransportError);
            return EngineHttpError::BadRequest.response();
        };
        if buf.len() + chunk.len() > max {
            conn.close(DisconnectReason::TransportError);
            return EngineHttpError::PayloadTooLarge.response();
        }
        buf.extend_from_slice(&chunk);
    }
    let Ok(packets) = decode_payload(&buf, max) else {
        conn.close(DisconnectReason::ParseError);
        return EngineHttpError::BadRequest.response();
    };
    for packet in packets {
        let result = packet
            .map_err(|_| ProtocolViolation)
            .and_then(|p| handle_packet(&conn, p));
        match result {
            Ok(Incoming::Continue) => {}
            Ok(Incoming::Close) => {
                conn.close(DisconnectReason::TransportClose);
                break;
            }
            Err(ProtocolViolation) => {
                conn.close(DisconnectReason::ParseError);
                return EngineHttpError::BadRequest.response();
            }
        }
    }
    // Taken: a retry of this request is answered without taking them again. (The record is this
    // request's: no other POST begins while it is active.)
    if keyed {
        if let Some((_, taken)) = conn
            .state
            .lock()
            .poll
            .as_mut()
            .and_then(|p| p.post.as_mut())
        {
            *taken = true;
        }
    }
    posted()
}

fn posted() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html").body("ok")
}

/// Decides what a POST does and, when it takes its packets, makes it the active one (its key moves
/// into the record).
fn start_post<H: EngineHandler>(
    conn: &Arc<Conn<H>>,
    key: &mut Option<Box<str>>,
    may_wait: bool,
) -> PostStart {
    let mut s = conn.state.lock();
    if s.closed.is_some() || s.transport == Transport::WebSocket {
        return PostStart::Refuse;
    }
    // This request is a retry of the last POST (same key): whether that one's packets were taken.
    let retry_of = key.as_deref().and_then(|key| {
        let (last, taken) = s.poll.as_ref()?.post.as_ref()?;
        (**last == *key).then_some(*taken)
    });
    if s.post_active {
        if may_wait && retry_of.is_some() {
            if let Some(p) = s.poll.as_mut() {
                p.post_waiting = true;
            }
            return PostStart::Wait;
        }
        // "a client MUST NOT have more than one active POST request. Should it happen, the
        // server MUST return an HTTP 400 error status and close the session."
        drop(s);
        conn.close(DisconnectReason::TransportError);
        return PostStart::Refuse;
    }
    if retry_of == Some(true) {
        return PostStart::Taken;
    }
    s.post_active = true;
    if let Some(key) = key.take() {
        s.poll.get_or_insert_with(Default::default).post = Some((key, false));
    }
    PostStart::Take
}

/// The heartbeat of a polling session (engine.io-protocol, "Heartbeat"): a `ping` every
/// `pingInterval`, and the session closes if no `pong` comes within `pingTimeout`. Ends when
/// the session closes or moves to WebSocket (whose task then runs the heartbeat).
pub(crate) fn spawn_heartbeat<H: EngineHandler>(engine: Arc<EngineShared<H>>, conn: Arc<Conn<H>>) {
    let interval = engine.config.ping_interval;
    let timeout = engine.config.ping_timeout;
    actix_web::rt::spawn(async move {
        // Deadlines follow the schedule, not the moment this task happens to wake up, so a busy
        // worker does not stretch the timeout.
        let mut next_ping = tokio::time::Instant::now() + interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next_ping) => {}
                _ = conn.closed.cancelled() => return,
            }
            if conn.state.lock().transport != Transport::Polling {
                return;
            }
            let before = conn.pongs.load(Ordering::Relaxed);
            if conn.send_text("2").is_err() {
                return;
            }
            let deadline = next_ping + timeout;
            loop {
                if conn.pongs.load(Ordering::Relaxed) != before {
                    next_ping = tokio::time::Instant::now() + interval;
                    break;
                }
                if conn.state.lock().transport == Transport::WebSocket {
                    return;
                }
                tokio::select! {
                    _ = conn.pong_notify.notified() => {}
                    _ = tokio::time::sleep_until(deadline) => {
                        if conn.pongs.load(Ordering::Relaxed) == before
                            && conn.state.lock().transport != Transport::WebSocket
                        {
                            conn.close(DisconnectReason::PingTimeout);
                        }
                        return;
                    }
                    _ = conn.closed.cancelled() => return,
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn a_retry_key_is_t_and_the_request_id_whichever_are_there_and_short() {
        let with_id = |id: &str| {
            TestRequest::default()
                .insert_header(("x-request-id", id))
                .to_http_request()
        };
        let none = TestRequest::default().to_http_request();
        assert_eq!(
            retry_key(&with_id("r1"), Some("t1")).as_deref(),
            Some("t1 r1")
        );
        assert_eq!(retry_key(&none, Some("t1")).as_deref(), Some("t1"));
        assert_eq!(retry_key(&with_id("r1"), None).as_deref(), Some("r1"));
        assert_eq!(retry_key(&none, None), None);
        assert_eq!(retry_key(&with_id(""), None), None);
        let long = "x".repeat(MAX_RETRY_ID + 1);
        assert_eq!(retry_key(&with_id(&long), Some(&long)), None);
        assert_eq!(
            retry_key(&with_id(&long), Some("t1")).as_deref(),
            Some("t1")
        );
        assert_eq!(retry_t(Some(&long)), None);
    }
}
