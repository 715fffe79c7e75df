//! Observed state and the few direct API writes storekeeper makes (everything else is helm's).
//!
//! A namespace is ours only when it carries both of our labels. Annotations on it record what was
//! last applied successfully (spec hash, revision, chart version, time, protection) — they are
//! written only after a successful apply, so "hash equal" means "this exact spec is deployed".
//!
//! The daemon observes namespaces through a watch-fed cache ([`cache`]), so an idle plan makes
//! no API request; the one-shot commands LIST.

mod cache;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use rand::Rng;
use serde_json::json;
use tokio::sync::mpsc;

use cache::NamespaceCache;
pub use cache::{Miss, WRITE_WAIT};

use crate::config::ClusterSettings;
use crate::metrics::Metrics;
use crate::spec::{Engine, StoreName};
use crate::status::{Phase, StatusAnnotation};

mod connect;
pub use connect::{ConnectError, Target};

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "storekeeper";
pub const STORE_LABEL: &str = "storekeeper.dev/store";
/// Who the store belongs to (`owner` in the store file), for per-owner policy and views.
pub const OWNER_LABEL: &str = "storekeeper.dev/owner";
pub const ANN_HASH: &str = "storekeeper.dev/spec-hash";
pub const ANN_REVISION: &str = "storekeeper.dev/revision";
pub const ANN_CHART: &str = "storekeeper.dev/chart-version";
pub const ANN_APPLIED_AT: &str = "storekeeper.dev/applied-at";
pub const ANN_PROTECT: &str = "storekeeper.dev/protect";
pub const ANN_READY_AT: &str = "storekeeper.dev/first-ready-at";
pub const ANN_STATUS: &str = "storekeeper.dev/status";
/// An operator's approval to delete the store (`storekeeper approve-deletion`): [`Approval`].
pub const ANN_APPROVED: &str = "storekeeper.dev/deletion-approved";
/// The store's file is gone and it waits out the grace period: [`DeletionMark`].
pub const ANN_PENDING_DELETION: &str = "storekeeper.dev/pending-deletion";
/// `storekeeper suspend`: the daemon leaves the store alone, overriding its file: [`Suspension`].
pub const ANN_SUSPENDED: &str = "storekeeper.dev/suspended";
/// A deletion held back by a guard that must outlast the change that tripped it (a possible
/// rename): [`DeletionHold`].
pub const ANN_DELETION_HOLD: &str = "storekeeper.dev/deletion-hold";
/// The spec's hash without its name-derived fields, to recognise a renamed store file.
pub const ANN_IDENTITY: &str = "storekeeper.dev/identity-hash";

/// An operator's approval to delete a store whose file is gone. Like Argo CD's
/// `argocd.argoproj.io/deletion-approved` (an ISO timestamp), plus who approved and the
/// revision they looked at. It lapses when the store's file comes back.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Approval {
    pub at: jiff::Timestamp,
    pub revision: String,
    pub by: String,
}

/// An operator's emergency stop for one store (`storekeeper suspend`); `storekeeper resume`
/// removes it. A `suspend = true` in the store file keeps the store suspended either way.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Suspension {
    pub at: jiff::Timestamp,
    pub by: String,
}

/// Why a store whose file is gone stays until an approval or its file's return: recorded once,
/// in the plan that noticed, because the evidence (a new store with the same spec) is gone once
/// that store exists.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeletionHold {
    /// The guard's code (`possible_rename`).
    pub guard: String,
    /// The new store that looks like this one renamed.
    pub with: String,
    pub revision: String,
    pub since: jiff::Timestamp,
}

/// A store whose file is gone, kept (and serving) until `deadline`; `revision` is the source
/// revision that no longer had its file. Removed when the file comes back.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeletionMark {
    pub since: jiff::Timestamp,
    pub deadline: jiff::Timestamp,
    pub revision: String,
}

/// An API failure. Retryable unless it is a 4xx other than 409/429.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No client, or the API server did not answer: see [`ConnectError`].
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("namespace {0} still exists after {1:?}")]
    NotGone(String, Duration),
    /// Not retryable until a human acts: the namespace belongs to someone else.
    #[error(
        "namespace {0} exists without storekeeper's labels; it is never adopted: rename the store or remove the namespace by hand"
    )]
    Conflict(String),
}

impl ClusterError {
    pub fn code(&self) -> &'static str {
        match self {
            ClusterError::Connect(e) => e.code(),
            ClusterError::Api(_) => "kube_api",
            ClusterError::NotGone(..) => "namespace_not_gone",
            ClusterError::Conflict(_) => "namespace_conflict",
        }
    }
}

/// Builds a client the way kubectl would (the configured kubeconfig and context, else
/// `$KUBECONFIG`, `~/.kube/config`, or the in-cluster service account) and checks that the API
/// server answers, so that "no cluster" is found at once and said plainly, naming what was
/// tried; see [`connect`].
pub async fn client(settings: &ClusterSettings) -> Result<(Client, Target), ClusterError> {
    Ok(connect::connect(settings).await?)
}

/// One of our namespaces, as last written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedStore {
    pub namespace: String,
    /// The namespace's labels, so an upgrade patches them only when the store file changed them.
    pub labels: BTreeMap<String, String>,
    pub applied_hash: Option<String>,
    pub revision: Option<String>,
    pub protected: bool,
    /// The store was Ready at least once: never uninstall it as "recovery".
    pub ever_ready: bool,
    /// The status mirror annotation; `None` when missing or unreadable.
    pub status: Option<StatusAnnotation>,
    /// The namespace is being deleted (a deletion timestamp or phase Terminating).
    pub terminating: bool,
    pub approval: Option<Approval>,
    pub pending_deletion: Option<DeletionMark>,
    pub hold: Option<DeletionHold>,
    pub suspended: Option<Suspension>,
    /// [`ANN_IDENTITY`] as last applied.
    pub identity: Option<String>,
    /// [`OWNER_LABEL`].
    pub owner: Option<String>,
    /// When the namespace was created (the store's first install, for the creation rate cap).
    pub created: Option<jiff::Timestamp>,
    /// `storekeeper.dev/final-backup` as last applied (`crate::backup::FinalPolicy`).
    pub final_backup: Option<String>,
}

impl ObservedStore {
    pub fn from_namespace(ns: &Namespace) -> Option<(StoreName, ObservedStore)> {
        let meta = &ns.metadata;
        let labels = meta.labels.clone().unwrap_or_default();
        if labels.get(MANAGED_BY).map(String::as_str) != Some(MANAGER) {
            return None;
        }
        let name = StoreName::new(labels.get(STORE_LABEL)?).ok()?;
        let owner = labels.get(OWNER_LABEL).cloned();
        let ann = meta.annotations.clone().unwrap_or_default();
        let get = |k: &str| ann.get(k).cloned();
        Some((
            name,
            ObservedStore {
                namespace: meta.name.clone().unwrap_or_default(),
                labels: labels.into_iter().collect(),
                applied_hash: get(ANN_HASH),
                revision: get(ANN_REVISION),
                protected: get(ANN_PROTECT).as_deref() == Some("true"),
                ever_ready: ann.contains_key(ANN_READY_AT),
                status: ann.get(ANN_STATUS).and_then(|s| StatusAnnotation::parse(s)),
                terminating: meta.deletion_timestamp.is_some()
                    || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating"),
                approval: typed(&ann, ANN_APPROVED),
                pending_deletion: typed(&ann, ANN_PENDING_DELETION),
                hold: typed(&ann, ANN_DELETION_HOLD),
                suspended: typed(&ann, ANN_SUSPENDED),
                identity: get(ANN_IDENTITY),
                owner,
                created: meta.creation_timestamp.as_ref().map(|t| t.0),
                final_backup: get(crate::backup::ANN_FINAL_BACKUP),
            },
        ))
    }

    /// Whether the status annotation says Ready.
    pub fn is_ready(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.phase == Phase::Ready)
    }
}

/// A JSON annotation; `None` when missing or unreadable (someone else's edit is ignored).
fn typed<T: serde::de::DeserializeOwned>(ann: &BTreeMap<String, String>, key: &str) -> Option<T> {
    ann.get(key).and_then(|a| serde_json::from_str(a).ok())
}

/// What one look at the cluster's namespaces shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Namespaces with our labels, by store.
    pub stores: BTreeMap<StoreName, ObservedStore>,
    /// Names of namespaces without our labels: a store whose namespace would be one of them is
    /// a conflict, never adopted.
    pub foreign: BTreeSet<String>,
}

/// Annotations to merge into a namespace; a `None` value removes the key.
pub type Annotations = BTreeMap<&'static str, Option<String>>;

/// The cluster operations the runner needs: small, so the runner is testable with a fake.
/// Every error is retryable unless [`ClusterError::Conflict`].
pub trait ClusterOps: Send + Sync + 'static {
    /// Every namespace: ours by store, and the names of the others.
    fn observe(&self) -> impl Future<Output = Result<Observed, ClusterError>> + Send;
    /// Creates the namespace with our labels (POST; an existing one of ours has its labels
    /// patched when `labels` differ from `have`). A namespace without our labels is a
    /// [`ClusterError::Conflict`]: never adopted.
    fn ensure_namespace(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        have: Option<&BTreeMap<String, String>>,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
    /// Creates the credentials Secret once; adds missing keys; never regenerates one.
    fn ensure_credentials(
        &self,
        namespace: &str,
        engine: Engine,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
    fn annotate(
        &self,
        namespace: &str,
        ann: &Annotations,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
    /// Deletes the namespace and waits until it is gone.
    fn delete_namespace(
        &self,
        namespace: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
}

/// The cluster side of storekeeper: namespaces and credentials, through the Kubernetes API.
#[derive(Clone)]
pub struct Cluster {
    namespaces: Api<Namespace>,
    client: Client,
    /// The namespace watch, once [`Cluster::watch_namespaces`] started it (the daemon).
    cache: Arc<OnceLock<Watched>>,
}

/// The namespace cache and the counter of how observations were answered.
struct Watched {
    cache: NamespaceCache,
    metrics: Arc<Metrics>,
}

impl Cluster {
    pub fn new(client: Client) -> Self {
        Cluster {
            namespaces: Api::all(client.clone()),
            client,
            cache: Arc::default(),
        }
    }

    /// Starts watching every namespace (once; later calls do nothing): from now on
    /// [`ClusterOps::observe`] reads the cache, and a namespace changed by anyone else sends on
    /// `wake`. Must be called within the tokio runtime.
    pub fn watch_namespaces(&self, wake: mpsc::Sender<()>, metrics: Arc<Metrics>) {
        self.cache.get_or_init(|| Watched {
            cache: NamespaceCache::spawn(self.namespaces.clone(), wake),
            metrics,
        });
    }

    /// A counter of namespace changes made by others while the watch cache can answer; `None`
    /// without a usable cache. Unmoved, it means the next observation would equal the last one
    /// but for the daemon's own writes.
    pub fn changes(&self) -> Option<u64> {
        self.cache.get().and_then(|w| w.cache.changes())
    }

    /// Tells the cache about a namespace write, so the next observation waits for it.
    fn wrote(&self, ns: &Namespace) {
        if let Some(w) = self.cache.get() {
            w.cache.wrote(ns.metadata.resource_version.as_deref());
        }
    }

    /// One LIST of every namespace; a cache that equals it is known current (see [`cache`]).
    async fn list(&self) -> Result<Observed, ClusterError> {
        let list = self.namespaces.list(&ListParams::default()).await?;
        if let Some(w) = self.cache.get() {
            w.cache
                .check(&list.items, list.metadata.resource_version.as_deref());
        }
        Ok(observed_from(&list.items))
    }

    /// The API client (leader election shares it).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    async fn create_namespace(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), ClusterError> {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(labels.clone().into_iter().collect()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        match self.namespaces.create(&PostParams::default(), &ns).await {
            Ok(created) => {
                self.wrote(&created);
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // It exists: ours (a retry after a lost response) or someone else's.
                let existing = self.namespaces.get(name).await?;
                let have: BTreeMap<String, String> =
                    existing.metadata.labels.unwrap_or_default().into_iter().collect();
                if is_ours(&have) && have.get(STORE_LABEL) == labels.get(STORE_LABEL) {
                    self.patch_labels(name, labels, &have).await
                } else {
                    Err(ClusterError::Conflict(name.to_string()))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn patch_labels(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        have: &BTreeMap<String, String>,
    ) -> Result<(), ClusterError> {
        if labels.iter().all(|(k, v)| have.get(k) == Some(v)) {
            return Ok(());
        }
        let patch = json!({ "metadata": { "labels": labels } });
        let patched = self
            .namespaces
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.wrote(&patched);
        Ok(())
    }

    async fn create_credentials(
        &self,
        secrets: &Api<Secret>,
        namespace: &str,
        keys: &[&str],
    ) -> Result<(), ClusterError> {
        let data = keys
            .iter()
            .map(|k| (k.to_string(), ByteString(generate_secret().into_bytes())))
            .collect();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(crate::values::CREDENTIALS_SECRET.into()),
                namespace: Some(namespace.into()),
                labels: Some([(MANAGED_BY.to_string(), MANAGER.to_string())].into()),
                annotations: Some([("helm.sh/resource-policy".to_string(), "keep".to_string())].into()),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..Secret::default()
        };
        secrets.create(&PostParams::default(), &secret).await?;
        Ok(())
    }
}

/// What a plan sees of a list of namespaces, in name order (as the cache builds it, so both
/// resolve a store label claimed twice the same way).
fn observed_from(items: &[Namespace]) -> Observed {
    let mut by_name: Vec<&Namespace> = items.iter().collect();
    by_name.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut observed = Observed::default();
    for ns in by_name {
        match ObservedStore::from_namespace(ns) {
            Some((store, o)) => {
                observed.stores.insert(store, o);
            }
            None => {
                observed
                    .foreign
                    .insert(ns.metadata.name.clone().unwrap_or_default());
            }
        }
    }
    observed
}

fn is_ours(labels: &BTreeMap<String, String>) -> bool {
    labels.get(MANAGED_BY).map(String::as_str) == Some(MANAGER) && labels.contains_key(STORE_LABEL)
}

impl ClusterOps for Cluster {
    /// Every namespace, ours by store and the names of the others: from the watch cache once it
    /// has caught up with our own writes, else one LIST (no per-store GET either way).
    async fn observe(&self) -> Result<Observed, ClusterError> {
        let Some(w) = self.cache.get() else {
            return self.list().await;
        };
        let source = match w.cache.read(WRITE_WAIT).await {
            Ok(observed) => {
                w.metrics.cluster_observations.with_label_values(&["cache"]).inc();
                return Ok(observed);
            }
            Err(miss) => miss.code(),
        };
        w.metrics.cluster_observations.with_label_values(&[source]).inc();
        self.list().await
    }

    async fn ensure_namespace(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        have: Option<&BTreeMap<String, String>>,
    ) -> Result<(), ClusterError> {
        match have {
            Some(have) => self.patch_labels(name, labels, have).await,
            None => self.create_namespace(name, labels).await,
        }
    }

    async fn ensure_credentials(&self, namespace: &str, engine: Engine) -> Result<(), ClusterError> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let keys = credential_keys(engine);
        let Some(existing) = secrets.get_opt(crate::values::CREDENTIALS_SECRET).await? else {
            return self.create_credentials(&secrets, namespace, keys).await;
        };
        let have = existing.data.unwrap_or_default();
        let missing: BTreeMap<String, String> = keys
            .iter()
            .filter(|k| !have.contains_key(**k))
            .map(|k| (k.to_string(), generate_secret()))
            .collect();
        if !missing.is_empty() {
            let patch = json!({ "stringData": missing });
            secrets
                .patch(
                    crate::values::CREDENTIALS_SECRET,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
        }
        Ok(())
    }

    async fn annotate(&self, namespace: &str, ann: &Annotations) -> Result<(), ClusterError> {
        let patch = json!({ "metadata": { "annotations": ann } });
        let patched = self
            .namespaces
            .patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.wrote(&patched);
        Ok(())
    }

    async fn delete_namespace(&self, name: &str, timeout: Duration) -> Result<(), ClusterError> {
        match self.namespaces.delete(name, &DeleteParams::background()).await {
            Ok(deleted) => {
                // The object (marked for deletion) or a Status; only the object has a version.
                if let Some(ns) = deleted.left() {
                    self.wrote(&ns);
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.namespaces.get_opt(name).await?.is_none() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::NotGone(name.to_string(), timeout));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The Secret keys each chart expects (see charts/*/README.md).
pub fn credential_keys(engine: Engine) -> &'static [&'static str] {
    match engine {
        Engine::Woocommerce => &[
            "admin-password",
            "db-password",
            "db-root-password",
            "auth-key",
            "secure-auth-key",
            "logged-in-key",
            "nonce-key",
            "auth-salt",
            "secure-auth-salt",
            "logged-in-salt",
            "nonce-salt",
        ],
        Engine::Medusa => &[
            "admin-password",
            "postgres-password",
            "jwt-secret",
            "cookie-secret",
        ],
    }
}

/// 40 random alphanumerics (~238 bits) from the OS-seeded thread RNG.
fn generate_secret() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(labels: &[(&str, &str)], ann: &[(&str, &str)]) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("store-a".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                annotations: Some(ann.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }
    }

    #[test]
    fn only_namespaces_with_both_labels_are_ours() {
        assert!(ObservedStore::from_namespace(&ns(&[(STORE_LABEL, "a")], &[])).is_none());
        assert!(
            ObservedStore::from_namespace(&ns(&[(MANAGED_BY, "helm"), (STORE_LABEL, "a")], &[])).is_none()
        );
        let (name, o) = ObservedStore::from_namespace(&ns(
            &[(MANAGED_BY, MANAGER), (STORE_LABEL, "a")],
            &[(ANN_HASH, "h"), (ANN_PROTECT, "true"), (ANN_READY_AT, "t")],
        ))
        .expect("ours");
        assert_eq!(name.as_str(), "a");
        assert_eq!(o.applied_hash.as_deref(), Some("h"));
        assert!(o.protected && o.ever_ready && !o.terminating);
    }

    #[test]
    fn secrets_are_long_and_distinct() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_eq!(a.len(), 40);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
