//! A fake [`BackupOps`] for unit tests: Jobs that take as long as told, under paused time, and
//! fail as often as told.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use super::{BackupError, BackupOps, JobOutcome, Purpose};
use crate::config::SecretRef;

#[derive(Default)]
pub struct FakeBackups {
    /// Every call (`copy <ns>`, `start <ns> <cronjob>`, `wait <ns> <job>`, `done <ns> <job>`)
    /// with when it happened.
    pub calls: Mutex<Vec<(String, Instant)>>,
    /// Namespaces that have a backup CronJob.
    pub cronjobs: Mutex<BTreeSet<String>>,
    /// How long a backup Job runs (default 10 s).
    pub duration: Mutex<Option<Duration>>,
    /// This many Jobs fail (`dump_failed`) before they succeed.
    pub failures: Mutex<usize>,
    jobs: Mutex<usize>,
}

impl FakeBackups {
    fn log(&self, call: String) {
        if let Ok(mut c) = self.calls.lock() {
            c.push((call, Instant::now()));
        }
    }

    /// The calls whose text starts with `prefix`, with their times.
    pub fn calls(&self, prefix: &str) -> Vec<(String, Instant)> {
        self.calls
            .lock()
            .map(|c| c.iter().filter(|(s, _)| s.starts_with(prefix)).cloned().collect())
            .unwrap_or_default()
    }

    pub fn with_cronjob(&self, namespace: &str) {
        if let Ok(mut c) = self.cronjobs.lock() {
            c.insert(namespace.to_string());
        }
    }
}

impl BackupOps for FakeBackups {
    fn copy_secret<'a>(
        &'a self,
        _: &'a SecretRef,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<(), BackupError>> {
        Box::pin(async move {
            self.log(format!("copy {namespace}"));
            Ok(())
        })
    }

    fn start<'a>(
        &'a self,
        namespace: &'a str,
        cronjob: &'a str,
        purpose: Purpose,
    ) -> BoxFuture<'a, Result<Option<String>, BackupError>> {
        Box::pin(async move {
            self.log(format!("start {namespace} {cronjob}"));
            let has = self
                .cronjobs
                .lock()
                .map(|c| c.contains(namespace))
                .unwrap_or(false);
            if !has {
                return Ok(None);
            }
            let n = self.jobs.lock().map(|mut j| {
                *j += 1;
                *j
            });
            Ok(Some(format!("{cronjob}-{}-{}", purpose.as_str(), n.unwrap_or(0))))
        })
    }

    fn wait<'a>(
        &'a self,
        namespace: &'a str,
        job: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<JobOutcome, BackupError>> {
        Box::pin(async move {
            self.log(format!("wait {namespace} {job}"));
            let runs = self
                .duration
                .lock()
                .ok()
                .and_then(|d| *d)
                .unwrap_or(Duration::from_secs(10));
            if runs > timeout {
                tokio::time::sleep(timeout).await;
                return Err(BackupError::Timeout {
                    job: job.to_string(),
                    after: timeout,
                });
            }
            tokio::time::sleep(runs).await;
            self.log(format!("done {namespace} {job}"));
            let fail = self.failures.lock().map(|mut f| {
                let fail = *f > 0;
                *f = f.saturating_sub(1);
                fail
            });
            let failed = fail.unwrap_or(false);
            Ok(JobOutcome {
                job: job.to_string(),
                succeeded: !failed,
                reason: if failed { "dump_failed" } else { "ok" }.into(),
                snapshot: (!failed).then(|| "ab".repeat(32)),
                detail: failed.then(|| "container dump exited 1".to_string()),
                finished: Some(jiff::Timestamp::now()),
            })
        })
    }
}
