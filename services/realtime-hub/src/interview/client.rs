//! Client events on the documents: y-protocols messages, a seed client's whole text, and how a
//! change fans out to this hub's participants and the other hubs.

use std::time::Instant;

use bytes::Bytes;
use serde_json::{json, Value};
use uuid::Uuid;
use yrs::{Text, Transact};

use super::guard::Staged;
use super::protocol::{self, ClientMessage};
use super::{
    scan, text, AckToken, Audience, ConnId, DocName, Effect, Effects, Interview, Outgoing,
};
use crate::error::{ErrorCode, HubError};
use crate::limits::{
    MAX_AWARENESS_CLIENTS_PER_CONN, MAX_AWARENESS_STATE_BYTES, SEED_BASE_HISTORY, STAGE_STRUCTS,
};
use duet_bus::relay::BusMessage;

/// Bytes an edit made from a seed client's text adds to the history beyond the inserted text
/// (ids, origins, the delete set), for the caps.
const SEED_EDIT_OVERHEAD: usize = 64;

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
        self.check_awareness(conn, doc, &msgs)?;
        // Updates are staged (integrated a few structs at a time between other work) when the
        // interview is over its integration budget, when one of them is large, or when this
        // connection already has updates waiting (its order is kept).
        let stage = defer
            || self.stage.has(conn)
            || msgs.iter().any(|m| {
                matches!(m, ClientMessage::Update { stats, .. } if stats.structs > STAGE_STRUCTS)
            });
        let mut ack = ack;
        let mut carried_updates = false;
        let mut last_write = None;
        for m in msgs {
            match m {
                ClientMessage::SyncStep1(sv) => {
                    let d = self.doc_mut(doc);
                    let diff = d.diff(&sv);
                    let ours = d.state_vector();
                    let aw = d.awareness.full();
                    out.emit(
                        conn,
                        "yjs",
                        Outgoing::Binary(protocol::encode_step2(&diff).into()),
                    );
                    out.emit(
                        conn,
                        "yjs",
                        Outgoing::Binary(protocol::encode_step1(&ours).into()),
                    );
                    if let Some(aw) = aw {
                        out.emit(
                            conn,
                            "yjs",
                            Outgoing::Binary(protocol::encode_awareness(&aw).into()),
                        );
                    }
                }
                ClientMessage::Update { update, raw, stats } => {
                    carried_updates = true;
                    let user = author;
                    let sv = self.doc_mut(doc).state_vector();
                    let live = &self.roster.local;
                    self.owners
                        .check_and_claim(conn, user, &stats, &sv, |c| live.contains_key(c))?;
                    self.usage.admit(now, &stats, raw.len())?;
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
                        self.usage.integrated(&stats);
                        self.fan_out(now, &applied.delta, Some(conn), Some(author), out);
                    }
                    if applied.pending {
                        // Part of it waits for something this hub lacks: store it as sent (so the
                        // ack is honest) and fetch what is missing.
                        last_write = Some(self.local_change(now, author, raw, out));
                        self.resync_needed = true;
                        out.wake();
                    } else if applied.changed {
                        last_write = Some(self.local_change(now, author, applied.delta, out));
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
                    self.relay_awareness(Bytes::from(raw), Some(conn), publish, out);
                }
                ClientMessage::QueryAwareness => {
                    if let Some(aw) = self.doc_mut(doc).awareness.full() {
                        out.emit(
                            conn,
                            "yjs",
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
                        write = Some(self.local_change(now, author, p, out));
                    }
                    self.resync_needed = true;
                    out.wake();
                } else if applied.changed {
                    write = Some(self.local_change(now, author, applied.delta, out));
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
        !self.stage.is_empty()
    }

    /// A seed client's whole text, applied as a minimal edit rebased over concurrent changes.
    pub(super) fn code_change(
        &mut self,
        now: Instant,
        conn: &ConnId,
        author: Uuid,
        new_text: String,
        ack: Option<AckToken>,
        out: &mut Effects,
    ) -> Result<(), HubError> {
        let own_last = self
            .roster
            .local
            .get(conn)
            .and_then(|l| l.seed_last.clone());
        let current = self.code_doc.text();
        let mut bases: Vec<&str> = self.seed_bases.iter().map(String::as_str).collect();
        if let Some(own) = own_last.as_deref() {
            bases.push(own);
        }
        let splice = text::rebase(&bases, &current, &new_text);
        // What the edit will add, checked against the caps before anything changes.
        let inserted_units = splice.insert.encode_utf16().count() as u64;
        let stats = scan::UpdateStats {
            structs: u64::from(inserted_units > 0) + u64::from(splice.end > splice.start),
            clients: 1,
            inserted_units,
            delete_ranges: u64::from(splice.end > splice.start),
            authors: Vec::new(),
        };
        if !splice.is_noop() {
            self.usage
                .admit(now, &stats, splice.insert.len() + SEED_EDIT_OVERHEAD)?;
            self.usage.integrated(&stats);
        }
        let mut write = None;
        if !splice.is_noop() {
            let delta = {
                let d = &self.code_doc;
                let mut txn = d.doc.transact_mut();
                if splice.end > splice.start {
                    d.text
                        .remove_range(&mut txn, splice.start, splice.end - splice.start);
                }
                if !splice.insert.is_empty() {
                    d.text.insert(&mut txn, splice.start, &splice.insert);
                }
                txn.encode_update_v1()
            };
            self.fan_out(now, &delta, Some(conn), Some(author), out);
            write = Some(self.local_change(now, author, delta, out));
        }
        let after = self.code_doc.text();
        if after != new_text {
            // Merged with someone else's concurrent edit: show the client the result.
            out.emit(
                conn,
                "code_updated",
                Outgoing::Json(json!({"code": after, "user_id": Value::Null})),
            );
        }
        if self.seed_bases.back() != Some(&after) {
            self.push_base(after);
        }
        if let Some(l) = self.roster.local.get_mut(conn) {
            l.seed_last = Some(new_text);
        }
        if let Some(token) = ack {
            let w = write.unwrap_or(self.durability.last_write_id());
            self.durability.ack_when_durable(w, token, out);
        }
        Ok(())
    }

    pub(super) fn push_base(&mut self, text: String) {
        if self.seed_bases.len() == SEED_BASE_HISTORY {
            self.seed_bases.pop_front();
        }
        self.seed_bases.push_back(text);
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
        if self.roster.seed_count > 0 {
            let text = self.code_doc.text();
            if self.seed_bases.back() != Some(&text) {
                let body = json!({"code": text, "user_id": author});
                out.broadcast(Audience::Seed, except, "code_updated", Outgoing::Json(body));
                self.push_base(text);
            }
        }
    }

    /// A local edit: stored (group commit), relayed to the other hubs. Returns its write id.
    pub(super) fn local_change(
        &mut self,
        now: Instant,
        author: Uuid,
        delta: Vec<u8>,
        out: &mut Effects,
    ) -> u64 {
        let data = Bytes::from(delta);
        let write_id = self.durability.write(Some(author), data.to_vec(), out);
        if self.roster.has_peers(now) {
            self.publish(
                BusMessage::Update {
                    seq: write_id,
                    author: Some(author),
                    data,
                },
                out,
            );
        }
        write_id
    }

    pub(super) fn relay_awareness(
        &self,
        msg: Bytes,
        except: Option<&ConnId>,
        publish: bool,
        out: &mut Effects,
    ) {
        out.broadcast(
            Audience::Editors,
            except,
            "yjs",
            Outgoing::Binary(msg.clone()),
        );
        if publish {
            self.publish(BusMessage::Awareness { data: msg }, out);
        }
    }
}
