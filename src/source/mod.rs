//! Desired-state sources: turn store files into a [`Snapshot`].
//!
//! A source that cannot be read yields an error, never an empty snapshot: an unreadable source
//! must not look like "no stores" (argo-cd#18212 uninstalled apps during a Git outage). Within a
//! readable source, a file that does not parse is still named by its file stem and carried as an
//! `Err`, so the reconciler leaves that store exactly as it is.
//!
//! Both sources cache what they parsed, so a read costs what changed rather than the number of
//! stores: the directory by file identity ([`dir::DirSource`], narrowed by the watcher's events),
//! Git by tree and blob id ([`git::GitSource`]). A cached read equals a cold read of the same
//! files exactly (`tests/source_cache.rs`); an unchanged source returns the same `Arc<Snapshot>`,
//! and an unchanged store file the same `Arc<StoreSpec>`, so callers can skip work by pointer.

pub mod dir;
pub mod git;
pub mod live;
pub mod watch;
pub mod webhook;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::spec::{SpecError, StoreName, StoreSpec};

/// One consistent read of a source.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Where the snapshot came from: a Git commit SHA, or `dir:<content hash>`.
    pub revision: String,
    /// Specs are shared (`Arc`): a cached source hands out the same spec for an unchanged file,
    /// so consumers can memoise per-spec work by pointer identity.
    pub stores: BTreeMap<StoreName, Result<Arc<StoreSpec>, SpecError>>,
    /// Store files whose name is not a valid store name: they cannot be tied to a store, so their
    /// presence blocks every deletion (the file might be a renamed store).
    pub unnamed: Vec<SpecError>,
    /// The file each store came from, for messages.
    pub files: BTreeMap<StoreName, PathBuf>,
}

impl Snapshot {
    pub fn specs(&self) -> impl Iterator<Item = &StoreSpec> {
        self.stores.values().filter_map(|r| r.as_deref().ok())
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
    /// A reader task panicked: a bug, reported rather than hidden. The next read starts from an
    /// empty cache.
    #[error("the source reader failed unexpectedly")]
    Poisoned,
    #[error("cannot read store directory {path}: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store directory {0} is not a directory")]
    NotADirectory(PathBuf),
    /// The filesystem watcher could not be created (e.g. the inotify instance limit). Retryable;
    /// the periodic full re-read still runs.
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    /// The remote could not be fetched (unreachable, refused, protocol error). Retryable.
    #[error("cannot fetch {url}: {source}")]
    GitFetch {
        /// The remote URL with any user-info removed.
        url: String,
        #[source]
        source: git2::Error,
    },
    /// The fetch ran past its deadline and was aborted. Retryable.
    #[error("fetching {url} timed out after {}s", .after.as_secs())]
    GitTimeout { url: String, after: std::time::Duration },
    /// Credentials were missing, unreadable or refused. Retryable once the operator fixes them.
    #[error("authentication to {url} failed: {message}")]
    GitAuth { url: String, message: String },
    /// The SSH host key is not in known_hosts or does not match it. Retryable once fixed; never
    /// bypassed, since a wrong host could serve any store files it likes.
    #[error("host key of {host} rejected: {message}")]
    GitHostKey { host: String, message: String },
    /// The followed branch, tag or commit does not exist on the remote (any more). Retryable.
    #[error("{reference} not found in {url}")]
    GitRefMissing { url: String, reference: String },
    /// The local repository is unusable even after deleting it and cloning again. Retryable.
    #[error("local repository {path} is unusable: {message}")]
    GitCheckout { path: PathBuf, message: String },
    /// The commit does not contain the configured store directory. Not "no stores": a typo in
    /// `subpath` or a moved directory must not delete every store. Retryable.
    #[error("{subpath} is not a directory in commit {revision}")]
    GitSubpathMissing { subpath: PathBuf, revision: String },
}

impl SourceError {
    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::Poisoned => "internal",
            SourceError::Directory { .. } | SourceError::NotADirectory(_) => "directory_unreadable",
            SourceError::Watch { .. } => "watch",
            SourceError::GitFetch { .. } => "git_fetch",
            SourceError::GitTimeout { .. } => "git_timeout",
            SourceError::GitAuth { .. } => "git_auth",
            SourceError::GitHostKey { .. } => "git_host_key",
            SourceError::GitRefMissing { .. } => "git_ref_missing",
            SourceError::GitCheckout { .. } => "git_checkout",
            SourceError::GitSubpathMissing { .. } => "git_subpath_missing",
        }
    }
}
