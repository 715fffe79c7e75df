//! What the backup Jobs say about each store: the last backup's time and result for `/stores`,
//! `status` and the status page, the two backup metrics, and the failures that raise a
//! `backup_failed` notification.
//!
//! Observed through one watch of the backup Jobs of every store namespace (label
//! `app.kubernetes.io/component=backup` with a `storekeeper.dev/store`), not a request per store
//! per cycle: an idle daemon pays one long-lived watch (re-opened every few minutes by the
//! watcher), and a finished backup shows up at once. The state lives here; the recorder and the
//! server only read it.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::Client;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::warn;

use super::{COMPONENT_SELECTOR, PURPOSE_LABEL, STORE_LABEL, finished};
use crate::metrics::Metrics;
use crate::spec::StoreName;

/// A store's last finished backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastBackup {
    /// When the last backup Job finished.
    pub at: jiff::Timestamp,
    /// `ok`, or why it failed (the Job's failure reason: `BackoffLimitExceeded`,
    /// `DeadlineExceeded`...; the script's own reason is on the pod, see `storekeeper backup`).
    pub result: String,
    pub job: String,
    /// The last successful backup (the same as `at` when the last one succeeded).
    pub last_success: Option<jiff::Timestamp>,
}

/// A backup that failed after this daemon started: what a `backup_failed` notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFailure {
    pub store: StoreName,
    pub namespace: String,
    pub job: String,
    /// A bounded word (the Job's failure reason).
    pub reason: String,
    pub at: jiff::Timestamp,
}

impl BackupFailure {
    /// The `backup_failed` event for the notifications and Kubernetes Events; `phase` is the
    /// store's phase now (a failed backup does not change it). No secret: the Job and a reason.
    pub fn event(&self, phase: &'static str) -> crate::notify::StoreEvent {
        let reason = format!("backup Job {} failed: {}", self.job, self.reason);
        let mut e = crate::notify::StoreEvent::new(
            crate::notify::EventKind::BackupFailed,
            self.store.as_str(),
            &self.namespace,
            phase,
            reason,
        );
        e.code = Some("backup_failed");
        e.at = self.at;
        e
    }
}

/// One backup Job as far as the summary cares.
#[derive(Debug, Clone)]
struct Facts {
    store: StoreName,
    uid: String,
    /// (succeeded, reason, when), once it finished.
    finished: Option<(bool, String, jiff::Timestamp)>,
}

#[derive(Default)]
struct Inner {
    /// By (namespace, name).
    jobs: BTreeMap<(String, String), Facts>,
    summary: BTreeMap<StoreName, LastBackup>,
    /// Failed Jobs already counted (by uid), so a re-list after a broken watch counts none twice.
    counted: BTreeSet<String>,
    failures: Vec<BackupFailure>,
}

/// The backup state of every store, fed by [`spawn`]'s watch (or by tests).
pub struct BackupMonitor {
    inner: Mutex<Inner>,
    metrics: Arc<Metrics>,
    /// Failures that finished before this are history: shown, not counted or notified again.
    started: jiff::Timestamp,
    failed: Notify,
}

impl BackupMonitor {
    pub fn new(metrics: Arc<Metrics>) -> BackupMonitor {
        BackupMonitor {
            inner: Mutex::default(),
            metrics,
            // Job conditions carry whole seconds: a failure in this very second counts.
            started: jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default(),
            failed: Notify::new(),
        }
    }

    /// The last backup of one store.
    pub fn last(&self, store: &StoreName) -> Option<LastBackup> {
        self.lock().summary.get(store).cloned()
    }

    /// The last backup of every store that has backup Jobs.
    pub fn all(&self) -> BTreeMap<StoreName, LastBackup> {
        self.lock().summary.clone()
    }

    /// The failures seen since the last call, oldest first: each becomes one `backup_failed`
    /// notification (`notify::EventKind::BackupFailed`). [`BackupMonitor::failed`] wakes when
    /// there are some.
    pub fn take_failures(&self) -> Vec<BackupFailure> {
        std::mem::take(&mut self.lock().failures)
    }

    /// Resolves when a failure was added since the last [`BackupMonitor::take_failures`].
    pub async fn failed(&self) {
        self.failed.notified().await;
    }

    /// A Job was added or changed.
    pub fn apply(&self, job: &Job) {
        let Some((key, facts)) = facts(job) else { return };
        let mut inner = self.lock();
        let store = facts.store.clone();
        self.count_failure(&mut inner, &key, &facts);
        inner.jobs.insert(key, facts);
        self.summarize(&mut inner, &store);
    }

    /// A Job is gone (history cleanup, the CronJob or the namespace deleted).
    pub fn delete(&self, job: &Job) {
        let Some((key, facts)) = facts(job) else { return };
        let mut inner = self.lock();
        inner.jobs.remove(&key);
        self.summarize(&mut inner, &facts.store);
    }

    /// A complete list (the watch's first, or after it broke): replaces what was known.
    pub fn reset(&self, jobs: &[Job]) {
        let mut inner = self.lock();
        let before: BTreeSet<StoreName> = inner.jobs.values().map(|f| f.store.clone()).collect();
        inner.jobs.clear();
        for job in jobs {
            if let Some((key, facts)) = facts(job) {
                self.count_failure(&mut inner, &key, &facts);
                inner.jobs.insert(key, facts);
            }
        }
        let after: BTreeSet<StoreName> = inner.jobs.values().map(|f| f.store.clone()).collect();
        for store in before.union(&after) {
            self.summarize(&mut inner, store);
        }
    }

    fn count_failure(&self, inner: &mut Inner, (namespace, job): &(String, String), f: &Facts) {
        let Some((false, reason, at)) = &f.finished else {
            return;
        };
        if *at < self.started || !inner.counted.insert(f.uid.clone()) {
            return;
        }
        self.metrics
            .backup_failures
            .with_label_values(&[f.store.as_str()])
            .inc();
        inner.failures.push(BackupFailure {
            store: f.store.clone(),
            namespace: namespace.clone(),
            job: job.clone(),
            reason: reason.clone(),
            at: *at,
        });
        self.failed.notify_one();
    }

    /// Recomputes one store's summary and its metric series (gone with its last Job).
    fn summarize(&self, inner: &mut Inner, store: &StoreName) {
        let jobs: Vec<(&String, &Facts)> = inner
            .jobs
            .iter()
            .filter(|(_, f)| f.store == *store)
            .map(|((_, name), f)| (name, f))
            .collect();
        let label = [store.as_str()];
        if jobs.is_empty() {
            inner.summary.remove(store);
            let _ = self.metrics.backup_last_success.remove_label_values(&label);
            let _ = self.metrics.backup_failures.remove_label_values(&label);
            return;
        }
        match summary_of(jobs.into_iter()) {
            Some(last) => {
                if let Some(t) = last.last_success {
                    let secs = t.as_millisecond() as f64 / 1000.0;
                    self.metrics
                        .backup_last_success
                        .with_label_values(&label)
                        .set(secs);
                }
                inner.summary.insert(store.clone(), last);
            }
            None => {
                inner.summary.remove(store);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Plain data; no code panics holding it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One backup Job's facts; `None` for a Job that is not a store's backup (a snapshot listing,
/// a Job without the store label).
fn facts(job: &Job) -> Option<((String, String), Facts)> {
    let meta = &job.metadata;
    let labels = meta.labels.as_ref()?;
    if labels
        .get(PURPOSE_LABEL)
        .is_some_and(|p| p == super::snapshots::LIST_PURPOSE)
    {
        return None;
    }
    let store = StoreName::new(labels.get(STORE_LABEL)?).ok()?;
    let key = (meta.namespace.clone()?, meta.name.clone()?);
    let finished = finished(job).map(|(ok, reason, at)| {
        let reason = if ok { "ok" } else { reason.unwrap_or("failed") };
        let at = at
            .or_else(|| job.status.as_ref()?.completion_time.as_ref().map(|t| t.0))
            .unwrap_or_else(jiff::Timestamp::now);
        (ok, super::bounded_word(reason), at)
    });
    let uid = meta.uid.clone().unwrap_or_default();
    Some((key, Facts { store, uid, finished }))
}

/// The newest finished Job of one store, and its newest success.
fn summary_of<'a>(jobs: impl Iterator<Item = (&'a String, &'a Facts)>) -> Option<LastBackup> {
    let done: Vec<(&String, bool, &String, jiff::Timestamp)> = jobs
        .filter_map(|(name, f)| f.finished.as_ref().map(|(ok, r, at)| (name, *ok, r, *at)))
        .collect();
    let last_success = done.iter().filter(|d| d.1).map(|d| d.3).max();
    let (job, _, result, at) = done.iter().max_by_key(|d| d.3)?;
    Some(LastBackup {
        at: *at,
        result: (*result).clone(),
        job: (*job).clone(),
        last_success,
    })
}

/// The last backup of every store in a list of Jobs (`status --from-cluster`: one LIST).
pub fn summarize(jobs: &[Job]) -> BTreeMap<StoreName, LastBackup> {
    let facts: Vec<((String, String), Facts)> = jobs.iter().filter_map(facts).collect();
    let stores: BTreeSet<&StoreName> = facts.iter().map(|(_, f)| &f.store).collect();
    stores
        .into_iter()
        .filter_map(|store| {
            let of_store = facts
                .iter()
                .filter(|(_, f)| f.store == *store)
                .map(|((_, name), f)| (name, f));
            Some((store.clone(), summary_of(of_store)?))
        })
        .collect()
}

/// The label selector of store backup Jobs.
pub fn selector() -> String {
    format!("{COMPONENT_SELECTOR},{STORE_LABEL}")
}

/// Watches every store's backup Jobs into `monitor` until aborted. The watcher re-lists and
/// re-watches with backoff on its own; errors are logged, never fatal.
pub fn spawn(client: Client, monitor: Arc<BackupMonitor>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let jobs: Api<Job> = Api::all(client);
        let config = watcher::Config::default().labels(&selector());
        let mut stream = pin!(watcher::watcher(jobs, config).default_backoff());
        let mut listed = Vec::new();
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Apply(j)) => monitor.apply(&j),
                Ok(Event::Delete(j)) => monitor.delete(&j),
                Ok(Event::Init) => listed.clear(),
                Ok(Event::InitApply(j)) => listed.push(j),
                Ok(Event::InitDone) => monitor.reset(&std::mem::take(&mut listed)),
                Err(e) => warn!(error = %e, "watching backup Jobs failed; retrying"),
            }
        }
    })
}
