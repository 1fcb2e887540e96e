//! What other hubs say about the interview: relayed edits and awareness, presence, language, runs,
//! activity (for the interviewers), and the state-vector exchange that resyncs a replica after a
//! missed message.

use std::time::Instant;

use duet_domain::DocKind;

use duet_domain::Language;
use serde_json::Value;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{StateVector, Update};

use super::held::Held;
use super::presence::{Roster, UserInfo};
use super::protocol::{self, ClientMessage};
use super::scan;
use super::{Audience, DocName, Effects, Interview, Outgoing, TEXT_NAME};
use duet_bus::relay::{self, BusMessage};

impl Interview {
    /// An edit of `doc` another hub made (its write id `seq`): integrated and passed on — or held
    /// while it depends on something this hub missed — and remembered until that hub's commit notice
    /// (or committed here if none comes).
    #[allow(clippy::too_many_arguments)]
    fn relayed_update(
        &mut self,
        now: Instant,
        origin: String,
        doc: DocName,
        seq: u64,
        author: Option<uuid::Uuid>,
        data: bytes::Bytes,
        out: &mut Effects,
    ) {
        let Ok(update) = Update::decode_v1(&data) else {
            tracing::warn!(%origin, ?doc, "undecodable update on the bus; ignored");
            return;
        };
        let gap = scan::scan(&data, doc.root())
            .ok()
            .filter(|stats| self.gap_in(doc, stats));
        if let Some(stats) = gap {
            // A message of the other hub was missed: held until the gap is filled.
            let held = Held {
                doc,
                conn: None,
                author,
                raw: data.to_vec(),
                stats,
                ack: None,
                since: now,
            };
            if self.hold(now, held, out).is_err() {
                self.resync_needed = true;
            }
        } else {
            match self.doc_mut(doc).apply(update) {
                Ok(a) => {
                    if a.changed {
                        self.changed(now, doc, &a.delta, None, author, out);
                    }
                    if a.pending {
                        self.resync_needed = true;
                        out.wake();
                    }
                }
                Err(e) => tracing::warn!(%origin, ?doc, error = %e, "bus update does not apply"),
            }
        }
        self.durability
            .relayed(now, origin, seq, doc.kind(), author, data);
    }

    fn control_from_bus(&mut self, now: Instant, origin: &str, json: &[u8], out: &mut Effects) {
        match serde_json::from_slice::<duet_domain::InterviewControl>(json) {
            Ok(control) => self.on_control(now, control, out),
            Err(e) => tracing::warn!(%origin, error = %e, "malformed control message; ignored"),
        }
    }

    /// A message from another hub on the interview's channel.
    pub fn on_bus(&mut self, now: Instant, origin: String, msg: BusMessage, out: &mut Effects) {
        self.bus_message(now, origin, msg, out);
        if !self.held.is_empty() {
            self.release_held(now, out);
        }
    }

    fn bus_message(&mut self, now: Instant, origin: String, msg: BusMessage, out: &mut Effects) {
        if origin == self.settings.hub_id {
            return;
        }
        if origin == relay::API_ORIGIN {
            // The session-API is no hub: it shares no participants and commits nothing; it only
            // says that the interview's state or controls changed.
            if let BusMessage::Control { json } = msg {
                self.control_from_bus(now, &origin, &json, out);
            }
            return;
        }
        self.roster.peer_seen(&origin, now + self.settings.peer_ttl);
        match msg {
            BusMessage::Update { seq, author, data } => {
                self.relayed_update(now, origin, DocName::Code, seq, author, data, out)
            }
            // Sent to the inbox (`on_remote_committed`), never on an interview's channel.
            BusMessage::Commits { .. } => {}
            BusMessage::Control { json } => self.control_from_bus(now, &origin, &json, out),
            BusMessage::NotesUpdate { seq, author, data } => {
                self.relayed_update(now, origin, DocName::Notes, seq, author, data, out)
            }
            BusMessage::NotesAwareness { data } => {
                if let Ok(msgs) = protocol::decode(&data, DocName::Notes.root()) {
                    for m in msgs {
                        if let ClientMessage::Awareness { update, .. } = m {
                            self.notes_doc.awareness.apply(&update, now);
                        }
                    }
                    self.relay_awareness(DocName::Notes, data, None, false, out);
                }
            }
            BusMessage::Awareness { data } => {
                if let Ok(msgs) = protocol::decode(&data, TEXT_NAME) {
                    for m in msgs {
                        if let ClientMessage::Awareness { update, .. } = m {
                            self.code_doc.awareness.apply(&update, now);
                        }
                    }
                    self.relay_awareness(DocName::Code, data, None, false, out);
                }
            }
            BusMessage::SyncStep1 { want_reply, sv } => {
                let Ok(sv) = StateVector::decode_v1(&sv) else {
                    return;
                };
                let diff = self.code_doc.diff(&sv);
                let ours = self.code_doc.state_vector().encode_v1();
                self.publish(
                    BusMessage::SyncReply {
                        target: origin,
                        data: diff.into(),
                    },
                    out,
                );
                if want_reply {
                    self.publish(
                        BusMessage::SyncStep1 {
                            want_reply: false,
                            sv: ours.into(),
                        },
                        out,
                    );
                }
                out.publish(self.roster.presence_message(&self.settings.hub_id));
                if let Some(aw) = self.code_doc.awareness.full() {
                    self.publish(
                        BusMessage::Awareness {
                            data: protocol::encode_awareness(&aw).into(),
                        },
                        out,
                    );
                }
            }
            BusMessage::SyncReply { target, data } => {
                if target != self.settings.hub_id {
                    return;
                }
                if let Ok(update) = Update::decode_v1(&data) {
                    if let Ok(a) = self.code_doc.apply(update) {
                        if a.changed {
                            self.fan_out(now, &a.delta, None, None, out);
                            // The other hub may not have committed all of it: store what was new
                            // here.
                            self.durability.write(DocKind::Code, None, a.delta, out);
                        }
                    }
                }
            }
            BusMessage::Presence { json } => {
                let Ok(participants) = serde_json::from_slice::<Vec<UserInfo>>(&json) else {
                    return;
                };
                let before = self.roster.everyone();
                self.roster
                    .set_remote(origin, participants, now + self.settings.peer_ttl);
                let after = self.roster.everyone();
                Roster::announce(&before, &after, None, out);
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
                    self.language = lang;
                    out.broadcast(
                        Audience::Everyone,
                        None,
                        "language_updated",
                        Outgoing::Json(body),
                    );
                }
            }
            BusMessage::Run { json } => {
                if let Ok(body) = serde_json::from_slice::<Value>(&json) {
                    out.broadcast(
                        Audience::Everyone,
                        None,
                        "execution_result",
                        Outgoing::Json(body),
                    );
                }
            }
            // Interviewers only: a candidate's connection is never in that audience.
            BusMessage::Activity { json } => {
                if let Ok(body @ Value::Object(_)) = serde_json::from_slice::<Value>(&json) {
                    out.broadcast(
                        Audience::Interviewers,
                        None,
                        "activity",
                        Outgoing::Json(body),
                    );
                }
            }
        }
    }

    /// `origin` committed its edits of this interview up to `seq` (its notice in this hub's inbox).
    pub fn on_remote_committed(&mut self, now: Instant, origin: &str, seq: u64, out: &mut Effects) {
        self.roster.peer_seen(origin, now + self.settings.peer_ttl);
        self.durability.remote_committed(origin, seq, out);
    }

    /// Asks the other hubs for what this replica lacks, and tells them who is here.
    pub fn sync_request(&self, out: &mut Effects) {
        let sv = self.code_doc.state_vector().encode_v1();
        self.publish(
            BusMessage::SyncStep1 {
                want_reply: true,
                sv: sv.into(),
            },
            out,
        );
        self.publish_presence(out);
    }

    /// Publishes this hub's participants (on change, on request and periodically).
    pub fn publish_presence(&self, out: &mut Effects) {
        out.publish(self.roster.presence_message(&self.settings.hub_id));
    }

    /// A message for the bus could not be queued (the queue is full): resync soon.
    pub fn publish_dropped(&mut self) {
        self.resync_needed = true;
    }
}
