//! The plan: for every store in desired ∪ observed, exactly one action and a reason. Pure — no
//! I/O — so every safety rule is decided, and tested, here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::cluster::ObservedStore;
use crate::helm::{ReleaseInfo, ReleaseStatus};
use crate::spec::{SpecError, StoreName, StoreSpec};

/// A valid store file, its canonical hash and its identity apart from its name (to recognise
/// a renamed file; see `values::identity_hash`).
#[derive(Debug, Clone)]
pub struct Desired {
    pub spec: Arc<StoreSpec>,
    pub hash: String,
    pub identity: String,
    /// Where customers reach the store (`https://` when the chart values enable TLS).
    pub url: String,
}

/// How a stuck or failed release is healed. None of them uninstalls a store that was ever Ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recovery {
    /// Stale `pending-*` with a previous revision: `helm rollback` clears the lock; the next
    /// cycle rolls forward to the desired spec.
    Rollback,
    /// `failed`: upgrade again to the desired spec.
    RollForward,
    /// A first install that never became Ready is stuck: uninstall the release, install again.
    Reinstall,
}

/// Deletion guards, in the order they are checked (see `plan/deletion.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Guard {
    /// `reconcile.prune = false`.
    PruneDisabled,
    /// The snapshot has no stores at all while the cluster has some.
    EmptySnapshot,
    /// A store file with an invalid name exists: it might be a renamed store.
    UnnamedFiles,
    /// A new store has the same spec apart from its name: probably a renamed file.
    PossibleRename,
    /// More stores would be deleted than `reconcile.max_deletions`: none is, until approved.
    MassDeletion,
}

impl Guard {
    pub fn code(self) -> &'static str {
        match self {
            Guard::PruneDisabled => "prune_disabled",
            Guard::EmptySnapshot => "empty_snapshot",
            Guard::UnnamedFiles => "unnamed_files",
            Guard::PossibleRename => "possible_rename",
            Guard::MassDeletion => "mass_deletion",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "skip", content = "guard")]
pub enum Skip {
    /// The file exists but does not parse: leave the store exactly as it is.
    Invalid,
    Suspended,
    /// Would delete, but `protect` was set when last applied.
    Protected,
    Guarded(Guard),
    /// The store's namespace exists without our labels: never adopted, never deleted.
    Conflict,
    /// A helm operation is under way (a fresh `pending-*`): wait for it.
    InProgress,
    /// The store's namespace is being deleted: nothing is created into it; a desired store is
    /// created again once it is gone.
    Terminating,
    /// The file is gone; the store waits out the grace period (and keeps serving).
    PendingDeletion,
    /// A new store that looks like another one renamed waits one plan, until that store's
    /// deletion hold is recorded.
    Deferred,
    /// A new store over a policy cap (`max_stores`, `max_stores_per_owner`,
    /// `max_creations_per_hour`): created as soon as there is room. Existing stores are never
    /// touched by a cap.
    QuotaExceeded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "detail")]
pub enum Action {
    Create,
    Upgrade,
    Noop,
    Delete,
    /// The file is gone: mark the store for deletion after the grace period (no helm).
    ScheduleDeletion,
    /// The file is back: withdraw a pending deletion, a hold or an approval (no helm).
    CancelDeletion,
    /// A guard holds the deletion until an approval: record why, on the namespace (no helm).
    HoldDeletion,
    Recover(Recovery),
    Skip(Skip),
}

impl Action {
    /// Whether the action changes anything in the cluster.
    pub fn is_change(self) -> bool {
        matches!(
            self,
            Action::Create
                | Action::Upgrade
                | Action::Delete
                | Action::ScheduleDeletion
                | Action::CancelDeletion
                | Action::HoldDeletion
                | Action::Recover(_)
        )
    }

    pub fn code(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Upgrade => "upgrade",
            Action::Noop => "noop",
            Action::Delete => "delete",
            Action::ScheduleDeletion => "schedule_deletion",
            Action::CancelDeletion => "cancel_deletion",
            Action::HoldDeletion => "hold_deletion",
            Action::Recover(_) => "recover",
            Action::Skip(_) => "skip",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Recover(r) => write!(f, "recover ({r:?})"),
            Action::Skip(Skip::Guarded(g)) => write!(f, "skip (guarded: {})", g.code()),
            Action::Skip(s) => write!(f, "skip ({s:?})"),
            a => f.write_str(a.code()),
        }
    }
}

/// One decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub store: StoreName,
    pub action: Action,
    pub reason: String,
    /// What the operator can do about it (the exact `approve-deletion` command of a blocked
    /// deletion).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// When a store whose file is gone will be deleted (scheduled or pending deletion).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<jiff::Timestamp>,
    /// The other store the decision is about (the new name of a possible rename).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related: Option<StoreName>,
    /// When a store held by the creation rate cap can start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<jiff::Timestamp>,
}

impl Step {
    pub fn new(store: StoreName, action: Action, reason: impl Into<String>) -> Step {
        Step {
            store,
            action,
            reason: reason.into(),
            hint: None,
            deadline: None,
            related: None,
            not_before: None,
        }
    }
}

/// A decision before it is tied to its store.
#[derive(Debug, Clone, PartialEq)]
struct Decision {
    action: Action,
    reason: String,
    hint: Option<String>,
    deadline: Option<jiff::Timestamp>,
    related: Option<StoreName>,
    not_before: Option<jiff::Timestamp>,
}

impl Decision {
    fn new(action: Action, reason: impl Into<String>) -> Decision {
        Decision {
            action,
            reason: reason.into(),
            hint: None,
            deadline: None,
            related: None,
            not_before: None,
        }
    }

    fn related(mut self, store: StoreName) -> Decision {
        self.related = Some(store);
        self
    }

    fn hint(mut self, hint: String) -> Decision {
        self.hint = Some(hint);
        self
    }

    fn deadline(mut self, at: jiff::Timestamp) -> Decision {
        self.deadline = Some(at);
        self
    }
}

/// Settings that bound what a plan may do.
#[derive(Debug, Clone)]
pub struct Limits {
    pub prune: bool,
    /// The deletion circuit breaker (`reconcile.max_deletions`).
    pub max_deletions: usize,
    pub helm_timeout: Duration,
    /// `reconcile.deletion_grace`.
    pub deletion_grace: Duration,
    /// The policy's caps on new stores.
    pub caps: Caps,
}

/// The operator's caps on new stores (`[policy]`); `None`: no cap.
#[derive(Debug, Clone, Default)]
pub struct Caps {
    pub max_stores: Option<u32>,
    pub max_stores_per_owner: Option<u32>,
    pub max_creations_per_hour: Option<u32>,
}

/// Everything the plan looks at.
pub struct Input<'a> {
    pub desired: &'a BTreeMap<StoreName, Result<Desired, SpecError>>,
    /// Whether the snapshot holds files with invalid store names.
    pub unnamed_files: bool,
    pub observed: &'a BTreeMap<StoreName, ObservedStore>,
    /// Desired stores whose namespace exists without our labels.
    pub conflicts: &'a BTreeSet<StoreName>,
    /// Release state, read only for the stores [`needs_release_state`] picked.
    pub releases: &'a BTreeMap<StoreName, Option<ReleaseInfo>>,
    pub limits: &'a Limits,
    /// The snapshot's revision (named in the reasons of blocked deletions).
    pub revision: &'a str,
    /// When each store was first seen in its current in-between state: new (a file, no
    /// namespace) or gone (a namespace, no file). The oldest new store goes first under a cap;
    /// a new and a gone store first seen together came from one change (a possible rename).
    pub first_seen: &'a BTreeMap<StoreName, jiff::Timestamp>,
    pub now: jiff::Timestamp,
}

/// Whether the plan needs `helm status` for a store: only when it changed, is not known to be
/// Ready, or a resync is due — never for every store on every cycle.
pub fn needs_release_state(
    desired: Option<&Desired>,
    observed: Option<&ObservedStore>,
    resync: bool,
) -> bool {
    let (Some(d), Some(o)) = (desired, observed) else {
        return false;
    };
    if d.spec.suspend || o.suspended.is_some() || o.terminating {
        return false;
    }
    resync || o.applied_hash.as_deref() != Some(d.hash.as_str()) || !o.is_ready()
}

/// Computes the plan. Steps come in store-name order.
pub fn plan(input: &Input<'_>) -> Vec<Step> {
    let names: BTreeSet<&StoreName> = input.desired.keys().chain(input.observed.keys()).collect();
    let (mut orphans, deferred) = deletion::decide_orphans(input);
    let mut steps = Vec::with_capacity(names.len());
    for name in names {
        let observed = input.observed.get(name);
        let decision = match input.desired.get(name) {
            Some(Err(e)) => decide_invalid(e, observed),
            Some(Ok(_)) if deferred.contains_key(name) => deferred[name].clone(),
            Some(Ok(d)) => decide_desired(input, name, d, observed),
            None => match orphans.remove(name) {
                Some(d) => d,
                None => continue,
            },
        };
        steps.push(Step {
            store: name.clone(),
            action: decision.action,
            reason: decision.reason,
            hint: decision.hint,
            deadline: decision.deadline,
            related: decision.related,
            not_before: decision.not_before,
        });
    }
    caps::apply(input, &mut steps);
    steps
}

/// The reason of a store suspended by `storekeeper suspend`.
fn suspended_by(s: &crate::cluster::Suspension, name: &StoreName) -> String {
    format!(
        "suspended by {} at {} with storekeeper suspend (overrides the store file); \
         `storekeeper resume {name}` lifts it",
        s.by, s.at
    )
}

/// A file that does not parse leaves its store exactly as it is; only a pending deletion is
/// withdrawn, since the file is there (a deletion mark must never outlive its file's return).
fn decide_invalid(e: &SpecError, observed: Option<&ObservedStore>) -> Decision {
    if let Some(cancel) = observed.and_then(deletion::cancel_if_marked) {
        return cancel;
    }
    Decision::new(
        Action::Skip(Skip::Invalid),
        format!(
            "{} invalid: {} error(s); the store is left as it is",
            e.file,
            e.diagnostics.len()
        ),
    )
}

fn decide_desired(
    input: &Input<'_>,
    name: &StoreName,
    d: &Desired,
    observed: Option<&ObservedStore>,
) -> Decision {
    if observed.is_none() && input.conflicts.contains(name) {
        return Decision::new(
            Action::Skip(Skip::Conflict),
            "namespace exists without storekeeper's labels; not adopted: rename the store or remove the namespace by hand",
        );
    }
    if let Some(o) = observed.filter(|o| o.terminating) {
        return Decision::new(
            Action::Skip(Skip::Terminating),
            format!(
                "namespace {} is terminating; the store is created again once it is gone",
                o.namespace
            ),
        );
    }
    if let Some(cancel) = observed.and_then(deletion::cancel_if_marked) {
        return cancel;
    }
    if d.spec.suspend {
        return Decision::new(Action::Skip(Skip::Suspended), "suspend = true in the store file");
    }
    if let Some(s) = observed.and_then(|o| o.suspended.as_ref()) {
        return Decision::new(Action::Skip(Skip::Suspended), suspended_by(s, name));
    }
    let Some(o) = observed else {
        return Decision::new(Action::Create, "new store");
    };
    if let Some(Some(r)) = input.releases.get(name)
        && let Some(decision) = decide_release(input, r, o)
    {
        return Decision::new(decision.0, decision.1);
    }
    if matches!(input.releases.get(name), Some(None)) {
        return Decision::new(Action::Upgrade, "namespace exists but the release is missing");
    }
    if o.applied_hash.as_deref() != Some(d.hash.as_str()) {
        return Decision::new(Action::Upgrade, "spec changed");
    }
    Decision::new(Action::Noop, "up to date")
}

/// A release that is stuck or failed decides the step by itself: wait for a fresh operation,
/// or recover. `None`: the release is fine; the spec decides.
fn decide_release(input: &Input<'_>, r: &ReleaseInfo, o: &ObservedStore) -> Option<(Action, String)> {
    let age = r
        .last_deployed
        .map(|t| input.now.duration_since(t).unsigned_abs())
        .unwrap_or(Duration::MAX);
    if r.status.is_pending() {
        if age < input.limits.helm_timeout {
            return Some((
                Action::Skip(Skip::InProgress),
                format!(
                    "release is {} since {}s; waiting for it",
                    r.status.as_str(),
                    age.as_secs()
                ),
            ));
        }
        let how = if r.status == ReleaseStatus::PendingInstall && !o.ever_ready {
            Recovery::Reinstall
        } else if r.revision > 1 {
            Recovery::Rollback
        } else {
            Recovery::RollForward
        };
        return Some((
            Action::Recover(how),
            format!(
                "release stuck in {} for longer than the helm timeout",
                r.status.as_str()
            ),
        ));
    }
    (r.status == ReleaseStatus::Failed).then(|| {
        (
            Action::Recover(Recovery::RollForward),
            "release failed; rolling forward".to_string(),
        )
    })
}

mod caps;
mod deletion;

#[cfg(test)]
mod tests;
