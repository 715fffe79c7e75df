//! The operator's caps on new stores (`[policy]` `max_stores`, `max_stores_per_owner`,
//! `max_creations_per_hour`). A cap never touches an existing store: only a `Create` can be held
//! back, as `Blocked` with guard `quota_exceeded` and a reason naming the owner and the limit,
//! and it is created as soon as there is room. Among new stores the oldest (as first seen by the
//! daemon, so a commit's files together) goes first, then by name: the order is deterministic.

use std::collections::BTreeMap;

use super::{Action, Input, Skip, Step};
use crate::spec::StoreName;

/// The rate cap's window.
const HOUR: jiff::SignedDuration = jiff::SignedDuration::from_secs(3600);

/// What the cluster already holds, against which new stores are counted.
struct Room {
    total: u32,
    per_owner: BTreeMap<String, u32>,
    /// Creation times of the stores created within the last hour, oldest first.
    recent: Vec<jiff::Timestamp>,
}

impl Room {
    fn of(input: &Input<'_>) -> Room {
        let live = input.observed.values().filter(|o| !o.terminating);
        let mut room = Room {
            total: 0,
            per_owner: BTreeMap::new(),
            recent: Vec::new(),
        };
        for o in live {
            room.total += 1;
            if let Some(owner) = &o.owner {
                *room.per_owner.entry(owner.clone()).or_insert(0) += 1;
            }
            if let Some(t) = o.created.filter(|t| input.now.duration_since(*t) < HOUR) {
                room.recent.push(t);
            }
        }
        room.recent.sort();
        room
    }
}

/// Holds back the creations over a cap, in place.
pub(super) fn apply(input: &Input<'_>, steps: &mut [Step]) {
    let caps = &input.limits.caps;
    if caps.max_stores.is_none()
        && caps.max_stores_per_owner.is_none()
        && caps.max_creations_per_hour.is_none()
    {
        return;
    }
    let mut room = Room::of(input);
    let mut order: Vec<usize> = (0..steps.len())
        .filter(|i| steps[*i].action == Action::Create)
        .collect();
    order.sort_by_key(|i| {
        let seen = input.first_seen.get(&steps[*i].store).copied();
        (seen.unwrap_or(jiff::Timestamp::MAX), steps[*i].store.clone())
    });
    let mut waiting_for_rate = 0usize;
    for i in order {
        let owner = owner_of(input, &steps[i].store);
        match refusal(input, &room, owner.as_deref(), &mut waiting_for_rate) {
            None => {
                room.total += 1;
                if let Some(o) = owner {
                    *room.per_owner.entry(o).or_insert(0) += 1;
                }
                room.recent.push(input.now);
            }
            Some((why, not_before)) => {
                let step = &mut steps[i];
                step.action = Action::Skip(Skip::QuotaExceeded);
                step.reason = why;
                step.not_before = not_before;
            }
        }
    }
}

fn owner_of(input: &Input<'_>, store: &StoreName) -> Option<String> {
    let d = input.desired.get(store)?.as_ref().ok()?;
    d.spec.owner.as_ref().map(|o| o.as_str().to_string())
}

/// Why a new store cannot be created now, and (for the rate cap) when it can.
fn refusal(
    input: &Input<'_>,
    room: &Room,
    owner: Option<&str>,
    waiting_for_rate: &mut usize,
) -> Option<(String, Option<jiff::Timestamp>)> {
    let caps = &input.limits.caps;
    if let Some(max) = caps.max_stores
        && room.total >= max
    {
        let why = format!(
            "policy max_stores = {max} reached ({} stores); created once a store is deleted",
            room.total
        );
        return Some((why, None));
    }
    if let (Some(max), Some(owner)) = (caps.max_stores_per_owner, owner) {
        let have = room.per_owner.get(owner).copied().unwrap_or(0);
        if have >= max {
            let why = format!(
                "owner {owner} has {have} stores, policy max_stores_per_owner = {max}; created once one of them is deleted"
            );
            return Some((why, None));
        }
    }
    let max = caps.max_creations_per_hour?;
    if (room.recent.len() as u64) < u64::from(max) {
        return None;
    }
    // The slots free up as the window's oldest creations age out, one per store in line.
    let over = room.recent.len() - max as usize;
    let slot = room.recent.get(over + *waiting_for_rate).map(|t| *t + HOUR);
    *waiting_for_rate += 1;
    let when = slot.map_or("later".to_string(), |t| format!("at {t}"));
    let why = format!("policy max_creations_per_hour = {max} reached; starts {when}");
    Some((why, slot))
}
