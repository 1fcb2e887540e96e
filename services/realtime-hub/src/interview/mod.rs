//! One live interview, as a state machine: inputs in, [`Effect`]s out. No IO, no clock reads, no
//! runtime handles — time is an argument, acks are [`AckToken`]s, and everything the interview wants
//! done (send, broadcast, publish, write, wake its worker) is an effect the runtime executes in
//! order under the interview's lock, so every participant sees one order of events.
//!
//! - [`docs`]: the shared documents (the code; more with narrower audiences), [`awareness`] states;
//! - [`durability`]: the watermarks that release an ack only once what it covers is committed;
//! - [`presence`]: who is here and on other hubs, `user_joined` / `user_left`;
//! - [`protocol`] and [`scan`]: the y-protocols framing and the checks every client update passes;
//! - [`seed`]: a seed-protocol client's whole text turned into the edit of a Yjs peer.
//!
//! The inputs: [`Interview::admit`] / [`Interview::leave`], [`Interview::on_client`] (a parsed
//! client event), [`Interview::on_bus`] (another hub), [`Interview::on_committed`] /
//! [`Interview::on_remote_committed`] (the writer, another hub's commit notice),
//! [`Interview::on_tick`] (housekeeping) and [`Interview::on_stored`] (what a reload found).

pub mod awareness;
mod bus;
mod client;
pub mod docs;
pub mod durability;
pub mod effects;
pub mod guard;
pub mod held;
pub mod lifecycle;
pub mod presence;
pub mod protocol;
pub mod scan;
pub mod seed;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use std::collections::HashSet;

use duet_domain::{InterviewControl, Language, Role, SessionCode};
use serde_json::{json, Value};
use uuid::Uuid;
use yrs::updates::decoder::Decode;
use yrs::{StateVector, Update};

use crate::error::HubError;
use crate::limits::{AWARENESS_STALE, PURGE_EVERY};
pub use docs::{doc_from_storage, new_doc, DocName, SharedDoc, NOTES_NAME, TEXT_NAME};
use duet_bus::relay::BusMessage;
use durability::Durability;
pub use effects::{AckToken, Audience, ConnId, Effect, Effects, Outgoing};
use presence::{Local, Roster, UserInfo};
use protocol::ClientMessage;

/// What the core needs to know about its hub.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This hub's id: the origin of what it publishes.
    pub hub_id: String,
    /// How long another hub counts as sharing the interview (and its participants as present)
    /// after it was last heard from.
    pub peer_ttl: Duration,
    /// A snapshot is due after this many committed updates.
    pub snapshot_every: u64,
}

/// Someone joining from this hub.
#[derive(Debug, Clone)]
pub struct Joiner {
    pub user: UserInfo,
    /// Edits through Yjs (Duet's client); otherwise a seed-protocol client.
    pub yjs: bool,
    /// Their participants row.
    pub row_id: Uuid,
    pub role: Role,
    /// Their user id comes from a token (or is an interviewer's): no tokenless client may take it.
    pub bound: bool,
}

/// A client event, parsed and validated at the edge.
#[derive(Debug)]
pub enum Command {
    /// y-protocols messages for one document. `defer`: the interview is over its integration
    /// budget, so updates are staged rather than integrated now.
    Yjs {
        doc: DocName,
        msgs: Vec<ClientMessage>,
        ack: Option<AckToken>,
        defer: bool,
    },
    /// A seed client's whole text.
    CodeChange { text: String, ack: Option<AckToken> },
    /// The language was changed (and stored).
    Language { language: Language, user_id: Uuid },
    /// A run was recorded; share it with everyone.
    Run { body: Value },
    /// A participant's activity (the `activity` event's body, already recorded): for the
    /// interviewers, on every hub.
    Activity { body: Value },
}

/// The interview was unloaded before the join could be admitted: load it afresh.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

pub struct Interview {
    pub id: Uuid,
    pub code: SessionCode,
    settings: Settings,
    code_doc: SharedDoc,
    /// The interviewers' private notes (audience [`Audience::Interviewers`]).
    notes_doc: SharedDoc,
    language: Language,
    roster: Roster,
    durability: Durability,
    /// What the code document holds and has stored, against the caps.
    usage: guard::Usage,
    /// Who owns each Yjs client id of the code document.
    owners: guard::Owners,
    /// The same for the notes, and what they hold against the caps.
    notes_owners: guard::Owners,
    notes_usage: guard::Usage,
    /// Client updates waiting to be integrated.
    stage: guard::Stage,
    /// The text last sent to the seed clients, with the state it stands for.
    seed_text: Option<Arc<seed::Base>>,
    /// The text a seed client's edit gave, as its base (its characters' ids known without reading
    /// the document), while the document is at the version it was made at: the next base sent.
    seed_made: Option<Arc<seed::Base>>,
    /// The code changed other than by a seed edit made here since the last such edit (a Yjs
    /// client's update, another hub's): the text before the next seed edit then comes without its
    /// characters' ids, and reading that edit's result costs less than finding them.
    code_changed_by_others: bool,
    text_dirty_since: Option<Instant>,
    resync_needed: bool,
    unavailable_notified: bool,
    /// Its updates cannot be stored: the interview is closed for everyone.
    broken: bool,
    /// Unloaded; a join that raced with it loads a fresh one.
    closed: bool,
    last_purge: Instant,
    /// Lifecycle and controls (see [`lifecycle`]).
    control: InterviewControl,
    /// Updates waiting for what they depend on (see [`held`]).
    held: Vec<held::Held>,
    /// Users an interviewer removed while the interview was loaded.
    removed: HashSet<Uuid>,
    /// User ids bound to tokens (see [`Interview::is_bound`]).
    bound: HashSet<Uuid>,
}

impl Interview {
    /// A loaded interview: `doc` rebuilt from storage, `stored` updates after its newest snapshot,
    /// `usage` what it holds already.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: Uuid,
        code: SessionCode,
        language: Language,
        control: InterviewControl,
        doc: yrs::Doc,
        stored: u64,
        usage: guard::Usage,
        settings: Settings,
        now: Instant,
    ) -> Self {
        Self {
            id,
            code,
            settings,
            code_doc: SharedDoc::new(DocName::Code, doc),
            notes_doc: SharedDoc::new(DocName::Notes, new_doc()),
            language,
            roster: Roster::new(now),
            durability: Durability::new(now, stored),
            usage,
            owners: guard::Owners::default(),
            notes_owners: guard::Owners::default(),
            notes_usage: guard::Usage::default(),
            stage: guard::Stage::default(),
            seed_text: None,
            seed_made: None,
            code_changed_by_others: false,
            text_dirty_since: None,
            resync_needed: false,
            unavailable_notified: false,
            broken: false,
            closed: false,
            last_purge: now,
            control,
            removed: HashSet::new(),
            held: Vec::new(),
            bound: HashSet::new(),
        }
    }

    /// The notes as loaded from storage (an interview starts with empty ones).
    pub fn with_notes(mut self, doc: yrs::Doc, usage: guard::Usage) -> Self {
        self.notes_doc = SharedDoc::new(DocName::Notes, doc);
        self.notes_usage = usage;
        self
    }

    fn doc_mut(&mut self, name: DocName) -> &mut SharedDoc {
        match name {
            DocName::Code => &mut self.code_doc,
            DocName::Notes => &mut self.notes_doc,
        }
    }

    fn publish(&self, msg: BusMessage, out: &mut Effects) {
        out.publish(msg.encode(&self.settings.hub_id));
    }

    // ------------------------------------------------------------------ joining and leaving

    /// Admits a connection: it enters its audiences, gets the join ack before anything else, then
    /// `sync_code`; everyone else hears `user_joined`.
    pub fn admit(
        &mut self,
        conn: &ConnId,
        joiner: Joiner,
        ack: Option<AckToken>,
        out: &mut Effects,
    ) -> Result<(), Closed> {
        if self.closed {
            return Err(Closed);
        }
        let before = self.roster.everyone();
        let local = Local {
            user: joiner.user.clone(),
            yjs: joiner.yjs,
            awareness_ids: Vec::new(),
            row_id: joiner.row_id,
            row_saved: false,
            seed: None,
            role: joiner.role,
        };
        if joiner.bound {
            self.bind(joiner.user.user_id);
        }
        let audience = local.audience();
        self.roster.insert(conn.clone(), local);
        let after = self.roster.everyone();
        let participants = Roster::participants_json(&after);
        out.push(Effect::Enter {
            conn: conn.clone(),
            audience: Audience::Everyone,
        });
        out.push(Effect::Enter {
            conn: conn.clone(),
            audience,
        });
        if joiner.role == Role::Interviewer && joiner.yjs {
            out.push(Effect::Enter {
                conn: conn.clone(),
                audience: Audience::Interviewers,
            });
        }
        if let Some(token) = ack {
            let user = &joiner.user;
            out.ack(
                token,
                Ok(json!({
                    "ok": true,
                    "session_id": self.id,
                    "session_code": self.code.as_str(),
                    "user_id": user.user_id,
                    "name": user.name,
                    "color": user.color,
                    "language": self.language.as_str(),
                    "participants": participants,
                    "count": after.len(),
                    "role": joiner.role,
                    "interview_state": self.control_json(),
                })),
            );
        }
        out.emit(conn, "interview_state", Outgoing::Json(self.control_json()));
        let text = self.code_doc.current_text();
        if !joiner.yjs {
            self.start_seed_peer(conn, joiner.user.user_id, text.clone());
        }
        out.emit(
            conn,
            "sync_code",
            Outgoing::Json(
                json!({"code": &*text, "language": self.language.as_str(), "participants": participants}),
            ),
        );
        Roster::announce(&before, &after, Some(conn), out);
        out.publish(self.roster.presence_message(&self.settings.hub_id));
        out.wake();
        Ok(())
    }

    /// Removes a connection: its awareness states are removed (and that relayed), it leaves its
    /// audiences, the others hear `user_left` once the user's last connection is gone. Returns its
    /// record (for the participants row).
    pub fn leave(&mut self, now: Instant, conn: &ConnId, out: &mut Effects) -> Option<Local> {
        let before = self.roster.everyone();
        let local = self.roster.remove(conn, now)?;
        self.durability.forget(conn);
        self.forget_held(conn);
        self.owners.release(conn);
        self.notes_owners.release(conn);
        if !local.awareness_ids.is_empty() {
            for name in [DocName::Code, DocName::Notes] {
                let doc = self.doc_mut(name);
                for id in &local.awareness_ids {
                    doc.awareness_owner.remove(id);
                }
                if let Some(update) = doc.awareness.remove(&local.awareness_ids, now) {
                    let msg = Bytes::from(protocol::encode_awareness(&update));
                    let publish = self.roster.has_peers(now);
                    self.relay_awareness(name, msg, Some(conn), publish, out);
                }
            }
        }
        out.push(Effect::Exit {
            conn: conn.clone(),
            audience: Audience::Everyone,
        });
        out.push(Effect::Exit {
            conn: conn.clone(),
            audience: local.audience(),
        });
        if local.role == Role::Interviewer && local.yjs {
            out.push(Effect::Exit {
                conn: conn.clone(),
                audience: Audience::Interviewers,
            });
        }
        let after = self.roster.everyone();
        Roster::announce(&before, &after, Some(conn), out);
        out.publish(self.roster.presence_message(&self.settings.hub_id));
        out.wake();
        Some(local)
    }

    // ------------------------------------------------------------------ client events

    /// A client event. A refusal (`Err`) is reported by the caller to that client alone; effects
    /// of messages handled before the refused one stand.
    pub fn on_client(
        &mut self,
        now: Instant,
        conn: &ConnId,
        cmd: Command,
        out: &mut Effects,
    ) -> Result<(), HubError> {
        let Some(local) = self.roster.local.get(conn) else {
            return Err(HubError::not_joined());
        };
        let author = local.user.user_id;
        let result = match cmd {
            Command::Yjs {
                doc,
                msgs,
                ack,
                defer,
            } => self.yjs(now, conn, author, doc, msgs, ack, defer, out),
            Command::CodeChange { text, ack } => {
                self.code_change(now, conn, author, text, ack, out)
            }
            Command::Language { language, user_id } => {
                self.language = language;
                let body = json!({"language": language.as_str(), "user_id": user_id});
                let bus = serde_json::to_vec(&body).unwrap_or_default();
                out.broadcast(
                    Audience::Everyone,
                    Some(conn),
                    "language_updated",
                    Outgoing::Json(body),
                );
                self.publish(BusMessage::Language { json: bus.into() }, out);
                Ok(())
            }
            Command::Run { body } => {
                let bus = serde_json::to_vec(&body).unwrap_or_default();
                out.broadcast(
                    Audience::Everyone,
                    None,
                    "execution_result",
                    Outgoing::Json(body),
                );
                self.publish(BusMessage::Run { json: bus.into() }, out);
                Ok(())
            }
            Command::Activity { body } => {
                let bus = serde_json::to_vec(&body).unwrap_or_default();
                out.broadcast(
                    Audience::Interviewers,
                    Some(conn),
                    "activity",
                    Outgoing::Json(body),
                );
                self.publish(BusMessage::Activity { json: bus.into() }, out);
                Ok(())
            }
        };
        if !self.held.is_empty() {
            self.release_held(now, out);
        }
        result
    }

    // ------------------------------------------------------------------ the writer

    /// The writer committed this interview's writes up to `upto` (`count` of them): acks are
    /// released, the other hubs are told (a [`Effect::CommitNotice`]), and the worker is woken for
    /// what cannot wait for its next tick — a due snapshot, or an unload once nothing is in flight.
    /// (Text saves are debounced well beyond the tick; waking the worker after every commit of a
    /// busy interview cost a task switch and a housekeeping pass per edit.)
    pub fn on_committed(&mut self, now: Instant, upto: u64, count: u64, out: &mut Effects) {
        self.unavailable_notified = false;
        self.durability.committed(upto, count, out);
        self.commit_notice(now, out);
        if self.roster.local.is_empty()
            || self.durability.committed_since_snapshot >= self.settings.snapshot_every
        {
            out.wake();
        }
    }

    fn commit_notice(&mut self, now: Instant, out: &mut Effects) {
        let has_peers = self.roster.has_peers(now);
        if let Some(upto) = self.durability.notice(now, has_peers) {
            out.push(Effect::CommitNotice {
                upto,
                hubs: self.roster.live_peers(now),
            });
        }
    }

    /// The database is down: tell the clients once (their edits stay unacknowledged).
    pub fn on_unavailable(&mut self, out: &mut Effects) {
        if !self.unavailable_notified {
            self.unavailable_notified = true;
            out.broadcast(
                Audience::Everyone,
                None,
                "error",
                Outgoing::Json(HubError::unavailable().to_json()),
            );
        }
    }

    /// This interview's updates cannot be stored (deleted session, corrupt data): its waiting acks
    /// are refused and it closes; clients get an `internal` error and are disconnected (after the
    /// lock is released: their disconnect handlers come back here).
    pub fn on_write_failed(&mut self, out: &mut Effects) {
        self.broken = true;
        self.durability.fail(&HubError::internal(), out);
        out.broadcast(
            Audience::Everyone,
            None,
            "error",
            Outgoing::Json(HubError::internal().to_json()),
        );
        for conn in self.roster.local.keys() {
            out.push(Effect::Disconnect(conn.clone()));
        }
        out.wake();
    }

    // ------------------------------------------------------------------ housekeeping

    /// The worker's tick: a repeated commit notice, takeovers of relayed updates nobody confirmed,
    /// and now and then dropping other hubs' expired presence and stale awareness states.
    pub fn on_tick(&mut self, now: Instant, out: &mut Effects) {
        self.commit_notice(now, out);
        if !self.held.is_empty() {
            self.release_held(now, out);
            self.expire_held(now, out);
        }
        self.durability.take_over_stale(now, out);
        if now.duration_since(self.last_purge) >= PURGE_EVERY {
            self.last_purge = now;
            let before = self.roster.everyone();
            if self.roster.expire_remote(now) {
                let after = self.roster.everyone();
                Roster::announce(&before, &after, None, out);
            }
            if let Some(before) = now.checked_sub(AWARENESS_STALE) {
                let d = &mut self.code_doc;
                let owners = &d.awareness_owner;
                d.awareness.purge(before, |c| owners.contains_key(&c));
            }
        }
    }

    /// Merges what a document loaded from the database (resync, snapshot) holds into the live one.
    pub fn on_stored(
        &mut self,
        now: Instant,
        update: &[u8],
        language: Option<Language>,
        control: Option<InterviewControl>,
        out: &mut Effects,
    ) {
        if let Some(control) = control {
            // A `Control` message this hub missed is made up for here.
            self.on_control(now, control, out);
        }
        if let Ok(update) = Update::decode_v1(update) {
            if let Ok(a) = self.code_doc.apply(update) {
                if a.changed {
                    self.fan_out(now, &a.delta, None, None, out);
                }
            }
        }
        if !self.held.is_empty() {
            self.release_held(now, out);
        }
        if let Some(lang) = language {
            if lang != self.language {
                self.language = lang;
                let body = json!({"language": lang.as_str(), "user_id": Value::Null});
                out.broadcast(
                    Audience::Everyone,
                    None,
                    "language_updated",
                    Outgoing::Json(body),
                );
            }
        }
    }

    /// What a reload found of the notes that this replica lacked.
    pub fn on_stored_notes(&mut self, now: Instant, update: &[u8], out: &mut Effects) {
        if let Ok(update) = Update::decode_v1(update) {
            if let Ok(a) = self.notes_doc.apply(update) {
                if a.changed {
                    self.changed(now, DocName::Notes, &a.delta, None, None, out);
                }
            }
        }
        if !self.held.is_empty() {
            self.release_held(now, out);
        }
    }

    /// The notes' state vector (what a reload compares storage against).
    pub fn notes_state_vector(&self) -> StateVector {
        self.notes_doc.state_vector()
    }

    // ------------------------------------------------------------------ what the runtime asks

    /// The current text of the code document.
    pub fn text(&self) -> String {
        self.code_doc.text()
    }

    pub fn language(&self) -> Language {
        self.language
    }

    /// The code document's state vector.
    pub fn state_vector(&self) -> StateVector {
        self.code_doc.state_vector()
    }

    /// The code document's full state (tests, snapshots of the live replica).
    pub fn encode_state(&self) -> Vec<u8> {
        self.code_doc.diff(&StateVector::default())
    }

    /// Connected users across all hubs.
    pub fn participant_count(&self) -> usize {
        self.roster.everyone().len()
    }

    /// Connections on this hub.
    pub fn local_count(&self) -> usize {
        self.roster.local.len()
    }

    pub fn has_local(&self, conn: &ConnId) -> bool {
        self.roster.local.contains_key(conn)
    }

    /// Whether another hub reported participants.
    pub fn has_remote(&self) -> bool {
        self.roster.has_remote()
    }

    /// Its updates cannot be stored: the worker unloads it.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Since when it has had no local participants.
    pub fn idle_since(&self) -> Option<Instant> {
        self.roster.idle_since
    }

    /// Client updates waiting to be integrated.
    pub fn staged(&self) -> usize {
        self.stage.queue.len()
    }

    /// Takes the request for a resync, if there is one.
    pub fn take_resync(&mut self) -> bool {
        std::mem::take(&mut self.resync_needed)
    }

    /// Asks for a resync (missed bus messages, a new subscription, a failed one).
    pub fn want_resync(&mut self) {
        self.resync_needed = true;
    }

    pub fn snapshot_due(&self) -> bool {
        self.durability.committed_since_snapshot >= self.settings.snapshot_every
    }

    pub fn snapshot_saved(&mut self) {
        self.durability.committed_since_snapshot = 0;
    }

    /// The text to save if it changed `debounce` or longer ago.
    pub fn take_text_to_save(&mut self, now: Instant, debounce: Duration) -> Option<String> {
        let since = self.text_dirty_since?;
        if now.duration_since(since) < debounce {
            return None;
        }
        self.text_dirty_since = None;
        Some(self.code_doc.text())
    }

    /// The text stored for the interview when it was loaded: saved again if the document says
    /// otherwise (its last edits were stored, the text was not).
    pub fn text_loaded(&mut self, stored: &str, now: Instant) {
        if self.code_doc.text() != stored {
            self.text_dirty_since.get_or_insert(now);
        }
    }

    /// The text could not be saved: try again later.
    pub fn text_not_saved(&mut self, now: Instant) {
        self.text_dirty_since.get_or_insert(now);
    }

    /// No local participants for `idle` or longer and nothing in flight: it may be unloaded.
    pub fn unloadable(&self, now: Instant, idle: Duration) -> bool {
        self.roster.local.is_empty()
            && self.durability.settled()
            && self
                .roster
                .idle_since
                .is_some_and(|t| now.duration_since(t) >= idle)
    }

    /// Nobody is connected here and nothing is in flight (an unload may go ahead).
    pub fn quiet(&self) -> bool {
        self.roster.local.is_empty() && self.durability.in_flight() == 0
    }

    /// Marks it unloaded: a join that raced with the unload loads a fresh one.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// The users of this hub's connections, one per connection.
    pub fn local_users(&self) -> Vec<UserInfo> {
        self.roster.local.values().map(|l| l.user.clone()).collect()
    }

    /// Participant rows not written yet: `(row id, user)`.
    pub fn unsaved_rows(&self) -> Vec<(Uuid, UserInfo)> {
        self.roster
            .local
            .values()
            .filter(|l| !l.row_saved)
            .map(|l| (l.row_id, l.user.clone()))
            .collect()
    }

    pub fn row_saved(&mut self, row_id: Uuid) {
        if let Some(l) = self.roster.local.values_mut().find(|l| l.row_id == row_id) {
            l.row_saved = true;
        }
    }
}
