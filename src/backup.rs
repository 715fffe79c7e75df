//! Backups from the daemon's side: the final backup before a deletion, on-demand backups, the
//! copy of the operator's backup Secret into store namespaces, and (in [`monitor`]) what the
//! backup Jobs say about each store.
//!
//! The charts own the backup itself (`templates/backup-cronjob.yaml`, docs/backups.md): a
//! CronJob `<store>-backup` whose pod dumps the database and runs restic, and writes its outcome
//! (`result=`, `reason=`, `exit_code=`, `snapshot=`) to its termination message. storekeeper
//! only creates Jobs from that CronJob, the way `kubectl create job --from=cronjob/<name>` does,
//! waits for them and reads that message. The Kubernetes side is behind [`BackupOps`], so every
//! decision here is unit-tested with a fake.

#[cfg(test)]
pub(crate) mod fake;
pub mod monitor;
pub mod snapshots;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use tracing::{info, warn};

use crate::cluster::{MANAGED_BY, MANAGER};
use crate::config::{BackupSettings, SecretRef};
use crate::runner::Work;
use crate::spec::StoreName;

/// `storekeeper.dev/final-backup` on a store's namespace, written at apply time: whether the
/// store must have a final backup before it is deleted. See [`FinalPolicy`].
pub const ANN_FINAL_BACKUP: &str = "storekeeper.dev/final-backup";
/// The label the charts put on backup Jobs (and kubectl copies onto Jobs made from them).
pub const COMPONENT_SELECTOR: &str = "app.kubernetes.io/component=backup";
/// The store a backup Job belongs to (set by the charts' job template).
pub const STORE_LABEL: &str = crate::cluster::STORE_LABEL;
/// Why storekeeper created a Job: `final` or `manual`.
pub const PURPOSE_LABEL: &str = "storekeeper.dev/backup";
/// kubectl's mark of a Job created by hand from a CronJob.
const INSTANTIATE: &str = "cronjob.kubernetes.io/instantiate";
/// The Job controller's label on its pods (Kubernetes 1.27+).
const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";

/// Why a backup could not be made or shown. All are retryable: a deletion that fails here is
/// retried with backoff like any failure, and nothing is deleted meanwhile.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "backups are not configured: `restore_from` and `storekeeper backup` need [backup] in storekeeper.toml"
    )]
    NotConfigured,
    #[error(
        "the backup Secret {namespace}/{name} does not exist; create it with RESTIC_PASSWORD and the repository's credentials (README, Backups)"
    )]
    SecretMissing { namespace: String, name: String },
    #[error(
        "the store was applied with backups on, but its backup CronJob {0} is missing; nothing is deleted until a backup succeeds (apply the store again, or opt out with `final = false`)"
    )]
    CronJobMissing(String),
    #[error("the store has no backup CronJob {0}: backups are off for it")]
    NoCronJob(String),
    #[error("backup Job {job} failed: {reason}{}", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Failed {
        job: String,
        /// A bounded word: the script's reason, or the Job's failure reason.
        reason: String,
        detail: Option<String>,
    },
    #[error("backup Job {job} did not finish within {}s", after.as_secs())]
    Timeout { job: String, after: Duration },
    #[error("backup Job {0} was deleted before it finished")]
    Gone(String),
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

impl BackupError {
    /// The bounded code of a failed final backup (`storekeeper_reconcile_errors_total{code}`).
    pub fn final_code(&self) -> &'static str {
        match self {
            BackupError::Timeout { .. } => "final_backup_timeout",
            _ => "final_backup_failed",
        }
    }

    /// The bounded code of a failure while preparing an install (the Secret copy, a restore).
    pub fn setup_code(&self) -> &'static str {
        match self {
            BackupError::NotConfigured => "backup_not_configured",
            BackupError::SecretMissing { .. } => "backup_secret_missing",
            _ => "backup_secret",
        }
    }
}

/// Why storekeeper starts a backup Job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Before the store is deleted.
    Final,
    /// `storekeeper backup <store>`.
    Manual,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Final => "final",
            Purpose::Manual => "manual",
        }
    }
}

/// How a backup Job ended, from its status and its pod's termination message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    pub job: String,
    pub succeeded: bool,
    /// `ok`, the script's reason (`dump_failed`, `repository_locked`...), or the Job's
    /// (`DeadlineExceeded`, `BackoffLimitExceeded`...).
    pub reason: String,
    /// The snapshot saved, when the script reported one.
    pub snapshot: Option<String>,
    /// The failing container's exit code and name, when a container failed.
    pub detail: Option<String>,
    pub finished: Option<jiff::Timestamp>,
}

/// The Kubernetes operations of a backup. Small, so every decision above them is testable with
/// a fake. Futures are boxed: the executor holds one `Arc<dyn BackupOps>` for every store.
pub trait BackupOps: Send + Sync + 'static {
    /// Copies `secret` into `namespace` (same name): created, or patched where it differs.
    fn copy_secret<'a>(
        &'a self,
        secret: &'a SecretRef,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<(), BackupError>>;
    /// Creates a Job from the CronJob `cronjob`, as `kubectl create job --from=cronjob/...`
    /// does; its name. `None`: there is no such CronJob.
    fn start<'a>(
        &'a self,
        namespace: &'a str,
        cronjob: &'a str,
        purpose: Purpose,
    ) -> BoxFuture<'a, Result<Option<String>, BackupError>>;
    /// Waits until the Job has finished (at most `timeout`) and reads how it ended.
    fn wait<'a>(
        &'a self,
        namespace: &'a str,
        job: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<JobOutcome, BackupError>>;
}

/// A store's backup CronJob: `<release>-backup`, the release being the store (docs/backups.md).
pub fn cronjob_name(store: &StoreName) -> String {
    format!("{store}-backup")
}

/// What the namespace annotation says about a final backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalPolicy {
    /// Backups on and `final` not opted out: a deletion waits for a successful backup.
    Required,
    /// `final = false` in the store file.
    OptedOut,
    /// Backups off for the store (or no `[backup]` in storekeeper.toml) when it was applied.
    Disabled,
    /// Applied before storekeeper recorded this: back up when the store has a CronJob.
    Unknown,
}

impl FinalPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FinalPolicy::Required => "required",
            FinalPolicy::OptedOut => "opted-out",
            FinalPolicy::Disabled => "disabled",
            FinalPolicy::Unknown => "unknown",
        }
    }

    pub fn parse(annotation: Option<&str>) -> FinalPolicy {
        match annotation {
            Some("required") => FinalPolicy::Required,
            Some("opted-out") => FinalPolicy::OptedOut,
            Some("disabled") => FinalPolicy::Disabled,
            _ => FinalPolicy::Unknown,
        }
    }

    /// The policy a store gets when it is applied with these settings.
    pub fn of(spec: &crate::spec::StoreSpec, settings: Option<&BackupSettings>) -> FinalPolicy {
        let on = settings.is_some() && spec.backup.enabled != Some(false);
        match (on, spec.backup.final_backup) {
            (false, _) => FinalPolicy::Disabled,
            (true, false) => FinalPolicy::OptedOut,
            (true, true) => FinalPolicy::Required,
        }
    }
}

/// What happened to the final backup of a deletion that may go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Final {
    Saved(JobOutcome),
    /// No backup was needed; the reason is logged.
    Skipped(&'static str),
}

/// The backup side the executor and the CLI use: the Kubernetes operations and the operator's
/// settings (`None`: no `[backup]`).
#[derive(Clone)]
pub struct Backups {
    ops: Arc<dyn BackupOps>,
    settings: Option<Arc<BackupSettings>>,
}

impl Backups {
    pub fn new(ops: Arc<dyn BackupOps>, settings: Option<Arc<BackupSettings>>) -> Backups {
        Backups { ops, settings }
    }

    /// The real cluster.
    pub fn kube(client: Client, settings: Option<Arc<BackupSettings>>) -> Backups {
        Backups::new(Arc::new(KubeBackups { client }), settings)
    }

    pub fn settings(&self) -> Option<&BackupSettings> {
        self.settings.as_deref()
    }

    fn timeout(&self) -> Duration {
        self.settings
            .as_ref()
            .map_or(crate::config::DEFAULT_FINAL_TIMEOUT, |s| s.final_timeout)
    }

    /// Before an install: the backup Secret in the store's namespace when the store's pods will
    /// read it (backups on, or a restore). `needed` comes from [`needs_secret`].
    pub async fn prepare(&self, namespace: &str, needed: bool) -> Result<(), BackupError> {
        if !needed {
            return Ok(());
        }
        let settings = self.settings.as_ref().ok_or(BackupError::NotConfigured)?;
        self.ops.copy_secret(&settings.secret, namespace).await
    }

    /// The final backup of a deletion: `Ok` lets the deletion go on (a backup saved, or none
    /// needed, with the reason logged); an error stops it before anything is deleted.
    pub async fn before_deletion(&self, work: &Work) -> Result<Final, BackupError> {
        let store = &work.step.store;
        let annotation = work.observed.as_ref().and_then(|o| o.final_backup.as_deref());
        let policy = FinalPolicy::parse(annotation);
        let skip = match policy {
            FinalPolicy::OptedOut => Some("final = false in the store file when it was last applied"),
            FinalPolicy::Disabled => Some("backups were off for the store when it was last applied"),
            FinalPolicy::Required | FinalPolicy::Unknown => None,
        };
        if let Some(why) = skip {
            info!(store = %store, policy = policy.as_str(), "Deleting without a final backup: {why}");
            return Ok(Final::Skipped(why));
        }
        if let Some(s) = &self.settings {
            // Fresh credentials for the Job (the operator may have rotated them); a missing
            // source Secret is no reason to stop when the namespace still has its copy.
            if let Err(e) = self.ops.copy_secret(&s.secret, &work.namespace).await {
                warn!(store = %store, error = %e, "cannot refresh the backup Secret; using the namespace's copy");
            }
        }
        match self.run(&work.namespace, store, Purpose::Final).await {
            Err(BackupError::NoCronJob(name)) if policy == FinalPolicy::Unknown => {
                info!(store = %store, cronjob = %name, "Deleting without a final backup: the store has no backup CronJob");
                Ok(Final::Skipped("the store has no backup CronJob"))
            }
            Err(BackupError::NoCronJob(name)) => Err(BackupError::CronJobMissing(name)),
            Err(e) => Err(e),
            Ok(outcome) => {
                info!(store = %store, job = %outcome.job, snapshot = outcome.snapshot.as_deref().unwrap_or("-"), "Final backup saved");
                Ok(Final::Saved(outcome))
            }
        }
    }

    /// Starts a backup Job from the store's CronJob and waits for it; an error unless it
    /// succeeded.
    pub async fn run(
        &self,
        namespace: &str,
        store: &StoreName,
        purpose: Purpose,
    ) -> Result<JobOutcome, BackupError> {
        let cronjob = cronjob_name(store);
        let Some(job) = self.ops.start(namespace, &cronjob, purpose).await? else {
            return Err(BackupError::NoCronJob(cronjob));
        };
        info!(store = %store, job = %job, purpose = purpose.as_str(), "Backup Job started; waiting for it");
        let outcome = self.ops.wait(namespace, &job, self.timeout()).await?;
        if outcome.succeeded {
            Ok(outcome)
        } else {
            Err(BackupError::Failed {
                job: outcome.job,
                reason: outcome.reason,
                detail: outcome.detail,
            })
        }
    }
}

/// Whether an install needs the backup Secret in the namespace: backups on for the store, or a
/// restore (whose pods read the source store's repository with it).
pub fn needs_secret(
    spec: &crate::spec::StoreSpec,
    settings: Option<&BackupSettings>,
    restoring: bool,
) -> bool {
    restoring || FinalPolicy::of(spec, settings) != FinalPolicy::Disabled
}

/// The restore a step honours: `restore_from` of a store's first install only. A store whose
/// namespace existed and was Ready once is never restored into (the restore would refuse a
/// non-empty database anyway, and must never be what replaces a live shop's data); a first
/// install that failed or got stuck is still a first install.
pub fn restore_for(work: &Work) -> Option<&crate::spec::backup::RestoreFrom> {
    let restore = work.desired.as_ref()?.spec.restore_from.as_ref()?;
    if work.observed.as_ref().is_some_and(|o| o.ever_ready) {
        warn!(store = %work.step.store, from = %restore.store, "restore_from is ignored: the store exists (a store is restored at its first install only)");
        return None;
    }
    Some(restore)
}

/// The Kubernetes implementation.
struct KubeBackups {
    client: Client,
}

impl BackupOps for KubeBackups {
    fn copy_secret<'a>(
        &'a self,
        secret: &'a SecretRef,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<(), BackupError>> {
        Box::pin(copy_secret(&self.client, secret, namespace))
    }

    fn start<'a>(
        &'a self,
        namespace: &'a str,
        cronjob: &'a str,
        purpose: Purpose,
    ) -> BoxFuture<'a, Result<Option<String>, BackupError>> {
        Box::pin(start(&self.client, namespace, cronjob, purpose))
    }

    fn wait<'a>(
        &'a self,
        namespace: &'a str,
        job: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<JobOutcome, BackupError>> {
        Box::pin(wait(&self.client, namespace, job, timeout))
    }
}

/// Copies the Secret's data and type; the copy is labelled as storekeeper's. Nothing of its
/// contents is ever logged.
async fn copy_secret(client: &Client, secret: &SecretRef, namespace: &str) -> Result<(), BackupError> {
    let source: Api<Secret> = Api::namespaced(client.clone(), &secret.namespace);
    let Some(src) = source.get_opt(&secret.name).await? else {
        return Err(BackupError::SecretMissing {
            namespace: secret.namespace.clone(),
            name: secret.name.clone(),
        });
    };
    let target: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let data = src.data.clone().unwrap_or_default();
    match target.get_opt(&secret.name).await? {
        None => {
            let copy = Secret {
                metadata: ObjectMeta {
                    name: Some(secret.name.clone()),
                    namespace: Some(namespace.to_string()),
                    labels: Some([(MANAGED_BY.to_string(), MANAGER.to_string())].into()),
                    annotations: Some(
                        [(
                            COPIED_FROM.to_string(),
                            format!("{}/{}", secret.namespace, secret.name),
                        )]
                        .into(),
                    ),
                    ..ObjectMeta::default()
                },
                data: Some(data),
                type_: src.type_.clone(),
                ..Secret::default()
            };
            target.create(&PostParams::default(), &copy).await?;
        }
        Some(have) => {
            let have = have.data.unwrap_or_default();
            if have != data {
                // A merge patch: changed keys are set, keys the source no longer has removed.
                let mut patch: BTreeMap<String, serde_json::Value> = have
                    .keys()
                    .map(|k| (k.clone(), serde_json::Value::Null))
                    .collect();
                for (k, v) in &data {
                    patch.insert(k.clone(), serde_json::to_value(v).unwrap_or_default());
                }
                let body = serde_json::json!({ "data": patch });
                target
                    .patch(&secret.name, &PatchParams::default(), &Patch::Merge(&body))
                    .await?;
            }
        }
    }
    Ok(())
}

/// Where a copied Secret came from.
const COPIED_FROM: &str = "storekeeper.dev/copied-from";

/// A Job name that fits the 63 characters of its pods' `job-name` label: the CronJob's name
/// (at most 47), the purpose and the time in centiseconds, base 36.
fn job_name(cronjob: &str, purpose: Purpose) -> String {
    let mut n = (jiff::Timestamp::now().as_millisecond() / 10).unsigned_abs();
    let mut digits = Vec::new();
    while n > 0 {
        digits.push(char::from_digit((n % 36) as u32, 36).unwrap_or('0'));
        n /= 36;
    }
    let stamp: String = digits.into_iter().rev().collect();
    let mut name = format!("{cronjob}-{}-{stamp}", purpose.as_str());
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// The Job `kubectl create job --from=cronjob/<cronjob>` would create: the job template's
/// labels and spec, its annotations plus `cronjob.kubernetes.io/instantiate: manual`, owned by
/// the CronJob (so the CronJob's history limits and garbage collection cover it). One label of
/// storekeeper's says why it exists.
pub fn job_from_cronjob(cj: &CronJob, name: &str, purpose: Purpose) -> Option<Job> {
    let spec = &cj.spec;
    let template = &spec.job_template;
    let meta = template.metadata.clone().unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(INSTANTIATE.into(), "manual".into());
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(PURPOSE_LABEL.into(), purpose.as_str().into());
    Some(Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: cj.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: cj.metadata.name.clone()?,
                uid: cj.metadata.uid.clone()?,
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
}

async fn start(
    client: &Client,
    namespace: &str,
    cronjob: &str,
    purpose: Purpose,
) -> Result<Option<String>, BackupError> {
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), namespace);
    let Some(cj) = cronjobs.get_opt(cronjob).await? else {
        return Ok(None);
    };
    let name = job_name(cronjob, purpose);
    let Some(job) = job_from_cronjob(&cj, &name, purpose) else {
        return Ok(None);
    };
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    jobs.create(&PostParams::default(), &job).await?;
    Ok(Some(name))
}

/// Whether a Job has finished: a `Complete` or `Failed` condition that is true.
pub fn finished(job: &Job) -> Option<(bool, Option<&str>, Option<jiff::Timestamp>)> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .filter(|c| c.status == "True")
        .find_map(|c| match c.type_.as_str() {
            "Complete" => Some((
                true,
                c.reason.as_deref(),
                c.last_transition_time.as_ref().map(|t| t.0),
            )),
            "Failed" => Some((
                false,
                c.reason.as_deref(),
                c.last_transition_time.as_ref().map(|t| t.0),
            )),
            _ => None,
        })
}

/// Waits on a watch of the one Job (no polling) until it has finished; a broken watch is
/// opened again until the deadline.
pub(crate) async fn wait_raw(
    client: &Client,
    namespace: &str,
    job: &str,
    timeout: Duration,
) -> Result<Job, BackupError> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + timeout;
    let done = |j: Option<&Job>| j.is_none_or(|j| finished(j).is_some());
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let waited = tokio::time::timeout(
            left,
            kube::runtime::wait::await_condition(jobs.clone(), job, done),
        )
        .await;
        match waited {
            Err(_) => {
                return Err(BackupError::Timeout {
                    job: job.to_string(),
                    after: timeout,
                });
            }
            Ok(Ok(None)) => return Err(BackupError::Gone(job.to_string())),
            Ok(Ok(Some(j))) => return Ok(j),
            Ok(Err(e)) => {
                warn!(job, error = %e, "watching the backup Job failed; watching again");
                tokio::time::sleep(Duration::from_secs(2).min(left)).await;
            }
        }
    }
}

async fn wait(
    client: &Client,
    namespace: &str,
    job: &str,
    timeout: Duration,
) -> Result<JobOutcome, BackupError> {
    let done = wait_raw(client, namespace, job, timeout).await?;
    let pod = newest_pod(client, namespace, &done).await?;
    Ok(outcome(&done, pod.as_ref()))
}

/// The newest pod of a Job (a retried Job has one per attempt).
async fn newest_pod(client: &Client, namespace: &str, job: &Job) -> Result<Option<Pod>, BackupError> {
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("{CONTROLLER_UID}={uid}")))
        .await?;
    Ok(list
        .items
        .into_iter()
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0)))
}

/// The termination message of one container of a Job's newest pod ("" when there is none).
pub(crate) async fn termination_message(
    client: &Client,
    namespace: &str,
    job: &Job,
    container: &str,
) -> Result<String, BackupError> {
    let pod = newest_pod(client, namespace, job).await?;
    let statuses = pod
        .and_then(|p| p.status)
        .and_then(|s| s.container_statuses)
        .unwrap_or_default();
    Ok(statuses
        .into_iter()
        .find(|c| c.name == container)
        .and_then(|c| c.state?.terminated?.message)
        .unwrap_or_default())
}

/// How the Job ended: the Job's condition, and what its newest pod's containers reported.
pub fn outcome(job: &Job, pod: Option<&Pod>) -> JobOutcome {
    let name = job.metadata.name.clone().unwrap_or_default();
    let (succeeded, job_reason, at) = finished(job).unwrap_or((false, None, None));
    let report = pod.map(pod_report).unwrap_or_default();
    let reason = match (succeeded, report.result.reason.clone()) {
        (true, _) => "ok".to_string(),
        (false, Some(r)) if r != "ok" => r,
        (false, _) => job_reason.unwrap_or("failed").to_string(),
    };
    JobOutcome {
        job: name,
        succeeded,
        reason: bounded_word(&reason),
        snapshot: report.result.snapshot,
        detail: report.failed_container,
        finished: at,
    }
}

/// What a backup pod's containers reported.
#[derive(Debug, Default)]
struct PodReport {
    result: ScriptResult,
    /// `container <name> exited <code>` of the first container that failed.
    failed_container: Option<String>,
}

/// The script's result: the failing container's message, else the main container's.
fn pod_report(pod: &Pod) -> PodReport {
    let Some(status) = pod.status.as_ref() else {
        return PodReport::default();
    };
    let all = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    let mut report = PodReport::default();
    for c in all {
        let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
            continue;
        };
        let parsed = ScriptResult::parse(t.message.as_deref().unwrap_or_default());
        if t.exit_code != 0 {
            report.failed_container = Some(format!(
                "container {} exited {}{}",
                c.name,
                t.exit_code,
                t.reason.as_deref().map(|r| format!(", {r}")).unwrap_or_default()
            ));
            report.result = parsed;
            return report;
        }
        if parsed.result.is_some() {
            report.result = parsed;
        }
    }
    report
}

/// The `key=value` lines the backup scripts write to `RESULT_FILE` (docs/backups.md). Only
/// bounded words and hex ids are kept: a termination message is not trusted to be tidy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptResult {
    pub result: Option<String>,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    pub snapshot: Option<String>,
}

impl ScriptResult {
    pub fn parse(text: &str) -> ScriptResult {
        let mut r = ScriptResult::default();
        for line in text.lines().take(20) {
            let Some((k, v)) = line.trim().split_once('=') else {
                continue;
            };
            let word = || Some(v).filter(|v| is_word(v)).map(str::to_string);
            match k {
                "result" => r.result = word(),
                "reason" => r.reason = word(),
                "exit_code" => r.exit_code = v.parse().ok(),
                "snapshot" if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    r.snapshot = Some(v.to_ascii_lowercase());
                }
                _ => {}
            }
        }
        r
    }
}

fn is_word(s: &str) -> bool {
    (1..=48).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A reason fit for logs and messages: a word, or `unknown`.
fn bounded_word(s: &str) -> String {
    if is_word(s) {
        s.to_string()
    } else {
        "unknown".into()
    }
}

#[cfg(test)]
mod tests;
