//! The seed's realtime protocol on duet-socketio, the same logic as the Node baseline peer
//! (`../shared/peers/node-socketio/server.js`), so that both can be measured under the same load
//! (`tests/bench/idle-connections.mjs`):
//! `join_session {session_code, name}` → room + `sync_code`, `user_joined` to the others;
//! `code_change {code}` → `code_updated {code, user_id}` to the room except the sender;
//! disconnect → `user_left`.
//!
//! Run: `cargo run --release -p duet-socketio --example seed_peer -- --port 3200 --workers 1`.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::App;
use duet_socketio::{Payload, SioConfig, SocketIo};
use parking_lot::Mutex;
use serde_json::{json, Value};

#[derive(Default)]
struct Session {
    code: String,
    language: String,
    users: i64,
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(default)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let io = SocketIo::builder().config(SioConfig::default()).build();
    let sessions: Arc<Mutex<HashMap<String, Session>>> = Arc::default();
    io.ns("/", move |socket| {
        let sessions = sessions.clone();
        let room: Arc<Mutex<Option<String>>> = Arc::default();
        async move {
            let (s1, r1) = (sessions.clone(), room.clone());
            socket.on("join_session", move |socket, data: Payload, _| {
                let (sessions, room) = (s1.clone(), r1.clone());
                async move {
                    let msg: Value = data.first().unwrap_or_default();
                    let code = msg["session_code"].as_str().unwrap_or_default().to_owned();
                    let (text, language, users) = {
                        let mut all = sessions.lock();
                        let s = all.entry(code.clone()).or_insert_with(|| Session {
                            language: "javascript".into(),
                            ..Session::default()
                        });
                        s.users += 1;
                        (s.code.clone(), s.language.clone(), s.users)
                    };
                    *room.lock() = Some(code.clone());
                    socket.join(code.clone());
                    let _ = socket.emit("sync_code", json!({"code": text, "language": language}));
                    socket.to(code).emit(
                        "user_joined",
                        json!({"user_id": socket.id(), "count": users}),
                    );
                }
            });
            let (s2, r2) = (sessions.clone(), room.clone());
            socket.on("code_change", move |socket, data: Payload, _| {
                let (sessions, room) = (s2.clone(), r2.clone());
                async move {
                    let Some(code) = room.lock().clone() else {
                        return;
                    };
                    let msg: Value = data.first().unwrap_or_default();
                    let text = msg["code"].as_str().unwrap_or_default().to_owned();
                    if let Some(s) = sessions.lock().get_mut(&code) {
                        s.code.clone_from(&text);
                    }
                    socket.to(code).emit(
                        "code_updated",
                        json!({"code": text, "user_id": socket.id()}),
                    );
                }
            });
            socket.on_disconnect(move |socket, _| {
                let (sessions, room) = (sessions.clone(), room.clone());
                async move {
                    let Some(code) = room.lock().take() else {
                        return;
                    };
                    let users = sessions.lock().get_mut(&code).map_or(0, |s| {
                        s.users -= 1;
                        s.users
                    });
                    socket
                        .to(code)
                        .emit("user_left", json!({"user_id": socket.id(), "count": users}));
                }
            });
        }
    });
    let port = arg("--port", 3200) as u16;
    let workers = arg("--workers", 1);
    let app = move || {
        let io = io.clone();
        App::new().configure(move |cfg| io.configure(cfg))
    };
    // WebSockets leave actix-http's dispatcher after the handshake (duet_socketio::takeover).
    let server = actix_server::Server::build()
        .workers(workers)
        .backlog(4096)
        .max_concurrent_connections(100_000)
        .bind("seed_peer", ("127.0.0.1", port), move || {
            duet_socketio::takeover::tcp(app.clone())
        })?;
    println!("listening on {port}");
    server.run().await
}
