//! The `realtime-hub` binary's HTTP serving (`startup::serve_local`), as a process: hostile
//! connections and HTTP methods on its own routes. SQLite and the in-process bus, so nothing else
//! needs to run.

const HUB: &str = env!("CARGO_BIN_EXE_duet-realtime-hub");
/// The standalone hub refuses to start without `SECRET_KEY`.
const ENV: &[(&str, &str)] = &[("SECRET_KEY", "serving-tests-secret-0123456789")];

#[tokio::test]
async fn silent_connections_are_closed_after_the_handshake_timeout() {
    duet_testkit::service::silent_connections_are_closed_after_the_handshake_timeout(HUB, ENV)
        .await;
}

#[tokio::test]
async fn a_silent_flood_never_starves_healthz_under_a_low_open_files_limit() {
    duet_testkit::service::a_silent_flood_never_starves_healthz(HUB, ENV).await;
}

/// `/healthz`, `/readyz` and `/metrics`: `HEAD` like `GET`, 405 with `Allow` for other methods.
#[tokio::test]
async fn head_works_wherever_get_does_and_wrong_methods_get_405() {
    let hub = duet_testkit::service::Service::start(HUB, ENV, None)
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

#[tokio::test]
async fn the_standalone_hub_refuses_to_start_without_secret_key() {
    let out = std::process::Command::new(HUB)
        .env_remove("SECRET_KEY")
        .env_remove("DUET_CONFIG")
        .env("PORT", "0")
        .output()
        .expect("ran");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SECRET_KEY"), "{stderr}");
}
