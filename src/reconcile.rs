//! Observe → plan → execute. One cycle at a time, so no store ever has two operations at once;
//! within a cycle, at most `max_concurrent` helm operations run together.
//!
//! Shutdown: once the shutdown flag is set, no new operation starts; operations already running
//! finish (helm has its own `--timeout`), and the cycle returns.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tokio::sync::{Semaphore, watch};
use tracing::{Instrument, info, info_span, warn};

use crate::cluster::{self, Cluster, ClusterError, ObservedStore};
use crate::config::Settings;
use crate::helm::{Helm, HelmError, InstallRequest, ReleaseInfo};
use crate::metrics::Metrics;
use crate::plan::{self, Action, Desired, Limits, Recovery, Skip, Step};
use crate::source::Snapshot;
use crate::spec::{Engine, SpecError, StoreName};
use crate::status::{Phase, StoreStatus};
use crate::values::{self, HashInputs};

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Helm(#[from] HelmError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("cannot write values file: {0}")]
    Io(#[from] std::io::Error),
    #[error("chart {0} is missing or has no version in Chart.yaml")]
    Chart(PathBuf),
    #[error("values file {path}: {message}")]
    ValuesFile { path: PathBuf, message: String },
}

impl ApplyError {
    pub fn code(&self) -> &'static str {
        match self {
            ApplyError::Helm(e) => e.code(),
            ApplyError::Cluster(e) => e.code(),
            ApplyError::Io(_) => "io",
            ApplyError::Chart(_) => "chart_missing",
            ApplyError::ValuesFile { .. } => "values_file",
        }
    }
}

/// Above this many stores needing release state, one `helm list` beats per-store `helm status`.
const RELEASE_LIST_THRESHOLD: usize = 3;

/// Chart version and operator values for one engine, read once per cycle.
#[derive(Debug, Clone)]
pub struct ChartInputs {
    pub chart: PathBuf,
    pub hash: HashInputs,
    pub values_files: Vec<PathBuf>,
    /// The operator values files merged, for plan diffs.
    pub extra: Json,
}

/// A cycle's plan with everything needed to carry it out or print it.
pub struct Planned {
    pub steps: Vec<Step>,
    pub desired: BTreeMap<StoreName, Result<(Desired, Json), SpecError>>,
    pub observed: BTreeMap<StoreName, ObservedStore>,
    pub releases: BTreeMap<StoreName, Option<ReleaseInfo>>,
    pub revision: String,
    pub charts: BTreeMap<&'static str, ChartInputs>,
}

/// What one step came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub step: Step,
    pub result: Result<(), String>,
    pub code: Option<&'static str>,
}

/// Exponential backoff with jitter per failing store: 10 s doubling to at most 10 minutes.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    until: Instant,
}

fn backoff_delay(failures: u32) -> Duration {
    let base = Duration::from_secs(10).saturating_mul(1u32 << failures.min(8).saturating_sub(1));
    let capped = base.min(Duration::from_secs(600));
    let jitter = rand::random_range(0.8..1.2);
    capped.mul_f64(jitter).min(Duration::from_secs(600))
}

pub struct Reconciler {
    pub settings: Settings,
    pub cluster: Cluster,
    pub helm: Helm,
    pub metrics: Arc<Metrics>,
    /// Every store's status; shared with the HTTP server.
    pub status: Arc<Mutex<BTreeMap<StoreName, StoreStatus>>>,
    backoff: Mutex<BTreeMap<StoreName, Backoff>>,
}

impl Reconciler {
    pub async fn connect(settings: Settings, metrics: Arc<Metrics>) -> anyhow::Result<Reconciler> {
        let client = cluster::client(&settings.cluster).await?;
        let cluster = Cluster::new(client, &settings.cluster.namespace_prefix);
        let helm = Helm::detect(
            &settings.helm.binary,
            settings.cluster.kubeconfig.as_deref(),
            settings.cluster.context.as_deref(),
            settings.helm.timeout,
        )
        .await?
        .with_metrics(Arc::clone(&metrics));
        Ok(Reconciler {
            settings,
            cluster,
            helm,
            metrics,
            status: Arc::default(),
            backoff: Mutex::default(),
        })
    }

    /// A copy of every store's status.
    pub fn statuses(&self) -> BTreeMap<StoreName, StoreStatus> {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn chart_inputs(&self, engine: Engine) -> Result<ChartInputs, ApplyError> {
        let chart = self.settings.helm.charts_dir.join(engine.chart());
        let chart_yaml = std::fs::read_to_string(chart.join("Chart.yaml"))
            .map_err(|_| ApplyError::Chart(chart.clone()))?;
        let version = values::chart_version(&chart_yaml).ok_or_else(|| ApplyError::Chart(chart.clone()))?;
        let mut extra_bytes = Vec::new();
        let mut values_files = Vec::new();
        let mut extra = Json::Object(serde_json::Map::new());
        for f in &self.settings.helm.values_files {
            let path = if f.is_absolute() { f.clone() } else { chart.join(f) };
            let bytes = std::fs::read(&path).map_err(|e| ApplyError::ValuesFile {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let parsed: Json = serde_yaml::from_slice(&bytes).map_err(|e| ApplyError::ValuesFile {
                path: path.clone(),
                message: e.to_string(),
            })?;
            if !parsed.is_null() {
                values::merge(&mut extra, &parsed);
            }
            extra_bytes.push(bytes);
            values_files.push(path);
        }
        Ok(ChartInputs {
            chart,
            hash: HashInputs {
                chart_version: version,
                extra_values: extra_bytes,
            },
            values_files,
            extra,
        })
    }

    /// Observes the cluster and computes the plan. Reads helm release state only where needed.
    pub async fn plan(&self, snapshot: &Snapshot, resync: bool) -> Result<Planned, ApplyError> {
        let mut charts = BTreeMap::new();
        for engine in [Engine::Woocommerce, Engine::Medusa] {
            if snapshot.specs().any(|s| s.engine == engine) {
                charts.insert(engine.as_str(), self.chart_inputs(engine)?);
            }
        }
        let mut desired = BTreeMap::new();
        let mut plain = BTreeMap::new();
        for (name, r) in &snapshot.stores {
            let entry = match r {
                Ok(spec) => {
                    let v = values::values_for(spec);
                    let inputs = charts.get(spec.engine.as_str()).map(|c| &c.hash);
                    let hash = values::spec_hash(spec, &v, inputs.unwrap_or(&HashInputs::default()));
                    Ok((
                        Desired {
                            spec: spec.clone(),
                            hash,
                        },
                        v,
                    ))
                }
                Err(e) => Err(e.clone()),
            };
            plain.insert(
                name.clone(),
                entry.as_ref().map(|(d, _)| d.clone()).map_err(Clone::clone),
            );
            desired.insert(name.clone(), entry);
        }
        let observed = self.cluster.observe().await?;
        let mut conflicts = BTreeSet::new();
        for name in plain.keys().filter(|n| !observed.contains_key(*n)) {
            if self
                .cluster
                .namespace_exists(&self.cluster.namespace_for(name))
                .await?
            {
                conflicts.insert(name.clone());
            }
        }
        let wanted: Vec<(&StoreName, &ObservedStore)> = plain
            .iter()
            .filter_map(|(name, d)| {
                let o = observed.get(name)?;
                plan::needs_release_state(d.as_ref().ok(), Some(o), resync).then_some((name, o))
            })
            .collect();
        let mut releases = BTreeMap::new();
        if wanted.len() > RELEASE_LIST_THRESHOLD {
            // One `helm list -A --all` instead of one `helm status` per store (a resync of 1000
            // stores is one process, not a thousand).
            let all = self.helm.list_all().await?;
            for (name, o) in wanted {
                let info = all
                    .iter()
                    .find(|r| r.name == name.as_str() && r.namespace == o.namespace);
                releases.insert(name.clone(), info.map(|r| r.info.clone()));
            }
        } else {
            for (name, o) in wanted {
                releases.insert(name.clone(), self.helm.status(name.as_str(), &o.namespace).await?);
            }
        }
        let limits = Limits {
            prune: self.settings.reconcile.prune,
            max_deletions: self.settings.reconcile.max_deletions_per_cycle,
            helm_timeout: self.settings.helm.timeout,
        };
        let steps = plan::plan(&plan::Input {
            desired: &plain,
            unnamed_files: !snapshot.unnamed.is_empty(),
            observed: &observed,
            conflicts: &conflicts,
            releases: &releases,
            limits: &limits,
            now: jiff::Timestamp::now(),
        });
        Ok(Planned {
            steps,
            desired,
            observed,
            releases,
            revision: snapshot.revision.clone(),
            charts,
        })
    }

    /// Carries out a plan. Returns one outcome per step that was acted on or skipped.
    pub async fn execute(
        self: &Arc<Self>,
        planned: Planned,
        shutdown: &watch::Receiver<bool>,
    ) -> Vec<Outcome> {
        // Stores that are neither desired nor observed any more have no status.
        if let Ok(mut map) = self.status.lock() {
            let names: BTreeSet<&StoreName> = planned.steps.iter().map(|s| &s.store).collect();
            map.retain(|n, _| names.contains(n));
        }
        let planned = Arc::new(planned);
        let sem = Arc::new(Semaphore::new(self.settings.helm.max_concurrent.get()));
        let mut tasks = tokio::task::JoinSet::new();
        let mut outcomes = Vec::new();
        for step in planned.steps.clone() {
            self.record_skip_or_noop(&step, &planned);
            if !step.action.is_change() {
                outcomes.push(Outcome {
                    step,
                    result: Ok(()),
                    code: None,
                });
                continue;
            }
            if self.in_backoff(&step.store) {
                outcomes.push(Outcome {
                    step,
                    result: Err("in backoff after a failure".into()),
                    code: Some("backoff"),
                });
                continue;
            }
            let (me, planned, sem, shutdown) = (
                Arc::clone(self),
                Arc::clone(&planned),
                Arc::clone(&sem),
                shutdown.clone(),
            );
            tasks.spawn(async move {
                let Ok(_permit) = sem.acquire_owned().await else {
                    return Outcome { step, result: Err("shutting down".into()), code: Some("shutdown") };
                };
                if *shutdown.borrow() {
                    return Outcome { step, result: Err("not started: shutting down".into()), code: Some("shutdown") };
                }
                let span = info_span!("store", store = %step.store, action = step.action.code(), revision = %planned.revision);
                let result = me.apply(&step, &planned).instrument(span).await;
                me.after(&step, &result);
                let code = result.as_ref().err().map(ApplyError::code);
                Outcome { step, result: result.map_err(|e| e.to_string()), code }
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(o) => outcomes.push(o),
                Err(e) => warn!(error = %e, "store task panicked"),
            }
        }
        outcomes.sort_by(|a, b| a.step.store.cmp(&b.step.store));
        outcomes
    }

    fn in_backoff(&self, store: &StoreName) -> bool {
        self.backoff
            .lock()
            .ok()
            .and_then(|b| b.get(store).map(|b| b.until > Instant::now()))
            .unwrap_or(false)
    }

    fn after(&self, step: &Step, result: &Result<(), ApplyError>) {
        let Ok(mut b) = self.backoff.lock() else { return };
        match result {
            Ok(()) => {
                b.remove(&step.store);
            }
            Err(_) => {
                let failures = b.get(&step.store).map_or(0, |x| x.failures) + 1;
                b.insert(
                    step.store.clone(),
                    Backoff {
                        failures,
                        until: Instant::now() + backoff_delay(failures),
                    },
                );
            }
        }
    }

    fn set_status(
        &self,
        store: &StoreName,
        phase: Phase,
        reason: &str,
        error: Option<String>,
        revision: Option<String>,
    ) {
        let Ok(mut map) = self.status.lock() else { return };
        let changed = map.get(store).is_none_or(|s| s.phase != phase);
        let entry = map
            .entry(store.clone())
            .or_insert_with(|| StoreStatus::new(phase, reason, revision.clone()));
        if changed {
            entry.last_transition = jiff::Timestamp::now();
        }
        entry.phase = phase;
        entry.reason = reason.to_string();
        entry.revision = revision.or(entry.revision.take());
        if error.is_some() {
            entry.last_error = error;
        }
    }

    fn record_skip_or_noop(&self, step: &Step, planned: &Planned) {
        if let Some(Ok((d, _))) = planned.desired.get(&step.store)
            && let Ok(mut map) = self.status.lock()
        {
            let e = map
                .entry(step.store.clone())
                .or_insert_with(|| StoreStatus::new(Phase::Pending, &step.reason, None));
            e.engine = Some(d.spec.engine.as_str());
        }
        match step.action {
            Action::Skip(Skip::Guarded(g)) => self
                .metrics
                .deletions_blocked
                .with_label_values(&[g.code()])
                .inc(),
            Action::Skip(Skip::Protected) => self
                .metrics
                .deletions_blocked
                .with_label_values(&["protected"])
                .inc(),
            _ => {}
        }
        let revision = planned.observed.get(&step.store).and_then(|o| o.revision.clone());
        let phase = match step.action {
            Action::Noop => Phase::Ready,
            Action::Skip(Skip::Invalid) => Phase::Invalid,
            Action::Skip(Skip::Suspended) => Phase::Suspended,
            Action::Skip(Skip::InProgress) => Phase::Provisioning,
            Action::Skip(_) => Phase::Blocked,
            _ => return,
        };
        self.set_status(&step.store, phase, &step.reason, None, revision);
    }

    async fn apply(&self, step: &Step, planned: &Planned) -> Result<(), ApplyError> {
        let observed = planned.observed.get(&step.store);
        match step.action {
            Action::Delete => {
                let Some(o) = observed else { return Ok(()) };
                self.delete(step, o).await
            }
            Action::Recover(Recovery::Rollback) => {
                let Some(o) = observed else { return Ok(()) };
                info!(store = %step.store, "Rolling back a stuck release");
                self.set_status(&step.store, Phase::Provisioning, &step.reason, None, None);
                self.helm
                    .rollback(step.store.as_str(), &o.namespace, None)
                    .await?;
                // The annotations still hold the last good hash, so the next cycle rolls forward.
                self.set_status(
                    &step.store,
                    Phase::Pending,
                    "rolled back; rolling forward next cycle",
                    None,
                    None,
                );
                Ok(())
            }
            Action::Recover(Recovery::Reinstall) => {
                let Some(o) = observed else { return Ok(()) };
                if o.ever_ready {
                    return Ok(()); // the plan never asks this; refuse anyway
                }
                self.helm.uninstall(step.store.as_str(), &o.namespace).await?;
                self.install(step, planned).await
            }
            Action::Create | Action::Upgrade | Action::Recover(Recovery::RollForward) => {
                self.install(step, planned).await
            }
            Action::Noop | Action::Skip(_) => Ok(()),
        }
    }

    async fn install(&self, step: &Step, planned: &Planned) -> Result<(), ApplyError> {
        let Some(Ok((desired, vals))) = planned.desired.get(&step.store) else {
            return Ok(());
        };
        let spec = &desired.spec;
        let charts = planned
            .charts
            .get(spec.engine.as_str())
            .ok_or_else(|| ApplyError::Chart(PathBuf::from(spec.engine.chart())))?;
        let namespace = self.cluster.namespace_for(&step.store);
        let observed = planned.observed.get(&step.store);
        let first_install = observed.is_none_or(|o| o.applied_hash.is_none() && !o.ever_ready);
        self.set_status(
            &step.store,
            Phase::Provisioning,
            &step.reason,
            None,
            Some(planned.revision.clone()),
        );
        let mut labels: BTreeMap<String, String> = spec.labels.clone();
        labels.insert(cluster::MANAGED_BY.into(), cluster::MANAGER.into());
        labels.insert(cluster::STORE_LABEL.into(), step.store.to_string());
        self.cluster.ensure_namespace(&namespace, &labels).await?;
        self.cluster.ensure_credentials(&namespace, spec.engine).await?;
        let provisioning =
            StoreStatus::new(Phase::Provisioning, &step.reason, Some(planned.revision.clone()));
        self.cluster
            .annotate(
                &namespace,
                &[(cluster::ANN_STATUS, Some(provisioning.annotation()))].into(),
            )
            .await?;

        // Values go to helm in a private temporary file (mode 0600), never on the command line.
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
        let mut values_files = charts.values_files.clone();
        values_files.push(file.path().to_path_buf());
        let req = InstallRequest {
            release: step.store.to_string(),
            namespace: namespace.clone(),
            chart: charts.chart.clone(),
            values_files,
            rollback_on_failure: true,
        };
        info!(store = %step.store, first_install, "Running helm upgrade --install");
        let started = Instant::now();
        if let Err(e) = self.helm.upgrade_install(&req).await {
            let failed = StoreStatus::new(Phase::Failed, e.to_string(), Some(planned.revision.clone()));
            let _ = self
                .cluster
                .annotate(
                    &namespace,
                    &[(cluster::ANN_STATUS, Some(failed.annotation()))].into(),
                )
                .await;
            self.set_status(&step.store, Phase::Failed, e.code(), Some(e.to_string()), None);
            warn!(store = %step.store, error = e.code(), "helm upgrade --install failed; rolled back");
            if observed.is_none() && first_install {
                // Nothing of this store ever ran: remove the namespace made for it a moment ago, so
                // a failed first install leaves nothing half-made. The next try starts clean.
                let result = match self
                    .cluster
                    .delete_namespace(&namespace, self.settings.helm.timeout)
                    .await
                {
                    Ok(()) => "first_install_cleanup",
                    Err(_) => "error",
                };
                self.metrics.deletions.with_label_values(&[result]).inc();
            }
            return Err(e.into());
        }
        let now = jiff::Timestamp::now().to_string();
        let ready = StoreStatus::new(Phase::Ready, "deployed", Some(planned.revision.clone()));
        let mut ann: BTreeMap<&str, Option<String>> = [
            (cluster::ANN_HASH, Some(desired.hash.clone())),
            (cluster::ANN_REVISION, Some(planned.revision.clone())),
            (cluster::ANN_CHART, Some(charts.hash.chart_version.clone())),
            (cluster::ANN_APPLIED_AT, Some(now.clone())),
            (cluster::ANN_PROTECT, Some(spec.protect.to_string())),
            (cluster::ANN_STATUS, Some(ready.annotation())),
        ]
        .into();
        if observed.is_none_or(|o| !o.ever_ready) {
            ann.insert(cluster::ANN_READY_AT, Some(now));
        }
        self.cluster.annotate(&namespace, &ann).await?;
        self.set_status(
            &step.store,
            Phase::Ready,
            "deployed",
            None,
            Some(planned.revision.clone()),
        );
        info!(store = %step.store, seconds = started.elapsed().as_secs_f64(), "Store ready");
        Ok(())
    }

    async fn delete(&self, step: &Step, o: &ObservedStore) -> Result<(), ApplyError> {
        // Guard again at the point of no return: the plan never deletes a protected store.
        if o.protected {
            return Ok(());
        }
        info!(store = %step.store, namespace = %o.namespace, "Deleting store");
        self.set_status(&step.store, Phase::Deleting, &step.reason, None, None);
        let deleting = StoreStatus::new(Phase::Deleting, &step.reason, None);
        self.cluster
            .annotate(
                &o.namespace,
                &[(cluster::ANN_STATUS, Some(deleting.annotation()))].into(),
            )
            .await?;
        let deleted = async {
            self.helm.uninstall(step.store.as_str(), &o.namespace).await?;
            self.cluster
                .delete_namespace(&o.namespace, self.settings.helm.timeout)
                .await?;
            Ok::<(), ApplyError>(())
        }
        .await;
        let label = if deleted.is_ok() { "ok" } else { "error" };
        self.metrics.deletions.with_label_values(&[label]).inc();
        deleted?;
        if let Ok(mut map) = self.status.lock() {
            map.remove(&step.store);
        }
        info!(store = %step.store, "Store deleted");
        Ok(())
    }
}

/// Old and new values of an upgrade, redacted, as a unified diff.
pub fn values_diff(old: &Json, new: &Json) -> String {
    let render = |v: &Json| serde_json::to_string_pretty(&redact(v)).unwrap_or_default() + "\n";
    let (a, b) = (render(old), render(new));
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header("deployed", "desired")
        .to_string()
}

/// Replaces the values of secret-looking keys.
pub fn redact(v: &Json) -> Json {
    match v {
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, v)| {
                    let low = k.to_lowercase();
                    let secret = [
                        "password",
                        "secret",
                        "token",
                        "salt",
                        "privatekey",
                        "private_key",
                        "apikey",
                        "api_key",
                    ]
                    .iter()
                    .any(|s| low.contains(s));
                    let v = if secret && !v.is_object() && low != "existingsecret" {
                        Json::String("(redacted)".into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped_at_ten_minutes() {
        assert!(backoff_delay(1) <= Duration::from_secs(12) && backoff_delay(1) >= Duration::from_secs(8));
        assert!(backoff_delay(3) >= Duration::from_secs(32));
        for n in [7, 8, 20, u32::MAX] {
            assert!(backoff_delay(n) <= Duration::from_secs(600));
        }
    }

    #[test]
    fn diff_redacts_secrets() {
        let old = serde_json::json!({"db": {"password": "hunter2"}, "store": {"title": "A"}, "existingSecret": "s"});
        let new = serde_json::json!({"db": {"password": "hunter3"}, "store": {"title": "B"}, "existingSecret": "s"});
        let d = values_diff(&old, &new);
        assert!(
            d.contains("-    \"title\": \"A\"") && d.contains("+    \"title\": \"B\""),
            "{d}"
        );
        assert!(!d.contains("hunter"), "{d}");
        assert!(d.contains("\"existingSecret\": \"s\""), "{d}");
    }
}
