//! Runs the real `helm` binary: explicit argument vectors, no shell, values in files, a timeout on
//! every call, `-o json` parsed into minimal structs, and stderr turned into typed errors.
//!
//! helm runs in its own process group, so a Ctrl-C in the terminal reaches the daemon (which then
//! drains) but not a helm that is halfway through an upgrade.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

/// A helm failure, classified from its stderr. `code()` gives a bounded metric label.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// Retryable: helm's own `--timeout` passed while waiting for resources.
    #[error("helm timed out waiting for the store's resources: {stderr}")]
    Timeout { stderr: String },
    /// Retryable after recovery: the release is locked in a pending state.
    #[error("another helm operation is in progress on this release")]
    OperationInProgress { stderr: String },
    /// Not retryable until the chart exists.
    #[error("chart not found: {stderr}")]
    ChartNotFound { stderr: String },
    /// Retryable: the API server could not be reached.
    #[error("kubernetes cluster unreachable: {stderr}")]
    ClusterUnreachable { stderr: String },
    /// Not retryable until the values change.
    #[error("invalid values or manifests: {stderr}")]
    InvalidValues { stderr: String },
    #[error("release not found")]
    ReleaseNotFound,
    /// The helm process outlived its timeout plus a grace period and was killed.
    #[error("helm did not finish within {0:?} and was killed")]
    Killed(Duration),
    #[error("cannot run helm {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unexpected helm output: {0}")]
    Output(String),
    #[error("helm failed: {stderr}")]
    Failed { stderr: String },
}

impl HelmError {
    pub fn code(&self) -> &'static str {
        match self {
            HelmError::Timeout { .. } => "helm_timeout",
            HelmError::OperationInProgress { .. } => "helm_operation_in_progress",
            HelmError::ChartNotFound { .. } => "helm_chart_not_found",
            HelmError::ClusterUnreachable { .. } => "cluster_unreachable",
            HelmError::InvalidValues { .. } => "helm_invalid_values",
            HelmError::ReleaseNotFound => "helm_release_not_found",
            HelmError::Killed(_) => "helm_killed",
            HelmError::Spawn { .. } => "helm_spawn",
            HelmError::Output(_) => "helm_output",
            HelmError::Failed { .. } => "helm_failed",
        }
    }

    /// Classifies helm's stderr. The patterns are helm 3 and helm 4 messages.
    pub fn classify(stderr: &str) -> HelmError {
        let s = stderr.trim().to_string();
        let low = s.to_lowercase();
        if low.contains("another operation (install/upgrade/rollback) is in progress") {
            HelmError::OperationInProgress { stderr: s }
        } else if low.contains("release: not found") || low.contains("release not loaded") {
            HelmError::ReleaseNotFound
        } else if low.contains("kubernetes cluster unreachable")
            || low.contains("connection refused")
            || low.contains("no such host")
            || low.contains("i/o timeout")
        {
            HelmError::ClusterUnreachable { stderr: s }
        } else if low.contains("context deadline exceeded")
            || low.contains("timed out waiting for the condition")
            || low.contains("timeout waiting for")
            || low.contains("client rate limiter wait")
        {
            HelmError::Timeout { stderr: s }
        } else if low.contains("path") && low.contains("not found")
            || low.contains("chart.yaml file is missing")
            || low.contains("failed to download")
        {
            HelmError::ChartNotFound { stderr: s }
        } else if low.contains("values don't meet the specifications")
            || low.contains("parse error")
            || low.contains("unable to build kubernetes objects")
            || low.contains("execution error at")
            || low.contains("error converting yaml to json")
            || low.contains("failed to parse")
        {
            HelmError::InvalidValues { stderr: s }
        } else {
            HelmError::Failed { stderr: s }
        }
    }
}

/// A release's state as helm reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseStatus {
    Deployed,
    Failed,
    PendingInstall,
    PendingUpgrade,
    PendingRollback,
    Uninstalling,
    Other(String),
}

impl ReleaseStatus {
    pub fn parse(s: &str) -> ReleaseStatus {
        match s {
            "deployed" => ReleaseStatus::Deployed,
            "failed" => ReleaseStatus::Failed,
            "pending-install" => ReleaseStatus::PendingInstall,
            "pending-upgrade" => ReleaseStatus::PendingUpgrade,
            "pending-rollback" => ReleaseStatus::PendingRollback,
            "uninstalling" => ReleaseStatus::Uninstalling,
            other => ReleaseStatus::Other(other.to_string()),
        }
    }

    pub fn is_pending(&self) -> bool {
        matches!(
            self,
            ReleaseStatus::PendingInstall | ReleaseStatus::PendingUpgrade | ReleaseStatus::PendingRollback
        )
    }

    pub fn as_str(&self) -> &str {
        match self {
            ReleaseStatus::Deployed => "deployed",
            ReleaseStatus::Failed => "failed",
            ReleaseStatus::PendingInstall => "pending-install",
            ReleaseStatus::PendingUpgrade => "pending-upgrade",
            ReleaseStatus::PendingRollback => "pending-rollback",
            ReleaseStatus::Uninstalling => "uninstalling",
            ReleaseStatus::Other(s) => s,
        }
    }
}

/// What `helm status -o json` says of a release.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseInfo {
    pub status: ReleaseStatus,
    pub revision: u32,
    /// When the last operation started (helm's `last_deployed`), if known.
    pub last_deployed: Option<jiff::Timestamp>,
}

#[derive(Deserialize)]
struct RawStatus {
    version: u32,
    info: RawInfo,
}

#[derive(Deserialize)]
struct RawInfo {
    status: String,
    #[serde(default)]
    last_deployed: Option<String>,
}

/// Parses `helm status -o json` output.
pub fn parse_status(json: &str) -> Result<ReleaseInfo, HelmError> {
    let raw: RawStatus = serde_json::from_str(json).map_err(|e| HelmError::Output(e.to_string()))?;
    Ok(ReleaseInfo {
        status: ReleaseStatus::parse(&raw.info.status),
        revision: raw.version,
        last_deployed: raw.info.last_deployed.and_then(|t| t.parse().ok()),
    })
}

/// One row of `helm list -A --all -o json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedRelease {
    pub name: String,
    pub namespace: String,
    pub info: ReleaseInfo,
}

#[derive(Deserialize)]
struct RawListed {
    name: String,
    namespace: String,
    revision: String,
    #[serde(default)]
    updated: String,
    status: String,
}

/// Parses `helm list -o json` output.
pub fn parse_list(json: &str) -> Result<Vec<ListedRelease>, HelmError> {
    let raw: Vec<RawListed> =
        serde_json::from_str(json.trim()).map_err(|e| HelmError::Output(e.to_string()))?;
    Ok(raw
        .into_iter()
        .map(|r| ListedRelease {
            info: ReleaseInfo {
                status: ReleaseStatus::parse(&r.status),
                revision: r.revision.parse().unwrap_or(0),
                last_deployed: parse_go_time(&r.updated),
            },
            name: r.name,
            namespace: r.namespace,
        })
        .collect())
}

/// Go's default time format, as `helm list` prints it: `2026-11-22 14:00:00.123456789 +0000 UTC`
/// (the zone abbreviation varies with the local zone and is ignored; the offset is exact).
fn parse_go_time(s: &str) -> Option<jiff::Timestamp> {
    let mut parts = s.split_whitespace();
    let (date, time, offset) = (parts.next()?, parts.next()?, parts.next()?);
    let text = format!("{date} {time} {offset}");
    let fmt = if time.contains('.') {
        "%Y-%m-%d %H:%M:%S%.f %z"
    } else {
        "%Y-%m-%d %H:%M:%S %z"
    };
    jiff::fmt::strtime::parse(fmt, &text).ok()?.to_timestamp().ok()
}

/// One `helm upgrade --install`.
#[derive(Debug, Clone)]
pub struct InstallRequest {
    pub release: String,
    pub namespace: String,
    pub chart: PathBuf,
    /// Applied in order; the generated values file comes last.
    pub values_files: Vec<PathBuf>,
    /// Roll back automatically when the operation fails (`--atomic` / `--rollback-on-failure`).
    pub rollback_on_failure: bool,
}

/// A helm binary plus the environment every call gets.
#[derive(Debug, Clone)]
pub struct Helm {
    binary: PathBuf,
    major: u8,
    kube_args: Vec<OsString>,
    timeout: Duration,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// Extra time helm gets past its own `--timeout` before it is killed.
const GRACE: Duration = Duration::from_secs(60);

impl Helm {
    /// Finds out which major version `binary` is (flags differ between helm 3 and 4).
    pub async fn detect(
        binary: &Path,
        kubeconfig: Option<&Path>,
        context: Option<&str>,
        timeout: Duration,
    ) -> Result<Helm, HelmError> {
        let mut kube_args = Vec::new();
        if let Some(k) = kubeconfig {
            kube_args.push(OsString::from("--kubeconfig"));
            kube_args.push(k.as_os_str().to_owned());
        }
        if let Some(c) = context {
            kube_args.push(OsString::from("--kube-context"));
            kube_args.push(OsString::from(c));
        }
        let mut helm = Helm {
            binary: binary.to_path_buf(),
            major: 3,
            kube_args,
            timeout,
            metrics: None,
        };
        let out = helm.run(&["version", "--short"], Duration::from_secs(30)).await?;
        helm.major = parse_major(&out).ok_or_else(|| HelmError::Output(format!("helm version: {out}")))?;
        Ok(helm)
    }

    /// Counts and times every helm child process in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Helm {
        self.metrics = Some(metrics);
        self
    }

    pub fn major(&self) -> u8 {
        self.major
    }

    /// `helm get values -o json`: the user-supplied values of the current revision.
    pub async fn get_values(&self, release: &str, namespace: &str) -> Result<serde_json::Value, HelmError> {
        let out = self
            .run(
                &["get", "values", release, "-n", namespace, "-o", "json"],
                self.quick(),
            )
            .await?;
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).map_err(|e| HelmError::Output(e.to_string()))?;
        Ok(if v.is_null() { serde_json::json!({}) } else { v })
    }

    /// `helm template`: the manifests of a release rendered without a cluster (the charts'
    /// `lookup` finds nothing), values from files as for an install.
    pub async fn template(
        &self,
        release: &str,
        namespace: &str,
        chart: &Path,
        values_files: &[PathBuf],
    ) -> Result<String, HelmError> {
        let mut args: Vec<OsString> = vec!["template".into(), release.into(), chart.into()];
        args.extend(["-n", namespace].map(OsString::from));
        for f in values_files {
            args.push(OsString::from("-f"));
            args.push(f.as_os_str().to_owned());
        }
        self.run_os(&args, self.quick()).await
    }

    fn quick(&self) -> Duration {
        Duration::from_secs(60).min(self.timeout + GRACE)
    }

    async fn run(&self, args: &[&str], limit: Duration) -> Result<String, HelmError> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        self.run_os(&args, limit).await
    }

    async fn run_os(&self, args: &[OsString], limit: Duration) -> Result<String, HelmError> {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            .args(&self.kube_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let started = std::time::Instant::now();
        let result = self.wait(cmd, limit).await;
        if let Some(m) = &self.metrics {
            let op = operation(args.first().and_then(|a| a.to_str()).unwrap_or(""));
            m.helm_operation(
                op,
                result.as_ref().map_or_else(HelmError::code, |_| "ok"),
                started,
            );
        }
        result
    }

    async fn wait(&self, mut cmd: Command, limit: Duration) -> Result<String, HelmError> {
        let spawn_err = |source| HelmError::Spawn {
            binary: self.binary.clone(),
            source,
        };
        let child = cmd.spawn().map_err(spawn_err)?;
        let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(r) => r.map_err(spawn_err)?,
            Err(_) => return Err(HelmError::Killed(limit)),
        };
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(HelmError::classify(&String::from_utf8_lossy(&out.stderr)))
        }
    }
}

/// The helm operations the runner and the planner need: small, so both are testable with a
/// fake. Errors are classified ([`HelmError::code`]); see each variant for retryability.
pub trait HelmOps: Send + Sync + 'static {
    /// `helm upgrade --install --wait` with values from files.
    fn upgrade_install(&self, req: &InstallRequest) -> impl Future<Output = Result<(), HelmError>> + Send;
    /// `helm rollback` to the previous revision.
    fn rollback(&self, release: &str, namespace: &str) -> impl Future<Output = Result<(), HelmError>> + Send;
    /// `helm uninstall --wait`; an absent release is success.
    fn uninstall(&self, release: &str, namespace: &str)
    -> impl Future<Output = Result<(), HelmError>> + Send;
    /// One release's state; `None` when it does not exist.
    fn status(
        &self,
        release: &str,
        namespace: &str,
    ) -> impl Future<Output = Result<Option<ReleaseInfo>, HelmError>> + Send;
    /// Every release in every namespace, in any state.
    fn list_all(&self) -> impl Future<Output = Result<Vec<ListedRelease>, HelmError>> + Send;
}

impl HelmOps for Helm {
    /// `helm status`; `None` when the release does not exist.
    async fn status(&self, release: &str, namespace: &str) -> Result<Option<ReleaseInfo>, HelmError> {
        match self
            .run(&["status", release, "-n", namespace, "-o", "json"], self.quick())
            .await
        {
            Ok(out) => parse_status(&out).map(Some),
            Err(HelmError::ReleaseNotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every release in every namespace, in any state, page by page (`helm list -A`; helm 3
    /// needs `--all` to include failed and pending releases, helm 4 lists them by default).
    async fn list_all(&self) -> Result<Vec<ListedRelease>, HelmError> {
        const PAGE: usize = 1000;
        let mut all = Vec::new();
        loop {
            let (max, offset) = (PAGE.to_string(), all.len().to_string());
            let mut args = vec!["list", "-A"];
            if self.major < 4 {
                args.push("--all");
            }
            args.extend(["--max", &max, "--offset", &offset, "-o", "json"]);
            let page = parse_list(&self.run(&args, self.quick()).await?)?;
            let done = page.len() < PAGE;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    /// `helm upgrade --install --wait` with values from files.
    async fn upgrade_install(&self, req: &InstallRequest) -> Result<(), HelmError> {
        let mut args: Vec<OsString> = ["upgrade", "--install", &req.release]
            .iter()
            .map(OsString::from)
            .collect();
        args.push(req.chart.as_os_str().to_owned());
        args.extend(["-n", &req.namespace, "--wait", "--timeout"].map(OsString::from));
        args.push(OsString::from(format!("{}s", self.timeout.as_secs().max(1))));
        for f in &req.values_files {
            args.push(OsString::from("-f"));
            args.push(f.as_os_str().to_owned());
        }
        if req.rollback_on_failure {
            args.push(OsString::from(if self.major >= 4 {
                "--rollback-on-failure"
            } else {
                "--atomic"
            }));
        }
        self.run_os(&args, self.timeout + GRACE).await.map(drop)
    }

    /// `helm rollback` to the previous revision, waiting for it.
    async fn rollback(&self, release: &str, namespace: &str) -> Result<(), HelmError> {
        let timeout = format!("{}s", self.timeout.as_secs().max(1));
        let mut args = vec!["rollback", release];
        args.extend(["-n", namespace, "--wait", "--timeout", &timeout]);
        self.run(&args, self.timeout + GRACE).await.map(drop)
    }

    /// `helm uninstall --wait`; an absent release is success.
    async fn uninstall(&self, release: &str, namespace: &str) -> Result<(), HelmError> {
        let timeout = format!("{}s", self.timeout.as_secs().max(1));
        let args = [
            "uninstall",
            release,
            "-n",
            namespace,
            "--wait",
            "--timeout",
            &timeout,
        ];
        match self.run(&args, self.timeout + GRACE).await {
            Ok(_) | Err(HelmError::ReleaseNotFound) => Ok(()),
            Err(HelmError::Failed { stderr }) if stderr.contains("not found") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A bounded metric label for a helm subcommand.
fn operation(subcommand: &str) -> &'static str {
    match subcommand {
        "upgrade" => "upgrade",
        "uninstall" => "uninstall",
        "rollback" => "rollback",
        "status" => "status",
        "get" => "get_values",
        "list" => "list",
        "version" => "version",
        "template" => "template",
        _ => "other",
    }
}

fn parse_major(version: &str) -> Option<u8> {
    let v = version.trim().strip_prefix('v')?;
    v.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_major("v3.19.0+g3d8990f\n"), Some(3));
        assert_eq!(parse_major("v4.1.4+g05fa379"), Some(4));
        assert_eq!(parse_major("garbage"), None);
    }

    /// Real stderr lines of helm 3.19 / 4.1.
    #[test]
    fn stderr_is_classified() {
        let cases = [
            (
                "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress",
                "helm_operation_in_progress",
            ),
            ("Error: release: not found", "helm_release_not_found"),
            (
                "Error: Kubernetes cluster unreachable: Get \"http://127.0.0.1:1/version\": dial tcp 127.0.0.1:1: connect: connection refused",
                "cluster_unreachable",
            ),
            ("Error: UPGRADE FAILED: context deadline exceeded", "helm_timeout"),
            (
                "Error: INSTALLATION FAILED: resource Deployment/ns/web not ready. status: InProgress, message: timeout waiting for condition",
                "helm_timeout",
            ),
            ("Error: path \"charts/nope\" not found", "helm_chart_not_found"),
            (
                "Error: UPGRADE FAILED: template: x/templates/a.yaml:3:4: executing \"x\" at <.Values.a.b>: nil pointer evaluating interface {}.b; execution error at (x/templates/a.yaml:1:1): boom",
                "helm_invalid_values",
            ),
            ("Error: something else", "helm_failed"),
        ];
        for (stderr, code) in cases {
            assert_eq!(HelmError::classify(stderr).code(), code, "{stderr}");
        }
    }

    #[test]
    fn list_json_is_parsed() {
        let json = r#"[{"name":"a","namespace":"store-a","revision":"3","updated":"2026-11-22 14:05:00.123456789 +0530 IST","status":"pending-upgrade","chart":"x-0.1.0","app_version":""},
                      {"name":"b","namespace":"store-b","revision":"1","updated":"2026-11-22 08:35:00 +0000 UTC","status":"deployed","chart":"x-0.1.0","app_version":""}]"#;
        let list = parse_list(json).expect("parses");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].info.status, ReleaseStatus::PendingUpgrade);
        assert_eq!(list[0].info.revision, 3);
        let t = |s: &str| s.parse::<jiff::Timestamp>().ok();
        assert_eq!(list[0].info.last_deployed, t("2026-11-22T08:35:00.123456789Z"));
        assert_eq!(list[1].info.last_deployed, t("2026-11-22T08:35:00Z"));
        assert!(parse_list("[]").is_ok_and(|l| l.is_empty()));
        assert!(parse_list("{}").is_err());
    }

    #[test]
    fn status_json_is_parsed() {
        let json = r#"{"name":"a","info":{"first_deployed":"2026-11-22T10:00:00.1Z","last_deployed":"2026-11-22T10:05:00.123456789Z","deleted":"","description":"Upgrade complete","status":"pending-upgrade"},"version":3,"namespace":"store-a"}"#;
        let info = parse_status(json).expect("parses");
        assert_eq!(info.status, ReleaseStatus::PendingUpgrade);
        assert!(info.status.is_pending());
        assert_eq!(info.revision, 3);
        assert!(info.last_deployed.is_some());
        assert!(parse_status("{}").is_err());
    }
}
