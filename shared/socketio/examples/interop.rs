//! The server behind the interoperability tests with the real `socket.io-client`
//! (`tests/js/socketio-interop.test.js`). Port from `--port n` (default 3001); prints
//! `listening on <port>` once ready.
//!
//! Namespace `/` (and `/admin`, which only greets):
//! * on connect: `welcome` with `{id, auth}`;
//! * `echo` → `echo` with the same arguments (JSON and binary);
//! * `echo-ack` → ack with the same arguments;
//! * `ask` → emits `question` to the client with an ack, and acks `ask` with the client's answer
//!   (or `{"error": ...}`);
//! * `join` (room) → joins, acks the room's size; `leave` likewise;
//! * `to-room` (room, msg) → `room-message` (msg) to the room except the sender, acks the count;
//! * `disconnect-me` → the server disconnects the socket.

use std::time::Duration;

use actix_web::App;
use duet_socketio::{Payload, SioConfig, SocketIo};
use serde_json::json;

fn port() -> u16 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--port")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(3001)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let config = SioConfig {
        ping_interval: Duration::from_millis(1000),
        ping_timeout: Duration::from_millis(1000),
        ..SioConfig::default()
    };
    let io = SocketIo::builder().config(config).build();
    let io2 = io.clone();
    io.ns("/", move |socket| {
        let io = io2.clone();
        async move {
            let auth = socket.handshake().auth.clone();
            let _ = socket.emit("welcome", json!({"id": socket.id(), "auth": auth}));
            socket.on("echo", |socket, data: Payload, _| async move {
                let _ = socket.emit("echo", data);
            });
            socket.on("echo-ack", |_, data: Payload, ack| async move {
                if let Some(ack) = ack {
                    let _ = ack.send(data);
                }
            });
            socket.on("ask", |socket, data: Payload, ack| async move {
                let answer = socket
                    .emit_with_ack("question", data, Duration::from_secs(2))
                    .await;
                if let Some(ack) = ack {
                    let _ = ack.send(match answer {
                        Ok(p) => p,
                        Err(e) => Payload::json(json!({"error": e.to_string()})),
                    });
                }
            });
            let io_join = io.clone();
            socket.on("join", move |socket, data: Payload, ack| {
                let io = io_join.clone();
                async move {
                    let room: String = data.first().unwrap_or_default();
                    socket.join(room.clone());
                    if let Some(ack) = ack {
                        let _ = ack.send(Payload::json(io.sockets_in(&room)));
                    }
                }
            });
            let io_leave = io.clone();
            socket.on("leave", move |socket, data: Payload, ack| {
                let io = io_leave.clone();
                async move {
                    let room: String = data.first().unwrap_or_default();
                    socket.leave(&room);
                    if let Some(ack) = ack {
                        let _ = ack.send(Payload::json(io.sockets_in(&room)));
                    }
                }
            });
            socket.on("to-room", |socket, data: Payload, ack| async move {
                let room: String = data.first().unwrap_or_default();
                let msg = Payload::new(data.args[1..].to_vec(), data.binaries.clone());
                let n = socket.to(room).emit("room-message", msg);
                if let Some(ack) = ack {
                    let _ = ack.send(Payload::json(n));
                }
            });
            socket.on("disconnect-me", |socket, _, _| async move {
                socket.disconnect();
            });
        }
    });
    io.ns("/admin", |socket| async move {
        let _ = socket.emit("welcome", json!({"id": socket.id(), "ns": "/admin"}));
    });

    let port = port();
    let app = move || {
        let io = io.clone();
        App::new().configure(move |cfg| io.configure(cfg))
    };
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    let port = listener.local_addr()?.port();
    // WebSockets leave actix-http's dispatcher after the handshake, as in the services.
    let server =
        actix_server::Server::build()
            .workers(2)
            .listen("interop", listener, move || {
                duet_socketio::takeover::tcp(app.clone())
            })?;
    println!("listening on {port}");
    server.run().await
}
