//! Connecting to the cluster: which kubeconfig files and context, and whether the API server
//! answers. This is the first thing a newcomer meets, so every error names what was tried and
//! says what to do next.
//!
//! The resolution is kubectl's: the configured kubeconfig (`--kubeconfig`, `[cluster]
//! kubeconfig`), else the files listed in `$KUBECONFIG`, else `~/.kube/config`; the configured
//! context, else the files' `current-context`. Only when there is no kubeconfig file at all
//! (and no context was asked for) is the in-cluster service account used. Unlike
//! `kube::Config::infer`, a kubeconfig that exists but cannot be used is reported, not silently
//! replaced by the in-cluster configuration (which would then fail with a message about
//! environment variables that says nothing about the file).
//!
//! A client is only handed out once the API server has answered `GET /version` (which every
//! client may read, even without RBAC rules), so "there is no cluster" surfaces here, plainly,
//! rather than as the first failing list call.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

use crate::config::ClusterSettings;

/// How long the API server may take to answer `GET /version`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// Set in every pod with a service account; kube reads the same variable.
const SERVICE_HOST: &str = "KUBERNETES_SERVICE_HOST";

/// The next step when there is no cluster at all.
const NO_CLUSTER_NEXT: &str = "create a local cluster with `k3d cluster create storekeeper -p \
     \"80:80@loadbalancer\"` (scripts/run does this when Docker and k3d are installed), or point \
     --kubeconfig, [cluster] kubeconfig or $KUBECONFIG at an existing cluster's kubeconfig (k3s: \
     /etc/rancher/k3s/k3s.yaml)";

/// Where a client's configuration came from, for messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The kubeconfig files read, in order; empty for the in-cluster service account.
    pub files: Vec<PathBuf>,
    /// The context used: the configured one, else the files' `current-context`.
    pub context: Option<String>,
    /// The API server's URL (without any user info).
    pub server: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.context {
            Some(ctx) if !self.files.is_empty() => {
                write!(f, "{} (context {ctx} in {})", self.server, join(&self.files))
            }
            _ => write!(f, "{} (in-cluster service account)", self.server),
        }
    }
}

/// How the kubeconfig files were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Setting,
    Env,
    Home,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Setting => "given by --kubeconfig or [cluster] kubeconfig",
            Origin::Env => "listed in $KUBECONFIG",
            Origin::Home => "the default kubeconfig",
        })
    }
}

/// Why there is no working client. All are retryable: a kubeconfig can appear and a cluster can
/// start; the daemon retries, the one-shot commands report and exit 1.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No kubeconfig anywhere, and not in a pod.
    #[error("no kubeconfig found: {tried}. Next step: {NO_CLUSTER_NEXT}")]
    NoKubeconfig { tried: String },
    /// A kubeconfig file is missing, unreadable or not a kubeconfig.
    #[error("cannot read kubeconfig {} ({origin}): {message}. Next step: {hint}", file.display())]
    Unreadable {
        file: PathBuf,
        origin: Origin,
        message: String,
        hint: String,
    },
    /// The files were read, but the context is missing or cannot be used.
    #[error("cannot use {what} of kubeconfig {files}: {message}. Next step: {hint}")]
    Context {
        what: String,
        files: String,
        message: String,
        hint: String,
    },
    /// In a pod, without a usable service account.
    #[error(
        "cannot use the in-cluster service account: {0}. Next step: mount the pod's service \
         account token, or give a kubeconfig with --kubeconfig or [cluster] kubeconfig"
    )]
    InCluster(String),
    /// The API server did not answer `GET /version`, or refused the credentials.
    #[error("cannot reach the Kubernetes API server {target}: {message}. Next step: {hint}")]
    Unreachable {
        target: Target,
        message: String,
        hint: String,
    },
}

impl ConnectError {
    /// A bounded label.
    pub fn code(&self) -> &'static str {
        match self {
            ConnectError::Unreachable { .. } => "cluster_unreachable",
            _ => "kubeconfig",
        }
    }
}

/// Builds a client and checks that the API server answers.
pub async fn connect(settings: &ClusterSettings) -> Result<(Client, Target), ConnectError> {
    let (config, target) = load(settings).await?;
    let client = Client::try_from(config).map_err(|e| ConnectError::Context {
        what: target
            .context
            .as_deref()
            .map_or("the configuration".into(), quoted),
        files: join(&target.files),
        message: chain(&e),
        hint: check_hint(&target),
    })?;
    probe(&client, &target).await?;
    Ok((client, target))
}

/// The kubeconfig files to read, and why those; `None` when there is none (with the default
/// path that was looked at, if there is a home directory).
fn locate(settings: &ClusterSettings) -> Result<(Vec<PathBuf>, Origin), Option<PathBuf>> {
    if let Some(p) = &settings.kubeconfig {
        return Ok((vec![p.clone()], Origin::Setting));
    }
    if let Some(v) = std::env::var_os("KUBECONFIG") {
        let paths: Vec<PathBuf> = std::env::split_paths(&v)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if !paths.is_empty() {
            return Ok((paths, Origin::Env));
        }
    }
    let home = std::env::home_dir().map(|h| h.join(".kube").join("config"));
    match home {
        // `symlink_metadata`: a dangling link is reported as unreadable, not skipped.
        Some(h) if h.symlink_metadata().is_ok() => Ok((vec![h], Origin::Home)),
        other => Err(other),
    }
}

async fn load(settings: &ClusterSettings) -> Result<(Config, Target), ConnectError> {
    let context = settings.context.as_deref();
    match locate(settings) {
        Ok((files, origin)) => from_files(files, origin, context).await,
        Err(_) if context.is_none() && std::env::var_os(SERVICE_HOST).is_some() => in_cluster(),
        Err(home) => Err(ConnectError::NoKubeconfig {
            tried: nothing_found(home.as_deref(), context),
        }),
    }
}

/// What was looked at when no kubeconfig was found.
fn nothing_found(home: Option<&Path>, context: Option<&str>) -> String {
    let env = match std::env::var_os("KUBECONFIG") {
        Some(_) => "$KUBECONFIG is empty",
        None => "$KUBECONFIG is not set",
    };
    let home = match home {
        Some(h) => format!("{} does not exist", h.display()),
        None => "there is no home directory ($HOME is not set)".into(),
    };
    let pod = match context {
        Some(c) => format!("context \"{c}\" was asked for, which only a kubeconfig can name"),
        None => format!("this is not a pod (${SERVICE_HOST} is not set)"),
    };
    format!("{env}, {home}, and {pod}")
}

fn in_cluster() -> Result<(Config, Target), ConnectError> {
    let config = Config::incluster().map_err(|e| ConnectError::InCluster(chain(&e)))?;
    let target = Target {
        files: Vec::new(),
        context: None,
        server: server_of(&config),
    };
    Ok((config, target))
}

/// Reads and merges the files (kubectl's rules: the first file to set a value wins), then
/// loads the context.
async fn from_files(
    files: Vec<PathBuf>,
    origin: Origin,
    context: Option<&str>,
) -> Result<(Config, Target), ConnectError> {
    let mut merged = Kubeconfig::default();
    for file in &files {
        let kc = Kubeconfig::read_from(file).map_err(|e| unreadable(file, origin, &e))?;
        merged = merged.merge(kc).map_err(|e| ConnectError::Context {
            what: "the files".into(),
            files: join(&files),
            message: e.to_string(),
            hint: "list files of the same kind and apiVersion in $KUBECONFIG".into(),
        })?;
    }
    let names: Vec<String> = merged.contexts.iter().map(|c| c.name.clone()).collect();
    let ctx = pick_context(context, merged.current_context.as_deref(), &names, &files)?;
    let opts = KubeConfigOptions {
        context: Some(ctx.clone()),
        ..KubeConfigOptions::default()
    };
    let target = |server| Target {
        files: files.clone(),
        context: Some(ctx.clone()),
        server,
    };
    let mut config =
        Config::from_custom_kubeconfig(merged, &opts)
            .await
            .map_err(|e| ConnectError::Context {
                what: quoted(&ctx),
                files: join(&files),
                message: chain(&e),
                hint: check_hint(&target(String::new())),
            })?;
    config.apply_debug_overrides();
    let target = target(server_of(&config));
    Ok((config, target))
}

/// The context to use: the asked-for one if the files have it, else their current-context.
fn pick_context(
    asked: Option<&str>,
    current: Option<&str>,
    names: &[String],
    files: &[PathBuf],
) -> Result<String, ConnectError> {
    let have = if names.is_empty() {
        "the files define no contexts at all: put a cluster's kubeconfig there".to_string()
    } else {
        format!("the files have {}", names.join(", "))
    };
    let fail = |what: String, message: &str, hint: String| ConnectError::Context {
        what,
        files: join(files),
        message: message.to_string(),
        hint,
    };
    match asked.or(current) {
        None => Err(fail(
            "the current context".into(),
            "no context was given and the files set no current-context",
            format!("name one with --context or [cluster] context ({have})"),
        )),
        Some(c) if !names.iter().any(|n| n == c) => Err(fail(
            quoted(c),
            "there is no such context",
            match asked {
                Some(_) => format!("pick another with --context or [cluster] context ({have})"),
                None => format!("fix current-context, e.g. `kubectl config use-context NAME` ({have})"),
            },
        )),
        Some(c) => Ok(c.to_string()),
    }
}

fn unreadable(file: &Path, origin: Origin, e: &KubeconfigError) -> ConnectError {
    let (message, hint) = match e {
        KubeconfigError::ReadConfig(io, _) if io.kind() == std::io::ErrorKind::NotFound => (
            "the file does not exist".to_string(),
            match origin {
                Origin::Setting => "fix the path, or copy the cluster's kubeconfig there (k3s: \
                                    /etc/rancher/k3s/k3s.yaml)"
                    .to_string(),
                Origin::Env => "fix $KUBECONFIG, or unset it to use ~/.kube/config".to_string(),
                Origin::Home => NO_CLUSTER_NEXT.to_string(),
            },
        ),
        KubeconfigError::ReadConfig(io, _) => (
            io.to_string(),
            "make the file readable by the user storekeeper runs as".to_string(),
        ),
        other => (
            chain(other),
            "fix the file: `kubectl config view --kubeconfig FILE` reads it the same way".to_string(),
        ),
    };
    ConnectError::Unreadable {
        file: file.to_path_buf(),
        origin,
        message,
        hint,
    }
}

async fn probe(client: &Client, target: &Target) -> Result<(), ConnectError> {
    let (message, refused) = match tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(kube::Error::Api(s))) => (
            format!("GET /version answered {} {}: {}", s.code, s.reason, s.message),
            s.code == 401 || s.code == 403,
        ),
        Ok(Err(e)) => (chain(&e), false),
        Err(_) => (
            format!("no answer to GET /version within {}s", PROBE_TIMEOUT.as_secs()),
            false,
        ),
    };
    let hint = if refused {
        format!(
            "renew the credentials of this context (the API server refused them), then {}",
            check_hint(target)
        )
    } else {
        format!("{}, then {}", start_hint(target), check_hint(target))
    };
    Err(ConnectError::Unreachable {
        target: target.clone(),
        message,
        hint,
    })
}

/// How to start the cluster a context names.
fn start_hint(target: &Target) -> String {
    match target.context.as_deref().and_then(|c| c.strip_prefix("k3d-")) {
        Some(name) => format!("start the cluster (`k3d cluster start {name}`)"),
        None if target.files.is_empty() => "check the pod's network and the API server".into(),
        None => "start the cluster (k3s: `sudo systemctl start k3s`) or fix its server address \
                 in the kubeconfig"
            .into(),
    }
}

/// The kubectl command that checks the same files and context.
fn check_hint(target: &Target) -> String {
    let ctx = target.context.as_deref().unwrap_or_default();
    match target.files.as_slice() {
        [] => "check that the API server answers from this pod".into(),
        [one] => format!(
            "check with `kubectl --kubeconfig {} --context {ctx} version`",
            one.display()
        ),
        many => format!(
            "check with `KUBECONFIG={} kubectl --context {ctx} version`",
            std::env::join_paths(many)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
    }
}

/// The cluster URL without user info (a URL may carry credentials; messages never do).
fn server_of(config: &Config) -> String {
    let url = &config.cluster_url;
    let authority = url.authority().map(|a| a.as_str()).unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    format!(
        "{}://{host}{}",
        url.scheme_str().unwrap_or("https"),
        url.path().trim_end_matches('/')
    )
}

fn join(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn quoted(context: &str) -> String {
    format!("context \"{context}\"")
}

/// An error and its sources on one line, skipping a source whose text the previous one already
/// contains (kube's and hyper's errors often repeat their cause).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    /// The error of a connection that must fail.
    async fn fail(settings: ClusterSettings) -> ConnectError {
        match connect(&settings).await {
            Ok((_, target)) => panic!("connected to {target}"),
            Err(e) => e,
        }
    }

    fn settings(kubeconfig: Option<PathBuf>, context: Option<&str>) -> ClusterSettings {
        ClusterSettings {
            kubeconfig,
            context: context.map(str::to_string),
            ..crate::config::Settings::default().cluster
        }
    }

    const TWO_CONTEXTS: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: a\n  cluster:\n    \
         server: http://127.0.0.1:1\ncontexts:\n- name: k3d-shops\n  context:\n    cluster: a\n    \
         user: u\n- name: other\n  context:\n    cluster: a\n    user: u\ncurrent-context: k3d-shops\n\
         users:\n- name: u\n  user: {}\n";

    #[tokio::test]
    async fn a_missing_configured_file_is_named_with_the_next_step() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.yaml");
        let e = fail(settings(Some(missing.clone()), None)).await;
        let text = e.to_string();
        assert!(text.contains(&missing.display().to_string()), "{text}");
        assert!(text.contains("does not exist"), "{text}");
        assert!(text.contains("Next step: fix the path"), "{text}");
        assert_eq!(e.code(), "kubeconfig");
    }

    #[tokio::test]
    async fn an_unknown_context_lists_the_ones_there_are() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kc = write(dir.path(), "kc", TWO_CONTEXTS);
        let e = fail(settings(Some(kc.clone()), Some("prod"))).await;
        let text = e.to_string();
        assert!(text.contains("context \"prod\""), "{text}");
        assert!(text.contains(&kc.display().to_string()), "{text}");
        assert!(text.contains("k3d-shops, other"), "{text}");
    }

    #[tokio::test]
    async fn an_unreachable_server_names_server_context_file_and_how_to_start_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kc = write(dir.path(), "kc", TWO_CONTEXTS);
        // Nothing listens on port 1.
        let e = fail(settings(Some(kc.clone()), None)).await;
        let text = e.to_string();
        assert_eq!(e.code(), "cluster_unreachable");
        assert!(
            text.contains("http://127.0.0.1:1 (context k3d-shops in"),
            "{text}"
        );
        assert!(text.contains("`k3d cluster start shops`"), "{text}");
        assert!(
            text.contains(&format!(
                "kubectl --kubeconfig {} --context k3d-shops version",
                kc.display()
            )),
            "{text}"
        );
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }

    #[tokio::test]
    async fn a_file_that_is_not_yaml_is_unreadable_not_in_cluster() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kc = write(dir.path(), "kc", "clusters: [unterminated\n");
        let e = fail(settings(Some(kc), None)).await;
        assert!(matches!(e, ConnectError::Unreadable { .. }), "{e}");
        assert!(e.to_string().contains("kubectl config view"), "{e}");
    }

    #[test]
    fn nothing_found_says_what_was_looked_at() {
        let text = nothing_found(Some(Path::new("/home/u/.kube/config")), None);
        assert!(text.contains("/home/u/.kube/config does not exist"), "{text}");
        assert!(text.contains("KUBERNETES_SERVICE_HOST"), "{text}");
        let text = nothing_found(None, Some("prod"));
        assert!(text.contains("context \"prod\""), "{text}");
    }

    #[test]
    fn user_info_never_reaches_a_message() {
        let mut config = Config::new("https://admin:hunter2@example.com:6443/".parse().expect("uri"));
        assert_eq!(server_of(&config), "https://example.com:6443");
        config.cluster_url = "http://127.0.0.1:8080/k8s/".parse().expect("uri");
        assert_eq!(server_of(&config), "http://127.0.0.1:8080/k8s");
    }
}
