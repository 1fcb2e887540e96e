//! Who is in an interview: this hub's participants (one entry per connection), the participants
//! other hubs report, and which other hubs share the interview. Changes are announced as
//! `user_joined` / `user_left` by comparing the set of users before and after.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::effects::{Audience, ConnId, Effects, Outgoing};
use duet_bus::relay::BusMessage;

/// Cursor and avatar colours (one palette for the hub and the session-API, in `duet_domain`). A
/// user without a token gets its colour from its stable id, so it stays the same across reconnects
/// and hubs.
pub use duet_domain::PALETTE;

/// The colour of a user.
pub fn color_for(user_id: Uuid) -> &'static str {
    let n = user_id.as_u128();
    PALETTE[(n ^ (n >> 64)) as usize % PALETTE.len()]
}

/// A participant as others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub user_id: Uuid,
    pub name: String,
    pub color: String,
}

/// A participant connected to this hub.
#[derive(Debug, Clone)]
pub struct Local {
    pub user: UserInfo,
    /// Edits through Yjs (Duet's client); otherwise a seed-protocol client.
    pub yjs: bool,
    /// Awareness client ids this connection published (removed when it leaves).
    pub awareness_ids: Vec<u64>,
    /// The participants row (`Storage::add_participant`), and whether it is written.
    pub row_id: Uuid,
    pub row_saved: bool,
    /// A seed client as a Yjs peer: its client id and the texts its next `code_change` may be
    /// based on.
    pub seed: Option<super::seed::SeedPeer>,
    pub role: duet_domain::Role,
}

impl Local {
    /// The audience a connection of this kind belongs to besides [`Audience::Everyone`].
    pub fn audience(&self) -> Audience {
        if self.yjs {
            Audience::Editors
        } else {
            Audience::Seed
        }
    }
}

/// Participants another hub reported, until its report expires.
#[derive(Debug)]
struct RemoteHub {
    participants: Vec<UserInfo>,
    expires: Instant,
}

/// Every participant of one interview, here and on other hubs.
#[derive(Debug)]
pub struct Roster {
    pub local: HashMap<ConnId, Local>,
    remote: HashMap<String, RemoteHub>,
    /// Other hubs subscribed to this interview's channel (heard from recently), until when. Edits and
    /// awareness are published only while there is one: a lone hub does no bus I/O per keystroke,
    /// and a hub that joins later asks for the state (`SyncStep1`) before anything else.
    peers: HashMap<String, Instant>,
    /// Since when the interview has had no local participants.
    pub idle_since: Option<Instant>,
    /// Local seed-protocol participants (the whole text is computed for them only when there are).
    pub seed_count: usize,
}

impl Roster {
    pub fn new(now: Instant) -> Self {
        Self {
            local: HashMap::new(),
            remote: HashMap::new(),
            peers: HashMap::new(),
            idle_since: Some(now),
            seed_count: 0,
        }
    }

    /// Adds a local connection.
    pub fn insert(&mut self, conn: ConnId, local: Local) {
        if !local.yjs {
            self.seed_count += 1;
        }
        self.local.insert(conn, local);
        self.idle_since = None;
    }

    /// Removes a local connection.
    pub fn remove(&mut self, conn: &ConnId, now: Instant) -> Option<Local> {
        let local = self.local.remove(conn)?;
        if !local.yjs {
            self.seed_count -= 1;
        }
        if self.local.is_empty() {
            self.idle_since = Some(now);
        }
        Some(local)
    }

    /// Every user, here and elsewhere, once per user id.
    pub fn everyone(&self) -> BTreeMap<Uuid, UserInfo> {
        let mut all = BTreeMap::new();
        for l in self.local.values() {
            all.entry(l.user.user_id).or_insert_with(|| l.user.clone());
        }
        for r in self.remote.values() {
            for p in &r.participants {
                all.entry(p.user_id).or_insert_with(|| p.clone());
            }
        }
        all
    }

    /// `[{user_id, name, color}]` sorted by name.
    pub fn participants_json(all: &BTreeMap<Uuid, UserInfo>) -> Value {
        let mut list: Vec<&UserInfo> = all.values().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name).then(a.user_id.cmp(&b.user_id)));
        json!(list)
    }

    /// `user_joined` / `user_left` for the difference between two sets of users.
    pub fn announce(
        before: &BTreeMap<Uuid, UserInfo>,
        after: &BTreeMap<Uuid, UserInfo>,
        except: Option<&ConnId>,
        out: &mut Effects,
    ) {
        if before.len() == after.len() && before.keys().eq(after.keys()) {
            return;
        }
        let participants = Self::participants_json(after);
        let count = after.len();
        for (id, u) in after {
            if !before.contains_key(id) {
                let body = json!({"user_id": id, "name": u.name, "color": u.color, "count": count, "participants": participants});
                out.broadcast(
                    Audience::Everyone,
                    except,
                    "user_joined",
                    Outgoing::Json(body),
                );
            }
        }
        for (id, u) in before {
            if !after.contains_key(id) {
                let body = json!({"user_id": id, "name": u.name, "count": count, "participants": participants});
                out.broadcast(Audience::Everyone, None, "user_left", Outgoing::Json(body));
            }
        }
    }

    /// This hub's local participants, as a `Presence` bus message.
    pub fn presence_message(&self, hub_id: &str) -> Bytes {
        let mut mine: Vec<&UserInfo> = Vec::new();
        let mut seen = HashSet::new();
        for l in self.local.values() {
            if seen.insert(l.user.user_id) {
                mine.push(&l.user);
            }
        }
        let json = serde_json::to_vec(&mine).unwrap_or_default();
        BusMessage::Presence { json: json.into() }.encode(hub_id)
    }

    /// Another hub's report of its participants (an empty one removes it).
    pub fn set_remote(&mut self, origin: String, participants: Vec<UserInfo>, expires: Instant) {
        if participants.is_empty() {
            self.remote.remove(&origin);
        } else {
            self.remote.insert(
                origin,
                RemoteHub {
                    participants,
                    expires,
                },
            );
        }
    }

    pub fn has_remote(&self) -> bool {
        !self.remote.is_empty()
    }

    /// Drops reports that were not refreshed in time (a dead hub); true if any was dropped.
    pub fn expire_remote(&mut self, now: Instant) -> bool {
        self.peers.retain(|_, until| *until > now);
        if self.remote.values().all(|r| r.expires > now) {
            return false;
        }
        self.remote.retain(|_, r| r.expires > now);
        true
    }

    /// `origin` was heard from: it shares the interview until `until`.
    pub fn peer_seen(&mut self, origin: &str, until: Instant) {
        match self.peers.get_mut(origin) {
            Some(u) => *u = until,
            None => {
                self.peers.insert(origin.to_owned(), until);
            }
        }
    }

    /// Whether another hub shares the interview.
    pub fn has_peers(&self, now: Instant) -> bool {
        self.peers.values().any(|&until| until > now)
    }

    /// The other hubs sharing the interview.
    pub fn live_peers(&self, now: Instant) -> Vec<String> {
        self.peers
            .iter()
            .filter(|(_, &until)| until > now)
            .map(|(hub, _)| hub.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interview::effects::Effect;
    use std::time::Duration;

    fn user(name: &str) -> UserInfo {
        let user_id = Uuid::new_v4();
        UserInfo {
            user_id,
            name: name.into(),
            color: color_for(user_id).into(),
        }
    }

    fn local(u: &UserInfo, yjs: bool) -> Local {
        Local {
            user: u.clone(),
            yjs,
            awareness_ids: vec![],
            row_id: Uuid::new_v4(),
            row_saved: false,
            seed: None,
            role: duet_domain::Role::Candidate,
        }
    }

    #[test]
    fn colours_are_stable_and_from_the_palette() {
        let u = Uuid::new_v4();
        assert_eq!(color_for(u), color_for(u));
        assert!(PALETTE.contains(&color_for(u)));
    }

    #[test]
    fn two_tabs_of_one_user_count_once_and_leave_once() {
        let t0 = Instant::now();
        let mut r = Roster::new(t0);
        let ada = user("Ada");
        r.insert("c1".into(), local(&ada, true));
        let before = r.everyone();
        r.insert("c2".into(), local(&ada, false));
        assert_eq!(r.seed_count, 1);
        let mut out = Effects::new();
        Roster::announce(&before, &r.everyone(), None, &mut out);
        assert!(out.is_empty(), "a second tab is not a new participant");
        r.remove(&"c1".into(), t0);
        assert_eq!(r.everyone().len(), 1);
        let before = r.everyone();
        r.remove(&"c2".into(), t0 + Duration::from_secs(1));
        assert_eq!(r.idle_since, Some(t0 + Duration::from_secs(1)));
        Roster::announce(&before, &r.everyone(), None, &mut out);
        assert!(matches!(
            &out.0[..],
            [Effect::Broadcast {
                event: "user_left",
                ..
            }]
        ));
    }

    #[test]
    fn remote_reports_expire_and_peers_with_them() {
        let t0 = Instant::now();
        let mut r = Roster::new(t0);
        r.set_remote("h2".into(), vec![user("Bo")], t0 + Duration::from_secs(3));
        r.peer_seen("h2", t0 + Duration::from_secs(3));
        assert!(r.has_peers(t0) && r.has_remote());
        assert_eq!(r.live_peers(t0), vec!["h2".to_owned()]);
        assert!(!r.expire_remote(t0 + Duration::from_secs(2)));
        assert!(r.expire_remote(t0 + Duration::from_secs(4)));
        assert!(!r.has_peers(t0 + Duration::from_secs(4)) && !r.has_remote());
    }
}
