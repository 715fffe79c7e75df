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

/// A valid store file and its canonical hash.
#[derive(Debug, Clone)]
pub struct Desired {
    pub spec: Arc<StoreSpec>,
    pub hash: String,
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

/// Deletion guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Guard {
    /// More deletions than `max_deletions_per_cycle`; the rest wait for later cycles.
    TooManyDeletions,
    /// The snapshot has no stores at all while the cluster has some.
    EmptySnapshot,
    /// A store file with an invalid name exists: it might be a renamed store.
    UnnamedFiles,
    /// `reconcile.prune = false`.
    PruneDisabled,
}

impl Guard {
    pub fn code(self) -> &'static str {
        match self {
            Guard::TooManyDeletions => "too_many_deletions",
            Guard::EmptySnapshot => "empty_snapshot",
            Guard::UnnamedFiles => "unnamed_files",
            Guard::PruneDisabled => "prune_disabled",
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "detail")]
pub enum Action {
    Create,
    Upgrade,
    Noop,
    Delete,
    Recover(Recovery),
    Skip(Skip),
}

impl Action {
    /// Whether the action changes anything in the cluster.
    pub fn is_change(self) -> bool {
        matches!(
            self,
            Action::Create | Action::Upgrade | Action::Delete | Action::Recover(_)
        )
    }

    pub fn code(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Upgrade => "upgrade",
            Action::Noop => "noop",
            Action::Delete => "delete",
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
}

/// Settings that bound what a plan may do.
#[derive(Debug, Clone)]
pub struct Limits {
    pub prune: bool,
    pub max_deletions: usize,
    pub helm_timeout: Duration,
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
    if d.spec.suspend || o.terminating {
        return false;
    }
    resync || o.applied_hash.as_deref() != Some(d.hash.as_str()) || !o.is_ready()
}

/// Computes the plan. Steps come in store-name order.
pub fn plan(input: &Input<'_>) -> Vec<Step> {
    let names: BTreeSet<&StoreName> = input.desired.keys().chain(input.observed.keys()).collect();
    let mut steps = Vec::with_capacity(names.len());
    let mut deletions = 0usize;
    let snapshot_empty = input.desired.is_empty();
    for name in names {
        let observed = input.observed.get(name);
        let (action, reason) = match input.desired.get(name) {
            Some(Err(e)) => (
                Action::Skip(Skip::Invalid),
                format!(
                    "{} invalid: {} error(s); the store is left as it is",
                    e.file,
                    e.diagnostics.len()
                ),
            ),
            Some(Ok(d)) => decide_desired(input, name, d, observed),
            None => match observed {
                Some(o) => decide_orphan(input, o, snapshot_empty, &mut deletions),
                None => continue,
            },
        };
        steps.push(Step {
            store: name.clone(),
            action,
            reason,
        });
    }
    steps
}

fn decide_desired(
    input: &Input<'_>,
    name: &StoreName,
    d: &Desired,
    observed: Option<&ObservedStore>,
) -> (Action, String) {
    if observed.is_none() && input.conflicts.contains(name) {
        return (
            Action::Skip(Skip::Conflict),
            "namespace exists without storekeeper's labels; not adopted: rename the store or remove the namespace by hand".into(),
        );
    }
    if let Some(o) = observed.filter(|o| o.terminating) {
        return (
            Action::Skip(Skip::Terminating),
            format!(
                "namespace {} is terminating; the store is created again once it is gone",
                o.namespace
            ),
        );
    }
    if d.spec.suspend {
        return (
            Action::Skip(Skip::Suspended),
            "suspend = true in the store file".into(),
        );
    }
    let Some(o) = observed else {
        return (Action::Create, "new store".into());
    };
    if let Some(Some(r)) = input.releases.get(name)
        && let Some(decision) = decide_release(input, r, o)
    {
        return decision;
    }
    if matches!(input.releases.get(name), Some(None)) {
        return (
            Action::Upgrade,
            "namespace exists but the release is missing".into(),
        );
    }
    if o.applied_hash.as_deref() != Some(d.hash.as_str()) {
        return (Action::Upgrade, "spec changed".into());
    }
    (Action::Noop, "up to date".into())
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

fn decide_orphan(
    input: &Input<'_>,
    o: &ObservedStore,
    snapshot_empty: bool,
    deletions: &mut usize,
) -> (Action, String) {
    let guarded = |g: Guard, why: &str| (Action::Skip(Skip::Guarded(g)), why.to_string());
    if o.terminating {
        return (
            Action::Skip(Skip::Terminating),
            format!("namespace {} is terminating", o.namespace),
        );
    }
    if o.protected {
        return (
            Action::Skip(Skip::Protected),
            "file is gone but the store was applied with protect = true".into(),
        );
    }
    if !input.limits.prune {
        return guarded(Guard::PruneDisabled, "file is gone; reconcile.prune = false");
    }
    if snapshot_empty {
        return guarded(
            Guard::EmptySnapshot,
            "the source has no store files at all while stores exist; refusing to delete everything",
        );
    }
    if input.unnamed_files {
        return guarded(
            Guard::UnnamedFiles,
            "a store file with an invalid name exists; it may be this store renamed",
        );
    }
    if *deletions >= input.limits.max_deletions {
        return guarded(
            Guard::TooManyDeletions,
            "max_deletions_per_cycle reached; deleted in a later cycle",
        );
    }
    *deletions += 1;
    (
        Action::Delete,
        format!("store file is gone; namespace {} will be removed", o.namespace),
    )
}

#[cfg(test)]
mod tests;
