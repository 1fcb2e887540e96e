//! The bus publisher: one task per hub publishes every queued bus message, in order.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use duet_bus::Bus;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use duet_bus::relay;

use super::services::Services;
use crate::metrics::Stats;

/// Publishing rounds in flight at once (pipelined on one connection, still in order).
const PUBLISH_PIPELINE: usize = 64;
/// Most queued bus messages taken in one publishing round (bounds one batch's size and the time
/// spent grouping before the first publish of the round goes out).
const PUBLISH_BATCH: usize = 1024;

/// Publishes queued bus messages in order, several in flight at once.
///
/// Each round takes everything queued (up to [`PUBLISH_BATCH`]) and publishes one payload per
/// channel — the channel's messages in order, packed into one [`relay::batch`] when there are
/// several — all of the round's payloads in one [`Bus::publish_many`] (one Redis pipeline, one
/// round trip). While earlier rounds are on their way (up to [`PUBLISH_PIPELINE`]), the next
/// round's messages queue up, so the busier the hub the more edits share one round; an idle hub
/// still publishes each message at once. Order per channel is kept: rounds are taken in order, a
/// channel appears once per round, and rounds are issued in order on one connection.
/// A failed round is counted in `duet_hub_bus_publish_failures_total`.
pub(crate) async fn run(
    bus: Arc<dyn Bus>,
    services: Arc<Services>,
    mut rx: mpsc::Receiver<(Arc<str>, Bytes)>,
) {
    let hub_id = services.hub_id.clone();
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
            Stats::add(&services.stats.bus_publish_failures, 1);
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
