//! Observe → plan: turns a snapshot and the cluster's observed state into [`Planned`] work for
//! the runner (and for `storekeeper plan` to print). The decisions themselves are the pure
//! [`plan::plan`]; this module only gathers its inputs: the desired specs with their hashes
//! (memoised per spec, so an unchanged store costs no hashing), the labelled namespaces, and
//! release state only where a decision needs it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::Value as Json;

use crate::cluster::{ClusterError, ClusterOps, Observed, ObservedStore};
use crate::config::Settings;
use crate::execute::ChartInputs;
use crate::helm::{HelmError, HelmOps, ReleaseInfo};
use crate::plan::{self, Caps, Desired, Limits};
use crate::runner::{Planned, Work};
use crate::source::Snapshot;
use crate::spec::{Engine, SpecError, StoreName, StoreSpec};
use crate::values::{self, HashInputs};

/// Why no plan could be made this time. Retryable: the next trigger tries again, and nothing
/// is changed meanwhile.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot list the stores' namespaces: {0}")]
    Cluster(#[from] ClusterError),
    #[error("cannot read release state: {0}")]
    Helm(#[from] HelmError),
    #[error("chart {0} is missing or has no version in Chart.yaml")]
    Chart(std::path::PathBuf),
    #[error("values file {path}: {message}")]
    ValuesFile {
        path: std::path::PathBuf,
        message: String,
    },
}

impl PlanError {
    pub fn code(&self) -> &'static str {
        match self {
            PlanError::Cluster(e) => e.code(),
            PlanError::Helm(e) => e.code(),
            PlanError::Chart(_) => "chart_missing",
            PlanError::ValuesFile { .. } => "values_file",
        }
    }
}

/// Above this many stores needing release state, one `helm list` beats per-store `helm status`.
const RELEASE_LIST_THRESHOLD: usize = 3;

/// A spec's hash, valid while the spec (by pointer) and the chart inputs stay the same.
struct Memo {
    spec: Arc<StoreSpec>,
    chart_key: Arc<str>,
    hash: String,
    identity: String,
    url: String,
}

pub struct Planner<C, H> {
    pub settings: Settings,
    cluster: Arc<C>,
    helm: Arc<H>,
    memo: Mutex<HashMap<StoreName, Memo>>,
    /// When each store was first seen new or gone (the order under a cap; renames).
    first_seen: Mutex<BTreeMap<StoreName, jiff::Timestamp>>,
}

impl<C: ClusterOps, H: HelmOps> Planner<C, H> {
    pub fn new(settings: Settings, cluster: Arc<C>, helm: Arc<H>) -> Self {
        Planner {
            settings,
            cluster,
            helm,
            memo: Mutex::default(),
            first_seen: Mutex::default(),
        }
    }

    /// Observes the cluster and plans every store. Release state is read for stores that
    /// changed or are not known to be Ready (every store on a resync), except those in `running`.
    pub async fn plan(
        &self,
        snapshot: &Snapshot,
        resync: bool,
        running: &BTreeSet<StoreName>,
        epoch: u64,
    ) -> Result<Planned, PlanError> {
        let charts = self.charts(snapshot)?;
        let desired = self.desired(snapshot, &charts);
        let Observed {
            stores: mut observed,
            foreign,
        } = self.cluster.observe().await?;
        let conflicts: BTreeSet<StoreName> = desired
            .keys()
            .filter(|n| !observed.contains_key(*n))
            .filter(|n| foreign.contains(&self.settings.cluster.namespace_for(n)))
            .cloned()
            .collect();
        let releases = self.releases(&desired, &observed, resync, running).await?;
        let limits = self.limits();
        let now = jiff::Timestamp::now();
        let first_seen = self.first_seen(&desired, &observed, now);
        let steps = plan::plan(&plan::Input {
            desired: &desired,
            unnamed_files: !snapshot.unnamed.is_empty(),
            observed: &observed,
            conflicts: &conflicts,
            releases: &releases,
            limits: &limits,
            revision: &snapshot.revision,
            first_seen: &first_seen,
            now,
        });
        let revision: Arc<str> = Arc::from(snapshot.revision.as_str());
        let works = steps
            .into_iter()
            .map(|step| {
                let d = desired.get(&step.store).and_then(|d| d.as_ref().ok()).cloned();
                let chart = d.as_ref().and_then(|d| charts.get(&d.spec.engine)).cloned();
                // Moved, not cloned: the plan is made, and at 10,000 stores a second copy of
                // every observed store is ~10 MiB of transient heap.
                let observed = observed.remove(&step.store);
                Work {
                    namespace: self.namespace(&step.store, observed.as_ref()),
                    observed,
                    desired: d,
                    chart,
                    revision: Arc::clone(&revision),
                    step,
                }
            })
            .collect();
        Ok(Planned {
            revision,
            works,
            epoch,
        })
    }

    /// The store's namespace: the observed one, else the one it will get.
    fn namespace(&self, store: &StoreName, observed: Option<&ObservedStore>) -> String {
        observed.map_or_else(
            || self.settings.cluster.namespace_for(store),
            |o| o.namespace.clone(),
        )
    }

    /// What bounds the plan: pruning, the deletion breaker and grace, the policy's caps.
    fn limits(&self) -> Limits {
        let policy = &self.settings.policy;
        Limits {
            prune: self.settings.reconcile.prune,
            max_deletions: self.settings.reconcile.max_deletions,
            helm_timeout: self.settings.helm.timeout,
            deletion_grace: self.settings.reconcile.deletion_grace,
            caps: Caps {
                max_stores: policy.max_stores,
                max_stores_per_owner: policy.max_stores_per_owner.map(|n| n.get()),
                max_creations_per_hour: policy.max_creations_per_hour.map(|n| n.get()),
            },
        }
    }

    /// Remembers when each store was first seen new (a file, no namespace) or gone (a
    /// namespace, no file); see `plan::Input::first_seen`.
    fn first_seen(
        &self,
        desired: &BTreeMap<StoreName, Result<Desired, SpecError>>,
        observed: &BTreeMap<StoreName, ObservedStore>,
        now: jiff::Timestamp,
    ) -> BTreeMap<StoreName, jiff::Timestamp> {
        let mut seen = self.first_seen.lock().unwrap_or_else(|p| p.into_inner());
        let between = |n: &StoreName| desired.contains_key(n) != observed.contains_key(n);
        seen.retain(|n, _| between(n));
        for n in desired.keys().chain(observed.keys()).filter(|n| between(n)) {
            seen.entry(n.clone()).or_insert(now);
        }
        seen.clone()
    }

    /// Chart version and operator values for each engine the snapshot uses.
    fn charts(&self, snapshot: &Snapshot) -> Result<BTreeMap<Engine, Arc<ChartInputs>>, PlanError> {
        let mut charts = BTreeMap::new();
        for engine in [Engine::Woocommerce, Engine::Medusa] {
            if snapshot.specs().any(|s| s.engine == engine) {
                charts.insert(engine, Arc::new(chart_inputs(&self.settings, engine)?));
            }
        }
        Ok(charts)
    }

    /// Each store's spec with its canonical hash; a hash is recomputed only when the spec or
    /// the chart inputs changed.
    fn desired(
        &self,
        snapshot: &Snapshot,
        charts: &BTreeMap<Engine, Arc<ChartInputs>>,
    ) -> BTreeMap<StoreName, Result<Desired, SpecError>> {
        let keys: BTreeMap<Engine, Arc<str>> = charts
            .iter()
            .map(|(e, c)| (*e, Arc::from(c.hash.key())))
            .collect();
        let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        memo.retain(|name, _| snapshot.stores.contains_key(name));
        let mut out = BTreeMap::new();
        for (name, r) in &snapshot.stores {
            let entry = match r {
                Err(e) => Err(e.clone()),
                Ok(spec) => {
                    let key = keys.get(&spec.engine).cloned().unwrap_or_else(|| Arc::from(""));
                    let fresh = memo
                        .get(name)
                        .is_some_and(|m| Arc::ptr_eq(&m.spec, spec) && m.chart_key == key);
                    if !fresh {
                        let inputs = charts.get(&spec.engine).map(|c| &c.hash);
                        let backup = charts.get(&spec.engine).and_then(|c| c.backup.as_deref());
                        let values = values::store_values(spec, backup);
                        let extra = charts.get(&spec.engine).map(|c| &c.extra);
                        let m = Memo {
                            spec: Arc::clone(spec),
                            chart_key: key,
                            hash: values::spec_hash(spec, &values, inputs.unwrap_or(&HashInputs::default())),
                            identity: values::identity_hash(spec, &self.settings.cluster.base_domain),
                            url: store_url(&spec.host, extra, &values),
                        };
                        memo.insert(name.clone(), m);
                    }
                    let memo = &memo[name];
                    Ok(Desired {
                        spec: Arc::clone(spec),
                        hash: memo.hash.clone(),
                        identity: memo.identity.clone(),
                        url: memo.url.clone(),
                    })
                }
            };
            out.insert(name.clone(), entry);
        }
        out
    }

    /// Release state for the stores whose decision needs it: one `helm list` when that is
    /// cheaper than a `helm status` each.
    async fn releases(
        &self,
        desired: &BTreeMap<StoreName, Result<Desired, SpecError>>,
        observed: &BTreeMap<StoreName, ObservedStore>,
        resync: bool,
        running: &BTreeSet<StoreName>,
    ) -> Result<BTreeMap<StoreName, Option<ReleaseInfo>>, PlanError> {
        let wanted: Vec<(&StoreName, &ObservedStore)> = desired
            .iter()
            .filter(|(name, _)| !running.contains(*name))
            .filter_map(|(name, d)| {
                let o = observed.get(name)?;
                plan::needs_release_state(d.as_ref().ok(), Some(o), resync).then_some((name, o))
            })
            .collect();
        let mut releases = BTreeMap::new();
        if wanted.len() > RELEASE_LIST_THRESHOLD {
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
        Ok(releases)
    }
}

/// Reads one engine's chart version and the operator's values files.
pub fn chart_inputs(settings: &Settings, engine: Engine) -> Result<ChartInputs, PlanError> {
    let chart = settings.helm.charts_dir.join(engine.chart());
    let chart_yaml =
        std::fs::read_to_string(chart.join("Chart.yaml")).map_err(|_| PlanError::Chart(chart.clone()))?;
    let version = values::chart_version(&chart_yaml).ok_or_else(|| PlanError::Chart(chart.clone()))?;
    let mut extra_values = Vec::new();
    let mut values_files = Vec::new();
    let mut extra = Json::Object(serde_json::Map::new());
    for f in &settings.helm.values_files {
        let path = if f.is_absolute() { f.clone() } else { chart.join(f) };
        let fail = |message: String| PlanError::ValuesFile {
            path: path.clone(),
            message,
        };
        let bytes = std::fs::read(&path).map_err(|e| fail(e.to_string()))?;
        let parsed: Json = serde_yaml::from_slice(&bytes).map_err(|e| fail(e.to_string()))?;
        if !parsed.is_null() {
            values::merge(&mut extra, &parsed);
        }
        extra_values.push(bytes);
        values_files.push(path);
    }
    Ok(ChartInputs {
        chart,
        hash: HashInputs {
            chart_version: version,
            extra_values,
        },
        values_files,
        extra,
        backup: settings.backup.clone(),
    })
}

/// A store's URL: `https://` when the operator's or the store's values turn on the ingress's
/// TLS (`ingress.tls.enabled`), else `http://`.
fn store_url(host: &str, extra: Option<&Json>, values: &Json) -> String {
    let tls = |v: &Json| v.pointer("/ingress/tls/enabled").and_then(Json::as_bool);
    let on = tls(values).or_else(|| extra.and_then(tls)).unwrap_or(false);
    format!("{}://{host}/", if on { "https" } else { "http" })
}

/// The values helm would receive for a store (operator files, then the generated values), for
/// `storekeeper plan`'s diff.
pub fn desired_values(work: &Work) -> Option<Json> {
    let d = work.desired.as_ref()?;
    let mut v = work
        .chart
        .as_ref()
        .map(|c| c.extra.clone())
        .unwrap_or_else(|| Json::Object(serde_json::Map::new()));
    let backup = work.chart.as_ref().and_then(|c| c.backup.as_deref());
    let mut generated = values::store_values(&d.spec, backup);
    if backup.is_some() {
        values::at_apply(&mut generated, &work.revision, None);
    }
    values::merge(&mut v, &generated);
    Some(v)
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

/// Keys whose values are never shown.
const SECRET_KEY_PARTS: &[&str] = &[
    "password",
    "secret",
    "token",
    "salt",
    "privatekey",
    "private_key",
    "apikey",
    "api_key",
];

/// Replaces the values of secret-looking keys.
pub fn redact(v: &Json) -> Json {
    match v {
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, v)| {
                    let low = k.to_lowercase();
                    let secret = SECRET_KEY_PARTS.iter().any(|s| low.contains(s));
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
