//! Updates held back until what they depend on arrives.
//!
//! Yjs keeps an update whose structs start past their client's clock, or name an origin the
//! document lacks, pending until the gap is filled. yrs (0.28) integrates it at once instead: out of
//! causal order, and without it in the transaction's encoded delta, so the hub would store nothing,
//! ack, and show a text that a restart does not reproduce. So the hub checks every update from a
//! client or another hub first ([`UpdateStats::has_gap`]) and holds one with a gap here: not
//! integrated, not stored, not acked. Whenever the document grows, the held updates whose gaps are
//! filled are integrated in order (then stored, relayed and acked as usual). What is missing is
//! asked for (a resync with the database and the other hubs); a client reconnecting after a hub
//! lost its unacked edits sends its sync step 2 right after. An update still held after
//! [`HELD_FOR`] is refused (`invalid_update`), and at most [`MAX_HELD`] wait per interview.

use std::time::Instant;

use uuid::Uuid;
use yrs::updates::decoder::Decode;
use yrs::Update;

use super::scan::UpdateStats;
use super::{AckToken, ConnId, DocName, Effects, Interview};
use crate::error::{ErrorCode, HubError};
use crate::limits::{HELD_FOR, MAX_HELD};

/// One held update.
#[derive(Debug)]
pub struct Held {
    pub doc: DocName,
    /// The client that sent it (`None`: another hub relayed it; it is stored by that hub).
    pub conn: Option<ConnId>,
    pub author: Option<Uuid>,
    pub raw: Vec<u8>,
    pub stats: UpdateStats,
    /// The emit's ack, answered once it is integrated and stored.
    pub ack: Option<AckToken>,
    pub since: Instant,
}

impl Interview {
    /// Whether `stats` (of an update for `doc`) depends on something the document lacks.
    pub(super) fn gap_in(&mut self, doc: DocName, stats: &UpdateStats) -> bool {
        let sv = self.doc_mut(doc).state_vector();
        stats.has_gap(&sv)
    }

    /// Holds an update with a gap; asks for what is missing. Refused when too many wait.
    pub(super) fn hold(
        &mut self,
        now: Instant,
        held: Held,
        out: &mut Effects,
    ) -> Result<(), HubError> {
        if self.held.len() >= MAX_HELD {
            return Err(HubError::new(
                ErrorCode::InvalidUpdate,
                "an update depends on edits the server does not have",
            ));
        }
        tracing::debug!(session = %self.id, relayed = held.conn.is_none(), "update with a gap held");
        self.held.push(Held { since: now, ..held });
        self.resync_needed = true;
        out.wake();
        Ok(())
    }

    /// Gives a held update from `conn` the emit's ack (the last one held answers it).
    pub(super) fn hold_ack(&mut self, conn: &ConnId, ack: AckToken) -> Option<AckToken> {
        match self
            .held
            .iter_mut()
            .rev()
            .find(|h| h.conn.as_ref() == Some(conn))
        {
            Some(h) if h.ack.is_none() => {
                h.ack = Some(ack);
                None
            }
            _ => Some(ack),
        }
    }

    /// Integrates, in the order they came, the held updates whose gaps are filled now.
    pub(super) fn release_held(&mut self, now: Instant, out: &mut Effects) {
        loop {
            let ready = (0..self.held.len()).find(|&i| {
                let (doc, stats) = (self.held[i].doc, self.held[i].stats.clone());
                !self.gap_in(doc, &stats)
            });
            let Some(i) = ready else {
                return;
            };
            let h = self.held.remove(i);
            let Ok(update) = Update::decode_v1(&h.raw) else {
                continue;
            };
            let applied = match self.doc_mut(h.doc).apply(update) {
                Ok(a) => a,
                Err(e) => {
                    if let Some(token) = h.ack {
                        out.ack(token, Err(e));
                    }
                    continue;
                }
            };
            let mut write = None;
            if applied.changed {
                self.changed(now, h.doc, &applied.delta, h.conn.as_ref(), h.author, out);
                if h.conn.is_some() {
                    let author = h.author.unwrap_or_default();
                    write = Some(self.local_change(now, h.doc, author, applied.delta, out));
                }
            }
            if let Some(token) = h.ack {
                let w = write.unwrap_or(self.durability.last_write_id());
                self.durability.ack_when_durable(w, token, out);
            }
        }
    }

    /// Refuses the held updates that waited too long (their gap never filled).
    pub(super) fn expire_held(&mut self, now: Instant, out: &mut Effects) {
        let (old, keep): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| now.duration_since(h.since) >= HELD_FOR);
        self.held = keep;
        for h in old {
            tracing::warn!(session = %self.id, relayed = h.conn.is_none(), "an update's gap was never filled; dropped");
            if let Some(token) = h.ack {
                out.ack(
                    token,
                    Err(HubError::new(
                        ErrorCode::InvalidUpdate,
                        "an update depends on edits the server never received",
                    )),
                );
            }
        }
    }

    /// Forgets what a connection that is gone had held (nobody waits for its acks).
    pub(super) fn forget_held(&mut self, conn: &ConnId) {
        for h in self
            .held
            .iter_mut()
            .filter(|h| h.conn.as_ref() == Some(conn))
        {
            h.ack = None;
        }
    }

    /// How many updates are held (metrics, tests).
    pub fn held_count(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use duet_domain::{InterviewControl, InterviewState, Language, Role, SessionCode};
    use yrs::{GetString, Transact};

    use super::*;
    use crate::interview::presence::UserInfo;
    use crate::interview::{
        doc_from_storage, guard, new_doc, protocol, Command, Effect, Joiner, Settings, TEXT_NAME,
    };

    fn var(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// One string struct of `client` at `clock`, at the start of the text (no origins).
    fn at_start(client: u64, clock: u64, s: &str) -> Vec<u8> {
        let mut u = vec![];
        for v in [1, 1, client, clock] {
            var(&mut u, v);
        }
        u.push(4);
        var(&mut u, 1);
        var(&mut u, TEXT_NAME.len() as u64);
        u.extend_from_slice(TEXT_NAME.as_bytes());
        var(&mut u, s.len() as u64);
        u.extend_from_slice(s.as_bytes());
        var(&mut u, 0);
        u
    }

    /// One string struct of `client` at `clock` whose left origin is `(oc, ok)`.
    fn after(client: u64, clock: u64, (oc, ok): (u64, u64), s: &str) -> Vec<u8> {
        let mut u = vec![];
        for v in [1, 1, client, clock] {
            var(&mut u, v);
        }
        u.push(0x80 | 4);
        var(&mut u, oc);
        var(&mut u, ok);
        var(&mut u, s.len() as u64);
        u.extend_from_slice(s.as_bytes());
        var(&mut u, 0);
        u
    }

    struct Case {
        core: Interview,
        t0: Instant,
        conn: ConnId,
        next_ack: u64,
        writes: Vec<Vec<u8>>,
        acks: Vec<(u64, bool)>,
    }

    impl Case {
        fn new() -> Self {
            let t0 = Instant::now();
            let mut core = Interview::new(
                Uuid::nil(),
                SessionCode::parse("K7MX2QPA").unwrap(),
                Language::Python,
                InterviewControl {
                    state: InterviewState::Live,
                    started_at: None,
                    ended_at: None,
                    editing_locked: false,
                    runs_enabled: true,
                    removed: Vec::new(),
                },
                new_doc(),
                0,
                guard::Usage::default(),
                Settings {
                    hub_id: "h1".into(),
                    peer_ttl: Duration::from_secs(3),
                    snapshot_every: 1000,
                },
                t0,
            );
            let conn = ConnId::from("c1");
            let mut out = Effects::new();
            let joiner = Joiner {
                user: UserInfo {
                    user_id: Uuid::from_u128(1),
                    name: "A".into(),
                    color: "#000000".into(),
                },
                yjs: true,
                row_id: Uuid::from_u128(2),
                role: Role::Candidate,
                bound: false,
            };
            core.admit(&conn, joiner, None, &mut out).unwrap();
            Self {
                core,
                t0,
                conn,
                next_ack: 0,
                writes: Vec::new(),
                acks: Vec::new(),
            }
        }

        fn collect(&mut self, mut out: Effects) {
            let mut committed = 0;
            for e in out.drain() {
                match e {
                    Effect::Write { data, .. } => {
                        self.writes.push(data);
                        committed += 1;
                    }
                    Effect::Ack { token, result } => self.acks.push((token.id, result.is_ok())),
                    _ => {}
                }
            }
            if committed > 0 {
                // The writer commits everything queued.
                let mut out = Effects::new();
                let upto = self.core.durability.last_write_id();
                self.core.on_committed(self.t0, upto, committed, &mut out);
                self.collect(out);
            }
        }

        /// Sends one update; returns its ack id.
        fn send(&mut self, at: Duration, update: &[u8]) -> u64 {
            let id = self.next_ack;
            self.next_ack += 1;
            let msgs = protocol::decode(&protocol::encode_update(update), TEXT_NAME).unwrap();
            let mut out = Effects::new();
            let token = AckToken {
                conn: self.conn.clone(),
                id,
            };
            let r = self.core.on_client(
                self.t0 + at,
                &self.conn.clone(),
                Command::Yjs {
                    doc: DocName::Code,
                    msgs,
                    ack: Some(token),
                    defer: false,
                },
                &mut out,
            );
            assert!(r.is_ok(), "{r:?}");
            self.collect(out);
            id
        }

        fn tick(&mut self, at: Duration) {
            let mut out = Effects::new();
            self.core.on_tick(self.t0 + at, &mut out);
            self.collect(out);
        }

        fn text(&self) -> String {
            self.core.text()
        }

        /// The text a restart would load from what was written.
        fn replayed(&self) -> String {
            let state = duet_storage::DocumentState {
                snapshot: None,
                updates: self
                    .writes
                    .iter()
                    .enumerate()
                    .map(|(i, d)| duet_storage::StoredUpdate {
                        seq: i as i64 + 1,
                        author: None,
                        data: d.clone(),
                        created_at: time::OffsetDateTime::UNIX_EPOCH,
                    })
                    .collect(),
            };
            let doc = doc_from_storage(Uuid::nil(), &state);
            let text = doc.get_or_insert_text(TEXT_NAME);
            let s = text.get_string(&doc.transact());
            s
        }
    }

    #[test]
    fn a_struct_past_its_clients_clock_waits_then_is_stored_with_what_it_needed() {
        let mut c = Case::new();
        // Clock 1 of a client this document has never seen: yrs alone would show it, store
        // nothing of it, and ack.
        let late = c.send(Duration::ZERO, &at_start(4242, 1, "m"));
        assert_eq!(c.text(), "", "not shown while its predecessor is missing");
        assert!(
            c.writes.is_empty() && c.acks.is_empty(),
            "neither stored nor acked"
        );
        assert_eq!(c.core.held_count(), 1);
        // The predecessor arrives: both are integrated, stored and acked.
        let first = c.send(Duration::from_millis(50), &at_start(4242, 0, "x"));
        assert_eq!(c.core.held_count(), 0);
        assert_eq!(c.acks, vec![(first, true), (late, true)]);
        assert_eq!(c.text(), c.replayed(), "live and replayed agree");
        assert_eq!(c.text().len(), 2);
    }

    #[test]
    fn an_origin_the_document_lacks_waits_too_and_a_gap_never_filled_is_refused() {
        let mut c = Case::new();
        let base = c.send(Duration::ZERO, &at_start(7, 0, "ab"));
        // After an item of client 9 that never comes.
        let orphan = c.send(Duration::from_millis(10), &after(8, 0, (9, 3), "Z"));
        assert_eq!(c.text(), "ab");
        assert_eq!(c.acks, vec![(base, true)]);
        // What does not depend on it goes on.
        let next = c.send(Duration::from_millis(20), &after(7, 2, (7, 1), "c"));
        assert_eq!(c.text(), "abc");
        assert_eq!(c.acks, vec![(base, true), (next, true)]);
        c.tick(Duration::from_secs(5));
        assert_eq!(c.core.held_count(), 1, "still waiting");
        c.tick(Duration::from_secs(11));
        assert_eq!(c.core.held_count(), 0);
        assert_eq!(
            c.acks,
            vec![(base, true), (next, true), (orphan, false)],
            "refused once the wait is over"
        );
        assert_eq!(c.text(), "abc");
        assert_eq!(c.replayed(), "abc", "nothing of it stored");
    }

    #[test]
    fn a_history_stored_out_of_causal_order_replays_as_it_was_live() {
        // Two hubs each commit what they relay late: a client's clock 1 can be stored before its
        // clock 0. Applied in that order, yrs gives "xm"; live (causal order) it was "mx".
        let first = at_start(5, 0, "x");
        let second = at_start(5, 1, "m");
        let load = |order: [&Vec<u8>; 2]| {
            let state = duet_storage::DocumentState {
                snapshot: None,
                updates: order
                    .iter()
                    .enumerate()
                    .map(|(i, d)| duet_storage::StoredUpdate {
                        seq: i as i64 + 1,
                        author: None,
                        data: d.to_vec(),
                        created_at: time::OffsetDateTime::UNIX_EPOCH,
                    })
                    .collect(),
            };
            let doc = doc_from_storage(Uuid::nil(), &state);
            let text = doc.get_or_insert_text(TEXT_NAME);
            let s = text.get_string(&doc.transact());
            s
        };
        assert_eq!(load([&first, &second]), "mx");
        assert_eq!(load([&second, &first]), "mx");
    }
}
