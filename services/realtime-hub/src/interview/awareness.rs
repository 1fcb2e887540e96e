//! Awareness (y-protocols): each Yjs client's ephemeral state — name, colour, cursor, selection — as
//! a JSON string with a logical clock. The hub keeps the states of one document to hand them to
//! joiners, relays updates as they come, and drops the states of connections that leave.
//!
//! Kept here rather than with yrs' `Awareness` so that time is an input (the core reads no clock),
//! states are validated before they are relayed (a state that is not JSON would make every later
//! joiner's decoder throw), and an idle interview costs one small map.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// One client's entry in an awareness update; `json` is `"null"` when the state is removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub client: u64,
    pub clock: u32,
    pub json: Arc<str>,
}

/// An awareness update: the body of a y-protocols `messageAwareness`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AwarenessUpdate {
    pub entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AwarenessError {
    #[error("truncated awareness update")]
    Truncated,
    #[error("awareness state is not JSON")]
    NotJson,
    #[error("awareness client id over 53 bits")]
    ClientId,
}

const NULL: &str = "null";

impl Entry {
    pub fn is_removal(&self) -> bool {
        &*self.json == NULL
    }
}

fn read_var(buf: &[u8], pos: &mut usize) -> Result<u64, AwarenessError> {
    let mut value: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos).ok_or(AwarenessError::Truncated)?;
        *pos += 1;
        if shift >= 63 && b > 1 {
            return Err(AwarenessError::Truncated);
        }
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
}

fn write_var(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Largest client id Yjs creates (`Number.MAX_SAFE_INTEGER`): anything above cannot be a browser's.
const MAX_CLIENT_ID: u64 = (1 << 53) - 1;

impl AwarenessUpdate {
    /// Decodes and validates an update: every entry complete, every state JSON (or `null`). The
    /// entry count is checked against the bytes present before anything is allocated for it.
    pub fn decode(buf: &[u8]) -> Result<Self, AwarenessError> {
        let mut pos = 0;
        let count = read_var(buf, &mut pos)?;
        // Each entry takes at least three bytes (client, clock, empty string).
        if count > (buf.len() - pos) as u64 / 3 {
            return Err(AwarenessError::Truncated);
        }
        let mut entries = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let client = read_var(buf, &mut pos)?;
            if client > MAX_CLIENT_ID {
                return Err(AwarenessError::ClientId);
            }
            let clock =
                u32::try_from(read_var(buf, &mut pos)?).map_err(|_| AwarenessError::Truncated)?;
            let len =
                usize::try_from(read_var(buf, &mut pos)?).map_err(|_| AwarenessError::Truncated)?;
            let end = pos.checked_add(len).ok_or(AwarenessError::Truncated)?;
            let raw = buf.get(pos..end).ok_or(AwarenessError::Truncated)?;
            pos = end;
            let json = std::str::from_utf8(raw).map_err(|_| AwarenessError::NotJson)?;
            if serde_json::from_str::<serde::de::IgnoredAny>(json).is_err() {
                return Err(AwarenessError::NotJson);
            }
            entries.push(Entry {
                client,
                clock,
                json: json.into(),
            });
        }
        if pos != buf.len() {
            return Err(AwarenessError::Truncated);
        }
        Ok(Self { entries })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            4 + self
                .entries
                .iter()
                .map(|e| e.json.len() + 12)
                .sum::<usize>(),
        );
        write_var(&mut out, self.entries.len() as u64);
        for e in &self.entries {
            write_var(&mut out, e.client);
            write_var(&mut out, u64::from(e.clock));
            write_var(&mut out, e.json.len() as u64);
            out.extend_from_slice(e.json.as_bytes());
        }
        out
    }
}

#[derive(Debug)]
struct Meta {
    clock: u32,
    /// `None` once removed (the clock is remembered so an older update cannot bring it back).
    state: Option<Arc<str>>,
    updated: Instant,
}

/// The awareness states of one document.
#[derive(Debug, Default)]
pub struct Awareness {
    meta: HashMap<u64, Meta>,
}

impl Awareness {
    /// Applies an update as y-protocols does: an entry wins if its clock is newer, or equal and it
    /// removes a present state.
    pub fn apply(&mut self, update: &AwarenessUpdate, now: Instant) {
        for e in &update.entries {
            let (current, present) = self
                .meta
                .get(&e.client)
                .map_or((0, false), |m| (m.clock, m.state.is_some()));
            if current < e.clock || (current == e.clock && e.is_removal() && present) {
                self.meta.insert(
                    e.client,
                    Meta {
                        clock: e.clock,
                        state: (!e.is_removal()).then(|| e.json.clone()),
                        updated: now,
                    },
                );
            }
        }
    }

    /// Every present state (what a joiner is sent), or `None` if there is none.
    pub fn full(&self) -> Option<AwarenessUpdate> {
        let entries: Vec<Entry> = self
            .meta
            .iter()
            .filter_map(|(&client, m)| {
                Some(Entry {
                    client,
                    clock: m.clock,
                    json: m.state.clone()?,
                })
            })
            .collect();
        (!entries.is_empty()).then_some(AwarenessUpdate { entries })
    }

    /// Removes states; returns the update that tells the others (clocks bumped, states `null`), or
    /// `None` if none of them was present.
    pub fn remove(&mut self, clients: &[u64], now: Instant) -> Option<AwarenessUpdate> {
        let mut entries = Vec::new();
        for client in clients {
            if let Some(m) = self.meta.get_mut(client) {
                if m.state.take().is_some() {
                    m.clock = m.clock.saturating_add(1);
                    m.updated = now;
                    entries.push(Entry {
                        client: *client,
                        clock: m.clock,
                        json: NULL.into(),
                    });
                }
            }
        }
        (!entries.is_empty()).then_some(AwarenessUpdate { entries })
    }

    /// Drops, without telling anyone, present states not renewed since `before` for which `keep`
    /// says no (clients of a dead hub; their own browsers time them out the same way).
    pub fn purge(&mut self, before: Instant, keep: impl Fn(u64) -> bool) {
        for (client, m) in self.meta.iter_mut() {
            if m.state.is_some() && m.updated < before && !keep(*client) {
                m.state = None;
            }
        }
    }

    /// Whether a client has a present state.
    pub fn has(&self, client: u64) -> bool {
        self.meta.get(&client).is_some_and(|m| m.state.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use yrs::updates::decoder::Decode;
    use yrs::updates::encoder::Encode;

    fn update(entries: &[(u64, u32, &str)]) -> AwarenessUpdate {
        AwarenessUpdate {
            entries: entries
                .iter()
                .map(|&(client, clock, json)| Entry {
                    client,
                    clock,
                    json: json.into(),
                })
                .collect(),
        }
    }

    #[test]
    fn round_trips_and_matches_the_yrs_encoding() {
        let u = update(&[(7, 3, r#"{"user":{"name":"Ada"}}"#)]);
        let bytes = u.encode();
        assert_eq!(AwarenessUpdate::decode(&bytes).unwrap(), u);
        let theirs = yrs::sync::AwarenessUpdate::decode_v1(&bytes).unwrap();
        assert_eq!(theirs.encode_v1(), bytes);
    }

    #[test]
    fn refuses_states_that_are_not_json_and_impossible_counts() {
        let bad = update(&[(7, 1, "{not json")]).encode();
        assert_eq!(
            AwarenessUpdate::decode(&bad).unwrap_err(),
            AwarenessError::NotJson
        );
        // A count of a million entries in five bytes.
        assert_eq!(
            AwarenessUpdate::decode(&[0xc0, 0x84, 0x3d, 0, 0]).unwrap_err(),
            AwarenessError::Truncated
        );
        let mut trailing = update(&[(7, 1, "{}")]).encode();
        trailing.push(0);
        assert!(AwarenessUpdate::decode(&trailing).is_err());
        assert_eq!(
            AwarenessUpdate::decode(&update(&[(1 << 60, 1, "{}")]).encode()).unwrap_err(),
            AwarenessError::ClientId
        );
    }

    #[test]
    fn newer_clocks_win_and_removals_are_not_undone_by_old_updates() {
        let t0 = Instant::now();
        let mut a = Awareness::default();
        a.apply(&update(&[(1, 2, r#"{"c":2}"#)]), t0);
        a.apply(&update(&[(1, 1, r#"{"c":1}"#)]), t0);
        assert_eq!(&*a.full().unwrap().entries[0].json, r#"{"c":2}"#);
        let removal = a.remove(&[1], t0).unwrap();
        assert_eq!(removal.entries[0].clock, 3);
        assert!(removal.entries[0].is_removal());
        assert!(a.full().is_none());
        a.apply(&update(&[(1, 2, r#"{"c":2}"#)]), t0);
        assert!(
            !a.has(1),
            "a stale update must not bring a removed state back"
        );
        assert!(a.remove(&[1], t0).is_none());
        // A removal at the same clock removes.
        a.apply(&update(&[(2, 5, "{}")]), t0);
        a.apply(&update(&[(2, 5, "null")]), t0);
        assert!(!a.has(2));
    }

    #[test]
    fn purge_drops_stale_states_except_kept_ones() {
        let t0 = Instant::now();
        let mut a = Awareness::default();
        a.apply(&update(&[(1, 1, "{}"), (2, 1, "{}")]), t0);
        a.apply(&update(&[(3, 1, "{}")]), t0 + Duration::from_secs(20));
        a.purge(t0 + Duration::from_secs(10), |c| c == 2);
        assert!(!a.has(1) && a.has(2) && a.has(3));
    }
}
