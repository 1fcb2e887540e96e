//! The bookkeeping that makes acknowledgements honest: an edit's ack is released only when every
//! edit it may depend on is committed to the database.
//!
//! Two watermarks must pass an ack:
//! - the *write* watermark: the interview's writes get increasing write ids and are committed in
//!   order, so "committed up to write id N" releases every ack that needed ≤ N;
//! - the *remote* watermark: updates relayed by other hubs are not known to be committed until
//!   their origin says so (`Commits`, which the origin sends to this hub's inbox after its group
//!   commits) or this hub commits them itself after [`REMOTE_COMMIT_TAKEOVER`]. An edit that
//!   builds on such an update (or a re-sent edit this hub already had from the bus) is acked only
//!   after that, so a hub crash can never lose an edit some client was told is saved.
//!
//! Pure: time comes in as arguments, acks are [`AckToken`]s, writes and notices are [`Effect`]s.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use duet_domain::DocKind;
use serde_json::json;
use uuid::Uuid;

use super::effects::{AckToken, ConnId, Effect, Effects};
use crate::error::HubError;
use crate::limits::{NOTICE_REPEAT_AFTER, REMOTE_COMMIT_TAKEOVER};

/// An update relayed by another hub, not yet known to be committed.
#[derive(Debug)]
struct RemotePending {
    origin: String,
    seq: u64,
    doc: DocKind,
    author: Option<Uuid>,
    data: Bytes,
    received: Instant,
    /// Set when this hub queued its own write of it.
    takeover_write: Option<u64>,
}

#[derive(Debug)]
struct WaitingAck {
    write_wm: u64,
    remote_wm: u64,
    token: AckToken,
}

#[derive(Debug)]
pub struct Durability {
    next_write_id: u64,
    committed_write_id: u64,
    /// Writes queued and not yet committed.
    in_flight: u64,
    waiting: Vec<WaitingAck>,
    remote_pending: BTreeMap<u64, RemotePending>,
    next_remote_id: u64,
    /// The write id last announced to the other hubs, when, and whether that announcement was
    /// repeated (see [`Durability::notice`]).
    notice_sent: u64,
    notice_at: Instant,
    notice_repeated: u64,
    /// Committed updates since the last snapshot (counting those stored before the load).
    pub committed_since_snapshot: u64,
}

impl Durability {
    /// `stored`: updates stored after the newest snapshot when the interview was loaded.
    pub fn new(now: Instant, stored: u64) -> Self {
        Self {
            next_write_id: 1,
            committed_write_id: 0,
            in_flight: 0,
            waiting: Vec::new(),
            remote_pending: BTreeMap::new(),
            next_remote_id: 1,
            notice_sent: 0,
            notice_at: now,
            notice_repeated: 0,
            committed_since_snapshot: stored,
        }
    }

    /// Queues a write of `data`; returns its write id.
    pub fn write(
        &mut self,
        doc: DocKind,
        author: Option<Uuid>,
        data: Vec<u8>,
        out: &mut Effects,
    ) -> u64 {
        let write_id = self.next_write_id;
        self.next_write_id += 1;
        self.in_flight += 1;
        out.push(Effect::Write {
            write_id,
            doc,
            author,
            data,
        });
        write_id
    }

    /// The newest write id handed out (0 before the first).
    pub fn last_write_id(&self) -> u64 {
        self.next_write_id - 1
    }

    /// Nothing queued, nothing relayed and unconfirmed: the interview may be unloaded.
    pub fn settled(&self) -> bool {
        self.in_flight == 0 && self.remote_pending.is_empty()
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Answers `token` once writes up to `write_wm`, and every remote update received so far, are
    /// committed (at once if they are).
    pub fn ack_when_durable(&mut self, write_wm: u64, token: AckToken, out: &mut Effects) {
        let remote_wm = self.next_remote_id;
        if self.durable(write_wm, remote_wm) {
            out.ack(token, Ok(json!({"ok": true})));
        } else {
            self.waiting.push(WaitingAck {
                write_wm,
                remote_wm,
                token,
            });
        }
    }

    fn durable(&self, write_wm: u64, remote_wm: u64) -> bool {
        self.committed_write_id >= write_wm
            && self.remote_pending.range(..remote_wm).next().is_none()
    }

    fn release(&mut self, out: &mut Effects) {
        if self.waiting.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut self.waiting);
        for w in waiting {
            if self.durable(w.write_wm, w.remote_wm) {
                out.ack(w.token, Ok(json!({"ok": true})));
            } else {
                self.waiting.push(w);
            }
        }
    }

    /// The writer committed this interview's writes up to `upto` (`count` of them).
    pub fn committed(&mut self, upto: u64, count: u64, out: &mut Effects) {
        self.committed_write_id = self.committed_write_id.max(upto);
        self.in_flight = self.in_flight.saturating_sub(count);
        self.committed_since_snapshot += count;
        let committed = self.committed_write_id;
        self.remote_pending
            .retain(|_, p| p.takeover_write.is_none_or(|w| w > committed));
        self.release(out);
    }

    /// The interview's writes cannot be stored: every waiting ack is refused.
    pub fn fail(&mut self, error: &HubError, out: &mut Effects) {
        self.in_flight = 0;
        for w in std::mem::take(&mut self.waiting) {
            out.ack(w.token, Err(error.clone()));
        }
    }

    /// Forgets the acks of a connection that is gone (nobody is left to receive them).
    pub fn forget(&mut self, conn: &ConnId) {
        self.waiting.retain(|w| &w.token.conn != conn);
    }

    /// An update relayed by `origin` (its write id `seq`), not known to be committed yet.
    pub fn relayed(
        &mut self,
        now: Instant,
        origin: String,
        seq: u64,
        doc: DocKind,
        author: Option<Uuid>,
        data: Bytes,
    ) {
        let id = self.next_remote_id;
        self.next_remote_id += 1;
        self.remote_pending.insert(
            id,
            RemotePending {
                origin,
                seq,
                doc,
                author,
                data,
                received: now,
                takeover_write: None,
            },
        );
    }

    /// `origin` committed its edits up to `seq`: they no longer hold back acks here, and this hub
    /// will not commit them itself.
    pub fn remote_committed(&mut self, origin: &str, seq: u64, out: &mut Effects) {
        self.remote_pending
            .retain(|_, p| !(p.origin == origin && p.seq <= seq));
        self.release(out);
    }

    /// Queues writes of the relayed updates whose origin did not confirm them within
    /// [`REMOTE_COMMIT_TAKEOVER`] (it may have died). Duplicates are harmless: Yjs updates are
    /// idempotent.
    pub fn take_over_stale(&mut self, now: Instant, out: &mut Effects) {
        let stale: Vec<(u64, DocKind, Option<Uuid>, Bytes)> = self
            .remote_pending
            .iter()
            .filter(|(_, p)| {
                p.takeover_write.is_none()
                    && now.duration_since(p.received) >= REMOTE_COMMIT_TAKEOVER
            })
            .map(|(id, p)| (*id, p.doc, p.author, p.data.clone()))
            .collect();
        for (id, doc, author, data) in stale {
            let w = self.write(doc, author, data.to_vec(), out);
            if let Some(p) = self.remote_pending.get_mut(&id) {
                p.takeover_write = Some(w);
            }
        }
    }

    /// What the other hubs sharing the interview should be told of its commits: the write id
    /// committed up to, if a notice is due.
    ///
    /// Due after every group commit, and checked on the worker's tick: once the commits stop
    /// advancing, the last notice is repeated once, [`NOTICE_REPEAT_AFTER`] later. A notice travels
    /// by the other hub's inbox, not by the interview's channel, so it may be handled there before
    /// the update it covers (which then waits for the next notice), or be dropped with a full
    /// publish queue. The repeat settles both without waiting for the other hub's takeover.
    pub fn notice(&mut self, now: Instant, has_peers: bool) -> Option<u64> {
        let upto = self.committed_write_id;
        let fresh = upto > self.notice_sent;
        let repeat = !fresh
            && upto > self.notice_repeated
            && now.duration_since(self.notice_at) >= NOTICE_REPEAT_AFTER;
        if !(fresh || repeat) || !has_peers {
            return None;
        }
        if fresh {
            self.notice_sent = upto;
            self.notice_at = now;
        } else {
            self.notice_repeated = upto;
        }
        Some(upto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interview::effects::Effect;
    use std::time::Duration;

    fn token(conn: &str, id: u64) -> AckToken {
        AckToken {
            conn: conn.into(),
            id,
        }
    }

    fn acks(out: &mut Effects) -> Vec<(u64, bool)> {
        out.drain()
            .filter_map(|e| match e {
                Effect::Ack { token, result } => Some((token.id, result.is_ok())),
                _ => None,
            })
            .collect()
    }

    fn writes(out: &Effects) -> Vec<u64> {
        out.iter()
            .filter_map(|e| match e {
                Effect::Write { write_id, .. } => Some(*write_id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn acks_are_released_only_after_their_write_commits() {
        let t0 = Instant::now();
        let mut d = Durability::new(t0, 0);
        let mut out = Effects::new();
        let w1 = d.write(DocKind::Code, None, vec![1], &mut out);
        let w2 = d.write(DocKind::Code, None, vec![2], &mut out);
        assert_eq!(writes(&out), vec![1, 2]);
        out.drain();
        d.ack_when_durable(w1, token("a", 1), &mut out);
        d.ack_when_durable(w2, token("a", 2), &mut out);
        assert!(acks(&mut out).is_empty(), "nothing is committed yet");
        assert!(!d.settled());
        d.committed(w1, 1, &mut out);
        assert_eq!(acks(&mut out), vec![(1, true)]);
        d.committed(w2, 1, &mut out);
        assert_eq!(acks(&mut out), vec![(2, true)]);
        assert!(d.settled());
        assert_eq!(d.committed_since_snapshot, 2);
    }

    #[test]
    fn an_ack_for_nothing_new_waits_for_what_is_in_flight() {
        let mut d = Durability::new(Instant::now(), 0);
        let mut out = Effects::new();
        // A re-sent edit the hub already had: it waits for the newest write, not for nothing.
        let w = d.write(DocKind::Code, None, vec![1], &mut out);
        d.ack_when_durable(d.last_write_id(), token("b", 7), &mut out);
        assert!(acks(&mut out).is_empty());
        d.committed(w, 1, &mut out);
        assert_eq!(acks(&mut out), vec![(7, true)]);
        // With nothing ever written, an ack is immediate.
        let mut fresh = Durability::new(Instant::now(), 0);
        fresh.ack_when_durable(fresh.last_write_id(), token("c", 1), &mut out);
        assert_eq!(acks(&mut out), vec![(1, true)]);
    }

    #[test]
    fn an_edit_on_top_of_a_relayed_update_waits_for_its_origins_commit() {
        let t0 = Instant::now();
        let mut d = Durability::new(t0, 0);
        let mut out = Effects::new();
        d.relayed(
            t0,
            "h2".into(),
            5,
            DocKind::Code,
            None,
            Bytes::from_static(b"u"),
        );
        let w = d.write(DocKind::Code, None, vec![1], &mut out);
        d.ack_when_durable(w, token("a", 1), &mut out);
        d.committed(w, 1, &mut out);
        assert!(
            acks(&mut out).is_empty(),
            "the relayed update is not known to be stored"
        );
        // A notice about an older write of that hub changes nothing, nor one from another hub.
        d.remote_committed("h2", 4, &mut out);
        d.remote_committed("h3", 9, &mut out);
        assert!(acks(&mut out).is_empty());
        d.remote_committed("h2", 5, &mut out);
        assert_eq!(acks(&mut out), vec![(1, true)]);
        assert!(d.settled());
    }

    #[test]
    fn a_lost_notice_is_made_good_by_a_takeover_write() {
        let t0 = Instant::now();
        let mut d = Durability::new(t0, 0);
        let mut out = Effects::new();
        d.relayed(
            t0,
            "h2".into(),
            1,
            DocKind::Code,
            None,
            Bytes::from_static(b"u"),
        );
        d.ack_when_durable(d.last_write_id(), token("a", 1), &mut out);
        d.take_over_stale(t0 + REMOTE_COMMIT_TAKEOVER / 2, &mut out);
        assert!(writes(&out).is_empty(), "too early for a takeover");
        d.take_over_stale(t0 + REMOTE_COMMIT_TAKEOVER, &mut out);
        assert_eq!(writes(&out), vec![1]);
        out.drain();
        // Only once: the next tick does not write it again.
        d.take_over_stale(t0 + REMOTE_COMMIT_TAKEOVER * 2, &mut out);
        assert!(writes(&out).is_empty());
        d.committed(1, 1, &mut out);
        assert_eq!(acks(&mut out), vec![(1, true)]);
        assert!(d.settled());
    }

    #[test]
    fn notices_follow_commits_and_the_last_is_repeated_once() {
        let t0 = Instant::now();
        let mut d = Durability::new(t0, 0);
        let mut out = Effects::new();
        let w = d.write(DocKind::Code, None, vec![1], &mut out);
        assert_eq!(d.notice(t0, true), None, "nothing committed yet");
        d.committed(w, 1, &mut out);
        assert_eq!(d.notice(t0, false), None, "no other hub to tell");
        assert_eq!(d.notice(t0, true), Some(1));
        assert_eq!(d.notice(t0 + Duration::from_millis(10), true), None);
        let later = t0 + NOTICE_REPEAT_AFTER;
        assert_eq!(d.notice(later, true), Some(1), "repeated once");
        assert_eq!(d.notice(later + NOTICE_REPEAT_AFTER, true), None);
    }

    #[test]
    fn failed_writes_refuse_every_waiting_ack() {
        let mut d = Durability::new(Instant::now(), 0);
        let mut out = Effects::new();
        let w = d.write(DocKind::Code, None, vec![1], &mut out);
        d.ack_when_durable(w, token("a", 1), &mut out);
        d.ack_when_durable(w, token("b", 2), &mut out);
        d.forget(&"b".into());
        d.fail(&HubError::internal(), &mut out);
        assert_eq!(acks(&mut out), vec![(1, false)]);
        assert_eq!(d.in_flight(), 0);
    }
}
