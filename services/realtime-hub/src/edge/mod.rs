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

            let c = conn.clone();
            socket.on("join_session", move |_s, data: Payload, ack| {
                let c = c.clone();
                async move { c.join(first_json(&data), ack_fn(ack)).await }
            });
            for doc in [DocName::Code, DocName::Notes] {
                let c = conn.clone();
                socket.on(doc.event(), move |_s, data: Payload, ack| {
                    match data.binaries.first() {
                        Some(bytes) => c.yjs_doc(doc, bytes, ack_fn(ack)),
                        None => c.refuse(
                            HubError::invalid(format!(
                                "{} needs one binary attachment",
                                doc.event()
                            )),
                            ack_fn(ack),
                        ),
                    }
                    std::future::ready(())
                });
            }
            let c = conn.clone();
            socket.on("code_change", move |_s, data: Payload, ack| {
                c.code_change(first_json(&data), ack_fn(ack));
                std::future::ready(())
            });
            let c = conn.clone();
            socket.on("language_change", move |_s, data: Payload, ack| {
                let c = c.clone();
                async move { c.language_change(first_json(&data), ack_fn(ack)).await }
            });
            let c = conn.clone();
            socket.on("execute_code", move |_s, data: Payload, ack| {
                let c = c.clone();
                async move { c.execute_code(first_json(&data), ack_fn(ack)).await }
            });
            let c = conn.clone();
            socket.on("activity", move |_s, data: Payload, ack| {
                c.activity(first_json(&data), ack_fn(ack));
                std::future::ready(())
            });
            for event in control::EVENTS {
                let c = conn.clone();
                socket.on(event, move |_s, data: Payload, ack| {
                    let c = c.clone();
                    async move { c.control_event(event, first_json(&data), ack_fn(ack)).await }
                });
            }
            let c = conn;
            socket.on_disconnect(move |_s, _reason| {
                let c = c.clone();
                async move { c.disconnected().await }
            });
        }
    });
}
