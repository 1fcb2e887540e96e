//! `duet-loadgen`: the hub benchmark's load generator (docs/BENCHMARKS.md, "Hub"), a Rust port of
//! `tests/js/collab/loadgen.mjs` with the same arguments, load and JSON output. One thread (run it
//! pinned, `taskset -c 1`); each client is a task speaking Engine.IO v4 / Socket.IO v5 over a
//! hand-rolled WebSocket (unfragmented frames, zero mask key), so one core drives far more clients
//! than the Node generator, which saturates above ~2,000.
//!
//! ```text
//! duet-loadgen --urls http://127.0.0.1:A[,http://127.0.0.1:B] --codes C1,C2,... --clients 1000
//!              [--room 5] [--rate 5] [--seconds 20] [--warmup 3] [--mode yjs|seed|seed-replace]
//!              [--cpu-pids P1,P2]
//! ```
//!
//! Clients are grouped in interviews of `--room`; with several URLs the members of one interview are
//! spread over them. Each client makes `--rate` edits per second: `yjs` sends a y-protocols update
//! (insert marker `~id.seq~`, delete the previous one) as a binary `yjs` event with an ack; `seed`
//! clients behave as the seed's editor does: each takes the texts it is sent (`sync_code`,
//! `code_updated`) and sends `code_change {code}` with its own 64-byte line (holding the marker)
//! changed in the text it has, or added; `seed-replace` clients replace the whole text with their
//! line and never take what they are sent (pure conflict: five writers of one text). Latency is the
//! sender's emit → a peer's first receipt of the marker (one process, one clock). Prints one JSON
//! line.
//!
//! `--cpu-pids` names the server processes under test: their CPU time (user and system, from
//! `/proc/<pid>/stat`) over exactly the measured window is reported, also per 1,000 deliveries.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use yrs::{Doc, GetString, Text, Transact};

const CONNECT_CONCURRENCY: usize = 100;
/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every Linux target).
const USER_HZ: f64 = 100.0;

/// User and system CPU seconds the processes used so far (processes that are gone count 0).
fn cpu_seconds(pids: &[u32]) -> (f64, f64) {
    let mut total = (0.0, 0.0);
    for pid in pids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces), from field 3 on: utime and stime
        // are fields 14 and 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        total.0 += tick(11) / USER_HZ;
        total.1 += tick(12) / USER_HZ;
    }
    total
}

struct Args {
    urls: Vec<String>,
    codes: Vec<String>,
    clients: usize,
    room: usize,
    rate: f64,
    seconds: f64,
    warmup: f64,
    yjs: bool,
    /// Seed clients replace the whole text with their marker and never take the texts they are
    /// sent (`--mode seed-replace`), instead of editing their own line of the text they were sent.
    replace: bool,
    cpu_pids: Vec<u32>,
}

fn args() -> Args {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut m = HashMap::new();
    for pair in raw.chunks(2) {
        if let [k, v] = pair {
            m.insert(k.trim_start_matches("--").to_owned(), v.clone());
        }
    }
    let num = |k: &str, d: f64| m.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    let list = |k: &str| -> Vec<String> {
        m.get(k)
            .map(|v| v.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    };
    Args {
        urls: list("urls"),
        codes: list("codes"),
        clients: num("clients", 1000.0) as usize,
        room: num("room", 5.0) as usize,
        rate: num("rate", 5.0),
        seconds: num("seconds", 20.0),
        warmup: num("warmup", 3.0),
        yjs: m.get("mode").is_none_or(|v| v == "yjs"),
        replace: m.get("mode").is_some_and(|v| v == "seed-replace"),
        cpu_pids: list("cpu-pids")
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect(),
    }
}

/// Everything the clients share (one thread, so a `RefCell`).
#[derive(Default)]
struct Shared {
    /// (client, seq) → (emit time, counted in the measurement window)
    sent_at: HashMap<(u32, u32), (Instant, bool)>,
    latencies: Vec<f64>,
    /// With several hubs: the latencies of deliveries whose sender is on another hub than the
    /// receiver (through the bus), and of those on the same hub, measured in the same run.
    cross_hub: Vec<f64>,
    same_hub: Vec<f64>,
    /// Clients per interview and hub count, to tell which hub a client is on.
    room: u32,
    hubs: u32,
    ack_latencies: Vec<f64>,
    measuring: bool,
    collecting: bool,
    stop: bool,
    sent: u64,
    received: u64,
    errors: u64,
}

type State = Rc<RefCell<Shared>>;

/// Records every `~id.seq~` marker in `data` not sent by `me` — with `seen` (a seed client's
/// newest marker recorded per sender: a text holds every participant's line), only markers newer
/// than those.
fn record(st: &mut Shared, data: &[u8], me: u32, mut seen: Option<&mut HashMap<u32, u32>>) {
    if !st.collecting {
        return;
    }
    let now = Instant::now();
    let mut i = 0;
    while i < data.len() {
        if data[i] != b'~' {
            i += 1;
            continue;
        }
        let num = |j: &mut usize| -> Option<u32> {
            let start = *j;
            let mut v: u32 = 0;
            while *j < data.len() && data[*j].is_ascii_digit() {
                v = v.checked_mul(10)?.checked_add(u32::from(data[*j] - b'0'))?;
                *j += 1;
            }
            (*j > start).then_some(v)
        };
        let mut j = i + 1;
        let parsed = (|| {
            let id = num(&mut j)?;
            (data.get(j) == Some(&b'.')).then_some(())?;
            j += 1;
            let seq = num(&mut j)?;
            (data.get(j) == Some(&b'~')).then_some((id, seq))
        })();
        match parsed {
            Some((id, seq)) => {
                let fresh = match seen.as_deref_mut() {
                    Some(seen) => {
                        let last = seen.entry(id).or_insert(0);
                        let fresh = seq > *last;
                        *last = (*last).max(seq);
                        fresh
                    }
                    None => true,
                };
                if id != me && fresh {
                    if let Some(&(at, true)) = st.sent_at.get(&(id, seq)) {
                        let l = ms(now - at);
                        st.received += 1;
                        st.latencies.push(l);
                        if st.hubs > 1 {
                            if hub_of(id, st.room, st.hubs) == hub_of(me, st.room, st.hubs) {
                                st.same_hub.push(l);
                            } else {
                                st.cross_hub.push(l);
                            }
                        }
                    }
                }
                i = j + 1;
            }
            None => i += 1,
        }
    }
}

/// `text` with client `id`'s line (the one holding its marker `~id.`) replaced by `line` (which
/// ends with a line break), or `line` added at the end when it has none.
fn own_line(text: &str, id: u32, line: &str) -> String {
    let mark = format!("~{id}.");
    let mut out = String::with_capacity(text.len() + line.len());
    let mut found = false;
    for l in text.split_inclusive('\n') {
        if !found && l.starts_with(&mark) {
            out.push_str(line);
            found = true;
        } else {
            out.push_str(l);
        }
    }
    if !found {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(line);
    }
    out
}

/// Whether an event packet's JSON array (compact, as both servers write it) names `name`.
fn event_named(body: &[u8], name: &str) -> bool {
    body.strip_prefix(b"[\"")
        .and_then(|b| b.strip_prefix(name.as_bytes()))
        .is_some_and(|b| b.starts_with(b"\""))
}

/// Whether an ack's JSON arguments say `"ok":true`.
fn ack_ok(body: &[u8]) -> bool {
    body.windows(9).any(|w| w == b"\"ok\":true")
}

/// The hub (index into `--urls`) client `id` talks to: the members of an interview are spread
/// over the URLs in turn (see `run`).
fn hub_of(id: u32, room: u32, hubs: u32) -> u32 {
    (id % room) % hubs
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The y-protocols update messages of one client: each inserts `~id.seq~` and deletes the last.
fn precompute(id: u32, n: usize) -> Vec<Vec<u8>> {
    // A random Yjs client id, as `new Y.Doc()` has: runs reuse interviews, and a fixed id would
    // make a later run's updates duplicates of an earlier run's (ignored, so never relayed).
    let doc = Doc::new();
    let text = doc.get_or_insert_text("code");
    (1..=n)
        .map(|seq| {
            let mut txn = doc.transact_mut();
            let len = text.get_string(&txn).encode_utf16().count() as u32;
            if len > 0 {
                text.remove_range(&mut txn, 0, len);
            }
            text.insert(&mut txn, 0, &format!("~{id}.{seq}~"));
            let update = txn.encode_update_v1();
            let mut msg = vec![0u8, 2u8];
            write_var_uint(&mut msg, update.len() as u64);
            msg.extend_from_slice(&update);
            msg
        })
        .collect()
}

fn write_var_uint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A client-side WebSocket: masked frames with a zero key (legal, and no XOR work).
struct Ws {
    stream: TcpStream,
    buf: Vec<u8>,
    out: Vec<u8>,
}

enum Frame {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Closed,
}

impl Ws {
    async fn connect(url: &str) -> std::io::Result<Ws> {
        let hostport = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let mut stream = TcpStream::connect(&hostport).await?;
        stream.set_nodelay(true)?;
        let req = format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await?;
        let mut buf = Vec::with_capacity(4096);
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::other("closed during handshake"));
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                if !buf.starts_with(b"HTTP/1.1 101") {
                    return Err(std::io::Error::other("no 101 Switching Protocols"));
                }
                buf.drain(..end + 4);
                return Ok(Ws {
                    stream,
                    buf,
                    out: Vec::new(),
                });
            }
        }
    }

    /// Queues a frame; [`Ws::flush`] writes everything queued in one go.
    fn queue(&mut self, opcode: u8, payload: &[u8]) {
        self.out.push(0x80 | opcode);
        let len = payload.len();
        if len < 126 {
            self.out.push(0x80 | len as u8);
        } else if len <= 0xffff {
            self.out.push(0x80 | 126);
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.out.push(0x80 | 127);
            self.out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        self.out.extend_from_slice(&[0, 0, 0, 0]);
        self.out.extend_from_slice(payload);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// A complete frame already in the buffer, if any.
    fn parse(&mut self) -> Option<Frame> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        let opcode = b[0] & 0x0f;
        let (len, mut pos) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().ok()?) as usize, 10),
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        if b[1] & 0x80 != 0 {
            pos += 4; // servers do not mask; tolerate it anyway by skipping the key
        }
        if b.len() < pos + len {
            return None;
        }
        let payload = b[pos..pos + len].to_vec();
        self.buf.drain(..pos + len);
        Some(match opcode {
            1 => Frame::Text(payload),
            2 => Frame::Binary(payload),
            8 => Frame::Closed,
            9 => {
                self.queue(10, &payload);
                Frame::Text(Vec::new())
            }
            _ => Frame::Text(Vec::new()),
        })
    }

    /// Reads more bytes; false once the connection is closed. Reads straight into the buffer's
    /// spare capacity: a zeroed stack chunk per read was the generator's largest single cost.
    async fn fill(&mut self) -> bool {
        self.buf.reserve(16384);
        !matches!(self.stream.read_buf(&mut self.buf).await, Ok(0) | Err(_))
    }
}

enum Ack {
    Join,
    Edit(Instant, bool),
}

struct Client {
    id: u32,
    code: String,
    yjs: bool,
    /// A seed client's text (the last it was sent, with its own line changed since), as a seed
    /// client's editor holds it; `None` for `--mode seed-replace` and Yjs clients.
    text: Option<String>,
    /// A seed client's newest marker recorded per sender.
    seen: HashMap<u32, u32>,
    seq: u32,
    next_ack: u64,
    acks: HashMap<u64, Ack>,
    pending_binary: Option<bool>, // Some(is_yjs_event)
    updates: Vec<Vec<u8>>,
    ready: bool,
}

impl Client {
    fn emit(&mut self, ws: &mut Ws, event: &str, arg: Value, ack: Option<Ack>) {
        let id = ack.map(|a| {
            let id = self.next_ack;
            self.next_ack += 1;
            self.acks.insert(id, a);
            id.to_string()
        });
        let body = json!([event, arg]).to_string();
        ws.queue(1, format!("42{}{body}", id.unwrap_or_default()).as_bytes());
    }

    fn edit(&mut self, ws: &mut Ws, st: &State) {
        if self.yjs && self.seq as usize >= self.updates.len() {
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        let now = Instant::now();
        let measured = {
            let mut s = st.borrow_mut();
            let m = s.measuring;
            s.sent_at.insert((self.id, seq), (now, m));
            if m {
                s.sent += 1;
            }
            m
        };
        if self.yjs {
            let id = self.next_ack;
            self.next_ack += 1;
            self.acks.insert(id, Ack::Edit(now, measured));
            ws.queue(
                1,
                format!("451-{id}[\"yjs\",{{\"_placeholder\":true,\"num\":0}}]").as_bytes(),
            );
            let update = std::mem::take(&mut self.updates[seq as usize - 1]);
            ws.queue(2, &update);
        } else {
            // A 64-byte line holding the marker: the whole text, or this client's own line of the
            // text it has (added at the end when it has none yet).
            let line = format!("{:.<63}\n", format!("~{}.{seq}~", self.id));
            let code = match &mut self.text {
                None => line,
                Some(text) => {
                    *text = own_line(text, self.id, &line);
                    text.clone()
                }
            };
            self.emit(ws, "code_change", json!({ "code": code }), None);
        }
    }

    /// A seed client takes the text it is sent (`sync_code`, `code_updated`) into its editor.
    fn take_text(&mut self, body: &[u8]) {
        if let Some(text) = &mut self.text {
            if let Ok(Value::Array(a)) = serde_json::from_slice::<Value>(body) {
                if let Some(code) = a.get(1).and_then(|b| b["code"].as_str()) {
                    *text = code.to_owned();
                }
            }
        }
    }

    fn on_frame(&mut self, ws: &mut Ws, st: &State, frame: Frame) {
        let text = match frame {
            Frame::Binary(data) => {
                if self.pending_binary.take() == Some(true) {
                    record(&mut st.borrow_mut(), &data, self.id, None);
                }
                return;
            }
            Frame::Text(t) => t,
            Frame::Closed => return,
        };
        match text.first() {
            Some(b'0') => ws.queue(1, b"40"),
            Some(b'2') => ws.queue(1, b"3"),
            Some(b'4') => self.on_packet(ws, st, &text[1..]),
            _ => {}
        }
    }

    /// A Socket.IO packet (after the Engine.IO `4`).
    fn on_packet(&mut self, ws: &mut Ws, st: &State, p: &[u8]) {
        let Some(&t) = p.first() else { return };
        let mut rest = &p[1..];
        let attachments = matches!(t, b'5' | b'6');
        if attachments {
            let Some(dash) = rest.iter().position(|&c| c == b'-') else {
                return;
            };
            rest = &rest[dash + 1..];
        }
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        let ack_id: Option<u64> = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|s| s.parse().ok());
        // Matched on the raw JSON (compact, as both servers write it) rather than parsed: this runs
        // for every delivery, and the generator's cost is what bounds the measurable load.
        let body = &rest[digits..];
        match t {
            b'0' => {
                let arg = json!({ "session_code": self.code, "name": format!("load-{}", self.id), "yjs": self.yjs });
                self.emit(ws, "join_session", arg, Some(Ack::Join));
            }
            b'3' | b'6' => {
                let ok = ack_ok(body);
                match ack_id.and_then(|id| self.acks.remove(&id)) {
                    Some(Ack::Join) => {
                        self.ready = true;
                        if !ok {
                            st.borrow_mut().errors += 1;
                        }
                    }
                    Some(Ack::Edit(at, measured)) => {
                        let mut s = st.borrow_mut();
                        if !ok {
                            s.errors += 1;
                        } else if measured {
                            s.ack_latencies.push(ms(at.elapsed()));
                        }
                    }
                    None => {}
                }
            }
            // The markers hold no character JSON escapes, so they are found in the raw text.
            b'2' if event_named(body, "code_updated") => {
                let seen = self.text.is_some().then_some(&mut self.seen);
                record(&mut st.borrow_mut(), body, self.id, seen);
                self.take_text(body);
            }
            b'2' if event_named(body, "sync_code") => {
                self.take_text(body);
                self.ready = true; // the Node peer does not ack joins
            }
            b'2' if event_named(body, "error") => st.borrow_mut().errors += 1,
            b'5' => self.pending_binary = Some(event_named(body, "yjs")),
            _ => {}
        }
    }
}

/// One client: connects, joins, then edits every `period` (from `start`) until told to stop.
async fn run_client(
    mut c: Client,
    url: String,
    st: State,
    ready: tokio::sync::mpsc::UnboundedSender<()>,
    mut go: tokio::sync::watch::Receiver<Option<(Instant, Duration)>>,
) {
    let mut ws = match Ws::connect(&url).await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("client {}: {e}", c.id);
            st.borrow_mut().errors += 1;
            let _ = ready.send(());
            return;
        }
    };
    let mut told_ready = false;
    let mut ticker: Option<tokio::time::Interval> = None;
    loop {
        while let Some(f) = ws.parse() {
            if matches!(f, Frame::Closed) {
                return;
            }
            c.on_frame(&mut ws, &st, f);
        }
        if c.ready && !told_ready {
            told_ready = true;
            let _ = ready.send(());
        }
        if ws.flush().await.is_err() {
            return;
        }
        let stop = st.borrow().stop;
        if stop {
            ticker = None;
        }
        tokio::select! {
            open = ws.fill() => if !open { return },
            _ = async { ticker.as_mut().unwrap().tick().await }, if ticker.is_some() => {
                c.edit(&mut ws, &st);
            }
            r = go.changed(), if ticker.is_none() && !stop => {
                if r.is_err() { return }
                if let Some((start, period)) = *go.borrow() {
                    let offset = period.mul_f64(rand::random::<f64>());
                    let mut t = tokio::time::interval_at((start + offset).into(), period);
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    ticker = Some(t);
                }
            }
        }
    }
}

fn round2(x: f64) -> Value {
    json!((x * 100.0).round() / 100.0)
}

fn pct(xs: &mut [f64], p: f64) -> Value {
    if xs.is_empty() {
        return Value::Null;
    }
    xs.sort_by(f64::total_cmp);
    let i = ((p / 100.0 * xs.len() as f64).floor() as usize).min(xs.len() - 1);
    round2(xs[i])
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run(a));
}

async fn run(a: Args) {
    let st: State = Rc::new(RefCell::new(Shared {
        room: a.room.max(1) as u32,
        hubs: a.urls.len().max(1) as u32,
        ..Shared::default()
    }));
    let edits = ((a.warmup + a.seconds + 2.0) * a.rate).ceil() as usize + 10;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let (go_tx, go_rx) = tokio::sync::watch::channel(None);
    let mut connected = 0;
    for i in 0..a.clients {
        let r = i / a.room;
        let url =
            a.urls[hub_of(i as u32, a.room.max(1) as u32, a.urls.len() as u32) as usize].clone();
        let c = Client {
            id: i as u32,
            code: a.codes[r % a.codes.len()].clone(),
            yjs: a.yjs,
            text: (!a.yjs && !a.replace).then(String::new),
            seen: HashMap::new(),
            seq: 0,
            next_ack: 1,
            acks: HashMap::new(),
            pending_binary: None,
            updates: if a.yjs {
                precompute(i as u32, edits)
            } else {
                Vec::new()
            },
            ready: false,
        };
        tokio::task::spawn_local(run_client(
            c,
            url,
            st.clone(),
            ready_tx.clone(),
            go_rx.clone(),
        ));
        if (i + 1) % CONNECT_CONCURRENCY == 0 {
            while connected < i + 1 - CONNECT_CONCURRENCY / 2 {
                ready_rx.recv().await;
                connected += 1;
            }
        }
    }
    while connected < a.clients {
        ready_rx.recv().await;
        connected += 1;
    }

    // Lag of the generator's own event loop: if high, the generator (not the server) is the limit.
    let lag = Rc::new(RefCell::new(0f64));
    {
        let (lag, st) = (lag.clone(), st.clone());
        tokio::task::spawn_local(async move {
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let now = Instant::now();
                if st.borrow().measuring {
                    let l = ms(now - last) - 100.0;
                    let mut m = lag.borrow_mut();
                    *m = m.max(l);
                }
                last = now;
            }
        });
    }
    let period = Duration::from_secs_f64(1.0 / a.rate);
    let _ = go_tx.send(Some((Instant::now(), period)));
    tokio::time::sleep(Duration::from_secs_f64(a.warmup)).await;
    {
        let mut s = st.borrow_mut();
        s.measuring = true;
        s.collecting = true;
    }
    let cpu_start = cpu_seconds(&a.cpu_pids);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(a.seconds)).await;
    let cpu_end = cpu_seconds(&a.cpu_pids);
    let window = window.elapsed().as_secs_f64();
    {
        let mut s = st.borrow_mut();
        s.measuring = false;
        s.stop = true;
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // drain
    let mut s = st.borrow_mut();
    s.collecting = false;
    let expected = s.sent * (a.room as u64 - 1);
    let mut lat = std::mem::take(&mut s.latencies);
    let mut acks = std::mem::take(&mut s.ack_latencies);
    let mut cross = std::mem::take(&mut s.cross_hub);
    let mut same = std::mem::take(&mut s.same_hub);
    let mut out = json!({
        "mode": if a.yjs { "yjs" } else if a.replace { "seed-replace" } else { "seed" },
        "generator": "rust",
        "clients": a.clients,
        "hubs": a.urls.len(),
        "sent": s.sent,
        "expected": expected,
        "received": s.received,
        "loss": expected as i64 - s.received as i64,
        "p50": pct(&mut lat, 50.0),
        "p99": pct(&mut lat, 99.0),
        "max": pct(&mut lat, 100.0),
        "ack_p50": pct(&mut acks, 50.0),
        "ack_p99": pct(&mut acks, 99.0),
        "errors": s.errors,
        "generator_lag_max_ms": lag.borrow().round(),
    });
    if a.urls.len() > 1 {
        // The bus hop, measured within this run: deliveries between clients of different hubs
        // against deliveries between clients of the same hub, under the same load.
        out["cross_hub_received"] = json!(cross.len());
        out["cross_hub_p50"] = pct(&mut cross, 50.0);
        out["cross_hub_p99"] = pct(&mut cross, 99.0);
        out["same_hub_received"] = json!(same.len());
        out["same_hub_p50"] = pct(&mut same, 50.0);
        out["same_hub_p99"] = pct(&mut same, 99.0);
    }
    if !a.cpu_pids.is_empty() {
        let (user, sys) = (cpu_end.0 - cpu_start.0, cpu_end.1 - cpu_start.1);
        let per_1k = |secs: f64| round2(secs * 1000.0 / (expected.max(1) as f64 / 1000.0));
        out["server_cpu_pct"] = json!((100.0 * (user + sys) / window).round());
        out["server_cpu_ms_per_1k"] = per_1k(user + sys);
        out["server_user_ms_per_1k"] = per_1k(user);
        out["server_sys_ms_per_1k"] = per_1k(sys);
    }
    println!("{out}");
    std::process::exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_and_acks_are_read_from_the_raw_json() {
        assert!(event_named(
            br#"["yjs",{"_placeholder":true,"num":0}]"#,
            "yjs"
        ));
        assert!(!event_named(br#"["yjs_extra",{}]"#, "yjs"));
        assert!(!event_named(br#"["code_updated",{}]"#, "yjs"));
        assert!(event_named(
            br#"["code_updated",{"code":"~1.2~"}]"#,
            "code_updated"
        ));
        assert!(ack_ok(br#"[{"ok":true}]"#));
        assert!(!ack_ok(
            br#"[{"ok":false,"error":{"code":"invalid_update"}}]"#
        ));
    }

    #[test]
    fn deliveries_are_split_by_whether_they_crossed_hubs() {
        // Interviews of 5 over two hubs: clients 0, 2, 4 on hub 0; 1, 3 on hub 1.
        let mut st = Shared {
            room: 5,
            hubs: 2,
            collecting: true,
            ..Shared::default()
        };
        let at = Instant::now();
        st.sent_at.insert((0, 1), (at, true));
        st.sent_at.insert((0, 2), (at, false)); // sent before the window: not counted
        record(&mut st, b"~0.1~", 1, None); // hub 0 -> hub 1
        record(&mut st, b"~0.1~", 2, None); // hub 0 -> hub 0
        record(&mut st, b"xx~0.1~yy~0.2~", 3, None); // hub 0 -> hub 1, and an unmeasured marker
        record(&mut st, b"~0.1~", 0, None); // the sender's own edit
        assert_eq!(st.received, 3);
        assert_eq!(st.latencies.len(), 3);
        assert_eq!(st.cross_hub.len(), 2);
        assert_eq!(st.same_hub.len(), 1);
        assert_eq!(hub_of(7, 5, 2), 0);
        assert_eq!(hub_of(8, 5, 2), 1);
    }

    #[test]
    fn a_seed_text_counts_each_marker_once_per_receiver() {
        let mut st = Shared {
            room: 5,
            hubs: 1,
            collecting: true,
            ..Shared::default()
        };
        let at = Instant::now();
        for (id, seq) in [(0, 1), (0, 2), (2, 1)] {
            st.sent_at.insert((id, seq), (at, true));
        }
        let mut seen = HashMap::new();
        record(&mut st, b"~0.1~\n~2.1~\n", 1, Some(&mut seen));
        record(&mut st, b"~0.2~\n~2.1~\n", 1, Some(&mut seen)); // only ~0.2~ is new
        record(&mut st, b"~0.1~\n~2.1~\n", 1, Some(&mut seen)); // older than what it had
        assert_eq!(st.received, 3);
    }

    #[test]
    fn a_seed_client_edits_its_own_line() {
        let line = |id: u32, seq: u32| format!("{:.<63}\n", format!("~{id}.{seq}~"));
        let t = own_line("", 3, &line(3, 1));
        assert_eq!(t, line(3, 1));
        let t = own_line(&format!("{}{}", line(1, 4), line(3, 1)), 3, &line(3, 2));
        assert_eq!(t, format!("{}{}", line(1, 4), line(3, 2)));
        let t = own_line("no line break", 2, &line(2, 1));
        assert_eq!(t, format!("no line break\n{}", line(2, 1)));
        assert_eq!(line(3, 1).len(), 64);
    }
}
