//! The configured source as the daemon drives it: a watched directory (looked at on every
//! trigger and every cycle, but only where the watcher saw changes) or a Git repository (fetched
//! on its poll interval and on webhook).
//!
//! [`Source::poll`] says whether anything changed since the last successful read: an unchanged
//! source hands back the very same `Arc<Snapshot>` ([`Poll::Unchanged`]), so an idle cycle can
//! skip everything that depends only on the snapshot. A changed snapshot still shares every
//! unchanged store's `Arc<StoreSpec>` with the previous one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::dir::DirSource;
use super::git::GitSource;
use super::watch::{Changes, DirWatcher};
use super::{Snapshot, SourceError, dir};
use crate::config::{Settings, SourceSettings};
use crate::spec::SpecDefaults;

/// Quiet period after the last file event before the directory is re-read.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// What one [`Source::poll`] found.
#[derive(Debug)]
pub enum Poll {
    /// No read was due (a Git source between polls): the last snapshot stands.
    NotDue,
    /// Read successfully, and nothing differs from the last successful read: this is the same
    /// `Arc` it returned (also after failed reads in between).
    Unchanged(Arc<Snapshot>),
    /// Read successfully, and something differs from the last successful read (or there was
    /// none). Unchanged stores keep their `Arc<StoreSpec>`; a Git commit that leaves the store
    /// directory as it was differs only in `revision`.
    Changed(Arc<Snapshot>),
    /// The source could not be read; the last good snapshot stays in force. Retryable.
    Failed(SourceError),
}

/// The configured source; see the module docs.
pub struct Source {
    kind: Kind,
    /// What the last successful read returned, to tell `Unchanged` from `Changed`.
    last: Option<Arc<Snapshot>>,
}

enum Kind {
    Directory {
        reader: Arc<Mutex<DirSource>>,
        /// Kept alive for its events, and asked which files they named; `None` if the watcher
        /// could not start (then every read looks at every file).
        watcher: Option<DirWatcher>,
    },
    Git {
        git: Arc<Mutex<GitSource>>,
        poll: Duration,
        last_fetch: Option<Instant>,
        fetch_now: Arc<AtomicBool>,
    },
}

impl Source {
    /// Opens the source; file events and webhook deliveries wake the loop through `trigger`.
    pub fn open(settings: &Settings, trigger: mpsc::Sender<()>) -> (Source, Option<SourceError>) {
        let (kind, error) = match &settings.source {
            SourceSettings::Directory { path } => {
                let (watcher, error) = match DirWatcher::spawn(path.clone(), DEBOUNCE, trigger) {
                    Ok(w) => (Some(w), None),
                    Err(e) => (None, Some(e)),
                };
                let reader = Arc::new(Mutex::new(DirSource::new(path.clone())));
                (Kind::Directory { reader, watcher }, error)
            }
            SourceSettings::Git(g) => (
                Kind::Git {
                    git: Arc::new(Mutex::new(GitSource::new((**g).clone()))),
                    poll: g.poll_interval,
                    last_fetch: None,
                    fetch_now: Arc::new(AtomicBool::new(false)),
                },
                None,
            ),
        };
        (Source { kind, last: None }, error)
    }

    /// A handle the webhook sets to ask for a fetch at the next wake-up.
    pub fn fetch_flag(&self) -> Option<Arc<AtomicBool>> {
        match &self.kind {
            Kind::Git { fetch_now, .. } => Some(Arc::clone(fetch_now)),
            Kind::Directory { .. } => None,
        }
    }

    /// Reads the source if a read is due: a directory always (the watcher narrows it to the
    /// files that changed, and a periodic full re-stat makes a missed event harmless), Git when
    /// its poll interval passed or a fetch was requested.
    pub async fn poll(&mut self, defaults: &SpecDefaults) -> Poll {
        let result = match &mut self.kind {
            Kind::Directory { reader, watcher } => {
                // Drained before the read starts: whatever arrives later stays for the next one.
                let changes = watcher
                    .as_ref()
                    .map_or_else(Changes::everything, DirWatcher::take_changes);
                let (reader, defaults) = (Arc::clone(reader), defaults.clone());
                join(tokio::task::spawn_blocking(move || read_dir(&reader, &defaults, &changes)).await)
            }
            Kind::Git {
                git,
                poll,
                last_fetch,
                fetch_now,
            } => {
                let due = last_fetch.is_none_or(|t| t.elapsed() >= *poll)
                    || fetch_now.swap(false, Ordering::SeqCst);
                if !due {
                    return Poll::NotDue;
                }
                *last_fetch = Some(Instant::now());
                let (git, defaults) = (Arc::clone(git), defaults.clone());
                join(tokio::task::spawn_blocking(move || sync_git(&git, &defaults)).await)
            }
        };
        match result {
            Err(e) => Poll::Failed(e),
            Ok(snap) if self.last.as_ref().is_some_and(|l| Arc::ptr_eq(l, &snap)) => Poll::Unchanged(snap),
            Ok(snap) => {
                self.last = Some(Arc::clone(&snap));
                Poll::Changed(snap)
            }
        }
    }
}

/// Reads the directory. After a panic in an earlier read the cache may be half-updated, so it
/// is dropped and this read starts from scratch.
fn read_dir(
    reader: &Mutex<DirSource>,
    defaults: &SpecDefaults,
    changes: &Changes,
) -> Result<Arc<Snapshot>, SourceError> {
    let mut guard = reader.lock().unwrap_or_else(|poisoned| {
        tracing::warn!("An earlier directory read failed unexpectedly; reading everything again");
        let mut guard = poisoned.into_inner();
        *guard = DirSource::new(guard.root().to_path_buf());
        guard
    });
    reader.clear_poison();
    guard.read(defaults, changes)
}

/// Syncs the repository; after a panic in an earlier sync the tree cache is dropped (the
/// repository itself is checked by the sync as always).
fn sync_git(git: &Mutex<GitSource>, defaults: &SpecDefaults) -> Result<Arc<Snapshot>, SourceError> {
    let mut guard = git.lock().unwrap_or_else(|poisoned: PoisonError<_>| {
        tracing::warn!("An earlier Git sync failed unexpectedly; reading the tree again");
        let mut guard = poisoned.into_inner();
        guard.forget();
        guard
    });
    git.clear_poison();
    guard.sync(defaults)
}

fn join(
    r: Result<Result<Arc<Snapshot>, SourceError>, tokio::task::JoinError>,
) -> Result<Arc<Snapshot>, SourceError> {
    r.unwrap_or(Err(SourceError::Poisoned))
}

/// One read of the configured source, for the one-shot commands (`plan`, `apply`).
pub fn read_once(settings: &Settings) -> Result<Snapshot, SourceError> {
    let defaults = settings.spec_defaults();
    match &settings.source {
        SourceSettings::Directory { path } => dir::read(path, &defaults),
        SourceSettings::Git(g) => {
            let snap = GitSource::new((**g).clone()).sync(&defaults)?;
            // The source is gone, so this is the only reference and nothing is copied.
            Ok(Arc::unwrap_or_clone(snap))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const WOO: &str = "engine = \"woocommerce\"\n";

    fn directory_settings(dir: &Path) -> Settings {
        let src = format!(
            "[source]\ndirectory = '{}'\n[cluster]\nbase_domain = 'example.com'\n",
            dir.display()
        );
        Settings::parse(Path::new("storekeeper.toml"), &src).expect("config")
    }

    async fn next_signal(rx: &mut mpsc::Receiver<()>) {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a watcher signal")
            .expect("open");
    }

    #[tokio::test]
    async fn poll_tells_unchanged_from_changed() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("stores.d");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("shop.toml"), WOO).expect("write");
        let settings = directory_settings(&dir);
        let defaults = SpecDefaults {
            base_domain: "example.com".into(),
            policy: Default::default(),
        };
        let (tx, mut rx) = mpsc::channel(1);
        let (mut source, error) = Source::open(&settings, tx);
        assert!(error.is_none(), "{error:?}");
        assert!(source.fetch_flag().is_none());

        let Poll::Changed(first) = source.poll(&defaults).await else {
            panic!("the first read is a change");
        };
        match source.poll(&defaults).await {
            Poll::Unchanged(s) => assert!(Arc::ptr_eq(&s, &first)),
            other => panic!("expected Unchanged, got {other:?}"),
        }

        std::fs::write(dir.join("blog.toml"), WOO).expect("write");
        next_signal(&mut rx).await;
        let Poll::Changed(second) = source.poll(&defaults).await else {
            panic!("a new file is a change");
        };
        assert_eq!(second.stores.len(), 2);

        // Gone, then back with the same files: a failure, then the same snapshot again.
        std::fs::remove_dir_all(&dir).expect("rm -r");
        next_signal(&mut rx).await;
        assert!(matches!(source.poll(&defaults).await, Poll::Failed(_)));
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("shop.toml"), WOO).expect("write");
        std::fs::write(dir.join("blog.toml"), WOO).expect("write");
        match source.poll(&defaults).await {
            Poll::Unchanged(s) => assert!(Arc::ptr_eq(&s, &second)),
            other => panic!("expected the last good snapshot, Unchanged; got {other:?}"),
        }
    }
}
