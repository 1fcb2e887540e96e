//! One live interview in the runtime: its core under a lock, the connections it serves, and the
//! executor of the core's effects.
//!
//! Every input takes the lock, reads the clock, runs the core and executes the effects in order
//! before releasing the lock — sends, broadcasts, acks, publishes and writes only queue, so
//! nothing re-enters the core while it is held. The one effect that can re-enter (closing a
//! connection runs its disconnect handler, which leaves the interview) is executed after the lock
//! is released.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

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
use crate::interview::protocol::ClientMessage;
use crate::interview::{
    AckToken, Audience, Closed, Command, ConnId, Effect, Effects, Interview, Joiner,
};
use crate::limits::{INTEGRATION_BUDGET_BURST, INTEGRATION_BUDGET_PER_SEC};
use duet_bus::relay;

/// A step of staged integration that took longer than this halves the next one's size.
const STEP_SLOW: Duration = Duration::from_millis(4);
/// One that took less doubles it.
const STEP_QUICK: Duration = Duration::from_millis(1);
/// Most pieces (structs) integrated in one step.
const MAX_STEP_PIECES: usize = 256;
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
    budget: Budget,
    /// A task is integrating the staged updates.
    draining: bool,
}

/// The event-loop time this interview's document work may still take (see
/// [`INTEGRATION_BUDGET_PER_SEC`]): a token bucket of seconds.
struct Budget {
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn new(now: Instant) -> Self {
        Self {
            tokens: INTEGRATION_BUDGET_BURST.as_secs_f64(),
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let rate = INTEGRATION_BUDGET_PER_SEC.as_secs_f64();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate)
            .min(INTEGRATION_BUDGET_BURST.as_secs_f64());
        self.at = now;
    }

    /// Spent: integration should wait.
    fn exhausted(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens <= 0.0
    }

    fn spend(&mut self, took: Duration) {
        self.tokens -= took.as_secs_f64();
    }

    /// How long until there is budget again.
    fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens > 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / INTEGRATION_BUDGET_PER_SEC.as_secs_f64())
        }
    }
}

/// The transport rooms of one interview, one per [`Audience`].
struct Rooms([String; 4]);

impl Rooms {
    fn new(id: Uuid) -> Self {
        Self([
            format!("i:{id}"),
            format!("i:{id}:yjs"),
            format!("i:{id}:seed"),
            format!("i:{id}:interviewers"),
        ])
    }
    fn of(&self, a: Audience) -> &str {
        match a {
            Audience::Everyone => &self.0[0],
            Audience::Editors => &self.0[1],
            Audience::Seed => &self.0[2],
            Audience::Interviewers => &self.0[3],
        }
    }
}

pub struct Live {
    me: Weak<Live>,
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
        let now = Instant::now();
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            id: core.id,
            code: core.code.clone(),
            channel: relay::channel(core.id).into(),
            rooms: Rooms::new(core.id),
            shell: Mutex::new(Shell {
                core,
                peers: HashMap::new(),
                scratch: Effects::new(),
                budget: Budget::new(now),
                draining: false,
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
        let token = peer.and_then(|(conn, ack)| Self::register_ack(&mut shell, conn, ack));
        let mut fx = std::mem::take(&mut shell.scratch);
        let r = f(&mut shell.core, Instant::now(), &mut fx, token);
        let closing = self.execute(&mut shell, &mut fx, None);
        shell.scratch = fx;
        drop(shell);
        Self::close_all(closing);
        r
    }

    /// Keeps a reply for a connection of this interview under a new token (the reply stays with
    /// the caller if the connection is not here).
    fn register_ack(shell: &mut Shell, conn: &ConnId, ack: &mut Option<AckFn>) -> Option<AckToken> {
        let p = shell.peers.get_mut(conn)?;
        let a = ack.take()?;
        p.next_ack += 1;
        p.acks.insert(p.next_ack, a);
        Some(AckToken {
            conn: conn.clone(),
            id: p.next_ack,
        })
    }

    /// A client command from a joined connection. `make` gets the ack's token and whether the
    /// interview is over its integration budget (its updates are then staged). The time the
    /// command takes is charged to the budget. On refusal the error comes back with the ack (not
    /// yet answered), for the edge to refuse. An edit handed to the other participants at once (not
    /// staged) is timed from here to its broadcast being queued (`duet_hub_edit_delivery_seconds`).
    pub(crate) fn client(
        &self,
        conn: &ConnId,
        ack: Option<AckFn>,
        make: impl FnOnce(Option<AckToken>, bool) -> Command,
    ) -> Result<(), (HubError, Option<AckFn>)> {
        let received = Instant::now();
        let mut ack = ack;
        let mut shell = self.shell.lock();
        let now = Instant::now();
        let token = Self::register_ack(&mut shell, conn, &mut ack);
        let defer = shell.budget.exhausted(now);
        let mut fx = std::mem::take(&mut shell.scratch);
        let cmd = make(token.clone(), defer);
        let edit = is_edit(&cmd);
        // With tracing on, an edit is a span; its context goes with the edit to the other hubs
        // (`publish_effect`). Off, `Span::none()` costs nothing.
        let span = if edit && duet_telemetry::trace::enabled() {
            tracing::info_span!("hub.edit", interview = %self.id)
        } else {
            tracing::Span::none()
        };
        let _entered = span.enter();
        let r = shell.core.on_client(now, conn, cmd, &mut fx);
        // The core's own work is charged (sending to the participants is the same for any edit).
        shell.budget.spend(now.elapsed());
        let delivers = edit && fx.iter().any(delivers_edit);
        let closing = self.execute(&mut shell, &mut fx, None);
        if delivers {
            self.services
                .stats
                .delivery_latency
                .observe(received.elapsed());
        }
        shell.scratch = fx;
        let r = r.map_err(|e| {
            // The core did not keep the token: take the reply back to refuse it.
            let back = match token {
                Some(t) => shell.peers.get_mut(conn).and_then(|p| p.acks.remove(&t.id)),
                None => ack,
            };
            (e, back)
        });
        drop(shell);
        Self::close_all(closing);
        r
    }

    /// Integrates the staged updates a few structs at a time, within the interview's budget,
    /// yielding to the rest of the hub between steps. Runs while there are any.
    async fn drain(self: Arc<Self>) {
        // Structs per step: doubled while steps are quick, halved when one takes long, so a step
        // stays around a millisecond or two whatever one struct costs.
        let mut per_step = 8usize;
        loop {
            let wait = self.shell.lock().budget.wait(Instant::now());
            if wait.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            if self.cancel.is_cancelled() {
                return;
            }
            let mut shell = self.shell.lock();
            let now = Instant::now();
            let mut fx = std::mem::take(&mut shell.scratch);
            let more = shell.core.step(now, per_step, &mut fx);
            let took = now.elapsed();
            shell.budget.spend(took);
            let closing = self.execute(&mut shell, &mut fx, None);
            shell.scratch = fx;
            if !more {
                shell.draining = false;
            }
            drop(shell);
            Self::close_all(closing);
            if !more {
                return;
            }
            per_step = if took > STEP_SLOW {
                (per_step / 2).max(1)
            } else if took < STEP_QUICK {
                (per_step * 2).min(MAX_STEP_PIECES)
            } else {
                per_step
            };
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
                    if !self.services.publish(&self.channel, self.with_trace(msg)) {
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
                    doc,
                    author,
                    data,
                } => self.services.write(WriteItem {
                    session: self.id,
                    write_id,
                    queued: std::time::Instant::now(),
                    update: NewUpdate {
                        session_id: self.id,
                        doc,
                        author,
                        data,
                    },
                }),
                Effect::Wake => self.wake.notify_one(),
                Effect::Staged => {
                    if !shell.draining {
                        if let Some(me) = self.me.upgrade() {
                            shell.draining = true;
                            self.services.tracker.spawn(me.drain());
                        }
                    }
                }
            }
        }
        closing
    }

    /// An edit published while tracing is on goes with the context of the span that made it (the
    /// current one: [`Live::client`]'s), for the receiving hubs' spans to continue the trace.
    fn with_trace(&self, msg: bytes::Bytes) -> bytes::Bytes {
        if !duet_telemetry::trace::enabled() || !relay::is_update(&msg) {
            return msg;
        }
        match duet_telemetry::trace::ids(&tracing::Span::current()) {
            Some((trace_id, span_id, sampled)) => relay::traced(
                &self.services.hub_id,
                &relay::TraceContext {
                    trace_id,
                    span_id,
                    sampled,
                },
                msg,
            ),
            None => msg,
        }
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

/// A client command that may change a document: a Yjs update, or a seed client's text.
fn is_edit(cmd: &Command) -> bool {
    match cmd {
        Command::Yjs { msgs, .. } => msgs
            .iter()
            .any(|m| matches!(m, ClientMessage::Update { .. })),
        Command::CodeChange { .. } => true,
        _ => false,
    }
}

/// An effect that hands an edit to the other local participants: a document's update to its
/// audience, or the new text to seed clients.
fn delivers_edit(e: &Effect) -> bool {
    matches!(
        e,
        Effect::Broadcast {
            event: "yjs" | "notes" | "code_updated",
            ..
        }
    )
}
