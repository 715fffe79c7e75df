//! The daemon config, `storekeeper.toml`, in two stages: raw serde structs that reject unknown
//! keys, then validated [`Settings`] with typed values. Every setting has a default, so an absent
//! file (or an empty one) yields a daemon that runs `stores.d` against the current kube context.

mod backup;
mod policy;

pub use backup::{Backend, BackupSettings, DEFAULT_FINAL_TIMEOUT, Retention, SecretRef};

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::diagnostic::Diagnostic;
use crate::spec::SpecDefaults;
use crate::spec::policy::Policy;

/// Where store files come from.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSettings {
    Directory { path: PathBuf },
    Git(Box<GitSettings>),
}

/// What to follow in a Git repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRef {
    Branch(String),
    Tag(String),
    Commit(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct GitSettings {
    pub url: String,
    pub reference: GitRef,
    /// Directory inside the repository that holds the store files.
    pub subpath: PathBuf,
    pub ssh_key_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    pub poll_interval: Duration,
    /// Where the checkout lives (systemd `StateDirectory=`).
    pub state_dir: PathBuf,
    /// Shared secret for `POST /hooks/git`, read from this file.
    pub webhook_secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    /// `None`: the usual lookup (`$KUBECONFIG`, `~/.kube/config`, in-cluster).
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub namespace_prefix: String,
    pub base_domain: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HelmSettings {
    pub binary: PathBuf,
    pub charts_dir: PathBuf,
    /// Operator values files applied before the generated ones, e.g. `values-prod.yaml`, relative
    /// to each chart's directory when not absolute.
    pub values_files: Vec<PathBuf>,
    pub timeout: Duration,
    pub max_concurrent: NonZeroUsize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileSettings {
    /// How often the directory is re-read when nothing signals a change.
    pub interval: Duration,
    /// How often every store's annotations and release state are re-checked for drift.
    pub resync_interval: Duration,
    /// Whether stores whose file is gone are deleted at all.
    pub prune: bool,
    /// The circuit breaker: when more stores than this would be deleted (counted over every
    /// store whose file is gone, not per cycle), none is deleted until each is approved.
    pub max_deletions: usize,
    /// How long a store whose file is gone waits (PendingDeletion, still serving) before it is
    /// deleted; zero deletes at once.
    pub deletion_grace: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// Protects the status page and `/stores*` (`server::AccessToken`); read at start.
    pub token_file: Option<PathBuf>,
}

/// Optional leader election through a coordination.k8s.io/v1 Lease (for more than one replica).
#[derive(Debug, Clone, PartialEq)]
pub struct LeaderSettings {
    pub namespace: String,
    pub lease_name: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

/// Validated daemon settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub source: SourceSettings,
    pub cluster: ClusterSettings,
    pub helm: HelmSettings,
    pub reconcile: ReconcileSettings,
    pub http: HttpSettings,
    /// `None`: this daemon always acts (one replica).
    pub leader_election: Option<LeaderSettings>,
    /// `[policy]`: what store files may ask for, and the caps on stores.
    pub policy: Arc<Policy>,
    /// Problems that do not stop the config from loading (a glob in `values_allowed` that matches
    /// guard-rail keys it cannot allow). `validate` prints them; the daemon should log them.
    pub warnings: Vec<Diagnostic>,
    /// `[[notify]]` targets (`crate::notify`).
    pub notify: Vec<crate::notify::NotifySettings>,
    /// `[backup]`; `None`: no backups (no CronJob, no final backup, no restore).
    pub backup: Option<Arc<BackupSettings>>,
}

impl Default for Settings {
    fn default() -> Self {
        // An empty document always passes validation, so this cannot fail.
        match Settings::from_raw(Raw::default()) {
            Ok(s) => s,
            Err(e) => unreachable!("defaults are valid: {e:?}"),
        }
    }
}

impl ClusterSettings {
    /// The namespace a store lives in: `<namespace_prefix><name>`.
    pub fn namespace_for(&self, store: &crate::spec::StoreName) -> String {
        format!("{}{}", self.namespace_prefix, store)
    }
}

/// Why a config could not be loaded; carries compiler-style diagnostics.
#[derive(Debug, thiserror::Error)]
#[error("invalid daemon config {}", .file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    pub diagnostics: Vec<Diagnostic>,
}

/// Config files larger than this are rejected unread.
const MAX_CONFIG_BYTES: u64 = 256 * 1024;

impl Settings {
    /// What every store file is read with: the default host domain and the policy. The one place
    /// that builds [`SpecDefaults`], so that validate, plan, apply and run apply the same policy.
    pub fn spec_defaults(&self) -> SpecDefaults {
        SpecDefaults {
            base_domain: self.cluster.base_domain.clone(),
            policy: Arc::clone(&self.policy),
        }
    }

    /// Loads and validates a config file.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let err = |d: Diagnostic| ConfigError {
            file: path.to_path_buf(),
            diagnostics: vec![d],
        };
        let meta = std::fs::metadata(path).map_err(|e| {
            err(Diagnostic::whole_file(path, format!("cannot read config: {e}"))
                .with_hint("pass an existing file to --config"))
        })?;
        if !meta.is_file() {
            return Err(err(Diagnostic::whole_file(
                path,
                "config is not a regular file".into(),
            )));
        }
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(err(Diagnostic::whole_file(
                path,
                format!("config is larger than {MAX_CONFIG_BYTES} bytes"),
            )));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| err(Diagnostic::whole_file(path, format!("cannot read config: {e}"))))?;
        let src = String::from_utf8(bytes)
            .map_err(|_| err(Diagnostic::whole_file(path, "config is not valid UTF-8".into())))?;
        Settings::parse(path, &src)
    }

    /// Parses config text; `path` is only used in diagnostics.
    pub fn parse(path: &Path, src: &str) -> Result<Settings, ConfigError> {
        let mut raw: Raw = toml::from_str(src).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim().to_string();
            let field = field_of(&message, src, span.start);
            let hint = hint_for(&message);
            let mut d = Diagnostic::at(path, src, span, &field, message);
            d.hint = hint;
            ConfigError {
                file: path.to_path_buf(),
                diagnostics: vec![d],
            }
        })?;
        let raw_policy = std::mem::take(&mut raw.policy);
        let raw_backup = raw.backup.take();
        let mut settings = Settings::from_raw(raw).map_err(|(field, message)| {
            let mut d = Diagnostic::whole_file(path, message);
            d.field = field.to_string();
            ConfigError {
                file: path.to_path_buf(),
                diagnostics: vec![d],
            }
        })?;
        let (policy, warnings) =
            policy::read(raw_policy, &settings.cluster.base_domain, path, src).map_err(|diagnostics| {
                ConfigError {
                    file: path.to_path_buf(),
                    diagnostics,
                }
            })?;
        settings.policy = Arc::new(policy);
        settings.warnings = warnings;
        settings.backup = backup::read(raw_backup, path, src)
            .map_err(|diagnostics| ConfigError {
                file: path.to_path_buf(),
                diagnostics,
            })?
            .map(Arc::new);
        Ok(settings)
    }

    fn from_raw(raw: Raw) -> Result<Settings, (&'static str, String)> {
        Ok(Settings {
            source: source_settings(raw.source)?,
            cluster: cluster_settings(raw.cluster)?,
            helm: helm_settings(raw.helm)?,
            reconcile: reconcile_settings(raw.reconcile),
            leader_election: leader_settings(raw.leader_election)?,
            policy: Arc::new(Policy::default()),
            warnings: Vec::new(),
            notify: crate::notify::settings(raw.notify)?,
            backup: None,
            http: HttpSettings {
                listen: raw
                    .http
                    .listen
                    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9464))),
                token_file: raw.http.token_file,
            },
        })
    }
}

fn source_settings(raw: RawSource) -> Result<SourceSettings, (&'static str, String)> {
    Ok(match (raw.directory, raw.git) {
        (Some(_), Some(_)) => {
            return Err((
                "source",
                "set either `source.directory` or `[source.git]`, not both".into(),
            ));
        }
        (_, Some(g)) => SourceSettings::Git(Box::new(git_settings(g)?)),
        (dir, None) => SourceSettings::Directory {
            path: dir.unwrap_or_else(|| PathBuf::from("stores.d")),
        },
    })
}

fn cluster_settings(raw: RawCluster) -> Result<ClusterSettings, (&'static str, String)> {
    let prefix = raw.namespace_prefix.unwrap_or_else(|| "store-".into());
    if prefix.len() > 20
        || !prefix
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        return Err((
            "cluster.namespace_prefix",
            format!("namespace prefix `{prefix}` must be ≤ 20 characters of a-z, 0-9, '-'"),
        ));
    }
    Ok(ClusterSettings {
        kubeconfig: raw.kubeconfig,
        context: raw.context,
        namespace_prefix: prefix,
        base_domain: raw.base_domain.unwrap_or_else(|| "localtest.me".into()),
    })
}

fn helm_settings(raw: RawHelm) -> Result<HelmSettings, (&'static str, String)> {
    let max_concurrent = NonZeroUsize::new(raw.max_concurrent.unwrap_or(3)).ok_or((
        "helm.max_concurrent",
        "helm.max_concurrent must be at least 1".to_string(),
    ))?;
    Ok(HelmSettings {
        binary: raw.binary.unwrap_or_else(|| PathBuf::from("helm")),
        charts_dir: raw.charts_dir.unwrap_or_else(|| PathBuf::from("charts")),
        values_files: raw.values_files.unwrap_or_default(),
        timeout: raw.timeout.map_or(Duration::from_secs(300), |d| d.0),
        max_concurrent,
    })
}

fn reconcile_settings(raw: RawReconcile) -> ReconcileSettings {
    ReconcileSettings {
        interval: raw.interval.map_or(Duration::from_secs(10), |d| d.0),
        resync_interval: raw.resync_interval.map_or(Duration::from_secs(600), |d| d.0),
        prune: raw.prune.unwrap_or(true),
        max_deletions: raw.max_deletions.unwrap_or(1),
        deletion_grace: raw.deletion_grace.map_or(DEFAULT_DELETION_GRACE, |d| d.0),
    }
}

fn leader_settings(raw: RawLeader) -> Result<Option<LeaderSettings>, (&'static str, String)> {
    if !raw.enabled.unwrap_or(false) {
        return Ok(None);
    }
    let lease_duration = raw.lease_duration.map_or(Duration::from_secs(15), |d| d.0);
    let renew_every = raw.renew_every.map_or(Duration::from_secs(2), |d| d.0);
    if renew_every >= lease_duration {
        return Err((
            "leader_election.renew_every",
            "leader_election.renew_every must be shorter than lease_duration".into(),
        ));
    }
    let namespace = raw.namespace.unwrap_or_else(|| "storekeeper".into());
    let lease_name = raw.lease_name.unwrap_or_else(|| "storekeeper-leader".into());
    for (field, value) in [
        ("leader_election.namespace", &namespace),
        ("leader_election.lease_name", &lease_name),
    ] {
        if value.trim().is_empty() {
            return Err((field, format!("{field} must not be empty")));
        }
    }
    Ok(Some(LeaderSettings {
        namespace,
        lease_name,
        lease_duration,
        renew_every,
    }))
}

fn git_settings(g: RawGit) -> Result<GitSettings, (&'static str, String)> {
    let reference = match (g.branch, g.tag, g.commit) {
        (Some(b), None, None) => GitRef::Branch(b),
        (None, Some(t), None) => GitRef::Tag(t),
        (None, None, Some(c)) => {
            if c.len() < 7 || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err((
                    "source.git.commit",
                    format!("`{c}` is not a commit id (7–40 hex digits)"),
                ));
            }
            GitRef::Commit(c)
        }
        (None, None, None) => GitRef::Branch("main".into()),
        _ => return Err(("source.git", "set only one of `branch`, `tag` or `commit`".into())),
    };
    if g.url.trim().is_empty() {
        return Err(("source.git.url", "source.git.url must not be empty".into()));
    }
    Ok(GitSettings {
        url: g.url,
        reference,
        subpath: g.subpath.unwrap_or_else(|| PathBuf::from("stores.d")),
        ssh_key_file: g.ssh_key_file,
        known_hosts_file: g.known_hosts_file,
        token_file: g.token_file,
        token_env: g.token_env,
        poll_interval: g.poll_interval.map_or(Duration::from_secs(30), |d| d.0),
        state_dir: g
            .state_dir
            .unwrap_or_else(|| PathBuf::from("/var/lib/storekeeper")),
        webhook_secret_file: g.webhook_secret_file,
    })
}

/// The dotted field an error is about: from serde's message for unknown/missing fields, else
/// the key on the offending line under its `[section]` header.
fn field_of(message: &str, src: &str, offset: usize) -> String {
    let named = message
        .split('`')
        .nth(1)
        .filter(|_| message.starts_with("unknown field") || message.starts_with("missing field"));
    let before = src.get(..offset.min(src.len())).unwrap_or("");
    let section = before
        .lines()
        .filter_map(|l| l.trim().strip_prefix('[').and_then(|l| l.split(']').next()))
        .next_back()
        .map(|s| s.trim_matches('[').trim().to_string());
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = src.get(line_start..).and_then(|l| l.lines().next()).unwrap_or("");
    let key = named
        .map(str::to_string)
        .or_else(|| {
            line.split_once('=')
                .map(|(k, _)| k.trim().trim_matches('"').to_string())
        })
        .unwrap_or_default();
    match section {
        Some(sec) if !key.is_empty() && !line.trim_start().starts_with('[') => format!("{sec}.{key}"),
        _ => key,
    }
}

fn hint_for(message: &str) -> Option<String> {
    let expected = message.split("expected one of ").nth(1)?;
    let unknown = message.split('`').nth(1)?;
    let options: Vec<&str> = expected.split(", ").map(|s| s.trim_matches('`')).collect();
    Some(match crate::diagnostic::did_you_mean(unknown, &options) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("allowed here: {}", options.join(", ")),
    })
}

/// A duration written as `"30s"`, `"5m"`, `"1h"` or `"250ms"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// A store whose file is gone keeps running this long before it is deleted: long enough for a
/// bad commit to be noticed (the store turns PendingDeletion, with a notification) and reverted,
/// short enough that a deliberate removal frees its resources the same hour. See the README.
pub const DEFAULT_DELETION_GRACE: Duration = Duration::from_secs(3600);

/// A duration that may be zero (`"0s"`: no waiting).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GraceDuration(pub Duration);

impl<'de> Deserialize<'de> for GraceDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let zero = s.strip_suffix("ms").or_else(|| s.strip_suffix(['s', 'm', 'h']));
        if zero.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b == b'0')) {
            return Ok(GraceDuration(Duration::ZERO));
        }
        parse_duration(&s)
            .map(GraceDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// The longest duration any setting accepts; it also keeps timeout arithmetic far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Parses `"<number><unit>"` with unit ms, s, m or h; zero is refused (a zero interval spins).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("invalid duration \"{s}\": write a number and a unit, e.g. \"30s\", \"5m\", \"250ms\"");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(format!("duration \"{s}\" must be greater than zero"));
    }
    if d > MAX_DURATION {
        return Err(format!("duration \"{s}\" is longer than the 24h limit"));
    }
    Ok(d)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    source: RawSource,
    #[serde(default)]
    cluster: RawCluster,
    #[serde(default)]
    helm: RawHelm,
    #[serde(default)]
    reconcile: RawReconcile,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    leader_election: RawLeader,
    #[serde(default)]
    policy: policy::RawPolicy,
    #[serde(default)]
    notify: Vec<crate::notify::RawNotify>,
    backup: Option<backup::RawBackup>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLeader {
    enabled: Option<bool>,
    namespace: Option<String>,
    lease_name: Option<String>,
    lease_duration: Option<HumanDuration>,
    renew_every: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    directory: Option<PathBuf>,
    git: Option<RawGit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGit {
    url: String,
    branch: Option<String>,
    tag: Option<String>,
    commit: Option<String>,
    subpath: Option<PathBuf>,
    ssh_key_file: Option<PathBuf>,
    known_hosts_file: Option<PathBuf>,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
    poll_interval: Option<HumanDuration>,
    state_dir: Option<PathBuf>,
    webhook_secret_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    namespace_prefix: Option<String>,
    base_domain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHelm {
    binary: Option<PathBuf>,
    charts_dir: Option<PathBuf>,
    values_files: Option<Vec<PathBuf>>,
    timeout: Option<HumanDuration>,
    max_concurrent: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReconcile {
    interval: Option<HumanDuration>,
    resync_interval: Option<HumanDuration>,
    prune: Option<bool>,
    /// `max_deletions_per_cycle` was a rate limit; the breaker is stricter, so an old config
    /// keeps working (and keeps its stores safer).
    #[serde(alias = "max_deletions_per_cycle")]
    max_deletions: Option<usize>,
    deletion_grace: Option<GraceDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<SocketAddr>,
    token_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_gives_the_documented_defaults() {
        let s = Settings::parse(Path::new("c.toml"), "").expect("empty config is valid");
        assert_eq!(s, Settings::default());
        assert_eq!(
            s.source,
            SourceSettings::Directory {
                path: "stores.d".into()
            }
        );
        assert_eq!(s.cluster.namespace_prefix, "store-");
        assert_eq!(s.helm.timeout, Duration::from_secs(300));
        assert_eq!(s.helm.max_concurrent.get(), 3);
        assert_eq!(s.reconcile.resync_interval, Duration::from_secs(600));
        assert_eq!(s.reconcile.max_deletions, 1);
        assert_eq!(s.reconcile.deletion_grace, Duration::from_secs(3600));
        assert_eq!(s.http.listen.to_string(), "127.0.0.1:9464");
    }

    #[test]
    fn git_source_with_tag_and_durations() {
        let src = "[source.git]\nurl = \"https://example.com/r.git\"\ntag = \"v1\"\npoll_interval = \"2m\"\n";
        let s = Settings::parse(Path::new("c.toml"), src).expect("valid");
        let SourceSettings::Git(g) = s.source else {
            panic!("expected git source")
        };
        assert_eq!(g.reference, GitRef::Tag("v1".into()));
        assert_eq!(g.poll_interval, Duration::from_secs(120));
    }

    #[test]
    fn unknown_key_names_line_and_suggests() {
        let src = "[helm]\ntimout = \"5m\"\n";
        let e = Settings::parse(Path::new("c.toml"), src).expect_err("unknown key");
        let d = &e.diagnostics[0];
        assert_eq!((d.line, d.column), (2, 1));
        assert!(d.message.contains("unknown field `timout`"), "{}", d.message);
        assert_eq!(d.field, "helm.timout");
        assert_eq!(d.hint.as_deref(), Some("did you mean `timeout`?"));
    }

    #[test]
    fn bad_duration_and_conflicting_refs_are_errors() {
        assert!(Settings::parse(Path::new("c"), "[helm]\ntimeout = \"5 minutes\"\n").is_err());
        let e = Settings::parse(Path::new("c"), "[helm]\ntimeout = \"0s\"\n").expect_err("zero");
        assert_eq!(e.diagnostics[0].field, "helm.timeout");
        let src = "[source.git]\nurl = \"u\"\nbranch = \"a\"\ntag = \"b\"\n";
        assert!(Settings::parse(Path::new("c"), src).is_err());
        assert!(Settings::parse(Path::new("c"), "[helm]\nmax_concurrent = 0\n").is_err());
    }

    #[test]
    fn leader_election_settings_are_checked_here_once() {
        let on = "[leader_election]\nenabled = true\n";
        assert!(Settings::parse(Path::new("c"), on).is_ok_and(|s| s.leader_election.is_some()));
        let e = Settings::parse(Path::new("c"), &format!("{on}renew_every = \"15s\"\n")).expect_err("renew");
        assert_eq!(e.diagnostics[0].field, "leader_election.renew_every");
        let e = Settings::parse(Path::new("c"), &format!("{on}lease_name = \" \"\n")).expect_err("empty");
        assert_eq!(e.diagnostics[0].field, "leader_election.lease_name");
    }

    #[test]
    fn notify_entries_parse_and_a_typo_gets_its_line_and_a_hint() {
        let ok = "[[notify]]\nname = \"ops\"\ntype = \"slack\"\nurl_file = \"/etc/sk/slack\"\n";
        let s = Settings::parse(Path::new("c.toml"), ok).expect("valid");
        assert_eq!(s.notify.len(), 1);
        let e =
            Settings::parse(Path::new("c.toml"), &format!("{ok}events = [\"faild\"]\n")).expect_err("typo");
        let d = &e.diagnostics[0];
        assert_eq!(d.line, 5, "{d:?}");
        assert_eq!(d.hint.as_deref(), Some("did you mean `failed`?"), "{d:?}");
        let e = Settings::parse(
            Path::new("c.toml"),
            "[[notify]]\nname = \"a\"\ntype = \"slack\"\n",
        )
        .expect_err("no url");
        assert_eq!(e.diagnostics[0].field, "notify.url");
    }

    #[test]
    fn deletion_settings_and_the_old_name() {
        let s = Settings::parse(
            Path::new("c"),
            "[reconcile]\nmax_deletions_per_cycle = 3\ndeletion_grace = \"0s\"\n",
        )
        .expect("valid");
        assert_eq!(
            (s.reconcile.max_deletions, s.reconcile.deletion_grace),
            (3, Duration::ZERO)
        );
        let s = Settings::parse(Path::new("c"), "[reconcile]\ndeletion_grace = \"5s\"\n").expect("valid");
        assert_eq!(s.reconcile.deletion_grace, Duration::from_secs(5));
        assert!(Settings::parse(Path::new("c"), "[reconcile]\ndeletion_grace = \"soon\"\n").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("").is_err() && parse_duration("5").is_err() && parse_duration("m").is_err());
        assert!(parse_duration("24h").is_ok() && parse_duration("25h").is_err());
        assert!(parse_duration("18446744073709551615s").is_err());
    }

    const AGENCY: &str = r#"[cluster]
base_domain = "shops.agency.dev"

[policy]
values_allowed = ["wordpress.resources.*", "wordpress.extraEnv", "networkPolicy.wordpressHttpsEgress"]
max_stores = 50
max_stores_per_owner = 5
max_creations_per_hour = 10
host_suffixes = [".shops.agency.dev"]
custom_hosts_allowed = ["acme"]
plans_allowed = ["small"]

[policy.plans_allowed_per_owner]
acme = ["small", "medium", "large"]
"#;

    #[test]
    fn a_full_policy_is_typed() {
        use crate::spec::policy::CustomHosts;
        use crate::spec::{Owner, Plan};
        let s = Settings::parse(Path::new("c.toml"), AGENCY).expect("valid");
        let p = &s.policy;
        let patterns: Vec<&str> = p.values_allowed.iter().map(|p| p.as_str()).collect();
        assert_eq!(
            patterns,
            [
                "wordpress.resources.*",
                "wordpress.extraEnv",
                "networkPolicy.wordpressHttpsEgress"
            ]
        );
        assert_eq!(p.values_allowed[1].origin(), Some("c.toml:5:44"));
        assert_eq!(
            (p.max_stores, p.max_stores_per_owner.map(|n| n.get())),
            (Some(50), Some(5))
        );
        assert_eq!(p.max_creations_per_hour.map(|n| n.get()), Some(10));
        assert_eq!(
            p.host_suffixes,
            ["shops.agency.dev"],
            "the leading dot is dropped"
        );
        let acme = Owner::new("acme").expect("owner");
        assert_eq!(p.custom_hosts, CustomHosts::Owners([acme.clone()].into()));
        assert_eq!(p.plans_allowed, [Plan::Small]);
        assert_eq!(p.plans_for(Some(&acme)), [Plan::Small, Plan::Medium, Plan::Large]);
        assert!(s.warnings.is_empty(), "{:#?}", s.warnings);
        let d = s.spec_defaults();
        assert_eq!(d.base_domain, "shops.agency.dev");
        assert!(std::sync::Arc::ptr_eq(&d.policy, &s.policy), "shared, not copied");
    }

    #[test]
    fn no_policy_section_is_the_default_policy() {
        let s = Settings::parse(Path::new("c.toml"), "[cluster]\nbase_domain = \"x.dev\"\n").expect("valid");
        assert_eq!(*s.policy, Policy::default());
    }

    #[test]
    fn policy_errors_point_at_their_keys_all_at_once() {
        let src = "[policy]\nmax_stores = -1\nhost_suffixes = [\"elsewhere.dev\"]\nplans_allowed = [\"huge\"]\nvalues_allowed = [\"a..b\", \"store.*\"]\n";
        let e = Settings::parse(Path::new("c.toml"), src).expect_err("invalid");
        let got: Vec<(usize, usize, &str)> = e
            .diagnostics
            .iter()
            .map(|d| (d.line, d.column, d.field.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (2, 14, "policy.max_stores"),
                (3, 17, "policy.host_suffixes"),
                (4, 18, "policy.plans_allowed[0]"),
                (5, 19, "policy.values_allowed[0]"),
                (5, 27, "policy.values_allowed[1]"),
            ],
            "{:#?}",
            e.diagnostics
        );
        assert!(
            e.diagnostics[1]
                .message
                .contains("`<name>.localtest.me` is under none"),
            "{:?}",
            e.diagnostics[1]
        );
        let e = Settings::parse(Path::new("c.toml"), "[policy]\nmax_store = 1\n").expect_err("typo");
        assert_eq!(
            e.diagnostics[0].hint.as_deref(),
            Some("did you mean `max_stores`?")
        );
        assert_eq!(e.diagnostics[0].field, "policy.max_store");
        let e = Settings::parse(Path::new("c.toml"), "[policy]\ncustom_hosts_allowed = \"yes\"\n")
            .expect_err("type");
        assert!(
            e.diagnostics[0]
                .message
                .contains("expected true, false or a list of owners"),
            "{:?}",
            e.diagnostics
        );
        let e = Settings::parse(Path::new("c.toml"), "[policy]\ncustom_hosts_allowed = true\n")
            .expect_err("no suffixes");
        assert_eq!((e.diagnostics[0].line, e.diagnostics[0].column), (2, 24));
    }

    #[test]
    fn a_glob_over_guard_rail_keys_loads_with_a_warning_at_its_position() {
        let src = "[policy]\nvalues_allowed = [\"wordpress.resources.*\", \"*\"]\n";
        let s = Settings::parse(Path::new("c.toml"), src).expect("a warning, not an error");
        assert_eq!(s.warnings.len(), 1, "{:#?}", s.warnings);
        let w = &s.warnings[0];
        assert_eq!(
            (w.line, w.column, w.field.as_str()),
            (2, 44, "policy.values_allowed[1]")
        );
        assert_eq!(w.severity, crate::diagnostic::Severity::Warning);
        let hint = w.hint.clone().unwrap_or_default();
        for rail in ["networkPolicy", "resources", "image", "tolerations"] {
            assert!(hint.contains(rail), "{rail}: {hint}");
        }
        assert!(
            !hint.contains("store,") && !hint.contains("existingSecret"),
            "reserved keys are not allowable: {hint}"
        );
    }
}
