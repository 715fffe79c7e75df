//! Carries out one store's step through the two small seams, [`ClusterOps`] and [`HelmOps`], so
//! every path is unit-testable with fakes. Each failure says which stage failed, with a bounded
//! code; the recorder turns it into a Failed store with `last_error`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use tracing::info;

use crate::backup::{self, BackupError, Backups};
use crate::cluster::{self, Annotations, ClusterError, ClusterOps};
use crate::helm::{HelmError, HelmOps, InstallRequest};
use crate::metrics::Metrics;
use crate::plan::{Action, Recovery};
use crate::record::{Recorder, Transition};
use crate::runner::Work;
use crate::values;

/// Where in an operation a cluster call failed (the bounded error code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    NamespaceCreate,
    Credentials,
    Annotate,
    NamespaceDelete,
}

impl Stage {
    pub fn code(self) -> &'static str {
        match self {
            Stage::NamespaceCreate => "namespace_create",
            Stage::Credentials => "credentials",
            Stage::Annotate => "annotate",
            Stage::NamespaceDelete => "namespace_delete",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::NamespaceCreate => "creating the namespace",
            Stage::Credentials => "creating the credentials Secret",
            Stage::Annotate => "annotating the namespace",
            Stage::NamespaceDelete => "deleting the namespace",
        })
    }
}

/// Why an operation failed. All are retried with backoff; a conflict and invalid values keep
/// failing until a human changes something, which the error says.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{stage}: {source}")]
    Cluster {
        stage: Stage,
        #[source]
        source: ClusterError,
    },
    #[error("helm {op}: {source}")]
    Helm {
        op: &'static str,
        #[source]
        source: HelmError,
    },
    #[error("cannot write the values file: {0}")]
    Io(#[from] std::io::Error),
    #[error("chart {0} is missing or has no version in Chart.yaml")]
    Chart(PathBuf),
    /// The deletion guard refused at the point of no return (the plan should never ask).
    #[error("deletion refused: {0}")]
    Refused(&'static str),
    /// The final backup before a deletion failed or could not be made: nothing was deleted.
    #[error("final backup: {0}")]
    FinalBackup(#[source] BackupError),
    /// An install's backup side (the Secret copy, a restore's settings) failed.
    #[error("backups: {0}")]
    Backup(#[source] BackupError),
    /// A bug: the operation panicked. Reported, not hidden.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ExecError {
    pub fn code(&self) -> &'static str {
        match self {
            ExecError::Cluster {
                source: ClusterError::Conflict(_),
                ..
            } => "namespace_conflict",
            ExecError::Cluster { stage, .. } => stage.code(),
            ExecError::Helm { source, .. } => source.code(),
            ExecError::Io(_) => "io",
            ExecError::Chart(_) => "chart_missing",
            ExecError::Refused(_) => "deletion_refused",
            ExecError::FinalBackup(e) => e.final_code(),
            ExecError::Backup(e) => e.setup_code(),
            ExecError::Internal(_) => "internal",
        }
    }

    fn at(stage: Stage) -> impl FnOnce(ClusterError) -> ExecError {
        move |source| ExecError::Cluster { stage, source }
    }

    fn helm(op: &'static str) -> impl FnOnce(HelmError) -> ExecError {
        move |source| ExecError::Helm { op, source }
    }
}

/// What a successful operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// Installed or upgraded; the applied spec is recorded on the namespace.
    Applied,
    /// A stuck release was rolled back; the next plan rolls forward.
    RolledBack,
    Deleted,
    /// The store is marked for deletion after its grace period.
    DeletionScheduled,
    /// The file came back: the mark, any hold and any approval are gone.
    DeletionCancelled,
    /// A possible rename is recorded: the deletion waits for an approval.
    DeletionHeld,
}

/// The deleting paths. Each goes through [`Executor::authorize`] and is counted in
/// `storekeeper_deletions_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// The store's file is gone and every plan rule let it through.
    Prune,
    /// A first install failed: the namespace it created a moment ago goes.
    FirstInstallCleanup,
    /// A first install is stuck: its release (never Ready) is uninstalled and installed again.
    Reinstall,
}

impl Deletion {
    pub fn reason(self) -> &'static str {
        match self {
            Deletion::Prune => "prune",
            Deletion::FirstInstallCleanup => "first_install_cleanup",
            Deletion::Reinstall => "reinstall",
        }
    }
}

/// The source revision that caused a deletion: the one that first lacked the file (the deletion
/// mark), else the one an operator approved, else the plan's.
pub fn cause(work: &Work) -> &str {
    let o = work.observed.as_ref();
    o.and_then(|o| o.pending_deletion.as_ref().map(|m| m.revision.as_str()))
        .or_else(|| o.and_then(|o| o.approval.as_ref().map(|a| a.revision.as_str())))
        .unwrap_or(&work.revision)
}

/// Chart version and operator values for one engine, read once per plan.
#[derive(Debug, Clone)]
pub struct ChartInputs {
    pub chart: PathBuf,
    pub hash: values::HashInputs,
    pub values_files: Vec<PathBuf>,
    /// The operator values files merged, for plan diffs.
    pub extra: Json,
    /// `[backup]` of storekeeper.toml: part of every store's values (`values::store_values`).
    pub backup: Option<Arc<crate::config::BackupSettings>>,
}

/// Carries out steps.
pub struct Executor<C, H> {
    pub cluster: Arc<C>,
    pub helm: Arc<H>,
    pub recorder: Arc<Recorder<C>>,
    pub metrics: Arc<Metrics>,
    /// How long a namespace deletion may take (the helm timeout).
    pub delete_timeout: Duration,
    /// Final backups before deletions, and the backup Secret of installs.
    pub backups: Backups,
}

impl<C: ClusterOps, H: HelmOps> Executor<C, H> {
    /// Runs one step. The caller records the start and the outcome.
    pub async fn run(&self, work: &Work) -> Result<Done, ExecError> {
        let release = work.step.store.as_str();
        match work.step.action {
            Action::Delete => self.delete(work).await,
            Action::Recover(Recovery::Rollback) => {
                info!(store = %work.step.store, "Rolling back a stuck release");
                self.helm
                    .rollback(release, &work.namespace)
                    .await
                    .map_err(ExecError::helm("rollback"))?;
                Ok(Done::RolledBack)
            }
            Action::Recover(Recovery::Reinstall) => {
                self.authorize(Deletion::Reinstall, work)?;
                self.helm
                    .uninstall(release, &work.namespace)
                    .await
                    .map_err(ExecError::helm("uninstall"))?;
                self.count_deletion(Deletion::Reinstall, work);
                self.install(work).await
            }
            Action::ScheduleDeletion => self.schedule_deletion(work).await,
            Action::HoldDeletion => self.hold_deletion(work).await,
            Action::CancelDeletion => {
                let ann: Annotations = [
                    (cluster::ANN_PENDING_DELETION, None),
                    (cluster::ANN_DELETION_HOLD, None),
                    (cluster::ANN_APPROVED, None),
                ]
                .into();
                self.cluster
                    .annotate(&work.namespace, &ann)
                    .await
                    .map_err(ExecError::at(Stage::Annotate))?;
                Ok(Done::DeletionCancelled)
            }
            Action::Create | Action::Upgrade | Action::Recover(Recovery::RollForward) => {
                self.install(work).await
            }
            Action::Noop | Action::Skip(_) => Ok(Done::Applied),
        }
    }

    async fn install(&self, work: &Work) -> Result<Done, ExecError> {
        let (Some(desired), Some(chart)) = (&work.desired, &work.chart) else {
            return Err(ExecError::Internal("an install without a desired spec".into()));
        };
        let spec = &desired.spec;
        let settings = chart.backup.as_deref();
        let restore = backup::restore_for(work);
        if restore.is_some() && settings.is_none() {
            return Err(ExecError::Backup(BackupError::NotConfigured));
        }
        let labels = namespace_labels(work, spec);
        let have = work.observed.as_ref().map(|o| &o.labels);
        self.cluster
            .ensure_namespace(&work.namespace, &labels, have)
            .await
            .map_err(ExecError::at(Stage::NamespaceCreate))?;
        if work.observed.is_none() {
            self.recorder
                .record(&work.step.store, Transition::NamespaceReady(work))
                .await
                .map_err(ExecError::at(Stage::Annotate))?;
        }
        self.cluster
            .ensure_credentials(&work.namespace, spec.engine)
            .await
            .map_err(ExecError::at(Stage::Credentials))?;
        let needs_secret = backup::needs_secret(spec, settings, restore.is_some());
        self.backups
            .prepare(&work.namespace, needs_secret)
            .await
            .map_err(ExecError::Backup)?;
        let mut vals = values::store_values(spec, settings);
        if let Some(s) = settings {
            let restore = restore.map(|r| values::restore_values(r, s));
            values::at_apply(&mut vals, &work.revision, restore);
        }
        // Values go to helm in a private temporary file (mode 0600), never on the command line.
        let file = values_file(&vals)?;
        let mut values_files = chart.values_files.clone();
        values_files.push(file.path().to_path_buf());
        let req = InstallRequest {
            release: work.step.store.to_string(),
            namespace: work.namespace.clone(),
            chart: chart.chart.clone(),
            values_files,
            rollback_on_failure: true,
        };
        info!(store = %work.step.store, "Running helm upgrade --install");
        if let Err(e) = self.helm.upgrade_install(&req).await {
            self.clean_up_first_install(work).await;
            return Err(ExecError::helm("upgrade --install")(e));
        }
        self.cluster
            .annotate(&work.namespace, &applied(work, chart))
            .await
            .map_err(ExecError::at(Stage::Annotate))?;
        Ok(Done::Applied)
    }

    /// A first install that failed leaves nothing half-made: the namespace made for it a moment
    /// ago is removed, so the next try starts clean. Nothing of this store ever ran.
    async fn clean_up_first_install(&self, work: &Work) {
        if self.authorize(Deletion::FirstInstallCleanup, work).is_err() {
            return;
        }
        match self
            .cluster
            .delete_namespace(&work.namespace, self.delete_timeout)
            .await
        {
            Ok(()) => self.count_deletion(Deletion::FirstInstallCleanup, work),
            Err(e) => {
                tracing::warn!(store = %work.step.store, error = %e, "cannot remove the namespace of a failed first install")
            }
        }
    }

    /// The one gate of every deleting path, at the point of no return. The plan never asks for
    /// a refused deletion; this is the last line, and a refusal is counted and reported.
    fn authorize(&self, what: Deletion, work: &Work) -> Result<(), ExecError> {
        let o = work.observed.as_ref();
        let refusal = match what {
            Deletion::Prune if work.desired.is_some() => Some(("desired", "the store has a file")),
            Deletion::Prune if o.is_some_and(|o| o.protected) => {
                Some(("protected", "the store is protected"))
            }
            Deletion::Prune if o.is_none() => Some(("unknown", "no namespace of ours was observed")),
            Deletion::FirstInstallCleanup if o.is_some() => {
                Some(("existing", "the namespace existed before this install"))
            }
            Deletion::Reinstall if o.is_none_or(|o| o.ever_ready) => {
                Some(("ever_ready", "the store was Ready once"))
            }
            _ => None,
        };
        match refusal {
            None => Ok(()),
            Some((guard, why)) => {
                self.metrics.deletions_blocked.with_label_values(&[guard]).inc();
                tracing::error!(store = %work.step.store, deletion = what.reason(), guard, "Deletion refused: {why}");
                Err(ExecError::Refused(why))
            }
        }
    }

    fn count_deletion(&self, what: Deletion, work: &Work) {
        self.metrics.deletions.with_label_values(&[what.reason()]).inc();
        info!(store = %work.step.store, deletion = what.reason(), revision = %cause(work), "Deleted");
    }

    async fn delete(&self, work: &Work) -> Result<Done, ExecError> {
        self.authorize(Deletion::Prune, work)?;
        info!(store = %work.step.store, namespace = %work.namespace, revision = %cause(work), "Deleting store");
        // Nothing is deleted unless the store's data is saved (or needs no saving).
        self.backups
            .before_deletion(work)
            .await
            .map_err(ExecError::FinalBackup)?;
        self.helm
            .uninstall(work.step.store.as_str(), &work.namespace)
            .await
            .map_err(ExecError::helm("uninstall"))?;
        self.cluster
            .delete_namespace(&work.namespace, self.delete_timeout)
            .await
            .map_err(ExecError::at(Stage::NamespaceDelete))?;
        self.count_deletion(Deletion::Prune, work);
        Ok(Done::Deleted)
    }

    /// Records why the store's deletion waits for an approval (a possible rename).
    async fn hold_deletion(&self, work: &Work) -> Result<Done, ExecError> {
        let hold = cluster::DeletionHold {
            guard: crate::plan::Guard::PossibleRename.code().into(),
            with: work
                .step
                .related
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            revision: work.revision.to_string(),
            since: jiff::Timestamp::now(),
        };
        let text = serde_json::to_string(&hold).map_err(|e| ExecError::Internal(e.to_string()))?;
        let ann: Annotations = [(cluster::ANN_DELETION_HOLD, Some(text))].into();
        self.cluster
            .annotate(&work.namespace, &ann)
            .await
            .map_err(ExecError::at(Stage::Annotate))?;
        Ok(Done::DeletionHeld)
    }

    /// Marks the store for deletion at the plan's deadline; it keeps serving until then.
    async fn schedule_deletion(&self, work: &Work) -> Result<Done, ExecError> {
        let deadline = work
            .step
            .deadline
            .ok_or_else(|| ExecError::Internal("a scheduled deletion without a deadline".into()))?;
        let mark = cluster::DeletionMark {
            since: jiff::Timestamp::now(),
            deadline,
            revision: work.revision.to_string(),
        };
        let text = serde_json::to_string(&mark).map_err(|e| ExecError::Internal(e.to_string()))?;
        let ann: Annotations = [(cluster::ANN_PENDING_DELETION, Some(text))].into();
        self.cluster
            .annotate(&work.namespace, &ann)
            .await
            .map_err(ExecError::at(Stage::Annotate))?;
        info!(store = %work.step.store, %deadline, revision = %work.revision, "Deletion scheduled");
        Ok(Done::DeletionScheduled)
    }
}

/// The annotations that say "this exact spec is deployed", written only after helm succeeded.
fn applied(work: &Work, chart: &ChartInputs) -> Annotations {
    let chart_version = &chart.hash.chart_version;
    let now = jiff::Timestamp::now().to_string();
    let final_backup = work.desired.as_ref().map(|d| {
        backup::FinalPolicy::of(&d.spec, chart.backup.as_deref())
            .as_str()
            .to_string()
    });
    let spec_hash = work.desired.as_ref().map(|d| d.hash.clone());
    let identity = work.desired.as_ref().map(|d| d.identity.clone());
    let protect = work.desired.as_ref().map(|d| d.spec.protect.to_string());
    let mut ann: Annotations = [
        (cluster::ANN_HASH, spec_hash),
        (cluster::ANN_IDENTITY, identity),
        (cluster::ANN_REVISION, Some(work.revision.to_string())),
        (cluster::ANN_CHART, Some(chart_version.to_string())),
        (cluster::ANN_APPLIED_AT, Some(now.clone())),
        (cluster::ANN_PROTECT, protect),
        (backup::ANN_FINAL_BACKUP, final_backup),
    ]
    .into();
    if work.observed.as_ref().is_none_or(|o| !o.ever_ready) {
        ann.insert(cluster::ANN_READY_AT, Some(now));
    }
    ann
}

fn values_file(vals: &Json) -> Result<tempfile::NamedTempFile, ExecError> {
    let mut file = tempfile::Builder::new()
        .prefix("storekeeper-values-")
        .suffix(".json")
        .tempfile()?;
    file.write_all(
        serde_json::to_string(vals)
            .map_err(std::io::Error::other)?
            .as_bytes(),
    )?;
    file.flush()?;
    Ok(file)
}

/// The store namespace's labels: the store file's own, then ours (which a file cannot override).
fn namespace_labels(work: &Work, spec: &crate::spec::StoreSpec) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = spec.labels.clone();
    labels.insert(cluster::MANAGED_BY.into(), cluster::MANAGER.into());
    labels.insert(cluster::STORE_LABEL.into(), work.step.store.to_string());
    if let Some(owner) = &spec.owner {
        labels.insert(cluster::OWNER_LABEL.into(), owner.as_str().to_string());
    }
    labels
}
