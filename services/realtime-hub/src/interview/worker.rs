//! One background task per loaded interview: it owns the interview's bus subscription and does the
//! slow work off the message path — resyncs, snapshots, plain-text saves, takeovers, unloading.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use duet_bus::{BusEvent, Subscription};

use super::{rebuild, Interview, Rebuilt};
use crate::ctx::Stats;
use crate::limits::{MAINTENANCE_TICK, TEXT_SAVE_DEBOUNCE};
use crate::relay;

/// An interview without local participants keeps its bus subscription this long: a fresh load has
/// no participant until its first joiner is admitted, and a reloading tab comes back within it.
const UNSUBSCRIBE_GRACE: Duration = Duration::from_secs(2);
/// How often stale awareness states and remote presence are looked for.
const PURGE_EVERY: Duration = Duration::from_secs(1);

async fn next_event(sub: &mut Option<Subscription>) -> Option<BusEvent> {
    match sub {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Chores that wait for the database (resync, snapshot, text save, unload), run beside the bus
/// messages rather than in front of them; resolves to false once the interview is unloaded.
type Chores = Pin<Box<dyn Future<Output = bool> + Send>>;

async fn next_chores_done(chores: &mut Option<Chores>) -> bool {
    match chores {
        Some(c) => c.await,
        None => std::future::pending().await,
    }
}

/// Runs until the interview is unloaded or the hub shuts down. `sub` is the subscription taken before
/// the interview was loaded from the database (so nothing published meanwhile is missed).
///
/// Bus messages are handled as they come, also while a chore awaits the database: a snapshot of a
/// long interview (hundreds of stored updates to read and replay) or a slow text save must not hold
/// back the edits other hubs relay.
pub(crate) async fn run(iv: Arc<Interview>, mut sub: Option<Subscription>) {
    if sub.is_some() {
        // Ask the other hubs for what they have not committed yet, and tell them who is here.
        let (ask, presence) = iv.sync_request();
        iv.ctx.publish(&iv.channel, ask);
        iv.ctx.publish(&iv.channel, presence);
    }
    let mut tick = tokio::time::interval(MAINTENANCE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_purge = Instant::now();
    let mut chores: Option<Chores> = None;
    // Housekeeping was asked for (wake, tick, missed messages) while chores were running.
    let mut asked = false;
    loop {
        tokio::select! {
            _ = iv.cancel.cancelled() => {
                // Let a chore in progress finish: it may hold the text the hub's shutdown would
                // otherwise have saved (storage calls are bounded by timeouts).
                if let Some(c) = chores.take() {
                    c.await;
                }
                break;
            }
            ev = next_event(&mut sub) => match ev {
                Some(BusEvent::Message(raw)) => {
                    for (origin, msg) in relay::decode_all(&raw) {
                        iv.handle_bus(origin, msg);
                    }
                    continue;
                }
                Some(BusEvent::Missed) => {
                    tracing::info!(session = %iv.id, "bus messages may have been missed; resyncing");
                    iv.lock().resync_needed = true;
                }
                None => {
                    tracing::warn!(session = %iv.id, "bus subscription ended; will resubscribe");
                    sub = None;
                    iv.lock().resync_needed = true;
                }
            },
            alive = next_chores_done(&mut chores) => {
                chores = None;
                if !alive {
                    break;
                }
                // Go round again only if something asked for it meanwhile (chores that find nothing
                // to do finish at once: starting them again here would spin).
                if !std::mem::take(&mut asked) {
                    continue;
                }
            }
            _ = iv.wake.notified() => {}
            _ = tick.tick() => {}
        }
        if !maintain(&iv, &mut sub, &mut last_purge).await {
            break;
        }
        if chores.is_none() {
            chores = Some(Box::pin(do_chores(iv.clone(), sub.is_some())));
        } else {
            asked = true;
        }
    }
    iv.cancel.cancel();
}

/// Quick housekeeping (no database access); returns false once the interview is unloaded.
async fn maintain(
    iv: &Arc<Interview>,
    sub: &mut Option<Subscription>,
    last_purge: &mut Instant,
) -> bool {
    let ctx = iv.ctx.clone();
    let broken = iv.lock().broken;
    if broken {
        unload(iv, true).await;
        return false;
    }
    // Subscribed while there are local participants; a new subscription starts with a resync.
    if iv.has_locals() {
        if sub.is_none() {
            match ctx.subscribe(&iv.channel).await {
                Ok(s) => {
                    *sub = Some(s);
                    iv.lock().resync_needed = true;
                }
                Err(e) => {
                    tracing::debug!(session = %iv.id, error = %e, "bus subscribe failed; retrying")
                }
            }
        }
    } else if sub.is_some()
        && iv
            .lock()
            .idle_since
            .is_some_and(|t| t.elapsed() >= UNSUBSCRIBE_GRACE)
    {
        *sub = None;
    }
    if let Some((upto, hubs)) = iv.commit_notice() {
        ctx.send_commit_notices(vec![(iv.id, upto, hubs)]);
    }
    iv.take_over_stale();
    if last_purge.elapsed() >= PURGE_EVERY {
        *last_purge = Instant::now();
        iv.expire_remote();
        iv.purge_awareness();
    }
    true
}

/// The chores that wait for the database; returns false once the interview is unloaded.
async fn do_chores(iv: Arc<Interview>, subscribed: bool) -> bool {
    let ctx = iv.ctx.clone();
    // A resync needs the subscription (its answers come over the bus); without one it waits.
    let resync = subscribed && std::mem::take(&mut iv.lock().resync_needed);
    if resync {
        resync_now(&iv).await;
    }
    let due = {
        let st = iv.lock();
        st.committed_since_snapshot >= ctx.cfg.snapshot_every
    };
    if due {
        snapshot(&iv).await;
    }
    save_text(&iv).await;
    let idle = {
        let st = iv.lock();
        st.local.is_empty()
            && st.in_flight == 0
            && st.remote_pending.is_empty()
            && st
                .idle_since
                .is_some_and(|t| t.elapsed() >= ctx.cfg.idle_unload)
    };
    if idle {
        return !unload(&iv, false).await;
    }
    true
}

async fn save_text(iv: &Arc<Interview>) {
    if let Some(text) = iv.text_to_save(TEXT_SAVE_DEBOUNCE) {
        if !iv.ctx.save_text(iv.id, text).await {
            iv.mark_text_dirty();
        }
    }
}

/// Reloads the interview from the database and asks the other hubs for what they hold, so that no
/// missed bus message leaves this replica diverged.
pub(crate) async fn resync_now(iv: &Arc<Interview>) {
    Stats::add(&iv.ctx.stats.resyncs, 1);
    let (ask, presence) = iv.sync_request();
    iv.ctx.publish(&iv.channel, ask);
    iv.ctx.publish(&iv.channel, presence);
    let storage = iv.ctx.storage.clone();
    let _turn = iv.ctx.reloads.acquire().await;
    if iv.cancel.is_cancelled() {
        // The hub is stopping (or the interview unloading): no new reads queued behind the others.
        return;
    }
    let (doc, session) = tokio::join!(storage.load_document(iv.id), storage.session_by_id(iv.id));
    match doc {
        Ok(state) => {
            let Some(built) = rebuild(iv.id, state, iv.state_vector(), false).await else {
                iv.lock().resync_needed = true;
                return;
            };
            let language = session.ok().flatten().map(|s| s.language);
            iv.merge_from_storage(&built.missing, language);
        }
        Err(e) => {
            tracing::warn!(session = %iv.id, error = %e, "resync from the database failed; will retry");
            iv.lock().resync_needed = true;
        }
    }
}

/// Writes a snapshot built from the database (so it covers exactly the updates up to the newest
/// stored one, whichever hub wrote them), and merges it into the live document.
async fn snapshot(iv: &Arc<Interview>) {
    let storage = iv.ctx.storage.clone();
    let _turn = iv.ctx.reloads.acquire().await;
    if iv.cancel.is_cancelled() {
        return;
    }
    let state = match storage.load_document(iv.id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(session = %iv.id, error = %e, "snapshot: load failed; will retry");
            return;
        }
    };
    let Some(upto) = state.updates.last().map(|u| u.seq) else {
        iv.lock().committed_since_snapshot = 0;
        return;
    };
    let Some(Rebuilt {
        missing,
        full: Some(full),
    }) = rebuild(iv.id, state, iv.state_vector(), true).await
    else {
        return;
    };
    match storage.save_snapshot(iv.id, upto, &full).await {
        Ok(()) => {
            iv.lock().committed_since_snapshot = 0;
            iv.merge_from_storage(&missing, None);
            tracing::debug!(session = %iv.id, upto, bytes = full.len(), "snapshot saved");
        }
        Err(e) => {
            tracing::debug!(session = %iv.id, error = %e, "snapshot: save failed; will retry")
        }
    }
}

/// Removes the interview from the registry (unless someone joined meanwhile). Returns true if done.
pub(crate) async fn unload(iv: &Arc<Interview>, force: bool) -> bool {
    save_text(iv).await;
    if let Some(text) = iv.text_to_save(Duration::ZERO) {
        iv.ctx.save_text(iv.id, text).await;
    }
    let ctx = iv.ctx.clone();
    let mut reg = ctx.registry.lock();
    let mut st = iv.lock();
    if !force && (!st.local.is_empty() || st.in_flight > 0) {
        return false;
    }
    st.closed = true;
    let ours = reg
        .get(&iv.id)
        .and_then(|c| c.get())
        .is_some_and(|x| Arc::ptr_eq(x, iv));
    if ours {
        reg.remove(&iv.id);
    }
    drop(st);
    drop(reg);
    iv.cancel.cancel();
    tracing::debug!(session = %iv.id, "interview unloaded");
    true
}
