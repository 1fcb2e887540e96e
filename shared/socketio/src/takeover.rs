//! Taking a WebSocket's connection out of actix-http's HTTP/1 dispatcher once the handshake is
//! answered.
//!
//! actix-http's dispatcher allocates a read and a write buffer (8 KiB each, constants in
//! actix-http) when a connection is accepted and keeps them for the connection's life, also while
//! it only carries a WebSocket: that was two thirds of an idle participant's memory
//! (docs/BENCHMARKS.md, "Resident memory per idle WebSocket connection"). actix-http's supported
//! way out is its upgrade service (`HttpService::build().upgrade(..)`): a request with
//! `Upgrade: websocket` is handed to it with the connection itself, and the dispatcher ends.
//!
//! [`Upgrades`] is that upgrade service. It runs the app on the request as the dispatcher would (so
//! routing, middleware, the Engine.IO checks and every error answer stay the app's), then:
//!
//! - if the app answered `101 Switching Protocols` with a hand-over attached (duet-socketio's
//!   WebSocket transport attaches one when it sees this service's mark on the request), it writes
//!   the 101 itself and gives the socket, with any bytes the client sent after its request, to the
//!   WebSocket task. The dispatcher, its buffers and its codec are dropped;
//! - otherwise it writes the app's answer and closes the connection.
//!
//! actix-web's `HttpServer` does not expose the upgrade service; behind it (or any server without
//! [`Upgrades`]) the WebSocket transport still works, through the dispatcher, as before.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use actix_codec::Framed;
use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::h1::{self, Message};
use actix_http::{ConnectionType, HttpMessage as _, Request, Response, StatusCode};
use actix_service::boxed::BoxServiceFactory;
use actix_service::{Service, ServiceFactory, ServiceFactoryExt as _};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

/// A connection's byte stream, as the WebSocket task owns it after the hand-over.
pub trait RawIo: AsyncRead + AsyncWrite + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + 'static> RawIo for T {}

/// Request extension: the request came through [`Upgrades`], which hands the connection to whoever
/// attaches a [`Handover`] to a 101 response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CanTakeOver;

/// Response extension: who takes the connection once the 101 is written.
pub(crate) struct HandoverExt(pub(crate) Box<dyn Handover>);

/// Takes a connection after its 101 response. Dropped without [`Handover::start`] (the response
/// never reached the client), it must undo what the handshake set up.
pub(crate) trait Handover {
    /// `read`: bytes the client sent after its request head (usually none).
    fn start(self: Box<Self>, io: Box<dyn RawIo>, read: BytesMut);
}

/// How long writing an answer that is not a hand-over may take (a client that does not read).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// actix-http's upgrade service for requests with `Upgrade: websocket`: see the module docs.
/// `app` is the same app factory the HTTP service serves (`map_config(App::new()…, |_|
/// AppConfig::default())`); each worker makes one more instance of it for upgrades.
pub struct Upgrades<F, B> {
    app: F,
    _body: PhantomData<fn() -> B>,
}

impl<F, B> Upgrades<F, B> {
    pub fn new(app: F) -> Self {
        Self {
            app,
            _body: PhantomData,
        }
    }
}

type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

impl<T, F, B> ServiceFactory<(Request, Framed<T, h1::Codec>)> for Upgrades<F, B>
where
    T: RawIo,
    F: ServiceFactory<Request, Config = ()>,
    F::Future: 'static,
    F::Service: 'static,
    F::Error: Into<Response<BoxBody>>,
    F::Response: Into<Response<B>>,
    B: MessageBody + 'static,
{
    type Response = ();
    type Error = actix_http::Error;
    type Config = ();
    type Service = UpgradeService<F::Service, B>;
    type InitError = F::InitError;
    type Future = LocalBoxFuture<Result<Self::Service, Self::InitError>>;

    fn new_service(&self, (): ()) -> Self::Future {
        let app = self.app.new_service(());
        Box::pin(async move {
            Ok(UpgradeService {
                app: Rc::new(app.await?),
                _body: PhantomData,
            })
        })
    }
}

/// The service of [`Upgrades`].
pub struct UpgradeService<S, B> {
    app: Rc<S>,
    _body: PhantomData<fn() -> B>,
}

impl<T, S, B> Service<(Request, Framed<T, h1::Codec>)> for UpgradeService<S, B>
where
    T: RawIo,
    S: Service<Request> + 'static,
    S::Error: Into<Response<BoxBody>>,
    S::Response: Into<Response<B>>,
    B: MessageBody + 'static,
{
    type Response = ();
    type Error = actix_http::Error;
    type Future = LocalBoxFuture<Result<(), actix_http::Error>>;

    actix_service::always_ready!();

    fn call(&self, (req, mut framed): (Request, Framed<T, h1::Codec>)) -> Self::Future {
        let app = self.app.clone();
        Box::pin(async move {
            req.extensions_mut().insert(CanTakeOver);
            let res: Response<BoxBody> = match app.call(req).await {
                Ok(res) => res.into().map_into_boxed_body(),
                Err(e) => e.into(),
            };
            let (mut head, body) = res.into_parts();
            let handover = head.extensions_mut().remove::<HandoverExt>();
            match handover {
                Some(handover) if head.status() == StatusCode::SWITCHING_PROTOCOLS => {
                    if send(&mut framed, Message::Item((head, BodySize::None)))
                        .await
                        .is_err()
                    {
                        // The hand-over is dropped, which undoes the handshake.
                        return Ok(());
                    }
                    let parts = framed.into_parts();
                    // Usually empty; copied so the dispatcher's 8 KiB buffer is freed with it.
                    let read = BytesMut::from(&parts.read_buf[..]);
                    handover.0.start(Box::new(parts.io), read);
                }
                _ => {
                    let answer = async {
                        let body = actix_http::body::to_bytes(body).await.unwrap_or_default();
                        head.head_mut().set_connection_type(ConnectionType::Close);
                        let size = BodySize::Sized(body.len() as u64);
                        send(&mut framed, Message::Item((head, size))).await?;
                        if !body.is_empty() {
                            send(&mut framed, Message::Chunk(Some(body))).await?;
                        }
                        send(&mut framed, Message::Chunk(None)).await?;
                        std::future::poll_fn(|cx| Pin::new(&mut framed).close::<Msg>(cx)).await
                    };
                    let _ = tokio::time::timeout(ANSWER_TIMEOUT, answer).await;
                }
            }
            Ok(())
        })
    }
}

type Msg = Message<(Response<()>, BodySize)>;

async fn send<T: RawIo>(framed: &mut Framed<T, h1::Codec>, msg: Msg) -> std::io::Result<()> {
    Pin::new(&mut *framed).write(msg)?;
    std::future::poll_fn(|cx| Pin::new(&mut *framed).flush::<Msg>(cx)).await
}

/// [`Upgrades`] for an actix-web app (what `App::new()…` or a function making one returns), boxed:
/// the upgrade service of an `HttpService` on connections of type `T`.
pub fn upgrades<T, I, S, B>(
    app: I,
) -> BoxServiceFactory<(), (Request, Framed<T, h1::Codec>), (), actix_http::Error, ()>
where
    T: RawIo,
    I: actix_service::IntoServiceFactory<S, Request> + 'static,
    S: ServiceFactory<Request, Config = actix_web::dev::AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    actix_service::boxed::factory(Upgrades::new(app_factory(app)).map_init_err(|e| {
        tracing::error!(error = ?e, "the app for WebSocket upgrades did not start");
    }))
}

/// An actix-web app as actix-http serves it (what `HttpServer` does with it).
fn app_factory<I, S, B>(
    app: I,
) -> impl ServiceFactory<
    Request,
    Config = (),
    Response = S::Response,
    Error = actix_web::HttpResponse,
    InitError = S::InitError,
    Service = impl Service<Request, Response = S::Response, Error = actix_web::HttpResponse> + 'static,
    Future = impl Future + 'static,
>
where
    I: actix_service::IntoServiceFactory<S, Request> + 'static,
    S: ServiceFactory<Request, Config = actix_web::dev::AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
{
    actix_service::map_config(
        app.into_factory().map_err(|e| e.into().error_response()),
        |()| actix_web::dev::AppConfig::default(),
    )
}

/// The HTTP/1 service of one worker for an actix-web app, WebSockets taken over by [`Upgrades`]: for
/// `actix_server::Server::build().bind(name, addr, move || takeover::tcp(make_app))` in examples
/// and tests. Services build their own (with connection limits and timeouts).
pub fn tcp<I, S, B>(
    app: impl Fn() -> I,
) -> impl ServiceFactory<
    tokio::net::TcpStream,
    Config = (),
    Response = (),
    Error = actix_http::error::DispatchError,
    InitError = (),
>
where
    I: actix_service::IntoServiceFactory<S, Request> + 'static,
    S: ServiceFactory<Request, Config = actix_web::dev::AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    actix_http::HttpService::build()
        .tcp_nodelay(true)
        .upgrade(upgrades(app()))
        .finish(app_factory(app()))
        .tcp()
}
