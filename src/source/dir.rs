//! Reads a directory of store files into a [`Snapshot`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{Snapshot, SourceError};
use crate::diagnostic::Diagnostic;
use crate::spec::{self, SpecDefaults, SpecError, StoreName};

/// Whether a directory entry is a store file: `*.toml`, not hidden, not an editor's temp file.
pub fn is_store_file(name: &str) -> bool {
    !name.starts_with('.')
        && !name.starts_with('#')
        && !name.ends_with('~')
        && name.ends_with(".toml")
        && name.len() > 5
}

/// Reads every store file in `dir` (not recursive). Fails only when the directory itself cannot
/// be listed; per-file problems become per-store errors.
pub fn read(dir: &Path, defaults: &SpecDefaults) -> Result<Snapshot, SourceError> {
    let meta = std::fs::metadata(dir).map_err(|source| SourceError::Directory {
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(SourceError::NotADirectory(dir.to_path_buf()));
    }
    let entries = std::fs::read_dir(dir).map_err(|source| SourceError::Directory {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| SourceError::Directory {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_store_file(&name) {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(read_files(dir, &paths, defaults))
}

/// Parses the given files (all inside `root`) into a snapshot, checking hosts across files.
pub fn read_files(root: &Path, paths: &[PathBuf], defaults: &SpecDefaults) -> Snapshot {
    let mut hasher = Sha256::new();
    let mut stores = BTreeMap::new();
    let mut files = BTreeMap::new();
    let mut unnamed = Vec::new();
    for path in paths {
        let result = load_inside(root, path, defaults, &mut hasher).map(Arc::new);
        match spec::name_from_path(path) {
            Ok(name) => {
                files.insert(name.clone(), path.clone());
                stores.insert(name, result);
            }
            Err(_) => unnamed.push(result.err().unwrap_or_else(|| SpecError {
                file: path.display().to_string(),
                diagnostics: Vec::new(),
            })),
        }
    }
    mark_duplicate_hosts(&mut stores, &files);
    Snapshot {
        revision: format!("dir:{}", &hex::encode(hasher.finalize())[..12]),
        stores,
        unnamed,
        files,
    }
}

/// Loads one file, refusing symlinks that lead out of the source directory.
fn load_inside(
    root: &Path,
    path: &Path,
    defaults: &SpecDefaults,
    hasher: &mut Sha256,
) -> Result<spec::StoreSpec, SpecError> {
    let fail = |d: Box<Diagnostic>| SpecError {
        file: path.display().to_string(),
        diagnostics: vec![*d],
    };
    let inside = match (root.canonicalize(), path.canonicalize()) {
        (Ok(r), Ok(p)) => p.starts_with(&r),
        _ => false,
    };
    if !inside {
        return Err(fail(Box::new(
            Diagnostic::whole_file(path, "store file resolves outside the source directory".into())
                .with_hint("store files must be regular files inside the directory; remove the symlink"),
        )));
    }
    let bytes = spec::read_limited(path).map_err(fail)?;
    hasher.update(path.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
    hasher.update([0]);
    hasher.update(&bytes);
    hasher.update([0]);
    spec::parse_bytes(path, &bytes, defaults)
}

/// A host claimed twice makes the later store (by name) invalid, with a pointer to the first.
fn mark_duplicate_hosts(
    stores: &mut BTreeMap<StoreName, Result<Arc<spec::StoreSpec>, SpecError>>,
    files: &BTreeMap<StoreName, PathBuf>,
) {
    let valid: Vec<(&Path, &spec::StoreSpec)> = stores
        .iter()
        .filter_map(|(n, r)| Some((files.get(n)?.as_path(), r.as_deref().ok()?)))
        .collect();
    let dups = spec::duplicate_hosts(&valid);
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
mod tests {
    use super::*;

    fn defaults() -> SpecDefaults {
        SpecDefaults {
            base_domain: "example.com".into(),
            policy: Default::default(),
        }
    }

    #[test]
    fn only_toml_files_that_are_not_hidden_or_temporary() {
        assert!(is_store_file("shop.toml"));
        for name in [
            ".shop.toml",
            "shop.toml~",
            "#shop.toml#",
            "shop.toml.swp",
            "shop.yaml",
            ".toml",
            "4913",
        ] {
            assert!(!is_store_file(name), "{name}");
        }
    }

    #[test]
    fn missing_directory_is_an_error_not_an_empty_snapshot() {
        let err = read(Path::new("/nonexistent/stores.d"), &defaults()).expect_err("must fail");
        assert_eq!(err.kind(), "directory_unreadable");
    }

    #[test]
    fn invalid_files_keep_their_store_name_and_revision_tracks_content() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("good.toml"), "engine = \"woocommerce\"\n")?;
        std::fs::write(dir.path().join("bad.toml"), "engine = 5\n")?;
        std::fs::write(dir.path().join("Bad Name.toml"), "engine = \"medusa\"\n")?;
        std::fs::write(dir.path().join(".hidden.toml"), "garbage")?;
        let snap = read(dir.path(), &defaults()).expect("readable");
        assert_eq!(snap.stores.len(), 2);
        assert!(snap.stores.iter().any(|(n, r)| n.as_str() == "good" && r.is_ok()));
        assert!(snap.stores.iter().any(|(n, r)| n.as_str() == "bad" && r.is_err()));
        assert_eq!(snap.unnamed.len(), 1);
        let before = snap.revision.clone();
        std::fs::write(dir.path().join("good.toml"), "engine = \"medusa\"\n")?;
        assert_ne!(read(dir.path(), &defaults()).expect("readable").revision, before);
        Ok(())
    }

    #[test]
    fn duplicate_hosts_invalidate_the_later_store() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("a.toml"),
            "engine = \"woocommerce\"\nhost = \"shop.example.com\"\n",
        )?;
        std::fs::write(
            dir.path().join("b.toml"),
            "engine = \"woocommerce\"\nhost = \"shop.example.com\"\n",
        )?;
        let snap = read(dir.path(), &defaults()).expect("readable");
        let b = snap
            .stores
            .iter()
            .find(|(n, _)| n.as_str() == "b")
            .map(|(_, r)| r);
        let err = b.and_then(|r| r.as_ref().err()).expect("b is invalid");
        assert_eq!(err.diagnostics[0].line, 2);
        assert!(err.diagnostics[0].message.contains("already used by"));
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn symlink_out_of_the_directory_is_refused() -> std::io::Result<()> {
        let outside = tempfile::tempdir()?;
        let target = outside.path().join("secret.toml");
        std::fs::write(&target, "engine = \"woocommerce\"\n")?;
        let dir = tempfile::tempdir()?;
        std::os::unix::fs::symlink(&target, dir.path().join("evil.toml"))?;
        let snap = read(dir.path(), &defaults()).expect("readable");
        let r = snap.stores.values().next().expect("one store");
        assert!(
            r.as_ref()
                .is_err_and(|e| e.diagnostics[0].message.contains("outside"))
        );
        Ok(())
    }
}
