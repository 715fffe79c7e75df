//! The kubeconfig file the clients (helm, kubectl, kube-rs) load: one plain-HTTP cluster, a
//! context named `testbed` that is current, and an empty user (the server does no auth).

use std::io::Write;
use std::path::Path;

/// Writes the kubeconfig for `url` to `path`, owner-only (helm warns about group-readable files).
pub fn write(path: &Path, url: &str) -> std::io::Result<()> {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster:
    server: {url}
contexts:
- name: testbed
  context:
    cluster: testbed
    user: testbed
current-context: testbed
preferences: {{}}
users:
- name: testbed
  user: {{}}
"
    );
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(text.as_bytes())
}
