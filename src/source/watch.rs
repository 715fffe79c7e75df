//! Watches the store directory and signals "something changed, re-read it".
//!
//! The watcher only *signals*; it never reads or parses (STYLE habit 6, after Vector's
//! `config/watcher.rs`). Besides the signal, it records which store files the events named, in a
//! set the reader drains ([`DirWatcher::take_changes`]), so that a re-read looks only at those
//! files. Whenever events may have been lost — the kernel queue overflowed, the watcher failed or
//! was re-created, the directory was replaced or is not watched right now — it says "everything"
//! instead, and the reader re-stats the whole directory. Names are recorded on notify's thread,
//! as each event arrives and before the debounced signal, so a read that drains them can only be
//! early, never miss one: an event that arrives after a drain is kept for the next read, which
//! its own signal causes. One pending signal is therefore enough and the channel may be full.
//!
//! Two non-recursive watches are kept: the directory itself (store files appearing, changing,
//! vanishing, renamed) and its parent, filtered to events on the directory's own name, so that a
//! directory deleted and created again — or replaced by a rename, as deployment tools do — is
//! noticed and watched again. Editors' atomic saves (write `.x.toml.swp`, rename over `x.toml`)
//! surface as one rename onto a store file name; the temp files themselves are ignored by
//! [`dir::is_store_file`], and the debounce folds the burst into one signal.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{EventKind, MetadataKind, ModifyKind};
use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{SourceError, dir};

/// A burst of events never postpones the signal by more than this many debounce periods, so a
/// file being rewritten continuously still gets read now and then.
const MAX_DELAY_FACTOR: u32 = 10;
/// While the directory cannot be watched (it is missing, or the watcher failed), retry this often
/// at first, backing off to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// What an event means for the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// A store file was created, written, renamed or removed.
    Store,
    /// The directory itself was created, removed, renamed or replaced: watch it again.
    DirReplaced,
    /// The kernel queue overflowed; anything may have happened.
    Rescan,
}

#[derive(Debug)]
enum Msg {
    Trigger(Trigger),
    Error(notify::Error),
}

/// What changed in the store directory since the reader last looked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// File names (in the directory) of store files that were created, written, renamed or
    /// removed.
    pub names: BTreeSet<OsString>,
    /// Events may have been missed: every file must be looked at.
    pub everything: bool,
}

impl Changes {
    /// "Look at every file": what a reader without a watcher must assume.
    pub fn everything() -> Changes {
        Changes {
            names: BTreeSet::new(),
            everything: true,
        }
    }
}

/// The state shared by notify's thread (which records), the watcher task (which keeps the watch
/// alive) and the reader (which drains).
#[derive(Debug, Default)]
struct Shared {
    changes: Changes,
    /// Whether the directory itself is watched right now; while not, every read is a full one.
    watching: bool,
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // The data is a set of names and two flags, valid after any panic elsewhere.
    shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// More names than this pending at once (nobody reads, or a deployment rewrote the directory)
/// are dropped for "everything": a full re-stat is cheaper than a huge set, and bounded.
const MAX_NAMES: usize = 65_536;

/// Records what an event means for the reader; see the module docs.
fn record(shared: &Mutex<Shared>, dir: &Path, trigger: Trigger, event: &Event) {
    let mut s = lock(shared);
    match trigger {
        Trigger::Store if !s.changes.everything => {
            let names = store_names(dir, event);
            s.changes.names.extend(names);
            if s.changes.names.len() > MAX_NAMES {
                s.changes.names.clear();
                s.changes.everything = true;
            }
        }
        // Everything will be looked at anyway.
        Trigger::Store => {}
        Trigger::DirReplaced | Trigger::Rescan => {
            s.changes.names.clear();
            s.changes.everything = true;
        }
    }
}

/// The names of the store files directly in `dir` that an event names.
fn store_names<'e>(dir: &'e Path, event: &'e Event) -> impl Iterator<Item = OsString> + 'e {
    event
        .paths
        .iter()
        .filter(move |p| p.parent() == Some(dir))
        .filter_map(|p| p.file_name())
        .filter(|n| dir::is_store_file(&n.to_string_lossy()))
        .map(OsString::from)
}

/// Decides whether an event concerns the store directory. Runs on notify's thread, so it only
/// looks at paths.
fn classify(dir: &Path, event: &Event) -> Option<Trigger> {
    if event.need_rescan() {
        return Some(Trigger::Rescan);
    }
    match event.kind {
        // Opens and closes happen every time the daemon itself reads the directory; treating them
        // as changes would make every re-read trigger the next one.
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => {
            return None;
        }
        _ => {}
    }
    if event.paths.iter().any(|p| p == dir) {
        return Some(Trigger::DirReplaced);
    }
    store_names(dir, event).next().map(|_| Trigger::Store)
}

/// Keeps the store directory watched; see the module docs. Dropping it stops the watch.
pub struct DirWatcher {
    task: tokio::task::JoinHandle<()>,
    shared: Arc<Mutex<Shared>>,
}

impl Drop for DirWatcher {
    fn drop(&mut self) {
        // The task owns the notify watcher, so aborting it also releases the inotify descriptor.
        self.task.abort();
    }
}

impl DirWatcher {
    /// Starts watching `dir` (see the module docs). The notify watcher exists when this returns,
    /// so no change made afterwards is missed. A missing directory is not an error: it is watched
    /// for through its parent. Fails only when no watcher can be created at all (e.g. the
    /// inotify instance limit) or when called outside a tokio runtime.
    pub fn spawn(dir: PathBuf, debounce: Duration, tx: mpsc::Sender<()>) -> Result<DirWatcher, SourceError> {
        let watch_err = |source| SourceError::Watch {
            path: dir.clone(),
            source,
        };
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| watch_err(notify::Error::generic("no tokio runtime to run the watcher on")))?;
        // notify reports paths under the path it was given; an absolute one makes the parent
        // well-defined and the comparisons in `classify` exact.
        let abs = std::path::absolute(&dir).map_err(|e| watch_err(notify::Error::io(e)))?;
        let (events, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut state = Watching {
            parent: abs.parent().map(Path::to_path_buf),
            dir: abs,
            events,
            shared: Arc::clone(&shared),
            watcher: None,
            dir_watched: false,
        };
        state.establish().map_err(watch_err)?;
        let task = runtime.spawn(state.run(rx, tx, debounce));
        Ok(DirWatcher { task, shared })
    }

    /// Drains what the events named since the last call. `everything` is set when events may
    /// have been missed since then, and on every call while the directory is not watched.
    pub fn take_changes(&self) -> Changes {
        let mut s = lock(&self.shared);
        let mut changes = std::mem::take(&mut s.changes);
        changes.everything |= !s.watching;
        changes
    }
}

struct Watching {
    dir: PathBuf,
    parent: Option<PathBuf>,
    /// Cloned into each watcher's handler; holding one here keeps `rx` open for the task's life.
    events: mpsc::UnboundedSender<Msg>,
    /// Cloned into each watcher's handler, which records changes as events arrive.
    shared: Arc<Mutex<Shared>>,
    watcher: Option<RecommendedWatcher>,
    /// Whether the directory itself (not only its parent) is currently watched.
    dir_watched: bool,
}

impl Watching {
    /// Creates a fresh watcher (dropping the old one first, releasing its descriptor) and adds
    /// the parent and directory watches. Errs only when no watcher could be created. Either way
    /// the reader is told to look at everything: events may have been missed meanwhile.
    fn establish(&mut self) -> Result<(), notify::Error> {
        self.watcher = None;
        self.dir_watched = false;
        lock(&self.shared).watching = false;
        let result = self.watch();
        let mut s = lock(&self.shared);
        s.watching = self.watcher.is_some() && self.dir_watched;
        s.changes.everything = true;
        result
    }

    fn watch(&mut self) -> Result<(), notify::Error> {
        let dir = self.dir.clone();
        let events = self.events.clone();
        let shared = Arc::clone(&self.shared);
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<Event>| {
            let msg = match res {
                Ok(event) => match classify(&dir, &event) {
                    Some(t) => {
                        record(&shared, &dir, t, &event);
                        Msg::Trigger(t)
                    }
                    None => return,
                },
                Err(e) => {
                    let mut s = lock(&shared);
                    s.changes.names.clear();
                    s.changes.everything = true;
                    Msg::Error(e)
                }
            };
            // The receiver is gone only when the watcher is being dropped.
            let _ = events.send(msg);
        })?;
        if let Some(parent) = &self.parent
            && let Err(e) = watcher.watch(parent, RecursiveMode::NonRecursive)
        {
            // Without it, a re-created directory is found by the retry timer instead.
            tracing::debug!(path = %parent.display(), error = %e, "Cannot watch the parent of the store directory");
        }
        match watcher.watch(&self.dir, RecursiveMode::NonRecursive) {
            Ok(()) => self.dir_watched = true,
            Err(e) => {
                tracing::warn!(path = %self.dir.display(), error = %e, "Cannot watch the store directory; retrying");
            }
        }
        self.watcher = Some(watcher);
        Ok(())
    }

    fn recreate(&mut self) {
        if let Err(e) = self.establish() {
            tracing::warn!(path = %self.dir.display(), error = %e, "Cannot create a filesystem watcher; retrying");
        }
    }

    /// Applies one message; returns whether it calls for a re-read.
    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Trigger(Trigger::Store) => true,
            Msg::Trigger(Trigger::Rescan) => {
                tracing::debug!(path = %self.dir.display(), "Watcher queue overflowed; re-reading");
                true
            }
            Msg::Trigger(Trigger::DirReplaced) => {
                tracing::info!(path = %self.dir.display(), "Store directory replaced; watching it again");
                self.recreate();
                true
            }
            Msg::Error(e) => {
                // Recreate and re-read speculatively: whatever broke may have eaten events.
                tracing::warn!(path = %self.dir.display(), error = %e, "Watcher error; recreating it");
                self.recreate();
                true
            }
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>, tx: mpsc::Sender<()>, debounce: Duration) {
        let mut retry = RETRY_MIN;
        loop {
            let healthy = self.watcher.is_some() && self.dir_watched;
            let mut pending = if healthy {
                retry = RETRY_MIN;
                match rx.recv().await {
                    Some(msg) => self.handle(msg),
                    None => return,
                }
            } else {
                tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(msg) => self.handle(msg),
                        None => return,
                    },
                    () = tokio::time::sleep(retry) => {
                        self.recreate();
                        retry = (retry * 2).min(RETRY_MAX);
                        // Events may have been missed while unwatched.
                        self.watcher.is_some() && self.dir_watched
                    }
                }
            };
            if !pending {
                continue;
            }
            // Wait for a quiet period, folding further events into this one signal.
            let cap = Instant::now() + debounce * MAX_DELAY_FACTOR;
            while pending {
                let wait = debounce.min(cap.saturating_duration_since(Instant::now()));
                match tokio::time::timeout(wait, rx.recv()).await {
                    Ok(Some(msg)) => {
                        self.handle(msg);
                        if Instant::now() >= cap {
                            pending = false;
                        }
                    }
                    Ok(None) => return,
                    Err(_) => pending = false,
                }
            }
            match tx.try_send(()) {
                // Full: a re-read is already pending and will see this change too.
                Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
                Err(mpsc::error::TrySendError::Closed(())) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, CreateKind, DataChange, RemoveKind, RenameMode};

    use super::*;

    fn ev(kind: EventKind, paths: &[&str]) -> Event {
        paths
            .iter()
            .fold(Event::new(kind), |e, p| e.add_path(PathBuf::from(p)))
    }

    #[test]
    fn store_file_changes_trigger_and_temp_files_do_not() {
        let dir = Path::new("/srv/stores.d");
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert_eq!(
            classify(dir, &ev(write, &["/srv/stores.d/shop.toml"])),
            Some(Trigger::Store)
        );
        for tmp in [".shop.toml.swp", "shop.toml~", "4913", ".#shop.toml", "shop.yaml"] {
            let p = format!("/srv/stores.d/{tmp}");
            assert_eq!(classify(dir, &ev(write, &[&p])), None, "{tmp}");
        }
        // A store file in a subdirectory or a sibling directory is not ours.
        assert_eq!(classify(dir, &ev(write, &["/srv/stores.d/sub/a.toml"])), None);
        assert_eq!(classify(dir, &ev(write, &["/srv/other/a.toml"])), None);
    }

    #[test]
    fn renames_count_when_either_side_is_a_store_file() {
        let dir = Path::new("/srv/stores.d");
        let both = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        let atomic_save = ev(both, &["/srv/stores.d/.shop.toml.swp", "/srv/stores.d/shop.toml"]);
        assert_eq!(classify(dir, &atomic_save), Some(Trigger::Store));
        let hide = ev(both, &["/srv/stores.d/shop.toml", "/srv/stores.d/.shop.toml"]);
        assert_eq!(classify(dir, &hide), Some(Trigger::Store));
        let removed = ev(EventKind::Remove(RemoveKind::File), &["/srv/stores.d/shop.toml"]);
        assert_eq!(classify(dir, &removed), Some(Trigger::Store));
    }

    #[test]
    fn events_record_store_file_names_and_too_many_become_everything() {
        let dir = Path::new("/srv/stores.d");
        let shared = Mutex::new(Shared::default());
        let both = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        let save = ev(both, &["/srv/stores.d/.shop.toml.swp", "/srv/stores.d/shop.toml"]);
        record(&shared, dir, Trigger::Store, &save);
        let names: Vec<_> = lock(&shared).changes.names.iter().cloned().collect();
        assert_eq!(names, [OsString::from("shop.toml")]);

        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        for i in 0..=MAX_NAMES {
            let p = format!("/srv/stores.d/s{i}.toml");
            record(&shared, dir, Trigger::Store, &ev(write, &[&p]));
        }
        let s = lock(&shared);
        assert!(s.changes.everything && s.changes.names.is_empty());
    }

    #[test]
    fn reads_are_ignored_and_the_directory_itself_is_noticed() {
        let dir = Path::new("/srv/stores.d");
        let open = EventKind::Access(AccessKind::Open(notify::event::AccessMode::Any));
        assert_eq!(classify(dir, &ev(open, &["/srv/stores.d/shop.toml"])), None);
        assert_eq!(classify(dir, &ev(open, &["/srv/stores.d"])), None);
        let mkdir = EventKind::Create(CreateKind::Folder);
        assert_eq!(
            classify(dir, &ev(mkdir, &["/srv/stores.d"])),
            Some(Trigger::DirReplaced)
        );
        let rescan = Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert_eq!(classify(dir, &rescan), Some(Trigger::Rescan));
    }
}
