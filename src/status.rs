//! Per-store status: held in memory, mirrored to a namespace annotation for the phases that come
//! from storekeeper's own operations. Only [`crate::record`] writes either.

use serde::{Deserialize, Serialize};

/// Where a store stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    /// Known and about to be acted on (queued), or rolled back and about to roll forward.
    Pending,
    Provisioning,
    Ready,
    Failed,
    Deleting,
    Invalid,
    Suspended,
    Blocked,
    /// The store's file is gone; it keeps serving until its deletion deadline.
    PendingDeletion,
}

impl Phase {
    pub const ALL: [Phase; 9] = [
        Phase::Pending,
        Phase::Provisioning,
        Phase::Ready,
        Phase::Failed,
        Phase::Deleting,
        Phase::Invalid,
        Phase::Suspended,
        Phase::Blocked,
        Phase::PendingDeletion,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Provisioning => "Provisioning",
            Phase::Ready => "Ready",
            Phase::Failed => "Failed",
            Phase::Deleting => "Deleting",
            Phase::Invalid => "Invalid",
            Phase::Suspended => "Suspended",
            Phase::Blocked => "Blocked",
            Phase::PendingDeletion => "PendingDeletion",
        }
    }
}

/// What the daemon knows of one store right now.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreStatus {
    pub phase: Phase,
    /// `woocommerce` or `medusa`, when the store file could be read.
    pub engine: Option<&'static str>,
    /// The store file's `owner` (or the namespace's owner label).
    pub owner: Option<String>,
    /// The store's URL (from its host), when the store file could be read.
    pub url: Option<String>,
    /// The shop's title (from the store file).
    pub title: Option<String>,
    /// When the store's namespace was created (its age).
    pub created: Option<jiff::Timestamp>,
    /// A human message: the plan's reason or the error.
    pub reason: String,
    pub last_transition: jiff::Timestamp,
    /// The last failure's message; cleared by the next success.
    pub last_error: Option<String>,
    /// The last failure's bounded code (`helm_timeout`, `namespace_create`, ...).
    pub error_code: Option<&'static str>,
    pub revision: Option<String>,
    /// When a failed store is tried again (backoff), or when a queued store may start.
    pub next_attempt: Option<jiff::Timestamp>,
    /// When a store whose file is gone will be deleted (PendingDeletion).
    pub deletion_deadline: Option<jiff::Timestamp>,
    /// The exact command that unblocks the store, when one does (a blocked deletion).
    pub hint: Option<String>,
}

impl StoreStatus {
    pub fn new(phase: Phase, reason: impl Into<String>) -> Self {
        StoreStatus {
            phase,
            engine: None,
            owner: None,
            url: None,
            title: None,
            created: None,
            reason: reason.into(),
            last_transition: jiff::Timestamp::now(),
            last_error: None,
            error_code: None,
            revision: None,
            next_attempt: None,
            deletion_deadline: None,
            hint: None,
        }
    }

    /// The annotation form of this status.
    pub fn annotation(&self) -> StatusAnnotation {
        StatusAnnotation {
            phase: self.phase,
            reason: self.reason.clone(),
            since: self.last_transition,
            revision: self.revision.clone(),
            error: self.last_error.clone(),
            code: self.error_code.map(str::to_string),
        }
    }
}

/// The `storekeeper.dev/status` annotation: what `status --from-cluster` and the plan read back.
/// A typed struct rather than JSON text other modules search in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusAnnotation {
    pub phase: Phase,
    pub reason: String,
    pub since: jiff::Timestamp,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl StatusAnnotation {
    /// Compact JSON, as written to the namespace.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses the annotation; `None` for a missing or foreign value (treated as "unknown").
    pub fn parse(text: &str) -> Option<StatusAnnotation> {
        serde_json::from_str(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_round_trips_and_tolerates_older_forms() {
        let mut s = StoreStatus::new(Phase::Failed, "helm_timeout");
        s.last_error = Some("helm timed out".into());
        s.error_code = Some("helm_timeout");
        s.revision = Some("abc".into());
        let a = s.annotation();
        assert_eq!(StatusAnnotation::parse(&a.to_json()), Some(a));
        // The first wave wrote no error fields.
        let old = r#"{"phase":"Ready","reason":"deployed","since":"2026-11-22T14:00:00Z","revision":"r"}"#;
        assert_eq!(StatusAnnotation::parse(old).map(|a| a.phase), Some(Phase::Ready));
        assert_eq!(StatusAnnotation::parse("not json"), None);
    }
}
