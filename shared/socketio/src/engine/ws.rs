//! WebSocket transport and the polling → WebSocket upgrade (engine.io-protocol, "WebSocket"
//! and "Upgrade").
//!
//! One task per WebSocket reads frames, writes the session's queue and runs the heartbeat, so
//! an idle connection costs one task and no extra timers.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, MessageStream, Session};
use duet_sio_codec::engine::{decode_text, Packet};
use tokio::time::{sleep_until, Instant};

use super::Transport;
use super::{
    handle_packet, Conn, EngineHandler, EngineHttpError, EngineShared, Frame, Incoming,
    ProtocolViolation,
};
use crate::DisconnectReason;

pub(crate) enum Mode {
    /// A WebSocket-only session: the `open` packet is already queued.
    Fresh,
    /// An upgrade of a polling session: probe first.
    Upgrade,
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
        // "A client MUST NOT open more than one WebSocket connection per session. Should it
        // happen, the server MUST close the WebSocket connection." Refusing the handshake
        // closes it before it opens.
        if s.closed.is_some() || s.transport != Transport::Polling || s.ws_attached {
            return EngineHttpError::BadRequest.response();
        }
        s.ws_attached = true;
    }
    match actix_ws::handle(req, body) {
        Ok((res, session, stream)) => {
            spawn(engine.clone(), conn, session, stream, Mode::Upgrade);
            res
        }
        Err(_) => {
            conn.state.lock().ws_attached = false;
            EngineHttpError::BadRequest.response()
        }
    }
}

pub(crate) fn spawn<H: EngineHandler>(
    engine: Arc<EngineShared<H>>,
    conn: Arc<Conn<H>>,
    session: Session,
    stream: MessageStream,
    mode: Mode,
) {
    actix_web::rt::spawn(async move {
        let max = engine.config.max_payload;
        let mut stream = stream
            .max_frame_size(max)
            .aggregate_continuations()
            .max_continuation_size(max);
        let mut session = session;
        if let Mode::Upgrade = mode {
            match probe(&engine, &conn, &mut session, &mut stream).await {
                Ok(()) => {}
                Err(close) => {
                    conn.state.lock().ws_attached = false;
                    let _ = session.close(close).await;
                    return;
                }
            }
        }
        let reason = run(&engine, &conn, &mut session, &mut stream).await;
        let close = match reason {
            Some(DisconnectReason::SlowClient) => Some(CloseReason {
                code: CloseCode::Policy,
                description: Some(DisconnectReason::SlowClient.as_str().to_owned()),
            }),
            Some(DisconnectReason::ParseError) => Some(CloseReason {
                code: CloseCode::Protocol,
                description: Some("invalid packet".to_owned()),
            }),
            Some(DisconnectReason::TransportError) => Some(CloseCode::Size.into()),
            _ => Some(CloseCode::Normal.into()),
        };
        let _ = session.close(close).await;
    });
}

/// The probe phase of an upgrade: `2probe` → `3probe`, then `5` (engine.io-protocol,
/// "Upgrade"). Anything else, or no `upgrade` within `upgrade_timeout`, abandons the upgrade:
/// the WebSocket closes and the session stays on polling.
async fn probe<H: EngineHandler>(
    engine: &Arc<EngineShared<H>>,
    conn: &Arc<Conn<H>>,
    session: &mut Session,
    stream: &mut actix_ws::AggregatedMessageStream,
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
                    if session.text("3probe").await.is_err() {
                        return Err(None);
                    }
                    probed = true;
                    conn.state.lock().transport = Transport::Upgrading;
                    // Release a pending long-poll with a `noop`.
                    conn.notify.notify_one();
                }
                Ok(Packet::Upgrade) if probed => {
                    conn.state.lock().transport = Transport::WebSocket;
                    return Ok(());
                }
                // An upgrade without a probe, or any other packet: not a valid upgrade.
                _ => return Err(Some(CloseCode::Protocol.into())),
            },
            Some(Ok(AggregatedMessage::Ping(b))) => {
                let _ = session.pong(&b).await;
            }
            Some(Ok(AggregatedMessage::Pong(_))) => {}
            _ => {
                if probed {
                    conn.state.lock().transport = Transport::Polling;
                }
                return Err(None);
            }
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
    fn new(interval: Duration, timeout: Duration) -> Self {
        Heartbeat {
            interval,
            timeout,
            next_ping: Instant::now() + interval,
            pong_deadline: None,
        }
    }

    fn deadline(&self) -> Instant {
        self.pong_deadline.unwrap_or(self.next_ping)
    }

    fn on_pong(&mut self) {
        if self.pong_deadline.take().is_some() {
            self.next_ping = Instant::now() + self.interval;
        }
    }
}

/// The main loop of an open WebSocket session. Returns why the session ended (`None` if it
/// was already closed by someone else).
async fn run<H: EngineHandler>(
    engine: &Arc<EngineShared<H>>,
    conn: &Arc<Conn<H>>,
    session: &mut Session,
    stream: &mut actix_ws::AggregatedMessageStream,
) -> Option<DisconnectReason> {
    let mut hb = Heartbeat::new(engine.config.ping_interval, engine.config.ping_timeout);
    let sleep = tokio::time::sleep_until(hb.deadline());
    tokio::pin!(sleep);
    // Frames queued before this task started (the `open` packet, or a polling backlog after
    // an upgrade) are flushed first.
    conn.notify.notify_one();
    loop {
        tokio::select! {
            biased;
            _ = conn.closed.cancelled() => {
                // Flush what was queued before the close (a DISCONNECT packet, for instance),
                // within `pingTimeout`; a slow client gets nothing more.
                let reason = conn.close_reason();
                let frames = conn.take_queue();
                if reason != Some(DisconnectReason::SlowClient) {
                    let flush = async {
                        for f in frames {
                            if write(session, f).await.is_err() {
                                break;
                            }
                        }
                    };
                    let _ = tokio::time::timeout(engine.config.ping_timeout, flush).await;
                }
                return reason;
            }
            msg = stream.recv() => {
                let reason = match msg {
                    None | Some(Ok(AggregatedMessage::Close(_))) => DisconnectReason::TransportClose,
                    Some(Err(e)) => {
                        tracing::debug!(sid = conn.sid(), error = %e, "websocket read error");
                        DisconnectReason::TransportError
                    }
                    Some(Ok(AggregatedMessage::Ping(b))) => {
                        let _ = session.pong(&b).await;
                        continue;
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => continue,
                    Some(Ok(AggregatedMessage::Text(text))) => {
                        match decode_text(&text).map_err(|_| ProtocolViolation).and_then(|p| {
                            if let Packet::Pong(_) = p {
                                hb.on_pong();
                            }
                            handle_packet(conn, p)
                        }) {
                            Ok(Incoming::Continue) => {
                                sleep.as_mut().reset(hb.deadline());
                                continue;
                            }
                            Ok(Incoming::Close) => DisconnectReason::TransportClose,
                            Err(ProtocolViolation) => DisconnectReason::ParseError,
                        }
                    }
                    Some(Ok(AggregatedMessage::Binary(data))) => {
                        match handle_packet(conn, Packet::Binary(data)) {
                            Ok(_) => continue,
                            Err(ProtocolViolation) => DisconnectReason::ParseError,
                        }
                    }
                };
                conn.close(reason);
                return Some(reason);
            }
            _ = conn.notify.notified() => {
                let frames = conn.take_queue();
                for f in frames {
                    // A client that stops reading blocks this write; its queue then fills and
                    // the session is closed as slow, which cancels the write here.
                    tokio::select! {
                        r = write(session, f) => if r.is_err() {
                            conn.close(DisconnectReason::TransportClose);
                            return Some(DisconnectReason::TransportClose);
                        },
                        _ = conn.closed.cancelled() => return conn.close_reason(),
                    }
                }
            }
            _ = &mut sleep => {
                if hb.pong_deadline.is_some() {
                    conn.close(DisconnectReason::PingTimeout);
                    return Some(DisconnectReason::PingTimeout);
                }
                if session.text("2").await.is_err() {
                    conn.close(DisconnectReason::TransportClose);
                    return Some(DisconnectReason::TransportClose);
                }
                hb.pong_deadline = Some(Instant::now() + hb.timeout);
                sleep.as_mut().reset(hb.deadline());
            }
        }
    }
}

async fn write(session: &mut Session, frame: Frame) -> Result<(), actix_ws::Closed> {
    match frame {
        Frame::Text(t) => session.text(t).await,
        Frame::Binary(b) => session.binary(b).await,
    }
}
