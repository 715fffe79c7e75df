//! The configured source as the daemon drives it: a watched directory (re-read on every trigger
//! and every cycle) or a Git repository (fetched on its poll interval and on webhook).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::git::GitSource;
use super::watch::DirWatcher;
use super::{Snapshot, SourceError, dir};
use crate::config::{Settings, SourceSettings};
use crate::spec::SpecDefaults;

/// Quiet period after the last file event before the directory is re-read.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

pub enum Source {
    Directory {
        path: PathBuf,
        /// Kept alive for its events; `None` if the watcher could not start (the periodic
        /// re-read still works).
        _watcher: Option<DirWatcher>,
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
        match &settings.source {
            SourceSettings::Directory { path } => match DirWatcher::spawn(path.clone(), DEBOUNCE, trigger) {
                Ok(w) => (
                    Source::Directory {
                        path: path.clone(),
                        _watcher: Some(w),
                    },
                    None,
                ),
                Err(e) => (
                    Source::Directory {
                        path: path.clone(),
                        _watcher: None,
                    },
                    Some(e),
                ),
            },
            SourceSettings::Git(g) => (
                Source::Git {
                    git: Arc::new(Mutex::new(GitSource::new((**g).clone()))),
                    poll: g.poll_interval,
                    last_fetch: None,
                    fetch_now: Arc::new(AtomicBool::new(false)),
                },
                None,
            ),
        }
    }

    /// A handle the webhook sets to ask for a fetch at the next wake-up.
    pub fn fetch_flag(&self) -> Option<Arc<AtomicBool>> {
        match self {
            Source::Git { fetch_now, .. } => Some(Arc::clone(fetch_now)),
            Source::Directory { .. } => None,
        }
    }

    /// Reads the source if a read is due: a directory always (it is cheap and makes a missed
    /// event harmless), Git when its poll interval passed or a fetch was requested. `None`:
    /// nothing was due, the last snapshot stands.
    pub async fn read(&mut self, defaults: &SpecDefaults) -> Option<Result<Snapshot, SourceError>> {
        match self {
            Source::Directory { path, .. } => {
                let (path, defaults) = (path.clone(), defaults.clone());
                Some(join(
                    tokio::task::spawn_blocking(move || dir::read(&path, &defaults)).await,
                ))
            }
            Source::Git {
                git,
                poll,
                last_fetch,
                fetch_now,
            } => {
                let due = last_fetch.is_none_or(|t| t.elapsed() >= *poll)
                    || fetch_now.swap(false, Ordering::SeqCst);
                if !due {
                    return None;
                }
                *last_fetch = Some(Instant::now());
                let (git, defaults) = (Arc::clone(git), defaults.clone());
                Some(join(
                    tokio::task::spawn_blocking(move || match git.lock() {
                        Ok(mut g) => g.sync(&defaults),
                        Err(_) => Err(SourceError::Poisoned),
                    })
                    .await,
                ))
            }
        }
    }
}

fn join(r: Result<Result<Snapshot, SourceError>, tokio::task::JoinError>) -> Result<Snapshot, SourceError> {
    r.unwrap_or(Err(SourceError::Poisoned))
}

/// One read of the configured source, for the one-shot commands (`plan`, `apply`).
pub fn read_once(settings: &Settings) -> Result<Snapshot, SourceError> {
    let defaults = settings.spec_defaults();
    match &settings.source {
        SourceSettings::Directory { path } => dir::read(path, &defaults),
        SourceSettings::Git(g) => GitSource::new((**g).clone()).sync(&defaults),
    }
}
