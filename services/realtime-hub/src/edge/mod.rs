//! The edge: Socket.IO events in, commands for the interview core out.
//!
//! [`mount`] wires each event of the main namespace to the connection's handler; each client event
//! has a file that validates its payload and turns it into a [`Command`](crate::interview::Command)
//! (or a join): `join.rs`, `yjs.rs`, `code_change.rs`, `language.rs`, `run.rs`, `activity.rs`. [`Connection`] holds what
//! one connection needs across events (the joined interview, rate limits).

mod activity;
mod code_change;
pub mod connection;
mod control;
mod join;
mod language;
mod rate;
mod run;
mod yjs;

use std::sync::Arc;

use duet_socketio::{AckSender, Payload, Socket, SocketIo};
use futures_util::future::BoxFuture;
use serde_json::Value;

pub use connection::Connection;

use crate::error::HubError;
use crate::interview::DocName;
use crate::runtime::Runtime;
use crate::transport::{AckFn, ConnId, ConnSink, Outbound, Outgoing};

fn payload(out: Outgoing) -> Payload {
    match out {
        Outgoing::Json(v) => Payload::json(v),
        Outgoing::Binary(b) => Payload::empty().with_binary(b),
    }
}

/// Room broadcasts through the Socket.IO server (each packet encoded once for all recipients).
pub struct SioOut(pub SocketIo);

impl Outbound for SioOut {
    fn broadcast(&self, room: &str, except: Option<&ConnId>, event: &'static str, out: Outgoing) {
        let mut op = self.0.to(room);
        if let Some(id) = except {
            op = op.except(id.as_ref());
        }
        op.emit(event, payload(out));
    }
}

/// One Socket.IO socket as the core sees it.
struct SocketSink {
    id: ConnId,
    socket: Socket,
}

impl ConnSink for SocketSink {
    fn id(&self) -> &ConnId {
        &self.id
    }
    fn emit(&self, event: &'static str, out: Outgoing) {
        // A full queue disconnects the client (it resyncs on reconnect); nothing else to do here.
        let _ = self.socket.emit(event, payload(out));
    }
    fn join(&self, room: &str) {
        self.socket.join(room);
    }
    fn leave(&self, room: &str) {
        self.socket.leave(room);
    }
    fn disconnect(&self) {
        self.socket.disconnect();
    }
}

fn ack_fn(ack: Option<AckSender>) -> Option<AckFn> {
    ack.map(|a| {
        Box::new(move |r: Result<Value, HubError>| {
            let body = match r {
                Ok(v) => v,
                Err(e) => e.to_ack(),
            };
            let _ = a.send(Payload::json(body));
        }) as AckFn
    })
}

fn first_json(data: &Payload) -> Value {
    data.args.first().cloned().unwrap_or(Value::Null)
}

/// A client event: validated and handed to the connection's handler of it. Events that are not
/// Duet's are ignored (no ack), as Socket.IO servers do.
fn on_event(
    c: &Arc<Connection>,
    event: &str,
    data: Payload,
    ack: Option<AckFn>,
) -> BoxFuture<'static, ()> {
    let done = || -> BoxFuture<'static, ()> { Box::pin(std::future::ready(())) };
    if let Some(doc) = [DocName::Code, DocName::Notes]
        .into_iter()
        .find(|d| d.event() == event)
    {
        match data.binaries.first() {
            Some(bytes) => c.yjs_doc(doc, bytes, ack),
            None => c.refuse(
                HubError::invalid(format!("{event} needs one binary attachment")),
                ack,
            ),
        }
        return done();
    }
    match event {
        "join_session" => {
            let c = c.clone();
            Box::pin(async move { c.join(first_json(&data), ack).await })
        }
        "code_change" => {
            c.code_change(first_json(&data), ack);
            done()
        }
        "language_change" => {
            let c = c.clone();
            Box::pin(async move { c.language_change(first_json(&data), ack).await })
        }
        "execute_code" => {
            let c = c.clone();
            Box::pin(async move { c.execute_code(first_json(&data), ack).await })
        }
        "activity" => {
            c.activity(first_json(&data), ack);
            done()
        }
        _ => match control::EVENTS.iter().find(|e| **e == event) {
            Some(&event) => {
                let c = c.clone();
                Box::pin(async move { c.control_event(event, first_json(&data), ack).await })
            }
            None => done(),
        },
    }
}

/// Registers the main namespace's handlers.
pub fn mount(io: &SocketIo, rt: Arc<Runtime>) {
    io.ns("/", move |socket: Socket| {
        let rt = rt.clone();
        async move {
            let sink = Arc::new(SocketSink {
                id: socket.id().into(),
                socket: socket.clone(),
            });
            let conn = Arc::new(Connection::new(rt, sink));

            // One handler for every event (a map of a dozen would cost each socket about 1 KB).
            let c = conn.clone();
            socket.on_fallback(move |_s, event, data: Payload, ack| {
                on_event(&c, event, data, ack_fn(ack))
            });
            let c = conn;
            socket.on_disconnect(move |_s, _reason| {
                let c = c.clone();
                async move { c.disconnected().await }
            });
        }
    });
}
