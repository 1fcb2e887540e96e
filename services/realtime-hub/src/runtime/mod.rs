//! The runtime around the interview cores: the only part of the hub that knows tokio.
//!
//! - [`services`]: what every part shares (configuration, backends, queues, counters);
//! - [`live`]: one live interview — its core under a lock, the connections it serves, and the
//!   executor of the core's effects;
//! - [`registry`]: the live interviews and how one is loaded;
//! - [`worker`]: one task per live interview (bus subscription, ticks, resyncs, snapshots, text
//!   saves, unloading);
//! - [`writer`]: group commit, reporting commits by interview id to one listener;
//! - [`events`]: the activity record's batched writer (never holds up an interview);
//! - [`publisher`]: the bus publisher; [`cluster`]: this hub's inbox and heartbeat.
//!
//! Each file uses only those listed before it; [`Runtime`] (here) puts them together.

pub mod cluster;
pub mod events;
pub mod live;
pub mod publisher;
pub mod registry;
pub mod services;
pub mod worker;
pub mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use duet_bus::Bus;
use duet_domain::Session;
use duet_storage::Storage;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::error::HubError;
use crate::interview::Interview;
use crate::limits::{EVENT_QUEUE, PUBLISH_QUEUE, SHUTDOWN_FLUSH_TIMEOUT};
use crate::metrics::Stats;
use crate::transport::Outbound;
use live::Live;
use registry::Registry;
pub use services::{HubConfig, Services};
use writer::{CommitListener, Committed, WriterCmd};

/// How long a first load waits for other hubs' presence reports when the database says that
/// participants are connected elsewhere (the reports arrive within a bus round trip).
const PRESENCE_WAIT: Duration = Duration::from_millis(300);

/// One hub's runtime.
pub struct Runtime {
    pub services: Arc<Services>,
    pub registry: Arc<Registry>,
    shutting_down: AtomicBool,
}

impl Runtime {
    /// Starts the background tasks (writer, text saver, publisher, heartbeat, inbox) and registers
    /// the hub.
    pub async fn start(
        cfg: HubConfig,
        hub_id: String,
        public_url: String,
        storage: Arc<dyn Storage>,
        bus: Arc<dyn Bus>,
        out: Arc<dyn Outbound>,
    ) -> anyhow::Result<Arc<Self>> {
        anyhow::ensure!(
            !hub_id.is_empty() && hub_id.len() <= 255,
            "hub.id (DUET_HUB__ID) must be 1 to 255 bytes"
        );
        let (writer_tx, writer_rx) = mpsc::unbounded_channel();
        let (texts_tx, texts_rx) = mpsc::unbounded_channel();
        let (pub_tx, pub_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let tracker = TaskTracker::new();
        let services = Arc::new(Services {
            hub_id,
            public_url,
            cfg: cfg.clone(),
            storage: storage.clone(),
            bus: bus.clone(),
            out,
            writer: writer_tx,
            texts: texts_tx,
            events: events::EventQueue(events_tx),
            events_closed: AtomicBool::new(false),
            publisher: pub_tx,
            tracker: tracker.clone(),
            cancel: CancellationToken::new(),
            db_ok: AtomicBool::new(true),
            stats: Stats::default(),
            orphan_rows: Mutex::new(Vec::new()),
            reloads: tokio::sync::Semaphore::new(1),
        });
        let registry = Arc::new(Registry::default());
        let listener = Arc::new(Listener {
            services: Arc::downgrade(&services),
            registry: Arc::downgrade(&registry),
        });
        tracker.spawn(writer::run(
            storage.clone(),
            cfg.flush_interval,
            listener,
            writer_rx,
        ));
        tracker.spawn(writer::save_texts(storage.clone(), texts_rx));
        tracker.spawn(events::run(
            storage.clone(),
            Arc::downgrade(&services),
            services.cancel.clone(),
            events_rx,
        ));
        tracker.spawn(publisher::run(bus.clone(), services.clone(), pub_rx));
        if let Err(e) = cluster::beat(&services).await {
            tracing::warn!(error = %e, "first hub heartbeat failed; will retry");
        }
        tracker.spawn(cluster::heartbeat(services.clone(), registry.clone()));
        tracker.spawn(cluster::inbox(services.clone(), registry.clone()));
        tracing::info!(hub = %services.hub_id, url = %services.public_url, "realtime hub started");
        Ok(Arc::new(Self {
            services,
            registry,
            shutting_down: AtomicBool::new(false),
        }))
    }

    /// This hub's id.
    pub fn hub_id(&self) -> &str {
        &self.services.hub_id
    }

    /// Ready to serve: not shutting down, and the database and bus answer.
    pub async fn ready(&self) -> bool {
        if self.shutting_down.load(Ordering::Relaxed) {
            return false;
        }
        let s = &self.services;
        let (db, bus) = tokio::join!(s.storage.ping(), s.bus.ping());
        db.is_ok() && bus.is_ok()
    }

    /// Loaded interviews and connected local participants.
    pub fn load(&self) -> (usize, usize) {
        let loaded = self.registry.loaded();
        let users = loaded
            .iter()
            .map(|iv| iv.read(Interview::local_count))
            .sum();
        (loaded.len(), users)
    }

    /// A loaded interview.
    pub fn interview(&self, id: Uuid) -> Option<Arc<Live>> {
        self.registry.get(id)
    }

    /// Finds the interview of a session, loading it on first use (and starting its worker).
    /// Concurrent first joins share one load.
    pub async fn interview_for(&self, session: &Session) -> Result<Arc<Live>, HubError> {
        let cell = self.registry.slot(session.id);
        let iv = cell
            .get_or_try_init(|| async {
                let (iv, sub) = registry::load(&self.services, session).await?;
                let subscribed = sub.is_some();
                self.services
                    .tracker
                    .spawn(worker::run(iv.clone(), self.registry.clone(), sub));
                // Others are connected through other hubs: give their presence reports (asked for
                // by the worker at start) a moment, so the first joiner here sees the right
                // participants and count.
                let elsewhere = self.services.storage.connected_count(session.id).await;
                if subscribed && matches!(elsewhere, Ok(n) if n > 0) {
                    let deadline = tokio::time::Instant::now() + PRESENCE_WAIT;
                    while !iv.read(Interview::has_remote) && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                Ok::<_, HubError>(iv)
            })
            .await?;
        Ok(iv.clone())
    }

    /// Prometheus text of the hub's metrics.
    pub fn metrics(&self) -> String {
        let (interviews, users) = self.load();
        let db = self.services.db_ok.load(Ordering::Relaxed);
        self.services.stats.render(interviews, users, db)
    }

    /// Stops every background task at once, without flushing or deregistering: what a crash looks
    /// like to the other hubs. For tests.
    #[doc(hidden)]
    pub fn halt(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.services.cancel.cancel();
    }

    /// Removes the hub's registration at once (the first step of a drain): the gateways send it no
    /// new interviews.
    pub async fn deregister(&self) {
        cluster::deregister(&self.services).await;
    }

    /// Flushes every pending edit, saves the plain texts, removes this hub's participant rows and
    /// deregisters. Idempotent.
    pub async fn shutdown(&self) {
        if self.shutting_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let s = &self.services;
        let (done_tx, done_rx) = oneshot::channel();
        if s.writer.send(WriterCmd::Flush(done_tx)).is_ok()
            && tokio::time::timeout(SHUTDOWN_FLUSH_TIMEOUT, done_rx)
                .await
                .is_err()
        {
            tracing::error!("shutdown: pending edits could not be committed in time");
        }
        // The connections still here are about to be dropped: their leaving goes into the record
        // now (once the hub has stopped, nothing records it).
        let at = time::OffsetDateTime::now_utc();
        for iv in self.registry.loaded() {
            for user in iv.read(Interview::local_users) {
                s.record_event(duet_storage::NewEvent {
                    session_id: iv.id,
                    user_id: Some(user.user_id),
                    user_name: user.name,
                    kind: "leave".into(),
                    data: "{}".into(),
                    at,
                });
            }
        }
        // The connections' own leaving, when their sockets close later, would be a second one.
        s.events_closed.store(true, Ordering::Relaxed);
        if let Some(flushed) = s.events.flush() {
            if tokio::time::timeout(SHUTDOWN_FLUSH_TIMEOUT, flushed)
                .await
                .is_err()
            {
                tracing::warn!("shutdown: activity events could not be recorded in time");
            }
        }
        let now = Instant::now();
        let texts: Vec<(Uuid, String)> = self
            .registry
            .loaded()
            .iter()
            .filter_map(|iv| {
                let text = iv.run(|c, _, _| c.take_text_to_save(now, Duration::ZERO))?;
                Some((iv.id, text))
            })
            .collect();
        match s.storage.set_texts(&texts).await {
            Ok(saved) if saved.len() < texts.len() => {
                // Rows the writer held at that moment (it has flushed by now): once more, for those.
                let rest: Vec<_> = texts
                    .into_iter()
                    .filter(|(id, _)| !saved.contains(id))
                    .collect();
                if let Err(e) = s.storage.set_texts(&rest).await {
                    tracing::warn!(error = %e, "shutdown: saving the plain texts failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "shutdown: saving the plain texts failed"),
        }
        if let Err(e) = s.storage.remove_hub_participants(&s.hub_id).await {
            tracing::warn!(error = %e, "shutdown: removing participant rows failed");
        }
        // Expire the registration (again: a plain shutdown without a drain comes here first).
        cluster::deregister(s).await;
        s.cancel.cancel();
        tracing::info!(hub = %s.hub_id, "realtime hub stopped");
    }
}

/// Receives the writer's reports and hands each to its interview, by id.
struct Listener {
    services: Weak<Services>,
    registry: Weak<Registry>,
}

impl CommitListener for Listener {
    fn waited(&self, waited: &[std::time::Duration]) {
        if let Some(s) = self.services.upgrade() {
            for &w in waited {
                s.stats.commit_latency.observe(w);
            }
        }
    }

    fn committed(&self, done: &[Committed]) {
        let (Some(s), Some(registry)) = (self.services.upgrade(), self.registry.upgrade()) else {
            return;
        };
        s.db_ok.store(true, Ordering::Relaxed);
        let n: u64 = done.iter().map(|d| d.count).sum();
        Stats::add(&s.stats.updates_committed, n);
        Stats::add(&s.stats.commit_batches, 1);
        let mut notices = Vec::new();
        for d in done {
            if let Some(iv) = registry.get(d.session) {
                iv.committed(d.upto, d.count, &mut notices);
            }
        }
        if !notices.is_empty() {
            s.send_commit_notices(notices);
        }
    }

    fn unavailable(&self) {
        let (Some(s), Some(registry)) = (self.services.upgrade(), self.registry.upgrade()) else {
            return;
        };
        s.db_ok.store(false, Ordering::Relaxed);
        // The database is the same for every interview: everyone hears it, not only those whose
        // edits were in the failing batch.
        for iv in registry.loaded() {
            iv.run(|c, _, fx| c.on_unavailable(fx));
        }
    }

    fn failed(&self, session: Uuid) {
        if let Some(iv) = self.registry.upgrade().and_then(|r| r.get(session)) {
            iv.run(|c, _, fx| c.on_write_failed(fx));
        }
    }
}
