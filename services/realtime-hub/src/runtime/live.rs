//! One live interview in the runtime: its core under a lock, the connections it serves, and the
//! executor of the core's effects.
//!
//! Every input takes the lock, reads the clock, runs the core and executes the effects in order
//! before releasing the lock — sends, broadcasts, acks, publishes and writes only queue, so
//! nothing re-enters the core while it is held. The one effect that can re-enter (closing a
//! connection runs its disconnect handler, which leaves the interview) is executed after the lock
//! is released.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use duet_domain::SessionCode;
use duet_storage::NewUpdate;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::services::Services;
use super::writer::WriteItem;
use crate::error::HubError;
use crate::interview::presence::Local;
use crate::interview::{
    AckToken, Audience, Closed, Command, ConnId, Effect, Effects, Interview, Joiner,
};
use crate::relay;
use crate::transport::{AckFn, ConnSink};

/// A connection this interview serves, and the replies it is owed.
struct Peer {
    sink: Arc<dyn ConnSink>,
    acks: HashMap<u64, AckFn>,
    next_ack: u64,
}

struct Shell {
    core: Interview,
    peers: HashMap<ConnId, Peer>,
    /// The effects buffer, kept between inputs (no allocation per keystroke).
    scratch: Effects,
}

/// The transport rooms of one interview, one per [`Audience`].
struct Rooms([String; 3]);

impl Rooms {
    fn new(id: Uuid) -> Self {
        Self([
            format!("i:{id}"),
            format!("i:{id}:yjs"),
            format!("i:{id}:seed"),
        ])
    }
    fn of(&self, a: Audience) -> &str {
        match a {
            Audience::Everyone => &self.0[0],
            Audience::Editors => &self.0[1],
            Audience::Seed => &self.0[2],
        }
    }
}

pub struct Live {
    pub id: Uuid,
    pub code: SessionCode,
    pub channel: Arc<str>,
    rooms: Rooms,
    shell: Mutex<Shell>,
    pub(crate) services: Arc<Services>,
    /// Wakes the worker (presence changed, snapshot due, unload possible, …).
    pub wake: Notify,
    pub cancel: CancellationToken,
}

impl Live {
    pub(crate) fn new(services: Arc<Services>, core: Interview) -> Arc<Self> {
        Arc::new(Self {
            id: core.id,
            code: core.code.clone(),
            channel: relay::channel(core.id).into(),
            rooms: Rooms::new(core.id),
            shell: Mutex::new(Shell {
                core,
                peers: HashMap::new(),
                scratch: Effects::new(),
            }),
            cancel: services.cancel.child_token(),
            services,
            wake: Notify::new(),
        })
    }

    /// Reads the core (no input, no effects).
    pub fn read<R>(&self, f: impl FnOnce(&Interview) -> R) -> R {
        f(&self.shell.lock().core)
    }

    /// Runs one input of the core with the current time and executes its effects.
    pub fn run<R>(&self, f: impl FnOnce(&mut Interview, Instant, &mut Effects) -> R) -> R {
        self.run_with(None, |core, now, fx, _| f(core, now, fx))
    }

    /// The writer committed this interview's writes up to `upto`: the commit notice for the other
    /// hubs goes into `notices`, to be sent with those of the batch's other interviews.
    pub(crate) fn committed(
        &self,
        upto: u64,
        count: u64,
        notices: &mut Vec<(Uuid, u64, Vec<String>)>,
    ) {
        let mut shell = self.shell.lock();
        let mut fx = std::mem::take(&mut shell.scratch);
        shell
            .core
            .on_committed(Instant::now(), upto, count, &mut fx);
        let closing = self.execute(&mut shell, &mut fx, Some(notices));
        shell.scratch = fx;
        drop(shell);
        Self::close_all(closing);
    }

    fn run_with<R>(
        &self,
        peer: Option<(&ConnId, &mut Option<AckFn>)>,
        f: impl FnOnce(&mut Interview, Instant, &mut Effects, Option<AckToken>) -> R,
    ) -> R {
        let mut shell = self.shell.lock();
        let token = match peer {
            Some((conn, ack)) => match (ack.take(), shell.peers.get_mut(conn)) {
                (Some(a), Some(p)) => {
                    p.next_ack += 1;
                    p.acks.insert(p.next_ack, a);
                    Some(AckToken {
                        conn: conn.clone(),
                        id: p.next_ack,
                    })
                }
                (a, _) => {
                    *ack = a;
                    None
                }
            },
            None => None,
        };
        let mut fx = std::mem::take(&mut shell.scratch);
        let r = f(&mut shell.core, Instant::now(), &mut fx, token);
        let closing = self.execute(&mut shell, &mut fx, None);
        shell.scratch = fx;
        drop(shell);
        Self::close_all(closing);
        r
    }

    /// A client command from a joined connection. On refusal the error comes back with the ack
    /// (not yet answered), for the edge to refuse.
    pub(crate) fn client(
        &self,
        conn: &ConnId,
        ack: Option<AckFn>,
        make: impl FnOnce(Option<AckToken>) -> Command,
    ) -> Result<(), (HubError, Option<AckFn>)> {
        let mut ack = ack;
        let mut token_used = None;
        let r = self.run_with(Some((conn, &mut ack)), |core, now, fx, token| {
            token_used = token.clone();
            core.on_client(now, conn, make(token), fx)
        });
        match r {
            Ok(()) => Ok(()),
            Err(e) => {
                // The core did not keep the token: take the ack back to refuse it.
                let back = match token_used {
                    Some(t) => self
                        .shell
                        .lock()
                        .peers
                        .get_mut(conn)
                        .and_then(|p| p.acks.remove(&t.id)),
                    None => ack,
                };
                Err((e, back))
            }
        }
    }

    /// Admits a connection (see [`Interview::admit`]). `on_admitted` runs first, under the lock:
    /// the connection must know it joined before the client can act on the ack.
    pub(crate) fn admit(
        &self,
        sink: Arc<dyn ConnSink>,
        joiner: Joiner,
        ack: Option<AckFn>,
        on_admitted: impl FnOnce(),
    ) -> Result<(), Option<AckFn>> {
        let conn = sink.id().clone();
        let mut shell = self.shell.lock();
        let mut peer = Peer {
            sink,
            acks: HashMap::new(),
            next_ack: 0,
        };
        let token = ack.map(|a| {
            peer.next_ack = 1;
            peer.acks.insert(1, a);
            AckToken {
                conn: conn.clone(),
                id: 1,
            }
        });
        shell.peers.insert(conn.clone(), peer);
        let mut fx = std::mem::take(&mut shell.scratch);
        match shell.core.admit(&conn, joiner, token, &mut fx) {
            Ok(()) => {
                on_admitted();
                let closing = self.execute(&mut shell, &mut fx, None);
                shell.scratch = fx;
                drop(shell);
                Self::close_all(closing);
                Ok(())
            }
            Err(Closed) => {
                shell.scratch = fx;
                let peer = shell.peers.remove(&conn);
                Err(peer.and_then(|mut p| p.acks.remove(&1)))
            }
        }
    }

    /// Removes a connection; returns its record (for the participants row).
    pub(crate) fn leave(&self, conn: &ConnId) -> Option<Local> {
        let mut shell = self.shell.lock();
        let mut fx = std::mem::take(&mut shell.scratch);
        let local = shell.core.leave(Instant::now(), conn, &mut fx);
        let closing = self.execute(&mut shell, &mut fx, None);
        shell.scratch = fx;
        shell.peers.remove(conn);
        drop(shell);
        Self::close_all(closing);
        local
    }

    /// Executes effects in order; returns the connections to close once the lock is released.
    fn execute(
        &self,
        shell: &mut Shell,
        fx: &mut Effects,
        mut notices: Option<&mut Vec<(Uuid, u64, Vec<String>)>>,
    ) -> Vec<Arc<dyn ConnSink>> {
        let mut closing = Vec::new();
        for e in fx.drain() {
            match e {
                Effect::Emit { to, event, payload } => {
                    if let Some(p) = shell.peers.get(&to) {
                        p.sink.emit(event, payload);
                    }
                }
                Effect::Broadcast {
                    to,
                    except,
                    event,
                    payload,
                } => {
                    self.services
                        .out
                        .broadcast(self.rooms.of(to), except.as_ref(), event, payload)
                }
                Effect::Ack { token, result } => {
                    let ack = shell
                        .peers
                        .get_mut(&token.conn)
                        .and_then(|p| p.acks.remove(&token.id));
                    if let Some(ack) = ack {
                        ack(result);
                    }
                }
                Effect::Enter { conn, audience } => {
                    if let Some(p) = shell.peers.get(&conn) {
                        p.sink.join(self.rooms.of(audience));
                    }
                }
                Effect::Exit { conn, audience } => {
                    if let Some(p) = shell.peers.get(&conn) {
                        p.sink.leave(self.rooms.of(audience));
                    }
                }
                Effect::Disconnect(conn) => {
                    if let Some(p) = shell.peers.get(&conn) {
                        closing.push(p.sink.clone());
                    }
                }
                Effect::Publish(msg) => {
                    if !self.services.publish(&self.channel, msg) {
                        shell.core.publish_dropped();
                    }
                }
                Effect::CommitNotice { upto, hubs } => match notices.as_deref_mut() {
                    Some(n) => n.push((self.id, upto, hubs)),
                    None => self
                        .services
                        .send_commit_notices(vec![(self.id, upto, hubs)]),
                },
                Effect::Write {
                    write_id,
                    author,
                    data,
                } => self.services.write(WriteItem {
                    session: self.id,
                    write_id,
                    update: NewUpdate {
                        session_id: self.id,
                        author,
                        data,
                    },
                }),
                Effect::Wake => self.wake.notify_one(),
            }
        }
        closing
    }

    fn close_all(closing: Vec<Arc<dyn ConnSink>>) {
        for sink in closing {
            sink.disconnect();
        }
    }

    /// The current text and language (tests, REST text saves).
    pub fn snapshot_text(&self) -> (String, duet_domain::Language) {
        self.read(|c| (c.text(), c.language()))
    }

    /// Connected users across all hubs.
    pub fn participant_count(&self) -> usize {
        self.read(Interview::participant_count)
    }

    /// Bus subscription wanted: the interview has local participants.
    pub fn has_locals(&self) -> bool {
        self.read(|c| c.local_count() > 0)
    }

    /// The full document state (tests).
    pub fn encode_state(&self) -> Vec<u8> {
        self.read(Interview::encode_state)
    }

    /// The ids of a connection's pending replies (tests).
    #[doc(hidden)]
    pub fn pending_acks(&self, conn: &ConnId) -> usize {
        self.shell
            .lock()
            .peers
            .get(conn)
            .map_or(0, |p| p.acks.len())
    }
}
