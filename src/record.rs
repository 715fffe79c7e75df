//! The one outcome path. [`Recorder::record`] is the only writer of a store's phase, reason,
//! `last_error`, the `storekeeper.dev/status` annotation, the per-store metrics, the error
//! counter and the log line of an outcome, so no store can sit in a phase nobody explained.
//!
//! Transitions that belong to an operation (it started, its namespace now exists, it finished)
//! write the annotation; a plan's view of a store that nothing runs for stays in memory (a
//! skipped store must not be touched), except that a Ready store whose annotation lags behind is
//! repaired.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tracing::{info, warn};

use crate::cluster::{ANN_STATUS, Annotations, ClusterError, ClusterOps};
use crate::events::EventSink;
use crate::execute::{Done, ExecError};
use crate::metrics::Metrics;
use crate::notify::{EventKind, StoreEvent};
use crate::plan::{Action, Skip};
use crate::runner::Work;
use crate::spec::StoreName;
use crate::status::{Phase, StoreStatus};

/// Every store's status, shared with the HTTP server.
pub type Statuses = Arc<Mutex<BTreeMap<StoreName, StoreStatus>>>;

/// The last finished operations, oldest first; shared with the HTTP server.
pub type OperationLog = Arc<Mutex<VecDeque<Operation>>>;

/// Where each outcome is told besides the status: Kubernetes Events and notifications.
pub type Outlets = Vec<Arc<dyn EventSink>>;

/// How many finished operations are kept for `/operations` and `apply`'s summary.
const OPERATION_LOG: usize = 200;

/// What happened to a store.
pub enum Transition<'a> {
    /// An operation starts.
    Started(&'a Work),
    /// The namespace of a new store now exists, so its status can be mirrored.
    NamespaceReady(&'a Work),
    /// An operation ended; `retry_at` is set when it failed.
    Finished {
        work: &'a Work,
        result: &'a Result<Done, ExecError>,
        started: jiff::Timestamp,
        retry_at: Option<jiff::Timestamp>,
    },
    /// The store is neither desired nor observed any more.
    Forgotten,
}

/// The phase a plan's decision shows for a store nothing runs for.
fn planned_phase(action: Action, queued: bool) -> Phase {
    match action {
        Action::HoldDeletion => Phase::Blocked,
        _ if queued => Phase::Pending,
        Action::Noop => Phase::Ready,
        Action::Skip(Skip::Invalid) => Phase::Invalid,
        Action::Skip(Skip::Suspended) => Phase::Suspended,
        Action::Skip(Skip::InProgress) => Phase::Provisioning,
        Action::Skip(Skip::Terminating) => Phase::Deleting,
        Action::Skip(Skip::PendingDeletion) => Phase::PendingDeletion,
        Action::Skip(Skip::Deferred) => Phase::Pending,
        Action::Skip(Skip::QuotaExceeded | Skip::Protected | Skip::Guarded(_) | Skip::Conflict) => {
            Phase::Blocked
        }
        Action::Create
        | Action::Upgrade
        | Action::Delete
        | Action::ScheduleDeletion
        | Action::CancelDeletion
        | Action::Recover(_) => Phase::Pending,
    }
}

/// What the store's file and namespace say about it (engine, owner, URL, title, age, the
/// deployed revision), kept when this plan does not know.
fn describe(s: &mut StoreStatus, work: &Work) {
    if let Some(d) = &work.desired {
        s.engine = Some(d.spec.engine.as_str());
        s.url = Some(d.url.clone());
        s.title = Some(d.spec.shop.title.clone());
        if let Some(o) = &d.spec.owner {
            s.owner = Some(o.as_str().to_string());
        }
    }
    if let Some(o) = &work.observed {
        if s.owner.is_none() {
            s.owner = o.owner.clone();
        }
        if o.created.is_some() {
            s.created = o.created;
        }
        if o.revision.is_some() {
            s.revision = o.revision.clone();
        }
    }
}

/// One finished operation, for operators (`/operations`, `storekeeper logs`, `apply`).
#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    pub store: StoreName,
    pub action: &'static str,
    pub started: jiff::Timestamp,
    pub finished: jiff::Timestamp,
    /// `ok` or the bounded error code.
    pub result: &'static str,
    pub message: String,
    pub revision: String,
}

pub struct Recorder<C> {
    cluster: Arc<C>,
    metrics: Arc<Metrics>,
    statuses: Statuses,
    operations: OperationLog,
    outlets: Outlets,
}

impl<C: ClusterOps> Recorder<C> {
    pub fn new(cluster: Arc<C>, metrics: Arc<Metrics>, statuses: Statuses) -> Self {
        Recorder {
            cluster,
            metrics,
            statuses,
            operations: OperationLog::default(),
            outlets: Vec::new(),
        }
    }

    /// Shares the operation log and tells every outcome to `outlets` too.
    pub fn with(mut self, operations: OperationLog, outlets: Outlets) -> Self {
        self.operations = operations;
        self.outlets = outlets;
        self
    }

    /// Tells the outlets; they queue and never wait.
    fn emit(&self, kind: EventKind, work: &Work, status: &StoreStatus, code: Option<&'static str>) {
        if self.outlets.is_empty() {
            return;
        }
        let mut ev = StoreEvent::new(
            kind,
            work.step.store.as_str(),
            work.namespace.as_str(),
            status.phase.as_str(),
            status.reason.clone(),
        );
        ev.engine = status.engine;
        ev.code = code;
        ev.revision = status.revision.clone();
        ev.url = status.url.clone();
        // A failed first install removed the namespace it made a moment ago.
        ev.namespace_exists = work.observed.is_some() || kind != EventKind::Failed;
        self.tell(&ev);
    }

    fn tell(&self, ev: &StoreEvent) {
        for o in &self.outlets {
            o.emit(ev);
        }
    }

    /// A scheduled (or `storekeeper backup`) Job failed: logged and told to the outlets with
    /// the store's phase now. Nothing else changes: the store still serves; the failure is in
    /// `storekeeper_backup_failures_total` and the store's last backup.
    pub fn backup_failed(&self, failure: &crate::backup::monitor::BackupFailure) {
        let phase = self.get(&failure.store).map_or("Unknown", |s| s.phase.as_str());
        warn!(
            store = %failure.store, job = %failure.job, reason = %failure.reason,
            "Backup failed"
        );
        self.tell(&failure.event(phase));
    }

    /// Records a transition. Fails only when an operation's own status annotation cannot be
    /// written (started, namespace ready): that is a failure of the operation.
    pub async fn record(&self, store: &StoreName, t: Transition<'_>) -> Result<(), ClusterError> {
        match t {
            Transition::Started(work) => {
                let phase = match work.step.action {
                    Action::Delete => Phase::Deleting,
                    Action::ScheduleDeletion => Phase::PendingDeletion,
                    Action::CancelDeletion => Phase::Pending,
                    Action::HoldDeletion => Phase::Blocked,
                    _ => Phase::Provisioning,
                };
                let status = self.update(store, |s| {
                    s.phase = phase;
                    s.reason = work.step.reason.clone();
                    s.revision = Some(work.revision.to_string());
                    s.next_attempt = None;
                });
                info!(store = %store, action = work.step.action.code(), revision = %work.revision, "{}", phase.as_str());
                // A first install is told once its namespace exists (NamespaceReady).
                let kind = match work.step.action {
                    Action::Upgrade | Action::Recover(_) => Some(EventKind::Upgrading),
                    Action::Delete => Some(EventKind::Deleting),
                    _ => None,
                };
                if let (Some(kind), Some(s)) = (kind, &status) {
                    self.emit(kind, work, s, None);
                }
                match (&work.observed, status) {
                    (Some(o), Some(s)) => self.mirror(&o.namespace, &s).await,
                    _ => Ok(()),
                }
            }
            Transition::NamespaceReady(work) => match self.get(store) {
                Some(s) => {
                    self.emit(EventKind::Installing, work, &s, None);
                    self.mirror(&work.namespace, &s).await
                }
                None => Ok(()),
            },
            Transition::Finished {
                work,
                result,
                started,
                retry_at,
            } => {
                self.finished(work, result, started, retry_at).await;
                Ok(())
            }
            Transition::Forgotten => {
                let old = self.statuses.lock().ok().and_then(|mut m| m.remove(store));
                self.metrics.store_changed(store, old.as_ref(), None);
                Ok(())
            }
        }
    }

    /// A copy of every store's status.
    pub fn statuses(&self) -> BTreeMap<StoreName, StoreStatus> {
        self.statuses.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Every store with a status.
    pub fn names(&self) -> Vec<StoreName> {
        self.statuses
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// How many stores are in each phase.
    pub fn phase_counts(&self) -> BTreeMap<Phase, usize> {
        let mut counts = BTreeMap::new();
        if let Ok(m) = self.statuses.lock() {
            for s in m.values() {
                *counts.entry(s.phase).or_insert(0) += 1;
            }
        }
        counts
    }

    pub fn get(&self, store: &StoreName) -> Option<StoreStatus> {
        self.statuses.lock().ok().and_then(|m| m.get(store).cloned())
    }

    /// The finished operations, oldest first.
    pub fn operations(&self) -> Vec<Operation> {
        self.operations
            .lock()
            .map(|o| o.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Records the plan's decision for a store no operation runs for, in memory (a skipped store
    /// must not be touched). `queued`: its work waits in the queue, until `wait_until` when that
    /// is a retry after a failure. Called with the runner's queue locked, so a plan's view never
    /// lands on top of an operation that started meanwhile. Returns the status to mirror when a
    /// Ready store's annotation lags behind (an earlier write was lost); see [`Recorder::repair`].
    pub fn planned(
        &self,
        work: &Work,
        queued: bool,
        wait_until: Option<jiff::Timestamp>,
    ) -> Option<(String, StoreStatus)> {
        let store = &work.step.store;
        let before = self.get(store);
        let failed = before.as_ref().is_some_and(|s| s.phase == Phase::Failed);
        // Work waiting for its retry keeps showing the failure that put it there.
        let phase = if queued && failed && wait_until.is_some() {
            Phase::Failed
        } else {
            planned_phase(work.step.action, queued)
        };
        let status = self.update(store, |s| {
            describe(s, work);
            s.phase = phase;
            if phase != Phase::Failed {
                s.reason = work.step.reason.clone();
            }
            s.next_attempt = wait_until.or(work.step.not_before);
            s.deletion_deadline = work.step.deadline;
            s.hint = work.step.hint.clone();
        });
        if before.as_ref().map(|b| b.phase) != Some(phase) {
            self.count_blocked(work);
            info!(store = %store, action = work.step.action.code(), reason = %work.step.reason, "{}", phase.as_str());
            if let Some(s) = &status {
                self.emit_planned(work, before.as_ref().map(|b| b.phase), s);
            }
        }
        match (work.step.action, &work.observed, status) {
            (Action::Noop, Some(o), Some(s)) if !o.is_ready() => Some((o.namespace.clone(), s)),
            _ => None,
        }
    }

    /// The events of a plan's view: a store becomes Blocked, Invalid or Suspended, or resumes.
    fn emit_planned(&self, work: &Work, before: Option<Phase>, status: &StoreStatus) {
        let guard = match work.step.action {
            Action::Skip(Skip::Guarded(g)) => Some(g.code()),
            Action::Skip(Skip::Protected) => Some("protected"),
            Action::Skip(Skip::Conflict) => Some("namespace_conflict"),
            Action::Skip(Skip::QuotaExceeded) => Some("quota_exceeded"),
            _ => None,
        };
        let kind = match status.phase {
            Phase::Blocked if work.step.action != Action::HoldDeletion => EventKind::Blocked,
            Phase::Invalid => EventKind::Invalid,
            Phase::Suspended => EventKind::Suspended,
            _ if before == Some(Phase::Suspended) => EventKind::Resumed,
            _ => return,
        };
        self.emit(kind, work, status, guard);
    }

    /// Writes a status that [`Recorder::planned`] found lagging on the namespace.
    pub async fn repair(&self, store: &StoreName, namespace: &str, status: &StoreStatus) {
        if let Err(e) = self.mirror(namespace, status).await {
            warn!(store = %store, error = %e, "cannot repair the status annotation");
        }
    }

    /// Counts a deletion a guard refused, once per store as it becomes Blocked.
    fn count_blocked(&self, work: &Work) {
        let guard = match work.step.action {
            Action::Skip(Skip::Guarded(g)) => g.code(),
            Action::Skip(Skip::Protected) if work.desired.is_none() => "protected",
            _ => return,
        };
        self.metrics.deletions_blocked.with_label_values(&[guard]).inc();
    }

    async fn finished(
        &self,
        work: &Work,
        result: &Result<Done, ExecError>,
        started: jiff::Timestamp,
        retry_at: Option<jiff::Timestamp>,
    ) {
        let store = &work.step.store;
        let (code, message) = match result {
            Ok(_) => ("ok", String::new()),
            Err(e) => (e.code(), e.to_string()),
        };
        self.log_operation(Operation {
            store: store.clone(),
            action: work.step.action.code(),
            started,
            finished: jiff::Timestamp::now(),
            result: code,
            message: message.clone(),
            revision: work.revision.to_string(),
        });
        match result {
            Ok(Done::Deleted) => self.deleted(store, work),
            Ok(done) => self.succeeded(work, *done).await,
            Err(e) => self.failed(work, e, retry_at).await,
        }
    }

    fn deleted(&self, store: &StoreName, work: &Work) {
        let old = self.statuses.lock().ok().and_then(|mut m| m.remove(store));
        self.metrics.store_changed(store, old.as_ref(), None);
        if let Some(old) = &old {
            let mut gone = old.clone();
            gone.reason = format!("release and namespace {} are gone", work.namespace);
            self.emit(EventKind::Deleted, work, &gone, None);
        }
        info!(store = %store, namespace = %work.namespace, revision = %crate::execute::cause(work), "Store deleted");
    }

    async fn succeeded(&self, work: &Work, done: Done) {
        let store = &work.step.store;
        let (phase, reason) = match done {
            Done::RolledBack => (Phase::Pending, "rolled back; rolling forward next".to_string()),
            Done::Deleted | Done::Applied => (Phase::Ready, "deployed".to_string()),
            Done::DeletionScheduled => (Phase::PendingDeletion, work.step.reason.clone()),
            Done::DeletionCancelled => (Phase::Pending, work.step.reason.clone()),
            Done::DeletionHeld => {
                self.metrics
                    .deletions_blocked
                    .with_label_values(&[crate::plan::Guard::PossibleRename.code()])
                    .inc();
                (Phase::Blocked, work.step.reason.clone())
            }
        };
        let status = self.update(store, |s| {
            s.phase = phase;
            s.reason = reason;
            s.last_error = None;
            s.error_code = None;
            s.next_attempt = None;
            s.deletion_deadline = work.step.deadline.filter(|_| phase == Phase::PendingDeletion);
            s.hint = work.step.hint.clone().filter(|_| done == Done::DeletionHeld);
            if !matches!(done, Done::DeletionScheduled | Done::DeletionHeld) {
                s.revision = Some(work.revision.to_string());
            }
        });
        info!(store = %store, action = work.step.action.code(), revision = %work.revision, "{}", phase.as_str());
        let event = match (done, work.step.action) {
            (Done::Applied, Action::Create) => Some((EventKind::Created, None)),
            (Done::Applied, Action::Upgrade) => Some((EventKind::Upgraded, None)),
            (Done::Applied, _) => Some((EventKind::Ready, None)),
            (Done::DeletionScheduled, _) => Some((EventKind::PendingDeletion, None)),
            (Done::DeletionHeld, _) => Some((
                EventKind::Blocked,
                Some(crate::plan::Guard::PossibleRename.code()),
            )),
            _ => None,
        };
        if let (Some((kind, code)), Some(s)) = (event, &status) {
            self.emit(kind, work, s, code);
        }
        if let Some(s) = status
            && let Err(e) = self.mirror(&work.namespace, &s).await
        {
            warn!(store = %store, error = %e, "cannot write the status annotation; repaired by a later plan");
        }
    }

    async fn failed(&self, work: &Work, e: &ExecError, retry_at: Option<jiff::Timestamp>) {
        let store = &work.step.store;
        let (code, message) = (e.code(), e.to_string());
        self.metrics.reconcile_errors.with_label_values(&[code]).inc();
        let status = self.update(store, |s| {
            s.phase = Phase::Failed;
            s.reason = format!("{} failed: {code}", work.step.action.code());
            s.last_error = Some(message.clone());
            s.error_code = Some(code);
            s.next_attempt = retry_at;
        });
        warn!(store = %store, action = work.step.action.code(), code, error = %message, next_attempt = ?retry_at.map(|t| t.to_string()), "Failed");
        if let Some(s) = &status {
            self.emit(EventKind::Failed, work, s, Some(code));
        }
        // Best effort: the namespace may be gone (a failed first install is cleaned up) or the
        // API may be what failed. The in-memory status above is what /stores shows either way.
        if let Some(s) = status
            && let Err(err) = self.mirror(&work.namespace, &s).await
        {
            tracing::debug!(store = %store, error = %err, "cannot mirror the failure to the namespace");
        }
    }

    /// Writes the status annotation.
    async fn mirror(&self, namespace: &str, status: &StoreStatus) -> Result<(), ClusterError> {
        let ann: Annotations = [(ANN_STATUS, Some(status.annotation().to_json()))].into();
        self.cluster.annotate(namespace, &ann).await
    }

    /// Changes one store's status, keeping the transition time and the metrics true. Returns the
    /// new status.
    fn update(&self, store: &StoreName, f: impl FnOnce(&mut StoreStatus)) -> Option<StoreStatus> {
        let mut map = self.statuses.lock().ok()?;
        let old = map.get(store).cloned();
        let entry = map
            .entry(store.clone())
            .or_insert_with(|| StoreStatus::new(Phase::Pending, ""));
        f(entry);
        if old.as_ref().is_none_or(|o| o.phase != entry.phase) {
            entry.last_transition = jiff::Timestamp::now();
        }
        let new = entry.clone();
        drop(map);
        self.metrics.store_changed(store, old.as_ref(), Some(&new));
        Some(new)
    }

    fn log_operation(&self, op: Operation) {
        if let Ok(mut ops) = self.operations.lock() {
            if ops.len() >= OPERATION_LOG {
                ops.pop_front();
            }
            ops.push_back(op);
        }
    }
}
