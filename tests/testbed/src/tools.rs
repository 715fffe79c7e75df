//! Finding the client binaries and giving each helm run an isolated environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::TestApi;

/// `<workspace root>`: this crate lives in `tests/testbed`.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// `$var` if set, else `.tools/<name>` under the workspace root; panics (this is test setup)
/// with a hint when the binary is missing.
fn tool(var: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".tools").join(name));
    assert!(
        path.is_file(),
        "{} not found (set {var} or run scripts/test-tools)",
        path.display()
    );
    path
}

/// Path to helm of the given major version (3 or 4): `$STOREKEEPER_TEST_HELM3` /
/// `$STOREKEEPER_TEST_HELM4`, else `<workspace root>/.tools/helm3|helm4`.
pub fn helm(major: u8) -> PathBuf {
    match major {
        3 => tool("STOREKEEPER_TEST_HELM3", "helm3"),
        4 => tool("STOREKEEPER_TEST_HELM4", "helm4"),
        other => panic!("no helm {other} in the test bed; use 3 or 4"),
    }
}

/// Path to kubectl: `$STOREKEEPER_TEST_KUBECTL`, else `<workspace root>/.tools/kubectl`.
pub fn kubectl() -> PathBuf {
    tool("STOREKEEPER_TEST_KUBECTL", "kubectl")
}

/// Path to restic (0.18, installed by scripts/test-tools): `$STOREKEEPER_TEST_RESTIC`, else
/// `<workspace root>/.tools/restic`.
pub fn restic() -> PathBuf {
    tool("STOREKEEPER_TEST_RESTIC", "restic")
}

/// An isolated helm environment: its own cache/config/data directories and `HOME` (so the
/// discovery cache under `~/.kube/cache` is private too), and `KUBECONFIG` of the api.
pub struct HelmEnv {
    helm: PathBuf,
    _dir: tempfile::TempDir,
    envs: Vec<(String, OsString)>,
}

impl HelmEnv {
    pub fn new(api: &TestApi, major: u8) -> HelmEnv {
        HelmEnv::for_kubeconfig(api.kubeconfig(), major)
    }

    /// The same for any kubeconfig, e.g. one written before its server exists.
    pub fn for_kubeconfig(kubeconfig: &Path, major: u8) -> HelmEnv {
        let helm = helm(major);
        let dir = tempfile::tempdir().expect("create a helm home tempdir");
        let mut envs = vec![("KUBECONFIG".to_string(), kubeconfig.as_os_str().to_owned())];
        for (var, sub) in [
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
            ("HOME", "home"),
        ] {
            let path = dir.path().join(sub);
            std::fs::create_dir_all(&path).expect("create a helm home directory");
            envs.push((var.to_string(), path.into_os_string()));
        }
        HelmEnv {
            helm,
            _dir: dir,
            envs,
        }
    }

    /// The helm binary with the environment set and no arguments yet.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.helm);
        cmd.env_remove("HELM_NAMESPACE")
            .env_remove("HELM_KUBECONTEXT")
            .env_remove("HELM_DRIVER");
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// The variables [`HelmEnv::command`] sets, to give a daemon under test the same.
    pub fn envs(&self) -> Vec<(String, OsString)> {
        self.envs.clone()
    }
}
