//! Connection limits for every service's HTTP server: silent connections are closed, the number
//! of open connections is capped per process, and a flood of silent connections cannot keep a
//! real request (a `/healthz` probe) waiting.
//!
//! A [`ConnectionGate`] sits between accepting a TCP connection and handing it to actix-http:
//!
//! - A new connection must send its first byte within `handshake_timeout`; until it does it costs
//!   only its socket (actix's dispatcher and its two 8 KiB buffers are made once bytes arrive).
//!   The connection then goes on as an [`Admitted`] stream, which holds its place in the count
//!   however long it lives, also after a WebSocket takes it out of actix-http's dispatcher (an
//!   upgrade service such as duet-socketio's takeover, [`serve_upgrading`]).
//!   Then actix-http's `client_request_timeout` (the same duration) bounds the request head, and
//!   `keep_alive` the idle time between requests.
//! - At most `max_connections` are open at once in the process (all workers together). When a
//!   new connection arrives at the limit, the connection that has been silent longest is closed
//!   to make room; only when every open connection has spoken is the new one refused (closed at
//!   once). Either way a warning says so, at most every [`FULL_LOG_EVERY`]. Closing the oldest
//!   silent connection rather than pausing `accept` matters: a paused listener leaves new
//!   connections in the kernel's queue behind the silent ones, so a health probe would time out
//!   until every silent connection ahead of it had timed out in turn.
//! - `max_connections` is capped below the process's open-files limit (raised to its hard limit
//!   first), keeping [`RESERVED_FILES`] for everything else, so accepting never fails with
//!   "too many open files" because of clients alone.
//!
//! [`serve`] builds the multi-worker actix server the services use ([`serve_upgrading`] with an
//! upgrade service); the realtime hub's single-threaded server wraps its connection service
//! ([`http1`]) with [`ConnectionGate::wrap`].

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::net::TcpListener;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use actix_codec::Framed;
use actix_http::body::MessageBody;
use actix_http::error::DispatchError;
use actix_http::{h1, HttpService, Protocol, Request, Response};
use actix_service::boxed::BoxServiceFactory;
use actix_service::{
    fn_service, map_config, IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt,
};
use actix_web::dev::{AppConfig, Server};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Open files kept for everything but client connections: the listener, the database (a pool of
/// PostgreSQL connections, or SQLite's database, journal and shared-memory files), Redis, static
/// files being sent, the runtime's own descriptors (epoll, eventfds, worker threads) and logs.
pub const RESERVED_FILES: u64 = 128;
/// The "connection limit reached" warning is logged at most this often (with the counts since).
pub const FULL_LOG_EVERY: Duration = Duration::from_secs(10);
/// How long a connection being closed by the server may take to shut down cleanly before it is
/// dropped (actix-http's `client_disconnect_timeout`; off by default, which lets a peer that never
/// reads hold a closing connection open).
pub const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Seconds open connections get to finish on graceful shutdown.
pub const SHUTDOWN_SECS: u64 = 10;

/// The limits of one process's HTTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once in the process.
    pub max_connections: usize,
    /// Time a new connection has to send its first byte, and then its request head.
    pub handshake_timeout: Duration,
    /// Time an idle keep-alive connection is kept between requests.
    pub keep_alive: Duration,
}

/// The defaults of the `http.*` settings (duet-config), without the open-files cap: for tests and
/// embedders that build a service without loading settings.
impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 20_000,
            handshake_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(5),
        }
    }
}

impl ConnectionLimits {
    /// Most connections accepted at once, counting those over [`Self::max_connections`] that are
    /// still being turned away (a multi-threaded server accepts on one thread and decides on
    /// others): accepting pauses there, so a burst cannot run the process out of files before
    /// the limit closes anything.
    pub fn accept_cap(&self) -> usize {
        self.max_connections
            .saturating_add((self.max_connections / 4).max(1))
    }

    /// The configured limits (`http.*`), with `max_connections` capped by the open-files limit
    /// (see [`raise_open_files_limit`]); logs what is in force.
    pub fn from_settings(http: &duet_config::HttpSettings) -> Self {
        let open_files = raise_open_files_limit();
        let max_connections = fit_open_files(http.max_connections, open_files);
        if max_connections < http.max_connections {
            tracing::warn!(
                configured = http.max_connections,
                max_connections,
                open_files,
                "http.max_connections lowered to fit the open-files limit (ulimit -n)"
            );
        }
        let limits = Self {
            max_connections,
            handshake_timeout: Duration::from_millis(http.handshake_timeout_ms),
            keep_alive: Duration::from_secs(http.keep_alive_secs),
        };
        tracing::info!(
            max_connections,
            open_files,
            handshake_timeout_ms = http.handshake_timeout_ms,
            keep_alive_secs = http.keep_alive_secs,
            "connection limits"
        );
        limits
    }
}

/// `max` capped so that connections, with the [`ConnectionLimits::accept_cap`] headroom, leave
/// [`RESERVED_FILES`] of `open_files` free (half of it when the limit is that small); at least 1.
pub fn fit_open_files(max: usize, open_files: Option<u64>) -> usize {
    let Some(files) = open_files else { return max };
    let room = if files > 2 * RESERVED_FILES {
        files - RESERVED_FILES
    } else {
        files / 2
    };
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    // max + max / 4 (the accept cap) ≤ room
    max.min(room.saturating_mul(4) / 5).max(1)
}

/// Raises the soft open-files limit to the hard one (as Go's runtime and many servers do: the soft
/// default of 1024 is a leftover of `select(2)`) and returns the soft limit now in force, or
/// `None` where there is none to read.
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let now = getrlimit(Resource::Nofile);
        if let (Some(soft), Some(hard)) = (now.current, now.maximum) {
            if soft < hard {
                let raised = Rlimit {
                    current: Some(hard),
                    maximum: Some(hard),
                };
                if let Err(e) = setrlimit(Resource::Nofile, raised) {
                    tracing::debug!(error = %e, "cannot raise the open-files limit");
                }
            }
        }
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Counts a process's connections and decides which may proceed (see the module docs). Cheap to
/// clone; clones share the count.
#[derive(Clone)]
pub struct ConnectionGate {
    inner: Arc<Gate>,
}

struct Gate {
    limits: ConnectionLimits,
    open: AtomicUsize,
    next_id: AtomicU64,
    /// Connections that have not sent a byte yet, oldest first, each with the sender whose drop
    /// closes it: the ones that make room when the limit is reached.
    silent: Mutex<VecDeque<(u64, oneshot::Sender<()>)>>,
    full: Mutex<FullLog>,
}

/// What happened at the limit since the last warning.
#[derive(Default)]
struct FullLog {
    last: Option<Instant>,
    evicted: u64,
    refused: u64,
}

enum AtLimit {
    Evicted,
    Refused,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can be left half-updated by a panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection counted by [`ConnectionGate::reserve`] that has not spoken yet.
pub struct Reservation {
    admission: Admission,
    id: u64,
    /// Resolves (with an error) when the sender is dropped: the connection was chosen to make room.
    closed: oneshot::Receiver<()>,
    deadline: tokio::time::Instant,
}

impl Reservation {
    /// Waits until `stream` sends its first byte (or closes); `None` if it stays silent until the
    /// handshake timeout (counted from [`ConnectionGate::reserve`]) or is closed to make room for
    /// a newer connection. Dropping the stream then closes it.
    pub async fn admit(self, stream: &TcpStream) -> Option<Admission> {
        let Self {
            admission,
            id,
            closed,
            deadline,
        } = self;
        // `peek` waits for a byte without taking it (`readable()` alone may wake spuriously);
        // end of stream counts as speaking too: actix then sees the close and ends at once.
        let mut first = [0u8; 1];
        let spoke = tokio::select! {
            biased;
            _ = closed => false,
            peeked = stream.peek(&mut first) => peeked.is_ok(),
            () = tokio::time::sleep_until(deadline) => false,
        };
        {
            let mut silent = lock(&admission.gate.silent);
            // Newest connections are at the back: that is where one that spoke at once is.
            if let Some(i) = silent.iter().rposition(|(other, _)| *other == id) {
                silent.remove(i);
            }
        }
        spoke.then_some(admission)
    }
}

/// Held while an admitted connection is open; dropping it frees its place.
pub struct Admission {
    gate: Arc<Gate>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.gate.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An admitted connection: the socket and its place in the count, given up when it is dropped.
/// This is the stream actix-http serves, so the place goes wherever the socket goes (to a
/// WebSocket task after an upgrade, say).
pub struct Admitted {
    stream: TcpStream,
    _admission: Admission,
}

impl Admitted {
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

impl AsyncRead for Admitted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// actix-http's HTTP/1 service on [`Admitted`] connections (what `HttpService::tcp()` is on
/// plain sockets), with `TCP_NODELAY` on.
pub fn http1<S>(
    http: S,
) -> impl ServiceFactory<Admitted, Config = (), Response = (), Error = DispatchError, InitError = ()>
where
    S: ServiceFactory<
        (Admitted, Protocol, Option<std::net::SocketAddr>),
        Config = (),
        Response = (),
        Error = DispatchError,
        InitError = (),
    >,
{
    fn_service(|io: Admitted| async move {
        // Edits and acks are small frames: without TCP_NODELAY, Nagle + delayed ACKs add up to
        // 40 ms.
        let _ = io.stream.set_nodelay(true);
        let peer_addr = io.stream.peer_addr().ok();
        Ok::<_, DispatchError>((io, Protocol::Http1, peer_addr))
    })
    .and_then(http)
}

/// An upgrade service for actix-http on [`Admitted`] connections (duet-socketio's
/// `takeover::upgrades`), boxed.
pub type UpgradeFactory =
    BoxServiceFactory<(), (Request, Framed<Admitted, h1::Codec>), (), actix_http::Error, ()>;

impl fmt::Debug for ConnectionGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionGate")
            .field("limits", &self.inner.limits)
            .field("open", &self.open())
            .finish()
    }
}

impl ConnectionGate {
    pub fn new(limits: ConnectionLimits) -> Self {
        Self {
            inner: Arc::new(Gate {
                limits,
                open: AtomicUsize::new(0),
                next_id: AtomicU64::new(0),
                silent: Mutex::new(VecDeque::new()),
                full: Mutex::new(FullLog::default()),
            }),
        }
    }

    pub fn limits(&self) -> &ConnectionLimits {
        &self.inner.limits
    }

    /// Connections open now (admitted or waiting for their first byte).
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::SeqCst)
    }

    /// Counts a connection just accepted. Over the limit, the longest-silent open connection is
    /// closed to make room (its task ends as soon as it runs), or, when every open connection
    /// has spoken, `None`: the caller drops the new connection at once. Synchronous, so the
    /// count is right even when connections are accepted in a burst before any of their tasks
    /// runs.
    pub fn reserve(&self) -> Option<Reservation> {
        let gate = &self.inner;
        gate.open.fetch_add(1, Ordering::SeqCst);
        let admission = Admission { gate: gate.clone() };
        if gate.open.load(Ordering::SeqCst) > gate.limits.max_connections {
            // Dropping the oldest silent connection's sender closes it.
            match lock(&gate.silent).pop_front() {
                Some(_oldest) => gate.at_limit(AtLimit::Evicted),
                None => {
                    gate.at_limit(AtLimit::Refused);
                    return None;
                }
            }
        }
        let id = gate.next_id.fetch_add(1, Ordering::Relaxed);
        let (close, closed) = oneshot::channel();
        lock(&gate.silent).push_back((id, close));
        Some(Reservation {
            admission,
            id,
            closed,
            deadline: tokio::time::Instant::now() + gate.limits.handshake_timeout,
        })
    }

    /// [`ConnectionGate::reserve`], then [`Reservation::admit`].
    pub async fn admit(&self, stream: &TcpStream) -> Option<Admission> {
        self.reserve()?.admit(stream).await
    }

    /// `factory` (a connection service on [`Admitted`] streams, such as [`http1`]), with every
    /// connection passing [`ConnectionGate::admit`] first.
    pub fn wrap<F>(&self, factory: F) -> Gated<F> {
        Gated {
            factory,
            gate: self.clone(),
        }
    }
}

impl Gate {
    fn at_limit(&self, what: AtLimit) {
        let mut log = lock(&self.full);
        match what {
            AtLimit::Evicted => log.evicted += 1,
            AtLimit::Refused => log.refused += 1,
        }
        let now = Instant::now();
        if log
            .last
            .is_none_or(|last| now.duration_since(last) >= FULL_LOG_EVERY)
        {
            tracing::warn!(
                max_connections = self.limits.max_connections,
                closed_silent = log.evicted,
                refused = log.refused,
                "connection limit reached: closing the longest-silent connections to make room, \
                 refusing new ones while every connection is active (raise \
                 DUET_HTTP__MAX_CONNECTIONS and the open-files limit if this is real traffic)"
            );
            *log = FullLog {
                last: Some(now),
                ..FullLog::default()
            };
        }
    }
}

/// A connection service factory behind a [`ConnectionGate`] ([`ConnectionGate::wrap`]).
pub struct Gated<F> {
    factory: F,
    gate: ConnectionGate,
}

type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

impl<F> ServiceFactory<TcpStream> for Gated<F>
where
    F: ServiceFactory<Admitted, Config = (), Response = ()>,
    F::Service: 'static,
    F::Future: 'static,
{
    type Response = ();
    type Error = F::Error;
    type Config = ();
    type Service = GatedService<F::Service>;
    type InitError = F::InitError;
    type Future = LocalBoxFuture<Result<Self::Service, Self::InitError>>;

    fn new_service(&self, (): ()) -> Self::Future {
        let service = self.factory.new_service(());
        let gate = self.gate.clone();
        Box::pin(async move {
            Ok(GatedService {
                inner: Rc::new(service.await?),
                gate,
            })
        })
    }
}

/// The service of [`Gated`].
pub struct GatedService<S> {
    inner: Rc<S>,
    gate: ConnectionGate,
}

impl<S> Service<TcpStream> for GatedService<S>
where
    S: Service<Admitted, Response = ()> + 'static,
{
    type Response = ();
    type Error = S::Error;
    type Future = LocalBoxFuture<Result<(), S::Error>>;

    actix_service::forward_ready!(inner);

    /// Counts the connection at once (see [`ConnectionGate::reserve`]); one refused is closed
    /// here, before its future is even spawned.
    fn call(&self, stream: TcpStream) -> Self::Future {
        let Some(reservation) = self.gate.reserve() else {
            drop(stream);
            return Box::pin(std::future::ready(Ok(())));
        };
        let inner = self.inner.clone();
        Box::pin(async move {
            let Some(admission) = reservation.admit(&stream).await else {
                return Ok(());
            };
            inner
                .call(Admitted {
                    stream,
                    _admission: admission,
                })
                .await
        })
    }
}

/// Serves the actix-web app `app` makes (one per worker thread, as `HttpServer::new` does) on
/// `listener` behind `gate`, with the gate's timeouts. With `signals`, SIGTERM / Ctrl-C stop it
/// gracefully (open connections get [`SHUTDOWN_SECS`]); without, the caller stops it through its
/// handle.
pub fn serve<F, I, S, B>(
    listener: TcpListener,
    gate: ConnectionGate,
    signals: bool,
    app: F,
) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    serve_with_grace(listener, gate, signals, SHUTDOWN_SECS, app)
}

/// [`serve`], giving open connections `grace_secs` to finish on shutdown.
pub fn serve_with_grace<F, I, S, B>(
    listener: TcpListener,
    gate: ConnectionGate,
    signals: bool,
    grace_secs: u64,
    app: F,
) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    serve_inner(
        listener,
        gate,
        signals,
        grace_secs,
        app,
        None::<fn() -> UpgradeFactory>,
    )
}

/// [`serve`], with `upgrades()` (one per worker) serving the requests with `Upgrade: websocket`:
/// duet-socketio's `takeover::upgrades(app())`, which takes WebSockets out of actix-http's
/// dispatcher after the handshake.
pub fn serve_upgrading<F, I, S, B, U>(
    listener: TcpListener,
    gate: ConnectionGate,
    signals: bool,
    app: F,
    upgrades: U,
) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
    U: Fn() -> UpgradeFactory + Send + Clone + 'static,
{
    serve_inner(listener, gate, signals, SHUTDOWN_SECS, app, Some(upgrades))
}

type ConnectionFactory = BoxServiceFactory<(), Admitted, (), DispatchError, ()>;

fn serve_inner<F, I, S, B, U>(
    listener: TcpListener,
    gate: ConnectionGate,
    signals: bool,
    grace_secs: u64,
    app: F,
    upgrades: Option<U>,
) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
    U: Fn() -> UpgradeFactory + Send + Clone + 'static,
{
    let addr = listener.local_addr()?;
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let mut builder = Server::build();
    let shutdown = builder.graceful_shutdown_signal();
    builder = builder
        .workers(workers)
        .shutdown_timeout(grace_secs)
        // actix counts per worker, from accept until the connection ends (or leaves actix-http
        // for a WebSocket task), and pauses accepting when every worker is full: that bounds the
        // files a burst can take (the accept cap), while the gate, which counts for the whole
        // process, closes or refuses connections over `max_connections` below it.
        .max_concurrent_connections(gate.limits().accept_cap().div_ceil(workers));
    if !signals {
        builder = builder.disable_signals();
    }
    let server = builder
        .listen(format!("duet-http-{addr}"), listener, move || {
            let limits = gate.limits();
            let shutdown = shutdown.clone();
            let http = HttpService::build()
                // Idle keep-alive connections close as soon as a graceful shutdown starts.
                .graceful_shutdown_signal(move || {
                    let shutdown = shutdown.clone();
                    async move { shutdown.notified().await }
                })
                .keep_alive(limits.keep_alive)
                .client_request_timeout(limits.handshake_timeout)
                .client_disconnect_timeout(DISCONNECT_TIMEOUT)
                .local_addr(addr);
            // The host in `AppConfig` is only a fallback for requests without a `Host` header.
            let app = map_config(
                app().into_factory().map_err(|e| e.into().error_response()),
                |_| AppConfig::default(),
            );
            let http: ConnectionFactory = match &upgrades {
                Some(upgrades) => {
                    actix_service::boxed::factory(http1(http.upgrade(upgrades()).finish(app)))
                }
                None => actix_service::boxed::factory(http1(http.finish(app))),
            };
            gate.wrap(http)
        })?
        .run();
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn limits(max: usize, handshake_ms: u64) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: max,
            handshake_timeout: Duration::from_millis(handshake_ms),
            keep_alive: Duration::from_secs(5),
        }
    }

    /// A server that admits through `gate` and answers each admitted connection's first read
    /// with "ok" (held open until the client closes).
    async fn server(gate: ConnectionGate) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let gate = gate.clone();
                tokio::spawn(async move {
                    let Some(_admission) = gate.admit(&stream).await else {
                        return;
                    };
                    let mut buf = [0u8; 16];
                    while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {
                        let _ = stream.write_all(b"ok").await;
                    }
                });
            }
        });
        addr
    }

    /// Reads until the server closes the connection (`true`) or `within` passes (`false`).
    async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 16];
        let read = async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(within, read).await.is_ok()
    }

    async fn talk(stream: &mut tokio::net::TcpStream) -> bool {
        let mut buf = [0u8; 2];
        stream.write_all(b"x").await.is_ok()
            && tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut buf))
                .await
                .is_ok_and(|r| r.is_ok())
    }

    #[test]
    fn the_defaults_are_the_settings_defaults() {
        let settings = duet_config::Settings::load_from(Vec::new()).unwrap();
        let from = ConnectionLimits::from_settings(&settings.http);
        let default = ConnectionLimits::default();
        assert_eq!(from.handshake_timeout, default.handshake_timeout);
        assert_eq!(from.keep_alive, default.keep_alive);
        assert_eq!(settings.http.max_connections, default.max_connections);
    }

    #[test]
    fn the_limit_leaves_files_for_everything_else() {
        assert_eq!(fit_open_files(20_000, None), 20_000);
        assert_eq!(fit_open_files(20_000, Some(1_048_576)), 20_000);
        assert_eq!(fit_open_files(20_000, Some(1024)), (1024 - 128) * 4 / 5);
        assert_eq!(fit_open_files(20_000, Some(64)), 25);
        assert_eq!(fit_open_files(20_000, Some(1)), 1);
        for files in [1, 10, 64, 300, 1024, 65_536] {
            let max = fit_open_files(usize::MAX / 2, Some(files));
            let limits = ConnectionLimits {
                max_connections: max,
                ..ConnectionLimits::default()
            };
            let room = if files > 2 * RESERVED_FILES {
                files - RESERVED_FILES
            } else {
                files / 2
            };
            assert!(limits.accept_cap() as u64 <= room.max(2), "{files}");
        }
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_the_handshake_timeout() {
        let gate = ConnectionGate::new(limits(100, 300));
        let addr = server(gate.clone()).await;
        let t0 = Instant::now();
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut silent, Duration::from_secs(2)).await);
        assert!(
            t0.elapsed() >= Duration::from_millis(250),
            "{:?}",
            t0.elapsed()
        );
        let mut speaking = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            talk(&mut speaking).await,
            "a connection that speaks in time is served"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            talk(&mut speaking).await,
            "and stays open once it has spoken"
        );
        assert_eq!(gate.open(), 1);
    }

    #[tokio::test]
    async fn at_the_limit_the_longest_silent_connection_makes_room() {
        let gate = ConnectionGate::new(limits(3, 60_000));
        let addr = server(gate.clone()).await;
        let mut active = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(talk(&mut active).await);
        let mut oldest = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut newer = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(gate.open(), 3);

        // A fourth: the oldest silent one is closed, the newcomer is served.
        let mut fourth = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(talk(&mut fourth).await, "the newcomer is served");
        assert!(closed_within(&mut oldest, Duration::from_secs(2)).await);
        assert!(!closed_within(&mut newer, Duration::from_millis(200)).await);
        assert!(
            talk(&mut active).await,
            "an active connection is never the one closed"
        );
        assert!(
            talk(&mut newer).await,
            "the newer silent one may still speak"
        );

        // Now every open connection is active: a fifth is refused, nobody else is touched.
        let mut fifth = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut fifth, Duration::from_secs(2)).await);
        for s in [&mut active, &mut newer, &mut fourth] {
            assert!(talk(s).await);
        }
        assert_eq!(gate.open(), 3);

        drop(active);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(gate.open(), 2, "a closed connection frees its place");
        let mut sixth = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(talk(&mut sixth).await);
    }
}
