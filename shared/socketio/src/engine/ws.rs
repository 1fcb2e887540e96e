//! WebSocket transport and the polling → WebSocket upgrade (engine.io-protocol, "WebSocket"
//! and "Upgrade").
//!
//! One task per WebSocket owns the connection's byte stream and does everything: it reads and
//! decodes frames, writes what the session queued, and runs the heartbeat. Behind
//! [`Upgrades`](crate::takeover::Upgrades) the stream is the TCP socket itself, taken from
//! actix-http's dispatcher after the 101 (see `takeover.rs`); elsewhere (actix-web's
//! `HttpServer`) it is a pipe through the dispatcher, as a response body and the request payload.
//!
//! Framing is actix-http's WebSocket codec (RFC 6455: masking, control frames, the size limit per
//! frame, close payloads); this module reassembles fragmented messages and checks their size and
//! UTF-8. Buffers exist only while they hold bytes: a read goes into a buffer on the stack and only
//! a partial frame is kept, on the heap; encoded frames are kept until the socket has taken them.
//! An idle WebSocket costs its task (this module's state), the socket and the session.
//!
//! The session queue is the only outbound buffer: the task takes it when the previous batch is
//! written, so its bound is the backpressure rule.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use actix_codec::{Decoder as _, Encoder as _};
use actix_http::body::MessageBody as _;
use actix_http::ws::{CloseCode, CloseReason, Codec, Frame as WsFrame, Item, Message};
use actix_web::{web, HttpMessage as _, HttpRequest, HttpResponse};
use bytes::{Buf as _, Bytes, BytesMut};
use bytestring::ByteString;
use duet_sio_codec::engine::{decode_text, Packet};
use futures_util::TryStreamExt as _;
use tokio::io::ReadBuf;
use tokio::time::{sleep_until, Instant};

use super::conn::WsCtl;
use super::Transport;
use super::{handle_packet, Conn, EngineHandler, EngineHttpError, EngineShared, Frame, Incoming};
use crate::takeover::{CanTakeOver, Handover, HandoverExt, RawIo};
use crate::DisconnectReason;

/// Bytes taken from the socket per read, into a buffer on the stack (only the part of a frame
/// still incomplete is kept, on the heap).
const READ_CHUNK: usize = 4096;
/// How long a closing WebSocket waits, after its close frame, for the client's close frame or end
/// of stream before it drops the connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Without [`Upgrades`](crate::takeover::Upgrades): bytes of encoded frames the pipe to the
/// dispatcher holds before the task waits for the dispatcher to write them.
const PIPE_CAPACITY: usize = 64 * 1024;

/// What the WebSocket task is for.
#[derive(Clone, Copy)]
enum Mode {
    /// A WebSocket-only session: the `open` packet is already queued.
    Fresh,
    /// An upgrade of a polling session: probe first.
    Upgrade,
    /// A second WebSocket for a session: its only frame is a close with this reason.
    Refuse(&'static str),
}

/// A WebSocket-only session. `None` if the request is not a valid WebSocket handshake.
pub(crate) fn open<H: EngineHandler>(
    engine: &Arc<EngineShared<H>>,
    conn: Arc<Conn<H>>,
    req: &HttpRequest,
    body: web::Payload,
) -> Option<HttpResponse> {
    let ctl = Arc::new(WsCtl::default());
    ctl.state.lock().attached = true;
    let res = accept(req, body, Start::new(engine, &conn, &ctl, Mode::Fresh))?;
    conn.state.lock().ws = Some(ctl);
    Some(res)
}

/// A WebSocket request carrying the `sid` of a polling session.
pub(crate) fn upgrade<H: EngineHandler>(
    engine: &Arc<EngineShared<H>>,
    conn: Arc<Conn<H>>,
    req: &HttpRequest,
    body: web::Payload,
) -> HttpResponse {
    let ctl = Arc::new(WsCtl::default());
    let mode = {
        let mut s = conn.state.lock();
        if s.closed.is_some() {
            return EngineHttpError::UnknownSid.response();
        }
        // "A client MUST NOT open more than one WebSocket connection per session. Should it
        // happen, the server MUST close the WebSocket connection." Accepted, then closed at
        // once, as the reference server does and the protocol test suites expect (a refused
        // handshake is an error event in a WebSocket client, not a close). The session goes on.
        if s.transport != Transport::Polling || s.ws_attached {
            tracing::debug!(sid = conn.sid(), "second websocket for a session: closed");
            Mode::Refuse(SECOND_WEBSOCKET)
        } else {
            s.ws_attached = true;
            Mode::Upgrade
        }
    };
    match accept(req, body, Start::new(engine, &conn, &ctl, mode)) {
        Some(res) => res,
        // The start was dropped unstarted: `ws_attached` is reset.
        None => EngineHttpError::BadRequest.response(),
    }
}

/// Why a second WebSocket for a session is closed (close code 1008, policy violation).
const SECOND_WEBSOCKET: &str = "this session already has a WebSocket";

/// Answers the WebSocket handshake: a 101 whose connection goes to a new WebSocket task (`start`),
/// or `None` if the request is not a valid handshake (`start` is dropped).
fn accept<H: EngineHandler>(
    req: &HttpRequest,
    body: web::Payload,
    start: Start<H>,
) -> Option<HttpResponse> {
    let mut res = actix_http::ws::handshake(req.head()).ok()?;
    if req.extensions().contains::<CanTakeOver>() {
        // The upgrade service writes the 101 and hands the socket over.
        let mut res: HttpResponse = res.finish().map_into_boxed_body().into();
        res.extensions_mut()
            .insert(HandoverExt(Box::new(start) as Box<dyn Handover>));
        return Some(res);
    }
    // Through the dispatcher: the request payload is what the client sends, the response body
    // what the task writes.
    let (from_task, to_client) = tokio::io::simplex(PIPE_CAPACITY);
    let from_client = tokio_util::io::StreamReader::new(body.map_err(io::Error::other));
    Box::new(start).start(
        Box::new(tokio::io::join(from_client, to_client)),
        BytesMut::new(),
    );
    let body = tokio_util::io::ReaderStream::new(from_task);
    let res = res
        .message_body(actix_http::body::BodyStream::new(body).boxed())
        .ok()?;
    Some(res.into())
}

/// A WebSocket task waiting for its connection ([`Handover`]).
struct Start<H: EngineHandler> {
    engine: Arc<EngineShared<H>>,
    conn: Arc<Conn<H>>,
    ctl: Arc<WsCtl>,
    mode: Mode,
    started: bool,
}

impl<H: EngineHandler> Start<H> {
    fn new(
        engine: &Arc<EngineShared<H>>,
        conn: &Arc<Conn<H>>,
        ctl: &Arc<WsCtl>,
        mode: Mode,
    ) -> Self {
        Start {
            engine: engine.clone(),
            conn: conn.clone(),
            ctl: ctl.clone(),
            mode,
            started: false,
        }
    }
}

impl<H: EngineHandler> Handover for Start<H> {
    fn start(mut self: Box<Self>, io: Box<dyn RawIo>, read: BytesMut) {
        self.started = true;
        let (engine, conn, ctl, mode) = (
            self.engine.clone(),
            self.conn.clone(),
            self.ctl.clone(),
            self.mode,
        );
        let sock = WsSocket::new(io, read, engine.config.max_payload);
        actix_web::rt::spawn(drive(engine, conn, ctl, sock, mode));
    }
}

impl<H: EngineHandler> Drop for Start<H> {
    /// The 101 never reached the client: undo what the handshake set up.
    fn drop(&mut self) {
        if self.started {
            return;
        }
        match self.mode {
            Mode::Fresh => self.conn.close(DisconnectReason::TransportError),
            Mode::Upgrade => self.conn.state.lock().ws_attached = false,
            Mode::Refuse(_) => {}
        }
    }
}

/// The WebSocket task. Its state is what every open WebSocket costs for its whole life, so it is
/// kept small: an `async move` block rather than an `async fn` (whose state keeps its arguments
/// twice, as arguments and as locals), the probe boxed (it lives only while an upgrade is probed),
/// and [`run`] without a cancellation future.
#[allow(clippy::manual_async_fn)] // deliberately not an `async fn`: see above
fn drive<H: EngineHandler>(
    engine: Arc<EngineShared<H>>,
    conn: Arc<Conn<H>>,
    ctl: Arc<WsCtl>,
    mut sock: WsSocket,
    mode: Mode,
) -> impl Future<Output = ()> + 'static {
    async move {
        match mode {
            Mode::Fresh => run(&engine, &conn, &ctl, &mut sock).await,
            Mode::Upgrade => match Box::pin(probe(&engine, &conn, &ctl, &mut sock)).await {
                Ok(()) => run(&engine, &conn, &ctl, &mut sock).await,
                Err(close) => {
                    {
                        let mut s = conn.state.lock();
                        s.ws_attached = false;
                        if s.transport == Transport::Upgrading {
                            s.transport = Transport::Polling;
                        }
                    }
                    ctl.close(close);
                }
            },
            Mode::Refuse(reason) => ctl.close(Some(CloseReason {
                code: CloseCode::Policy,
                description: Some(reason.to_owned()),
            })),
        }
        finish(&conn, &ctl, &mut sock).await;
    }
}

/// The probe phase of an upgrade: `2probe` → `3probe`, then `5` (engine.io-protocol,
/// "Upgrade"). Anything else, or no `upgrade` within `upgrade_timeout`, abandons the upgrade:
/// the WebSocket closes and the session stays on polling.
async fn probe<H: EngineHandler>(
    engine: &Arc<EngineShared<H>>,
    conn: &Arc<Conn<H>>,
    ctl: &Arc<WsCtl>,
    sock: &mut WsSocket,
) -> Result<(), Option<CloseReason>> {
    let deadline = Instant::now() + engine.config.upgrade_timeout;
    let mut probed = false;
    loop {
        let event = tokio::select! {
            event = sock.next(conn, ctl) => event,
            _ = sleep_until(deadline) => return Err(Some(CloseCode::Normal.into())),
            _ = conn.closed.cancelled() => return Err(Some(CloseCode::Away.into())),
        };
        match event {
            Ok(Event::Text(text)) => match decode_text(&text) {
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
                    // From now on the task drains the session queue (what polling left first).
                    ctl.state.lock().attached = true;
                    return Ok(());
                }
                // An upgrade without a probe, or any other packet: not a valid upgrade.
                _ => return Err(Some(CloseCode::Protocol.into())),
            },
            Ok(Event::Ping(b)) => ctl.send_direct(Frame::Pong(b)),
            Ok(Event::Pong) => {}
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
    sock: &mut WsSocket,
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
        // The session's close wakes this task through `ctl.waker` (it is the session's transport),
        // registered before the check so that a close in between is not missed.
        let step = std::future::poll_fn(|cx| {
            ctl.waker.register(cx.waker());
            if conn.is_closed() {
                return Poll::Ready(None);
            }
            if let Poll::Ready(event) = sock.poll_next(conn, ctl, cx) {
                return Poll::Ready(Some(Ok(event)));
            }
            sleep.as_mut().poll(cx).map(|()| Some(Err(())))
        })
        .await;
        let reason = match step {
            None => return,
            Some(Ok(event)) => match event {
                Ok(Event::Close | Event::End) => DisconnectReason::TransportClose,
                Err(e) => {
                    tracing::debug!(sid = conn.sid(), error = %e, "websocket error");
                    DisconnectReason::TransportError
                }
                Ok(Event::Ping(b)) => {
                    ctl.send_direct(Frame::Pong(b));
                    continue;
                }
                Ok(Event::Pong) => continue,
                Ok(Event::Text(text)) => {
                    let packet = decode_text(&text);
                    if let Ok(Packet::Pong(_)) = packet {
                        hb.on_pong();
                        sleep.as_mut().reset(hb.deadline());
                    }
                    match packet
                        .map_err(|_| super::ProtocolViolation)
                        .and_then(|p| handle_packet(conn, p))
                    {
                        Ok(Incoming::Continue) => continue,
                        Ok(Incoming::Close) => DisconnectReason::TransportClose,
                        Err(_) => DisconnectReason::ParseError,
                    }
                }
                Ok(Event::Binary(data)) => match handle_packet(conn, Packet::Binary(data)) {
                    Ok(_) => continue,
                    Err(_) => DisconnectReason::ParseError,
                },
            },
            Some(Err(())) => {
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

/// Ends a WebSocket whose close frame is due (the session closed, or `ctl.close` was called):
/// writes what is left and the close frame, waits up to [`CLOSE_TIMEOUT`] for the client's close
/// frame (unless it sent one first) or end of stream, then closes the connection.
async fn finish<H: EngineHandler>(conn: &Arc<Conn<H>>, ctl: &Arc<WsCtl>, sock: &mut WsSocket) {
    let closing = std::future::poll_fn(|cx| {
        if ready!(sock.poll_send(conn, ctl, cx)).is_err() || !sock.close_sent {
            // A write error, or nothing asked for a close frame (cannot happen): done.
            return Poll::Ready(());
        }
        while !sock.peer_closed {
            match ready!(sock.poll_event(cx)) {
                Ok(Event::Close | Event::End) | Err(_) => return Poll::Ready(()),
                Ok(_) => {}
            }
        }
        Poll::Ready(())
    });
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
    let _ = tokio::time::timeout(
        CLOSE_TIMEOUT,
        std::future::poll_fn(|cx| Pin::new(&mut *sock.io).poll_shutdown(cx)),
    )
    .await;
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

/// A message (or control frame) from the client.
enum Event {
    Text(ByteString),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    /// A close frame.
    Close,
    /// End of stream.
    End,
}

/// Why reading or writing a WebSocket failed.
#[derive(Debug, thiserror::Error)]
enum WsError {
    #[error("{0}")]
    Protocol(#[from] actix_http::ws::ProtocolError),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("text message is not UTF-8")]
    NotUtf8,
    #[error("fragmented message larger than {0} bytes")]
    TooLarge(usize),
}

/// A fragmented message being reassembled.
struct Partial {
    text: bool,
    data: BytesMut,
}

/// One WebSocket connection's framing: the byte stream, and bytes only while they are in flight.
struct WsSocket {
    io: Box<dyn RawIo>,
    codec: Codec,
    /// Most bytes in a message (one frame, or the fragments of one message together).
    max: usize,
    /// Received bytes not decoded yet: part of a frame. Empty, without an allocation, between
    /// frames.
    rbuf: BytesMut,
    /// Encoded frames the socket has not taken yet. Empty, without an allocation, once written.
    wbuf: BytesMut,
    partial: Option<Partial>,
    eof: bool,
    close_sent: bool,
    peer_closed: bool,
}

impl WsSocket {
    fn new(io: Box<dyn RawIo>, read: BytesMut, max: usize) -> Self {
        WsSocket {
            io,
            codec: Codec::new().max_size(max),
            max,
            rbuf: read,
            wbuf: BytesMut::new(),
            partial: None,
            eof: false,
            close_sent: false,
            peer_closed: false,
        }
    }

    /// The next event from the client, writing what the session has queued meanwhile.
    async fn next<H: EngineHandler>(
        &mut self,
        conn: &Conn<H>,
        ctl: &WsCtl,
    ) -> Result<Event, WsError> {
        std::future::poll_fn(|cx| self.poll_next(conn, ctl, cx)).await
    }

    /// [`WsSocket::next`] as a poll.
    fn poll_next<H: EngineHandler>(
        &mut self,
        conn: &Conn<H>,
        ctl: &WsCtl,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Event, WsError>> {
        if let Poll::Ready(Err(e)) = self.poll_send(conn, ctl, cx) {
            return Poll::Ready(Err(e.into()));
        }
        self.poll_event(cx)
    }

    /// Writes everything due: the frames for this WebSocket only, the session queue once this
    /// WebSocket is the session's transport, and the close frame when one is due. Ready when all
    /// of it is written (a batch is taken only when the previous one is); pending while the socket
    /// cannot take more. Registers for the session's wake-ups either way.
    fn poll_send<H: EngineHandler>(
        &mut self,
        conn: &Conn<H>,
        ctl: &WsCtl,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ctl.waker.register(cx.waker());
        loop {
            ready!(self.poll_write_buf(cx))?;
            if self.close_sent || !self.take_due(conn, ctl) {
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// Encodes what is due into the write buffer; false if nothing was.
    fn take_due<H: EngineHandler>(&mut self, conn: &Conn<H>, ctl: &WsCtl) -> bool {
        let (direct, attached, mut close) = {
            let mut st = ctl.state.lock();
            (std::mem::take(&mut st.direct), st.attached, st.close.take())
        };
        let mut frames = direct;
        if attached {
            let queued = conn.take_queue();
            match conn.close_reason() {
                // A slow client gets nothing more than the close frame.
                Some(DisconnectReason::SlowClient) => {}
                _ => frames.extend(queued),
            }
            if let Some(reason) = conn.close_reason() {
                close.get_or_insert(Some(close_frame(reason)));
            }
        }
        let any = !frames.is_empty() || close.is_some();
        for frame in frames {
            let msg = match frame {
                Frame::Text(t) => Message::Text(t),
                Frame::Binary(b) => Message::Binary(b),
                Frame::Pong(b) => Message::Pong(b),
            };
            // Encoding a data frame cannot fail (the server codec does not mask).
            let _ = self.codec.encode(msg, &mut self.wbuf);
        }
        if let Some(reason) = close {
            let _ = self.codec.encode(Message::Close(reason), &mut self.wbuf);
            self.close_sent = true;
        }
        any
    }

    /// Writes the write buffer out; releases it once empty.
    fn poll_write_buf(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wbuf.is_empty() {
            let n = ready!(Pin::new(&mut *self.io).poll_write(cx, &self.wbuf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wbuf.advance(n);
            if self.wbuf.is_empty() {
                self.wbuf = BytesMut::new();
                ready!(Pin::new(&mut *self.io).poll_flush(cx))?;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// The next event from the client.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Result<Event, WsError>> {
        loop {
            if let Some(event) = self.decode()? {
                return Poll::Ready(Ok(event));
            }
            if self.eof {
                return Poll::Ready(Ok(Event::End));
            }
            // The chunk lives on the stack for this call only, never in the task's state.
            let mut chunk = [0u8; READ_CHUNK];
            let mut buf = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut *self.io).poll_read(cx, &mut buf))?;
            if buf.filled().is_empty() {
                self.eof = true;
            } else {
                self.rbuf.extend_from_slice(buf.filled());
            }
        }
    }

    /// Decodes the next event from the bytes received, if they hold one.
    fn decode(&mut self) -> Result<Option<Event>, WsError> {
        loop {
            let frame = self.codec.decode(&mut self.rbuf);
            if self.rbuf.is_empty() {
                // Releases the buffer (decoded payloads hold their own reference to it).
                self.rbuf = BytesMut::new();
            }
            let Some(frame) = frame? else {
                return Ok(None);
            };
            let event = match frame {
                WsFrame::Text(b) => text(b)?,
                WsFrame::Binary(b) => Event::Binary(b),
                WsFrame::Ping(b) => Event::Ping(b),
                WsFrame::Pong(_) => Event::Pong,
                WsFrame::Close(_) => {
                    self.peer_closed = true;
                    Event::Close
                }
                WsFrame::Continuation(item) => {
                    let (first, data, last) = match item {
                        Item::FirstText(b) => (Some(true), b, false),
                        Item::FirstBinary(b) => (Some(false), b, false),
                        Item::Continue(b) => (None, b, false),
                        Item::Last(b) => (None, b, true),
                    };
                    if let Some(text) = first {
                        self.partial = Some(Partial {
                            text,
                            data: BytesMut::new(),
                        });
                    }
                    // The codec rejects a continuation without a first fragment.
                    let Some(partial) = self.partial.as_mut() else {
                        return Err(actix_http::ws::ProtocolError::ContinuationNotStarted.into());
                    };
                    if partial.data.len() + data.len() > self.max {
                        self.partial = None;
                        return Err(WsError::TooLarge(self.max));
                    }
                    partial.data.extend_from_slice(&data);
                    if !last {
                        continue;
                    }
                    let Some(Partial {
                        text: is_text,
                        data,
                    }) = self.partial.take()
                    else {
                        continue;
                    };
                    if is_text {
                        text(data.freeze())?
                    } else {
                        Event::Binary(data.freeze())
                    }
                }
            };
            return Ok(Some(event));
        }
    }
}

fn text(bytes: Bytes) -> Result<Event, WsError> {
    ByteString::try_from(bytes)
        .map(Event::Text)
        .map_err(|_| WsError::NotUtf8)
}
