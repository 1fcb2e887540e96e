//! Checks of the HTTP conventions every service follows (`duet_telemetry::methods`), against a
//! running service at `base` (`http://127.0.0.1:port`).

/// `method path` answers 405 with `Allow: allow` and the JSON error `method_not_allowed`.
pub async fn assert_method_not_allowed(base: &str, method: &str, path: &str, allow: &str) {
    let r = reqwest::Client::new()
        .request(
            method.parse().expect("an HTTP method"),
            format!("{base}{path}"),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    assert_eq!(r.status().as_u16(), 405, "{method} {path}");
    assert_eq!(
        r.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some(allow),
        "{method} {path}: Allow"
    );
    let body: serde_json::Value = r
        .json()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: JSON body: {e}"));
    assert_eq!(
        body["error"]["code"], "method_not_allowed",
        "{method} {path}: {body}"
    );
}

/// `HEAD path` answers what `GET path` does (status, content type), without a body.
pub async fn assert_head_like_get(base: &str, path: &str) {
    let http = reqwest::Client::new();
    let url = format!("{base}{path}");
    let get = http.get(&url).send().await.unwrap();
    let head = http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), get.status(), "HEAD {path}");
    assert_eq!(
        head.headers().get("content-type"),
        get.headers().get("content-type"),
        "HEAD {path}: content type"
    );
    assert!(
        head.bytes().await.unwrap().is_empty(),
        "HEAD {path} has no body"
    );
}
