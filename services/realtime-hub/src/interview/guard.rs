//! What keeps one interview from hurting the others or the hub: caps on what its documents may grow
//! to (structs, text, history — in total and per minute), ownership of Yjs client ids (an update
//! under another participant's id could pre-empt that participant's edit, which would then be
//! acked and never stored), and staging: large updates, and every update of an interview over its
//! integration budget, are integrated a few structs at a time between other work.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use duet_storage::DocumentState;
use uuid::Uuid;
use yrs::StateVector;

use super::scan::{self, UpdateStats};
use super::{AckToken, ConnId, DocName};
use crate::error::{ErrorCode, HubError};
use crate::limits::{
    MAX_DOC_INSERTED_UNITS, MAX_DOC_STRUCTS, MAX_HISTORY_BYTES, MAX_HISTORY_BYTES_PER_MINUTE,
    MAX_STAGED_BYTES, MAX_UPDATE_STRUCTS,
};

/// What an interview's code document holds and has stored, against the caps in [`crate::limits`].
#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub structs: u64,
    pub inserted_units: u64,
    pub history_bytes: u64,
    /// History bytes that may still be added this minute (a token bucket; `None` until first used).
    window: Option<(f64, Instant)>,
}

impl Usage {
    /// What a loaded document already holds (stored updates that do not scan are counted by size).
    pub fn of_stored(state: &DocumentState, root: &str) -> Self {
        let mut u = Usage::default();
        let parts = state
            .snapshot
            .iter()
            .map(|s| &s.data)
            .chain(state.updates.iter().map(|u| &u.data));
        for data in parts {
            if let Ok(s) = scan::scan(data, root) {
                u.structs += s.structs;
                u.inserted_units += s.inserted_units;
            }
        }
        u.history_bytes = state.updates.iter().map(|u| u.data.len() as u64).sum();
        u
    }

    /// Checks a client update against the caps before anything is applied, and takes its bytes
    /// from this minute's allowance.
    pub fn admit(
        &mut self,
        now: Instant,
        stats: &UpdateStats,
        bytes: usize,
    ) -> Result<(), HubError> {
        if stats.structs > MAX_UPDATE_STRUCTS {
            return Err(HubError::new(
                ErrorCode::PayloadTooLarge,
                format!("an update may carry at most {MAX_UPDATE_STRUCTS} structs"),
            ));
        }
        if self.structs + stats.structs > MAX_DOC_STRUCTS
            || self.inserted_units + stats.inserted_units > MAX_DOC_INSERTED_UNITS
            || self.history_bytes + bytes as u64 > MAX_HISTORY_BYTES
        {
            return Err(HubError::new(
                ErrorCode::DocumentTooLarge,
                "the document has reached its size limit",
            ));
        }
        let cap = MAX_HISTORY_BYTES_PER_MINUTE as f64;
        let (tokens, at) = self.window.unwrap_or((cap, now));
        let tokens = (tokens + now.duration_since(at).as_secs_f64() * cap / 60.0).min(cap);
        if (bytes as f64) > tokens {
            self.window = Some((tokens, now));
            return Err(HubError::new(
                ErrorCode::RateLimited,
                "too much history this minute; slow down",
            ));
        }
        self.window = Some((tokens - bytes as f64, now));
        Ok(())
    }

    /// A client update changed the document.
    pub fn integrated(&mut self, stats: &UpdateStats) {
        self.structs += stats.structs;
        self.inserted_units += stats.inserted_units;
    }
}

/// Who owns each Yjs client id seen in a document: the connection (and user) that first sent
/// structs under it. A tab that reconnects keeps its client id, so the same user may take it over.
#[derive(Debug, Default)]
pub struct Owners(HashMap<u64, (ConnId, Uuid)>);

impl Owners {
    /// Refuses an update that brings new structs under a client id another user's live
    /// connection owns; otherwise claims the update's client ids for `conn`. `conns` answers, for
    /// a connection still here, the client ids its awareness announced (`None` once it is gone).
    /// Structs the document already has (a re-send, or edits of others a client relays after the
    /// hub lost them) are not new and claim nothing.
    ///
    /// A client that relays another's edits the hub lacks (after a hub died before storing them,
    /// the other participant's resync re-sends them) claims that id first; the author takes it
    /// over when the id is the one its own awareness announced and not the relayer's — otherwise
    /// every later edit of the author would be refused.
    pub fn check_and_claim<'a>(
        &mut self,
        conn: &ConnId,
        user: Uuid,
        stats: &UpdateStats,
        sv: &StateVector,
        conns: impl Fn(&ConnId) -> Option<&'a [u64]>,
    ) -> Result<(), HubError> {
        let new: Vec<u64> = stats
            .authors
            .iter()
            .filter(|(client, end)| *end > u64::from(sv.get(&yrs::block::ClientID::new(*client))))
            .map(|(client, _)| *client)
            .collect();
        let announces = |c: &ConnId, client: u64| conns(c).is_some_and(|ids| ids.contains(&client));
        for client in &new {
            if let Some((owner, owner_user)) = self.0.get(client) {
                if owner != conn && *owner_user != user && conns(owner).is_some() {
                    let author = announces(conn, *client) && !announces(owner, *client);
                    if !author {
                        return Err(HubError::new(
                            ErrorCode::InvalidUpdate,
                            "an update under another participant's client id",
                        ));
                    }
                }
            }
        }
        for client in new {
            self.0.insert(client, (conn.clone(), user));
        }
        Ok(())
    }

    /// Claims a client id the hub itself writes under for a connection (a seed client's edits).
    pub fn claim(&mut self, client: u64, conn: &ConnId, user: Uuid) {
        self.0.insert(client, (conn.clone(), user));
    }

    /// Whether someone writes under `client`.
    pub fn is_claimed(&self, client: u64) -> bool {
        self.0.contains_key(&client)
    }

    /// A connection left: its client ids are free.
    pub fn release(&mut self, conn: &ConnId) {
        self.0.retain(|_, (c, _)| c != conn);
    }
}

/// A client update waiting to be integrated, split into pieces of one struct (and the delete set).
#[derive(Debug)]
pub struct Staged {
    pub conn: ConnId,
    pub author: Uuid,
    pub doc: DocName,
    pub pieces: VecDeque<Vec<u8>>,
    pub stats: UpdateStats,
    pub bytes: usize,
    /// The ack of the emit, answered once its last piece is integrated and committed.
    pub ack: Option<AckToken>,
    pub last_write: Option<u64>,
}

/// The staged updates of an interview, in arrival order.
#[derive(Debug, Default)]
pub struct Stage {
    pub queue: VecDeque<Staged>,
    bytes: usize,
}

impl Stage {
    /// Whether `conn` has updates waiting (its later ones must wait behind them).
    pub fn has(&self, conn: &ConnId) -> bool {
        self.queue.iter().any(|s| &s.conn == conn)
    }

    /// Queues an update; refuses when too much is waiting already.
    pub fn push(&mut self, s: Staged) -> Result<(), HubError> {
        if self.bytes + s.bytes > MAX_STAGED_BYTES {
            return Err(HubError::new(
                ErrorCode::RateLimited,
                "too many edits waiting; slow down",
            ));
        }
        self.bytes += s.bytes;
        self.queue.push_back(s);
        Ok(())
    }

    /// The front update is done.
    pub fn pop(&mut self) -> Option<Staged> {
        let s = self.queue.pop_front()?;
        self.bytes -= s.bytes;
        Some(s)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stats(structs: u64, authors: &[(u64, u64)]) -> UpdateStats {
        UpdateStats {
            structs,
            clients: 1,
            inserted_units: structs,
            delete_ranges: 0,
            authors: authors.to_vec(),
            ..UpdateStats::default()
        }
    }

    #[test]
    fn caps_refuse_before_anything_is_counted() {
        let t0 = Instant::now();
        let mut u = Usage::default();
        let e = u
            .admit(t0, &stats(MAX_UPDATE_STRUCTS + 1, &[]), 10)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::PayloadTooLarge);
        u.structs = MAX_DOC_STRUCTS;
        let e = u.admit(t0, &stats(1, &[]), 10).unwrap_err();
        assert_eq!(e.code, ErrorCode::DocumentTooLarge);
    }

    #[test]
    fn history_per_minute_is_a_refilling_allowance() {
        let t0 = Instant::now();
        let mut u = Usage::default();
        let chunk = (MAX_HISTORY_BYTES_PER_MINUTE / 4) as usize;
        for _ in 0..4 {
            u.admit(t0, &stats(1, &[]), chunk).unwrap();
        }
        let e = u.admit(t0, &stats(1, &[]), chunk).unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited);
        // A quarter of a minute later a quarter is back.
        u.admit(t0 + Duration::from_secs(16), &stats(1, &[]), chunk)
            .unwrap();
    }

    #[test]
    fn client_ids_belong_to_the_first_sender_unless_it_is_the_same_user() {
        let (alice, mallory) = (Uuid::new_v4(), Uuid::new_v4());
        let (a1, a2, m): (ConnId, ConnId, ConnId) = ("a1".into(), "a2".into(), "m".into());
        let sv = StateVector::default();
        let mut o = Owners::default();
        o.check_and_claim(&a1, alice, &stats(1, &[(7, 3)]), &sv, |_| Some(&[][..]))
            .unwrap();
        let e = o
            .check_and_claim(&m, mallory, &stats(1, &[(7, 5)]), &sv, |_| Some(&[][..]))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidUpdate);
        // Alice's reconnected tab (same user, new connection) keeps writing under it.
        o.check_and_claim(&a2, alice, &stats(1, &[(7, 5)]), &sv, |_| Some(&[][..]))
            .unwrap();
        // Structs the document already has are not new: relaying them claims nothing.
        let mut has = StateVector::default();
        has.set_max(yrs::block::ClientID::new(7), 5);
        o.check_and_claim(&m, mallory, &stats(1, &[(7, 5)]), &has, |_| Some(&[][..]))
            .unwrap();
        // Once the owner is gone, the id is free.
        o.release(&a2);
        o.check_and_claim(&m, mallory, &stats(1, &[(7, 9)]), &sv, |_| Some(&[][..]))
            .unwrap();
    }

    #[test]
    fn the_author_takes_over_its_id_from_a_client_that_relayed_its_edits() {
        let (ann, bob, mallory) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let (a, b, m): (ConnId, ConnId, ConnId) = ("a".into(), "b".into(), "m".into());
        let sv = StateVector::default();
        // Ann's awareness announced 7, Bob's 8, Mallory's 9.
        let conns = |c: &ConnId| -> Option<&'static [u64]> {
            match &**c {
                "a" => Some(&[7]),
                "b" => Some(&[8]),
                "m" => Some(&[9]),
                _ => None,
            }
        };
        // Bob's resync re-sends Ann's edits the hub lost (with his own): he claims 7 first.
        let mut o = Owners::default();
        o.check_and_claim(&b, bob, &stats(1, &[(7, 3), (8, 2)]), &sv, conns)
            .unwrap();
        // Ann's new edits under 7 are hers (her awareness says so, Bob's does not).
        o.check_and_claim(&a, ann, &stats(1, &[(7, 6)]), &sv, conns)
            .unwrap();
        // And the id is hers now: Bob's or Mallory's new structs under it are refused.
        for (c, u) in [(&b, bob), (&m, mallory)] {
            let e = o
                .check_and_claim(c, u, &stats(1, &[(7, 9)]), &sv, conns)
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidUpdate);
        }
        // Announcing someone else's id takes nothing from a connection that announced it too.
        let both = |c: &ConnId| -> Option<&'static [u64]> {
            match &**c {
                "a" | "m" => Some(&[7]),
                _ => None,
            }
        };
        let e = o
            .check_and_claim(&m, mallory, &stats(1, &[(7, 12)]), &sv, both)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidUpdate);
        // Without the awareness, the first claim stands (as before).
        let none = |c: &ConnId| -> Option<&'static [u64]> { (&**c != "x").then_some(&[][..]) };
        let mut o = Owners::default();
        o.check_and_claim(&b, bob, &stats(1, &[(7, 3)]), &sv, none)
            .unwrap();
        let e = o
            .check_and_claim(&a, ann, &stats(1, &[(7, 6)]), &sv, none)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidUpdate);
    }
}
