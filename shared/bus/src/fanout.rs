//! Local fan-out shared by both backends: who is subscribed to which channel, and how an event reaches
//! each subscriber without a slow one holding up the others.
//!
//! Every subscriber has its own bounded queue of [`SUBSCRIPTION_QUEUE_CAPACITY`] messages plus one slot
//! that only [`BusEvent::Missed`] may take. A message is queued only while at least two slots are free,
//! so when a queue is full its last entry is always a `Missed` the subscriber has not read yet: every
//! message dropped for lack of room is followed, in what the subscriber reads, by a `Missed`. That is
//! the contract (`Missed` means "something before this point may be lost, resync"), with no task or
//! timer per subscriber. `Missed` may repeat; a second one is harmless.
//!
//! All sends to one subscriber happen under the registry lock (or from the single Redis reader task),
//! so the capacity check and the send cannot race with another sender.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::{BusEvent, Skip, SUBSCRIPTION_QUEUE_CAPACITY};

/// The local subscribers of every channel that has at least one.
#[derive(Default)]
pub(crate) struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    channels: HashMap<String, Vec<Subscriber>>,
}

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<BusEvent>,
    skip: Option<Skip>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The lock is never held across code that can panic half-way through an update, so a poisoned
        // lock still guards a consistent map.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a subscriber to `channel` (not offered the messages `skip` matches); returns its id (for
    /// [`Registry::remove`]) and its queue.
    pub(crate) fn add(&self, channel: &str, skip: Option<Skip>) -> (u64, mpsc::Receiver<BusEvent>) {
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_QUEUE_CAPACITY + 1);
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner
            .channels
            .entry(channel.to_owned())
            .or_default()
            .push(Subscriber { id, tx, skip });
        (id, rx)
    }

    /// Removes a subscriber; returns true when it was the channel's last one.
    pub(crate) fn remove(&self, channel: &str, id: u64) -> bool {
        let mut inner = self.lock();
        let Some(subscribers) = inner.channels.get_mut(channel) else {
            return false;
        };
        subscribers.retain(|s| s.id != id);
        if subscribers.is_empty() {
            inner.channels.remove(channel);
            true
        } else {
            false
        }
    }

    /// Whether `channel` has at least one local subscriber.
    pub(crate) fn contains(&self, channel: &str) -> bool {
        self.lock().channels.contains_key(channel)
    }

    /// The number of local subscriptions on `channel`.
    pub(crate) fn subscriber_count(&self, channel: &str) -> usize {
        self.lock().channels.get(channel).map_or(0, Vec::len)
    }

    /// Every channel with at least one local subscriber.
    pub(crate) fn channels(&self) -> Vec<String> {
        self.lock().channels.keys().cloned().collect()
    }

    /// Hands a published message to every subscriber of `channel` (the same bytes to each).
    pub(crate) fn deliver(&self, channel: &str, payload: &Bytes) {
        let inner = self.lock();
        for subscriber in inner.channels.get(channel).into_iter().flatten() {
            if !subscriber.skip.as_ref().is_some_and(|skip| skip(payload)) {
                offer_message(&subscriber.tx, payload);
            }
        }
    }

    /// Tells every subscriber of the given channels that messages may have been missed.
    pub(crate) fn mark_missed<'a>(&self, channels: impl IntoIterator<Item = &'a String>) {
        let inner = self.lock();
        for channel in channels {
            for subscriber in inner.channels.get(channel.as_str()).into_iter().flatten() {
                offer_missed(&subscriber.tx);
            }
        }
    }
}

/// Queues a message if that leaves the slot reserved for `Missed` free; otherwise drops it and queues
/// `Missed` in that slot (unless a `Missed` already fills it).
fn offer_message(tx: &mpsc::Sender<BusEvent>, payload: &Bytes) {
    // `capacity()` can only grow behind our back (the receiver reading), never shrink: we are the only
    // sender at this moment.
    match tx.capacity() {
        0 => {} // full, and by construction its last entry is an unread `Missed`
        1 => offer_missed(tx),
        _ => {
            // Cannot fail for lack of room (checked above); a closed receiver is being dropped and its
            // guard removes it from the registry.
            let _ = tx.try_send(BusEvent::Message(payload.clone()));
        }
    }
}

/// Queues `Missed` if there is any room. When there is none, the queue already ends with an unread
/// `Missed` (messages never take the last slot), which says the same thing.
fn offer_missed(tx: &mpsc::Sender<BusEvent>) {
    let _ = tx.try_send(BusEvent::Missed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(rx: &mut mpsc::Receiver<BusEvent>) -> Vec<BusEvent> {
        let mut events = Vec::new();
        while let Ok(event) = rx.try_recv() {
            events.push(event);
        }
        events
    }

    #[test]
    fn overflow_queues_missed_after_the_last_message_that_fitted() {
        let registry = Registry::default();
        let (_, mut rx) = registry.add("c", None);
        let total = SUBSCRIPTION_QUEUE_CAPACITY + 10;
        for i in 0..total {
            registry.deliver("c", &Bytes::from(i.to_string()));
        }
        let events = drain(&mut rx);
        assert_eq!(events.len(), SUBSCRIPTION_QUEUE_CAPACITY + 1);
        for (i, event) in events[..SUBSCRIPTION_QUEUE_CAPACITY].iter().enumerate() {
            assert_eq!(event, &BusEvent::Message(Bytes::from(i.to_string())));
        }
        assert_eq!(events[SUBSCRIPTION_QUEUE_CAPACITY], BusEvent::Missed);
    }

    #[test]
    fn a_message_dropped_after_a_partial_drain_is_still_followed_by_missed() {
        let registry = Registry::default();
        let (_, mut rx) = registry.add("c", None);
        for i in 0..=SUBSCRIPTION_QUEUE_CAPACITY {
            registry.deliver("c", &Bytes::from(i.to_string()));
        }
        // Queue: CAPACITY messages + Missed. Read one message: one slot frees up, which is the reserved
        // slot again, so the next message is dropped and a second Missed queued behind it.
        assert!(matches!(rx.try_recv(), Ok(BusEvent::Message(_))));
        registry.deliver("c", &Bytes::from_static(b"dropped"));
        let events = drain(&mut rx);
        assert_eq!(events.last(), Some(&BusEvent::Missed));
        assert!(!events.contains(&BusEvent::Message(Bytes::from_static(b"dropped"))));
        // Once drained, messages flow again.
        registry.deliver("c", &Bytes::from_static(b"after"));
        assert_eq!(
            drain(&mut rx),
            vec![BusEvent::Message(Bytes::from_static(b"after"))]
        );
    }

    #[test]
    fn skipped_messages_never_reach_that_subscriber() {
        let registry = Registry::default();
        let skip: Skip = std::sync::Arc::new(|raw: &[u8]| raw.starts_with(b"own:"));
        let (_, mut picky) = registry.add("c", Some(skip));
        let (_, mut all) = registry.add("c", None);
        registry.deliver("c", &Bytes::from_static(b"own:1"));
        registry.deliver("c", &Bytes::from_static(b"theirs:1"));
        assert_eq!(
            drain(&mut picky),
            vec![BusEvent::Message(Bytes::from_static(b"theirs:1"))]
        );
        assert_eq!(drain(&mut all).len(), 2);
    }

    #[test]
    fn remove_reports_the_last_subscriber() {
        let registry = Registry::default();
        let (a, _ra) = registry.add("c", None);
        let (b, _rb) = registry.add("c", None);
        assert_eq!(registry.subscriber_count("c"), 2);
        assert!(!registry.remove("c", a));
        assert!(registry.contains("c"));
        assert!(registry.remove("c", b));
        assert!(!registry.contains("c"));
        assert!(registry.channels().is_empty());
    }
}
