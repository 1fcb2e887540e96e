//! WebSocket transport and the polling → WebSocket upgrade (engine.io-protocol, "WebSocket"
//! and "Upgrade").
//!
//! Reading uses actix-ws's message stream (frame decoding, continuation aggregation, frame size
//! limit). Writing does not go through actix-ws's `Session` channel: the response body
//! ([`WsBody`]) encodes frames straight from the session's outbound queue whenever the HTTP
//! dispatcher can write. That saves a 32-slot channel per connection (about 1.4 KB) and makes
//! the session queue the only buffer, so its bound is the backpressure rule. One task per
//! WebSocket reads frames and runs the heartbeat; an idle connection costs that task, its body
//! and the session state.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_codec::Encoder as _;
use actix_http::body::{BodyStream, MessageBody as _};
use actix_http::ws::{Codec, Message};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason};
use bytes::{Bytes, BytesMut};
use duet_sio_codec::engine::{decode_text, Packet};
use futures_util::Stream;
use tokio::time::{sleep_until, Instant};

use super::conn::WsCtl;
use super::Transport;
use super::{handle_packet, Conn, EngineHandler, EngineHttpError, EngineShared, Frame, Incoming};
use crate::DisconnectReason;

pub(crate) enum Mode {
    /// A WebSocket-only session: the `open` packet is already queued.
    Fresh,
    /// An upgrade of a polling session: probe first.
    Upgrade,
}

/// Accepts the WebSocket handshake: returns the 101 response (whose body is the writer) and the
/// reader, or `None` if the request is not a valid WebSocket handshake.
fn accept<H: EngineHandler>(
    req: &HttpRequest,
    body: web::Payload,
    conn: &Arc<Conn<H>>,
    ctl: &Arc<WsCtl>,
) -> Option<(HttpResponse, actix_ws::MessageStream)> {
    // actix-ws validates the handshake and builds the reader; its own session and body are
    // dropped unused (see the module docs).
    let (_, _, stream) = actix_ws::handle(req, body).ok()?;
    let mut res = actix_http::ws::handshake(req.head()).ok()?;
    let writer = WsBody {
        conn: conn.clone(),
        ctl: ctl.clone(),
        codec: Codec::new(),
        done: false,
    };
    let res = res.message_body(BodyStream::new(writer).boxed()).ok()?;
    Some((res.into(), stream))
}

/// A WebSocket-only session.
pub(crate) fn open<H: EngineHandler>(
    engine: &Arc<EngineShared<H>>,
    conn: Arc<Conn<H>>,
    req: &HttpRequest,
    body: web::Payload,
) -> Option<HttpResponse> {
    let ctl = Arc::new(WsCtl::default());
    ctl.state.lock().attached = true;
    let (res, stream) = accept(req, body, &conn, &ctl)?;
    conn.state.lock().ws = Some(ctl.clone());
    spawn(engine.clone(), conn, ctl, stream, Mode::Fresh);
    Some(res)
}

/// A WebSocket request carrying the `sid` of a polling session.
pub(crate) fn upgrade<H: EngineHandler>(
    engine: &Arc<EngineShared<H>>,
    conn: Arc<Conn<H>>,
    req: &HttpRequest,
    body: web::Payload,
) -> HttpResponse {
    {
        let mut s = conn.state.lock();
        if s.closed.is_some() {
            return EngineHttpError::UnknownSid.response();
        }
        // "A client MUST NOT open more than one WebSocket connection per session. Should it
        // happen, the server MUST close the WebSocket connection." Accepted, then closed at
        // once, as the reference server does and the protocol test suites expect (a refused
        // handshake is an error event in a WebSocket client, not a close). The session goes on.
        if s.transport != Transport::Polling || s.ws_attached {
            drop(s);
            tracing::debug!(sid = conn.sid(), "second websocket for a session: closed");
            return accept_and_close(req, SECOND_WEBSOCKET);
        }
        s.ws_attached = true;
    }
    let ctl = Arc::new(WsCtl::default());
    match accept(req, body, &conn, &ctl) {
        Some((res, stream)) => {
            spawn(engine.clone(), conn, ctl, stream, Mode::Upgrade);
            res
        }
        None => {
            conn.state.lock().ws_attached = false;
            EngineHttpError::BadRequest.response()
        }
    }
}

/// Why a second WebSocket for a session is closed (close code 1008, policy violation).
const SECOND_WEBSOCKET: &str = "this session already has a WebSocket";

/// Accepts a WebSocket handshake whose only frame is a close with `reason`; what the client sends
/// is not read. The connection ends when the client closes its side after the close frame, or
/// after actix-http's client disconnect timeout. A request that is not a valid handshake gets 400.
fn accept_and_close(req: &HttpRequest, reason: &str) -> HttpResponse {
    let Ok(mut res) = actix_http::ws::handshake(req.head()) else {
        return EngineHttpError::BadRequest.response();
    };
    let mut frame = BytesMut::new();
    let close = CloseReason {
        code: CloseCode::Policy,
        description: Some(reason.to_owned()),
    };
    if Codec::new()
        .encode(Message::Close(Some(close)), &mut frame)
        .is_err()
    {
        return EngineHttpError::BadRequest.response();
    }
    let body = futures_util::stream::once(std::future::ready(Ok::<_, actix_web::Error>(
        frame.freeze(),
    )));
    match res.message_body(BodyStream::new(body).boxed()) {
        Ok(res) => res.into(),
        Err(_) => EngineHttpError::BadRequest.response(),
    }
}

fn spawn<H: EngineHandler>(
    engine: Arc<EngineShared<H>>,
    conn: Arc<Conn<H>>,
    ctl: Arc<WsCtl>,
    stream: actix_ws::MessageStream,
    mode: Mode,
) {
    actix_web::rt::spawn(async move {
        let max = engine.config.max_payload;
        let mut stream = stream
            .max_frame_size(max)
            .aggregate_continuations()
            .max_continuation_size(max);
        if let Mode::Upgrade = mode {
            if let Err(close) = probe(&engine, &conn, &ctl, &mut stream).await {
                {
                    let mut s = conn.state.lock();
                    s.ws_attached = false;
                    if s.transport == Transport::Upgrading {
                        s.transport = Transport::Polling;
                    }
                }
                ctl.close(close);
                return;
            }
        }
        run(&engine, &conn, &ctl, &mut stream).await;
    });
}

/// The probe phase of an upgrade: `2probe` → `3probe`, then `5` (engine.io-protocol,
/// "Upgrade"). Anything else, or no `upgrade` within `upgrade_timeout`, abandons the upgrade:
/// the WebSocket closes and the session stays on polling.
async fn probe<H: EngineHandler>(
    engine: &Arc<EngineShared<H>>,
    conn: &Arc<Conn<H>>,
    ctl: &Arc<WsCtl>,
    stream: &mut AggregatedMessageStream,
) -> Result<(), Option<CloseReason>> {
    let deadline = Instant::now() + engine.config.upgrade_timeout;
    let mut probed = false;
    loop {
        let msg = tokio::select! {
            msg = stream.recv() => msg,
            _ = sleep_until(deadline) => return Err(Some(CloseCode::Normal.into())),
            _ = conn.closed.cancelled() => return Err(Some(CloseCode::Away.into())),
        };
        match msg {
            Some(Ok(AggregatedMessage::Text(text))) => match decode_text(&text) {
                Ok(Packet::Ping("probe")) if !probed => {
                    probed = true;
                    ctl.send_direct(Frame::Text("3probe".into()));
                    conn.state.lock().transport = Transport::Upgrading;
                    // "send a noop packet to any pending GET request".
                    conn.notify.notify_one();
                }
                Ok(Packet::Upgrade) if probed => {
                    {
                        let mut s = conn.state.lock();
                        if s.closed.is_some() {
                            return Err(Some(CloseCode::Away.into()));
                        }
                        s.transport = Transport::WebSocket;
                        s.ws = Some(ctl.clone());
                    }
                    ctl.state.lock().attached = true;
                    // Flush what polling left in the queue.
                    ctl.waker.wake();
                    return Ok(());
                }
                // An upgrade without a probe, or any other packet: not a valid upgrade.
                _ => return Err(Some(CloseCode::Protocol.into())),
            },
            Some(Ok(AggregatedMessage::Ping(b))) => ctl.send_direct(Frame::Pong(b)),
            Some(Ok(AggregatedMessage::Pong(_))) => {}
            _ => return Err(None),
        }
    }
}

/// Heartbeat state of a WebSocket session (engine.io-protocol, "Heartbeat").
struct Heartbeat {
    interval: Duration,
    timeout: Duration,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
}

impl Heartbeat {
    fn deadline(&self) -> Instant {
        self.pong_deadline.unwrap_or(self.next_ping)
    }

    fn on_pong(&mut self) {
        if self.pong_deadline.take().is_some() {
            self.next_ping = Instant::now() + self.interval;
        }
    }
}

/// Reads an open WebSocket session until it closes, and runs its heartbeat.
async fn run<H: EngineHandler>(
    engine: &Arc<EngineShared<H>>,
    conn: &Arc<Conn<H>>,
    ctl: &Arc<WsCtl>,
    stream: &mut AggregatedMessageStream,
) {
    let interval = engine.config.ping_interval;
    let mut hb = Heartbeat {
        interval,
        timeout: engine.config.ping_timeout,
        next_ping: Instant::now() + interval,
        pong_deadline: None,
    };
    let sleep = sleep_until(hb.deadline());
    tokio::pin!(sleep);
    loop {
        let reason = tokio::select! {
            biased;
            _ = conn.closed.cancelled() => return,
            msg = stream.recv() => match msg {
                None | Some(Ok(AggregatedMessage::Close(_))) => DisconnectReason::TransportClose,
                Some(Err(e)) => {
                    tracing::debug!(sid = conn.sid(), error = %e, "websocket read error");
                    DisconnectReason::TransportError
                }
                Some(Ok(AggregatedMessage::Ping(b))) => {
                    ctl.send_direct(Frame::Pong(b));
                    continue;
                }
                Some(Ok(AggregatedMessage::Pong(_))) => continue,
                Some(Ok(AggregatedMessage::Text(text))) => {
                    let packet = decode_text(&text);
                    if let Ok(Packet::Pong(_)) = packet {
                        hb.on_pong();
                        sleep.as_mut().reset(hb.deadline());
                    }
                    match packet.map_err(|_| super::ProtocolViolation).and_then(|p| handle_packet(conn, p)) {
                        Ok(Incoming::Continue) => continue,
                        Ok(Incoming::Close) => DisconnectReason::TransportClose,
                        Err(_) => DisconnectReason::ParseError,
                    }
                }
                Some(Ok(AggregatedMessage::Binary(data))) => {
                    match handle_packet(conn, Packet::Binary(data)) {
                        Ok(_) => continue,
                        Err(_) => DisconnectReason::ParseError,
                    }
                }
            },
            _ = &mut sleep => {
                if hb.pong_deadline.is_some() {
                    DisconnectReason::PingTimeout
                } else if conn.send_text("2").is_err() {
                    return;
                } else {
                    // From the scheduled ping time, not this task's wake-up (see polling.rs).
                    hb.pong_deadline = Some(hb.next_ping + hb.timeout);
                    sleep.as_mut().reset(hb.deadline());
                    continue;
                }
            }
        };
        conn.close(reason);
        return;
    }
}

/// The close frame sent when a session ends for `reason`.
fn close_frame(reason: DisconnectReason) -> CloseReason {
    let code = match reason {
        DisconnectReason::SlowClient => CloseCode::Policy,
        DisconnectReason::ParseError => CloseCode::Protocol,
        DisconnectReason::TransportError => CloseCode::Size,
        DisconnectReason::ServerShutdown => CloseCode::Restart,
        _ => CloseCode::Normal,
    };
    CloseReason {
        code,
        description: Some(reason.as_str().to_owned()),
    }
}

/// The body of the 101 response: encodes frames as the HTTP dispatcher asks for bytes.
struct WsBody<H: EngineHandler> {
    conn: Arc<Conn<H>>,
    ctl: Arc<WsCtl>,
    codec: Codec,
    done: bool,
}

impl<H: EngineHandler> WsBody<H> {
    fn encode(
        &mut self,
        frame: Frame,
        buf: &mut BytesMut,
    ) -> Result<(), actix_http::ws::ProtocolError> {
        let msg = match frame {
            Frame::Text(t) => Message::Text(t),
            Frame::Binary(b) => Message::Binary(b),
            Frame::Pong(b) => Message::Pong(b),
        };
        self.codec.encode(msg, buf)
    }
}

impl<H: EngineHandler> Stream for WsBody<H> {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        this.ctl.waker.register(cx.waker());
        let (direct, attached, mut close) = {
            let mut st = this.ctl.state.lock();
            (std::mem::take(&mut st.direct), st.attached, st.close.take())
        };
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        frames.extend(direct);
        if attached {
            let queued = this.conn.take_queue();
            match this.conn.close_reason() {
                // A slow client gets nothing more than the close frame.
                Some(DisconnectReason::SlowClient) => {}
                _ => frames.extend(queued),
            }
            if let Some(reason) = this.conn.close_reason() {
                close.get_or_insert(Some(close_frame(reason)));
            }
        }
        for f in frames {
            if let Err(e) = this.encode(f, &mut buf) {
                this.done = true;
                return Poll::Ready(Some(Err(actix_web::error::ErrorInternalServerError(e))));
            }
        }
        if let Some(reason) = close {
            let _ = this.codec.encode(Message::Close(reason), &mut buf);
            this.done = true;
        }
        if buf.is_empty() {
            return if this.done {
                Poll::Ready(None)
            } else {
                Poll::Pending
            };
        }
        Poll::Ready(Some(Ok(buf.freeze())))
    }
}
