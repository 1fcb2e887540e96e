//! The group-commit writer: one task per hub appends the updates of every interview it serves.
//!
//! Updates queue up while a batch is being collected; a batch is committed with one
//! [`Storage::append_updates`] call when [`HubConfig::flush_interval`](crate::runtime::HubConfig) has passed
//! since its first update or when it holds [`MAX_BATCH`] updates. Only then is the [`CommitListener`]
//! told, by interview id, how far each interview's writes are committed (it releases the acks); the
//! writer never holds an interview.
//!
//! If the database is unavailable the batch is kept and retried with exponential backoff (acks are
//! withheld meanwhile, so clients show their edits as unsaved); the writer recovers by itself. Errors
//! that are not about availability (for example a session deleted while live) are retried a few times,
//! then the batch is split per interview so one broken interview cannot block the others.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use duet_storage::{NewUpdate, Storage, StorageError};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use crate::limits::{
    MAX_BATCH, TEXT_SAVE_BATCH, TEXT_SAVE_WINDOW, WRITE_HARD_FAILURES, WRITE_RETRY_MAX,
    WRITE_RETRY_MIN,
};

/// An interview's plain text to save, and who to tell whether it was saved.
pub struct SaveText {
    pub session: Uuid,
    pub text: String,
    pub done: oneshot::Sender<bool>,
}

/// Saves interviews' plain texts (`sessions.text`, for the REST API) in batches: waits for the
/// first, gathers whatever else comes due within [`TEXT_SAVE_WINDOW`], and saves them with one
/// [`Storage::set_texts`] (the newest text per session). Every requester learns whether its text
/// was saved (if not — database down, or the row held by the writer's transaction at that moment —
/// the interview keeps it dirty and tries again). Runs until the channel closes.
pub async fn save_texts(storage: Arc<dyn Storage>, mut rx: mpsc::UnboundedReceiver<SaveText>) {
    let mut queued: Vec<SaveText> = Vec::new();
    while rx.recv_many(&mut queued, TEXT_SAVE_BATCH).await > 0 {
        tokio::time::sleep(TEXT_SAVE_WINDOW).await;
        while queued.len() < TEXT_SAVE_BATCH {
            match rx.try_recv() {
                Ok(t) => queued.push(t),
                Err(_) => break,
            }
        }
        let texts = newest_per_session(&queued);
        let saved: HashSet<Uuid> = match storage.set_texts(&texts).await {
            Ok(saved) => saved.into_iter().collect(),
            Err(e) => {
                tracing::debug!(error = %e, texts = texts.len(), "saving plain texts failed; will retry");
                HashSet::new()
            }
        };
        for t in queued.drain(..) {
            let _ = t.done.send(saved.contains(&t.session));
        }
    }
}

/// Each session once, with the text queued last for it.
fn newest_per_session(queued: &[SaveText]) -> Vec<(Uuid, String)> {
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    let mut texts: Vec<(Uuid, String)> = Vec::new();
    for t in queued {
        match index.get(&t.session) {
            Some(&i) => texts[i].1.clone_from(&t.text),
            None => {
                index.insert(t.session, texts.len());
                texts.push((t.session, t.text.clone()));
            }
        }
    }
    texts
}

/// One update to append.
pub struct WriteItem {
    /// The interview it belongs to.
    pub session: Uuid,
    /// The interview's write id (monotonic per interview; also its bus sequence number).
    pub write_id: u64,
    pub update: NewUpdate,
    /// When it was queued (for the edit → commit latency).
    pub queued: std::time::Instant,
}

/// An interview's writes up to `upto` (`count` of them in this batch) are committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub session: Uuid,
    pub upto: u64,
    pub count: u64,
}

/// Who hears what the writer did. Called from the writer's task, never under a lock of the writer.
pub trait CommitListener: Send + Sync {
    /// A batch was committed.
    fn committed(&self, done: &[Committed]);
    /// How long each write of a committed batch waited from being queued.
    fn waited(&self, _waited: &[std::time::Duration]) {}
    /// The database is unavailable; the batch is kept and retried.
    fn unavailable(&self);
    /// An interview's updates cannot be stored (not an availability problem): it must close.
    fn failed(&self, session: Uuid);
}

pub enum WriterCmd {
    Write(WriteItem),
    /// Commit everything queued before this command, then answer.
    Flush(oneshot::Sender<()>),
}

struct Writer {
    storage: Arc<dyn Storage>,
    flush_interval: Duration,
    listener: Arc<dyn CommitListener>,
}

/// Runs until the command channel closes, committing what is left.
pub async fn run(
    storage: Arc<dyn Storage>,
    flush_interval: Duration,
    listener: Arc<dyn CommitListener>,
    mut rx: mpsc::UnboundedReceiver<WriterCmd>,
) {
    let writer = Writer {
        storage,
        flush_interval,
        listener,
    };
    let mut batch: Vec<WriteItem> = Vec::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    let mut closed = false;
    while !closed {
        if batch.is_empty() && flushes.is_empty() {
            match rx.recv().await {
                Some(WriterCmd::Write(item)) => batch.push(item),
                Some(WriterCmd::Flush(done)) => flushes.push(done),
                None => break,
            }
        }
        // Sleep through the collection window instead of waking per update (a wakeup per keystroke
        // costs more than the update), then take everything queued meanwhile.
        if flushes.is_empty() {
            tokio::time::sleep_until(Instant::now() + writer.flush_interval).await;
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(WriterCmd::Write(item)) => batch.push(item),
                Ok(WriterCmd::Flush(done)) => {
                    flushes.push(done);
                    break;
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if !batch.is_empty() {
            commit(&writer, std::mem::take(&mut batch)).await;
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
    if !batch.is_empty() {
        commit(&writer, batch).await;
    }
}

async fn commit(writer: &Writer, batch: Vec<WriteItem>) {
    let rows: Vec<NewUpdate> = batch.iter().map(|i| i.update.clone()).collect();
    let mut delay = WRITE_RETRY_MIN;
    let mut hard_failures = 0u32;
    let mut told_unavailable = false;
    loop {
        match writer.storage.append_updates(&rows).await {
            Ok(_) => {
                let now = std::time::Instant::now();
                let waited: Vec<_> = batch.iter().map(|i| now - i.queued).collect();
                writer.listener.waited(&waited);
                writer.listener.committed(&committed(&batch));
                return;
            }
            Err(StorageError::Unavailable(e)) => {
                if !told_unavailable {
                    tracing::warn!(error = %e, pending = rows.len(), "database unavailable; holding acks and retrying");
                    writer.listener.unavailable();
                    told_unavailable = true;
                }
            }
            Err(e) => {
                hard_failures += 1;
                tracing::error!(error = %e, attempt = hard_failures, "committing updates failed");
                if hard_failures >= WRITE_HARD_FAILURES {
                    commit_per_interview(writer, batch).await;
                    return;
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(WRITE_RETRY_MAX);
    }
}

/// Last resort after repeated hard failures: commit each interview's updates alone; an interview whose
/// own updates still fail for a reason other than availability is closed.
async fn commit_per_interview(writer: &Writer, batch: Vec<WriteItem>) {
    let mut groups: HashMap<Uuid, Vec<WriteItem>> = HashMap::new();
    for item in batch {
        groups.entry(item.session).or_default().push(item);
    }
    for (session, items) in groups {
        let rows: Vec<NewUpdate> = items.iter().map(|i| i.update.clone()).collect();
        let mut delay = WRITE_RETRY_MIN;
        loop {
            match writer.storage.append_updates(&rows).await {
                Ok(_) => {
                    writer.listener.committed(&committed(&items));
                    break;
                }
                Err(StorageError::Unavailable(_)) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(WRITE_RETRY_MAX);
                }
                Err(e) => {
                    tracing::error!(error = %e, %session, "dropping an interview whose updates cannot be stored");
                    writer.listener.failed(session);
                    break;
                }
            }
        }
    }
}

/// How far each interview of a committed batch got, in the order interviews first appear.
fn committed(batch: &[WriteItem]) -> Vec<Committed> {
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    let mut done: Vec<Committed> = Vec::new();
    for item in batch {
        match index.get(&item.session) {
            Some(&i) => {
                let d = &mut done[i];
                d.upto = d.upto.max(item.write_id);
                d.count += 1;
            }
            None => {
                index.insert(item.session, done.len());
                done.push(Committed {
                    session: item.session,
                    upto: item.write_id,
                    count: 1,
                });
            }
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_reports_each_interview_once_with_its_highest_write() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let item = |session, write_id| WriteItem {
            session,
            write_id,
            update: NewUpdate {
                session_id: session,
                doc: duet_domain::DocKind::Code,
                author: None,
                data: vec![],
            },
            queued: std::time::Instant::now(),
        };
        let done = committed(&[item(a, 1), item(b, 7), item(a, 2)]);
        assert_eq!(
            done,
            vec![
                Committed {
                    session: a,
                    upto: 2,
                    count: 2
                },
                Committed {
                    session: b,
                    upto: 7,
                    count: 1
                }
            ]
        );
    }

    #[test]
    fn a_batch_keeps_each_session_once_with_its_newest_text() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let item = |session, text: &str| SaveText {
            session,
            text: text.to_owned(),
            done: oneshot::channel().0,
        };
        let texts = newest_per_session(&[item(a, "1"), item(b, "x"), item(a, "2")]);
        assert_eq!(texts, vec![(a, "2".to_owned()), (b, "x".to_owned())]);
    }
}
