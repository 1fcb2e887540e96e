//! Boxed user callbacks, and how they are run.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};

use duet_sio_codec::Payload;

use crate::{AckSender, DisconnectReason, Socket};

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
pub(crate) type ConnectHandler = Arc<dyn Fn(Socket) -> BoxFuture + Send + Sync>;
pub(crate) type EventHandler =
    Arc<dyn Fn(Socket, Payload, Option<AckSender>) -> BoxFuture + Send + Sync>;
pub(crate) type FallbackHandler =
    Arc<dyn Fn(Socket, &str, Payload, Option<AckSender>) -> BoxFuture + Send + Sync>;
pub(crate) type DisconnectHandler =
    Arc<dyn Fn(Socket, DisconnectReason) -> BoxFuture + Send + Sync>;

/// Runs a handler: its synchronous part (up to its first pending `.await`) runs right here, in
/// the order packets arrived, then the rest continues as its own task.
///
/// This is what lets a connect handler register `socket.on(...)` before the next packet of
/// that client is read, and keeps a client's events starting in the order they were sent (as
/// the reference server, where handlers are called synchronously).
pub(crate) fn run(mut fut: BoxFuture) {
    let mut cx = Context::from_waker(Waker::noop());
    if fut.as_mut().poll(&mut cx).is_pending() {
        // The task polls the future again at once with a real waker, which every future
        // re-registers on each poll.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(fut);
            }
            Err(_) => tracing::error!("socket.io handler awaited outside a tokio runtime; dropped"),
        }
    }
}
