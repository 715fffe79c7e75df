//! Desired-state sources: turn store files into a [`Snapshot`].
//!
//! A source that cannot be read yields an error, never an empty snapshot: an unreadable source
//! must not look like "no stores" (argo-cd#18212 uninstalled apps during a Git outage). Within a
//! readable source, a file that does not parse is still named by its file stem and carried as an
//! `Err`, so the reconciler leaves that store exactly as it is.

pub mod dir;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::spec::{SpecError, StoreName, StoreSpec};

/// One consistent read of a source.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Where the snapshot came from: a Git commit SHA, or `dir:<content hash>`.
    pub revision: String,
    pub stores: BTreeMap<StoreName, Result<StoreSpec, SpecError>>,
    /// Store files whose name is not a valid store name: they cannot be tied to a store, so their
    /// presence blocks every deletion (the file might be a renamed store).
    pub unnamed: Vec<SpecError>,
    /// The file each store came from, for messages.
    pub files: BTreeMap<StoreName, PathBuf>,
}

impl Snapshot {
    pub fn specs(&self) -> impl Iterator<Item = &StoreSpec> {
        self.stores.values().filter_map(|r| r.as_ref().ok())
    }

    pub fn errors(&self) -> impl Iterator<Item = &SpecError> {
        self.unnamed
            .iter()
            .chain(self.stores.values().filter_map(|r| r.as_ref().err()))
    }
}

/// Why a source could not be read at all. Retryable: the last good snapshot stays in force.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read store directory {path}: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store directory {0} is not a directory")]
    NotADirectory(PathBuf),
}

impl SourceError {
    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::Directory { .. } | SourceError::NotADirectory(_) => "directory_unreadable",
        }
    }
}
