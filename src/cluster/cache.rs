//! A watch-fed copy of every namespace, so that observing the cluster for a plan costs no API
//! request once the first list is in. kube-runtime's [`watcher`] does the list + watch, resumes
//! from the last resourceVersion after a dropped connection and lists again after `410 Gone`;
//! this module keeps only what a plan reads of each namespace ([`Entry`]), never whole objects.
//!
//! **Read-your-writes.** When an operation ends, the runner asks for a plan at once, and that plan
//! must see what the operation just wrote (the spec hash), or it would upgrade the store again.
//! Every namespace write the daemon makes reports the resourceVersion of its response
//! ([`NamespaceCache::wrote`]), and [`NamespaceCache::read`] answers only once the cache has
//! applied an event at least that new. The events of one watch come in resourceVersion order, so
//! an event at least as new as our write means everything up to our write is in. ResourceVersions
//! are compared as integers: Kubernetes 1.35 made that part of the API (KEP-5504, "comparable
//! resource versions": positive decimal integers, ordered within a resource), and etcd-backed
//! servers issued them so before. A version that is not such an integer turns the cache off for
//! good: every observation is a LIST again, which is always right.
//!
//! **When the cache cannot answer** ([`Miss`]) the caller LISTs: before the first list is
//! complete, during a re-list, after a watch error until the stream proves live again, or when our
//! own latest write has not shown up within [`WRITE_WAIT`]. A LIST that equals the cache object
//! for object (names and resourceVersions) proves the cache current up to the LIST
//! ([`NamespaceCache::check`]), which restores it on a quiet cluster where no event would.
//!
//! Changes made by anyone else (another client, a controller, an operator with kubectl) wake the
//! planning loop; the daemon's own writes do not (their operation's end already does).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::{Observed, ObservedStore};
use crate::spec::StoreName;

/// How long a read waits for the daemon's own latest write to arrive through the watch before
/// the caller LISTs instead. A watch event usually follows its write within milliseconds.
pub const WRITE_WAIT: Duration = Duration::from_secs(2);

/// What a plan needs of one namespace: its resourceVersion, and what [`ObservedStore`] makes of
/// it when it is one of ours (`None`: someone else's namespace, known by name only).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    rv: u64,
    store: Option<(StoreName, ObservedStore)>,
}

impl Entry {
    /// The namespace's name and entry; `None` when its resourceVersion is not comparable.
    pub(super) fn of(ns: &Namespace) -> Option<(String, Entry)> {
        let rv = parse_rv(ns.metadata.resource_version.as_deref()?)?;
        let name = ns.metadata.name.clone().unwrap_or_default();
        Some((
            name,
            Entry {
                rv,
                store: ObservedStore::from_namespace(ns),
            },
        ))
    }
}

/// What a plan sees, from namespaces in name order (as [`super::observed_from`] orders a LIST, so a
/// store label claimed twice resolves the same way from both).
fn observed<'a>(entries: impl Iterator<Item = (&'a String, &'a Entry)>) -> Observed {
    let mut o = Observed::default();
    for (name, e) in entries {
        match &e.store {
            Some((store, observed)) => {
                o.stores.insert(store.clone(), observed.clone());
            }
            None => {
                o.foreign.insert(name.clone());
            }
        }
    }
    o
}

/// A resourceVersion as KEP-5504 defines a comparable one: a positive decimal integer without
/// leading zeros.
fn parse_rv(rv: &str) -> Option<u64> {
    let digits = !rv.is_empty() && rv.bytes().all(|b| b.is_ascii_digit()) && !rv.starts_with('0');
    digits.then(|| rv.parse().ok()).flatten()
}

/// Why the cache cannot answer; the caller LISTs instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// The first list is not complete, a re-list is under way, or the watch failed and has not
    /// proved live since.
    NotSynced,
    /// The daemon's own latest write did not arrive within [`WRITE_WAIT`].
    Behind,
    /// The server's resourceVersions are not comparable integers.
    Incomparable,
    /// The watch task ended (a bug; logged).
    Stopped,
}

impl Miss {
    /// The `source` label of `storekeeper_cluster_observations_total` for the LIST it causes.
    pub fn code(self) -> &'static str {
        match self {
            Miss::NotSynced => "list_not_synced",
            Miss::Behind => "list_behind",
            Miss::Incomparable => "list_incomparable",
            Miss::Stopped => "list_stopped",
        }
    }
}

/// The cache's bookkeeping, apart from any I/O so that every rule is unit-tested directly.
#[derive(Debug, Default)]
pub(super) struct State {
    objects: BTreeMap<String, Entry>,
    /// A list in progress (between `Init` and `InitDone`); it replaces `objects` when complete.
    relist: Option<BTreeMap<String, Entry>>,
    /// A complete list has been applied.
    synced: bool,
    /// No watch error since the last event (or matching LIST).
    live: bool,
    incomparable: bool,
    stopped: bool,
    /// The newest resourceVersion applied: every event up to it is in.
    seen: u64,
    /// The newest resourceVersion of the daemon's own writes.
    written: u64,
    /// The daemon's writes not yet seen, to tell its own events from everyone else's.
    ours: BTreeSet<u64>,
    /// How many changes others made (see [`NamespaceCache::changes`]).
    foreign: u64,
}

impl State {
    /// Applies one watcher event. Returns whether someone other than the daemon changed
    /// something (the planning loop should look).
    pub(super) fn apply(&mut self, ev: Event<Namespace>) -> bool {
        match ev {
            Event::Init => {
                self.relist = Some(BTreeMap::new());
                false
            }
            Event::InitApply(ns) => {
                match Entry::of(&ns) {
                    Some((name, e)) => {
                        self.relist.get_or_insert_default().insert(name, e);
                    }
                    None => self.incomparable = true,
                }
                false
            }
            Event::InitDone => self.listed(),
            Event::Apply(ns) => match Entry::of(&ns) {
                Some((name, e)) => {
                    let rv = e.rv;
                    self.objects.insert(name, e);
                    self.advanced(rv)
                }
                None => {
                    self.incomparable = true;
                    false
                }
            },
            Event::Delete(ns) => {
                let name = ns.metadata.name.clone().unwrap_or_default();
                self.objects.remove(&name);
                match ns.metadata.resource_version.as_deref().and_then(parse_rv) {
                    Some(rv) => self.advanced(rv),
                    None => {
                        self.incomparable = true;
                        false
                    }
                }
            }
        }
    }

    /// A complete list replaces the objects. Whatever differs from before counts as a change by
    /// others (some of it may be the daemon's own writes folded into the list: one extra plan).
    fn listed(&mut self) -> bool {
        let fresh = self.relist.take().unwrap_or_default();
        let max = fresh.values().map(|e| e.rv).max().unwrap_or(0);
        let changed = fresh != self.objects;
        self.objects = fresh;
        self.synced = true;
        self.live = true;
        self.seen = self.seen.max(max);
        self.ours.retain(|rv| *rv > self.seen);
        if changed {
            self.foreign += 1;
        }
        changed
    }

    /// An event at `rv` arrived: the stream is live, and everything up to `rv` is in.
    fn advanced(&mut self, rv: u64) -> bool {
        self.live = true;
        self.seen = self.seen.max(rv);
        let ours = self.ours.remove(&rv);
        self.ours.retain(|r| *r > self.seen);
        if !ours {
            self.foreign += 1;
        }
        !ours
    }

    /// The watch failed; until an event or a matching LIST shows it live again, reads LIST.
    pub(super) fn failed(&mut self) {
        self.live = false;
    }

    /// The daemon wrote a namespace and the response carried `rv`.
    pub(super) fn wrote(&mut self, rv: Option<&str>) {
        match rv.and_then(parse_rv) {
            Some(rv) => {
                self.written = self.written.max(rv);
                if rv > self.seen {
                    self.ours.insert(rv);
                }
            }
            None => self.incomparable = true,
        }
    }

    /// Whether a read can be answered: `Ok(true)` now, `Ok(false)` once our writes arrive.
    fn answerable(&self) -> Result<bool, Miss> {
        if self.stopped {
            Err(Miss::Stopped)
        } else if self.incomparable {
            Err(Miss::Incomparable)
        } else if !self.synced || !self.live || self.relist.is_some() {
            Err(Miss::NotSynced)
        } else {
            Ok(self.seen >= self.written)
        }
    }

    pub(super) fn observed(&self) -> Observed {
        observed(self.objects.iter())
    }

    /// Compares a fresh LIST (its items, in any order, and its resourceVersion) with the cache.
    /// Equal object for object: the cache is current as of the LIST, so it is live again and
    /// caught up to the LIST's resourceVersion. Returns whether they were equal.
    pub(super) fn check(&mut self, items: &[Namespace], list_rv: Option<&str>) -> bool {
        if !self.synced || self.relist.is_some() || items.len() != self.objects.len() {
            return false;
        }
        let same = items.iter().all(|ns| {
            let name = ns.metadata.name.as_deref().unwrap_or_default();
            let rv = ns.metadata.resource_version.as_deref().and_then(parse_rv);
            rv.is_some() && self.objects.get(name).map(|e| e.rv) == rv
        });
        if same {
            self.live = true;
            if let Some(rv) = list_rv.and_then(parse_rv) {
                self.seen = self.seen.max(rv);
                self.ours.retain(|r| *r > rv);
            }
        }
        same
    }

    fn changes(&self) -> Option<u64> {
        self.answerable().ok().map(|_| self.foreign)
    }
}

/// What the watch task and the readers share.
struct Shared {
    state: Mutex<State>,
    /// Fires after every event, so a read waiting for the daemon's own write can look again.
    changed: Notify,
    /// Wakes the planning loop when someone else changed a namespace.
    wake: mpsc::Sender<()>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain data, and nothing panics while holding the lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The namespace cache with its watch task; dropping it stops the task.
pub struct NamespaceCache {
    shared: Arc<Shared>,
    task: AbortHandle,
}

impl Drop for NamespaceCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NamespaceCache {
    /// Starts watching every namespace. Must be called within the tokio runtime.
    pub fn spawn(api: Api<Namespace>, wake: mpsc::Sender<()>) -> NamespaceCache {
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            changed: Notify::new(),
            wake,
        });
        let task = tokio::spawn(watch(api, Arc::clone(&shared))).abort_handle();
        NamespaceCache { shared, task }
    }

    /// Every namespace as the cache has it, once it has caught up with the daemon's own writes
    /// (waiting up to `wait` for them); a [`Miss`] says why the caller must LIST instead.
    pub async fn read(&self, wait: Duration) -> Result<Observed, Miss> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.shared.lock();
                if state.answerable()? {
                    return Ok(state.observed());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Miss::Behind);
            }
        }
    }

    /// The daemon wrote a namespace; `rv` is the resourceVersion of the response.
    pub fn wrote(&self, rv: Option<&str>) {
        self.shared.lock().wrote(rv);
    }

    /// A fresh LIST the caller made; see [`State::check`].
    pub fn check(&self, items: &[Namespace], list_rv: Option<&str>) {
        let restored = {
            let mut state = self.shared.lock();
            let was_live = state.live;
            state.check(items, list_rv) && !was_live
        };
        if restored {
            info!("namespace cache equals a fresh list again; observing from the watch");
            self.shared.changed.notify_waiters();
        }
    }

    /// A counter of changes made by others, while the cache can answer (`None` otherwise): when
    /// it has not moved, no namespace changed except by the daemon's own writes.
    pub fn changes(&self) -> Option<u64> {
        self.shared.lock().changes()
    }
}

/// Marks the cache stopped when the watch task ends, however it ends (a panic included).
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.lock().stopped = true;
        self.0.changed.notify_waiters();
    }
}

/// The watch task: applies every event; logs a failure once, and the recovery.
async fn watch(api: Api<Namespace>, shared: Arc<Shared>) {
    let _guard = StopGuard(Arc::clone(&shared));
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        let (wake, failed, recovered) = {
            let mut state = shared.lock();
            let was_live = state.live;
            match event {
                Ok(ev) => {
                    let wake = state.apply(ev);
                    (wake, None, !was_live && state.live && state.synced)
                }
                Err(e) => {
                    state.failed();
                    (false, was_live.then_some(e), false)
                }
            }
        };
        if let Some(e) = failed {
            warn!(error = %e, "namespace watch failed; plans LIST namespaces until it recovers");
        }
        if recovered {
            info!("namespace watch is live; plans read the cache");
        }
        shared.changed.notify_waiters();
        if wake {
            let _ = shared.wake.try_send(());
        }
    }
    error!("namespace watch ended; every plan LISTs namespaces from now on");
}

#[cfg(test)]
mod tests;
