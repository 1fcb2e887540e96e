//! Client events on the documents: y-protocols messages, a seed client's whole text, and how a
//! change fans out to this hub's participants and the other hubs.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::{json, Value};
use uuid::Uuid;
use yrs::Transact;

use super::guard::Staged;
use super::held::Held;
use super::lifecycle::{self, Action};
use super::protocol::{self, ClientMessage};
use super::{
    scan, seed, AckToken, Audience, ConnId, DocName, Effect, Effects, Interview, Outgoing,
};
use crate::error::{ErrorCode, HubError};
use crate::limits::{
    MAX_AWARENESS_CLIENTS_PER_CONN, MAX_AWARENESS_STATE_BYTES, SEED_DIFF_TIME, STAGE_STRUCTS,
};
use duet_bus::relay::BusMessage;

impl Interview {
    /// Checks the awareness messages of an emit before anything is applied, so a refused emit
    /// changes nothing: no state of another connection's client id, no state over the size limit,
    /// no more client ids per connection than allowed.
    pub(super) fn check_awareness(
        &self,
        conn: &ConnId,
        doc: DocName,
        msgs: &[ClientMessage],
    ) -> Result<(), HubError> {
        let owned = self
            .roster
            .local
            .get(conn)
            .map_or(0, |l| l.awareness_ids.len());
        let owners = match doc {
            DocName::Code => &self.code_doc.awareness_owner,
            DocName::Notes => &self.notes_doc.awareness_owner,
        };
        for m in msgs {
            let ClientMessage::Awareness { update, .. } = m else {
                continue;
            };
            let mut new_ids = 0;
            for e in &update.entries {
                match owners.get(&e.client) {
                    Some(owner) if owner != conn => {
                        return Err(HubError::new(
                            ErrorCode::InvalidUpdate,
                            "awareness state of another participant",
                        ));
                    }
                    Some(_) => {}
                    None => new_ids += 1,
                }
                if e.json.len() > MAX_AWARENESS_STATE_BYTES {
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
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn yjs(
        &mut self,
        now: Instant,
        conn: &ConnId,
        author: Uuid,
        doc: DocName,
        msgs: Vec<ClientMessage>,
        ack: Option<AckToken>,
        defer: bool,
        out: &mut Effects,
    ) -> Result<(), HubError> {
        if doc == DocName::Notes {
            // Interviewers only: a candidate connection neither reads nor writes the notes.
            self.permits(conn, Action::Notes)?;
        }
        self.check_awareness(conn, doc, &msgs)?;
        // Ended, in the lobby, or locked: an update that would change the document is refused
        // before anything of the emit is applied (one that holds nothing new — a reconnecting
        // client's sync step 2 — passes).
        if let Err(refusal) = self.permits(conn, Action::Edit) {
            let d = self.doc_mut(doc);
            if msgs.iter().any(|m| {
                matches!(m, ClientMessage::Update { update, stats, .. } if lifecycle::brings_news(d, update, stats))
            }) {
                return Err(refusal);
            }
        }
        // Updates are staged (integrated a few structs at a time between other work) when the
        // interview is over its integration budget, when one of them is large, or when this
        // connection already has updates waiting (its order is kept).
        // (The notes are small and interviewers' own: integrated at once.)
        let stage = doc == DocName::Code
            && (defer
                || self.stage.has(conn)
                || msgs.iter().any(|m| {
                    matches!(m, ClientMessage::Update { stats, .. } if stats.structs > STAGE_STRUCTS)
                }));
        let mut ack = ack;
        let mut carried_updates = false;
        let mut held_any = false;
        let mut last_write = None;
        for m in msgs {
            match m {
                ClientMessage::SyncStep1(sv) => {
                    let d = self.doc_mut(doc);
                    let diff = d.diff(&sv);
                    let ours = d.state_vector();
                    let aw = d.awareness.full();
                    let event = doc.event();
                    out.emit(
                        conn,
                        event,
                        Outgoing::Binary(protocol::encode_step2(&diff).into()),
                    );
                    out.emit(
                        conn,
                        event,
                        Outgoing::Binary(protocol::encode_step1(&ours).into()),
                    );
                    if let Some(aw) = aw {
                        out.emit(
                            conn,
                            event,
                            Outgoing::Binary(protocol::encode_awareness(&aw).into()),
                        );
                    }
                }
                ClientMessage::Update { update, raw, stats } => {
                    carried_updates = true;
                    let user = author;
                    let sv = self.doc_mut(doc).state_vector();
                    let live = &self.roster.local;
                    let (owners, usage) = match doc {
                        DocName::Code => (&mut self.owners, &mut self.usage),
                        DocName::Notes => (&mut self.notes_owners, &mut self.notes_usage),
                    };
                    owners.check_and_claim(conn, user, &stats, &sv, |c| {
                        live.get(c).map(|l| l.awareness_ids.as_slice())
                    })?;
                    usage.admit(now, &stats, raw.len())?;
                    // (The state vector read for the ownership check above.)
                    if stats.has_gap(&sv) {
                        // Depends on something this hub lacks: held until the gap is filled.
                        let held = Held {
                            doc,
                            conn: Some(conn.clone()),
                            author: Some(author),
                            raw,
                            stats,
                            ack: None,
                            since: now,
                        };
                        self.hold(now, held, out)?;
                        held_any = true;
                        continue;
                    }
                    if stage {
                        let pieces = scan::split(&raw, doc.root(), 1)
                            .map_err(|e| HubError::new(ErrorCode::InvalidUpdate, e.to_string()))?;
                        // Counted now, so updates waiting together cannot pass the caps.
                        self.usage.integrated(&stats);
                        self.stage.push(Staged {
                            conn: conn.clone(),
                            author,
                            doc,
                            pieces: pieces.into(),
                            bytes: raw.len(),
                            stats,
                            ack: None,
                            last_write: None,
                        })?;
                        out.push(Effect::Staged);
                        continue;
                    }
                    let applied = self.doc_mut(doc).apply(update)?;
                    if applied.changed {
                        match doc {
                            DocName::Code => self.usage.integrated(&stats),
                            DocName::Notes => self.notes_usage.integrated(&stats),
                        }
                        self.changed(now, doc, &applied.delta, Some(conn), Some(author), out);
                    }
                    if applied.pending {
                        // Part of it waits for something this hub lacks: store it as sent (so the
                        // ack is honest) and fetch what is missing.
                        last_write = Some(self.local_change(now, doc, author, raw, out));
                        self.resync_needed = true;
                        out.wake();
                    } else if applied.changed {
                        last_write = Some(self.local_change(now, doc, author, applied.delta, out));
                    }
                }
                ClientMessage::Awareness { update, raw } => {
                    let d = self.doc_mut(doc);
                    d.awareness.apply(&update, now);
                    let mut new_ids = Vec::new();
                    for e in &update.entries {
                        if d.awareness_owner.insert(e.client, conn.clone()).is_none() {
                            new_ids.push(e.client);
                        }
                    }
                    if let Some(l) = self.roster.local.get_mut(conn) {
                        l.awareness_ids.extend(new_ids);
                    }
                    let publish = self.roster.has_peers(now);
                    self.relay_awareness(doc, Bytes::from(raw), Some(conn), publish, out);
                }
                ClientMessage::QueryAwareness => {
                    if let Some(aw) = self.doc_mut(doc).awareness.full() {
                        out.emit(
                            conn,
                            doc.event(),
                            Outgoing::Binary(protocol::encode_awareness(&aw).into()),
                        );
                    }
                }
            }
        }
        // An emit whose updates were staged is acked when the last of them is integrated and
        // committed.
        if let Some(last) = self
            .stage
            .queue
            .back_mut()
            .filter(|s| &s.conn == conn && s.ack.is_none())
        {
            if carried_updates && stage {
                last.ack = ack.take();
                last.last_write = last_write;
            }
        }
        if held_any {
            if let Some(token) = ack.take() {
                ack = self.hold_ack(conn, token);
            }
        }
        if let Some(token) = ack {
            match (last_write, carried_updates) {
                (Some(w), _) => self.durability.ack_when_durable(w, token, out),
                // Nothing new: it may still be in flight from an earlier emit or another hub.
                (None, true) => {
                    let w = self.durability.last_write_id();
                    self.durability.ack_when_durable(w, token, out)
                }
                (None, false) => out.ack(token, Ok(json!({"ok": true}))),
            }
        }
        Ok(())
    }

    /// Integrates up to `max_pieces` pieces (structs, or the delete set) of the staged updates, in
    /// one transaction. Returns whether more wait.
    pub fn step(&mut self, now: Instant, max_pieces: usize, out: &mut Effects) -> bool {
        let Some(front) = self.stage.queue.front_mut() else {
            return false;
        };
        let take = max_pieces.clamp(1, front.pieces.len().max(1));
        let pieces: Vec<Vec<u8>> = front.pieces.drain(..take.min(front.pieces.len())).collect();
        let (conn, author, doc, done) = (
            front.conn.clone(),
            front.author,
            front.doc,
            front.pieces.is_empty(),
        );
        match self.doc_mut(doc).apply_pieces(&pieces) {
            Ok(applied) => {
                if applied.changed {
                    self.fan_out(now, &applied.delta, Some(&conn), Some(author), out);
                }
                let mut write = None;
                if applied.pending {
                    for p in pieces {
                        write = Some(self.local_change(now, doc, author, p, out));
                    }
                    self.resync_needed = true;
                    out.wake();
                } else if applied.changed {
                    write = Some(self.local_change(now, doc, author, applied.delta, out));
                }
                if let (Some(w), Some(front)) = (write, self.stage.queue.front_mut()) {
                    front.last_write = Some(w);
                }
            }
            Err(e) => {
                tracing::warn!(session = %self.id, error = %e, "a staged piece does not apply; skipped")
            }
        }
        if done {
            if let Some(s) = self.stage.pop() {
                if let Some(token) = s.ack {
                    let w = s.last_write.unwrap_or(self.durability.last_write_id());
                    self.durability.ack_when_durable(w, token, out);
                }
            }
        }
        if !self.held.is_empty() {
            self.release_held(now, out);
        }
        !self.stage.is_empty()
    }

    /// A seed client's whole text: the edit its Yjs peer makes of the base it is closest to (see
    /// [`seed`]), checked and applied like any client update.
    pub(super) fn code_change(
        &mut self,
        now: Instant,
        conn: &ConnId,
        author: Uuid,
        new_text: String,
        ack: Option<AckToken>,
        out: &mut Effects,
    ) -> Result<(), HubError> {
        if let Err(refusal) = self.permits(conn, Action::Edit) {
            if *new_text != *self.code_doc.current_text() {
                return Err(refusal);
            }
        }
        let Some(mut peer) = self.roster.local.get_mut(conn).and_then(|l| l.seed.take()) else {
            return Err(HubError::new(
                ErrorCode::InvalidPayload,
                "code_change is for clients that do not edit through Yjs",
            ));
        };
        let res = self.seed_edit(now, conn, author, &mut peer, &new_text, out);
        if let Some(l) = self.roster.local.get_mut(conn) {
            l.seed = Some(peer);
        }
        let write = res?;
        let after = self.code_doc.current_text();
        let must = self
            .roster
            .local
            .get(conn)
            .and_then(|l| l.seed.as_ref())
            .is_some_and(|p| p.must_be_sent(&new_text, &after));
        if must {
            // Merged with what others did meanwhile, or a text sent before this change would
            // replace it: show the client the result.
            let base = self.seed_base(after.clone());
            out.emit(
                conn,
                "code_updated",
                Outgoing::Json(json!({"code": &*after, "user_id": Value::Null})),
            );
            if let Some(p) = self
                .roster
                .local
                .get_mut(conn)
                .and_then(|l| l.seed.as_mut())
            {
                p.saw(base);
            }
        }
        if let Some(token) = ack {
            let w = write.unwrap_or(self.durability.last_write_id());
            self.durability.ack_when_durable(w, token, out);
        }
        Ok(())
    }

    /// Makes and applies the edit of `peer`; returns its write id when it changed something.
    fn seed_edit(
        &mut self,
        now: Instant,
        conn: &ConnId,
        author: Uuid,
        peer: &mut seed::SeedPeer,
        new_text: &str,
        out: &mut Effects,
    ) -> Result<Option<u64>, HubError> {
        let d = &self.code_doc;
        let made = {
            let mut txn = d.doc.transact_mut();
            peer.edit(
                &mut txn,
                &d.text,
                DocName::Code.root(),
                new_text,
                now + SEED_DIFF_TIME,
            )
        };
        let edit = match made {
            Ok(edit) => edit,
            Err(seed::SeedError::BaseLost) => {
                // Cannot happen while the document keeps deleted characters; should it, the client
                // starts again from what the document holds now.
                tracing::warn!(session = %self.id, "a seed client's base is gone; it is sent the current text");
                let base = self.seed_base(self.code_doc.current_text());
                peer.saw(base);
                return Err(HubError::new(
                    ErrorCode::InvalidUpdate,
                    "the text this change was made from is gone; the current text was sent",
                ));
            }
        };
        let Some(bytes) = edit.update.clone() else {
            peer.applied(&edit);
            return Ok(None);
        };
        let stats = scan::scan(&bytes, DocName::Code.root())
            .map_err(|e| HubError::new(ErrorCode::InvalidUpdate, e.to_string()))?;
        let sv = self.code_doc.state_vector();
        let live = &self.roster.local;
        self.owners
            .check_and_claim(conn, author, &stats, &sv, |c| {
                live.get(c).map(|l| l.awareness_ids.as_slice())
            })?;
        self.usage.admit(now, &stats, bytes.len())?;
        let version = self.code_doc.version();
        // The document's text and state before the edit, when known.
        let before = self.seed_text.clone().filter(|b| b.is_at_version(version));
        let applied = self.code_doc.apply_pieces(std::slice::from_ref(&bytes))?;
        peer.applied(&edit);
        if !applied.changed {
            return Ok(None);
        }
        if !applied.pending {
            let after = if edit.made_from.is_at_version(version) {
                // Made from the document's text as it was: nothing else to merge, the text is the
                // client's.
                Some(edit.base.clone())
            } else {
                // Made from an older text: the result, from the text before and what it wrote —
                // when the ids of that text's characters are known, or worth finding (seed edits
                // in a row: each result comes with its ids).
                let d = &self.code_doc;
                before.and_then(|b| {
                    let mut txn = d.doc.transact_mut();
                    if !self.code_changed_by_others {
                        b.find_runs(&mut txn, &d.text);
                    }
                    b.merged(&mut txn, &edit)
                })
            };
            if let Some(after) = after {
                self.code_doc.text_is(after.text.clone());
                after.at_version(self.code_doc.version());
                self.seed_made = Some(after);
            }
        }
        self.usage.integrated(&stats);
        self.fan_out(now, &applied.delta, Some(conn), Some(author), out);
        self.code_changed_by_others = false;
        if applied.pending {
            // Its origins are characters the document has: this does not happen. Stored as made so
            // the ack is honest, and the missing part fetched.
            tracing::warn!(session = %self.id, "a seed client's edit waits for missing structs");
            self.resync_needed = true;
            out.wake();
            return Ok(Some(self.local_change(
                now,
                DocName::Code,
                author,
                bytes,
                out,
            )));
        }
        Ok(Some(self.local_change(
            now,
            DocName::Code,
            author,
            applied.delta,
            out,
        )))
    }

    /// A seed connection joined and is sent `text`: its Yjs peer, under a client id no one writes
    /// under (derived from the connection, so the core stays deterministic).
    pub(super) fn start_seed_peer(&mut self, conn: &ConnId, user: Uuid, text: Arc<str>) {
        use std::hash::{Hash, Hasher};
        let sv = self.code_doc.state_vector();
        let mut client = 0;
        for attempt in 0u32.. {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (self.id, &**conn, attempt).hash(&mut h);
            // Yjs in the browser makes 32-bit client ids; stay in that range.
            let c = h.finish() & 0xffff_ffff;
            if c != 0 && sv.get(&yrs::block::ClientID::new(c)) == 0 && !self.owners.is_claimed(c) {
                client = c;
                break;
            }
        }
        self.owners.claim(client, conn, user);
        let base = self.seed_base(text);
        if let Some(l) = self.roster.local.get_mut(conn) {
            l.seed = Some(seed::SeedPeer::new(client, base));
        }
    }

    /// The document's current state as a base whose text is `text` (the current text); the same
    /// base as the last one while nothing changed.
    fn seed_base(&mut self, text: Arc<str>) -> Arc<seed::Base> {
        if let Some(b) = &self.seed_text {
            if b.text == text && b.matches(&self.code_doc.doc.transact()) {
                return b.clone();
            }
        }
        let version = self.code_doc.version();
        let base = match self.seed_made.take() {
            Some(made) if made.text == text && made.is_at_version(version) => {
                #[cfg(debug_assertions)]
                made.check_runs(&mut self.code_doc.doc.transact_mut(), &self.code_doc.text);
                made
            }
            _ => {
                let base = seed::Base::capture(&self.code_doc.doc.transact(), text);
                base.at_version(version);
                base
            }
        };
        self.seed_text = Some(base.clone());
        base
    }

    /// Fans a change of the code document out to local clients: the delta to editors (encoded
    /// once), the whole text to seed clients when there are any.
    pub(super) fn fan_out(
        &mut self,
        now: Instant,
        delta: &[u8],
        except: Option<&ConnId>,
        author: Option<Uuid>,
        out: &mut Effects,
    ) {
        let msg = Bytes::from(protocol::encode_update(delta));
        out.broadcast(Audience::Editors, except, "yjs", Outgoing::Binary(msg));
        self.text_dirty_since.get_or_insert(now);
        // (A seed edit's own call clears it again.)
        self.code_changed_by_others = true;
        if self.roster.seed_count > 0 {
            let text = self.code_doc.current_text();
            if self.seed_text.as_ref().is_none_or(|b| b.text != text) {
                let base = self.seed_base(text.clone());
                for (c, l) in self.roster.local.iter_mut() {
                    if Some(c) != except {
                        if let Some(p) = l.seed.as_mut() {
                            p.saw(base.clone());
                        }
                    }
                }
                let body = json!({"code": &*text, "user_id": author});
                out.broadcast(Audience::Seed, except, "code_updated", Outgoing::Json(body));
            }
        }
    }

    /// What changed in `doc` goes to its audience (the code also to seed clients, as text).
    pub(super) fn changed(
        &mut self,
        now: Instant,
        doc: DocName,
        delta: &[u8],
        except: Option<&ConnId>,
        author: Option<Uuid>,
        out: &mut Effects,
    ) {
        match doc {
            DocName::Code => self.fan_out(now, delta, except, author, out),
            DocName::Notes => {
                let msg = Bytes::from(protocol::encode_update(delta));
                out.broadcast(
                    Audience::Interviewers,
                    except,
                    doc.event(),
                    Outgoing::Binary(msg),
                );
            }
        }
    }

    /// A local edit: stored (group commit), relayed to the other hubs. Returns its write id.
    pub(super) fn local_change(
        &mut self,
        now: Instant,
        doc: DocName,
        author: Uuid,
        delta: Vec<u8>,
        out: &mut Effects,
    ) -> u64 {
        let data = Bytes::from(delta);
        let write_id = self
            .durability
            .write(doc.kind(), Some(author), data.to_vec(), out);
        if self.roster.has_peers(now) {
            let (seq, author) = (write_id, Some(author));
            let msg = match doc {
                DocName::Code => BusMessage::Update { seq, author, data },
                DocName::Notes => BusMessage::NotesUpdate { seq, author, data },
            };
            self.publish(msg, out);
        }
        write_id
    }

    pub(super) fn relay_awareness(
        &self,
        doc: DocName,
        msg: Bytes,
        except: Option<&ConnId>,
        publish: bool,
        out: &mut Effects,
    ) {
        out.broadcast(
            doc.audience(),
            except,
            doc.event(),
            Outgoing::Binary(msg.clone()),
        );
        if publish {
            let m = match doc {
                DocName::Code => BusMessage::Awareness { data: msg },
                DocName::Notes => BusMessage::NotesAwareness { data: msg },
            };
            self.publish(m, out);
        }
    }
}
