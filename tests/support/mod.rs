//! Shared harness for integration tests that drive the real `storekeeper` binary and the real
//! helm against the test API server.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod daemon;
pub mod git;

/// The one way to run scenarios against both helm majors: each `fn name(major: u8)` becomes the
/// tests `helm3::name` and `helm4::name`.
#[allow(unused_macros)] // each test binary uses a different part of the harness
macro_rules! both_helms {
    ($($name:ident),* $(,)?) => {
        mod helm3 { $( #[test] fn $name() { super::$name(3) } )* }
        mod helm4 { $( #[test] fn $name() { super::$name(4) } )* }
    };
}
#[allow(unused_imports)]
pub(crate) use both_helms;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testbed::TestApi;
use testbed::tools::HelmEnv;

pub struct Env {
    pub api: TestApi,
    pub helm: HelmEnv,
    pub major: u8,
    pub dir: tempfile::TempDir,
    pub stores: PathBuf,
    pub config: PathBuf,
    pub helm_log: PathBuf,
}

/// Extra lines for the generated storekeeper.toml.
pub struct Opts {
    pub helm_timeout: &'static str,
    pub max_deletions: usize,
    pub extra: &'static str,
    /// The reconcile interval (the directory is re-read at least this often).
    pub interval: &'static str,
    /// A replacement `[source...]` section (e.g. a Git source); default: the stores directory.
    pub source: Option<String>,
    /// `helm.max_concurrent`.
    pub max_concurrent: usize,
    /// `reconcile.deletion_grace`: none by default here, so deletions act at once.
    pub deletion_grace: &'static str,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            helm_timeout: "30s",
            max_deletions: 1,
            extra: "",
            interval: "500ms",
            source: None,
            max_concurrent: 3,
            deletion_grace: "0s",
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read chart dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

impl Env {
    pub fn new(major: u8) -> Env {
        Env::with(major, Opts::default())
    }

    pub fn with(major: u8, opts: Opts) -> Env {
        let api = TestApi::start();
        let helm = HelmEnv::new(&api, major);
        let dir = tempfile::tempdir().expect("tempdir");
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        for chart in ["woocommerce-store", "medusa-store"] {
            copy_dir(
                &root.join("tests/fixtures/tiny-chart"),
                &dir.path().join("charts").join(chart),
            );
        }
        let stores = dir.path().join("stores.d");
        std::fs::create_dir_all(&stores).expect("mkdir stores");
        // A wrapper that logs every helm invocation, so tests can count helm child processes.
        let helm_log = dir.path().join("helm.log");
        let wrapper = dir.path().join("helm");
        let real = testbed::tools::helm(major);
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
                helm_log.display(),
                real.display()
            ),
        )
        .expect("write wrapper");
        set_exec(&wrapper);
        let config = dir.path().join("storekeeper.toml");
        std::fs::write(
            &config,
            format!(
                "{}\n[cluster]\nkubeconfig = '{}'\nbase_domain = 'test.local'\n\
                 [helm]\nbinary = '{}'\ncharts_dir = '{}'\ntimeout = '{}'\nmax_concurrent = {}\n\
                 [reconcile]\ninterval = '{}'\nmax_deletions = {}\ndeletion_grace = '{}'\n\
                 [http]\nlisten = '127.0.0.1:0'\n{}",
                opts.source
                    .clone()
                    .unwrap_or_else(|| format!("[source]\ndirectory = '{}'", stores.display())),
                api.kubeconfig().display(),
                wrapper.display(),
                dir.path().join("charts").display(),
                opts.helm_timeout,
                opts.max_concurrent,
                opts.interval,
                opts.max_deletions,
                opts.deletion_grace,
                opts.extra,
            ),
        )
        .expect("write config");
        Env {
            api,
            helm,
            major,
            dir,
            stores,
            config,
            helm_log,
        }
    }

    pub fn write_store(&self, name: &str, body: &str) {
        std::fs::write(self.stores.join(format!("{name}.toml")), body).expect("write store");
    }

    pub fn remove_store(&self, name: &str) {
        std::fs::remove_file(self.stores.join(format!("{name}.toml"))).expect("remove store");
    }

    /// `storekeeper <args> --config <ours>` with the helm environment.
    pub fn storekeeper(&self, args: &[&str]) -> Command {
        self.storekeeper_with(&self.config, args)
    }

    /// `storekeeper <args> --config <config>` with the helm environment.
    pub fn storekeeper_with(&self, config: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_storekeeper"));
        cmd.args(args)
            .arg("--config")
            .arg(config)
            .current_dir(self.dir.path());
        cmd.envs(self.helm.envs());
        cmd.env("STOREKEEPER_LOG", "info");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.storekeeper(args).output().expect("run storekeeper")
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.storekeeper(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn storekeeper")
    }

    /// Every helm invocation so far (the argument lines).
    pub fn helm_calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.helm_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Whether helm was ever started to install or upgrade `store`.
    pub fn helm_started(&self, store: &str) -> bool {
        let prefix = format!("upgrade --install {store} ");
        self.helm_calls().iter().any(|c| c.starts_with(&prefix))
    }

    pub fn clear_helm_log(&self) {
        let _ = std::fs::remove_file(&self.helm_log);
    }

    /// Runs helm directly (not through the daemon) and parses its JSON output.
    pub fn helm_json(&self, args: &[&str]) -> Value {
        let out = self
            .helm
            .command()
            .args(args)
            .args(["-o", "json"])
            .output()
            .expect("run helm");
        assert!(
            out.status.success(),
            "helm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("helm json")
    }

    pub fn release_status(&self, store: &str) -> Option<String> {
        let out = self
            .helm
            .command()
            .args(["status", store, "-n", &format!("store-{store}"), "-o", "json"])
            .output()
            .expect("run helm");
        if !out.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["info"]["status"].as_str().map(str::to_string)
    }

    pub fn namespace(&self, name: &str) -> Option<Value> {
        self.api.get(&format!("/api/v1/namespaces/{name}"))
    }

    pub fn annotation(&self, ns: &str, key: &str) -> Option<String> {
        self.namespace(ns)?["metadata"]["annotations"][key]
            .as_str()
            .map(str::to_string)
    }

    pub fn phase(&self, ns: &str) -> Option<String> {
        let s = self.annotation(ns, "storekeeper.dev/status")?;
        let v: Value = serde_json::from_str(&s).ok()?;
        v["phase"].as_str().map(str::to_string)
    }
}

impl Env {
    /// Leaves `store`'s release in `pending-upgrade` the way a crash does: an outside helm
    /// upgrade to a never-ready spec, SIGKILLed once the release is pending.
    pub fn leave_pending_upgrade(&self, store: &str) {
        let chart = format!("{}/charts/woocommerce-store", self.dir.path().display());
        let ns = format!("store-{store}");
        let mut child = self
            .helm
            .command()
            .args([
                "upgrade",
                store,
                &chart,
                "-n",
                &ns,
                "--wait",
                "--timeout",
                "60s",
                "--set",
                "neverReady=true",
            ])
            .spawn()
            .expect("spawn helm");
        let pending = wait_for(Duration::from_secs(20), || {
            self.release_status(store).as_deref() == Some("pending-upgrade")
        });
        let _ = child.kill();
        let _ = child.wait();
        assert!(pending, "helm did not reach pending-upgrade");
    }
}

/// Human-readable dump of a finished command, for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Polls `f` until it returns true or `limit` passes.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

fn set_exec(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut p = std::fs::metadata(path).expect("stat").permissions();
    p.set_mode(0o755);
    std::fs::set_permissions(path, p).expect("chmod");
}

/// Sends a signal to a child process.
pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}
