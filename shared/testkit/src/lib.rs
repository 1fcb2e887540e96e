//! Test harness shared by the integration tests of every crate.
//!
//! Tests never depend on services left running by hand: unless `TEST_DATABASE_URL` / `TEST_REDIS_URL`
//! are given, the harness starts its own throw-away PostgreSQL (initdb + pg_ctl from the machine's
//! binaries, a temp dir, a free port) and redis-server (a free port), shared by the tests of one test
//! binary and removed when the process exits.

pub mod http;
pub mod otlp;
pub mod postgres;
pub mod redis;
pub mod service;

use std::net::TcpListener;

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}
