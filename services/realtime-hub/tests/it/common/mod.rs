//! Test helpers: a recording transport, Yjs clients speaking the real y-protocols messages to the hub
//! core, and a storage wrapper that can pretend the database is down.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use duet_bus::Bus;
use duet_domain::{DocKind, InterviewState, Language, NewSession, Session, SessionCode, Title};
use duet_realtime_hub::edge::Connection;
use duet_realtime_hub::interview::{new_doc, protocol, TEXT_NAME};
use duet_realtime_hub::runtime::{HubConfig, Runtime};
use duet_realtime_hub::transport::{AckFn, ConnId, ConnSink, Outbound, Outgoing};
use duet_storage::*;
use parking_lot::Mutex;
use serde_json::{json, Value};
use uuid::Uuid;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

// ---------------------------------------------------------------- recording transport

#[derive(Default)]
pub struct Net {
    rooms: Mutex<HashMap<String, HashSet<ConnId>>>,
    conns: Mutex<HashMap<ConnId, Arc<TestSink>>>,
}

pub struct NetOut(pub Arc<Net>);

impl Outbound for NetOut {
    fn broadcast(
        &self,
        room: &str,
        except: Option<&ConnId>,
        event: &'static str,
        payload: Outgoing,
    ) {
        let members: Vec<ConnId> = self
            .0
            .rooms
            .lock()
            .get(room)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let conns = self.0.conns.lock();
        for m in members {
            if Some(&m) == except {
                continue;
            }
            if let Some(c) = conns.get(&m) {
                c.push(event, payload.clone());
            }
        }
    }
}

pub struct TestSink {
    id: ConnId,
    net: Arc<Net>,
    pub inbox: Mutex<Vec<(String, Outgoing)>>,
    pub disconnected: AtomicBool,
    /// The connection, whose disconnect handler runs when the sink is closed.
    conn: std::sync::OnceLock<std::sync::Weak<Connection>>,
}

impl TestSink {
    fn push(&self, event: &str, payload: Outgoing) {
        if !self.disconnected.load(Ordering::SeqCst) {
            self.inbox.lock().push((event.to_owned(), payload));
        }
    }
    pub fn take(&self) -> Vec<(String, Outgoing)> {
        std::mem::take(&mut *self.inbox.lock())
    }
}

impl ConnSink for TestSink {
    fn id(&self) -> &ConnId {
        &self.id
    }
    fn emit(&self, event: &'static str, payload: Outgoing) {
        self.push(event, payload);
    }
    fn join(&self, room: &str) {
        self.net
            .rooms
            .lock()
            .entry(room.to_owned())
            .or_default()
            .insert(self.id.clone());
    }
    fn leave(&self, room: &str) {
        if let Some(r) = self.net.rooms.lock().get_mut(room) {
            r.remove(&self.id);
        }
    }
    /// As the Socket.IO server does: the connection's disconnect handler runs right here, up to
    /// its first pending await, then goes on as a task.
    fn disconnect(&self) {
        if self.disconnected.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(conn) = self.conn.get().and_then(std::sync::Weak::upgrade) {
            let mut fut = Box::pin(async move { conn.disconnected().await });
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            if std::future::Future::poll(fut.as_mut(), &mut cx).is_pending() {
                tokio::spawn(fut);
            }
        }
    }
}

// ---------------------------------------------------------------- storage that can fail

pub struct Flaky {
    pub inner: Arc<dyn Storage>,
    pub down: AtomicBool,
    /// Appends that include this session fail as a bug would (not as unavailability).
    pub refuse_session: Mutex<Option<Uuid>>,
    pub appends: AtomicUsize,
    /// While set, `load_document` waits (a slow read of a long history).
    pub stall_loads: AtomicBool,
    /// `load_document` calls so far.
    pub loads: AtomicUsize,
    /// While set, `record_events` fails as an unavailable database would (everything else works).
    pub fail_events: AtomicBool,
}

impl Flaky {
    pub fn new(inner: Arc<dyn Storage>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            down: AtomicBool::new(false),
            refuse_session: Mutex::new(None),
            appends: AtomicUsize::new(0),
            stall_loads: AtomicBool::new(false),
            loads: AtomicUsize::new(0),
            fail_events: AtomicBool::new(false),
        })
    }
    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(StorageError::Unavailable("test: database down".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Storage for Flaky {
    async fn ping(&self) -> Result<()> {
        self.check()?;
        self.inner.ping().await
    }
    async fn create_session(&self, new: NewSession) -> Result<Session> {
        self.inner.create_session(new).await
    }
    async fn session_by_code(&self, code: &SessionCode) -> Result<Option<Session>> {
        self.check()?;
        self.inner.session_by_code(code).await
    }
    async fn session_by_id(&self, id: Uuid) -> Result<Option<Session>> {
        self.check()?;
        self.inner.session_by_id(id).await
    }
    async fn set_language(&self, id: Uuid, l: Language) -> Result<()> {
        self.check()?;
        self.inner.set_language(id, l).await
    }
    async fn set_text(&self, id: Uuid, t: &str) -> Result<()> {
        self.check()?;
        self.inner.set_text(id, t).await
    }
    async fn set_texts(&self, texts: &[(Uuid, String)]) -> Result<Vec<Uuid>> {
        self.check()?;
        self.inner.set_texts(texts).await
    }
    async fn append_updates(&self, batch: &[NewUpdate]) -> Result<Vec<i64>> {
        self.check()?;
        let refused = *self.refuse_session.lock();
        if let Some(id) = refused {
            if batch.iter().any(|u| u.session_id == id) {
                return Err(StorageError::Other("test: refused".into()));
            }
        }
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.inner.append_updates(batch).await
    }
    async fn load_document(&self, id: Uuid, doc: DocKind) -> Result<DocumentState> {
        self.check()?;
        self.loads.fetch_add(1, Ordering::SeqCst);
        while self.stall_loads.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.inner.load_document(id, doc).await
    }
    async fn history(&self, id: Uuid, doc: DocKind) -> Result<Vec<StoredUpdate>> {
        self.inner.history(id, doc).await
    }
    async fn save_snapshot(&self, id: Uuid, doc: DocKind, upto: i64, data: &[u8]) -> Result<()> {
        self.check()?;
        self.inner.save_snapshot(id, doc, upto, data).await
    }
    async fn password_hash(&self, id: Uuid) -> Result<Option<String>> {
        self.check()?;
        self.inner.password_hash(id).await
    }
    async fn transition(
        &self,
        id: Uuid,
        to: InterviewState,
        now: time::OffsetDateTime,
    ) -> Result<Session> {
        self.check()?;
        self.inner.transition(id, to, now).await
    }
    async fn set_controls(
        &self,
        id: Uuid,
        editing_locked: Option<bool>,
        runs_enabled: Option<bool>,
    ) -> Result<Session> {
        self.check()?;
        self.inner
            .set_controls(id, editing_locked, runs_enabled)
            .await
    }
    async fn next_token_number(&self, id: Uuid) -> Result<i64> {
        self.check()?;
        self.inner.next_token_number(id).await
    }
    async fn remove_user(&self, id: Uuid, user: Uuid) -> Result<()> {
        self.check()?;
        self.inner.remove_user(id, user).await
    }
    async fn is_removed(&self, id: Uuid, user: Uuid) -> Result<bool> {
        self.check()?;
        self.inner.is_removed(id, user).await
    }
    async fn removed_users(&self, id: Uuid) -> Result<Vec<Uuid>> {
        self.check()?;
        self.inner.removed_users(id).await
    }
    async fn hub_heartbeat(&self, hub: &str, ttl: i64) -> Result<()> {
        self.check()?;
        self.inner.hub_heartbeat(hub, ttl).await
    }
    async fn add_participant(&self, p: &Participant) -> Result<()> {
        self.check()?;
        self.inner.add_participant(p).await
    }
    async fn remove_participant(&self, id: Uuid) -> Result<()> {
        self.check()?;
        self.inner.remove_participant(id).await
    }
    async fn remove_hub_participants(&self, hub: &str) -> Result<()> {
        self.check()?;
        self.inner.remove_hub_participants(hub).await
    }
    async fn connected_count(&self, id: Uuid) -> Result<i64> {
        self.inner.connected_count(id).await
    }
    async fn record_run(&self, run: NewRun) -> Result<Run> {
        self.check()?;
        self.inner.record_run(run).await
    }
    async fn recent_runs(&self, id: Uuid, limit: i64) -> Result<Vec<Run>> {
        self.inner.recent_runs(id, limit).await
    }
    async fn runs(&self, id: Uuid) -> Result<Vec<Run>> {
        self.check()?;
        self.inner.runs(id).await
    }
    async fn record_events(&self, events: &[NewEvent]) -> Result<()> {
        self.check()?;
        if self.fail_events.load(Ordering::SeqCst) {
            return Err(StorageError::Unavailable("test: events refused".into()));
        }
        self.inner.record_events(events).await
    }
    async fn events(&self, id: Uuid) -> Result<Vec<Event>> {
        self.check()?;
        self.inner.events(id).await
    }
    async fn erase_session(&self, id: Uuid) -> Result<bool> {
        self.check()?;
        self.inner.erase_session(id).await
    }
    async fn expired_sessions(
        &self,
        cutoff: time::OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<Uuid>> {
        self.check()?;
        self.inner.expired_sessions(cutoff, limit).await
    }
    async fn claim_webhooks(
        &self,
        now: time::OffsetDateTime,
        lease_secs: i64,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>> {
        self.check()?;
        self.inner.claim_webhooks(now, lease_secs, limit).await
    }
    async fn retry_webhook(&self, id: i64, at: time::OffsetDateTime) -> Result<()> {
        self.check()?;
        self.inner.retry_webhook(id, at).await
    }
    async fn finish_webhook(&self, id: i64) -> Result<()> {
        self.check()?;
        self.inner.finish_webhook(id).await
    }
}

// ---------------------------------------------------------------- a bus that can lose notices

/// A bus that loses what is published to the hubs' inboxes (their commit notices) while
/// `drop_inbox` is set, and counts what it lost.
pub struct LossyInbox {
    pub inner: Arc<dyn Bus>,
    pub drop_inbox: AtomicBool,
    pub dropped: AtomicUsize,
}

impl LossyInbox {
    pub fn new(inner: Arc<dyn Bus>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            drop_inbox: AtomicBool::new(false),
            dropped: AtomicUsize::new(0),
        })
    }
    fn loses(&self, channel: &str) -> bool {
        let lost = self.drop_inbox.load(Ordering::SeqCst)
            && channel.starts_with(duet_bus::relay::inbox("").as_str());
        if lost {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
        lost
    }
}

#[async_trait]
impl Bus for LossyInbox {
    async fn publish(
        &self,
        channel: &str,
        payload: bytes::Bytes,
    ) -> Result<(), duet_bus::BusError> {
        if self.loses(channel) {
            return Ok(());
        }
        self.inner.publish(channel, payload).await
    }
    async fn publish_many(
        &self,
        messages: &[(Arc<str>, bytes::Bytes)],
    ) -> Result<(), duet_bus::BusError> {
        let kept: Vec<_> = messages
            .iter()
            .filter(|(channel, _)| !self.loses(channel))
            .cloned()
            .collect();
        self.inner.publish_many(&kept).await
    }
    async fn subscribe_skipping(
        &self,
        channel: &str,
        skip: Option<duet_bus::Skip>,
    ) -> Result<duet_bus::Subscription, duet_bus::BusError> {
        self.inner.subscribe_skipping(channel, skip).await
    }
    async fn ping(&self) -> Result<(), duet_bus::BusError> {
        self.inner.ping().await
    }
    async fn set_with_ttl(
        &self,
        key: &str,
        value: &str,
        ttl_secs: u64,
    ) -> Result<(), duet_bus::BusError> {
        self.inner.set_with_ttl(key, value, ttl_secs).await
    }
    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, duet_bus::BusError> {
        self.inner.keys_with_prefix(prefix).await
    }
    async fn get(&self, key: &str) -> Result<Option<String>, duet_bus::BusError> {
        self.inner.get(key).await
    }
}

// ---------------------------------------------------------------- hubs

pub fn config() -> HubConfig {
    HubConfig {
        flush_interval: Duration::from_millis(5),
        snapshot_every: 50,
        idle_unload: Duration::from_millis(600),
        heartbeat_ttl: Duration::from_secs(3),
        max_message_bytes: 1_000_000,
        tokens: test_key(),
    }
}

/// The key the test hubs check tokens with.
pub fn test_key() -> duet_auth::TokenKey {
    duet_auth::TokenKey::new(TEST_SECRET).unwrap()
}

pub const TEST_SECRET: &str = "duet-hub-tests-secret-0123456789";

pub struct TestHub {
    pub core: Arc<Runtime>,
    pub net: Arc<Net>,
    next: AtomicUsize,
}

impl TestHub {
    pub async fn start(name: &str, storage: Arc<dyn Storage>, bus: Arc<dyn Bus>) -> Self {
        Self::start_with(name, storage, bus, config()).await
    }

    pub async fn start_with(
        name: &str,
        storage: Arc<dyn Storage>,
        bus: Arc<dyn Bus>,
        cfg: HubConfig,
    ) -> Self {
        let net = Arc::new(Net::default());
        let core = Runtime::start(
            cfg,
            format!("{name}-{}", Uuid::new_v4()),
            format!("http://{name}"),
            storage,
            bus,
            Arc::new(NetOut(net.clone())),
        )
        .await
        .unwrap();
        Self {
            core,
            net,
            next: AtomicUsize::new(0),
        }
    }

    pub fn connect(&self) -> (Arc<Connection>, Arc<TestSink>) {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let id: ConnId = format!("{}-c{n}", self.core.hub_id()).into();
        let sink = Arc::new(TestSink {
            id: id.clone(),
            net: self.net.clone(),
            inbox: Mutex::new(Vec::new()),
            disconnected: AtomicBool::new(false),
            conn: std::sync::OnceLock::new(),
        });
        self.net.conns.lock().insert(id, sink.clone());
        let conn = Arc::new(Connection::new(self.core.clone(), sink.clone()));
        let _ = sink.conn.set(Arc::downgrade(&conn));
        (conn, sink)
    }
}

pub async fn new_session(storage: &Arc<dyn Storage>) -> Session {
    storage
        .create_session(NewSession {
            code: SessionCode::generate(),
            title: Title::parse("t").unwrap(),
            language: Language::Python,
            lobby: false,
            password_hash: None,
        })
        .await
        .unwrap()
}

/// An ack that records its outcome.
/// What an ack was answered with (`Err` holds the error code).
pub type AckSlot = Arc<Mutex<Option<std::result::Result<Value, String>>>>;

pub fn recorder() -> (AckFn, AckSlot) {
    let slot = Arc::new(Mutex::new(None));
    let s = slot.clone();
    let ack: AckFn = Box::new(move |r| {
        *s.lock() = Some(r.map_err(|e| e.code.as_str().to_owned()));
    });
    (ack, slot)
}

/// Polls a condition for up to `secs`.
pub async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

pub fn errors(events: &[(String, Outgoing)]) -> Vec<String> {
    events
        .iter()
        .filter(|(e, _)| e == "error")
        .filter_map(|(_, p)| match p {
            Outgoing::Json(v) => v["code"].as_str().map(str::to_owned),
            _ => None,
        })
        .collect()
}

pub fn jsons<'a>(events: &'a [(String, Outgoing)], name: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|(e, _)| e == name)
        .filter_map(|(_, p)| match p {
            Outgoing::Json(v) => Some(v),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- a Yjs client

pub struct YClient {
    pub conn: Arc<Connection>,
    pub sink: Arc<TestSink>,
    pub doc: Doc,
    pub acks: Arc<Mutex<Vec<std::result::Result<Value, String>>>>,
    pub sent: usize,
    pub other: Vec<(String, Outgoing)>,
    /// The join ack.
    pub joined: Value,
}

impl YClient {
    pub fn user_id(&self) -> String {
        self.joined["user_id"].as_str().unwrap().to_owned()
    }

    pub async fn join(hub: &TestHub, code: &SessionCode, name: &str) -> Self {
        match Self::join_with(hub, code, name, json!({})).await {
            Ok(c) => c,
            Err(e) => panic!("join refused: {e}"),
        }
    }

    /// Joins with more fields in the payload (`token`, `user_id`); `Err` holds the error code.
    pub async fn join_with(
        hub: &TestHub,
        code: &SessionCode,
        name: &str,
        extra: Value,
    ) -> std::result::Result<Self, String> {
        let (conn, sink) = hub.connect();
        let doc = new_doc();
        doc.get_or_insert_text(TEXT_NAME);
        let (ack, slot) = recorder();
        let mut payload = json!({"session_code": code.as_str(), "name": name, "yjs": true});
        if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        conn.join(payload, Some(ack)).await;
        let r = slot.lock().take();
        let joined = match r {
            Some(Ok(joined)) => joined,
            Some(Err(code)) => return Err(code),
            None => return Err("no ack".into()),
        };
        let mut c = Self {
            conn,
            sink,
            doc,
            acks: Arc::new(Mutex::new(Vec::new())),
            sent: 0,
            other: Vec::new(),
            joined,
        };
        let sv = c.doc.transact().state_vector();
        c.send(protocol::encode_step1(&sv));
        c.pump();
        Ok(c)
    }

    pub fn send(&mut self, msg: Vec<u8>) {
        let acks = self.acks.clone();
        self.sent += 1;
        self.conn.yjs(
            &msg,
            Some(Box::new(move |r| {
                acks.lock().push(r.map_err(|e| e.code.as_str().to_owned()))
            })),
        );
    }

    /// Handles everything received: applies updates, answers step 1.
    pub fn pump(&mut self) {
        for (event, payload) in self.sink.take() {
            match (event.as_str(), payload) {
                ("yjs", Outgoing::Binary(b)) => {
                    for m in protocol::decode(&b, TEXT_NAME).expect("server sent a valid message") {
                        match m {
                            protocol::ClientMessage::Update { update, .. } => {
                                self.doc.transact_mut().apply_update(update).unwrap();
                            }
                            protocol::ClientMessage::SyncStep1(sv) => {
                                let diff = self.doc.transact().encode_state_as_update_v1(&sv);
                                self.send(protocol::encode_step2(&diff));
                            }
                            _ => {}
                        }
                    }
                }
                (e, p) => self.other.push((e.to_owned(), p)),
            }
        }
    }

    pub fn insert(&mut self, index: u32, s: &str) {
        let text = self.doc.get_or_insert_text(TEXT_NAME);
        let update = {
            let mut txn = self.doc.transact_mut();
            text.insert(&mut txn, index, s);
            txn.encode_update_v1()
        };
        self.send(protocol::encode_update(&update));
    }

    pub fn delete(&mut self, index: u32, len: u32) {
        let text = self.doc.get_or_insert_text(TEXT_NAME);
        let update = {
            let mut txn = self.doc.transact_mut();
            text.remove_range(&mut txn, index, len);
            txn.encode_update_v1()
        };
        self.send(protocol::encode_update(&update));
    }

    pub fn text(&self) -> String {
        let text = self.doc.get_or_insert_text(TEXT_NAME);
        text.get_string(&self.doc.transact())
    }

    pub fn len(&self) -> u32 {
        let text = self.doc.get_or_insert_text(TEXT_NAME);
        text.len(&self.doc.transact())
    }

    pub fn acked_ok(&self) -> usize {
        self.acks.lock().iter().filter(|r| r.is_ok()).count()
    }

    /// Pumps until the document reads `text` (up to 5 s).
    pub async fn sees(&mut self, text: &str) -> bool {
        eventually(5, || {
            self.pump();
            self.text() == text
        })
        .await
    }

    /// Waits until everything sent is acked (up to 5 s).
    pub async fn all_acked(&self) -> bool {
        eventually(5, || self.acked_ok() == self.sent).await
    }
}

/// The text of a document rebuilt from storage.
pub async fn stored_text(storage: &Arc<dyn Storage>, id: Uuid) -> String {
    let state = storage.load_document(id, DocKind::Code).await.unwrap();
    let doc = duet_realtime_hub::interview::doc_from_storage(id, &state);
    let text = doc.get_or_insert_text(TEXT_NAME);
    let s = text.get_string(&doc.transact());
    s
}

/// The session's plain text (`sessions.text`, the REST API's copy) once it equals `expected`, or
/// what it holds after 5 s (it is saved debounced, in batches).
pub async fn rest_text(storage: &Arc<dyn Storage>, id: Uuid, expected: &str) -> String {
    let mut text = String::new();
    for _ in 0..50 {
        text = storage.session_by_id(id).await.unwrap().unwrap().text;
        if text == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    text
}

/// Decodes an update into a fresh doc (sanity).
pub fn text_of_update(data: &[u8]) -> String {
    let doc = new_doc();
    let text = doc.get_or_insert_text(TEXT_NAME);
    doc.transact_mut()
        .apply_update(Update::decode_v1(data).unwrap())
        .unwrap();
    let s = text.get_string(&doc.transact());
    s
}

pub fn empty_sv() -> StateVector {
    StateVector::default()
}
