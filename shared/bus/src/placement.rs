//! Where a live interview is served: one record per interview in the bus's key space,
//! `duet:placement:<SESSION_CODE>` → the serving hub's id, with a TTL.
//!
//! Gateways consult it before hashing, so an interview stays on its hub while hubs join and leave,
//! and every gateway sends one Engine.IO session to the same hub. Its lifecycle:
//!
//! - **Created** by the gateway that routes the interview's first handshake ([`claim`] with the hub
//!   rendezvous hashing picked); when two gateways race, the first claim wins and the other routes to
//!   the winner.
//! - **Renewed** every [`PLACEMENT_REFRESH`] while the interview has participants, by whoever sees
//!   them ([`refresh`]): the gateway for the connections it carries, the hub for its local participants.
//!   A refresh never overwrites another hub's record; it returns the holder so the caller can notice
//!   a split interview.
//! - **Moved** only when its hub is gone (deregistered, or refusing connections): the gateway claims it
//!   for the next hub with `replacing` = the dead hub, so a record another gateway already moved is
//!   left as it is.
//! - **Expires** [`PLACEMENT_TTL`] after the last renewal: an interview nobody is in is placed afresh
//!   by hashing the next time someone joins.
//!
//! The codes are the canonical (upper-case) session codes; callers validate them first, so arbitrary
//! client input never becomes a key.

use std::time::Duration;

use crate::{Bus, BusError};

/// Key prefix of placement records.
pub const PLACEMENT_KEY_PREFIX: &str = "duet:placement:";

/// How long a record outlives its last renewal. Three renewal periods, so one missed renewal (a busy
/// hub, a Redis blip) does not lose it; short enough that an interview left empty is rebalanced
/// by hashing within half a minute.
pub const PLACEMENT_TTL: Duration = Duration::from_secs(30);

/// How often a record is renewed while the interview is live.
pub const PLACEMENT_REFRESH: Duration = Duration::from_secs(10);

/// The record's key for a session code.
pub fn placement_key(code: &str) -> String {
    format!("{PLACEMENT_KEY_PREFIX}{code}")
}

/// The hub id the interview is placed on, if any.
pub async fn placement(bus: &dyn Bus, code: &str) -> Result<Option<String>, BusError> {
    bus.get(&placement_key(code)).await
}

/// Places the interview on `hub` unless it is already placed elsewhere; with `replacing`, a record
/// naming that hub (one found dead) is taken over too. Returns the hub the interview is placed on
/// afterwards, which is `hub` unless another claim won.
pub async fn claim(
    bus: &dyn Bus,
    code: &str,
    hub: &str,
    replacing: Option<&str>,
) -> Result<String, BusError> {
    bus.claim(
        &placement_key(code),
        hub,
        replacing,
        PLACEMENT_TTL.as_secs(),
    )
    .await
}

/// Renews the record for `hub` (or creates it when absent, e.g. after Redis lost its data). Returns
/// the hub the record names afterwards: another hub's id means the interview is split, and the caller
/// may move its participants there.
pub async fn refresh(bus: &dyn Bus, code: &str, hub: &str) -> Result<String, BusError> {
    claim(bus, code, hub, None).await
}
