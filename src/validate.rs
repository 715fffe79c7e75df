//! `storekeeper validate`: check store files (and a daemon config) without touching a cluster.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::diagnostic::Diagnostic;
use crate::source::dir;
use crate::spec::SpecDefaults;

/// The result of validating a set of paths; also the documented `--output json` shape.
#[derive(Debug, Serialize)]
pub struct Report {
    pub valid: bool,
    pub files: Vec<FileReport>,
    pub diagnostics: Vec<Diagnostic>,
    /// Problems that do not make anything invalid (the config's, e.g. a glob in
    /// `values_allowed` that matches guard-rail keys); absent from the JSON when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Diagnostic>,
}

#[derive(Debug, Serialize)]
pub struct FileReport {
    pub path: PathBuf,
    /// The store the file defines, `null` when its name is not a valid store name.
    pub store: Option<String>,
    pub valid: bool,
}

/// Validates files and directories of store files. Host uniqueness is checked across all of them.
pub fn validate(paths: &[PathBuf], defaults: &SpecDefaults) -> Report {
    let mut diagnostics = Vec::new();
    let groups = groups(paths, &mut diagnostics);
    // One snapshot per directory, and hosts checked across all of them.
    let all: Vec<_> = groups
        .iter()
        .map(|(root, list)| dir::read_files(root, list, defaults))
        .collect();
    let mut files = Vec::new();
    let mut seen_hosts: Vec<(PathBuf, std::sync::Arc<crate::spec::StoreSpec>)> = Vec::new();
    for snap in &all {
        for err in &snap.unnamed {
            files.push(FileReport {
                path: err.file.clone().into(),
                store: None,
                valid: false,
            });
            diagnostics.extend(err.diagnostics.iter().cloned());
        }
        for (name, result) in &snap.stores {
            let path = snap.files.get(name).cloned().unwrap_or_default();
            if let Ok(spec) = result {
                seen_hosts.push((path.clone(), std::sync::Arc::clone(spec)));
            }
            if let Err(e) = result {
                diagnostics.extend(e.diagnostics.iter().cloned());
            }
            files.push(FileReport {
                path,
                store: Some(name.to_string()),
                valid: result.is_ok(),
            });
        }
    }
    if all.len() > 1 {
        let pairs: Vec<(&Path, &crate::spec::StoreSpec)> =
            seen_hosts.iter().map(|(p, s)| (p.as_path(), &**s)).collect();
        for d in crate::spec::duplicate_hosts(&pairs) {
            if let Some(f) = files.iter_mut().find(|f| f.path == d.file) {
                f.valid = false;
            }
            diagnostics.push(d);
        }
    }
    Report {
        valid: diagnostics.is_empty(),
        files,
        diagnostics,
        warnings: Vec::new(),
    }
}

/// The paths as (directory, its store files): a directory's `*.toml`, or a file alone.
fn groups(paths: &[PathBuf], diagnostics: &mut Vec<Diagnostic>) -> Vec<(PathBuf, Vec<PathBuf>)> {
    let mut groups = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => match list(path) {
                Ok(list) => groups.push((path.clone(), list)),
                Err(e) => diagnostics.push(Diagnostic::whole_file(
                    path,
                    format!("cannot read directory: {e}"),
                )),
            },
            Ok(_) => {
                let root = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                groups.push((root.to_path_buf(), vec![path.clone()]));
            }
            Err(e) => diagnostics.push(
                Diagnostic::whole_file(path, format!("cannot read {}: {e}", path.display()))
                    .with_hint("pass store files or directories of store files"),
            ),
        }
    }
    groups
}

fn list(dirpath: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dirpath)? {
        let entry = entry?;
        if dir::is_store_file(&entry.file_name().to_string_lossy()) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

impl Report {
    /// Compiler-style text: every diagnostic, then a one-line summary.
    pub fn human(&self) -> String {
        let mut out = String::new();
        for d in self.warnings.iter().chain(&self.diagnostics) {
            out.push_str(&d.to_string());
            out.push('\n');
        }
        let bad = self.files.iter().filter(|f| !f.valid).count();
        let warned = match self.warnings.len() {
            0 => String::new(),
            n => format!(", {n} warning(s)"),
        };
        if self.valid {
            out.push_str(&format!("ok: {} store file(s) valid{warned}\n", self.files.len()));
        } else {
            out.push_str(&format!(
                "invalid: {} error(s) in {} of {} file(s){warned}\n",
                self.diagnostics.len(),
                bad.max(1),
                self.files.len()
            ));
        }
        out
    }
}
