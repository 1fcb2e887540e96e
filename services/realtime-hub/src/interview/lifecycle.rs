//! Who may do what, and when: roles (interviewer, candidate), the lifecycle (waiting → live →
//! ended) and the interviewer's controls (candidate editing locked, code running off, people
//! removed). The state comes from storage when the interview loads, from the session-API or another
//! hub over the bus (`Control`), or from an interviewer's event on this hub; everyone hears
//! `interview_state` when it changes.

use std::time::Instant;

use duet_bus::relay::BusMessage;
use duet_domain::{InterviewControl, InterviewState, Role};
use serde_json::Value;
use uuid::Uuid;
use yrs::{ReadTxn, Transact, Update};

use super::scan::UpdateStats;
use super::{Audience, ConnId, Effect, Effects, Interview, Outgoing, SharedDoc};
use crate::error::{ErrorCode, HubError};

/// Something a participant asks to do that depends on their role and the interview's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Change a shared document (a Yjs update that brings something new, a seed `code_change`).
    Edit,
    /// Change the interview's language.
    Language,
    /// Share a code run.
    Run,
    /// Start or end the interview, change the controls, remove someone.
    Control,
    /// Read or write the interviewers' private notes.
    Notes,
    /// Report activity (a paste, leaving the page, coming back): anyone, until the interview ends.
    Activity,
}

/// The `interview_state` body: the control snapshot without removals (an empty list is not
/// serialised).
pub fn state_json(c: &InterviewControl) -> Value {
    serde_json::to_value(InterviewControl {
        removed: Vec::new(),
        ..c.clone()
    })
    .unwrap_or(Value::Null)
}

/// Whether `update` would change `doc`: structs beyond what it has, or deletions it has not seen.
/// A client's sync step 2 always carries its whole delete set; an ended interview must not refuse
/// that when it holds nothing new.
pub fn brings_news(doc: &SharedDoc, update: &Update, stats: &UpdateStats) -> bool {
    let txn = doc.doc.transact();
    let sv = txn.state_vector();
    if stats
        .authors
        .iter()
        .any(|&(client, end)| end > u64::from(sv.get(&yrs::block::ClientID::new(client))))
    {
        return true;
    }
    if update.delete_set().is_empty() {
        return false;
    }
    let known = txn.snapshot().delete_set;
    !update.delete_set().diff(&known).is_empty()
}

impl Interview {
    /// The interview's state and controls.
    pub fn control(&self) -> &InterviewControl {
        &self.control
    }

    /// The role of a connection of this hub (`None`: not joined).
    pub fn role_of(&self, conn: &ConnId) -> Option<Role> {
        self.roster.local.get(conn).map(|l| l.role)
    }

    /// Whether `conn` may do `action` now; the refusal is typed for the client.
    pub fn permits(&self, conn: &ConnId, action: Action) -> Result<(), HubError> {
        let role = self.role_of(conn).ok_or_else(HubError::not_joined)?;
        let c = &self.control;
        let interviewer = role == Role::Interviewer;
        match action {
            Action::Control if !interviewer => Err(HubError::new(
                ErrorCode::Forbidden,
                "only an interviewer can do that",
            )),
            Action::Notes if !interviewer => Err(HubError::new(
                ErrorCode::Forbidden,
                "the notes are the interviewers' own",
            )),
            Action::Control | Action::Notes => Ok(()),
            _ if c.state == InterviewState::Ended => Err(HubError::new(
                ErrorCode::InterviewEnded,
                "the interview has ended; everything is read-only",
            )),
            _ if interviewer => Ok(()),
            Action::Activity => Ok(()),
            _ if c.state == InterviewState::Waiting => Err(HubError::new(
                ErrorCode::InterviewNotStarted,
                "the interview has not started yet",
            )),
            Action::Edit | Action::Language if c.editing_locked => Err(HubError::new(
                ErrorCode::EditingLocked,
                "the interviewer has locked editing",
            )),
            Action::Run if !c.runs_enabled => Err(HubError::new(
                ErrorCode::RunsDisabled,
                "the interviewer has turned code running off",
            )),
            _ => Ok(()),
        }
    }

    /// Whether `user` may not join again (removed by an interviewer while this interview was
    /// loaded; storage says so for good).
    pub fn is_removed(&self, user: &Uuid) -> bool {
        self.removed.contains(user)
    }

    /// Whether `user` is bound to a token in this interview: a client without one cannot take it.
    pub fn is_bound(&self, user: &Uuid) -> bool {
        self.bound.contains(user)
    }

    /// A new control snapshot from the session-API or another hub (`Control` on the bus), or what
    /// a reload found in storage. The lifecycle only moves forward, so an older snapshot arriving
    /// late cannot reopen an ended interview; the controls take the newest value.
    pub fn on_control(&mut self, _now: Instant, mut next: InterviewControl, out: &mut Effects) {
        let removed = std::mem::take(&mut next.removed);
        self.apply_control(next, &removed, out);
    }

    /// An interviewer on this hub changed the state or controls (stored already): applied here and
    /// told to the other hubs.
    pub fn set_control(&mut self, now: Instant, next: InterviewControl, out: &mut Effects) {
        let bus = serde_json::to_vec(&next).unwrap_or_default();
        self.publish(BusMessage::Control { json: bus.into() }, out);
        self.on_control(now, next, out);
    }

    fn apply_control(&mut self, next: InterviewControl, removed: &[Uuid], out: &mut Effects) {
        let cur = &self.control;
        let merged = InterviewControl {
            state: if cur.state.can_move_to(next.state) {
                next.state
            } else {
                cur.state
            },
            // The first timestamps stand.
            started_at: cur.started_at.or(next.started_at),
            ended_at: cur.ended_at.or(next.ended_at),
            editing_locked: next.editing_locked,
            runs_enabled: next.runs_enabled,
            removed: Vec::new(),
        };
        let changed = merged != self.control;
        self.control = merged;
        if changed {
            out.broadcast(
                Audience::Everyone,
                None,
                "interview_state",
                Outgoing::Json(state_json(&self.control)),
            );
        }
        for user in removed {
            self.removed.insert(*user);
            let conns: Vec<ConnId> = self
                .roster
                .local
                .iter()
                .filter(|(_, l)| l.user.user_id == *user)
                .map(|(c, _)| c.clone())
                .collect();
            for conn in conns {
                out.emit(
                    &conn,
                    "error",
                    Outgoing::Json(
                        HubError::new(
                            ErrorCode::Removed,
                            "an interviewer removed you from this interview",
                        )
                        .to_json(),
                    ),
                );
                out.push(Effect::Disconnect(conn));
            }
        }
    }

    /// The join ack's view of the state (`role` is added per connection).
    pub(super) fn control_json(&self) -> Value {
        state_json(&self.control)
    }

    pub(super) fn bind(&mut self, user: Uuid) {
        self.bound.insert(user);
    }
}
