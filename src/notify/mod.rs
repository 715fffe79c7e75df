//! Store events and the notifications sent for them.
//!
//! A [`StoreEvent`] is what the reconciler's one outcome path (`record`) hands to every outlet:
//! the notifier here, Kubernetes Events ([`crate::events`]) and the log. It carries no secret by
//! construction: a human reason, a bounded code, the store's public URL.
//!
//! [`Notifier`] delivers events to the `[[notify]]` targets of `storekeeper.toml` in the
//! background: [`Notifier::send`] only puts the event on each matching target's bounded queue
//! and never waits, so a slow or dead endpoint cannot delay reconciling.

mod config;
mod deliver;
mod payload;

pub use config::{NotifySettings, RawNotify, TargetType, UrlSource, settings};
pub use deliver::{METRIC, Notifier, NotifierTasks, NotifyError, NotifyMetrics, RESULTS};

use serde::Deserialize;

/// What happened to a store. The snake_case names are the `events` filter of `[[notify]]`
/// entries, the `event` field of the webhook JSON, and (in PascalCase) the Kubernetes Event
/// reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A first install of the store's release started (phase Provisioning).
    Installing,
    /// The first install finished: `helm upgrade --install --wait` passed, the store is Ready.
    Created,
    /// An upgrade of a changed store file started (phase Provisioning).
    Upgrading,
    /// That upgrade finished; the store is Ready.
    Upgraded,
    /// The store is Ready again without a change of its file: a stuck `pending-*` release was
    /// recovered, drift was repaired on resync, or a retry after a failure succeeded.
    Ready,
    /// An install, upgrade, recovery or deletion failed (phase Failed); `code` is the error code.
    Failed,
    /// The store's file is gone and its release is being uninstalled (phase Deleting).
    Deleting,
    /// The store's release and namespace are gone.
    Deleted,
    /// A guard refused an action (phase Blocked); `code` names the guard
    /// (`too_many_deletions`, `protected`, ...).
    Blocked,
    /// Deletion is due but waits: for an approval, or for a final backup.
    PendingDeletion,
    /// The store file no longer parses or validates; the store is left as it is (phase Invalid).
    Invalid,
    /// The store was suspended (its file, or the `storekeeper suspend` override).
    Suspended,
    /// A suspended store was resumed.
    Resumed,
    /// A backup of the store failed; `code` says why.
    BackupFailed,
}

impl EventKind {
    /// Every kind, in documentation order.
    pub const ALL: [EventKind; 14] = [
        EventKind::Installing,
        EventKind::Created,
        EventKind::Upgrading,
        EventKind::Upgraded,
        EventKind::Ready,
        EventKind::Failed,
        EventKind::Deleting,
        EventKind::Deleted,
        EventKind::Blocked,
        EventKind::PendingDeletion,
        EventKind::Invalid,
        EventKind::Suspended,
        EventKind::Resumed,
        EventKind::BackupFailed,
    ];

    /// The stable snake_case name (config filter, webhook `event` field).
    pub fn as_str(self) -> &'static str {
        self.names().0
    }

    /// The Kubernetes Event reason: PascalCase, at most 128 characters.
    pub fn reason(self) -> &'static str {
        self.names().1
    }

    fn names(self) -> (&'static str, &'static str) {
        match self {
            EventKind::Installing => ("installing", "Installing"),
            EventKind::Created => ("created", "Created"),
            EventKind::Upgrading => ("upgrading", "Upgrading"),
            EventKind::Upgraded => ("upgraded", "Upgraded"),
            EventKind::Ready => ("ready", "Ready"),
            EventKind::Failed => ("failed", "Failed"),
            EventKind::Deleting => ("deleting", "Deleting"),
            EventKind::Deleted => ("deleted", "Deleted"),
            EventKind::Blocked => ("blocked", "Blocked"),
            EventKind::PendingDeletion => ("pending_deletion", "PendingDeletion"),
            EventKind::Invalid => ("invalid", "Invalid"),
            EventKind::Suspended => ("suspended", "Suspended"),
            EventKind::Resumed => ("resumed", "Resumed"),
            EventKind::BackupFailed => ("backup_failed", "BackupFailed"),
        }
    }

    /// The Kubernetes Event action (what storekeeper was doing), PascalCase.
    pub fn action(self) -> &'static str {
        match self {
            EventKind::Installing | EventKind::Created => "Install",
            EventKind::Upgrading | EventKind::Upgraded => "Upgrade",
            EventKind::Ready | EventKind::Failed => "Reconcile",
            EventKind::Deleting | EventKind::Deleted | EventKind::PendingDeletion => "Delete",
            EventKind::Blocked => "Guard",
            EventKind::Invalid => "Validate",
            EventKind::Suspended => "Suspend",
            EventKind::Resumed => "Resume",
            EventKind::BackupFailed => "Backup",
        }
    }

    /// Whether this needs an operator's attention (Kubernetes `Warning`, webhook
    /// `severity: "warning"`); the others are `Normal` / `"info"`.
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            EventKind::Failed | EventKind::Blocked | EventKind::Invalid | EventKind::BackupFailed
        )
    }
}

/// One thing that happened to one store, as every outlet sees it. Never holds a secret: the
/// reason is the human message the status shows, the code a bounded error or guard name.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreEvent {
    pub kind: EventKind,
    pub store: String,
    /// The store's namespace (`store-<name>`): where its Kubernetes Events go.
    pub namespace: String,
    /// `woocommerce` or `medusa`, when the store file could be read.
    pub engine: Option<&'static str>,
    /// The store's phase after this event (`Phase::as_str`).
    pub phase: &'static str,
    /// A human message; never a secret.
    pub reason: String,
    /// A bounded error or guard code (`helm_timeout`, `too_many_deletions`...).
    pub code: Option<&'static str>,
    /// The source revision the store was planned from.
    pub revision: Option<String>,
    /// The shop's public URL.
    pub url: Option<String>,
    pub at: jiff::Timestamp,
    /// Whether the store's namespace still exists (not after a deletion, nor after a failed
    /// first install removed the namespace it had made): Events go to `default` otherwise.
    pub namespace_exists: bool,
}

impl StoreEvent {
    /// An event happening now, with the optional fields empty.
    pub fn new(
        kind: EventKind,
        store: impl Into<String>,
        namespace: impl Into<String>,
        phase: &'static str,
        reason: impl Into<String>,
    ) -> StoreEvent {
        StoreEvent {
            kind,
            store: store.into(),
            namespace: namespace.into(),
            engine: None,
            phase,
            reason: reason.into(),
            code: None,
            revision: None,
            url: None,
            at: jiff::Timestamp::now(),
            namespace_exists: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_parse_back() {
        let mut seen = std::collections::BTreeSet::new();
        for k in EventKind::ALL {
            let name = k.as_str();
            assert!(seen.insert(name), "duplicate {name}");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            let parsed: EventKind =
                serde_json::from_value(serde_json::json!(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(parsed, k);
            assert_eq!(k.reason().replace('_', "").to_lowercase(), name.replace('_', ""));
            assert!(k.reason().len() <= 128 && k.action().len() <= 128);
        }
    }
}
