//! One background task per live interview: it owns the interview's bus subscription and does the
//! slow work off the message path — resyncs, snapshots, plain-text saves, unloading — and the
//! core's periodic tick.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use duet_bus::{BusEvent, Subscription};
use duet_domain::DocKind;
use duet_storage::DocumentState;
use yrs::{ReadTxn, StateVector, Transact};

use super::live::Live;
use super::registry::Registry;
use crate::interview::{doc_from_storage, Interview};
use crate::limits::{MAINTENANCE_TICK, TEXT_SAVE_DEBOUNCE};
use crate::metrics::Stats;
use duet_bus::relay;

/// An interview without local participants keeps its bus subscription this long: a fresh load has
/// no participant until its first joiner is admitted, and a reloading tab comes back within it.
const UNSUBSCRIBE_GRACE: Duration = Duration::from_secs(2);

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

/// Another hub's messages, some with the trace context of the edit they carry: each of those is
/// handled in a span whose parent is the sending hub's edit span (one trace across hubs).
fn relayed_traced(iv: &Live, msgs: Vec<(String, relay::BusMessage, Option<relay::TraceContext>)>) {
    for (origin, msg, cx) in msgs {
        let span = match cx {
            Some(cx) => {
                let span = tracing::info_span!("hub.relayed_edit", interview = %iv.id, %origin);
                duet_telemetry::trace::set_remote_parent(
                    &span,
                    (cx.trace_id, cx.span_id, cx.sampled),
                );
                span
            }
            None => tracing::Span::none(),
        };
        let _entered = span.enter();
        iv.run(|c, now, fx| c.on_bus(now, origin, msg, fx));
    }
}

/// Runs until the interview is unloaded or the hub shuts down. `sub` is the subscription taken before
/// the interview was loaded from the database (so nothing published meanwhile is missed).
///
/// Bus messages are handled as they come, also while a chore awaits the database: a snapshot of a
/// long interview (hundreds of stored updates to read and replay) or a slow text save must not hold
/// back the edits other hubs relay.
pub(crate) async fn run(iv: Arc<Live>, registry: Arc<Registry>, mut sub: Option<Subscription>) {
    if sub.is_some() {
        // Ask the other hubs for what they have not committed yet, and tell them who is here.
        iv.run(|c, _, fx| c.sync_request(fx));
    }
    let mut tick = tokio::time::interval(MAINTENANCE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                    let msgs = relay::decode_all_traced(&raw);
                    if duet_telemetry::trace::enabled() && msgs.iter().any(|m| m.2.is_some()) {
                        relayed_traced(&iv, msgs);
                    } else {
                        iv.run(|c, now, fx| {
                            for (origin, msg, _) in msgs {
                                c.on_bus(now, origin, msg, fx);
                            }
                        });
                    }
                    continue;
                }
                Some(BusEvent::Missed) => {
                    tracing::info!(session = %iv.id, "bus messages may have been missed; resyncing");
                    iv.run(|c, _, _| c.want_resync());
                }
                None => {
                    tracing::warn!(session = %iv.id, "bus subscription ended; will resubscribe");
                    sub = None;
                    iv.run(|c, _, _| c.want_resync());
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
        if !maintain(&iv, &registry, &mut sub).await {
            break;
        }
        if chores.is_none() {
            chores = Some(Box::pin(do_chores(
                iv.clone(),
                registry.clone(),
                sub.is_some(),
            )));
        } else {
            asked = true;
        }
    }
    iv.cancel.cancel();
}

/// Quick housekeeping (no database access); returns false once the interview is unloaded.
async fn maintain(iv: &Arc<Live>, registry: &Registry, sub: &mut Option<Subscription>) -> bool {
    if iv.read(Interview::is_broken) {
        unload(iv, registry, true).await;
        return false;
    }
    // Subscribed while there are local participants; a new subscription starts with a resync.
    let (locals, idle_since) = iv.read(|c| (c.local_count() > 0, c.idle_since()));
    if locals {
        if sub.is_none() {
            match iv.services.subscribe(&iv.channel).await {
                Ok(s) => {
                    *sub = Some(s);
                    iv.run(|c, _, _| c.want_resync());
                }
                Err(e) => {
                    tracing::debug!(session = %iv.id, error = %e, "bus subscribe failed; retrying")
                }
            }
        }
    } else if sub.is_some() && idle_since.is_some_and(|t| t.elapsed() >= UNSUBSCRIBE_GRACE) {
        *sub = None;
    }
    iv.run(|c, now, fx| c.on_tick(now, fx));
    true
}

/// The chores that wait for the database; returns false once the interview is unloaded.
async fn do_chores(iv: Arc<Live>, registry: Arc<Registry>, subscribed: bool) -> bool {
    // A resync needs the subscription (its answers come over the bus); without one it waits.
    if subscribed && iv.run(|c, _, _| c.take_resync()) {
        resync_now(&iv).await;
    }
    if iv.read(Interview::snapshot_due) {
        snapshot(&iv).await;
    }
    save_text(&iv).await;
    let idle = iv.services.cfg.idle_unload;
    if iv.read(|c| c.unloadable(Instant::now(), idle)) {
        return !unload(&iv, &registry, false).await;
    }
    true
}

async fn save_text(iv: &Arc<Live>) {
    let text = iv.run(|c, now, _| c.take_text_to_save(now, TEXT_SAVE_DEBOUNCE));
    if let Some(text) = text {
        if !iv.services.save_text(iv.id, text).await {
            iv.run(|c, now, _| c.text_not_saved(now));
        }
    }
}

/// A document rebuilt from storage off the event loop: what of it the live replica may lack
/// (structs beyond the live state vector, and the whole delete set) and, when asked for, its full
/// state (for a snapshot).
struct Rebuilt {
    missing: Vec<u8>,
    full: Option<Vec<u8>>,
}

/// Rebuilds a stored document on a blocking thread. Decoding and applying hundreds of stored updates
/// takes milliseconds; on the hub's event loop that would stall every client it serves, and when many
/// interviews come due together (they were loaded together and are edited at similar rates) the
/// stalls added up to hundreds of milliseconds. `None` if the rebuild panicked (logged).
async fn rebuild(
    session: uuid::Uuid,
    state: DocumentState,
    live: StateVector,
    with_full: bool,
) -> Option<Rebuilt> {
    let built = tokio::task::spawn_blocking(move || {
        let doc = doc_from_storage(session, &state);
        let txn = doc.transact();
        Rebuilt {
            missing: txn.encode_state_as_update_v1(&live),
            full: with_full.then(|| txn.encode_state_as_update_v1(&StateVector::default())),
        }
    })
    .await;
    match built {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!(%session, error = %e, "rebuilding the stored document failed");
            None
        }
    }
}

/// Reloads the interview from the database and asks the other hubs for what they hold, so that no
/// missed bus message leaves this replica diverged.
pub(crate) async fn resync_now(iv: &Arc<Live>) {
    Stats::add(&iv.services.stats.resyncs, 1);
    iv.run(|c, _, fx| c.sync_request(fx));
    let storage = iv.services.storage.clone();
    let _turn = iv.services.reloads.acquire().await;
    if iv.cancel.is_cancelled() {
        // The hub is stopping (or the interview unloading): no new reads queued behind the others.
        return;
    }
    let (doc, notes, session) = tokio::join!(
        storage.load_document(iv.id, DocKind::Code),
        storage.load_document(iv.id, DocKind::Notes),
        storage.session_by_id(iv.id)
    );
    // The notes: small, rebuilt here and merged (what this replica lacks of them).
    if let Ok(state) = notes {
        let sv = iv.read(Interview::notes_state_vector);
        if let Some(built) = rebuild(iv.id, state, sv, false).await {
            iv.run(|c, now, fx| c.on_stored_notes(now, &built.missing, fx));
        }
    }
    match doc {
        Ok(state) => {
            let sv = iv.read(Interview::state_vector);
            let Some(built) = rebuild(iv.id, state, sv, false).await else {
                iv.run(|c, _, _| c.want_resync());
                return;
            };
            let session = session.ok().flatten();
            let language = session.as_ref().map(|s| s.language);
            let control = session.as_ref().map(duet_domain::InterviewControl::of);
            iv.run(|c, now, fx| c.on_stored(now, &built.missing, language, control, fx));
        }
        Err(e) => {
            tracing::warn!(session = %iv.id, error = %e, "resync from the database failed; will retry");
            iv.run(|c, _, _| c.want_resync());
        }
    }
}

/// Writes a snapshot built from the database (so it covers exactly the updates up to the newest
/// stored one, whichever hub wrote them), and merges it into the live document.
async fn snapshot(iv: &Arc<Live>) {
    let storage = iv.services.storage.clone();
    let _turn = iv.services.reloads.acquire().await;
    if iv.cancel.is_cancelled() {
        return;
    }
    let state = match storage.load_document(iv.id, DocKind::Code).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(session = %iv.id, error = %e, "snapshot: load failed; will retry");
            return;
        }
    };
    let Some(upto) = state.updates.last().map(|u| u.seq) else {
        iv.run(|c, _, _| c.snapshot_saved());
        return;
    };
    let sv = iv.read(Interview::state_vector);
    let Some(Rebuilt {
        missing,
        full: Some(full),
    }) = rebuild(iv.id, state, sv, true).await
    else {
        return;
    };
    match storage
        .save_snapshot(iv.id, DocKind::Code, upto, &full)
        .await
    {
        Ok(()) => {
            iv.run(|c, now, fx| {
                c.snapshot_saved();
                c.on_stored(now, &missing, None, None, fx);
            });
            tracing::debug!(session = %iv.id, upto, bytes = full.len(), "snapshot saved");
        }
        Err(e) => {
            tracing::debug!(session = %iv.id, error = %e, "snapshot: save failed; will retry")
        }
    }
}

/// Removes the interview from the registry (unless someone joined meanwhile). Returns true if done.
pub(crate) async fn unload(iv: &Arc<Live>, registry: &Registry, force: bool) -> bool {
    save_text(iv).await;
    let rest = iv.run(|c, now, _| c.take_text_to_save(now, Duration::ZERO));
    if let Some(text) = rest {
        iv.services.save_text(iv.id, text).await;
    }
    let done = registry.remove_if(iv, || {
        iv.run(|c, _, _| {
            let may = force || c.quiet();
            if may {
                c.close();
            }
            may
        })
    });
    if done {
        iv.cancel.cancel();
        tracing::debug!(session = %iv.id, "interview unloaded");
    }
    done
}
