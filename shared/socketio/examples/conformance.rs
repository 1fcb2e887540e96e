//! The server the protocol documents' test suites expect (engine.io-protocol and
//! socket.io-protocol, section "Test suite"):
//!
//! * Socket.IO at `/socket.io/`: namespaces `/` and `/custom` emit `auth` with the handshake's
//!   auth on connect; on `/`, `message` is echoed as `message-back` and `message-with-ack` is
//!   acknowledged with the same arguments.
//! * A raw Engine.IO echo at `/engine.io/`.
//! * pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1,000,000, connectTimeout 1,000 ms.
//!
//! Run: `cargo run -p duet-socketio --example conformance` (port 3000; `PORT=n` or `--port n`
//! to change it). Prints `listening on <port>` once ready.

use std::sync::Arc;

use actix_web::App;
use bytes::Bytes;
use duet_socketio::engine::{Conn, EngineHandler, EngineIo, ProtocolViolation};
use duet_socketio::{DisconnectReason, Payload, SioConfig, SocketIo};

/// Raw Engine.IO echo: every message goes back as it came.
struct Echo;

impl EngineHandler for Echo {
    type ConnData = ();
    fn new_conn_data(&self) {}
    fn on_open(&self, _conn: &Arc<Conn<Self>>) {}
    fn on_message(&self, conn: &Arc<Conn<Self>>, text: &str) -> Result<(), ProtocolViolation> {
        let _ = conn.send_text(format!("4{text}"));
        Ok(())
    }
    fn on_binary(&self, conn: &Arc<Conn<Self>>, data: Bytes) -> Result<(), ProtocolViolation> {
        let _ = conn.send_binary(data);
        Ok(())
    }
    fn on_close(&self, _conn: &Arc<Conn<Self>>, _reason: DisconnectReason) {}
}

fn port() -> u16 {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--port" {
            if let Some(p) = args.next().and_then(|p| p.parse().ok()) {
                return p;
            }
        }
    }
    std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let config = SioConfig::conformance();
    let io = SocketIo::builder().config(config.clone()).build();
    io.ns("/", |socket| async move {
        let _ = socket.emit("auth", socket.handshake().auth.clone());
        socket.on("message", |socket, data: Payload, _| async move {
            let _ = socket.emit("message-back", data);
        });
        socket.on("message-with-ack", |_, data: Payload, ack| async move {
            if let Some(ack) = ack {
                let _ = ack.send(data);
            }
        });
    });
    io.ns("/custom", |socket| async move {
        let _ = socket.emit("auth", socket.handshake().auth.clone());
    });
    let echo = EngineIo::new(config, Echo);

    let port = port();
    let app = move || {
        let io = io.clone();
        let echo = echo.clone();
        App::new().configure(move |cfg| {
            io.configure(cfg);
            echo.configure_at(cfg, "/engine.io");
        })
    };
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    let port = listener.local_addr()?.port();
    // WebSockets leave actix-http's dispatcher after the handshake, as in the services.
    let server = actix_server::Server::build().listen("conformance", listener, move || {
        duet_socketio::takeover::tcp(app.clone())
    })?;
    println!("listening on {port}");
    server.run().await
}
