//! `storekeeper render <store>`: what a store would get, with no cluster at all, so a newcomer
//! can see the product before having one. The values are exactly those an install passes to
//! helm (the operator's values files, then the generated values, in files), shown redacted as
//! plan diffs are; the manifests are the real `helm template` output of those values.
//!
//! Offline has a price, and the output says so: `helm template` asks no cluster, so the charts'
//! `lookup` finds nothing (volumes show the plan's sizes, where an existing store keeps its
//! own), and what storekeeper creates itself (the namespace and the credentials Secret) is not
//! helm's to render. No secret is ever printed: credentials are generated in the cluster only,
//! and a Secret a chart would render (only when `existingSecret` is overridden) has its data
//! replaced.

use std::io::Write;
use std::path::PathBuf;

use serde_json::Value as Json;

use crate::config::Settings;
use crate::helm::{Helm, HelmError};
use crate::reconcile::{self, PlanError};
use crate::source::Snapshot;
use crate::spec::{SpecError, StoreName, StoreSpec};
use crate::values;

/// What replaces a secret value (base64 of it in a Secret's `data`).
const REDACTED: &str = "(redacted)";

/// Why a store could not be rendered. None is retryable as such: each needs the store file, the
/// charts or helm fixed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("no store named \"{name}\" in the configured source; its stores: {known}")]
    Unknown { name: String, known: String },
    /// The store file has errors; its diagnostics say where.
    #[error("{} has {} error(s); `storekeeper validate` shows them too", .0.file, .0.diagnostics.len())]
    Invalid(SpecError),
    #[error(transparent)]
    Chart(#[from] PlanError),
    #[error("helm template: {0}")]
    Helm(#[from] HelmError),
    #[error("cannot write the values file: {0}")]
    Io(#[from] std::io::Error),
    #[error("helm template printed a document that is not YAML: {0}")]
    Output(String),
}

/// One store, rendered.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub store: StoreName,
    pub namespace: String,
    pub chart: PathBuf,
    pub chart_version: String,
    /// The operator's values files, applied before the generated values.
    pub values_files: Vec<PathBuf>,
    /// The effective values helm receives, secret-looking keys redacted.
    pub values: Json,
    /// `helm template` output, Secret data redacted.
    pub manifests: String,
}

/// Renders the store `name` of `snapshot` with `helm`.
pub async fn render(
    settings: &Settings,
    snapshot: &Snapshot,
    name: &str,
    helm: &Helm,
) -> Result<Rendered, RenderError> {
    let (store, spec) = find(snapshot, name)?;
    let chart = reconcile::chart_inputs(settings, spec.engine)?;
    // As a first install would get them: the backup values, the revision tag, a restore.
    let backup = settings.backup.as_deref();
    let mut generated = values::store_values(spec, backup);
    if let Some(b) = backup {
        let restore = spec.restore_from.as_ref().map(|r| values::restore_values(r, b));
        values::at_apply(&mut generated, &snapshot.revision, restore);
    }
    let mut effective = chart.extra.clone();
    values::merge(&mut effective, &generated);
    // As an install does: the values in a private temporary file, never on the command line.
    let file = values_file(&generated)?;
    let mut files = chart.values_files.clone();
    files.push(file.path().to_path_buf());
    let namespace = settings.cluster.namespace_for(&store);
    let manifests = helm
        .template(store.as_str(), &namespace, &chart.chart, &files)
        .await?;
    Ok(Rendered {
        namespace,
        chart: chart.chart,
        chart_version: chart.hash.chart_version,
        values_files: chart.values_files,
        values: reconcile::redact(&effective),
        manifests: redact_secrets(&manifests)?,
        store,
    })
}

fn find<'a>(snapshot: &'a Snapshot, name: &str) -> Result<(StoreName, &'a StoreSpec), RenderError> {
    let unknown = || RenderError::Unknown {
        name: name.to_string(),
        known: known(snapshot),
    };
    let store = StoreName::new(name).map_err(|_| unknown())?;
    match snapshot.stores.get(&store) {
        None => Err(unknown()),
        Some(Err(e)) => Err(RenderError::Invalid(e.clone())),
        Some(Ok(spec)) => Ok((store, spec)),
    }
}

fn known(snapshot: &Snapshot) -> String {
    if snapshot.stores.is_empty() {
        return "none".into();
    }
    let names: Vec<&str> = snapshot.stores.keys().map(StoreName::as_str).collect();
    names.join(", ")
}

fn values_file(v: &Json) -> Result<tempfile::NamedTempFile, RenderError> {
    let mut file = tempfile::Builder::new()
        .prefix("storekeeper-values-")
        .suffix(".json")
        .tempfile()?;
    file.write_all(v.to_string().as_bytes())?;
    file.flush()?;
    Ok(file)
}

/// Replaces the data of every Secret document; every other document is kept as helm printed
/// it (with its `# Source:` line).
fn redact_secrets(stream: &str) -> Result<String, RenderError> {
    let mut out = String::new();
    for doc in split_documents(stream) {
        let parsed: Json = serde_yaml::from_str(doc).map_err(|e| RenderError::Output(e.to_string()))?;
        if parsed.get("kind").and_then(Json::as_str) == Some("Secret") {
            let source: String = doc.lines().filter(|l| l.starts_with("# Source:")).collect();
            let text = serde_yaml::to_string(&redact_secret(parsed))
                .map_err(|e| RenderError::Output(e.to_string()))?;
            out.push_str(&format!(
                "---\n{source}\n# data redacted by storekeeper render\n{text}"
            ));
        } else {
            out.push_str("---\n");
            out.push_str(doc.trim_start_matches('\n'));
            if !doc.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// The documents of a YAML stream as helm prints it (`---` lines between them).
fn split_documents(stream: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    for line in stream.split_inclusive('\n') {
        if line.trim_end() == "---" {
            docs.push(&stream[start..pos]);
            start = pos + line.len();
        }
        pos += line.len();
    }
    docs.push(&stream[start..]);
    docs.into_iter().filter(|d| !d.trim().is_empty()).collect()
}

fn redact_secret(mut secret: Json) -> Json {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(REDACTED);
    for (field, value) in [("data", &encoded), ("stringData", &REDACTED.to_string())] {
        if let Some(Json::Object(m)) = secret.get_mut(field) {
            for v in m.values_mut() {
                *v = Json::String(value.clone());
            }
        }
    }
    secret
}

impl Rendered {
    fn values_files_text(&self) -> String {
        if self.values_files.is_empty() {
            return "none".into();
        }
        let files: Vec<String> = self
            .values_files
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        files.join(", ")
    }

    /// The text `storekeeper render` prints: the whole of it is one YAML stream (everything
    /// but the manifests is a comment), so it can be piped into a validator as it is.
    pub fn text(&self, helm_major: u8) -> String {
        let mut out = format!(
            "# storekeeper render {store}: what this store would get, rendered with no cluster.\n\
             # Chart {chart} {version} (helm {helm_major}), release {store}, namespace {ns}.\n\
             #\n\
             # Offline, so `helm template` asked no cluster and the chart's `lookup` found nothing:\n\
             # volumes show the plan's sizes (an existing store keeps its own size). Not below,\n\
             # because storekeeper creates them itself before the install: the namespace (with\n\
             # its labels) and the Secret {secret} (credentials generated in the\n\
             # cluster, never printed).\n\
             #\n\
             # Values given to helm, secret-looking keys redacted (operator values files: {files};\n\
             # then the store's generated values):\n",
            store = self.store,
            chart = self.chart.display(),
            version = self.chart_version,
            ns = self.namespace,
            secret = values::CREDENTIALS_SECRET,
            files = self.values_files_text(),
        );
        let yaml = serde_yaml::to_string(&self.values).unwrap_or_default();
        for line in yaml.lines() {
            out.push_str(&format!("#   {line}\n"));
        }
        out.push_str("#\n# Manifests (helm template):\n");
        out.push_str(&self.manifests);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_data_is_replaced_and_other_documents_are_kept_verbatim() {
        let stream = "---\n# Source: c/templates/a.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  title: Chai Corner   # a comment\n---\n# Source: c/templates/secret.yaml\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  db-password: aHVudGVyMg==\nstringData:\n  salt: hunter3\n";
        let out = redact_secrets(stream).expect("redacts");
        assert!(out.contains("  title: Chai Corner   # a comment\n"), "{out}");
        assert!(!out.contains("aHVudGVyMg==") && !out.contains("hunter3"), "{out}");
        assert!(out.contains("# Source: c/templates/secret.yaml"), "{out}");
        assert!(out.contains("db-password: KHJlZGFjdGVkKQ=="), "{out}");
        assert_eq!(split_documents(&out).len(), 2, "{out}");
    }

    #[test]
    fn a_stream_that_is_not_yaml_is_an_error() {
        assert!(matches!(
            redact_secrets("---\nkind: [unclosed\n"),
            Err(RenderError::Output(_))
        ));
    }
}
