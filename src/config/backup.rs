//! `[backup]` in `storekeeper.toml` → validated [`BackupSettings`]: where every store's restic
//! repository lives, the Secret with its credentials, and the defaults a store file may change
//! in its own `[backup]`. Every value keeps its span, so each problem points at its key.
//!
//! The repository is the operator's; each store gets `<repository>/<store>` (one repository per
//! store: its locks, `forget` and `prune` touch only its own data; see docs/backups.md).

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::HumanDuration;
use crate::diagnostic::Diagnostic;
use crate::spec::StoreName;
use crate::spec::backup::{MAX_KEEP, check_schedule};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackup {
    repository: Option<Spanned<String>>,
    secret: Option<Spanned<String>>,
    secret_namespace: Option<Spanned<String>>,
    schedule: Option<Spanned<String>>,
    keep_daily: Option<Spanned<i64>>,
    keep_weekly: Option<Spanned<i64>>,
    keep_monthly: Option<Spanned<i64>>,
    final_timeout: Option<Spanned<HumanDuration>>,
}

/// The restic backends storekeeper documents (restic's own prefixes; a path is a local
/// repository, which the pods reach through a volume from the operator's values file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    S3,
    B2,
    Sftp,
    Rest,
    Rclone,
    Local,
}

impl Backend {
    const PREFIXES: [(&'static str, Backend); 5] = [
        ("s3:", Backend::S3),
        ("b2:", Backend::B2),
        ("sftp:", Backend::Sftp),
        ("rest:", Backend::Rest),
        ("rclone:", Backend::Rclone),
    ];

    fn of(repository: &str) -> Option<Backend> {
        if repository.starts_with('/') {
            return Some(Backend::Local);
        }
        Self::PREFIXES
            .iter()
            .find(|(p, _)| repository.starts_with(p) && repository.len() > p.len())
            .map(|(_, b)| *b)
    }
}

/// Where a Secret is read from. It is copied into each store's namespace under the same name;
/// its contents are never logged, planned or shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub name: String,
    pub namespace: String,
}

/// How many snapshots `restic forget` keeps per rule (0: the rule keeps none; all 0: keep all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
}

/// Validated `[backup]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSettings {
    /// The operator's repository, without a trailing `/`.
    pub repository: String,
    pub backend: Backend,
    pub secret: SecretRef,
    pub schedule: String,
    pub retention: Retention,
    /// How long a deletion waits for its final backup Job (and `storekeeper backup` for its).
    pub final_timeout: Duration,
}

impl BackupSettings {
    /// The repository of one store.
    pub fn repository_for(&self, store: &StoreName) -> String {
        format!("{}/{store}", self.repository)
    }
}

/// Longer than the chart's `activeDeadlineSeconds` (1 h), so a Job that runs out of time fails
/// with its own reason (`DeadlineExceeded`) before the daemon stops waiting.
pub const DEFAULT_FINAL_TIMEOUT: Duration = Duration::from_secs(65 * 60);
/// The chart's default: 03:30 every day (in the controller's time zone, usually UTC).
pub const DEFAULT_SCHEDULE: &str = "30 3 * * *";
pub const DEFAULT_SECRET: &str = "storekeeper-backup";
pub const DEFAULT_SECRET_NAMESPACE: &str = "storekeeper";
/// A week of dailies, a month of weeklies, half a year of monthlies (the chart's defaults).
pub const DEFAULT_RETENTION: Retention = Retention {
    keep_daily: 7,
    keep_weekly: 4,
    keep_monthly: 6,
};

struct Reader<'s> {
    path: &'s Path,
    src: &'s str,
    errors: Vec<Diagnostic>,
}

impl Reader<'_> {
    fn error(&mut self, span: Range<usize>, key: &str, message: String, hint: &str) {
        let field = format!("backup.{key}");
        let d = Diagnostic::at(self.path, self.src, span, &field, message).with_hint(hint);
        self.errors.push(d);
    }
}

/// Validates `[backup]` (`None`: no section, backups are off); every error is reported.
pub(super) fn read(
    raw: Option<RawBackup>,
    path: &Path,
    src: &str,
) -> Result<Option<BackupSettings>, Vec<Diagnostic>> {
    let Some(raw) = raw else { return Ok(None) };
    let mut r = Reader {
        path,
        src,
        errors: Vec::new(),
    };
    let repository = repository(&mut r, raw.repository);
    let secret = SecretRef {
        name: name(&mut r, "secret", raw.secret, DEFAULT_SECRET),
        namespace: name(
            &mut r,
            "secret_namespace",
            raw.secret_namespace,
            DEFAULT_SECRET_NAMESPACE,
        ),
    };
    let schedule = schedule(&mut r, raw.schedule);
    let retention = Retention {
        keep_daily: keep(&mut r, "keep_daily", raw.keep_daily, DEFAULT_RETENTION.keep_daily),
        keep_weekly: keep(
            &mut r,
            "keep_weekly",
            raw.keep_weekly,
            DEFAULT_RETENTION.keep_weekly,
        ),
        keep_monthly: keep(
            &mut r,
            "keep_monthly",
            raw.keep_monthly,
            DEFAULT_RETENTION.keep_monthly,
        ),
    };
    let final_timeout = raw.final_timeout.map_or(DEFAULT_FINAL_TIMEOUT, |d| d.get_ref().0);
    match repository {
        Some((repository, backend)) if r.errors.is_empty() => Ok(Some(BackupSettings {
            repository,
            backend,
            secret,
            schedule,
            retention,
            final_timeout,
        })),
        _ => Err(r.errors),
    }
}

/// The default schedule, or the configured one held to what Kubernetes takes.
fn schedule(r: &mut Reader<'_>, raw: Option<Spanned<String>>) -> String {
    let Some(s) = raw else {
        return DEFAULT_SCHEDULE.to_string();
    };
    if let Err(why) = check_schedule(s.get_ref()) {
        let msg = format!("`backup.schedule` {:?}: {why}", s.get_ref());
        r.error(
            s.span(),
            "schedule",
            msg,
            "write five fields, e.g. \"30 3 * * *\" (03:30 every day), or \"@daily\"",
        );
    }
    s.into_inner().trim().to_string()
}

const REPOSITORY_HINT: &str = "a restic repository: s3:https://host/bucket/path, b2:bucket:path, \
     sftp:user@host:/path, rest:https://host:8000/path, rclone:remote:path, or an absolute path";

fn repository(r: &mut Reader<'_>, raw: Option<Spanned<String>>) -> Option<(String, Backend)> {
    let Some(raw) = raw else {
        let span = r.src.find("[backup]").map_or(0..0, |i| i..i + "[backup]".len());
        r.error(
            span,
            "repository",
            "missing required field `repository`".into(),
            REPOSITORY_HINT,
        );
        return None;
    };
    let span = raw.span();
    let repo = raw.into_inner().trim().trim_end_matches('/').to_string();
    let Some(backend) = Backend::of(&repo) else {
        let msg = format!("`backup.repository` {repo:?} is not a repository storekeeper knows");
        r.error(span, "repository", msg, REPOSITORY_HINT);
        return None;
    };
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == '"' || c == '\'' || c == '\\';
    if repo.len() > 400 || repo.chars().any(bad) {
        let msg =
            "`backup.repository` must be one line of at most 400 characters, without spaces or quotes".into();
        r.error(span, "repository", msg, REPOSITORY_HINT);
        return None;
    }
    if has_password(&repo) {
        let msg = "`backup.repository` holds a password; it would be shown wherever the repository is".into();
        let hint = "put credentials in the Secret (RESTIC_REST_USERNAME/RESTIC_REST_PASSWORD, \
                    AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ...), never in the URL";
        r.error(span, "repository", msg, hint);
        return None;
    }
    Some((repo, backend))
}

/// `scheme://user:password@host` anywhere in the repository.
fn has_password(repo: &str) -> bool {
    repo.split("://").skip(1).any(|rest| {
        let authority = rest.split('/').next().unwrap_or_default();
        authority
            .rsplit_once('@')
            .is_some_and(|(userinfo, _)| userinfo.contains(':'))
    })
}

/// A Kubernetes object name (a DNS subdomain; Secrets and namespaces both take a label here).
fn name(r: &mut Reader<'_>, key: &str, raw: Option<Spanned<String>>, default: &str) -> String {
    let Some(raw) = raw else {
        return default.to_string();
    };
    let ok = crate::spec::is_dns_name(raw.get_ref()) || crate::spec::is_dns_label(raw.get_ref());
    if !ok {
        let msg = format!("`backup.{key}` {:?} is not a Kubernetes name", raw.get_ref());
        r.error(
            raw.span(),
            key,
            msg,
            "lowercase letters, digits, '-' and '.', e.g. \"storekeeper-backup\"",
        );
    }
    raw.into_inner()
}

fn keep(r: &mut Reader<'_>, key: &str, raw: Option<Spanned<i64>>, default: u32) -> u32 {
    let Some(raw) = raw else { return default };
    match u32::try_from(*raw.get_ref()) {
        Ok(n) if n <= MAX_KEEP => n,
        _ => {
            let msg = format!(
                "`backup.{key}` must be from 0 to {MAX_KEEP}, found {}",
                raw.get_ref()
            );
            r.error(
                raw.span(),
                key,
                msg,
                "the number of snapshots this rule keeps (0: none by this rule)",
            );
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn parse(src: &str) -> Result<Settings, Vec<Diagnostic>> {
        Settings::parse(Path::new("sk.toml"), src).map_err(|e| e.diagnostics)
    }

    #[test]
    fn no_section_no_backups_and_defaults_for_the_rest() {
        assert_eq!(parse("").map(|s| s.backup), Ok(None));
        let s = parse("[backup]\nrepository = \"s3:https://s3.example.com/bucket/shops/\"\n").expect("valid");
        let b = s.backup.expect("backups on");
        assert_eq!(b.repository, "s3:https://s3.example.com/bucket/shops");
        assert_eq!(b.backend, Backend::S3);
        let shop = StoreName::new("shop").expect("name");
        assert_eq!(
            b.repository_for(&shop),
            "s3:https://s3.example.com/bucket/shops/shop"
        );
        assert_eq!(
            b.secret,
            SecretRef {
                name: "storekeeper-backup".into(),
                namespace: "storekeeper".into()
            }
        );
        assert_eq!(
            (b.schedule.as_str(), b.retention, b.final_timeout),
            (DEFAULT_SCHEDULE, DEFAULT_RETENTION, DEFAULT_FINAL_TIMEOUT)
        );
    }

    #[test]
    fn every_backend_and_a_local_path() {
        for (repo, backend) in [
            ("b2:bucket:shops", Backend::B2),
            ("sftp:backup@host.example.com:/srv/restic", Backend::Sftp),
            ("rest:https://backup.example.com:8000/shops", Backend::Rest),
            ("rclone:remote:shops", Backend::Rclone),
            ("/repository", Backend::Local),
        ] {
            let src = format!("[backup]\nrepository = \"{repo}\"\n");
            assert_eq!(
                parse(&src).ok().and_then(|s| s.backup).map(|b| b.backend),
                Some(backend),
                "{repo}"
            );
        }
    }

    #[test]
    fn bad_values_are_reported_at_their_keys_all_at_once() {
        let src = "[backup]\nrepository = \"rest:https://me:hunter2@backup.example.com/\"\n\
                   secret = \"Backup Creds\"\nschedule = \"0 0 * * 7\"\nkeep_daily = -1\n\
                   final_timeout = \"soon\"\n";
        let e = parse(src).expect_err("invalid");
        // The duration is a type error of the raw document: toml reports it alone, first.
        assert_eq!(e[0].field, "backup.final_timeout", "{e:#?}");
        let src = src.replace("final_timeout = \"soon\"\n", "");
        let e = parse(&src).expect_err("invalid");
        let got: Vec<(usize, &str)> = e.iter().map(|d| (d.line, d.field.as_str())).collect();
        assert_eq!(
            got,
            [
                (2, "backup.repository"),
                (3, "backup.secret"),
                (4, "backup.schedule"),
                (5, "backup.keep_daily")
            ],
            "{e:#?}"
        );
        assert!(
            e[0].message.contains("holds a password") && !e[0].message.contains("hunter2"),
            "{:?}",
            e[0]
        );
        assert!(e[2].message.contains("0–6"), "{:?}", e[2]);
    }

    #[test]
    fn a_missing_or_unknown_repository_says_what_it_takes() {
        let e = parse("[backup]\nschedule = \"@daily\"\n").expect_err("no repository");
        assert_eq!((e[0].line, e[0].field.as_str()), (1, "backup.repository"));
        assert!(
            e[0].hint.as_deref().is_some_and(|h| h.contains("s3:https://")),
            "{e:?}"
        );
        let e = parse("[backup]\nrepository = \"ftp://old.example.com\"\n").expect_err("unknown");
        assert!(
            e[0].message.contains("not a repository storekeeper knows"),
            "{e:?}"
        );
        let e = parse("[backup]\nrepsitory = \"/r\"\n").expect_err("typo");
        assert_eq!(e[0].hint.as_deref(), Some("did you mean `repository`?"));
    }
}
