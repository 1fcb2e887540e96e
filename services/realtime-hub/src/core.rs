//! The transport-independent hub: the registry of live interviews, loading, background tasks
//! (group-commit writer, bus publisher, heartbeat) and shutdown. Connections come in through
//! [`Core::connect`]; the Socket.IO wiring (`socket.rs`) is a thin layer over it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use duet_bus::Bus;
use duet_domain::Session;
use duet_storage::{Participant, Storage};
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection::Connection;
use crate::ctx::{Ctx, HubConfig, Stats};
use crate::error::HubError;
use crate::interview::{doc_from_storage, worker, Interview};
use crate::limits::{PUBLISH_QUEUE, SHUTDOWN_FLUSH_TIMEOUT};
use crate::relay;
use crate::transport::{ConnSink, Outbound};
use crate::writer::{self, Writer, WriterCmd};

/// How long a first load waits for other hubs' presence reports when the database says that
/// participants are connected elsewhere (the reports arrive within a bus round trip).
const PRESENCE_WAIT: Duration = Duration::from_millis(300);

/// Publishing rounds in flight at once (pipelined on one connection, still in order).
const PUBLISH_PIPELINE: usize = 64;
/// Most queued bus messages taken in one publishing round (bounds one batch's size and the time
/// spent grouping before the first publish of the round goes out).
const PUBLISH_BATCH: usize = 1024;

/// The hub core. Cheap to clone.
#[derive(Clone)]
pub struct Core {
    pub(crate) ctx: Arc<Ctx>,
    shutting_down: Arc<AtomicBool>,
}

impl Core {
    /// Starts the background tasks and registers the hub.
    pub async fn start(
        cfg: HubConfig,
        hub_id: String,
        public_url: String,
        storage: Arc<dyn Storage>,
        bus: Arc<dyn Bus>,
        out: Arc<dyn Outbound>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !hub_id.is_empty() && hub_id.len() <= 255,
            "hub.id (DUET_HUB__ID) must be 1 to 255 bytes"
        );
        let (writer_tx, writer_rx) = mpsc::unbounded_channel();
        let (texts_tx, texts_rx) = mpsc::unbounded_channel();
        let (pub_tx, pub_rx) = mpsc::channel(PUBLISH_QUEUE);
        let tracker = TaskTracker::new();
        let ctx = Arc::new(Ctx {
            hub_id,
            public_url,
            cfg: cfg.clone(),
            storage: storage.clone(),
            bus: bus.clone(),
            out,
            writer: writer_tx,
            texts: texts_tx,
            publisher: pub_tx,
            registry: Mutex::new(HashMap::new()),
            tracker: tracker.clone(),
            cancel: CancellationToken::new(),
            db_ok: AtomicBool::new(true),
            stats: Stats::default(),
            orphan_rows: Mutex::new(Vec::new()),
            reloads: tokio::sync::Semaphore::new(1),
        });
        let w = Writer {
            storage: storage.clone(),
            flush_interval: cfg.flush_interval,
            ctx_stats: writer::stats_hook(Arc::downgrade(&ctx)),
        };
        tracker.spawn(writer::run(w, writer_rx));
        tracker.spawn(writer::save_texts(storage.clone(), texts_rx));
        tracker.spawn(publisher(bus.clone(), ctx.hub_id.clone(), pub_rx));
        if let Err(e) = beat(&ctx).await {
            tracing::warn!(error = %e, "first hub heartbeat failed; will retry");
        }
        tracker.spawn(heartbeat(ctx.clone()));
        tracker.spawn(inbox(ctx.clone()));
        tracing::info!(hub = %ctx.hub_id, url = %ctx.public_url, "realtime hub started");
        Ok(Self {
            ctx,
            shutting_down: Arc::new(AtomicBool::new(false)),
        })
    }

    /// This hub's id.
    pub fn hub_id(&self) -> &str {
        &self.ctx.hub_id
    }

    /// A new connection.
    pub fn connect(&self, sink: Arc<dyn ConnSink>) -> Arc<Connection> {
        Stats::add(&self.ctx.stats.connections, 1);
        Arc::new(Connection::new(self.ctx.clone(), sink))
    }

    /// Ready to serve: not shutting down, and the database and bus answer.
    pub async fn ready(&self) -> bool {
        if self.shutting_down.load(Ordering::Relaxed) {
            return false;
        }
        let (db, bus) = tokio::join!(self.ctx.storage.ping(), self.ctx.bus.ping());
        db.is_ok() && bus.is_ok()
    }

    /// Counters, for `/metrics`.
    pub fn stats(&self) -> &Stats {
        &self.ctx.stats
    }

    /// Loaded interviews and connected local participants.
    pub fn load(&self) -> (usize, usize) {
        let loaded = self.ctx.loaded();
        let users = loaded.iter().map(|iv| iv.lock().local.len()).sum();
        (loaded.len(), users)
    }

    /// A loaded interview, for tests.
    pub fn interview(&self, id: uuid::Uuid) -> Option<Arc<Interview>> {
        self.ctx.interview(id)
    }

    /// Stops every background task at once, without flushing or deregistering: what a crash looks
    /// like to the other hubs. For tests.
    #[doc(hidden)]
    pub fn halt(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.ctx.cancel.cancel();
    }

    /// Flushes every pending edit, deregisters the hub and removes its participant rows. Idempotent.
    pub async fn shutdown(&self) {
        if self.shutting_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let (done_tx, done_rx) = oneshot::channel();
        if self.ctx.writer.send(WriterCmd::Flush(done_tx)).is_ok()
            && tokio::time::timeout(SHUTDOWN_FLUSH_TIMEOUT, done_rx)
                .await
                .is_err()
        {
            tracing::error!("shutdown: pending edits could not be committed in time");
        }
        let texts: Vec<(uuid::Uuid, String)> = self
            .ctx
            .loaded()
            .iter()
            .filter_map(|iv| Some((iv.id, iv.text_to_save(std::time::Duration::ZERO)?)))
            .collect();
        match self.ctx.storage.set_texts(&texts).await {
            Ok(saved) if saved.len() < texts.len() => {
                // Rows the writer held at that moment (it has flushed by now): once more, for those.
                let rest: Vec<_> = texts
                    .into_iter()
                    .filter(|(id, _)| !saved.contains(id))
                    .collect();
                if let Err(e) = self.ctx.storage.set_texts(&rest).await {
                    tracing::warn!(error = %e, "shutdown: saving the plain texts failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "shutdown: saving the plain texts failed"),
        }
        if let Err(e) = self
            .ctx
            .storage
            .remove_hub_participants(&self.ctx.hub_id)
            .await
        {
            tracing::warn!(error = %e, "shutdown: removing participant rows failed");
        }
        // Expire the registration at once so the gateway stops routing here.
        let _ = self
            .ctx
            .bus
            .set_with_ttl(&relay::hub_key(&self.ctx.hub_id), &self.ctx.public_url, 1)
            .await;
        self.ctx.cancel.cancel();
        tracing::info!(hub = %self.ctx.hub_id, "realtime hub stopped");
    }
}

/// Finds the interview of a session, loading it on first use. Concurrent first joins share one load.
pub(crate) async fn interview_for(
    ctx: &Arc<Ctx>,
    session: &Session,
) -> Result<Arc<Interview>, HubError> {
    let cell = ctx.registry.lock().entry(session.id).or_default().clone();
    let iv = cell.get_or_try_init(|| load(ctx, session)).await?;
    Ok(iv.clone())
}

async fn load(ctx: &Arc<Ctx>, session: &Session) -> Result<Arc<Interview>, HubError> {
    let channel = relay::channel(session.id);
    // Subscribe before reading the database so nothing published in between is missed.
    let sub = match ctx.subscribe(&channel).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(session = %session.id, error = %e, "bus subscribe failed; the worker retries");
            None
        }
    };
    let state = ctx.storage.load_document(session.id).await?;
    let stored = state.updates.len();
    let had_snapshot = state.snapshot.is_some();
    // Built on a blocking thread: many interviews load at once when a hub starts or takes over, and
    // each replays its history (see `rebuild`).
    let id = session.id;
    let doc = tokio::task::spawn_blocking(move || doc_from_storage(id, &state))
        .await
        .map_err(|e| {
            tracing::error!(session = %id, error = %e, "loading the stored document failed");
            HubError::internal()
        })?;
    let iv = Interview::new(
        ctx.clone(),
        session.id,
        session.code.clone(),
        session.language,
        doc,
        stored,
    );
    if sub.is_none() {
        iv.lock().resync_needed = true;
    }
    tracing::debug!(session = %session.id, snapshot = had_snapshot, updates = stored, "interview loaded");
    let subscribed = sub.is_some();
    ctx.tracker.spawn(worker::run(iv.clone(), sub));
    // Others are connected through other hubs: give their presence reports (asked for by the worker
    // at start) a moment, so the first joiner here sees the right participants and count.
    let elsewhere = ctx.storage.connected_count(session.id).await;
    if subscribed && matches!(elsewhere, Ok(n) if n > 0) {
        let deadline = tokio::time::Instant::now() + PRESENCE_WAIT;
        while !iv.has_remote() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    tracing::debug!(session = %session.id, ?elsewhere, remote = iv.has_remote(), "presence on load");
    Ok(iv)
}

/// Publishes queued bus messages in order, several in flight at once.
///
/// Each round takes everything queued (up to [`PUBLISH_BATCH`]) and publishes one payload per
/// channel — the channel's messages in order, packed into one [`relay::batch`] when there are
/// several — all of the round's payloads in one [`Bus::publish_many`] (one Redis pipeline, one
/// round trip). While earlier rounds are on their way (up to [`PUBLISH_PIPELINE`]), the next
/// round's messages queue up, so the busier the hub the more edits share one round; an idle hub
/// still publishes each message at once. Order per channel is kept: rounds are taken in order, a
/// channel appears once per round, and rounds are issued in order on one connection.
async fn publisher(bus: Arc<dyn Bus>, hub_id: String, mut rx: mpsc::Receiver<(Arc<str>, Bytes)>) {
    let mut queued: Vec<(Arc<str>, Bytes)> = Vec::new();
    let rounds = futures_util::stream::poll_fn(move |cx| {
        match rx.poll_recv_many(cx, &mut queued, PUBLISH_BATCH) {
            std::task::Poll::Ready(0) => std::task::Poll::Ready(None),
            std::task::Poll::Ready(_) => {
                std::task::Poll::Ready(Some(group_by_channel(&hub_id, &mut queued)))
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    });
    let mut failures = 0u64;
    let mut sends = rounds
        .map(|round| {
            let bus = bus.clone();
            async move { bus.publish_many(&round).await }
        })
        .buffered(PUBLISH_PIPELINE);
    while let Some(r) = sends.next().await {
        if let Err(e) = r {
            failures += 1;
            if failures.is_power_of_two() {
                tracing::warn!(error = %e, failures, "bus publish failed");
            }
        }
    }
}

/// One payload per channel, in the order the channels first appear; each channel's messages keep
/// their order.
fn group_by_channel(hub_id: &str, queued: &mut Vec<(Arc<str>, Bytes)>) -> Vec<(Arc<str>, Bytes)> {
    let mut groups: Vec<(Arc<str>, Vec<Bytes>)> = Vec::new();
    let mut index: HashMap<Arc<str>, usize> = HashMap::new();
    for (channel, data) in queued.drain(..) {
        match index.get(&channel) {
            Some(&i) => groups[i].1.push(data),
            None => {
                index.insert(channel.clone(), groups.len());
                groups.push((channel, vec![data]));
            }
        }
    }
    groups
        .into_iter()
        .map(|(channel, parts)| (channel, relay::batch(hub_id, parts)))
        .collect()
}

/// How long the inbox waits before subscribing again when the bus refused.
const INBOX_RETRY: Duration = Duration::from_secs(1);

/// Reads this hub's inbox ([`relay::inbox`]): the other hubs' commit notices for the interviews
/// shared with them. A notice lost while the bus was away is repeated by its origin once that
/// interview goes quiet, or made good by the takeover (`REMOTE_COMMIT_TAKEOVER`).
async fn inbox(ctx: Arc<Ctx>) {
    let channel = relay::inbox(&ctx.hub_id);
    loop {
        let subscribed = tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            s = ctx.bus.subscribe(&channel) => s,
        };
        let mut sub = match subscribed {
            Ok(sub) => sub,
            Err(e) => {
                tracing::debug!(error = %e, "inbox subscribe failed; retrying");
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return,
                    _ = tokio::time::sleep(INBOX_RETRY) => continue,
                }
            }
        };
        loop {
            let event = tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                e = sub.recv() => e,
            };
            match event {
                Some(duet_bus::BusEvent::Message(raw)) => {
                    for (origin, msg) in relay::decode_all(&raw) {
                        let relay::BusMessage::Commits { entries } = msg else {
                            continue;
                        };
                        for (id, upto) in entries {
                            if let Some(iv) = ctx.interview(id) {
                                iv.remote_committed(&origin, upto);
                            }
                        }
                    }
                }
                Some(duet_bus::BusEvent::Missed) => {}
                None => break,
            }
        }
    }
}

/// Refreshes the registration every third of its TTL, re-announces presence and retries participant
/// rows that could not be written.
async fn heartbeat(ctx: Arc<Ctx>) {
    let every = ctx.cfg.heartbeat_ttl / 3;
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = beat(&ctx).await {
            tracing::warn!(error = %e, "hub heartbeat failed");
        }
        for iv in ctx.loaded() {
            if iv.has_locals() {
                iv.publish_presence();
            }
            for (row_id, p) in iv.unsaved_rows() {
                if ctx.storage.add_participant(&p).await.is_ok() {
                    iv.row_saved(row_id);
                }
            }
        }
        let orphans = std::mem::take(&mut *ctx.orphan_rows.lock());
        for row in orphans {
            if ctx.storage.remove_participant(row).await.is_err() {
                ctx.orphan_rows.lock().push(row);
            }
        }
    }
}

async fn beat(ctx: &Ctx) -> anyhow::Result<()> {
    let ttl = ctx.cfg.heartbeat_ttl.as_secs().max(1);
    let key = relay::hub_key(&ctx.hub_id);
    let (db, bus) = tokio::join!(
        ctx.storage.hub_heartbeat(&ctx.hub_id, ttl as i64),
        ctx.bus.set_with_ttl(&key, &ctx.public_url, ttl)
    );
    db.context("hub heartbeat in the database")?;
    bus.context("hub registration in the bus")?;
    Ok(())
}

/// The participants row of a local participant.
pub(crate) fn participant_row(
    ctx: &Ctx,
    session_id: uuid::Uuid,
    row_id: uuid::Uuid,
    user: &crate::presence::UserInfo,
) -> Participant {
    Participant {
        id: row_id,
        session_id,
        user_id: user.user_id,
        name: user.name.clone(),
        color: user.color.clone(),
        hub_id: ctx.hub_id.clone(),
    }
}
