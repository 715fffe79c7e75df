//! `storekeeper backups <store>`: a store's snapshots. Where restic is installed, the CLI runs
//! `restic snapshots` itself, with the repository and the backup Secret's keys (read through the
//! API) in restic's environment only: never on a command line, never printed. Otherwise a short
//! Job from a backup CronJob's template runs the same listing in the cluster and returns it in
//! its termination message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{EnvVar, Secret};
use kube::Client;
use kube::api::{Api, PostParams};
use serde::Deserialize;

use super::{BackupError, Purpose, cronjob_name, job_from_cronjob};
use crate::config::BackupSettings;
use crate::spec::StoreName;

/// `storekeeper.dev/backup` of a listing Job: not a backup (the monitor ignores it).
pub const LIST_PURPOSE: &str = "list";

/// One snapshot, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The full id with restic, the short one (8 hex digits) from a listing Job; both work in
    /// `restore_from`.
    pub id: String,
    pub time: String,
    /// The `revision=` tag: the store file's revision when the store was last applied.
    pub revision: Option<String>,
}

/// Why snapshots could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("restic failed (exit code {code:?}): {stderr}")]
    Restic { code: Option<i32>, stderr: String },
    #[error("cannot run {}: {source}", path.display())]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("restic printed something that is not a snapshot list: {0}")]
    Output(String),
    #[error(
        "no namespace has a backup CronJob to run a listing Job from; install restic, or list from a store with backups on"
    )]
    NoCronJob,
    #[error("the listing Job failed: {0}")]
    Job(String),
}

/// A snapshot in `restic snapshots --json`.
#[derive(Deserialize)]
struct ResticSnapshot {
    id: String,
    time: String,
    #[serde(default)]
    tags: Vec<String>,
}

/// Parses `restic snapshots --json`: newest first.
pub fn parse_restic(json: &[u8]) -> Result<Vec<SnapshotInfo>, ListError> {
    let mut list: Vec<ResticSnapshot> =
        serde_json::from_slice(json).map_err(|e| ListError::Output(e.to_string()))?;
    list.sort_by(|a, b| b.time.cmp(&a.time));
    Ok(list
        .into_iter()
        .map(|s| SnapshotInfo {
            revision: revision_tag(&s.tags),
            id: s.id,
            time: s.time,
        })
        .collect())
}

fn revision_tag(tags: &[String]) -> Option<String> {
    tags.iter()
        .find_map(|t| t.strip_prefix("revision="))
        .map(str::to_string)
}

/// `restic` on `$PATH`, if there is one.
pub fn find_restic() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("restic"))
        .find(|p| p.is_file())
}

/// The Secret's keys that are environment variable names (as `envFrom` takes them).
async fn secret_env(
    client: &Client,
    settings: &BackupSettings,
) -> Result<BTreeMap<String, Vec<u8>>, BackupError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &settings.secret.namespace);
    let Some(secret) = secrets.get_opt(&settings.secret.name).await? else {
        return Err(BackupError::SecretMissing {
            namespace: settings.secret.namespace.clone(),
            name: settings.secret.name.clone(),
        });
    };
    let env_name = |k: &str| {
        k.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| env_name(k))
        .map(|(k, v)| (k, v.0))
        .collect())
}

/// Lists with the local restic: its environment is cleared but for `PATH`, `HOME` (restic's
/// cache) and what the Secret and the repository give it.
pub async fn with_restic(
    restic: &Path,
    client: &Client,
    settings: &BackupSettings,
    store: &StoreName,
) -> Result<Vec<SnapshotInfo>, ListError> {
    use std::os::unix::ffi::OsStringExt;
    let env = secret_env(client, settings).await?;
    let mut cmd = tokio::process::Command::new(restic);
    cmd.env_clear()
        .args(["snapshots", "--json", "--no-lock", "--host", store.as_str()])
        .arg(format!("--tag=store={store}"))
        .env("RESTIC_REPOSITORY", settings.repository_for(store))
        .kill_on_drop(true);
    for keep in ["PATH", "HOME", "TMPDIR"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    for (k, v) in env {
        cmd.env(k, std::ffi::OsString::from_vec(v));
    }
    let run = tokio::time::timeout(Duration::from_secs(120), cmd.output()).await;
    let out = match run {
        Err(_) => {
            return Err(ListError::Restic {
                code: None,
                stderr: "no answer within 120 s".into(),
            });
        }
        Ok(r) => r.map_err(|source| ListError::Spawn {
            path: restic.to_path_buf(),
            source,
        })?,
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(ListError::Restic {
            code: out.status.code(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" "),
        });
    }
    parse_restic(&out.stdout)
}

/// The listing a Job runs in the restic image (busybox sh, jq): newest first, one line each,
/// after a `count=` line, into the termination message (at most 4 KiB: the oldest fall off,
/// which the caller reports). Inputs are environment variables only.
const LIST_SCRIPT: &str = r#"set -eu
if ! out="$(restic snapshots --json --no-lock --host "$STORE_NAME" --tag "store=$STORE_NAME" 2>/tmp/restic.err)"; then
  printf 'error=restic %s\n' "$(tail -n 2 /tmp/restic.err | tr '\n' ' ' | cut -c1-300)" >/dev/termination-log
  exit 1
fi
printf '%s' "$out" | jq -r 'sort_by(.time) | reverse | "count=\(length)", (.[] | "\(.short_id) \(.time | sub("\\.[0-9]+"; "")) \(((.tags // []) | map(select(startswith("revision="))) | first // "revision=-") | ltrimstr("revision="))")' >/dev/termination-log
"#;

/// Parses a listing Job's termination message: the snapshots, and how many there are in all.
pub fn parse_listing(text: &str) -> Result<(Vec<SnapshotInfo>, usize), ListError> {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    if let Some(err) = first.strip_prefix("error=") {
        return Err(ListError::Job(err.trim().to_string()));
    }
    let count = first
        .strip_prefix("count=")
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| ListError::Output("no count= line".into()))?;
    let list = lines
        .filter_map(|l| {
            let mut parts = l.split(' ');
            let (id, time) = (parts.next()?, parts.next()?);
            let ok = id.len() >= 8 && id.bytes().all(|b| b.is_ascii_hexdigit());
            ok.then(|| SnapshotInfo {
                id: id.to_string(),
                time: time.to_string(),
                revision: parts.next().filter(|r| *r != "-").map(str::to_string),
            })
        })
        .collect();
    Ok((list, count))
}

/// A listing Job from a backup CronJob's template: only the restic container, its command the
/// listing, `STORE_NAME` and `RESTIC_REPOSITORY` for `store`, only its scratch and repository
/// volumes (no store volume, so no pod affinity either), no retries.
pub fn listing_job(cj: &CronJob, name: &str, store: &StoreName, repository: &str) -> Option<Job> {
    let mut job = job_from_cronjob(cj, name, Purpose::Manual)?;
    let labels = job.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(super::PURPOSE_LABEL.into(), LIST_PURPOSE.into());
    labels.insert(super::STORE_LABEL.into(), store.to_string());
    let spec = job.spec.as_mut()?;
    spec.backoff_limit = Some(0);
    spec.active_deadline_seconds = Some(300);
    spec.ttl_seconds_after_finished = Some(600);
    spec.pod_failure_policy = None;
    let pod = spec.template.spec.as_mut()?;
    pod.init_containers = None;
    pod.affinity = None;
    let mut restic = pod.containers.iter().find(|c| c.name == "restic")?.clone();
    restic.command = Some(vec!["/bin/sh".into(), "-c".into(), LIST_SCRIPT.into()]);
    restic.args = None;
    let keep = |n: &str| n == "tmp" || n == "repository";
    restic.volume_mounts = restic
        .volume_mounts
        .map(|m| m.into_iter().filter(|m| keep(&m.name)).collect());
    let env = restic.env.get_or_insert_with(Vec::new);
    env.retain(|e| e.name != "STORE_NAME" && e.name != "RESTIC_REPOSITORY");
    for (k, v) in [
        ("STORE_NAME", store.to_string()),
        ("RESTIC_REPOSITORY", repository.to_string()),
    ] {
        env.push(EnvVar {
            name: k.into(),
            value: Some(v),
            value_from: None,
        });
    }
    pod.containers = vec![restic];
    pod.volumes = pod
        .volumes
        .take()
        .map(|v| v.into_iter().filter(|v| keep(&v.name)).collect());
    Some(job)
}

/// Lists through a Job in `namespace` from the CronJob of `runner` (the store itself, or any
/// store with backups when it is gone): waits for it, reads its pod's termination message.
pub async fn with_job(
    client: &Client,
    namespace: &str,
    runner: &StoreName,
    store: &StoreName,
    settings: &BackupSettings,
) -> Result<(Vec<SnapshotInfo>, usize), ListError> {
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), namespace);
    let cronjob = cronjob_name(runner);
    let cj = cronjobs
        .get_opt(&cronjob)
        .await
        .map_err(BackupError::from)?
        .ok_or(ListError::NoCronJob)?;
    let name = super::job_name(&cronjob, Purpose::Manual).replacen("-manual-", "-list-", 1);
    let job = listing_job(&cj, &name, store, &settings.repository_for(store)).ok_or(ListError::NoCronJob)?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    jobs.create(&PostParams::default(), &job)
        .await
        .map_err(BackupError::from)?;
    let done = super::wait_raw(client, namespace, &name, Duration::from_secs(300)).await?;
    let message = super::termination_message(client, namespace, &done, "restic").await?;
    parse_listing(&message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_json_is_listed_newest_first_with_the_revision() {
        let json = br#"[
          {"time":"2026-11-20T03:30:01.5+00:00","id":"aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11","short_id":"aa11aa11","hostname":"shop","tags":["storekeeper","store=shop","revision=dir:abc"],"paths":["/db"]},
          {"time":"2026-11-21T03:30:01.5+00:00","id":"bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22","short_id":"bb22bb22","hostname":"shop","paths":["/db"]}
        ]"#;
        let list = parse_restic(json).expect("parse");
        assert_eq!(list.len(), 2);
        assert!(list[0].id.starts_with("bb22") && list[0].revision.is_none());
        assert_eq!(list[1].revision.as_deref(), Some("dir:abc"));
        assert!(parse_restic(b"Fatal: wrong password").is_err());
    }

    #[test]
    fn a_listing_message_gives_the_snapshots_and_the_count() {
        let msg =
            "count=3\nbb22bb22 2026-11-21T03:30:01+00:00 dir:abc\naa11aa11 2026-11-20T03:30:01+00:00 -\n";
        let (list, count) = parse_listing(msg).expect("parse");
        assert_eq!(
            (list.len(), count),
            (2, 3),
            "the oldest fell off the 4 KiB message"
        );
        assert_eq!(list[0].revision.as_deref(), Some("dir:abc"));
        assert_eq!(list[1].revision, None);
        let e = parse_listing("error=restic Fatal: wrong password\n").expect_err("error");
        assert!(e.to_string().contains("wrong password"), "{e}");
        assert!(parse_listing("").is_err());
    }
}
