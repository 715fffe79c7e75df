//! Reads a directory of store files into a [`Snapshot`], re-reading only the files that changed.
//!
//! [`DirSource`] keeps every file's parsed spec together with the file's identity as `lstat`
//! reported it (device, inode, type, size, mtime and ctime, all in nanoseconds). A file whose
//! identity is unchanged is not opened again: it costs one `lstat`, and it keeps handing out the
//! same `Arc<StoreSpec>`, so consumers can memoise per-spec work by pointer. A file whose identity
//! changed is read again, but re-parsed only when its content hash changed (`touch` costs a read,
//! not a parse, and keeps the `Arc`).
//!
//! Identity alone cannot see an edit that keeps the size and lands in the same timestamp tick as
//! the read that cached the file: mtime and ctime then look unchanged ("racy git", see git's
//! `Documentation/technical/racy-git.txt`). As git does, an entry is *racy* when its timestamps
//! are not safely older than the moment it was read; a racy entry is never trusted by identity:
//! it is read and its content hash compared every time until a read finds it old enough. ctime is
//! part of the identity, so tools that restore an old mtime (`cp -p`, `touch -d`) are seen too.
//!
//! Which files are looked at: all of them (a listing and one `lstat` each) on the first read,
//! after an error, when the watcher says events may have been lost, and every [`FULL_RESTAT`] as
//! the safety net for changes no event reports (hard links written from elsewhere, network
//! filesystems). Otherwise only the files the watcher's events named, plus the few entries that
//! are never trusted by identity: symlinks (the file they lead to may change without an event in
//! this directory), racy entries and entries that could not be examined.
//!
//! The rules are the same however a file is reached: symlinks that lead out of the directory are
//! refused, only regular files are opened (a FIFO never hangs the reader), the size limit holds,
//! a host claimed twice invalidates the later store, and files without a valid store name are
//! reported as `unnamed`. A missing or unreadable directory is an error, never an empty snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::Metadata;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::watch::Changes;
use super::{Snapshot, SourceError};
use crate::diagnostic::Diagnostic;
use crate::spec::{self, MAX_FILE_BYTES, SpecDefaults, SpecError, StoreName, StoreSpec};

/// How often every file is looked at even when the watcher reported nothing.
pub const FULL_RESTAT: Duration = Duration::from_secs(60);

/// A file whose mtime or ctime is less than this older than the read that cached it is racy (see
/// the module docs). It covers the coarsest timestamps of local filesystems (FAT: 2 s) plus the
/// lag of the kernel's coarse clock behind the clock read here.
const RACY_WINDOW: Duration = Duration::from_secs(3);

/// Whether a directory entry is a store file: `*.toml`, not hidden, not an editor's temp file.
pub fn is_store_file(name: &str) -> bool {
    !name.starts_with('.')
        && !name.starts_with('#')
        && !name.ends_with('~')
        && name.ends_with(".toml")
        && name.len() > 5
}

/// Reads every store file in `dir` (not recursive), without a cache: the one-shot commands' read
/// and the reference a cached read must equal. Fails only when the directory itself cannot be
/// listed; per-file problems become per-store errors.
pub fn read(dir: &Path, defaults: &SpecDefaults) -> Result<Snapshot, SourceError> {
    let mut source = DirSource::new(dir.to_path_buf());
    source.restat_all(&Scan::start(dir, defaults))?;
    Ok(source.build())
}

/// Parses the given files (all inside `root`) into a snapshot, checking hosts across files.
pub fn read_files(root: &Path, paths: &[PathBuf], defaults: &SpecDefaults) -> Snapshot {
    let mut source = DirSource::new(root.to_path_buf());
    let scan = Scan::start(root, defaults);
    for path in paths {
        let name = path.file_name().unwrap_or(path.as_os_str());
        source.visit(name, path, std::fs::symlink_metadata(path), &scan);
    }
    source.build()
}

/// Work done by the last [`DirSource::read`], for logs, tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Whether the directory was listed (a full re-stat) rather than only the named files.
    pub listed: bool,
    /// `lstat`/`stat` calls on store files.
    pub stats: usize,
    /// Files opened and read.
    pub reads: usize,
    /// Files parsed.
    pub parses: usize,
}

/// A store directory read again and again, each time looking only at what may have changed; see
/// the module docs. Blocking: call it from `spawn_blocking`.
pub struct DirSource {
    root: PathBuf,
    /// The defaults the cached specs were parsed with; other defaults empty the cache.
    defaults: Option<SpecDefaults>,
    /// Every store file seen, by file name (names compare much faster than paths).
    files: BTreeMap<OsString, Cached>,
    /// The names of the entries examined on every read, events or not: racy ones, symlinks and
    /// broken ones (see [`Cached::examined_always`]). Kept apart so an idle read costs nothing.
    always: BTreeSet<OsString>,
    /// What the last successful read returned.
    last: Option<Arc<Snapshot>>,
    /// When every file was last looked at; `None` forces a full re-stat (first read, errors).
    last_full: Option<Instant>,
    /// [`RACY_WINDOW`]; unit tests shorten it to reach the trusted-identity path at once.
    racy_window: Duration,
    stats: ReadStats,
}

/// One store file as last read.
struct Cached {
    /// `root` joined with the file name (or the path given to [`read_files`]).
    path: PathBuf,
    seen: Seen,
    /// Not to be trusted by identity (see the module docs).
    racy: bool,
    digest: Content,
    /// The store the file name stands for; `None` for an unnamed file.
    store: Option<StoreName>,
    result: Result<Arc<StoreSpec>, SpecError>,
}

impl Cached {
    /// Whether this entry can be kept without reading the file: the same trustworthy identity,
    /// and not racy.
    fn vouches_for(&self, seen: &Seen) -> bool {
        self.seen == *seen && !self.racy && seen.trustworthy()
    }

    /// Whether the entry is examined on every read (see [`DirSource::always`]).
    fn examined_always(&self) -> bool {
        self.racy || self.seen.examined_always()
    }
}

/// What examining a path (without opening it) found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// A regular file, or a FIFO, socket, device or directory (refused without being opened).
    File(FileIdent),
    /// A symlink, and the canonical path and identity of what it leads to, when that is inside
    /// the directory.
    Link {
        link: FileIdent,
        target: Option<(PathBuf, FileIdent)>,
    },
    /// `lstat` failed (not "not found"): never trusted, always looked at again.
    Broken(String),
}

impl Seen {
    /// Whether an equal identity vouches for equal content (see the module docs): not when the
    /// entry could not even be examined.
    fn trustworthy(&self) -> bool {
        !matches!(self, Seen::Broken(_))
    }

    /// Whether the entry must be examined on every read, events or not: a symlink's target may
    /// change without an event for the link, and a broken entry may heal without one.
    fn examined_always(&self) -> bool {
        !matches!(self, Seen::File(_))
    }

    /// The identity of the file whose content would be read.
    fn content_ident(&self) -> Option<&FileIdent> {
        match self {
            Seen::File(id)
            | Seen::Link {
                target: Some((_, id)),
                ..
            } => Some(id),
            Seen::Link { target: None, .. } | Seen::Broken(_) => None,
        }
    }
}

/// What a file held: its content's hash, or why it could not be read. Equal contents parse to
/// equal results, so an equal hash keeps the cached spec.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    Bytes([u8; 32]),
    Failed(String),
}

/// A file's identity as `lstat` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdent {
    /// A regular file (not a FIFO, socket, device, directory or symlink).
    regular: bool,
    dev: u64,
    ino: u64,
    /// File type and permission bits.
    mode: u32,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileIdent {
    #[cfg(unix)]
    fn of(m: &Metadata) -> FileIdent {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        FileIdent {
            regular: m.file_type().is_file(),
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        }
    }

    /// Without inode and ctime, identity is weaker; racy entries and the full re-stat remain.
    #[cfg(not(unix))]
    fn of(m: &Metadata) -> FileIdent {
        let mtime_ns = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        FileIdent {
            regular: m.file_type().is_file(),
            dev: 0,
            ino: 0,
            mode: u32::from(m.is_dir()) | (u32::from(m.is_symlink()) << 1),
            size: m.len(),
            mtime_ns,
            ctime_ns: mtime_ns,
        }
    }

    /// Whether a change after `read_at` could leave these timestamps as they are.
    fn racy(&self, read_at_ns: i128, window: Duration) -> bool {
        self.mtime_ns.max(self.ctime_ns) + window.as_nanos() as i128 > read_at_ns
    }
}

/// Per-read facts: the defaults, when the read started (for racy entries) and the directory's
/// canonical path (for symlinks), the latter computed only if a symlink is met.
struct Scan<'r> {
    root: &'r Path,
    defaults: &'r SpecDefaults,
    started_ns: i128,
    canonical_root: std::cell::OnceCell<Option<PathBuf>>,
}

impl<'r> Scan<'r> {
    fn start(root: &'r Path, defaults: &'r SpecDefaults) -> Scan<'r> {
        let started_ns = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        Scan {
            root,
            defaults,
            started_ns,
            canonical_root: std::cell::OnceCell::new(),
        }
    }

    fn canonical_root(&self) -> Option<&Path> {
        self.canonical_root
            .get_or_init(|| self.root.canonicalize().ok())
            .as_deref()
    }
}

impl DirSource {
    pub fn new(root: PathBuf) -> DirSource {
        DirSource {
            root,
            defaults: None,
            files: BTreeMap::new(),
            always: BTreeSet::new(),
            last: None,
            last_full: None,
            racy_window: RACY_WINDOW,
            stats: ReadStats::default(),
        }
    }

    /// Reads the directory, looking only at what `changes` names unless a full re-stat is due
    /// (see the module docs). Returns the previous snapshot — the same `Arc` — when nothing
    /// differs from it. An error leaves the cache in place and makes the next read a full one.
    pub fn read(&mut self, defaults: &SpecDefaults, changes: &Changes) -> Result<Arc<Snapshot>, SourceError> {
        self.stats = ReadStats::default();
        if self.defaults.as_ref() != Some(defaults) {
            self.files.clear();
            self.always.clear();
            self.last = None;
            self.last_full = None;
            self.defaults = Some(defaults.clone());
        }
        let root = self.root.clone();
        let scan = Scan::start(&root, defaults);
        let full = changes.everything || self.last_full.is_none_or(|t| t.elapsed() >= FULL_RESTAT);
        let changed = if full {
            let started = Instant::now();
            match self.restat_all(&scan) {
                Ok(changed) => {
                    self.last_full = Some(started);
                    changed
                }
                Err(e) => {
                    self.last_full = None;
                    return Err(e);
                }
            }
        } else {
            self.restat_some(&changes.names, &scan)
        };
        tracing::debug!(path = %self.root.display(), stats = ?self.stats, changed, "Read store directory");
        match &self.last {
            Some(last) if !changed => Ok(Arc::clone(last)),
            _ => {
                let snap = Arc::new(self.build());
                self.last = Some(Arc::clone(&snap));
                Ok(snap)
            }
        }
    }

    /// The directory read.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The work the last [`read`](Self::read) did.
    pub fn last_read_stats(&self) -> ReadStats {
        self.stats
    }

    /// Lists the directory and looks at every store file; returns whether anything changed.
    fn restat_all(&mut self, scan: &Scan<'_>) -> Result<bool, SourceError> {
        let dir_err = |source| SourceError::Directory {
            path: self.root.clone(),
            source,
        };
        let meta = std::fs::metadata(&self.root).map_err(dir_err)?;
        if !meta.is_dir() {
            return Err(SourceError::NotADirectory(self.root.clone()));
        }
        // `DirEntry::metadata` is an `lstat` relative to the open directory (`fstatat`), cheaper
        // than one through the whole path.
        let mut present = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(dir_err)? {
            let entry = entry.map_err(dir_err)?;
            let name = entry.file_name();
            if is_store_file(&name.to_string_lossy()) {
                present.push((name, entry));
            }
        }
        self.stats.listed = true;
        present.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let before = self.files.len();
        let listed = |n: &OsString| present.binary_search_by(|(p, _)| p.cmp(n)).is_ok();
        self.files.retain(|name, _| listed(name));
        self.always.retain(|name| listed(name));
        let mut changed = self.files.len() != before;
        for (name, entry) in &present {
            changed |= self.visit(name, &entry.path(), entry.metadata(), scan);
        }
        Ok(changed)
    }

    /// Looks at the named files and at the entries examined on every read.
    fn restat_some(&mut self, names: &BTreeSet<OsString>, scan: &Scan<'_>) -> bool {
        let mut visit: BTreeSet<OsString> = names
            .iter()
            .filter(|n| is_single_name(n) && is_store_file(&n.to_string_lossy()))
            .cloned()
            .collect();
        visit.extend(self.always.iter().cloned());
        let mut changed = false;
        for name in &visit {
            let path = self.root.join(name);
            let meta = std::fs::symlink_metadata(&path);
            changed |= self.visit(name, &path, meta, scan);
        }
        changed
    }

    /// Looks at one file, whose `lstat` gave `meta`, and updates its entry; returns whether
    /// what the snapshot shows for it changed. An unchanged, trusted identity costs the `lstat`.
    fn visit(&mut self, name: &OsStr, path: &Path, meta: std::io::Result<Metadata>, scan: &Scan<'_>) -> bool {
        self.stats.stats += 1;
        let Some(seen) = examine(path, meta, scan) else {
            self.always.remove(name);
            return self.files.remove(name).is_some();
        };
        if self.files.get(name).is_some_and(|c| c.vouches_for(&seen)) {
            return false;
        }
        let (digest, bytes) = self.load(path, &seen);
        let racy = seen
            .content_ident()
            .is_some_and(|id| id.racy(scan.started_ns, self.racy_window));
        let kept = match self.files.get_mut(name) {
            // Touched, or racy and still the same: the same content, the same spec.
            Some(c) if c.digest == digest => {
                c.seen = seen;
                c.racy = racy;
                true
            }
            _ => {
                let entry = self.parse(path, seen, racy, digest, bytes, scan);
                self.files.insert(name.to_os_string(), entry);
                false
            }
        };
        if self.files.get(name).is_some_and(Cached::examined_always) {
            self.always.insert(name.to_os_string());
        } else {
            self.always.remove(name);
        }
        !kept
    }

    fn parse(
        &mut self,
        path: &Path,
        seen: Seen,
        racy: bool,
        digest: Content,
        bytes: Result<Vec<u8>, Box<Diagnostic>>,
        scan: &Scan<'_>,
    ) -> Cached {
        let result = match bytes {
            Ok(bytes) => {
                self.stats.parses += 1;
                spec::parse_bytes(path, &bytes, scan.defaults).map(Arc::new)
            }
            Err(d) => Err(SpecError {
                file: path.display().to_string(),
                diagnostics: vec![*d],
            }),
        };
        Cached {
            path: path.to_path_buf(),
            seen,
            racy,
            digest,
            store: spec::name_from_path(path).ok(),
            result,
        }
    }

    /// Reads what `seen` says is there, under the same rules for every kind of entry.
    fn load(&mut self, path: &Path, seen: &Seen) -> (Content, Result<Vec<u8>, Box<Diagnostic>>) {
        let bytes = match seen {
            Seen::Broken(message) => Err(Box::new(spec::unreadable(
                path,
                &std::io::Error::other(message.clone()),
            ))),
            Seen::Link { target: None, .. } => Err(Box::new(outside(path))),
            Seen::File(id)
            | Seen::Link {
                target: Some((_, id)),
                ..
            } if !id.regular => Err(Box::new(spec::not_a_regular_file(path))),
            Seen::File(_) | Seen::Link { .. } => {
                self.stats.reads += 1;
                read_regular(path)
            }
        };
        let digest = match &bytes {
            Ok(b) => Content::Bytes(Sha256::digest(b).into()),
            Err(d) => Content::Failed(d.message.clone()),
        };
        (digest, bytes)
    }

    /// The snapshot of the cached entries. Its revision hashes every file's name and content
    /// hash, so the same files give the same revision without being read again.
    fn build(&self) -> Snapshot {
        let mut hasher = Sha256::new();
        for (name, c) in &self.files {
            hasher.update(name.as_encoded_bytes());
            hasher.update([0]);
            match &c.digest {
                Content::Bytes(h) => hasher.update(h),
                Content::Failed(message) => {
                    hasher.update(b"error:");
                    hasher.update(message.as_bytes());
                }
            }
            hasher.update([0]);
        }
        let Assembled {
            stores,
            files,
            unnamed,
        } = assemble(
            self.files
                .values()
                .map(|c| (c.path.as_path(), c.store.as_ref(), &c.result)),
            |p| std::fs::read_to_string(p).unwrap_or_default(),
        );
        Snapshot {
            revision: format!("dir:{}", &hex::encode(hasher.finalize())[..12]),
            stores,
            unnamed,
            files,
        }
    }
}

/// A snapshot's stores, files and unnamed files, built from per-file results.
pub(crate) struct Assembled {
    pub stores: BTreeMap<StoreName, Result<Arc<StoreSpec>, SpecError>>,
    pub files: BTreeMap<StoreName, PathBuf>,
    pub unnamed: Vec<SpecError>,
}

/// Sorts per-file results (path, store name if valid, result; in path order) into a snapshot's
/// parts and marks duplicate hosts; `text` gives a file's content for those messages. Shared by
/// the directory and Git sources so that both apply the same rules.
pub(crate) fn assemble<'a>(
    entries: impl Iterator<
        Item = (
            &'a Path,
            Option<&'a StoreName>,
            &'a Result<Arc<StoreSpec>, SpecError>,
        ),
    >,
    text: impl Fn(&Path) -> String,
) -> Assembled {
    // Collected, then built in bulk: much cheaper than an insert (a search) per store.
    let mut stores = Vec::new();
    let mut files = Vec::new();
    let mut unnamed = Vec::new();
    for (path, store, result) in entries {
        match store {
            Some(name) => {
                files.push((name.clone(), path.to_path_buf()));
                stores.push((name.clone(), result.clone()));
            }
            None => unnamed.push(result.clone().err().unwrap_or_else(|| SpecError {
                file: path.display().to_string(),
                diagnostics: Vec::new(),
            })),
        }
    }
    let mut stores = BTreeMap::from_iter(stores);
    let files = BTreeMap::from_iter(files);
    mark_duplicate_hosts(&mut stores, &files, text);
    Assembled {
        stores,
        files,
        unnamed,
    }
}

/// Turns a path's `lstat` into what it is and, for a symlink, finds where it leads. `None`:
/// nothing is there.
fn examine(path: &Path, meta: std::io::Result<Metadata>, scan: &Scan<'_>) -> Option<Seen> {
    let meta = match meta {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Seen::Broken(e.to_string())),
    };
    let ident = FileIdent::of(&meta);
    if !meta.file_type().is_symlink() {
        return Some(Seen::File(ident));
    }
    let target = path.canonicalize().ok().and_then(|target| {
        let inside = scan.canonical_root().is_some_and(|r| target.starts_with(r));
        let meta = std::fs::metadata(&target).ok().filter(|_| inside)?;
        Some((target, FileIdent::of(&meta)))
    });
    Some(Seen::Link { link: ident, target })
}

/// Whether a name from the watcher is one plain file name (never a path that leaves the directory).
fn is_single_name(name: &OsStr) -> bool {
    let mut components = Path::new(name).components();
    matches!(components.next(), Some(Component::Normal(_))) && components.next().is_none()
}

/// Opens a file that was a regular file a moment ago and reads it within the size limit. Opened
/// non-blocking and checked again on the open descriptor, so a FIFO swapped in meanwhile fails
/// instead of hanging the reader.
fn read_regular(path: &Path) -> Result<Vec<u8>, Box<Diagnostic>> {
    let io_err = |e: std::io::Error| Box::new(spec::unreadable(path, &e));
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(Box::new(spec::not_a_regular_file(path)));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(Box::new(spec::too_large(path)));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Box::new(spec::too_large(path)));
    }
    Ok(bytes)
}

/// The refusal of a symlink that leads out of the source directory (or nowhere).
pub(crate) fn outside(path: &Path) -> Diagnostic {
    Diagnostic::whole_file(path, "store file resolves outside the source directory".into())
        .with_hint("store files must be regular files inside the directory; remove the symlink")
}

/// A host claimed twice makes the later store (by name) invalid, with a pointer to the first.
/// `text` gives a file's content, to point at its `host` line.
fn mark_duplicate_hosts(
    stores: &mut BTreeMap<StoreName, Result<Arc<StoreSpec>, SpecError>>,
    files: &BTreeMap<StoreName, PathBuf>,
    text: impl Fn(&Path) -> String,
) {
    let valid: Vec<(&Path, &StoreSpec)> = stores
        .iter()
        .filter_map(|(n, r)| Some((files.get(n)?.as_path(), r.as_deref().ok()?)))
        .collect();
    let dups = spec::duplicate_hosts_in(&valid, text);
    for d in dups {
        let Ok(name) = spec::name_from_path(&d.file) else {
            continue;
        };
        let file = d.file.display().to_string();
        stores.insert(
            name,
            Err(SpecError {
                file,
                diagnostics: vec![d],
            }),
        );
    }
}

#[cfg(test)]
mod tests;
