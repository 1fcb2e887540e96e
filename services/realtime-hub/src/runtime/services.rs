//! What the parts of one hub's runtime share: its identity and configuration, the backends, the
//! queues of the background tasks (writer, text saver, publisher) and the counters. A live
//! interview holds this, not the registry of interviews.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use duet_bus::Bus;
use duet_storage::Storage;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::events::EventQueue;
use super::writer::{SaveText, WriteItem, WriterCmd};
use crate::metrics::Stats;
use crate::transport::Outbound;
use duet_bus::relay::{self, BusMessage};

/// The hub's settings, resolved once from `duet_config::Settings`.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Group commit: the longest an update waits before its batch is flushed.
    pub flush_interval: Duration,
    /// Write a snapshot after this many committed updates of an interview.
    pub snapshot_every: u64,
    /// Unload an interview after this long without local participants.
    pub idle_unload: Duration,
    /// Registration TTL in Redis and the hubs table.
    pub heartbeat_ttl: Duration,
    /// Largest `yjs` message / `code_change` text accepted.
    pub max_message_bytes: usize,
    /// What `join_session`'s tokens are checked with (`SECRET_KEY`).
    pub tokens: duet_auth::TokenKey,
}

pub struct Services {
    pub hub_id: String,
    /// This hub's base URL, registered in Redis for the gateway.
    pub public_url: String,
    pub cfg: HubConfig,
    pub storage: Arc<dyn Storage>,
    pub bus: Arc<dyn Bus>,
    pub out: Arc<dyn Outbound>,
    pub(super) writer: mpsc::UnboundedSender<WriterCmd>,
    /// Plain texts to save, batched by [`super::writer::save_texts`].
    pub(super) texts: mpsc::UnboundedSender<SaveText>,
    /// Activity events for the interview record, stored in batches by [`super::events::run`].
    pub(super) events: EventQueue,
    /// Set by shutdown once it has recorded everyone's leaving: later events are not taken.
    pub(super) events_closed: AtomicBool,
    /// Outgoing bus messages `(channel, bytes)`, published in order by one task.
    pub(super) publisher: mpsc::Sender<(Arc<str>, Bytes)>,
    pub tracker: TaskTracker,
    pub cancel: CancellationToken,
    /// False while commits fail because the database is unavailable.
    pub db_ok: AtomicBool,
    pub stats: Stats,
    /// Participant rows whose removal failed (database down); retried by the heartbeat.
    pub orphan_rows: Mutex<Vec<Uuid>>,
    /// Snapshots and resyncs read a whole interview back from the database and replay it (on a
    /// blocking thread): they take turns, one at a time per hub, so that when many interviews come
    /// due together they neither hold every pooled connection (the writer's commits, and so the
    /// acks, would wait behind them) nor crowd the core.
    pub reloads: tokio::sync::Semaphore,
}

impl Services {
    /// Queues a write for the group-commit writer.
    pub(crate) fn write(&self, item: WriteItem) {
        if self.writer.send(WriterCmd::Write(item)).is_err() {
            tracing::error!("writer is gone; update not stored");
        }
    }

    /// Queues an activity event for the interview record. Never waits: when the queue is full the
    /// event is dropped and counted.
    pub(crate) fn record_event(&self, event: duet_storage::NewEvent) {
        if self
            .events_closed
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        if !self.events.record(event) {
            Stats::add(&self.stats.events_failed, 1);
        }
    }

    /// Queues a bus message. Never blocks: when the queue is full the message is dropped (the bus
    /// is at-most-once anyway) and false is returned, so the interview resyncs.
    pub(crate) fn publish(&self, channel: &Arc<str>, data: Bytes) -> bool {
        match self.publisher.try_send((channel.clone(), data)) {
            Ok(()) => true,
            Err(_) => {
                Stats::add(&self.stats.bus_dropped, 1);
                false
            }
        }
    }

    /// Tells other hubs how far this hub's edits of the interviews they share are committed:
    /// `(interview, committed up to, hubs to tell)`, sent as one [`BusMessage::Commits`] per hub to
    /// its inbox.
    pub(crate) fn send_commit_notices(&self, notices: Vec<(Uuid, u64, Vec<String>)>) {
        let mut by_hub: HashMap<String, Vec<(Uuid, u64)>> = HashMap::new();
        for (id, upto, hubs) in notices {
            for hub in hubs {
                by_hub.entry(hub).or_default().push((id, upto));
            }
        }
        for (hub, entries) in by_hub {
            let msg = BusMessage::Commits { entries }.encode(&self.hub_id);
            self.publish(&Arc::from(relay::inbox(&hub)), msg);
        }
    }

    /// Saves an interview's plain text with the next batch (directly if the batcher has stopped);
    /// true once it is stored.
    pub(crate) async fn save_text(&self, session: Uuid, text: String) -> bool {
        let (done, saved) = oneshot::channel();
        match self.texts.send(SaveText {
            session,
            text,
            done,
        }) {
            Ok(()) => saved.await.unwrap_or(false),
            Err(mpsc::error::SendError(t)) => {
                self.storage.set_text(t.session, &t.text).await.is_ok()
            }
        }
    }

    /// Subscribes to an interview's channel, leaving out this hub's own messages (Redis delivers
    /// them back; they would only be decoded to be ignored).
    pub(crate) async fn subscribe(
        &self,
        channel: &str,
    ) -> Result<duet_bus::Subscription, duet_bus::BusError> {
        let hub_id = self.hub_id.clone();
        let own: duet_bus::Skip = Arc::new(move |raw: &[u8]| relay::is_from(raw, &hub_id));
        self.bus.subscribe_skipping(channel, Some(own)).await
    }
}
