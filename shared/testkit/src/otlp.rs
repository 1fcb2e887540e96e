//! An in-process OTLP/HTTP receiver for trace tests: it accepts `POST /v1/traces` with JSON bodies
//! (`OTEL_EXPORTER_OTLP_PROTOCOL=http/json`), answers 200 and keeps every span it was sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One received span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// `service.name` of the resource it came with.
    pub service: String,
    pub name: String,
    /// Hex, as OTLP/JSON writes them; `parent_span_id` is empty for a root span.
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    /// String-valued attributes.
    pub attributes: Vec<(String, String)>,
}

impl Span {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The receiver; it serves until the test process ends.
#[derive(Clone)]
pub struct Receiver {
    port: u16,
    spans: Arc<Mutex<Vec<Span>>>,
    /// Request paths that were not `POST /v1/traces`, or bodies that were not OTLP/JSON.
    rejected: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    /// Serves on a thread of its own (its own runtime), so a test may block on a flush of the
    /// exporter from any thread, an actix test's single one included.
    pub async fn start() -> Self {
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let rejected: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let (s, r) = (spans.clone(), rejected.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the receiver's runtime");
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind the OTLP receiver");
                let port = listener.local_addr().expect("receiver address").port();
                let me = Receiver {
                    port,
                    spans: s,
                    rejected: r,
                };
                let _ = tx.send(port);
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(me.clone().serve(stream));
                }
            });
        });
        let port = rx.recv().expect("the receiver started");
        Self {
            port,
            spans,
            rejected,
        }
    }

    /// The base URL to configure as the OTLP endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn rejected(&self) -> Vec<String> {
        self.rejected.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits (up to `within`) until `found` picks something out of the spans received so far.
    pub async fn wait_for<T>(
        &self,
        within: Duration,
        mut found: impl FnMut(&[Span]) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(t) = found(&self.spans()) {
                return Some(t);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// HTTP/1.1 with `Content-Length` bodies, keep-alive: what the exporter's client sends.
    async fn serve(self, mut stream: TcpStream) {
        let mut buf = Vec::new();
        loop {
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 8192];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            while buf.len() < head_end + length {
                let mut chunk = [0u8; 8192];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body: Vec<u8> = buf[head_end..head_end + length].to_vec();
            buf.drain(..head_end + length);
            let request_line = head.lines().next().unwrap_or_default().to_owned();
            if request_line.starts_with("POST /v1/traces ") {
                match serde_json::from_slice::<Value>(&body) {
                    Ok(v) => {
                        let spans = parse(&v);
                        if let Ok(mut all) = self.spans.lock() {
                            all.extend(spans);
                        }
                    }
                    Err(e) => self.reject(format!("{request_line}: {e}")),
                }
            } else {
                self.reject(request_line);
            }
            let reply =
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
            if stream.write_all(reply).await.is_err() {
                return;
            }
        }
    }

    fn reject(&self, what: String) {
        if let Ok(mut r) = self.rejected.lock() {
            r.push(what);
        }
    }
}

/// The spans of an `ExportTraceServiceRequest` in OTLP/JSON.
pub fn parse(v: &Value) -> Vec<Span> {
    let mut out = Vec::new();
    let str_of = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    for rs in v["resourceSpans"].as_array().into_iter().flatten() {
        let attrs = attributes(&rs["resource"]["attributes"]);
        let service = attrs
            .iter()
            .find(|(k, _)| k == "service.name")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for s in ss["spans"].as_array().into_iter().flatten() {
                out.push(Span {
                    service: service.clone(),
                    name: str_of(&s["name"]),
                    trace_id: str_of(&s["traceId"]),
                    span_id: str_of(&s["spanId"]),
                    parent_span_id: str_of(&s["parentSpanId"]),
                    attributes: attributes(&s["attributes"]),
                });
            }
        }
    }
    out
}

fn attributes(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let key = a["key"].as_str()?.to_owned();
            let value = &a["value"];
            let text = value["stringValue"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| value["intValue"].as_str().map(str::to_owned))
                .or_else(|| value["intValue"].as_i64().map(|i| i.to_string()))?;
            Some((key, text))
        })
        .collect()
}
