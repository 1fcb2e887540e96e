//! One live interview: its Yjs document (a `Y.Text` named `"code"`, UTF-16 offsets), awareness,
//! language and participants, and the bookkeeping that makes acknowledgements honest.
//!
//! Every change happens under the interview's lock and is broadcast under it, so all participants see
//! one order of events. Nothing here awaits: database and bus work is queued (group-commit writer,
//! publisher) or done by the interview's worker task (`worker.rs`).
//!
//! # Durability bookkeeping
//! An edit's ack is released when two watermarks pass it:
//! - the *write* watermark: the interview's writes are committed in order, so "committed up to write
//!   id N" releases every ack that needed ≤ N;
//! - the *remote* watermark: updates relayed by other hubs are not known to be committed until their
//!   origin says so (`Commits`, which the origin sends to this hub's inbox after its group commits)
//!   or this hub commits them itself after
//!   [`REMOTE_COMMIT_TAKEOVER`](crate::limits::REMOTE_COMMIT_TAKEOVER). An edit that builds on such an
//!   update (or a re-sent edit this hub already had from the bus) is acked only after that, so a hub
//!   crash can never lose an edit some client was told is saved.

pub mod protocol;
pub mod text;
pub mod worker;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use duet_domain::{Language, SessionCode};
use duet_storage::{DocumentState, NewUpdate};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use yrs::sync::Awareness;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{
    Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, Text, TextRef, Transact, Update,
};

use crate::ctx::{Ctx, Stats};
use crate::error::{ErrorCode, HubError};
use crate::limits::{
    MAX_AWARENESS_CLIENTS_PER_CONN, MAX_AWARENESS_STATE_BYTES, NOTICE_REPEAT_AFTER,
    SEED_BASE_HISTORY,
};
use crate::presence::UserInfo;
use crate::relay::BusMessage;
use crate::transport::{AckFn, ConnId, ConnSink, Outgoing};
use crate::writer::{WriteItem, WriterCmd};
use protocol::ClientMessage;

/// Name of the shared text in every interview document (the browser binds it to the editor).
pub const TEXT_NAME: &str = "code";

/// A fresh document with the hub's options (UTF-16 offsets, as Yjs in the browser counts).
pub fn new_doc() -> Doc {
    Doc::with_options(Options {
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    })
}

/// Rebuilds a document from storage (snapshot, then every later update). Rows that do not decode are
/// skipped and logged: one corrupt row must not make an interview unloadable.
pub fn doc_from_storage(session: Uuid, state: &DocumentState) -> Doc {
    let doc = new_doc();
    doc.get_or_insert_text(TEXT_NAME);
    {
        let mut txn = doc.transact_mut();
        let parts = state
            .snapshot
            .iter()
            .map(|s| &s.data)
            .chain(state.updates.iter().map(|u| &u.data));
        for data in parts {
            match Update::decode_v1(data) {
                Ok(u) => {
                    if let Err(e) = txn.apply_update(u) {
                        tracing::error!(%session, error = %e, "stored update does not apply; skipped");
                    }
                }
                Err(e) => {
                    tracing::error!(%session, error = %e, "stored update does not decode; skipped")
                }
            }
        }
    }
    doc
}

/// A document rebuilt from storage off the event loop: what of it the live replica may lack
/// (structs beyond the live state vector, and the whole delete set) and, when asked for, its full
/// state (for a snapshot).
pub(crate) struct Rebuilt {
    pub missing: Vec<u8>,
    pub full: Option<Vec<u8>>,
}

/// Rebuilds a stored document on a blocking thread. Decoding and applying hundreds of stored updates
/// takes milliseconds; on the hub's event loop that would stall every client it serves, and when many
/// interviews come due together (they were loaded together and are edited at similar rates) the
/// stalls added up to hundreds of milliseconds. `None` if the rebuild panicked (logged).
pub(crate) async fn rebuild(
    session: Uuid,
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

/// A participant connected to this hub.
pub struct Local {
    pub user: UserInfo,
    pub yjs: bool,
    pub sink: Arc<dyn ConnSink>,
    /// Awareness client ids this connection published (removed when it leaves).
    pub awareness_ids: Vec<u64>,
    /// The participants row (`Storage::add_participant`).
    pub row_id: Uuid,
    pub row_saved: bool,
    /// A seed client's last own text: a candidate base for its next `code_change`.
    pub seed_last: Option<String>,
}

/// Participants another hub reported, until its report expires.
struct RemoteHub {
    participants: Vec<UserInfo>,
    expires: Instant,
}

/// An update relayed by another hub, not yet known to be committed.
struct RemotePending {
    origin: String,
    seq: u64,
    author: Option<Uuid>,
    data: Bytes,
    received: Instant,
    /// Set when this hub queued its own write of it.
    takeover_write: Option<u64>,
}

struct WaitingAck {
    write_wm: u64,
    remote_wm: u64,
    ack: AckFn,
}

/// The outcome of applying one update.
struct Applied {
    changed: bool,
    delta: Vec<u8>,
    pending: bool,
}

pub(crate) struct State {
    awareness: Awareness,
    text: TextRef,
    pub language: Language,
    /// Set when the interview is unloaded; a join that raced with it loads a fresh one.
    pub closed: bool,
    pub local: HashMap<ConnId, Local>,
    remote: HashMap<String, RemoteHub>,
    /// Other hubs subscribed to this interview's channel (heard from recently), until when. Edits and
    /// awareness are published only while there is one: a lone hub does no bus I/O per keystroke, and
    /// a hub that joins later asks for the state (`SyncStep1`) before anything else.
    peers: HashMap<String, Instant>,
    /// Since when the interview has had no local participants.
    pub idle_since: Option<Instant>,
    seed_count: usize,
    /// Recent texts sent to seed clients (bases for their next `code_change`).
    seed_bases: VecDeque<String>,
    awareness_owner: HashMap<u64, ConnId>,

    next_write_id: u64,
    committed_write_id: u64,
    pub in_flight: u64,
    waiting_acks: Vec<WaitingAck>,
    remote_pending: BTreeMap<u64, RemotePending>,
    next_remote_id: u64,
    /// The write id last announced to the other hubs, when, and whether that announcement was
    /// repeated (see [`Interview::commit_notice`]).
    notice_sent: u64,
    notice_at: Instant,
    notice_repeated: u64,

    pub committed_since_snapshot: u64,
    pub text_dirty_since: Option<Instant>,
    pub resync_needed: bool,
    unavailable_notified: bool,
    /// Its updates cannot be stored: the interview is closed for everyone.
    pub broken: bool,
}

struct Rooms {
    all: String,
    yjs: String,
    seed: String,
}

pub struct Interview {
    pub id: Uuid,
    pub code: SessionCode,
    pub channel: Arc<str>,
    pub(crate) ctx: Arc<Ctx>,
    rooms: Rooms,
    state: Mutex<State>,
    /// Wakes the worker (presence changed, snapshot due, commit notice due, …).
    pub wake: Notify,
    pub cancel: CancellationToken,
}

impl Interview {
    pub(crate) fn new(
        ctx: Arc<Ctx>,
        id: Uuid,
        code: SessionCode,
        language: Language,
        doc: Doc,
        stored: usize,
    ) -> Arc<Self> {
        let text = doc.get_or_insert_text(TEXT_NAME);
        let awareness = Awareness::new(doc);
        Arc::new(Self {
            id,
            code,
            channel: crate::relay::channel(id).into(),
            rooms: Rooms {
                all: format!("i:{id}"),
                yjs: format!("i:{id}:yjs"),
                seed: format!("i:{id}:seed"),
            },
            cancel: ctx.cancel.child_token(),
            ctx,
            state: Mutex::new(State {
                awareness,
                text,
                language,
                closed: false,
                local: HashMap::new(),
                remote: HashMap::new(),
                peers: HashMap::new(),
                idle_since: Some(Instant::now()),
                seed_count: 0,
                seed_bases: VecDeque::new(),
                awareness_owner: HashMap::new(),
                next_write_id: 1,
                committed_write_id: 0,
                in_flight: 0,
                waiting_acks: Vec::new(),
                remote_pending: BTreeMap::new(),
                next_remote_id: 1,
                notice_sent: 0,
                notice_at: Instant::now(),
                notice_repeated: 0,
                committed_since_snapshot: stored as u64,
                text_dirty_since: None,
                resync_needed: false,
                unavailable_notified: false,
                broken: false,
            }),
            wake: Notify::new(),
        })
    }

    pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, State> {
        self.state.lock()
    }

    // ---------------------------------------------------------------- presence

    fn presence(st: &State) -> BTreeMap<Uuid, UserInfo> {
        let mut all = BTreeMap::new();
        for l in st.local.values() {
            all.entry(l.user.user_id).or_insert_with(|| l.user.clone());
        }
        for r in st.remote.values() {
            for p in &r.participants {
                all.entry(p.user_id).or_insert_with(|| p.clone());
            }
        }
        all
    }

    fn participants_json(all: &BTreeMap<Uuid, UserInfo>) -> Value {
        let mut list: Vec<&UserInfo> = all.values().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name).then(a.user_id.cmp(&b.user_id)));
        json!(list)
    }

    /// Emits `user_joined` / `user_left` for the difference between two presence sets.
    fn announce(
        &self,
        before: &BTreeMap<Uuid, UserInfo>,
        after: &BTreeMap<Uuid, UserInfo>,
        except: Option<&ConnId>,
    ) {
        if before.len() == after.len() && before.keys().eq(after.keys()) {
            return;
        }
        let participants = Self::participants_json(after);
        let count = after.len();
        for (id, u) in after {
            if !before.contains_key(id) {
                let body = json!({"user_id": id, "name": u.name, "color": u.color, "count": count, "participants": participants});
                self.ctx.out.broadcast(
                    &self.rooms.all,
                    except,
                    "user_joined",
                    Outgoing::Json(body),
                );
            }
        }
        for (id, u) in before {
            if !after.contains_key(id) {
                let body = json!({"user_id": id, "name": u.name, "count": count, "participants": participants});
                self.ctx
                    .out
                    .broadcast(&self.rooms.all, None, "user_left", Outgoing::Json(body));
            }
        }
    }

    /// This hub's local participants, for a `Presence` bus message.
    fn presence_message(&self, st: &State) -> Bytes {
        let mut mine: Vec<&UserInfo> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for l in st.local.values() {
            if seen.insert(l.user.user_id) {
                mine.push(&l.user);
            }
        }
        let json = serde_json::to_vec(&mine).unwrap_or_default();
        BusMessage::Presence { json: json.into() }.encode(&self.ctx.hub_id)
    }

    /// Publishes this hub's participants (on change, on request and periodically).
    pub fn publish_presence(&self) {
        let st = self.state.lock();
        let msg = self.presence_message(&st);
        drop(st);
        self.ctx.publish(&self.channel, msg);
    }

    /// Connected users across all hubs.
    pub fn participant_count(&self) -> usize {
        Self::presence(&self.state.lock()).len()
    }

    /// Admits a connection. The ack is answered under the lock, before anything else reaches the
    /// client; the client then receives `sync_code`. Fails (handing everything back) if the interview
    /// was unloaded meanwhile.
    pub(crate) fn admit(
        &self,
        local: Local,
        ack: Option<AckFn>,
        on_admitted: impl FnOnce(),
    ) -> Result<(), Box<(Local, Option<AckFn>)>> {
        let mut st = self.state.lock();
        if st.closed {
            return Err(Box::new((local, ack)));
        }
        let conn = local.sink.id().clone();
        let before = Self::presence(&st);
        let sink = local.sink.clone();
        let user = local.user.clone();
        let yjs = local.yjs;
        if !yjs {
            st.seed_count += 1;
        }
        st.local.insert(conn.clone(), local);
        st.idle_since = None;
        let after = Self::presence(&st);
        let participants = Self::participants_json(&after);
        sink.join(&self.rooms.all);
        sink.join(if yjs {
            &self.rooms.yjs
        } else {
            &self.rooms.seed
        });
        let body = json!({
            "ok": true,
            "session_id": self.id,
            "session_code": self.code.as_str(),
            "user_id": user.user_id,
            "name": user.name,
            "color": user.color,
            "language": st.language.as_str(),
            "participants": participants,
            "count": after.len(),
        });
        // The connection must know it joined before the client can act on the ack.
        on_admitted();
        if let Some(ack) = ack {
            ack(Ok(body));
        }
        let text = st.text.get_string(&st.awareness.doc().transact());
        if !yjs && st.seed_bases.back() != Some(&text) {
            Self::push_base(&mut st, text.clone());
        }
        sink.emit(
            "sync_code",
            Outgoing::Json(json!({"code": text, "language": st.language.as_str(), "participants": participants})),
        );
        self.announce(&before, &after, Some(&conn));
        let msg = self.presence_message(&st);
        drop(st);
        self.ctx.publish(&self.channel, msg);
        self.wake.notify_one();
        Ok(())
    }

    /// Removes a connection; returns its record (for the participants row).
    pub(crate) fn leave(&self, conn: &ConnId) -> Option<Local> {
        let mut st = self.state.lock();
        let before = Self::presence(&st);
        let local = st.local.remove(conn)?;
        if !local.yjs {
            st.seed_count -= 1;
        }
        if !local.awareness_ids.is_empty() {
            let mut removed = Vec::new();
            for id in &local.awareness_ids {
                st.awareness_owner.remove(id);
                let cid = yrs::block::ClientID::new(*id);
                if st.awareness.meta(cid).is_some() {
                    st.awareness.remove_state(cid);
                    removed.push(cid);
                }
            }
            if let Ok(update) = st.awareness.update_with_clients(removed) {
                let msg = protocol::encode_awareness(&update);
                let publish = Self::has_peers(&st);
                self.relay_awareness(Bytes::from(msg), Some(conn), publish);
            }
        }
        local.sink.leave(&self.rooms.all);
        local.sink.leave(if local.yjs {
            &self.rooms.yjs
        } else {
            &self.rooms.seed
        });
        if st.local.is_empty() {
            st.idle_since = Some(Instant::now());
        }
        let after = Self::presence(&st);
        self.announce(&before, &after, Some(conn));
        let msg = self.presence_message(&st);
        drop(st);
        self.ctx.publish(&self.channel, msg);
        self.wake.notify_one();
        Some(local)
    }

    fn has_peers(st: &State) -> bool {
        let now = Instant::now();
        st.peers.values().any(|&until| until > now)
    }

    fn relay_awareness(&self, msg: Bytes, except: Option<&ConnId>, publish: bool) {
        self.ctx.out.broadcast(
            &self.rooms.yjs,
            except,
            "yjs",
            Outgoing::Binary(msg.clone()),
        );
        if publish {
            self.ctx.publish(
                &self.channel,
                BusMessage::Awareness { data: msg }.encode(&self.ctx.hub_id),
            );
        }
    }

    // ---------------------------------------------------------------- document changes

    fn apply(st: &mut State, update: Update) -> Result<Applied, HubError> {
        let res = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut txn = st.awareness.doc().transact_mut();
            txn.apply_update(update)?;
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

    fn push_base(st: &mut State, text: String) {
        if st.seed_bases.len() == SEED_BASE_HISTORY {
            st.seed_bases.pop_front();
        }
        st.seed_bases.push_back(text);
    }

    /// Fans a change out to local clients: the delta to Yjs clients (encoded once), the whole text to
    /// seed clients when there are any.
    fn fan_out(&self, st: &mut State, delta: &[u8], except: Option<&ConnId>, author: Option<Uuid>) {
        let msg = Bytes::from(protocol::encode_update(delta));
        self.ctx
            .out
            .broadcast(&self.rooms.yjs, except, "yjs", Outgoing::Binary(msg));
        st.text_dirty_since.get_or_insert_with(Instant::now);
        if st.seed_count > 0 {
            let text = st.text.get_string(&st.awareness.doc().transact());
            if st.seed_bases.back() != Some(&text) {
                let body = json!({"code": text, "user_id": author});
                self.ctx.out.broadcast(
                    &self.rooms.seed,
                    except,
                    "code_updated",
                    Outgoing::Json(body),
                );
                Self::push_base(st, text);
            }
        }
    }

    /// Queues a write; returns its write id.
    fn enqueue_write(self: &Arc<Self>, st: &mut State, author: Option<Uuid>, data: Vec<u8>) -> u64 {
        let write_id = st.next_write_id;
        st.next_write_id += 1;
        st.in_flight += 1;
        let item = WriteItem {
            interview: self.clone(),
            write_id,
            update: NewUpdate {
                session_id: self.id,
                author,
                data,
            },
        };
        if self.ctx.writer.send(WriterCmd::Write(item)).is_err() {
            tracing::error!(session = %self.id, "writer is gone; update not stored");
        }
        write_id
    }

    /// A local edit: stored (group commit), relayed to the other hubs.
    fn local_change(self: &Arc<Self>, st: &mut State, author: Uuid, delta: Vec<u8>) -> u64 {
        let data = Bytes::from(delta);
        let write_id = self.enqueue_write(st, Some(author), data.to_vec());
        if Self::has_peers(st) {
            let msg = BusMessage::Update {
                seq: write_id,
                author: Some(author),
                data,
            };
            if !self
                .ctx
                .publish(&self.channel, msg.encode(&self.ctx.hub_id))
            {
                st.resync_needed = true;
            }
        }
        write_id
    }

    /// Registers an ack to release once writes up to `write_wm` and every remote update received so
    /// far are committed.
    fn ack_when_durable(st: &mut State, write_wm: u64, ack: AckFn) {
        let remote_wm = st.next_remote_id;
        if Self::durable(st, write_wm, remote_wm) {
            ack(Ok(json!({"ok": true})));
        } else {
            st.waiting_acks.push(WaitingAck {
                write_wm,
                remote_wm,
                ack,
            });
        }
    }

    fn durable(st: &State, write_wm: u64, remote_wm: u64) -> bool {
        st.committed_write_id >= write_wm && st.remote_pending.range(..remote_wm).next().is_none()
    }

    fn release_acks(st: &mut State) {
        if st.waiting_acks.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut st.waiting_acks);
        for w in waiting {
            if Self::durable(st, w.write_wm, w.remote_wm) {
                (w.ack)(Ok(json!({"ok": true})));
            } else {
                st.waiting_acks.push(w);
            }
        }
    }

    /// Handles one `yjs` emit (already decoded) from a local connection.
    pub(crate) fn handle_yjs(
        self: &Arc<Self>,
        conn: &ConnId,
        msgs: Vec<ClientMessage>,
        ack: Option<AckFn>,
    ) -> Result<(), HubError> {
        let mut st = self.state.lock();
        let Some(local) = st.local.get(conn) else {
            return Err(HubError::not_joined());
        };
        let author = local.user.user_id;
        let sink = local.sink.clone();
        // Validate awareness ownership before applying anything, so a refused emit changes nothing.
        for m in &msgs {
            if let ClientMessage::Awareness { update, .. } = m {
                let owned = st
                    .local
                    .get(conn)
                    .map(|l| l.awareness_ids.len())
                    .unwrap_or(0);
                let mut new_ids = 0;
                for (id, entry) in &update.clients {
                    match st.awareness_owner.get(&id.get()) {
                        Some(owner) if owner != conn => {
                            return Err(HubError::new(
                                ErrorCode::InvalidUpdate,
                                "awareness state of another participant",
                            ));
                        }
                        Some(_) => {}
                        None => new_ids += 1,
                    }
                    if entry.json.len() > MAX_AWARENESS_STATE_BYTES {
                        return Err(HubError::new(
                            ErrorCode::PayloadTooLarge,
                            "awareness state too large",
                        ));
                    }
                }
                if owned + new_ids > MAX_AWARENESS_CLIENTS_PER_CONN {
                    return Err(HubError::new(
                        ErrorCode::InvalidUpdate,
                        "too many awareness clients",
                    ));
                }
            }
        }
        let mut carried_updates = false;
        let mut last_write = None;
        for m in msgs {
            match m {
                ClientMessage::SyncStep1(sv) => {
                    let txn = st.awareness.doc().transact();
                    let diff = txn.encode_state_as_update_v1(&sv);
                    let ours = txn.state_vector();
                    drop(txn);
                    sink.emit(
                        "yjs",
                        Outgoing::Binary(protocol::encode_step2(&diff).into()),
                    );
                    sink.emit(
                        "yjs",
                        Outgoing::Binary(protocol::encode_step1(&ours).into()),
                    );
                    if let Ok(aw) = st.awareness.update() {
                        if !aw.clients.is_empty() {
                            sink.emit(
                                "yjs",
                                Outgoing::Binary(protocol::encode_awareness(&aw).into()),
                            );
                        }
                    }
                }
                ClientMessage::Update { update, raw } => {
                    carried_updates = true;
                    let applied = Self::apply(&mut st, update)?;
                    if applied.changed {
                        self.fan_out(&mut st, &applied.delta, Some(conn), Some(author));
                    }
                    if applied.pending {
                        // Part of it waits for something this hub lacks: store it as sent (so the ack
                        // is honest) and fetch what is missing.
                        last_write = Some(self.local_change(&mut st, author, raw));
                        st.resync_needed = true;
                        self.wake.notify_one();
                    } else if applied.changed {
                        last_write = Some(self.local_change(&mut st, author, applied.delta));
                    }
                }
                ClientMessage::Awareness { update, raw } => {
                    let ids: Vec<u64> = update.clients.keys().map(|c| c.get()).collect();
                    if let Err(e) = st.awareness.apply_update(update) {
                        return Err(HubError::new(
                            ErrorCode::InvalidUpdate,
                            format!("awareness: {e}"),
                        ));
                    }
                    for id in ids {
                        if st.awareness_owner.insert(id, conn.clone()).is_none() {
                            if let Some(l) = st.local.get_mut(conn) {
                                l.awareness_ids.push(id);
                            }
                        }
                    }
                    let publish = Self::has_peers(&st);
                    self.relay_awareness(Bytes::from(raw), Some(conn), publish);
                }
                ClientMessage::QueryAwareness => {
                    if let Ok(aw) = st.awareness.update() {
                        sink.emit(
                            "yjs",
                            Outgoing::Binary(protocol::encode_awareness(&aw).into()),
                        );
                    }
                }
            }
        }
        if let Some(ack) = ack {
            match (last_write, carried_updates) {
                (Some(w), _) => Self::ack_when_durable(&mut st, w, ack),
                // Nothing new: it may still be in flight from an earlier emit or another hub.
                (None, true) => {
                    let w = st.next_write_id - 1;
                    Self::ack_when_durable(&mut st, w, ack)
                }
                (None, false) => ack(Ok(json!({"ok": true}))),
            }
        }
        Ok(())
    }

    /// A seed client's whole text, applied as a minimal edit rebased over concurrent changes.
    pub(crate) fn code_change(
        self: &Arc<Self>,
        conn: &ConnId,
        new_text: String,
        ack: Option<AckFn>,
    ) -> Result<(), (HubError, Option<AckFn>)> {
        let mut st = self.state.lock();
        let Some(local) = st.local.get(conn) else {
            return Err((HubError::not_joined(), ack));
        };
        let author = local.user.user_id;
        let sink = local.sink.clone();
        let own_last = local.seed_last.clone();
        let current = st.text.get_string(&st.awareness.doc().transact());
        let mut bases: Vec<&str> = st.seed_bases.iter().map(String::as_str).collect();
        if let Some(own) = own_last.as_deref() {
            bases.push(own);
        }
        let splice = text::rebase(&bases, &current, &new_text);
        let mut write = None;
        if !splice.is_noop() {
            let delta = {
                let text = st.text.clone();
                let mut txn = st.awareness.doc().transact_mut();
                if splice.end > splice.start {
                    text.remove_range(&mut txn, splice.start, splice.end - splice.start);
                }
                if !splice.insert.is_empty() {
                    text.insert(&mut txn, splice.start, &splice.insert);
                }
                txn.encode_update_v1()
            };
            self.fan_out(&mut st, &delta, Some(conn), Some(author));
            write = Some(self.local_change(&mut st, author, delta));
        }
        let after = st.text.get_string(&st.awareness.doc().transact());
        if after != new_text {
            // Merged with someone else's concurrent edit: show the client the result.
            sink.emit(
                "code_updated",
                Outgoing::Json(json!({"code": after, "user_id": Value::Null})),
            );
        }
        if st.seed_bases.back() != Some(&after) {
            Self::push_base(&mut st, after);
        }
        if let Some(l) = st.local.get_mut(conn) {
            l.seed_last = Some(new_text);
        }
        if let Some(ack) = ack {
            let w = write.unwrap_or(st.next_write_id - 1);
            Self::ack_when_durable(&mut st, w, ack);
        }
        Ok(())
    }

    /// The current text and language (tests, REST text saves).
    pub fn snapshot_text(&self) -> (String, Language) {
        let st = self.state.lock();
        let text = st.text.get_string(&st.awareness.doc().transact());
        (text, st.language)
    }

    /// The current language.
    pub fn snapshot_language(&self) -> Language {
        self.state.lock().language
    }

    /// The live replica's state vector.
    pub(crate) fn state_vector(&self) -> StateVector {
        self.state.lock().awareness.doc().transact().state_vector()
    }

    /// The full document state, for tests and snapshots of the live replica.
    pub fn encode_state(&self) -> Vec<u8> {
        let st = self.state.lock();
        let txn = st.awareness.doc().transact();
        txn.encode_state_as_update_v1(&StateVector::default())
    }

    /// Records a language change made here and tells everyone else.
    pub(crate) fn set_language(&self, conn: &ConnId, language: Language, user_id: Uuid) {
        let mut st = self.state.lock();
        st.language = language;
        let body = json!({"language": language.as_str(), "user_id": user_id});
        self.ctx.out.broadcast(
            &self.rooms.all,
            Some(conn),
            "language_updated",
            Outgoing::Json(body.clone()),
        );
        drop(st);
        let msg = BusMessage::Language {
            json: serde_json::to_vec(&body).unwrap_or_default().into(),
        };
        self.ctx
            .publish(&self.channel, msg.encode(&self.ctx.hub_id));
    }

    /// Shares a recorded run with every participant (here and on other hubs).
    pub(crate) fn share_run(&self, body: Value) {
        let _st = self.state.lock();
        self.ctx.out.broadcast(
            &self.rooms.all,
            None,
            "execution_result",
            Outgoing::Json(body.clone()),
        );
        let msg = BusMessage::Run {
            json: serde_json::to_vec(&body).unwrap_or_default().into(),
        };
        self.ctx
            .publish(&self.channel, msg.encode(&self.ctx.hub_id));
    }

    /// Whether a connection is a local participant.
    pub fn has_local(&self, conn: &ConnId) -> bool {
        self.state.lock().local.contains_key(conn)
    }

    // ---------------------------------------------------------------- from the writer

    /// Its writes up to `upto` are committed. Returns the notice for the other hubs that share
    /// the interview, if one is due (see [`Interview::commit_notice`]), for the writer to send with
    /// those of the other interviews of the batch.
    pub(crate) fn writes_committed(
        &self,
        upto: u64,
        count: u64,
        _max_seq: i64,
    ) -> Option<(u64, Vec<String>)> {
        let mut st = self.state.lock();
        st.committed_write_id = st.committed_write_id.max(upto);
        st.in_flight = st.in_flight.saturating_sub(count);
        st.committed_since_snapshot += count;
        st.unavailable_notified = false;
        let committed = st.committed_write_id;
        st.remote_pending
            .retain(|_, p| p.takeover_write.is_none_or(|w| w > committed));
        Self::release_acks(&mut st);
        // Wake the worker only for what cannot wait for its next tick: a due snapshot, or an unload
        // once nothing is in flight. Text saves are debounced well beyond the tick anyway, and the
        // other hubs hear of the commit from the writer (the notice returned); waking the worker
        // after every commit of a busy interview cost a task switch and a housekeeping pass per edit.
        let urgent =
            st.local.is_empty() || st.committed_since_snapshot >= self.ctx.cfg.snapshot_every;
        let notice = Self::notice(&mut st);
        drop(st);
        if urgent {
            self.wake.notify_one();
        }
        notice
    }

    /// The database is down: tell the clients once (their edits stay unacknowledged).
    pub(crate) fn storage_unavailable(&self) {
        let mut st = self.state.lock();
        if !st.unavailable_notified {
            st.unavailable_notified = true;
            self.ctx.out.broadcast(
                &self.rooms.all,
                None,
                "error",
                Outgoing::Json(HubError::unavailable().to_json()),
            );
        }
    }

    /// This interview's updates cannot be stored (deleted session, corrupt data): refuse its pending
    /// acks and close it; clients get an `internal` error and are disconnected.
    pub(crate) fn writes_failed(&self) {
        let mut st = self.state.lock();
        st.broken = true;
        st.in_flight = 0;
        for w in std::mem::take(&mut st.waiting_acks) {
            (w.ack)(Err(HubError::internal()));
        }
        self.ctx.out.broadcast(
            &self.rooms.all,
            None,
            "error",
            Outgoing::Json(HubError::internal().to_json()),
        );
        for l in st.local.values() {
            l.sink.disconnect();
        }
        drop(st);
        self.wake.notify_one();
    }

    // ---------------------------------------------------------------- from the bus

    /// Applies a message from another hub.
    pub(crate) fn handle_bus(self: &Arc<Self>, origin: String, msg: BusMessage) {
        if origin == self.ctx.hub_id {
            return;
        }
        let mut st = self.state.lock();
        st.peers
            .insert(origin.clone(), Instant::now() + self.ctx.cfg.heartbeat_ttl);
        match msg {
            BusMessage::Update { seq, author, data } => {
                let Ok(update) = Update::decode_v1(&data) else {
                    tracing::warn!(%origin, "undecodable update on the bus; ignored");
                    return;
                };
                match Self::apply(&mut st, update) {
                    Ok(a) => {
                        if a.changed {
                            self.fan_out(&mut st, &a.delta, None, author);
                        }
                        if a.pending {
                            st.resync_needed = true;
                            self.wake.notify_one();
                        }
                    }
                    Err(e) => tracing::warn!(%origin, error = %e, "bus update does not apply"),
                }
                let id = st.next_remote_id;
                st.next_remote_id += 1;
                st.remote_pending.insert(
                    id,
                    RemotePending {
                        origin,
                        seq,
                        author,
                        data,
                        received: Instant::now(),
                        takeover_write: None,
                    },
                );
            }
            // Sent to the inbox (`remote_committed`), never on an interview's channel.
            BusMessage::Commits { .. } => {}
            BusMessage::Awareness { data } => {
                if let Ok(msgs) = protocol::decode(&data) {
                    for m in msgs {
                        if let ClientMessage::Awareness { update, .. } = m {
                            let _ = st.awareness.apply_update(update);
                        }
                    }
                    self.relay_awareness(data, None, false);
                }
            }
            BusMessage::SyncStep1 { want_reply, sv } => {
                let Ok(sv) = StateVector::decode_v1(&sv) else {
                    return;
                };
                let (diff, ours) = {
                    let txn = st.awareness.doc().transact();
                    (
                        txn.encode_state_as_update_v1(&sv),
                        txn.state_vector().encode_v1(),
                    )
                };
                let reply = BusMessage::SyncReply {
                    target: origin,
                    data: diff.into(),
                };
                let presence = self.presence_message(&st);
                let aw = st.awareness.update().ok().filter(|a| !a.clients.is_empty());
                drop(st);
                self.ctx
                    .publish(&self.channel, reply.encode(&self.ctx.hub_id));
                if want_reply {
                    let ask = BusMessage::SyncStep1 {
                        want_reply: false,
                        sv: ours.into(),
                    };
                    self.ctx
                        .publish(&self.channel, ask.encode(&self.ctx.hub_id));
                }
                self.ctx.publish(&self.channel, presence);
                if let Some(aw) = aw {
                    let m = BusMessage::Awareness {
                        data: protocol::encode_awareness(&aw).into(),
                    };
                    self.ctx.publish(&self.channel, m.encode(&self.ctx.hub_id));
                }
            }
            BusMessage::SyncReply { target, data } => {
                if target != self.ctx.hub_id {
                    return;
                }
                if let Ok(update) = Update::decode_v1(&data) {
                    if let Ok(a) = Self::apply(&mut st, update) {
                        if a.changed {
                            self.fan_out(&mut st, &a.delta, None, None);
                            // The other hub may not have committed all of it: store what was new here.
                            self.enqueue_write(&mut st, None, a.delta);
                        }
                    }
                }
            }
            BusMessage::Presence { json } => {
                let Ok(participants) = serde_json::from_slice::<Vec<UserInfo>>(&json) else {
                    return;
                };
                let before = Self::presence(&st);
                let expires = Instant::now() + self.ctx.cfg.heartbeat_ttl;
                if participants.is_empty() {
                    st.remote.remove(&origin);
                } else {
                    st.remote.insert(
                        origin,
                        RemoteHub {
                            participants,
                            expires,
                        },
                    );
                }
                let after = Self::presence(&st);
                self.announce(&before, &after, None);
            }
            BusMessage::Language { json } => {
                let Ok(body) = serde_json::from_slice::<Value>(&json) else {
                    return;
                };
                if let Some(lang) = body
                    .get("language")
                    .and_then(Value::as_str)
                    .and_then(|l| Language::parse(l).ok())
                {
                    st.language = lang;
                    self.ctx.out.broadcast(
                        &self.rooms.all,
                        None,
                        "language_updated",
                        Outgoing::Json(body),
                    );
                }
            }
            BusMessage::Run { json } => {
                if let Ok(body) = serde_json::from_slice::<Value>(&json) {
                    self.ctx.out.broadcast(
                        &self.rooms.all,
                        None,
                        "execution_result",
                        Outgoing::Json(body),
                    );
                }
            }
        }
    }

    /// Merges what a document loaded from the database (resync, snapshot) holds into the live one.
    pub(crate) fn merge_from_storage(&self, update: &[u8], language: Option<Language>) {
        let mut st = self.state.lock();
        if let Ok(update) = Update::decode_v1(update) {
            if let Ok(a) = Self::apply(&mut st, update) {
                if a.changed {
                    self.fan_out(&mut st, &a.delta, None, None);
                }
            }
        }
        if let Some(lang) = language {
            if lang != st.language {
                st.language = lang;
                let body = json!({"language": lang.as_str(), "user_id": Value::Null});
                self.ctx.out.broadcast(
                    &self.rooms.all,
                    None,
                    "language_updated",
                    Outgoing::Json(body),
                );
            }
        }
    }

    // ---------------------------------------------------------------- housekeeping (worker)

    /// What the other hubs sharing this interview should be told of its commits: the write id
    /// committed up to, and the hubs to tell. Due after every group commit (returned by
    /// [`Interview::writes_committed`]: the writer sends the notices of all its interviews together,
    /// one message per hub) and checked on the worker's tick.
    ///
    /// Once the commits stop advancing, the last notice is repeated once, [`NOTICE_REPEAT_AFTER`]
    /// later: a notice travels by the other hub's inbox, not by the interview's channel, so it may
    /// be handled there before the update it covers (which then waits for the next notice), or be
    /// dropped with a full publish queue. The repeat settles both without waiting for the other
    /// hub's takeover ([`REMOTE_COMMIT_TAKEOVER`](crate::limits::REMOTE_COMMIT_TAKEOVER)).
    pub(crate) fn commit_notice(&self) -> Option<(u64, Vec<String>)> {
        Self::notice(&mut self.state.lock())
    }

    fn notice(st: &mut State) -> Option<(u64, Vec<String>)> {
        let now = Instant::now();
        let upto = st.committed_write_id;
        let fresh = upto > st.notice_sent;
        let repeat = !fresh
            && upto > st.notice_repeated
            && now.duration_since(st.notice_at) >= NOTICE_REPEAT_AFTER;
        if !(fresh || repeat) || !Self::has_peers(st) {
            return None;
        }
        if fresh {
            st.notice_sent = upto;
            st.notice_at = now;
        } else {
            st.notice_repeated = upto;
        }
        let peers = st
            .peers
            .iter()
            .filter(|(_, &until)| until > now)
            .map(|(hub, _)| hub.clone())
            .collect();
        Some((upto, peers))
    }

    /// `origin` committed its edits of this interview up to `seq` (its `Commits` notice): they no
    /// longer hold back acks here, and this hub will not commit them itself.
    pub(crate) fn remote_committed(&self, origin: &str, seq: u64) {
        let mut st = self.state.lock();
        st.peers.insert(
            origin.to_owned(),
            Instant::now() + self.ctx.cfg.heartbeat_ttl,
        );
        st.remote_pending
            .retain(|_, p| !(p.origin == origin && p.seq <= seq));
        Self::release_acks(&mut st);
    }

    /// Commits here the relayed updates whose origin did not confirm them in time.
    pub(crate) fn take_over_stale(self: &Arc<Self>) {
        let mut st = self.state.lock();
        let now = Instant::now();
        let stale: Vec<(u64, Option<Uuid>, Bytes)> = st
            .remote_pending
            .iter()
            .filter(|(_, p)| {
                p.takeover_write.is_none()
                    && now.duration_since(p.received) >= crate::limits::REMOTE_COMMIT_TAKEOVER
            })
            .map(|(id, p)| (*id, p.author, p.data.clone()))
            .collect();
        for (id, author, data) in stale {
            let w = self.enqueue_write(&mut st, author, data.to_vec());
            if let Some(p) = st.remote_pending.get_mut(&id) {
                p.takeover_write = Some(w);
            }
        }
    }

    /// Drops other hubs' presence reports that were not refreshed in time (a dead hub).
    pub(crate) fn expire_remote(&self) {
        let mut st = self.state.lock();
        let now = Instant::now();
        st.peers.retain(|_, until| *until > now);
        if st.remote.values().all(|r| r.expires > now) {
            return;
        }
        let before = Self::presence(&st);
        st.remote.retain(|_, r| r.expires > now);
        let after = Self::presence(&st);
        self.announce(&before, &after, None);
    }

    /// Drops awareness states that were not renewed (clients of a dead hub).
    pub(crate) fn purge_awareness(&self) {
        let mut st = self.state.lock();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let stale: Vec<_> = st
            .awareness
            .iter()
            .filter(|(_, s)| {
                s.data.is_some()
                    && now.saturating_sub(s.last_updated)
                        > crate::limits::AWARENESS_STALE.as_millis() as u64
            })
            .map(|(id, _)| id)
            .collect();
        for id in stale {
            if !st.awareness_owner.contains_key(&id.get()) {
                st.awareness.remove_state(id);
            }
        }
    }

    /// Whether another hub reported participants.
    pub fn has_remote(&self) -> bool {
        !self.state.lock().remote.is_empty()
    }

    /// Bus subscription wanted: the interview has local participants.
    pub fn has_locals(&self) -> bool {
        !self.state.lock().local.is_empty()
    }

    /// The text to save if it changed more than `debounce` ago.
    pub(crate) fn text_to_save(&self, debounce: std::time::Duration) -> Option<String> {
        let mut st = self.state.lock();
        let since = st.text_dirty_since?;
        if since.elapsed() < debounce {
            return None;
        }
        st.text_dirty_since = None;
        let text = st.text.get_string(&st.awareness.doc().transact());
        Some(text)
    }

    pub(crate) fn mark_text_dirty(&self) {
        self.state
            .lock()
            .text_dirty_since
            .get_or_insert_with(Instant::now);
    }

    /// A request for other hubs' state (resync), and this hub's presence.
    pub(crate) fn sync_request(&self) -> (Bytes, Bytes) {
        let st = self.state.lock();
        let sv = st.awareness.doc().transact().state_vector().encode_v1();
        let ask = BusMessage::SyncStep1 {
            want_reply: true,
            sv: sv.into(),
        }
        .encode(&self.ctx.hub_id);
        (ask, self.presence_message(&st))
    }

    /// Participant rows that could not be written yet.
    pub(crate) fn unsaved_rows(&self) -> Vec<(Uuid, duet_storage::Participant)> {
        let st = self.state.lock();
        st.local
            .values()
            .filter(|l| !l.row_saved)
            .map(|l| {
                (
                    l.row_id,
                    crate::core::participant_row(&self.ctx, self.id, l.row_id, &l.user),
                )
            })
            .collect()
    }

    pub(crate) fn row_saved(&self, row_id: Uuid) {
        let mut st = self.state.lock();
        if let Some(l) = st.local.values_mut().find(|l| l.row_id == row_id) {
            l.row_saved = true;
        }
    }

    /// Counts messages for the stats.
    pub(crate) fn count_in(&self) {
        Stats::add(&self.ctx.stats.messages_in, 1);
    }
}
