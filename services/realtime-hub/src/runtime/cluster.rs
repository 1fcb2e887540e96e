//! This hub among the others: its inbox (other hubs' commit notices) and its heartbeat
//! (registration, presence re-announced, participant rows retried).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use duet_storage::Participant;
use uuid::Uuid;

use super::live::Live;
use super::registry::Registry;
use super::services::Services;
use crate::interview::presence::UserInfo;
use duet_bus::{placement, relay};

/// How long the inbox waits before subscribing again when the bus refused.
const INBOX_RETRY: Duration = Duration::from_secs(1);

/// Reads this hub's inbox ([`relay::inbox`]): the other hubs' commit notices for the interviews
/// shared with them. A notice lost while the bus was away is repeated by its origin once that
/// interview goes quiet, or made good by the takeover (`REMOTE_COMMIT_TAKEOVER`).
pub(crate) async fn inbox(rt: Arc<Services>, registry: Arc<Registry>) {
    let channel = relay::inbox(&rt.hub_id);
    loop {
        let subscribed = tokio::select! {
            _ = rt.cancel.cancelled() => return,
            s = rt.bus.subscribe(&channel) => s,
        };
        let mut sub = match subscribed {
            Ok(sub) => sub,
            Err(e) => {
                tracing::debug!(error = %e, "inbox subscribe failed; retrying");
                tokio::select! {
                    _ = rt.cancel.cancelled() => return,
                    _ = tokio::time::sleep(INBOX_RETRY) => continue,
                }
            }
        };
        loop {
            let event = tokio::select! {
                _ = rt.cancel.cancelled() => return,
                e = sub.recv() => e,
            };
            match event {
                Some(duet_bus::BusEvent::Message(raw)) => {
                    for (origin, msg) in relay::decode_all(&raw) {
                        let relay::BusMessage::Commits { entries } = msg else {
                            continue;
                        };
                        for (id, upto) in entries {
                            if let Some(iv) = registry.get(id) {
                                iv.run(|c, now, fx| c.on_remote_committed(now, &origin, upto, fx));
                            }
                        }
                    }
                }
                Some(duet_bus::BusEvent::Missed) => {}
                None => break,
            }
        }
    }
}

/// Refreshes the registration every third of its TTL, re-announces presence and retries participant
/// rows that could not be written.
pub(crate) async fn heartbeat(rt: Arc<Services>, registry: Arc<Registry>) {
    let every = rt.cfg.heartbeat_ttl / 3;
    loop {
        tokio::select! {
            _ = rt.cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = beat(&rt).await {
            tracing::warn!(error = %e, "hub heartbeat failed");
        }
        for iv in registry.loaded() {
            if iv.has_locals() {
                iv.run(|c, _, fx| c.publish_presence(fx));
                keep_placement(&rt, &iv).await;
            }
            for (row_id, user) in iv.read(|c| c.unsaved_rows()) {
                if rt
                    .storage
                    .add_participant(&participant_row(&rt, iv.id, row_id, &user))
                    .await
                    .is_ok()
                {
                    iv.run(|c, _, _| c.row_saved(row_id));
                }
            }
        }
        let orphans = std::mem::take(&mut *rt.orphan_rows.lock());
        for row in orphans {
            if rt.storage.remove_participant(row).await.is_err() {
                rt.orphan_rows.lock().push(row);
            }
        }
    }
}

/// Renews the interview's placement record (the gateways route new participants by it). When
/// another hub holds it, the interview is shared with that hub for now (relayed edits keep every
/// replica equal); this hub's participants are left where they are — forcing them over could loop
/// between hubs that clients reach without a gateway — and move when they next reconnect.
async fn keep_placement(rt: &Services, iv: &Live) {
    let code = iv.code.as_str();
    match placement::refresh(&*rt.bus, code, &rt.hub_id).await {
        Ok(holder) if holder != rt.hub_id => {
            tracing::debug!(session = %iv.id, %holder, "interview placed on another hub; shared until its participants reconnect");
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(session = %iv.id, error = %e, "placement refresh failed"),
    }
}

/// Removes the hub's registration at once, so the gateways stop sending it new interviews.
pub(crate) async fn deregister(rt: &Services) {
    let _ = rt
        .bus
        .set_with_ttl(&relay::hub_key(&rt.hub_id), &rt.public_url, 1)
        .await;
}

/// Registers (or refreshes) the hub in the database and the bus.
pub(crate) async fn beat(rt: &Services) -> anyhow::Result<()> {
    let ttl = rt.cfg.heartbeat_ttl.as_secs().max(1);
    let key = relay::hub_key(&rt.hub_id);
    let (db, bus) = tokio::join!(
        rt.storage.hub_heartbeat(&rt.hub_id, ttl as i64),
        rt.bus.set_with_ttl(&key, &rt.public_url, ttl)
    );
    db.context("hub heartbeat in the database")?;
    bus.context("hub registration in the bus")?;
    Ok(())
}

/// The participants row of a local participant.
pub(crate) fn participant_row(
    rt: &Services,
    session_id: Uuid,
    row_id: Uuid,
    user: &UserInfo,
) -> Participant {
    Participant {
        id: row_id,
        session_id,
        user_id: user.user_id,
        name: user.name.clone(),
        color: user.color.clone(),
        hub_id: rt.hub_id.clone(),
    }
}
