//! The browser client's files through a real gateway over real HTTP: compressed copies chosen by
//! `Accept-Encoding`, cache headers, 404s for names the manifest does not list, HEAD, ranges,
//! revalidation, and a client rebuilt under a running server.

use std::io::{Read, Write};
use std::path::Path;

use reqwest::header::{HeaderMap, ACCEPT_ENCODING};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{settings, spawn_gateway, spawn_session_api};

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const BUNDLE: &str = "static/app-5GHXQ2ZL.js";

/// A bundle big and repetitive enough that its compressed copies are much smaller.
fn bundle_bytes() -> Vec<u8> {
    (0..2000)
        .map(|i| format!("function f{i}(x) {{ return x * {i} + 'duet'; }}\n"))
        .collect::<String>()
        .into_bytes()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        // Quality 9: the fixture's copies need not be the smallest, and 11 is slow in debug builds.
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
        w.write_all(data).unwrap();
    }
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

fn unbrotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(data, 4096)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// One file of a fixture client, as `frontend/build.mjs` would write it.
struct File<'a> {
    path: &'a str,
    body: Vec<u8>,
    immutable: bool,
    compressed: bool,
}

/// Writes the files, their .br/.gz copies and `assets.json` into `dir`.
fn write_client(dir: &Path, files: &[File]) {
    let mut manifest = serde_json::Map::new();
    for f in files {
        let p = dir.join(f.path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &f.body).unwrap();
        let encodings: Vec<&str> = if f.compressed {
            std::fs::write(format!("{}.br", p.display()), brotli(&f.body)).unwrap();
            std::fs::write(format!("{}.gz", p.display()), gzip(&f.body)).unwrap();
            vec!["br", "gzip"]
        } else {
            vec![]
        };
        manifest.insert(
            f.path.to_owned(),
            json!({"immutable": f.immutable, "encodings": encodings}),
        );
    }
    std::fs::write(
        dir.join("assets.json"),
        json!({"version": 1, "urls": {}, "files": manifest}).to_string(),
    )
    .unwrap();
}

/// A client like the real one: two pages, a content-named bundle, its source map, an already
/// compressed archive, and a file on disk that the manifest does not list.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let page = |title: &str| {
        format!(
            "<!doctype html><title>{title}</title><script src=\"/{BUNDLE}\"></script>{}",
            "<p>filler</p>".repeat(200)
        )
        .into_bytes()
    };
    write_client(
        dir.path(),
        &[
            File {
                path: "index.html",
                body: page("landing"),
                immutable: false,
                compressed: true,
            },
            File {
                path: "editor.html",
                body: page("editor"),
                immutable: false,
                compressed: true,
            },
            File {
                path: BUNDLE,
                body: bundle_bytes(),
                immutable: true,
                compressed: true,
            },
            File {
                path: "static/app-5GHXQ2ZL.js.map",
                body: b"{\"version\":3}".to_vec(),
                immutable: false,
                compressed: false,
            },
            File {
                path: "static/pyodide/1.0-abc/stdlib.zip",
                body: vec![0x50, 0x4b, 3, 4, 1, 2, 3],
                immutable: true,
                compressed: false,
            },
        ],
    );
    std::fs::write(dir.path().join("static/unlisted.js"), "secret()").unwrap();
    dir
}

/// Idle connections are not reused after this: the server closes them after its keep-alive (5 s), and
/// a request sent on one at that moment fails (writing a fixture can take that long in a debug build).
const CLIENT_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

async fn gateway_for(dir: &Path) -> (String, reqwest::Client) {
    let api = spawn_session_api().await;
    let http = reqwest::Client::builder()
        .pool_idle_timeout(CLIENT_IDLE)
        .build()
        .unwrap();
    (spawn_gateway(&settings(vec![api], dir)).await, http)
}

async fn get(
    http: &reqwest::Client,
    url: &str,
    accept: Option<&str>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = http.get(url);
    if let Some(a) = accept {
        req = req.header(ACCEPT_ENCODING, a);
    }
    let r = req.send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.bytes().await.unwrap().to_vec())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn the_encoding_is_chosen_by_accept_encoding_and_decodes_to_the_original() {
    let dir = fixture();
    let (gw, http) = gateway_for(dir.path()).await;
    let url = format!("{gw}/{BUNDLE}");
    let original = bundle_bytes();

    for (accept, expected) in [
        (Some("br"), Some("br")),
        (Some("gzip, deflate, br, zstd"), Some("br")), // what Chromium sends
        (Some("gzip"), Some("gzip")),
        (Some("br;q=0.1, gzip"), Some("gzip")),
        (Some("identity"), None),
        (Some("zstd"), None),
        (None, None),
    ] {
        let (status, h, body) = get(&http, &url, accept).await;
        assert_eq!(status, StatusCode::OK, "{accept:?}");
        assert_eq!(header(&h, "content-encoding"), expected, "{accept:?}");
        assert_eq!(
            header(&h, "content-type"),
            Some("text/javascript"),
            "{accept:?}: the original's type"
        );
        assert_eq!(header(&h, "vary"), Some("accept-encoding"), "{accept:?}");
        assert_eq!(
            header(&h, "content-length"),
            Some(body.len().to_string().as_str()),
            "{accept:?}"
        );
        let decoded = match expected {
            Some("br") => unbrotli(&body),
            Some("gzip") => gunzip(&body),
            _ => body.clone(),
        };
        assert_eq!(
            decoded, original,
            "{accept:?}: decodes to the original bytes"
        );
        if expected.is_some() {
            assert!(
                body.len() * 4 < original.len(),
                "{accept:?}: the compressed copy was sent"
            );
        }
    }

    // Pages are compressed the same way.
    let (_, h, body) = get(&http, &format!("{gw}/"), Some("br")).await;
    assert_eq!(header(&h, "content-encoding"), Some("br"));
    assert_eq!(header(&h, "content-type"), Some("text/html; charset=utf-8"));
    assert!(String::from_utf8(unbrotli(&body))
        .unwrap()
        .contains("<title>landing</title>"));
}

#[tokio::test]
async fn content_named_files_are_immutable_and_pages_are_revalidated() {
    let dir = fixture();
    let (gw, http) = gateway_for(dir.path()).await;

    let (_, h, _) = get(&http, &format!("{gw}/{BUNDLE}"), Some("br")).await;
    assert_eq!(header(&h, "cache-control"), Some(IMMUTABLE));
    let (_, h, _) = get(
        &http,
        &format!("{gw}/static/pyodide/1.0-abc/stdlib.zip"),
        None,
    )
    .await;
    assert_eq!(header(&h, "cache-control"), Some(IMMUTABLE));
    // A source map's name does not follow its content.
    let (_, h, _) = get(&http, &format!("{gw}/static/app-5GHXQ2ZL.js.map"), None).await;
    assert_eq!(header(&h, "cache-control"), Some("no-cache"));

    let (status, h, _) = get(&http, &format!("{gw}/"), Some("br")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&h, "cache-control"), Some("no-cache"));
    let created: Value = http
        .post(format!("{gw}/api/session"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (status, h, body) = get(
        &http,
        &format!(
            "{gw}/interview/{}",
            created["session_code"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&h, "cache-control"), Some("no-cache"));
    assert!(String::from_utf8(body)
        .unwrap()
        .contains("<title>editor</title>"));

    // Revalidating answers 304 with the same caching headers.
    let (_, h, _) = get(&http, &format!("{gw}/"), None).await;
    let r = http
        .get(format!("{gw}/"))
        .header("if-none-match", header(&h, "etag").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(r.headers(), "cache-control"), Some("no-cache"));
    assert_eq!(header(r.headers(), "vary"), Some("accept-encoding"));
}

#[tokio::test]
async fn names_the_manifest_does_not_list_are_404() {
    let dir = fixture();
    let (gw, http) = gateway_for(dir.path()).await;
    for path in [
        "/static/app-ZZZZZZZZ.js",    // a hash this build did not make
        "/static/app-5GHXQ2ZL.js.br", // the copies are not addressable themselves
        "/static/unlisted.js",        // on disk, not in the manifest
        "/static/..%2fassets.json",
        "/static/",
        "/static/pyodide/1.0-abc/",
    ] {
        let (status, h, body) = get(&http, &format!("{gw}{path}"), Some("br")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(header(&h, "cache-control"), Some("no-store"), "{path}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    // Outside /static nothing of the client's directory is served (the URL parser turns the first
    // into /assets.json).
    for path in ["/static/%2e%2e/assets.json", "/assets.json", "/editor.html"] {
        assert_eq!(
            get(&http, &format!("{gw}{path}"), None).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[tokio::test]
async fn head_ranges_and_already_compressed_files() {
    let dir = fixture();
    let (gw, http) = gateway_for(dir.path()).await;
    let url = format!("{gw}/{BUNDLE}");
    let original = bundle_bytes();

    // HEAD: the headers of the GET, no body.
    let (_, get_h, get_body) = get(&http, &url, Some("br")).await;
    let r = http
        .head(&url)
        .header(ACCEPT_ENCODING, "br")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for name in [
        "content-encoding",
        "content-type",
        "content-length",
        "vary",
        "cache-control",
        "etag",
    ] {
        assert_eq!(
            header(r.headers(), name),
            header(&get_h, name),
            "HEAD {name}"
        );
    }
    assert_eq!(
        header(r.headers(), "content-length"),
        Some(get_body.len().to_string().as_str())
    );
    assert!(r.bytes().await.unwrap().is_empty());

    // A range is of the original bytes, whatever the client accepts.
    let r = http
        .get(&url)
        .header(ACCEPT_ENCODING, "br, gzip")
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(r.headers(), "content-encoding"), None);
    assert_eq!(
        header(r.headers(), "content-range"),
        Some(format!("bytes 100-199/{}", original.len()).as_str())
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &original[100..200]);
    let r = http
        .get(&url)
        .header("range", format!("bytes={}-", original.len() + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    // An archive has no copies: sent as it is, and nothing varies.
    let (status, h, body) = get(
        &http,
        &format!("{gw}/static/pyodide/1.0-abc/stdlib.zip"),
        Some("br, gzip"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&h, "content-encoding"), None);
    assert_eq!(header(&h, "vary"), None);
    assert_eq!(header(&h, "content-type"), Some("application/zip"));
    assert_eq!(body, vec![0x50, 0x4b, 3, 4, 1, 2, 3]);

    // Other methods are refused.
    let r = http.post(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_client_rebuilt_under_a_running_server_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, http) = gateway_for(dir.path()).await;
    // Not built yet: a page that says so, and no files.
    let (status, _, body) = get(&http, &format!("{gw}/"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8(body)
        .unwrap()
        .contains("has not been built"));
    assert_eq!(
        get(&http, &format!("{gw}/{BUNDLE}"), None).await.0,
        StatusCode::NOT_FOUND
    );

    // `npm run build`: the new names are served at once.
    write_client(
        dir.path(),
        &[
            File {
                path: "index.html",
                body: b"<title>v1</title>".to_vec(),
                immutable: false,
                compressed: false,
            },
            File {
                path: BUNDLE,
                body: bundle_bytes(),
                immutable: true,
                compressed: true,
            },
        ],
    );
    let (status, _, body) = get(&http, &format!("{gw}/{BUNDLE}"), Some("gzip")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(gunzip(&body), bundle_bytes());

    // Built again with a changed bundle: the old name is gone, the page names the new one.
    std::fs::remove_dir_all(dir.path()).unwrap();
    std::fs::create_dir(dir.path()).unwrap();
    write_client(
        dir.path(),
        &[
            File {
                path: "index.html",
                body: b"<title>v2</title>".to_vec(),
                immutable: false,
                compressed: false,
            },
            File {
                path: "static/app-NEWHASH2.js",
                body: b"v2()".to_vec(),
                immutable: true,
                compressed: false,
            },
        ],
    );
    let (_, _, body) = get(&http, &format!("{gw}/"), None).await;
    assert_eq!(body, b"<title>v2</title>");
    assert_eq!(
        get(&http, &format!("{gw}/{BUNDLE}"), None).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, h, body) = get(&http, &format!("{gw}/static/app-NEWHASH2.js"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&h, "cache-control"), Some(IMMUTABLE));
    assert_eq!(body, b"v2()");
}
