//! What happens to stores whose file is gone. Deleting a store deletes a business's orders and
//! customers, so a deletion has to get through every rule, checked in this order:
//!
//! 1. a terminating namespace is already on its way out (Deleting);
//! 2. `protect = true` (as last applied) is never deleted;
//! 3. a store suspended with `storekeeper suspend` is left alone, deletion included;
//!    `reconcile.prune = false` deletes nothing;
//! 4. an approval (`storekeeper approve-deletion`) lets the store through the rules below and
//!    skips the grace period: it is the deliberate act the rules wait for;
//! 5. an empty snapshot (while stores exist) deletes nothing;
//! 6. a store file with an invalid name might be any store renamed: nothing is deleted;
//! 7. a store added by the change that removed this one (both first seen in the same plan), with
//!    the same spec apart from its name, is probably this one renamed: the
//!    deletion is held (recorded on the namespace, since the evidence is gone once the new store
//!    exists), and the new store is created one plan later, once the hold is written;
//! 8. the circuit breaker: when more stores than `reconcile.max_deletions` are left after the
//!    rules above (counted over every such store, not per plan), none is deleted;
//! 9. the grace period: the store is marked, keeps serving, and is deleted after the deadline.
//!
//! A blocked deletion's reason names the revision and what to do; its hint is the exact
//! `approve-deletion` command. Pure, like the rest of the plan.

use std::collections::{BTreeMap, BTreeSet};

use super::{Action, Decision, Guard, Input, Skip};
use crate::cluster::ObservedStore;
use crate::spec::StoreName;

/// The decision for every store that is observed but has no file; and the new stores that wait
/// for a rename hold to be recorded first.
pub(super) fn decide_orphans(
    input: &Input<'_>,
) -> (BTreeMap<StoreName, Decision>, BTreeMap<StoreName, Decision>) {
    let renamed = new_identities(input);
    let mut out = BTreeMap::new();
    let mut deferred = BTreeMap::new();
    let mut waiting: Vec<(&StoreName, &ObservedStore)> = Vec::new();
    for (name, o) in input
        .observed
        .iter()
        .filter(|(n, _)| !input.desired.contains_key(*n))
    {
        match individual(input, name, o, &renamed) {
            Some(d) => {
                if d.action == Action::HoldDeletion
                    && let Some(new) = &d.related
                {
                    let why = format!("waits until the possible rename of {name} is recorded");
                    deferred.insert(new.clone(), Decision::new(Action::Skip(Skip::Deferred), why));
                }
                out.insert(name.clone(), d);
            }
            None => waiting.push((name, o)),
        }
    }
    if waiting.len() > input.limits.max_deletions {
        let names: Vec<&str> = waiting.iter().map(|(n, _)| n.as_str()).collect();
        for (name, _) in &waiting {
            out.insert((*name).clone(), mass_deletion(input, &names));
        }
    } else {
        for (name, o) in waiting {
            out.insert(name.clone(), grace(input, o));
        }
    }
    (out, deferred)
}

/// A store whose file came back (valid or not) loses its deletion mark and its approval.
pub(super) fn cancel_if_marked(o: &ObservedStore) -> Option<Decision> {
    let what = match (&o.pending_deletion, &o.hold, &o.approval) {
        (Some(m), _, _) => format!("its deletion (due {}) is cancelled", m.deadline),
        (None, Some(h), _) => format!("its deletion hold ({}) is withdrawn", h.guard),
        (None, None, Some(a)) => format!("the approval to delete it (by {}) lapses", a.by),
        (None, None, None) => return None,
    };
    Some(Decision::new(
        Action::CancelDeletion,
        format!("the store file is back: {what}"),
    ))
}

/// Identities of new stores (a file, no namespace yet), with when each was first seen.
fn new_identities<'a>(input: &'a Input<'_>) -> BTreeMap<&'a str, Vec<&'a StoreName>> {
    let mut out: BTreeMap<&str, Vec<&StoreName>> = BTreeMap::new();
    for (n, d) in input
        .desired
        .iter()
        .filter(|(n, _)| !input.observed.contains_key(*n))
    {
        if let Ok(d) = d {
            out.entry(d.identity.as_str()).or_default().push(n);
        }
    }
    out
}

/// The new store that came with `name`'s removal in one change and has its spec: a rename.
fn renamed_to<'a>(
    input: &Input<'_>,
    name: &StoreName,
    o: &ObservedStore,
    renamed: &BTreeMap<&str, Vec<&'a StoreName>>,
) -> Option<&'a StoreName> {
    let gone_since = input.first_seen.get(name)?;
    let candidates = renamed.get(o.identity.as_deref()?)?;
    candidates
        .iter()
        .copied()
        .find(|new| input.first_seen.get(*new) == Some(gone_since))
}

/// Rules 1–7, which look at one store at a time. `None`: the store goes on to the breaker.
fn individual(
    input: &Input<'_>,
    name: &StoreName,
    o: &ObservedStore,
    renamed: &BTreeMap<&str, Vec<&StoreName>>,
) -> Option<Decision> {
    if let Some(stop) = never(input, name, o) {
        return Some(stop);
    }
    if let Some(a) = &o.approval {
        let why = format!(
            "deletion approved by {} at {} (revision {})",
            a.by, a.at, a.revision
        );
        return Some(Decision::new(Action::Delete, why));
    }
    let guarded = |g: Guard, why: String| {
        Decision::new(Action::Skip(Skip::Guarded(g)), why).hint(approve(&[name.as_str()]))
    };
    if input.desired.is_empty() {
        let why = format!(
            "revision {} has no store files at all while stores exist; refusing to delete everything",
            input.revision
        );
        return Some(guarded(Guard::EmptySnapshot, why));
    }
    if input.unnamed_files {
        let why = "a store file with an invalid name exists; it may be this store renamed".to_string();
        return Some(guarded(Guard::UnnamedFiles, why));
    }
    if let Some(h) = &o.hold {
        return Some(guarded(Guard::PossibleRename, held_reason(name, h)));
    }
    let new = renamed_to(input, name, o, renamed)?;
    let why = rename_reason(input, name, new);
    Some(
        Decision::new(Action::HoldDeletion, why)
            .hint(approve(&[name.as_str()]))
            .related(new.clone()),
    )
}

/// Rules 1–3: what no approval unblocks (terminating, protected, suspended, prune off).
fn never(input: &Input<'_>, name: &StoreName, o: &ObservedStore) -> Option<Decision> {
    if o.terminating {
        let why = format!("namespace {} is terminating", o.namespace);
        return Some(Decision::new(Action::Skip(Skip::Terminating), why));
    }
    if o.protected {
        let why = "file is gone but the store was applied with protect = true; it is never deleted";
        return Some(Decision::new(Action::Skip(Skip::Protected), why));
    }
    if let Some(s) = &o.suspended {
        let why = format!(
            "{}; a suspended store is not deleted",
            super::suspended_by(s, name)
        );
        return Some(Decision::new(Action::Skip(Skip::Suspended), why));
    }
    (!input.limits.prune).then(|| {
        let why = "file is gone; reconcile.prune = false";
        Decision::new(Action::Skip(Skip::Guarded(Guard::PruneDisabled)), why)
    })
}

fn held_reason(name: &StoreName, h: &crate::cluster::DeletionHold) -> String {
    format!(
        "revision {} removed {name}.toml and added {}.toml with the same spec apart from the name: \
         probably a rename (recorded {}). Names are identity: deleting {name} deletes its data. \
         Restore {name}.toml, or approve {name}'s deletion",
        h.revision, h.with, h.since
    )
}

fn rename_reason(input: &Input<'_>, old: &StoreName, new: &StoreName) -> String {
    format!(
        "revision {} removes {old}.toml and adds {new}.toml with the same spec apart from the name: \
         probably a rename. Names are identity: deleting {old} deletes its data and {new} starts \
         empty. Restore {old}.toml (and remove {new}.toml), or approve {old}'s deletion",
        input.revision
    )
}

fn mass_deletion(input: &Input<'_>, names: &[&str]) -> Decision {
    let why = format!(
        "revision {} would delete {} stores, more than reconcile.max_deletions = {}, so none is deleted: \
         approve each deletion, or restore the files",
        input.revision,
        names.len(),
        input.limits.max_deletions
    );
    Decision::new(Action::Skip(Skip::Guarded(Guard::MassDeletion)), why).hint(approve(names))
}

/// Rule 9: mark, wait, then delete.
fn grace(input: &Input<'_>, o: &ObservedStore) -> Decision {
    let gone = format!("store file is gone (revision {})", input.revision);
    if input.limits.deletion_grace.is_zero() {
        let why = format!("{gone}; namespace {} will be removed", o.namespace);
        return Decision::new(Action::Delete, why);
    }
    let Some(mark) = &o.pending_deletion else {
        let deadline = input
            .now
            .checked_add(jiff::SignedDuration::try_from(input.limits.deletion_grace).unwrap_or_default())
            .unwrap_or(input.now);
        let why = format!("{gone}; deleted at {deadline} unless it comes back");
        return Decision::new(Action::ScheduleDeletion, why).deadline(deadline);
    };
    if mark.deadline <= input.now {
        let why = format!(
            "the grace period ended at {} (file gone since {}, revision {}); namespace {} will be removed",
            mark.deadline, mark.since, mark.revision, o.namespace
        );
        return Decision::new(Action::Delete, why).deadline(mark.deadline);
    }
    let why = format!(
        "store file is gone since {} (revision {}); deleted at {} unless it comes back",
        mark.since, mark.revision, mark.deadline
    );
    Decision::new(Action::Skip(Skip::PendingDeletion), why)
        .deadline(mark.deadline)
        .hint(approve(&[o_name(o)]))
}

/// The store name of a namespace, for hints (the label is the truth; see `ObservedStore`).
fn o_name(o: &ObservedStore) -> &str {
    o.labels
        .get(crate::cluster::STORE_LABEL)
        .map_or(o.namespace.as_str(), String::as_str)
}

/// The exact command that approves these deletions.
fn approve(names: &[&str]) -> String {
    let unique: BTreeSet<&&str> = names.iter().collect();
    let list: Vec<&str> = unique.into_iter().copied().collect();
    format!("storekeeper approve-deletion {}", list.join(" "))
}
