//! The store files of one Git tree, read from the object database and cached by blob id.
//!
//! Blobs are read straight from the object database: nothing is written to disk, so a sync costs
//! the blobs that changed, not the whole directory. Every entry of the tree named like a store
//! file is resolved to what a checkout of it would hold, under the rules of a watched directory:
//!
//! - a regular blob (mode 100644 or 100755) is the file; over the size limit it is refused
//!   before it is inflated;
//! - a symlink (mode 120000) is followed within the tree, as a checkout would resolve it, and
//!   must end at a regular blob inside the store directory. Targets are resolved lexically
//!   (`..` and `.` against the link's directory, up to 40 links deep); one that leaves the store
//!   directory, is absolute, dangles, loops or passes through another symlink is refused like a
//!   symlink out of a watched directory ("resolves outside the source directory");
//! - a directory or a submodule (gitlink) is "not a regular file".
//!
//! A file's parsed result depends only on its name and on what it resolved to, so an entry whose
//! name and resolution are unchanged keeps its result, and its `Arc<StoreSpec>`, from the
//! previous tree. Messages name files by their path in the repository (`stores.d/shop.toml`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use git2::{ErrorCode, ObjectType, Odb, Oid, Repository, Tree};

use super::Failure;
use crate::source::Snapshot;
use crate::source::dir::{self, Assembled};
use crate::spec::{self, MAX_FILE_BYTES, SpecDefaults, SpecError, StoreName, StoreSpec};

/// Mode of a symlink entry in a Git tree.
const MODE_SYMLINK: i32 = 0o120000;
/// Links followed at most, like Linux's `MAXSYMLINKS`.
const MAX_LINKS: usize = 40;
/// Longest symlink target read, like `PATH_MAX`.
const MAX_LINK_BYTES: usize = 4096;

/// What an entry named like a store file holds, as a checkout would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resolved {
    /// A regular blob: the file's content.
    Blob(Oid),
    /// A directory, a submodule, or a symlink to one.
    NotRegular,
    /// A symlink that leaves the store directory, dangles, loops or cannot be followed.
    Outside,
}

/// One store file of the tree.
#[derive(Debug, Clone)]
struct Entry {
    resolved: Resolved,
    path: PathBuf,
    store: Option<StoreName>,
    result: Result<Arc<StoreSpec>, SpecError>,
}

/// The last tree read, and what it gave.
pub(super) struct TreeCache {
    pub(super) defaults: SpecDefaults,
    pub(super) commit: Oid,
    /// The id of the store directory's tree: equal ids, equal snapshots.
    pub(super) tree: Oid,
    /// By raw file name.
    entries: BTreeMap<Vec<u8>, Entry>,
    pub(super) snapshot: Arc<Snapshot>,
}

impl TreeCache {
    /// The same store files at another commit: only the revision differs.
    pub(super) fn move_to(&mut self, commit: Oid) {
        let mut snapshot = (*self.snapshot).clone();
        snapshot.revision = commit.to_string();
        self.snapshot = Arc::new(snapshot);
        self.commit = commit;
    }
}

/// What one read did, for the debug log.
#[derive(Debug, Default)]
struct Work {
    kept: usize,
    parsed: usize,
}

/// Reads the store files of tree `tree_id` (the store directory `subpath` of `commit`),
/// reusing from `prev` every entry whose name and resolution are unchanged.
pub(super) fn read(
    repo: &Repository,
    prev: Option<&TreeCache>,
    commit: Oid,
    tree_id: Oid,
    subpath: &Path,
    defaults: &SpecDefaults,
) -> Result<TreeCache, Failure> {
    let corrupt = |what: String, e: git2::Error| Failure::Corrupt(format!("{what}: {}", e.message()));
    let tree = repo
        .find_tree(tree_id)
        .map_err(|e| corrupt(format!("tree {tree_id}"), e))?;
    let odb = repo.odb().map_err(|e| corrupt("object database".into(), e))?;
    let mut entries = BTreeMap::new();
    let mut work = Work::default();
    for item in tree.iter() {
        let raw = item.name_bytes();
        if raw.contains(&b'/') || !dir::is_store_file(&String::from_utf8_lossy(raw)) {
            continue;
        }
        let resolved = resolve(&odb, &tree, subpath, &item)?;
        let kept = prev
            .and_then(|p| p.entries.get(raw))
            .filter(|e| e.resolved == resolved)
            .cloned();
        let entry = match kept {
            Some(e) => {
                work.kept += 1;
                e
            }
            None => {
                work.parsed += 1;
                load(&odb, subpath.join(file_name(raw)), resolved, defaults)?
            }
        };
        entries.insert(raw.to_vec(), entry);
    }
    let snapshot = Arc::new(assemble(&odb, commit, &entries));
    tracing::debug!(revision = %commit, kept = work.kept, parsed = work.parsed, "Read Git tree");
    Ok(TreeCache {
        defaults: defaults.clone(),
        commit,
        tree: tree_id,
        entries,
        snapshot,
    })
}

/// The snapshot of the entries; duplicate hosts are pointed at in the blobs' text.
fn assemble(odb: &Odb<'_>, commit: Oid, entries: &BTreeMap<Vec<u8>, Entry>) -> Snapshot {
    let blobs: HashMap<&Path, Oid> = entries
        .values()
        .filter_map(|e| match e.resolved {
            Resolved::Blob(oid) => Some((e.path.as_path(), oid)),
            _ => None,
        })
        .collect();
    let text = |path: &Path| {
        blobs
            .get(path)
            .and_then(|oid| odb.read(*oid).ok())
            .map(|o| String::from_utf8_lossy(o.data()).into_owned())
            .unwrap_or_default()
    };
    let Assembled {
        stores,
        files,
        unnamed,
    } = dir::assemble(
        entries
            .values()
            .map(|e| (e.path.as_path(), e.store.as_ref(), &e.result)),
        text,
    );
    Snapshot {
        revision: commit.to_string(),
        stores,
        unnamed,
        files,
    }
}

/// Parses one entry; `path` is its path in the repository, used in messages.
fn load(odb: &Odb<'_>, path: PathBuf, resolved: Resolved, defaults: &SpecDefaults) -> Result<Entry, Failure> {
    let fail = |d: crate::diagnostic::Diagnostic| {
        Err(SpecError {
            file: path.display().to_string(),
            diagnostics: vec![d],
        })
    };
    let result = match &resolved {
        Resolved::Outside => fail(dir::outside(&path)),
        Resolved::NotRegular => fail(spec::not_a_regular_file(&path)),
        Resolved::Blob(oid) => match blob(odb, *oid, MAX_FILE_BYTES as usize)? {
            Some(bytes) => spec::parse_bytes(&path, &bytes, defaults).map(Arc::new),
            None => fail(spec::too_large(&path)),
        },
    };
    Ok(Entry {
        resolved,
        store: spec::name_from_path(&path).ok(),
        path,
        result,
    })
}

/// A blob's content, or `None` when it is larger than `limit` (checked before inflating it).
fn blob(odb: &Odb<'_>, oid: Oid, limit: usize) -> Result<Option<Vec<u8>>, Failure> {
    let corrupt = |e: git2::Error| Failure::Corrupt(format!("blob {oid}: {}", e.message()));
    let (size, _) = odb.read_header(oid).map_err(corrupt)?;
    if size > limit {
        return Ok(None);
    }
    let object = odb.read(oid).map_err(corrupt)?;
    Ok(Some(object.data().to_vec()))
}

/// What a tree entry named like a store file holds (see the module docs).
fn resolve(
    odb: &Odb<'_>,
    tree: &Tree<'_>,
    subpath: &Path,
    item: &git2::TreeEntry<'_>,
) -> Result<Resolved, Failure> {
    match item.kind() {
        Some(ObjectType::Blob) if item.filemode() == MODE_SYMLINK => {
            let base: Vec<Vec<u8>> = subpath.iter().map(|c| c.as_encoded_bytes().to_vec()).collect();
            follow(odb, tree, &base, item.id())
        }
        Some(ObjectType::Blob) => Ok(Resolved::Blob(item.id())),
        _ => Ok(Resolved::NotRegular),
    }
}

/// Follows the symlink blob `link`, an entry of the store directory `tree` whose path in the
/// repository is `base`, to what it leads to.
fn follow(odb: &Odb<'_>, tree: &Tree<'_>, base: &[Vec<u8>], mut link: Oid) -> Result<Resolved, Failure> {
    // Where the current link lives, relative to the store directory.
    let mut dir: Vec<Vec<u8>> = Vec::new();
    for _ in 0..MAX_LINKS {
        let Some(target) = blob(odb, link, MAX_LINK_BYTES)? else {
            return Ok(Resolved::Outside);
        };
        let Some(path) = within(base, &dir, &target) else {
            return Ok(Resolved::Outside);
        };
        if path.is_empty() {
            return Ok(Resolved::NotRegular);
        }
        let joined: PathBuf = path.iter().map(|c| file_name(c)).collect();
        let entry = match tree.get_path(&joined) {
            Ok(e) => e,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(Resolved::Outside),
            // Walking through a blob (a symlinked directory) is not following it.
            Err(e) if e.code() == ErrorCode::InvalidSpec => return Ok(Resolved::Outside),
            Err(e) => return Err(Failure::Corrupt(format!("{}: {}", joined.display(), e.message()))),
        };
        match entry.kind() {
            Some(ObjectType::Blob) if entry.filemode() == MODE_SYMLINK => {
                link = entry.id();
                dir = path[..path.len() - 1].to_vec();
            }
            Some(ObjectType::Blob) => return Ok(Resolved::Blob(entry.id())),
            _ => return Ok(Resolved::NotRegular),
        }
    }
    Ok(Resolved::Outside)
}

/// Resolves a link's target lexically against its directory `dir` (relative to the store
/// directory, whose path in the repository is `base`), as a path relative to the store
/// directory; `None` if it is absolute or ends outside the store directory.
fn within(base: &[Vec<u8>], dir: &[Vec<u8>], target: &[u8]) -> Option<Vec<Vec<u8>>> {
    if target.first() == Some(&b'/') || target.is_empty() {
        return None;
    }
    let mut out: Vec<Vec<u8>> = base.iter().chain(dir).cloned().collect();
    for part in target.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            name => out.push(name.to_vec()),
        }
    }
    out.starts_with(base).then(|| out.split_off(base.len()))
}

/// A raw file name as a path component.
#[cfg(unix)]
fn file_name(raw: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(raw))
}

#[cfg(not(unix))]
fn file_name(raw: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(raw).into_owned())
}

/// `subpath` as relative components; `None` if it tries to leave the repository.
pub(super) fn relative_subpath(subpath: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in subpath.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(p: &[&str]) -> Vec<Vec<u8>> {
        p.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn link_targets_resolve_lexically_and_stay_inside() {
        let base = parts(&["stores.d"]);
        let ok = |dir: &[&str], target: &str, want: &[&str]| {
            assert_eq!(
                within(&base, &parts(dir), target.as_bytes()),
                Some(parts(want)),
                "{target}"
            );
        };
        ok(&[], "shop.toml", &["shop.toml"]);
        ok(&[], "./sub/../shop.toml", &["shop.toml"]);
        ok(&["sub"], "../shop.toml", &["shop.toml"]);
        ok(&[], "sub//x.toml", &["sub", "x.toml"]);
        ok(&[], "../stores.d/shop.toml", &["shop.toml"]);
        ok(&[], ".", &[]);
        for bad in [
            "../secret.toml",
            "../../x",
            "/etc/passwd",
            "",
            "../stores.dx/a.toml",
        ] {
            assert_eq!(within(&base, &[], bad.as_bytes()), None, "{bad}");
        }
        // At the repository root, `..` leaves the repository.
        assert_eq!(within(&[], &[], b"../x.toml"), None);
        assert_eq!(within(&[], &[], b"x.toml"), Some(parts(&["x.toml"])));
    }

    #[test]
    fn subpaths_stay_inside_the_repository() {
        assert_eq!(
            relative_subpath(Path::new("./stores.d/")),
            Some(PathBuf::from("stores.d"))
        );
        assert_eq!(relative_subpath(Path::new(".")), Some(PathBuf::new()));
        assert_eq!(relative_subpath(Path::new("../x")), None);
        assert_eq!(relative_subpath(Path::new("/etc")), None);
    }
}
