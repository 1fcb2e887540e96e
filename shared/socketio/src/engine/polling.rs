//! HTTP long-polling transport (engine.io-protocol, "HTTP long-polling").

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::BytesMut;
use duet_sio_codec::polling::{decode_payload, PayloadEncoder};
use futures_util::StreamExt as _;

use super::Transport;
use super::{
    handle_packet, Conn, EngineHandler, EngineHttpError, EngineShared, Frame, Incoming,
    ProtocolViolation,
};
use crate::DisconnectReason;

pub(crate) fn text_response(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=UTF-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
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
/// ("closes the session upon cancelled polling request").
struct GetGuard<H: EngineHandler> {
    conn: Arc<Conn<H>>,
    answered: bool,
}

impl<H: EngineHandler> Drop for GetGuard<H> {
    fn drop(&mut self) {
        self.conn.state.lock().get_active = false;
        if !self.answered {
            self.conn.close(DisconnectReason::TransportError);
        }
    }
}

/// A long-poll `GET`: answers at once with whatever is queued, or waits until something is.
pub(crate) async fn get<H: EngineHandler>(
    _engine: &Arc<EngineShared<H>>,
    conn: Arc<Conn<H>>,
) -> HttpResponse {
    {
        let mut s = conn.state.lock();
        if s.closed.is_some() || s.transport == Transport::WebSocket {
            // After an upgrade, polling requests are refused (test suite: "ignores HTTP
            // requests with same sid after upgrade").
            return EngineHttpError::BadRequest.response();
        }
        if s.get_active {
            // "a client MUST NOT have more than one active GET request. Should it happen, the
            // server MUST return an HTTP 400 error status and close the session."
            drop(s);
            conn.close(DisconnectReason::TransportError);
            return EngineHttpError::BadRequest.response();
        }
        if s.transport == Transport::Upgrading {
            // Upgrade: "send a noop packet to any pending GET request".
            return text_response("6".to_owned());
        }
        s.get_active = true;
    }
    let mut guard = GetGuard {
        conn: conn.clone(),
        answered: false,
    };
    loop {
        let notified = conn.notify.notified();
        let frames = conn.take_queue();
        let (closed, transport) = {
            let s = conn.state.lock();
            (s.closed, s.transport)
        };
        if let Some(reason) = closed {
            guard.answered = true;
            // The server closed: tell the client with a `close` packet after what is left.
            // The client closed (`close` packet in a POST): end this poll with a `noop`
            // (engine.io-protocol test suite, "forcefully closes the session").
            let trailer = if reason == DisconnectReason::TransportClose && frames.is_empty() {
                "6"
            } else if reason == DisconnectReason::TransportClose {
                return text_response(encode(frames, None));
            } else {
                "1"
            };
            return text_response(encode(frames, Some(trailer)));
        }
        if !frames.is_empty() {
            guard.answered = true;
            return text_response(encode(frames, None));
        }
        if transport != Transport::Polling {
            guard.answered = true;
            return text_response("6".to_owned());
        }
        tokio::select! {
            _ = notified => {}
            _ = conn.closed.cancelled() => {}
        }
    }
}

/// Clears `post_active` when the request ends.
struct PostGuard<H: EngineHandler>(Arc<Conn<H>>);

impl<H: EngineHandler> Drop for PostGuard<H> {
    fn drop(&mut self) {
        self.0.state.lock().post_active = false;
    }
}

/// A `POST` with a payload of packets from the client.
pub(crate) async fn post<H: EngineHandler>(
    engine: &Arc<EngineShared<H>>,
    conn: Arc<Conn<H>>,
    req: &HttpRequest,
    mut body: web::Payload,
) -> HttpResponse {
    {
        let mut s = conn.state.lock();
        if s.closed.is_some() || s.transport == Transport::WebSocket {
            return EngineHttpError::BadRequest.response();
        }
        if s.post_active {
            // "a client MUST NOT have more than one active POST request. Should it happen, the
            // server MUST return an HTTP 400 error status and close the session."
            drop(s);
            conn.close(DisconnectReason::TransportError);
            return EngineHttpError::BadRequest.response();
        }
        s.post_active = true;
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
    HttpResponse::Ok().content_type("text/html").body("ok")
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
