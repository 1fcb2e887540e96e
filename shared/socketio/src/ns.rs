//! Namespaces, rooms and broadcast.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use duet_sio_codec::sio::Encoded;
use duet_sio_codec::Payload;
use parking_lot::RwLock;

use crate::handler::ConnectHandler;
use crate::socket::frames;
use crate::Socket;

/// Room name → members.
type Rooms = HashMap<Arc<str>, HashMap<Arc<str>, Socket>>;

pub(crate) struct Namespace {
    pub(crate) path: Arc<str>,
    pub(crate) on_connect: ConnectHandler,
    sockets: RwLock<HashMap<Arc<str>, Socket>>,
    rooms: RwLock<Rooms>,
}

impl Namespace {
    pub(crate) fn new(path: Arc<str>, on_connect: ConnectHandler) -> Self {
        Namespace {
            path,
            on_connect,
            sockets: RwLock::new(HashMap::new()),
            rooms: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn add_socket(&self, socket: Socket) {
        self.sockets.write().insert(socket.id_arc().clone(), socket);
    }

    pub(crate) fn remove_socket(&self, id: &str) {
        self.sockets.write().remove(id);
    }

    pub(crate) fn add_to_room(&self, room: Arc<str>, socket: Socket) {
        self.rooms
            .write()
            .entry(room)
            .or_default()
            .insert(socket.id_arc().clone(), socket);
    }

    pub(crate) fn remove_from_room(&self, room: &str, id: &str) {
        let mut rooms = self.rooms.write();
        if let Some(members) = rooms.get_mut(room) {
            members.remove(id);
            if members.is_empty() {
                rooms.remove(room);
            }
        }
    }

    fn socket(&self, id: &str) -> Option<Socket> {
        self.sockets.read().get(id).cloned()
    }

    fn count(&self) -> usize {
        self.sockets.read().len()
    }

    fn room_len(&self, room: &str) -> usize {
        self.rooms.read().get(room).map_or(0, HashMap::len)
    }

    /// Members of the given rooms (all sockets if none), minus the exceptions, collected under
    /// the lock and returned without it, so sending never happens while a lock is held.
    fn select(&self, rooms: &[String], except: &[String]) -> Vec<Socket> {
        let keep = |s: &&Socket| !except.iter().any(|e| e == s.id());
        match rooms {
            [] => self.sockets.read().values().filter(keep).cloned().collect(),
            [room] => self
                .rooms
                .read()
                .get(room.as_str())
                .map(|m| m.values().filter(keep).cloned().collect())
                .unwrap_or_default(),
            _ => {
                let all = self.rooms.read();
                let mut seen = HashSet::new();
                rooms
                    .iter()
                    .filter_map(|r| all.get(r.as_str()))
                    .flat_map(|m| m.values())
                    .filter(keep)
                    .filter(|s| seen.insert(s.id_arc().clone()))
                    .cloned()
                    .collect()
            }
        }
    }
}

/// Selects recipients in one namespace, then emits to all of them.
///
/// The packet is encoded once and every recipient gets the same bytes (shared, not copied). A
/// recipient whose queue is full is disconnected as too slow; the others still get it.
#[derive(Clone)]
pub struct BroadcastOperator {
    ns: Option<Arc<Namespace>>,
    rooms: Vec<String>,
    except: Vec<String>,
}

impl BroadcastOperator {
    pub(crate) fn new(ns: Option<Arc<Namespace>>) -> Self {
        BroadcastOperator {
            ns,
            rooms: Vec::new(),
            except: Vec::new(),
        }
    }

    /// Adds a room: recipients are the members of any of the rooms given.
    #[must_use]
    pub fn to(mut self, room: impl Into<String>) -> Self {
        self.rooms.push(room.into());
        self
    }

    /// Leaves out one socket (by id).
    #[must_use]
    pub fn except(mut self, socket_id: impl Into<String>) -> Self {
        self.except.push(socket_id.into());
        self
    }

    /// The selected sockets.
    pub fn sockets(&self) -> Vec<Socket> {
        self.ns
            .as_ref()
            .map(|ns| ns.select(&self.rooms, &self.except))
            .unwrap_or_default()
    }

    /// Number of selected sockets.
    pub fn count(&self) -> usize {
        self.sockets().len()
    }

    /// Emits `event` to the selected sockets; returns how many it was queued for.
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) -> usize {
        let Some(ns) = &self.ns else { return 0 };
        let recipients = ns.select(&self.rooms, &self.except);
        if recipients.is_empty() {
            return 0;
        }
        let frames = frames(Encoded::event(&ns.path, event, &payload.into(), None, true));
        recipients
            .iter()
            .filter(|s| s.send_frames(&frames).is_ok())
            .count()
    }
}

/// A registered namespace, for server-side lookups and broadcasts.
#[derive(Clone)]
pub struct NamespaceRef {
    pub(crate) ns: Arc<Namespace>,
}

impl NamespaceRef {
    /// The namespace's path.
    pub fn path(&self) -> &str {
        &self.ns.path
    }

    /// Members of `room`.
    pub fn to(&self, room: impl Into<String>) -> BroadcastOperator {
        BroadcastOperator::new(Some(self.ns.clone())).to(room)
    }

    /// All sockets of the namespace.
    pub fn all(&self) -> BroadcastOperator {
        BroadcastOperator::new(Some(self.ns.clone()))
    }

    /// Emits to every socket of the namespace.
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) -> usize {
        self.all().emit(event, payload)
    }

    /// Number of sockets in `room`.
    pub fn sockets_in(&self, room: &str) -> usize {
        self.ns.room_len(room)
    }

    /// Number of connected sockets.
    pub fn socket_count(&self) -> usize {
        self.ns.count()
    }

    /// A socket by id.
    pub fn socket(&self, id: &str) -> Option<Socket> {
        self.ns.socket(id)
    }
}
