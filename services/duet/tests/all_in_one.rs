//! The `duet` binary as a user runs it: no configuration but a port and a data directory.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

struct Duet {
    child: Child,
    base: String,
}

impl Duet {
    async fn start(data_dir: &std::path::Path, extra: &[(&str, &str)]) -> Self {
        let port = duet_testkit::free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_duet"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("DUET_DATA_DIR", data_dir)
            .env("DUET_FRONTEND_DIR", data_dir.join("no-frontend"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start duet");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if reqwest::get(format!("{base}/healthz"))
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Self { child, base };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("duet did not become healthy");
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "duet did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Duet {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[tokio::test]
async fn a_session_survives_a_restart_and_shutdown_is_graceful() {
    let dir = tempfile::tempdir().unwrap();
    let duet = Duet::start(dir.path(), &[]).await;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/api/session", duet.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = created["session_code"].as_str().unwrap().to_owned();
    assert_eq!(
        created["code"], "",
        "`code` is the text, empty for a new interview"
    );
    assert_eq!(
        http.get(format!("{}/interview/{code}", duet.base))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        http.get(format!("{}/interview/ZZZZ2222", duet.base))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        http.get(format!("{}/readyz", duet.base))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let status = duet.stop();
    assert!(status.success(), "clean exit on SIGTERM, got {status}");
    assert!(
        dir.path().join("duet.sqlite3").exists(),
        "SQLite file under the data dir"
    );

    let duet = Duet::start(dir.path(), &[]).await;
    let found: Value = http
        .get(format!("{}/api/session/{code}", duet.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["session_code"], code.as_str());
    assert_eq!(found["id"], created["id"]);
    duet.stop();
}

#[test]
fn an_invalid_setting_stops_start_up_naming_the_key() {
    for (var, value, key) in [
        ("PORT", "eighty", "port"),
        ("MAX_CONTENT_LENGTH", "lots", "max_content_length"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_duet"))
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} must not start");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{var}={value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn logs_are_json_lines_when_configured() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_duet"))
        .env("PORT", "0")
        .env("DUET_DATA_DIR", dir.path())
        .env("DUET_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut serving = None;
    for line in BufReader::new(stdout).lines().take(50) {
        let line = line.unwrap();
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        if v["message"].as_str().is_some_and(|m| m.contains("serving")) {
            serving = Some(v);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(serving.is_some(), "the start-up line was logged as JSON");
}

/// Every path of the all-in-one process: `HEAD` wherever `GET`, 405 with `Allow` and the JSON error
/// for a known path asked with another method.
#[tokio::test]
async fn head_works_wherever_get_does_and_wrong_methods_get_405() {
    let dir = tempfile::tempdir().unwrap();
    let static_dir = dir.path().join("frontend/static");
    std::fs::create_dir_all(&static_dir).unwrap();
    std::fs::write(static_dir.join("app.js"), "console.log(1)").unwrap();
    std::fs::write(dir.path().join("frontend/index.html"), "<!doctype html>").unwrap();
    let frontend = dir.path().join("frontend");
    let duet = Duet::start(
        dir.path(),
        &[("DUET_FRONTEND_DIR", frontend.to_str().unwrap())],
    )
    .await;
    let created: Value = reqwest::Client::new()
        .post(format!("{}/api/session", duet.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = created["session_code"].as_str().unwrap();
    let interview = format!("/interview/{code}");
    let session = format!("/api/session/{code}");
    for path in [
        "/",
        interview.as_str(),
        "/interview/ZZZZ2222",
        "/static/app.js",
        session.as_str(),
        "/api/languages",
        "/healthz",
        "/readyz",
    ] {
        duet_testkit::http::assert_head_like_get(&duet.base, path).await;
    }
    for (method, path, allow) in [
        ("POST", "/", "GET, HEAD"),
        ("DELETE", interview.as_str(), "GET, HEAD"),
        ("PUT", "/static/app.js", "GET, HEAD"),
        ("PUT", "/api/session", "POST"),
        ("PUT", session.as_str(), "GET, HEAD, DELETE"),
        ("POST", "/healthz", "GET, HEAD"),
        ("PATCH", "/readyz", "GET, HEAD"),
    ] {
        duet_testkit::http::assert_method_not_allowed(&duet.base, method, path, allow).await;
    }
    duet.stop();
}

/// `/metrics` is not on the public port; with `DUET_METRICS_ADDR` it is served there only.
#[tokio::test]
async fn metrics_are_served_apart_from_the_public_port() {
    let dir = tempfile::tempdir().unwrap();
    let duet = Duet::start(dir.path(), &[]).await;
    let r = reqwest::get(format!("{}/metrics", duet.base))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    duet.stop();

    let port = duet_testkit::free_port();
    let addr = format!("127.0.0.1:{port}");
    let duet = Duet::start(dir.path(), &[("DUET_METRICS_ADDR", addr.as_str())]).await;
    let r = reqwest::get(format!("{}/metrics", duet.base))
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "still not on the public port"
    );
    let metrics = format!("http://{addr}/metrics");
    let r = reqwest::get(&metrics).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("duet_"), "Prometheus text");
    duet_testkit::http::assert_head_like_get(&format!("http://{addr}"), "/metrics").await;
    duet.stop();
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_handshake_timeout() {
    duet_testkit::service::silent_connections_are_closed_after_the_handshake_timeout(
        env!("CARGO_BIN_EXE_duet"),
        &[],
    )
    .await;
}

#[tokio::test]
async fn a_silent_flood_never_starves_healthz_under_a_low_open_files_limit() {
    duet_testkit::service::a_silent_flood_never_starves_healthz(env!("CARGO_BIN_EXE_duet"), &[])
        .await;
}

/// The all-in-one serves the browser client the way the gateway does (one implementation:
/// `duet_gateway::assets`, tested in depth there): compressed copies by `Accept-Encoding`,
/// content-named files cached for a year, pages revalidated, unknown names 404.
#[tokio::test]
async fn the_client_is_served_compressed_and_cacheable() {
    use std::io::{Read, Write};

    let dir = tempfile::tempdir().unwrap();
    let client = dir.path().join("client");
    std::fs::create_dir_all(client.join("static")).unwrap();
    let bundle = "const duet = 1;\n".repeat(500).into_bytes();
    std::fs::write(client.join("static/editor-AAAA1111.js"), &bundle).unwrap();
    let mut br = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut br, 4096, 11, 22);
        w.write_all(&bundle).unwrap();
    }
    std::fs::write(client.join("static/editor-AAAA1111.js.br"), &br).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&bundle).unwrap();
    std::fs::write(
        client.join("static/editor-AAAA1111.js.gz"),
        gz.finish().unwrap(),
    )
    .unwrap();
    std::fs::write(
        client.join("index.html"),
        "<!doctype html><title>Duet</title>",
    )
    .unwrap();
    std::fs::write(
        client.join("assets.json"),
        r#"{"version":1,"files":{"index.html":{"immutable":false,"encodings":[]},
            "static/editor-AAAA1111.js":{"immutable":true,"encodings":["br","gzip"]}}}"#,
    )
    .unwrap();

    let duet = Duet::start(
        dir.path(),
        &[("DUET_FRONTEND_DIR", client.to_str().unwrap())],
    )
    .await;
    let http = reqwest::Client::new();
    let url = format!("{}/static/editor-AAAA1111.js", duet.base);

    let r = http
        .get(&url)
        .header("accept-encoding", "gzip, deflate, br, zstd")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h["content-encoding"], "br");
    assert_eq!(h["content-type"], "text/javascript");
    assert_eq!(h["vary"], "accept-encoding");
    assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
    let body = r.bytes().await.unwrap();
    assert_eq!(h["content-length"], body.len().to_string().as_str());
    let mut decoded = Vec::new();
    brotli::Decompressor::new(body.as_ref(), 4096)
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded, bundle);

    let r = http
        .get(&url)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(r.bytes().await.unwrap().as_ref())
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded, bundle);

    let r = http.get(&url).send().await.unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    assert_eq!(r.bytes().await.unwrap().as_ref(), bundle.as_slice());

    let r = http
        .head(&url)
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], br.len().to_string().as_str());
    assert!(r.bytes().await.unwrap().is_empty());

    let r = http.get(format!("{}/", duet.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-cache");

    let r = http
        .get(format!("{}/static/editor-BBBB2222.js", duet.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    duet.stop();
}

/// Without `SECRET_KEY`, `duet` generates a key once and keeps it in `<data dir>/secret_key`
/// (0600): a token issued before a restart is still good after it.
#[tokio::test]
async fn the_generated_key_is_kept_across_a_restart() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let duet = Duet::start(dir.path(), &[]).await;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/api/session", duet.base))
        .json(&serde_json::json!({"lobby": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = uuid::Uuid::parse_str(created["id"].as_str().unwrap()).unwrap();
    let code = created["session_code"].as_str().unwrap().to_owned();
    let link = created["interviewer_token"].as_str().unwrap().to_owned();
    let joined: Value = http
        .post(format!("{}/api/session/{code}/join", duet.base))
        .json(&serde_json::json!({"name": "Ada"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let candidate = joined["token"].as_str().unwrap().to_owned();

    let file = dir.path().join(duet::SECRET_KEY_FILE);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let secret = std::fs::read_to_string(&file).unwrap();
    let kept = duet_auth::TokenKey::new(secret.trim()).unwrap();
    kept.verify(&link, id).expect("signed with the kept key");
    assert!(duet.stop().success());

    let duet = Duet::start(dir.path(), &[]).await;
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        secret,
        "the key is reused, not replaced"
    );
    let act = |token: String| {
        let http = http.clone();
        let url = format!("{}/api/session/{code}/start", duet.base);
        async move { http.post(url).bearer_auth(token).send().await.unwrap() }
    };
    // The candidate's token from before still verifies (a candidate: 403, not 401) ...
    assert_eq!(act(candidate).await.status(), StatusCode::FORBIDDEN);
    // ... a token of another key does not ...
    let forged = duet_auth::TokenKey::new("another deployment's secret key")
        .unwrap()
        .link_token(id);
    assert_eq!(act(forged).await.status(), StatusCode::UNAUTHORIZED);
    // ... and the interviewer link from before starts the interview.
    let r = act(link).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["state"], "live");
    assert!(duet.stop().success());
}

/// With `SECRET_KEY` set, tokens are signed with it and no key file is written.
#[tokio::test]
async fn secret_key_is_used_when_set() {
    let secret = "an operator's secret key, long enough";
    let dir = tempfile::tempdir().unwrap();
    let duet = Duet::start(dir.path(), &[("SECRET_KEY", secret)]).await;
    let created: Value = reqwest::Client::new()
        .post(format!("{}/api/session", duet.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = uuid::Uuid::parse_str(created["id"].as_str().unwrap()).unwrap();
    duet_auth::TokenKey::new(secret)
        .unwrap()
        .verify(created["interviewer_token"].as_str().unwrap(), id)
        .expect("signed with SECRET_KEY");
    assert!(!dir.path().join(duet::SECRET_KEY_FILE).exists());
    assert!(duet.stop().success());

    // A SECRET_KEY too short to be safe stops start-up, naming it.
    let out = Command::new(env!("CARGO_BIN_EXE_duet"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", "0")
        .env("DUET_DATA_DIR", dir.path())
        .env("SECRET_KEY", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SECRET_KEY"), "{stderr}");
}

/// The session-API's background jobs run in `duet` too: a created interview is announced to the
/// webhook receiver (signed), and counted on the metrics listener.
#[tokio::test]
async fn webhooks_are_sent_and_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() < len {
                        continue;
                    }
                    let _ = tx.send(text.clone());
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    buf.clear();
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", duet_testkit::free_port());
    let duet = Duet::start(
        dir.path(),
        &[
            ("DUET_METRICS_ADDR", addr.as_str()),
            ("DUET_WEBHOOK__URL", url.as_str()),
            ("DUET_WEBHOOK__SECRET", "whsec-duet"),
            ("DUET_WEBHOOK__POLL_INTERVAL_MS", "100"),
        ],
    )
    .await;
    let created: Value = reqwest::Client::new()
        .post(format!("{}/api/session", duet.base))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = created["session_code"].as_str().unwrap();
    let mut types = Vec::new();
    for _ in 0..2 {
        let req = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a webhook within 10 s")
            .unwrap();
        let lower = req.to_ascii_lowercase();
        assert!(lower.contains("duet-signature: v1="), "{req}");
        assert!(lower.contains("duet-timestamp: "), "{req}");
        let body: Value = serde_json::from_str(req.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body["session_code"], code);
        assert!(body["record_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/api/session/{code}/record")));
        types.push(body["type"].as_str().unwrap().to_owned());
    }
    types.sort();
    assert_eq!(types, ["interview.created", "interview.started"]);
    let mut counted = false;
    for _ in 0..50 {
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("duet_webhook_deliveries_total{outcome=\"delivered\"} 2") {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(counted, "deliveries counted on the metrics listener");
    duet.stop();
}
