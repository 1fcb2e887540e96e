//! The activity record's writer: one task per hub stores the interviews' activity events (joins,
//! leaves, language changes, pastes, leaving the page and coming back) with
//! [`Storage::record_events`], in batches.
//!
//! The record must never hold up the interview: events are queued without waiting
//! ([`EventQueue::record`]; a full queue drops the event and counts it), and stored every
//! [`EVENT_FLUSH_INTERVAL`] or once [`EVENT_BATCH`] have queued. A batch the database cannot take
//! because it is unavailable is retried a few times ([`EVENT_ATTEMPTS`], backing off from
//! [`EVENT_RETRY`]) while new events keep queuing; one refused for another reason (an interview
//! erased meanwhile, a value it cannot hold) is stored interview by interview, so one bad interview
//! loses only its own events. Whatever is finally not stored is logged and counted
//! (`duet_hub_events_failed_total`), never retried for ever.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use duet_storage::{NewEvent, Storage, StorageError};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::services::Services;
use crate::limits::{EVENT_ATTEMPTS, EVENT_BATCH, EVENT_FLUSH_INTERVAL, EVENT_RETRY};
use crate::metrics::Stats;

pub enum EventCmd {
    Record(NewEvent),
    /// Store everything queued before this command, then answer.
    Flush(oneshot::Sender<()>),
}

/// The sending side, kept by [`Services`].
pub struct EventQueue(pub(super) mpsc::Sender<EventCmd>);

impl EventQueue {
    /// Queues an event; false when the queue is full or the writer has stopped (it is lost).
    pub fn record(&self, event: NewEvent) -> bool {
        self.0.try_send(EventCmd::Record(event)).is_ok()
    }

    /// Asks the writer to store everything queued so far; the receiver hears when it has (None:
    /// the queue is full or the writer has stopped).
    pub fn flush(&self) -> Option<oneshot::Receiver<()>> {
        let (done, flushed) = oneshot::channel();
        self.0.try_send(EventCmd::Flush(done)).ok()?;
        Some(flushed)
    }
}

/// Runs the writer until the queue closes or the hub is halted.
pub(super) async fn run(
    storage: Arc<dyn Storage>,
    services: Weak<Services>,
    cancel: CancellationToken,
    mut rx: mpsc::Receiver<EventCmd>,
) {
    let mut batch: Vec<NewEvent> = Vec::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        // Wait for the first event, then collect for one interval (or until a batch is full, or
        // someone asks for a flush).
        let first = tokio::select! {
            _ = cancel.cancelled() => return,
            cmd = rx.recv() => cmd,
        };
        let Some(first) = first else { return };
        let deadline = Instant::now() + EVENT_FLUSH_INTERVAL;
        let mut next = Some(first);
        loop {
            match next.take() {
                Some(EventCmd::Record(e)) => batch.push(e),
                Some(EventCmd::Flush(done)) => flushes.push(done),
                None => {}
            }
            if batch.len() >= EVENT_BATCH || !flushes.is_empty() {
                break;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(deadline) => break,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => next = Some(cmd),
                    None => break,
                },
            }
        }
        if !batch.is_empty() {
            let (stored, lost) = store(&storage, &cancel, std::mem::take(&mut batch)).await;
            if let Some(s) = services.upgrade() {
                Stats::add(&s.stats.events_recorded, stored);
                Stats::add(&s.stats.events_failed, lost);
            }
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Stores one batch: `(stored, lost)` event counts.
async fn store(
    storage: &Arc<dyn Storage>,
    cancel: &CancellationToken,
    batch: Vec<NewEvent>,
) -> (u64, u64) {
    let n = batch.len() as u64;
    let mut wait = EVENT_RETRY;
    for attempt in 1..=EVENT_ATTEMPTS {
        match storage.record_events(&batch).await {
            Ok(()) => return (n, 0),
            Err(StorageError::Unavailable(e)) => {
                if attempt == EVENT_ATTEMPTS {
                    tracing::warn!(error = %e, events = n, "activity events not recorded: the database is unavailable");
                    return (0, n);
                }
                tokio::select! {
                    _ = cancel.cancelled() => return (0, n),
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::warn!(error = %e, events = n, "activity batch refused; storing it interview by interview");
                return store_apart(storage, batch).await;
            }
        }
    }
    (0, n)
}

/// Stores a refused batch one interview at a time (in their order of appearance).
async fn store_apart(storage: &Arc<dyn Storage>, batch: Vec<NewEvent>) -> (u64, u64) {
    let mut order: Vec<Uuid> = Vec::new();
    let mut groups: HashMap<Uuid, Vec<NewEvent>> = HashMap::new();
    for e in batch {
        if !groups.contains_key(&e.session_id) {
            order.push(e.session_id);
        }
        groups.entry(e.session_id).or_default().push(e);
    }
    let (mut stored, mut lost) = (0, 0);
    for id in order {
        let group = groups.remove(&id).unwrap_or_default();
        let n = group.len() as u64;
        match storage.record_events(&group).await {
            Ok(()) => stored += n,
            Err(e) => {
                tracing::warn!(session = %id, error = %e, events = n, "activity events not recorded");
                lost += n;
            }
        }
    }
    (stored, lost)
}
