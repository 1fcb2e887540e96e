//! An interview's shared documents. Each is a yrs `Doc` holding one `Y.Text` (UTF-16 offsets, as
//! Yjs counts in the browser), with its own awareness states, and an [`Audience`]: who receives its
//! sync, updates and awareness. The code document is every editor's; more documents with narrower
//! audiences (an interviewer's private notes) slot in beside it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use duet_storage::DocumentState;
use uuid::Uuid;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, TextRef, Transact, Update};

use super::awareness::Awareness;
use super::effects::{Audience, ConnId};
use super::scan::{self, UpdateStats};
use crate::error::{ErrorCode, HubError};

/// Name of the shared text in the code document (the browser binds it to the editor).
pub const TEXT_NAME: &str = "code";
/// Name of the shared text in the notes document (Markdown).
pub const NOTES_NAME: &str = "notes";

/// Which of an interview's documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocName {
    /// The code everyone edits.
    Code,
    /// The interviewers' private notes.
    Notes,
}

impl DocName {
    /// The root type name of the document's shared text.
    pub fn root(self) -> &'static str {
        match self {
            DocName::Code => TEXT_NAME,
            DocName::Notes => NOTES_NAME,
        }
    }

    /// Who receives the document's sync, updates and awareness.
    pub fn audience(self) -> Audience {
        match self {
            DocName::Code => Audience::Editors,
            DocName::Notes => Audience::Interviewers,
        }
    }

    /// The Socket.IO event its y-protocols messages travel on, both ways.
    pub fn event(self) -> &'static str {
        match self {
            DocName::Code => "yjs",
            DocName::Notes => "notes",
        }
    }

    /// How storage names it.
    pub fn kind(self) -> duet_domain::DocKind {
        match self {
            DocName::Code => duet_domain::DocKind::Code,
            DocName::Notes => duet_domain::DocKind::Notes,
        }
    }
}

/// A fresh document with the hub's options: UTF-16 offsets, as Yjs in the browser counts; deleted
/// characters kept, as a seed client's edit may name characters deleted since it had its text (see
/// [`super::seed`]; the history holds them anyway).
pub fn new_doc() -> Doc {
    Doc::with_options(Options {
        offset_kind: OffsetKind::Utf16,
        skip_gc: true,
        ..Options::default()
    })
}

/// Rebuilds a document from storage (snapshot, then every later update). Rows that do not decode are
/// skipped and logged: one corrupt row must not make an interview unloadable.
pub fn doc_from_storage(session: Uuid, state: &DocumentState) -> Doc {
    let doc = new_doc();
    {
        let mut txn = doc.transact_mut();
        let apply = |txn: &mut yrs::TransactionMut, data: &[u8]| match Update::decode_v1(data) {
            Ok(u) => {
                if let Err(e) = txn.apply_update(u) {
                    tracing::error!(%session, error = %e, "stored update does not apply; skipped");
                }
            }
            Err(e) => {
                tracing::error!(%session, error = %e, "stored update does not decode; skipped")
            }
        };
        if let Some(s) = &state.snapshot {
            apply(&mut txn, &s.data);
        }
        // In causal order: two hubs may commit an edit before the one it builds on (each commits
        // its own), and yrs would integrate the later one out of order (see `held`). An update
        // whose dependencies are not in yet waits until they are.
        let mut waiting: Vec<(&[u8], UpdateStats)> = Vec::new();
        for u in &state.updates {
            let stats = scan::dependencies(&u.data);
            match stats {
                Some(stats) if has_gap(&txn, &stats) => waiting.push((&u.data, stats)),
                _ => {
                    apply(&mut txn, &u.data);
                    while let Some(i) = waiting.iter().position(|(_, st)| !has_gap(&txn, st)) {
                        let (data, _) = waiting.remove(i);
                        apply(&mut txn, data);
                    }
                }
            }
        }
        if !waiting.is_empty() {
            tracing::warn!(%session, updates = waiting.len(), "stored updates depend on edits that were never stored");
        }
        for (data, _) in waiting {
            apply(&mut txn, data);
        }
    }
    doc
}

fn has_gap(txn: &yrs::TransactionMut, stats: &UpdateStats) -> bool {
    stats.has_gap(&txn.state_vector())
}

/// The outcome of applying one update.
#[derive(Debug)]
pub struct Applied {
    /// Something was integrated or deleted.
    pub changed: bool,
    /// What was new, encoded (what the others need).
    pub delta: Vec<u8>,
    /// Part of it waits for updates this replica lacks.
    pub pending: bool,
}

/// One shared document of an interview.
pub struct SharedDoc {
    pub name: DocName,
    /// Its content changes only through [`SharedDoc::apply`] and [`SharedDoc::apply_pieces`],
    /// which keep [`SharedDoc::text`]'s copy right (a seed edit's transaction only reads, and
    /// splits items).
    pub doc: Doc,
    pub text: TextRef,
    pub awareness: Awareness,
    /// Which connection published each awareness client id.
    pub awareness_owner: HashMap<u64, ConnId>,
    /// The current text, once read: reading it walks every item the document keeps, deleted ones
    /// too, and one change asks for it several times (the seed clients' copy, their bases).
    current: RefCell<Option<Arc<str>>>,
    /// Changes with every update applied (or tried), unique in the process (no two documents, nor
    /// one document before and after, share one): a text known at one version is the text while
    /// the version stays.
    version: u64,
}

/// A document version no other document or state has had.
fn next_version() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl SharedDoc {
    pub fn new(name: DocName, doc: Doc) -> Self {
        let text = doc.get_or_insert_text(name.root());
        Self {
            name,
            doc,
            text,
            awareness: Awareness::default(),
            awareness_owner: HashMap::new(),
            current: RefCell::new(None),
            version: next_version(),
        }
    }

    /// See [`SharedDoc::text_is`].
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The caller knows the document's text is `text` (a seed client's edit made from the text
    /// at the version before it was applied): it need not be read back.
    pub fn text_is(&mut self, text: Arc<str>) {
        debug_assert_eq!(
            *text,
            self.text.get_string(&self.doc.transact()),
            "the text a seed edit gives"
        );
        *self.current.get_mut() = Some(text);
    }

    /// The current text.
    pub fn text(&self) -> String {
        self.current_text().to_string()
    }

    /// The current text, shared (read from the document once per change).
    pub fn current_text(&self) -> Arc<str> {
        let mut current = self.current.borrow_mut();
        match &*current {
            Some(text) => text.clone(),
            None => {
                let text: Arc<str> = Arc::from(self.text.get_string(&self.doc.transact()));
                *current = Some(text.clone());
                text
            }
        }
    }

    pub fn state_vector(&self) -> StateVector {
        self.doc.transact().state_vector()
    }

    /// What a replica at `sv` lacks.
    pub fn diff(&self, sv: &StateVector) -> Vec<u8> {
        self.doc.transact().encode_state_as_update_v1(sv)
    }

    /// Applies an update. A panic inside yrs is caught and reported as a refusal.
    pub fn apply(&mut self, update: Update) -> Result<Applied, HubError> {
        self.apply_all(vec![update])
    }

    /// Applies encoded updates in one transaction (pieces of a staged update).
    pub fn apply_pieces(&mut self, pieces: &[Vec<u8>]) -> Result<Applied, HubError> {
        let updates = pieces
            .iter()
            .map(|p| Update::decode_v1(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| HubError::new(ErrorCode::InvalidUpdate, "update does not decode"))?;
        self.apply_all(updates)
    }

    fn apply_all(&mut self, updates: Vec<Update>) -> Result<Applied, HubError> {
        *self.current.get_mut() = None;
        self.version = next_version();
        let doc = &self.doc;
        let res = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut txn = doc.transact_mut();
            for update in updates {
                txn.apply_update(update)?;
            }
            // What the transaction integrated or deleted (comparing state vectors before and after
            // costs two walks over every client the document ever had).
            let changed = txn.has_changes();
            let delta = if changed {
                txn.encode_update_v1()
            } else {
                Vec::new()
            };
            let pending = txn.has_missing_updates();
            Ok::<_, yrs::error::UpdateError>(Applied {
                changed,
                delta,
                pending,
            })
        }));
        match res {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => Err(HubError::new(
                ErrorCode::InvalidUpdate,
                format!("update does not apply: {e}"),
            )),
            Err(_) => {
                tracing::error!("applying an update panicked; refused");
                Err(HubError::new(
                    ErrorCode::InvalidUpdate,
                    "update does not apply",
                ))
            }
        }
    }
}
