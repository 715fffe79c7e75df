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
}

/// Chart version and operator values for one engine, read once per plan.
#[derive(Debug, Clone)]
pub struct ChartInputs {
    pub chart: PathBuf,
    pub hash: values::HashInputs,
    pub values_files: Vec<PathBuf>,
    /// The operator values files merged, for plan diffs.
    pub extra: Json,
}

/// Carries out steps.
pub struct Executor<C, H> {
    pub cluster: Arc<C>,
    pub helm: Arc<H>,
    pub recorder: Arc<Recorder<C>>,
    pub metrics: Arc<Metrics>,
    /// How long a namespace deletion may take (the helm timeout).
    pub delete_timeout: Duration,
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
                // The plan asks this only for a store that was never Ready; refuse anyway.
                if work.observed.as_ref().is_some_and(|o| o.ever_ready) {
                    return Err(ExecError::Internal(
                        "refusing to reinstall a store that was Ready".into(),
                    ));
                }
                self.helm
                    .uninstall(release, &work.namespace)
                    .await
                    .map_err(ExecError::helm("uninstall"))?;
                self.install(work).await
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
        let mut labels: BTreeMap<String, String> = spec.labels.clone();
        labels.insert(cluster::MANAGED_BY.into(), cluster::MANAGER.into());
        labels.insert(cluster::STORE_LABEL.into(), work.step.store.to_string());
        if let Some(owner) = &spec.owner {
            labels.insert(cluster::OWNER_LABEL.into(), owner.as_str().to_string());
        }
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
        // Values go to helm in a private temporary file (mode 0600), never on the command line.
        let file = values_file(&values::values_for(spec))?;
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
            .annotate(&work.namespace, &applied(work, &chart.hash.chart_version))
            .await
            .map_err(ExecError::at(Stage::Annotate))?;
        Ok(Done::Applied)
    }

    /// A first install that failed leaves nothing half-made: the namespace made for it a moment
    /// ago is removed, so the next try starts clean. Nothing of this store ever ran.
    async fn clean_up_first_install(&self, work: &Work) {
        if work.observed.is_some() {
            return;
        }
        let result = match self
            .cluster
            .delete_namespace(&work.namespace, self.delete_timeout)
            .await
        {
            Ok(()) => "first_install_cleanup",
            Err(_) => "error",
        };
        self.metrics.deletions.with_label_values(&[result]).inc();
    }

    async fn delete(&self, work: &Work) -> Result<Done, ExecError> {
        let Some(o) = &work.observed else {
            return Ok(Done::Deleted);
        };
        // Guard again at the point of no return: the plan never deletes a protected store.
        if o.protected {
            return Err(ExecError::Internal("refusing to delete a protected store".into()));
        }
        info!(store = %work.step.store, namespace = %o.namespace, revision = %work.revision, "Deleting store");
        self.helm
            .uninstall(work.step.store.as_str(), &o.namespace)
            .await
            .map_err(ExecError::helm("uninstall"))?;
        self.cluster
            .delete_namespace(&o.namespace, self.delete_timeout)
            .await
            .map_err(ExecError::at(Stage::NamespaceDelete))?;
        Ok(Done::Deleted)
    }
}

/// The annotations that say "this exact spec is deployed", written only after helm succeeded.
fn applied(work: &Work, chart_version: &str) -> Annotations {
    let now = jiff::Timestamp::now().to_string();
    let spec_hash = work.desired.as_ref().map(|d| d.hash.clone());
    let protect = work.desired.as_ref().map(|d| d.spec.protect.to_string());
    let mut ann: Annotations = [
        (cluster::ANN_HASH, spec_hash),
        (cluster::ANN_REVISION, Some(work.revision.to_string())),
        (cluster::ANN_CHART, Some(chart_version.to_string())),
        (cluster::ANN_APPLIED_AT, Some(now.clone())),
        (cluster::ANN_PROTECT, protect),
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
