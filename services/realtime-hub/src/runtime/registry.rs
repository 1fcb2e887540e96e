//! The live interviews of one hub, and how one is loaded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use duet_bus::Subscription;
use duet_domain::{DocKind, Session};
use parking_lot::Mutex;
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::live::Live;
use super::services::Services;
use crate::error::HubError;
use crate::interview::guard::Usage;
use crate::interview::{doc_from_storage, Interview, Settings, NOTES_NAME, TEXT_NAME};
use duet_bus::relay;

/// A slot per loaded (or loading) interview; the `OnceCell` makes concurrent first joins share one
/// load.
#[derive(Default)]
pub struct Registry(Mutex<HashMap<Uuid, Arc<OnceCell<Arc<Live>>>>>);

impl Registry {
    /// A loaded interview.
    pub fn get(&self, id: Uuid) -> Option<Arc<Live>> {
        self.0.lock().get(&id).and_then(|c| c.get().cloned())
    }

    /// Every loaded interview.
    pub fn loaded(&self) -> Vec<Arc<Live>> {
        self.0
            .lock()
            .values()
            .filter_map(|c| c.get().cloned())
            .collect()
    }

    /// The slot of an interview (empty until its first load completes).
    pub(crate) fn slot(&self, id: Uuid) -> Arc<OnceCell<Arc<Live>>> {
        self.0.lock().entry(id).or_default().clone()
    }

    /// Removes `iv` (if it is still the one registered) once `may` agrees, deciding under the
    /// registry's lock so no join can find it in between. True if `may` agreed.
    pub(crate) fn remove_if(&self, iv: &Arc<Live>, may: impl FnOnce() -> bool) -> bool {
        let mut reg = self.0.lock();
        if !may() {
            return false;
        }
        let ours = reg
            .get(&iv.id)
            .and_then(|c| c.get())
            .is_some_and(|x| Arc::ptr_eq(x, iv));
        if ours {
            reg.remove(&iv.id);
        }
        true
    }
}

/// Loads an interview from the database: subscribes to its channel first (so nothing published in
/// between is missed; `None` if the bus refused — the worker retries), then rebuilds its document
/// off the event loop.
pub(crate) async fn load(
    services: &Arc<Services>,
    session: &Session,
) -> Result<(Arc<Live>, Option<Subscription>), HubError> {
    let channel = relay::channel(session.id);
    let sub = match services.subscribe(&channel).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(session = %session.id, error = %e, "bus subscribe failed; the worker retries");
            None
        }
    };
    let (state, notes) = tokio::try_join!(
        services.storage.load_document(session.id, DocKind::Code),
        services.storage.load_document(session.id, DocKind::Notes),
    )?;
    let stored = state.updates.len() as u64;
    let had_snapshot = state.snapshot.is_some();
    // Built on a blocking thread: many interviews load at once when a hub starts or takes over, and
    // each replays its history.
    let id = session.id;
    let (doc, usage, notes) = tokio::task::spawn_blocking(move || {
        (
            doc_from_storage(id, &state),
            Usage::of_stored(&state, TEXT_NAME),
            (
                doc_from_storage(id, &notes),
                Usage::of_stored(&notes, NOTES_NAME),
            ),
        )
    })
    .await
    .map_err(|e| {
        tracing::error!(session = %id, error = %e, "loading the stored document failed");
        HubError::internal()
    })?;
    let mut core = Interview::new(
        session.id,
        session.code.clone(),
        session.language,
        duet_domain::InterviewControl::of(session),
        doc,
        stored,
        usage,
        Settings {
            hub_id: services.hub_id.clone(),
            peer_ttl: services.cfg.heartbeat_ttl,
            snapshot_every: services.cfg.snapshot_every,
        },
        Instant::now(),
    )
    .with_notes(notes.0, notes.1);
    if sub.is_none() {
        core.want_resync();
    }
    // A hub that stopped within the text-save debounce left the stored text behind the document.
    core.text_loaded(&session.text, Instant::now());
    tracing::debug!(session = %session.id, snapshot = had_snapshot, updates = stored, "interview loaded");
    Ok((Live::new(services.clone(), core), sub))
}
