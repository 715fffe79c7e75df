//! Per-store status: held in memory, mirrored to a namespace annotation for the phases that come
//! from storekeeper's own operations.

use serde::Serialize;

/// Where a store stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Phase {
    Pending,
    Provisioning,
    Ready,
    Failed,
    Deleting,
    Invalid,
    Suspended,
    Blocked,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Pending,
        Phase::Provisioning,
        Phase::Ready,
        Phase::Failed,
        Phase::Deleting,
        Phase::Invalid,
        Phase::Suspended,
        Phase::Blocked,
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
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreStatus {
    pub phase: Phase,
    /// `woocommerce` or `medusa`, when the store file could be read.
    pub engine: Option<&'static str>,
    /// A human message: the plan's reason or the error.
    pub reason: String,
    pub last_transition: jiff::Timestamp,
    pub last_error: Option<String>,
    pub revision: Option<String>,
}

impl StoreStatus {
    pub fn new(phase: Phase, reason: impl Into<String>, revision: Option<String>) -> Self {
        StoreStatus {
            phase,
            engine: None,
            reason: reason.into(),
            last_transition: jiff::Timestamp::now(),
            last_error: None,
            revision,
        }
    }

    /// The annotation form: compact JSON.
    pub fn annotation(&self) -> String {
        serde_json::json!({
            "phase": self.phase.as_str(),
            "reason": self.reason,
            "since": self.last_transition.to_string(),
            "revision": self.revision,
        })
        .to_string()
    }
}
