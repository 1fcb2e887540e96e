//! The `realtime-hub` binary's HTTP serving (`startup::serve_local`), as a process: hostile
//! connections and HTTP methods on its own routes. SQLite and the in-process bus, so nothing else
//! needs to run.

const HUB: &str = env!("CARGO_BIN_EXE_duet-realtime-hub");

#[tokio::test]
async fn silent_connections_are_closed_after_the_handshake_timeout() {
    duet_testkit::service::silent_connections_are_closed_after_the_handshake_timeout(HUB, &[])
        .await;
}

#[tokio::test]
async fn a_silent_flood_never_starves_healthz_under_a_low_open_files_limit() {
    duet_testkit::service::a_silent_flood_never_starves_healthz(HUB, &[]).await;
}

/// `/healthz`, `/readyz` and `/metrics`: `HEAD` like `GET`, 405 with `Allow` for other methods.
#[tokio::test]
async fn head_works_wherever_get_does_and_wrong_methods_get_405() {
    let hub = duet_testkit::service::Service::start(HUB, &[], None)
        .await
        .expect("started");
    for path in ["/healthz", "/readyz", "/metrics"] {
        duet_testkit::http::assert_head_like_get(&hub.base, path).await;
        for method in ["POST", "PUT", "DELETE"] {
            duet_testkit::http::assert_method_not_allowed(&hub.base, method, path, "GET, HEAD")
                .await;
        }
    }
    assert!(hub.stop().success());
}
