//! Follows a Git repository: fetch, resolve the followed ref, read the store files of that commit.
//!
//! The local copy is a *bare* repository at `<state_dir>/repo`: there is no working tree anyone
//! could edit, and the store files are read from the commit's tree object straight out of the
//! object database (see [`tree`] for how entries are resolved and which rules of a watched
//! directory apply). Nothing is checked out: a checkout would only cost a write of every file per
//! change. Messages name files by their path in the repository.
//!
//! A sync costs what changed. The same commit as last time returns the same snapshot (the same
//! `Arc`); another commit whose store directory has the same tree id returns the same stores at
//! the new revision; otherwise only the entries whose blob (or symlink resolution) changed are
//! parsed again, the others keep their `Arc<StoreSpec>`. A force-push is no different: the new
//! commit's tree is compared with the last one read, whatever their history.
//!
//! Failure is never "no stores" (argo-cd#18212): an unreachable remote, a missing ref, an unusable
//! local repository or a missing `subpath` are all errors, and the caller keeps the last good
//! snapshot. A local repository that turns out to be corrupt is deleted and cloned again once.
//!
//! Refs are fetched with force refspecs (`+refs/heads/*:refs/remotes/origin/*`,
//! `+refs/tags/*:refs/tags/*`) and pruning, so force-pushes, a repository replaced by an unrelated
//! history, moved tags and deleted branches are all followed as the remote has them now. A pinned
//! commit must be reachable from a branch or tag of the remote (most servers refuse to serve
//! arbitrary object ids).

mod tree;

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, ErrorClass, ErrorCode, FetchOptions,
    FetchPrune, ObjectType, Oid, RemoteCallbacks, Repository,
};

use super::{Snapshot, SourceError};
use crate::config::{GitRef, GitSettings};
use crate::spec::SpecDefaults;
use tree::{TreeCache, relative_subpath};

/// A fetch (including a first clone) is aborted after this long, like Flux's 60 s clone timeout.
/// libgit2 has no overall timeout of its own, so the progress callbacks check this deadline;
/// they only run while data flows, so a connection that hangs silently is left to the OS's TCP
/// timeouts (libgit2's global server timeouts would need `unsafe` process-wide setup in `main`).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// The username GitHub, GitLab and Gitea accept with a token as the password.
const TOKEN_USER: &str = "x-access-token";

/// What libgit2's callbacks saw during one fetch: the deadline, refused credentials, a refused
/// host key. The callbacks record; [`GitSource::fetch_failure`] reads it afterwards.
struct FetchWatch {
    deadline: Instant,
    timed_out: Cell<bool>,
    auth_problem: RefCell<Option<String>>,
    host_key_problem: RefCell<Option<(String, String)>>,
    credential_calls: Cell<u32>,
}

impl FetchWatch {
    fn new(deadline: Instant) -> FetchWatch {
        FetchWatch {
            deadline,
            timed_out: Cell::new(false),
            auth_problem: RefCell::new(None),
            host_key_problem: RefCell::new(None),
            credential_calls: Cell::new(0),
        }
    }

    /// `false` once the deadline passed (which aborts the transfer).
    fn in_time(&self) -> bool {
        let late = Instant::now() > self.deadline;
        if late {
            self.timed_out.set(true);
        }
        !late
    }

    fn callbacks<'a>(&'a self, src: &'a GitSource) -> RemoteCallbacks<'a> {
        let mut callbacks = RemoteCallbacks::new();
        callbacks.transfer_progress(|_| self.in_time());
        callbacks.sideband_progress(|_| self.in_time());
        callbacks.credentials(|_url, username, allowed| {
            let n = self.credential_calls.get() + 1;
            self.credential_calls.set(n);
            // libgit2 asks again after a rejection; a third round means they were refused.
            if n > 2 {
                self.auth_problem
                    .replace(Some("the remote rejected the credentials".into()));
                return Err(git2::Error::from_str("credentials rejected"));
            }
            src.credential(username, allowed).map_err(|message| {
                let e = git2::Error::from_str(&message);
                self.auth_problem.replace(Some(message));
                e
            })
        });
        callbacks.certificate_check(|cert, host| {
            let Some(hostkey) = cert.as_hostkey() else {
                // TLS: libgit2's own verification against the system's CA store decides.
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            match src.check_host_key(hostkey, host) {
                Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
                Err(message) => {
                    let e = git2::Error::from_str(&message);
                    self.host_key_problem.replace(Some((host.to_string(), message)));
                    Err(e)
                }
            }
        });
        callbacks
    }
}

/// A Git repository followed into `<state_dir>/repo`.
pub struct GitSource {
    settings: GitSettings,
    repo_dir: PathBuf,
    /// Where versions before the object-database reader checked the store files out; removed
    /// after the first good sync.
    legacy_tree_dir: Option<PathBuf>,
    fetch_timeout: Duration,
    /// The last tree read.
    cache: Option<TreeCache>,
}

/// How one attempt failed: a corrupt local repository is worth one re-clone; anything else is
/// reported as is.
enum Failure {
    Corrupt(String),
    Source(SourceError),
}

impl From<SourceError> for Failure {
    fn from(e: SourceError) -> Self {
        Failure::Source(e)
    }
}

impl GitSource {
    pub fn new(settings: GitSettings) -> GitSource {
        GitSource {
            repo_dir: settings.state_dir.join("repo"),
            legacy_tree_dir: Some(settings.state_dir.join("tree")),
            settings,
            fetch_timeout: FETCH_TIMEOUT,
            cache: None,
        }
    }

    /// Overrides [`FETCH_TIMEOUT`].
    pub fn with_fetch_timeout(mut self, timeout: Duration) -> GitSource {
        self.fetch_timeout = timeout;
        self
    }

    /// Fetches and reads the followed commit; see the module docs. Returns the previous snapshot
    /// — the same `Arc` — when the followed commit has not moved. Blocking: call it from
    /// `spawn_blocking`. Every error is retryable and leaves the last good snapshot in force.
    pub fn sync(&mut self, defaults: &SpecDefaults) -> Result<Arc<Snapshot>, SourceError> {
        let result = self.sync_repairing(defaults);
        if result.is_ok()
            && let Some(legacy) = self.legacy_tree_dir.take()
            && let Err(e) = remove_any(&legacy)
        {
            tracing::debug!(path = %legacy.display(), error = %e, "Cannot remove an old checkout");
        }
        result
    }

    /// Forgets the cached tree, so that the next sync parses every file again.
    pub fn forget(&mut self) {
        self.cache = None;
    }

    fn sync_repairing(&mut self, defaults: &SpecDefaults) -> Result<Arc<Snapshot>, SourceError> {
        match self.attempt(defaults) {
            Ok(snap) => Ok(snap),
            Err(Failure::Source(e)) => Err(e),
            Err(Failure::Corrupt(message)) => {
                tracing::warn!(
                    path = %self.repo_dir.display(),
                    error = %message,
                    "Local repository is corrupt; deleting it and cloning again"
                );
                if let Err(e) = remove_any(&self.repo_dir) {
                    return Err(self.checkout_err(format!("cannot delete it: {e}")));
                }
                match self.attempt(defaults) {
                    Ok(snap) => Ok(snap),
                    Err(Failure::Source(e)) => Err(e),
                    Err(Failure::Corrupt(message)) => Err(self.checkout_err(message)),
                }
            }
        }
    }

    fn checkout_err(&self, message: String) -> SourceError {
        SourceError::GitCheckout {
            path: self.repo_dir.clone(),
            message,
        }
    }

    fn attempt(&mut self, defaults: &SpecDefaults) -> Result<Arc<Snapshot>, Failure> {
        let repo = self.open_or_init()?;
        // A pinned commit never changes: once it is here, the remote is not needed at all (and
        // an outage cannot make it stale).
        let pinned = match &self.settings.reference {
            GitRef::Commit(_) => self.resolve(&repo).ok(),
            _ => None,
        };
        let oid = match pinned {
            Some(oid) => oid,
            None => {
                self.fetch(&repo)?;
                self.resolve(&repo)?
            }
        };
        let (subpath, tree_id) = self.store_tree(&repo, oid)?;
        if let Some(cache) = self.cache.as_mut().filter(|c| c.defaults == *defaults) {
            if cache.commit == oid {
                return Ok(Arc::clone(&cache.snapshot));
            }
            if cache.tree == tree_id {
                cache.move_to(oid);
                return Ok(Arc::clone(&cache.snapshot));
            }
        }
        let prev = self.cache.as_ref().filter(|c| c.defaults == *defaults);
        let next = tree::read(&repo, prev, oid, tree_id, &subpath, defaults)?;
        let snap = Arc::clone(&next.snapshot);
        tracing::debug!(revision = %snap.revision, stores = snap.stores.len(), "Read Git snapshot");
        self.cache = Some(next);
        Ok(snap)
    }

    /// The store directory of commit `oid`: its path in the repository and its tree id. Reads
    /// the commit and the trees on the way, so a damaged repository is noticed here.
    fn store_tree(&self, repo: &Repository, oid: Oid) -> Result<(PathBuf, Oid), Failure> {
        let commit = repo
            .find_commit(oid)
            .map_err(|e| Failure::Corrupt(format!("commit {oid}: {}", e.message())))?;
        let root_tree = commit
            .tree()
            .map_err(|e| Failure::Corrupt(format!("tree of {oid}: {}", e.message())))?;
        let missing = || SourceError::GitSubpathMissing {
            subpath: self.settings.subpath.clone(),
            revision: oid.to_string(),
        };
        let subpath = relative_subpath(&self.settings.subpath).ok_or_else(missing)?;
        if subpath.as_os_str().is_empty() {
            return Ok((subpath, root_tree.id()));
        }
        let entry = match root_tree.get_path(&subpath) {
            Ok(entry) => entry,
            Err(e) if e.code() == ErrorCode::NotFound => return Err(missing().into()),
            Err(e) => return Err(Failure::Corrupt(e.message().to_string())),
        };
        if entry.kind() != Some(ObjectType::Tree) {
            return Err(missing().into());
        }
        Ok((subpath, entry.id()))
    }

    /// Opens the bare repository, creating it on first use. One that exists but cannot be opened
    /// (truncated `HEAD`, missing `objects/`) is corrupt.
    fn open_or_init(&self) -> Result<Repository, Failure> {
        if self.repo_dir.exists() {
            let repo = Repository::open_bare(&self.repo_dir)
                .map_err(|e| Failure::Corrupt(format!("cannot open: {}", e.message())))?;
            if let Err(e) = repo.find_reference("HEAD") {
                return Err(Failure::Corrupt(format!("HEAD: {}", e.message())));
            }
            return Ok(repo);
        }
        std::fs::create_dir_all(&self.settings.state_dir)
            .map_err(|e| self.checkout_err(format!("cannot create the state directory: {e}")))?;
        tracing::info!(url = %redact(&self.settings.url), path = %self.repo_dir.display(), "Cloning");
        Repository::init_bare(&self.repo_dir)
            .map_err(|e| Failure::Source(self.checkout_err(format!("cannot create: {}", e.message()))))
    }

    fn fetch(&self, repo: &Repository) -> Result<(), Failure> {
        let url = &self.settings.url;
        let watch = FetchWatch::new(Instant::now() + self.fetch_timeout);
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(watch.callbacks(self))
            .prune(FetchPrune::On)
            .download_tags(AutotagOption::None)
            .update_fetchhead(false);
        // Anonymous: the URL always comes from the current settings, so a changed URL in the
        // daemon config takes effect without touching the repository's config.
        let mut remote = repo.remote_anonymous(url).map_err(|e| SourceError::GitFetch {
            url: redact(url),
            source: e,
        })?;
        let refspecs = ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"];
        let result = remote.fetch(&refspecs, Some(&mut options), None);
        drop(options);
        match result {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fetch_failure(watch, e, repo)),
        }
    }

    /// What a failed fetch means: what the callbacks saw first, then libgit2's classes.
    fn fetch_failure(&self, watch: FetchWatch, e: git2::Error, repo: &Repository) -> Failure {
        let url = redact(&self.settings.url);
        if watch.timed_out.get() {
            return SourceError::GitTimeout {
                url,
                after: self.fetch_timeout,
            }
            .into();
        }
        if let Some((host, message)) = watch.host_key_problem.take() {
            return SourceError::GitHostKey { host, message }.into();
        }
        if let Some(message) = watch.auth_problem.take() {
            return SourceError::GitAuth { url, message }.into();
        }
        if e.code() == ErrorCode::Auth {
            let message = e.message().to_string();
            return SourceError::GitAuth { url, message }.into();
        }
        if e.code() == ErrorCode::Certificate {
            let message = e.message().to_string();
            return SourceError::GitHostKey { host: url, message }.into();
        }
        // A fetch can fail because of the remote or because of us; only a damaged local
        // repository is worth deleting, so look before blaming it.
        let local = matches!(
            e.class(),
            ErrorClass::Odb | ErrorClass::Zlib | ErrorClass::Object | ErrorClass::Reference
        );
        if local || !refs_intact(repo) {
            return Failure::Corrupt(format!("fetch: {}", e.message()));
        }
        SourceError::GitFetch { url, source: e }.into()
    }

    /// Picks credentials for what the remote allows. Errors carry a message for the operator and
    /// never the secret itself.
    fn credential(&self, username: Option<&str>, allowed: CredentialType) -> Result<Cred, String> {
        let s = &self.settings;
        if allowed.contains(CredentialType::SSH_KEY)
            && let Some(key) = &s.ssh_key_file
        {
            return Cred::ssh_key(username.unwrap_or("git"), None, key, None)
                .map_err(|e| format!("cannot use SSH key {}: {}", key.display(), e.message()));
        }
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(username.unwrap_or("git")).map_err(|e| e.message().to_string());
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
            && let Some(token) = self.token()?
        {
            return Cred::userpass_plaintext(TOKEN_USER, &token).map_err(|e| e.message().to_string());
        }
        Err("the remote asked for credentials that are not configured \
             (set ssh_key_file, token_file or token_env)"
            .into())
    }

    /// Reads the token at each use, so a rotated token file is picked up without a restart.
    fn token(&self) -> Result<Option<String>, String> {
        let s = &self.settings;
        if let Some(path) = &s.token_file {
            let token = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
            let token = token.trim();
            if token.is_empty() {
                return Err(format!("token file {} is empty", path.display()));
            }
            return Ok(Some(token.to_string()));
        }
        if let Some(var) = &s.token_env {
            return match std::env::var(var) {
                Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_string())),
                _ => Err(format!("environment variable {var} is not set")),
            };
        }
        Ok(None)
    }

    /// Accepts an SSH host key only when known_hosts lists it for this host.
    fn check_host_key(&self, key: &git2::cert::CertHostkey<'_>, host: &str) -> Result<(), String> {
        let path = match &self.settings.known_hosts_file {
            Some(p) => p.clone(),
            None => std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".ssh/known_hosts"))
                .ok_or("no known_hosts_file is configured and $HOME is not set")?,
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read known_hosts file {}: {e}", path.display()))?;
        let (Some(raw), Some(kind)) = (key.hostkey(), key.hostkey_type()) else {
            return Err("the SSH library did not provide the raw host key".into());
        };
        let entries = parse_known_hosts(&text);
        let port = ssh_port(&self.settings.url);
        match check_known_host(&entries, host, port, kind.name(), &base64(raw)) {
            HostKeyVerdict::Match => Ok(()),
            verdict => Err(format!("{} ({})", verdict.describe(), path.display())),
        }
    }

    /// Resolves the followed ref to a commit id.
    fn resolve(&self, repo: &Repository) -> Result<Oid, Failure> {
        let missing = |what: String| {
            Failure::Source(SourceError::GitRefMissing {
                url: redact(&self.settings.url),
                reference: what,
            })
        };
        let (refname, what) = match &self.settings.reference {
            GitRef::Branch(b) => (format!("refs/remotes/origin/{b}"), format!("branch {b}")),
            GitRef::Tag(t) => (format!("refs/tags/{t}"), format!("tag {t}")),
            GitRef::Commit(c) => {
                let found = if c.len() == 40 {
                    Oid::from_str(c).and_then(|oid| repo.find_commit(oid))
                } else {
                    repo.find_commit_by_prefix(c)
                };
                return match found {
                    Ok(commit) => Ok(commit.id()),
                    Err(_) if refs_intact(repo) => Err(missing(format!("commit {c}"))),
                    Err(e) => Err(Failure::Corrupt(e.message().to_string())),
                };
            }
        };
        let reference = match repo.find_reference(&refname) {
            Ok(r) => r,
            Err(e) if e.code() == ErrorCode::NotFound => return Err(missing(what)),
            Err(e) => return Err(Failure::Corrupt(format!("{refname}: {}", e.message()))),
        };
        match reference.peel_to_commit() {
            Ok(commit) => Ok(commit.id()),
            Err(e) if e.code() == ErrorCode::NotFound => {
                Err(Failure::Corrupt(format!("{refname}: {}", e.message())))
            }
            // A tag on a tree or blob: there is no commit to follow.
            Err(_) => Err(missing(format!("{what} (not a commit)"))),
        }
    }
}

/// Removes a directory tree, a file or a symlink at `path`; nothing there is fine.
fn remove_any(path: &Path) -> std::io::Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Whether every ref still leads to a readable commit and tree. Used after a failure to tell a
/// damaged local repository from a remote problem.
fn refs_intact(repo: &Repository) -> bool {
    let Ok(refs) = repo.references() else {
        return false;
    };
    for r in refs {
        let Ok(r) = r else { return false };
        let Ok(commit) = r.peel_to_commit() else {
            // Tags on trees or blobs are legal; only missing objects are damage.
            if r.peel(ObjectType::Any).is_err() {
                return false;
            }
            continue;
        };
        if commit.tree().is_err() {
            return false;
        }
    }
    true
}

/// The URL without user-info, which may hold a password or token.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// The SSH port of `ssh://[user@]host:port/...`; 22 for scp-like `user@host:path`.
fn ssh_port(url: &str) -> u16 {
    let Some(rest) = url.strip_prefix("ssh://") else {
        return 22;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    if host_port.starts_with('[') {
        // [v6]:port
        return host_port
            .rsplit_once("]:")
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(22);
    }
    host_port
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(22)
}

/// One usable line of a known_hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KnownHost {
    revoked: bool,
    patterns: Vec<String>,
    key_type: String,
    key: String,
}

/// Parses OpenSSH known_hosts text. Skipped, and so never matching: comments, malformed lines,
/// `@cert-authority` lines (host certificates are not supported) and hashed host names
/// (`|1|salt|hash`, written by `HashKnownHosts yes`: checking them needs HMAC-SHA1, which this
/// crate does not depend on — list the hosts in plain form, e.g. `ssh-keyscan github.com`).
fn parse_known_hosts(text: &str) -> Vec<KnownHost> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next();
        let mut revoked = false;
        match first {
            Some("@revoked") => {
                revoked = true;
                first = fields.next();
            }
            Some(m) if m.starts_with('@') => continue,
            _ => {}
        }
        let (Some(hosts), Some(key_type), Some(key)) = (first, fields.next(), fields.next()) else {
            continue;
        };
        if hosts.starts_with('|') {
            continue;
        }
        out.push(KnownHost {
            revoked,
            patterns: hosts.split(',').map(str::to_ascii_lowercase).collect(),
            key_type: key_type.to_string(),
            key: key.to_string(),
        });
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostKeyVerdict {
    Match,
    /// The host is listed, but with other keys: possibly a man in the middle.
    Mismatch,
    Unknown,
    Revoked,
}

impl HostKeyVerdict {
    fn describe(self) -> &'static str {
        match self {
            HostKeyVerdict::Match => "host key matches known_hosts",
            HostKeyVerdict::Mismatch => "host key does NOT match the one in known_hosts",
            HostKeyVerdict::Unknown => "host is not in known_hosts (hashed entries are not supported)",
            HostKeyVerdict::Revoked => "host key is marked @revoked in known_hosts",
        }
    }
}

fn check_known_host(
    entries: &[KnownHost],
    host: &str,
    port: u16,
    key_type: &str,
    key_b64: &str,
) -> HostKeyVerdict {
    let name = if port == 22 {
        host.to_ascii_lowercase()
    } else {
        format!("[{}]:{port}", host.to_ascii_lowercase())
    };
    let same_key = |e: &KnownHost| e.key_type == key_type && e.key == key_b64;
    if entries.iter().any(|e| e.revoked && same_key(e)) {
        return HostKeyVerdict::Revoked;
    }
    let mut listed = false;
    for e in entries
        .iter()
        .filter(|e| !e.revoked && hosts_match(&e.patterns, &name))
    {
        if same_key(e) {
            return HostKeyVerdict::Match;
        }
        listed = true;
    }
    if listed {
        HostKeyVerdict::Mismatch
    } else {
        HostKeyVerdict::Unknown
    }
}

/// OpenSSH host pattern matching: `*` and `?` wildcards, and `!pattern` negations that veto.
fn hosts_match(patterns: &[String], name: &str) -> bool {
    let mut matched = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg.as_bytes(), name.as_bytes()) {
                return false;
            }
        } else if glob(p.as_bytes(), name.as_bytes()) {
            matched = true;
        }
    }
    matched
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

/// Standard base64 with padding, as known_hosts stores keys.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN_HOSTS: &str = "\
# a comment
github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl
gitlab.com,*.example.org,!evil.example.org ssh-rsa AAAAB3Nza
[git.internal]:2222 ecdsa-sha2-nistp256 AAAAE2Vj
|1|F1E1KeoE/eEWhi10WpGv4OdiO6Y=|3988QV0VE8wmZL7suNrYQLITLCg= ssh-rsa AAAAhashed
@cert-authority *.corp ssh-rsa AAAAca
@revoked * ssh-rsa AAAArevoked
broken-line-without-key
";

    #[test]
    fn known_hosts_parsing_skips_comments_hashed_and_ca_lines() {
        let entries = parse_known_hosts(KNOWN_HOSTS);
        assert_eq!(entries.len(), 4, "{entries:#?}");
        assert_eq!(
            entries[1].patterns,
            ["gitlab.com", "*.example.org", "!evil.example.org"]
        );
        assert!(entries[3].revoked);
    }

    #[test]
    fn known_hosts_matching() {
        let e = parse_known_hosts(KNOWN_HOSTS);
        let gh = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        assert_eq!(
            check_known_host(&e, "github.com", 22, "ssh-ed25519", gh),
            HostKeyVerdict::Match
        );
        assert_eq!(
            check_known_host(&e, "GitHub.com", 22, "ssh-ed25519", gh),
            HostKeyVerdict::Match
        );
        assert_eq!(
            check_known_host(&e, "github.com", 22, "ssh-ed25519", "AAAAother"),
            HostKeyVerdict::Mismatch
        );
        // The same host on another port is another entry.
        assert_eq!(
            check_known_host(&e, "github.com", 2222, "ssh-ed25519", gh),
            HostKeyVerdict::Unknown
        );
        assert_eq!(
            check_known_host(&e, "git.internal", 2222, "ecdsa-sha2-nistp256", "AAAAE2Vj"),
            HostKeyVerdict::Match
        );
        assert_eq!(
            check_known_host(&e, "a.example.org", 22, "ssh-rsa", "AAAAB3Nza"),
            HostKeyVerdict::Match
        );
        assert_eq!(
            check_known_host(&e, "evil.example.org", 22, "ssh-rsa", "AAAAB3Nza"),
            HostKeyVerdict::Unknown
        );
        assert_eq!(
            check_known_host(&e, "elsewhere", 22, "ssh-rsa", "AAAAB3Nza"),
            HostKeyVerdict::Unknown
        );
        assert_eq!(
            check_known_host(&e, "gitlab.com", 22, "ssh-rsa", "AAAArevoked"),
            HostKeyVerdict::Revoked
        );
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn urls_lose_their_credentials_and_ssh_ports_are_found() {
        assert_eq!(redact("https://user:tok@host/x.git"), "https://host/x.git");
        assert_eq!(redact("https://host/a@b"), "https://host/a@b");
        assert_eq!(redact("git@github.com:o/r.git"), "git@github.com:o/r.git");
        assert_eq!(ssh_port("ssh://git@host:2222/r.git"), 2222);
        assert_eq!(ssh_port("ssh://host/r.git"), 22);
        assert_eq!(ssh_port("git@host:r.git"), 22);
        assert_eq!(ssh_port("ssh://git@[::1]:2200/r"), 2200);
    }
}
