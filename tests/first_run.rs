//! The first run of a newcomer (issue 19), through the real binary and the real `scripts/run`:
//!
//! - with no kubeconfig and no Docker, `scripts/run` exits 2 with the commands that get a
//!   cluster (and with a Docker that is not running, it says to start it);
//! - with Docker and k3d (fakes that record their arguments), it creates the k3d cluster once,
//!   reuses it after, and runs the daemon with `examples/local-k3d`'s config until a store is
//!   Ready (the fake k3d hands out the test API server's kubeconfig);
//! - the daemon started against an API server that is not there yet keeps retrying, `/readyz`
//!   says why (503), `/healthz` stays alive, and it converges once the server comes up on that
//!   address;
//! - `plan`, `apply` and `status --from-cluster` print the same clear error and exit 1;
//! - `render` prints a strict-valid manifest set for every example store, with no cluster
//!   (validated by the chart checks' own machinery, `scripts/chartcheck`).

mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::daemon::request;
use support::{show, signal, wait_for};
use testbed::TestApi;
use testbed::tools::HelmEnv;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const BIN: &str = env!("CARGO_BIN_EXE_storekeeper");

/// A machine without a kube context: an empty home, no variable naming a cluster, and a PATH of
/// the system's tools minus `hidden`, plus `extra` (name → program).
struct Machine {
    home: tempfile::TempDir,
    path: tempfile::TempDir,
}

impl Machine {
    fn new(hidden: &[&str], extra: &[(&str, &Path)]) -> Machine {
        let path = tempfile::tempdir().expect("tempdir");
        for (name, target) in extra {
            std::os::unix::fs::symlink(target, path.path().join(name)).expect("symlink");
        }
        for dir in [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ] {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let link = path.path().join(&name);
                let hide = hidden.iter().any(|h| name == *h);
                if !hide && link.symlink_metadata().is_err() {
                    let _ = std::os::unix::fs::symlink(entry.path(), link);
                }
            }
        }
        Machine {
            home: tempfile::tempdir().expect("tempdir"),
            path,
        }
    }

    /// `program` with only this machine's environment (and `envs`).
    fn command(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        envs: &[(String, std::ffi::OsString)],
    ) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", self.path.path())
            .env("HOME", self.home.path())
            .current_dir(root());
        for (k, v) in envs {
            // HelmEnv points helm at a kubeconfig; a newcomer's machine has none.
            if k != "KUBECONFIG" && k != "HOME" {
                cmd.env(k, v);
            }
        }
        cmd
    }

    fn no_kubeconfig_message(&self) -> String {
        format!(
            "no kubeconfig found: $KUBECONFIG is not set, {} does not exist, and this is not a pod",
            self.home.path().join(".kube/config").display()
        )
    }
}

/// The isolated helm directories of the test bed, without any kubeconfig.
fn helm_envs() -> (HelmEnv, Vec<(String, std::ffi::OsString)>) {
    let env = HelmEnv::for_kubeconfig(Path::new("/nonexistent/kubeconfig"), 4);
    let envs = env.envs();
    (env, envs)
}

fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn run_script_without_kubeconfig_or_docker_says_what_to_do_and_exits_2() {
    let helm = testbed::tools::helm(4);
    let machine = Machine::new(&["docker", "k3d", "helm", "kubectl"], &[("helm", &helm)]);
    let (_helm_env, envs) = helm_envs();
    let out = machine
        .command(root().join("scripts/run"), &envs)
        .env("STOREKEEPER_BIN", BIN)
        .output()
        .expect("run scripts/run");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(err.contains(&machine.no_kubeconfig_message()), "{err}");
    for step in [
        "1. Docker:  curl -fsSL https://get.docker.com | sh",
        "2. k3d:     curl -s https://raw.githubusercontent.com/k3d-io/k3d/main/install.sh | bash",
        "3. scripts/run   (creates the k3d cluster \"storekeeper\" with host port 80 mapped to its ingress)",
        "scripts/run --kubeconfig FILE",
        "render chai-corner",
    ] {
        assert!(err.contains(step), "missing {step:?} in:\n{err}");
    }
    // The raw error of kube's config inference never reaches the user.
    assert!(
        !err.contains("failed to infer config") && !err.contains("in-cluster: ("),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{}", show(&out));
}

#[test]
fn run_script_with_a_docker_that_is_not_running_says_to_start_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let docker = dir.path().join("docker");
    // `docker info` fails as it does with a client and no engine.
    write_exec(
        &docker,
        "#!/bin/sh\n[ \"$1\" = info ] && { echo 'Cannot connect to the Docker daemon' >&2; exit 1; }\nexit 0\n",
    );
    let helm = testbed::tools::helm(4);
    let machine = Machine::new(
        &["docker", "k3d", "helm"],
        &[("helm", &helm), ("docker", &docker)],
    );
    let (_helm_env, envs) = helm_envs();
    let out = machine
        .command(root().join("scripts/run"), &envs)
        .env("STOREKEEPER_BIN", BIN)
        .output()
        .expect("run scripts/run");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        err.contains("1. start Docker (`docker info` fails):  sudo systemctl start docker"),
        "{err}"
    );
    assert!(err.contains("2. k3d:"), "{err}");
    assert!(!err.contains("get.docker.com"), "Docker is installed: {err}");
}

/// A spawned process whose stderr is collected, with the daemon's HTTP address once logged.
struct Running {
    child: Child,
    logs: Arc<Mutex<String>>,
    addr: String,
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let (logs, rx) = support::daemon::collect_stderr(&mut child);
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let text = logs.lock().map(|l| l.clone()).unwrap_or_default();
                panic!("no HTTP address logged:\n{text}");
            }
        };
        Running { child, logs, addr }
    }

    fn get(&self, path: &str) -> (u16, String) {
        request(&self.addr, "GET", path)
    }

    fn logs(&self) -> String {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGTERM, and the exit code.
    fn stop(mut self) -> Option<i32> {
        signal(&self.child, "TERM");
        self.child.wait().expect("wait").code()
    }
}

/// Fake `docker` and `k3d` that record their arguments; the fake k3d keeps its clusters in a
/// state file and hands out `kubeconfig` for every cluster.
struct FakeTools {
    dir: tempfile::TempDir,
}

impl FakeTools {
    fn new(kubeconfig: &Path) -> FakeTools {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, state) = (dir.path().join("calls.log"), dir.path().join("clusters"));
        write_exec(
            &dir.path().join("docker"),
            &format!("#!/bin/sh\necho \"docker $*\" >> '{}'\nexit 0\n", log.display()),
        );
        write_exec(
            &dir.path().join("k3d"),
            &format!(
                "#!/bin/sh\necho \"k3d $*\" >> '{log}'\ncase \"$1 $2\" in\n\
                 'cluster list') cat '{state}' 2>/dev/null; exit 0 ;;\n\
                 'cluster create') echo \"$3   1/1   0/0   true\" >> '{state}'; exit 0 ;;\n\
                 'cluster start') exit 0 ;;\n\
                 'kubeconfig get') cat '{kc}'; exit 0 ;;\n\
                 esac\necho \"fake k3d: unexpected: $*\" >&2\nexit 1\n",
                log = log.display(),
                state = state.display(),
                kc = kubeconfig.display()
            ),
        );
        FakeTools { dir }
    }

    fn tool(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Removes the kubeconfig scripts/run writes for the test's k3d cluster, also on failure.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// scripts/run with Docker and k3d present: the k3d cluster is created on the first run and
/// reused on the second, and the daemon runs with examples/local-k3d's config (values-local.yaml)
/// on it until the example stores install and one is Ready.
#[test]
fn run_script_with_docker_and_k3d_creates_the_cluster_once_and_runs_the_stores_on_it() {
    let api = TestApi::start();
    let fakes = FakeTools::new(api.kubeconfig());
    let helm = testbed::tools::helm(4);
    let machine = Machine::new(
        &["docker", "k3d", "helm"],
        &[
            ("helm", &helm),
            ("docker", &fakes.tool("docker")),
            ("k3d", &fakes.tool("k3d")),
        ],
    );
    let helm_env = HelmEnv::new(&api, 4);
    let cluster = format!("first-run-test-{}", std::process::id());
    let _cleanup = RemoveOnDrop(root().join(format!(".tools/k3d-{cluster}.kubeconfig")));
    let script = || {
        let mut cmd = machine.command(root().join("scripts/run"), &helm_env.envs());
        cmd.env("STOREKEEPER_BIN", BIN)
            .env("STOREKEEPER_K3D_CLUSTER", &cluster)
            .args(["--listen", "127.0.0.1:0"]);
        cmd
    };

    let daemon = Running::spawn(script());
    let ready = wait_for(Duration::from_secs(180), || {
        daemon.get("/stores/chai-corner").1.contains("\"Ready\"")
    });
    let logs = daemon.logs();
    assert!(ready, "chai-corner never Ready:\n{logs}\n{}", api.log_tail(30));
    assert_eq!(daemon.get("/readyz").0, 200, "{logs}");
    assert!(
        logs.contains(&format!("creating the local k3d cluster {cluster}")),
        "{logs}"
    );
    assert!(
        logs.contains(&format!(
            "connected to the cluster attempt=1 cluster={}",
            api.url()
        )),
        "{logs}"
    );
    // values-local.yaml reached helm: the local ingress controller (traefik) may reach the store.
    let out = helm_env
        .command()
        .args([
            "get",
            "values",
            "chai-corner",
            "-n",
            "store-chai-corner",
            "-o",
            "json",
        ])
        .output()
        .expect("helm get values");
    let values: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(
        values["networkPolicy"]["ingressController"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "traefik",
        "{}",
        show(&out)
    );
    assert_eq!(daemon.stop(), Some(0));
    let first = fakes.calls();
    assert_eq!(
        first,
        [
            "docker info".to_string(),
            "k3d cluster list --no-headers".into(),
            format!(
                "k3d cluster create {cluster} -p 80:80@loadbalancer --kubeconfig-update-default=false --wait"
            ),
            format!("k3d kubeconfig get {cluster}"),
        ]
    );

    // The second run reuses the cluster: no second create.
    let daemon = Running::spawn(script());
    let ready = wait_for(Duration::from_secs(60), || daemon.get("/readyz").0 == 200);
    assert!(ready, "{}", daemon.logs());
    assert_eq!(daemon.stop(), Some(0));
    assert_eq!(
        fakes.calls()[first.len()..],
        [
            "docker info".to_string(),
            "k3d cluster list --no-headers".into(),
            format!("k3d cluster start {cluster}"),
            format!("k3d kubeconfig get {cluster}"),
        ]
    );
}

/// A free loopback address: bound, then released (nothing listens there afterwards).
fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

#[test]
fn the_daemon_retries_until_the_api_server_comes_up_then_converges() {
    let addr = free_addr();
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    testbed::write_kubeconfig(&kubeconfig, &format!("http://{addr}")).expect("kubeconfig");
    let stores = dir.path().join("stores.d");
    std::fs::create_dir_all(&stores).expect("mkdir");
    std::fs::write(stores.join("shop.toml"), "engine = \"woocommerce\"\n").expect("store");
    let config = dir.path().join("storekeeper.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\ndirectory = '{}'\n[cluster]\nkubeconfig = '{}'\nbase_domain = 'test.local'\n\
             [helm]\nbinary = '{}'\ncharts_dir = '{}'\ntimeout = '60s'\n[reconcile]\ninterval = '500ms'\n",
            stores.display(),
            kubeconfig.display(),
            testbed::tools::helm(4).display(),
            root().join("charts").display()
        ),
    )
    .expect("config");
    let helm_env = HelmEnv::for_kubeconfig(&kubeconfig, 4);
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .envs(helm_env.envs())
        .env("STOREKEEPER_LOG", "info");
    let daemon = Running::spawn(cmd);

    // Not ready, and why: the server, context and kubeconfig it tried, and the next step.
    let why = format!(
        "not ready: cluster not reachable yet: cannot reach the Kubernetes API server http://{addr} (context testbed in {})",
        kubeconfig.display()
    );
    let mut last = (0, String::new());
    let said = wait_for(Duration::from_secs(20), || {
        last = daemon.get("/readyz");
        last.0 == 503 && last.1.starts_with(&why)
    });
    assert!(said, "{last:?}\n{}", daemon.logs());
    assert!(last.1.contains("Next step:"), "{last:?}");
    // Retrying with backoff (1 s, 2 s...), each attempt logged; alive all the while.
    let retried = wait_for(Duration::from_secs(20), || daemon.logs().contains("attempt=3"));
    assert!(retried, "{}", daemon.logs());
    assert!(daemon.logs().contains("cannot connect to the cluster; retrying"));
    assert_eq!(daemon.get("/healthz").0, 200);

    let api = TestApi::start_on(addr).expect("start the test API server on the address");
    let converged = wait_for(Duration::from_secs(90), || {
        daemon.get("/stores/shop").1.contains("\"Ready\"")
    });
    assert!(converged, "{}\n{}", daemon.logs(), api.log_tail(30));
    assert_eq!(daemon.get("/readyz").0, 200);
    assert!(api.get("/api/v1/namespaces/store-shop").is_some());
    assert!(
        daemon.logs().contains("connected to the cluster"),
        "{}",
        daemon.logs()
    );
    assert_eq!(daemon.stop(), Some(0));
}

/// The three one-shot commands that need a cluster, with the flags they share.
fn one_shots(machine: &Machine, extra: &[&str]) -> Vec<(String, Output)> {
    let (_helm_env, envs) = helm_envs();
    let helm = testbed::tools::helm(4);
    let stores = root().join("stores.d");
    let charts = root().join("charts");
    let common: Vec<&std::ffi::OsStr> = vec![
        "--stores".as_ref(),
        stores.as_os_str(),
        "--charts".as_ref(),
        charts.as_os_str(),
        "--helm".as_ref(),
        helm.as_os_str(),
    ];
    [vec!["plan"], vec!["apply"], vec!["status", "--from-cluster"]]
        .into_iter()
        .map(|args| {
            let out = machine
                .command(BIN, &envs)
                .args(&args)
                .args(&common)
                .args(extra)
                .output()
                .expect("run storekeeper");
            (args.join(" "), out)
        })
        .collect()
}

#[test]
fn plan_apply_and_status_from_cluster_print_the_same_clear_error_and_exit_1() {
    let machine = Machine::new(&[], &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let addr = free_addr();
    testbed::write_kubeconfig(&kubeconfig, &format!("http://{addr}")).expect("kubeconfig");
    let unreachable = format!(
        "error: cannot reach the Kubernetes API server http://{addr} (context testbed in {}): ",
        kubeconfig.display()
    );
    let cases = [
        (vec![], format!("error: {}", machine.no_kubeconfig_message())),
        (
            vec!["--kubeconfig", kubeconfig.to_str().expect("utf-8")],
            unreachable,
        ),
    ];
    for (extra, want) in cases {
        let results = one_shots(&machine, &extra);
        let first = stderr(&results[0].1);
        for (what, out) in &results {
            let err = stderr(out);
            assert_eq!(out.status.code(), Some(1), "{what}: {}", show(out));
            assert!(err.starts_with(&want), "{what}: {err}");
            assert!(err.contains(". Next step: "), "{what}: {err}");
            assert_eq!(err, first, "{what} and plan say different things");
        }
    }
}

fn python() -> PathBuf {
    let python = std::env::var_os("STOREKEEPER_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/venv/bin/python"));
    assert!(
        python.is_file(),
        "{} not found: run scripts/test-tools (it installs the chart checks' venv)",
        python.display()
    );
    python
}

/// Runs the chart checks' validator (kubernetes-validate strict + policies) on files.
fn validate(files: &[PathBuf]) -> Output {
    Command::new(python())
        .arg(root().join("scripts/chartcheck/validate_stream.py"))
        .args(files)
        .output()
        .expect("run the validator")
}

/// `storekeeper render <store>` on a machine with no cluster at all.
fn render(machine: &Machine, envs: &[(String, std::ffi::OsString)], store: &str, extra: &[&str]) -> Output {
    machine
        .command(BIN, envs)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .args(["render", store])
        .args(extra)
        .output()
        .expect("run storekeeper render")
}

#[test]
fn render_prints_a_strict_valid_manifest_set_for_every_example_store_with_no_cluster() {
    let machine = Machine::new(&[], &[]);
    let (_helm_env, envs) = helm_envs();
    let out_dir = tempfile::tempdir().expect("tempdir");
    let mut stores: Vec<String> = std::fs::read_dir(root().join("stores.d"))
        .expect("stores.d")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".toml").map(str::to_string))
        .collect();
    stores.sort();
    assert_eq!(stores, ["chai-corner", "city-bikes", "corner-shop"]);
    let configs: [(&str, &[&str]); 3] = [
        ("defaults", &[]),
        ("local", &["--config", "examples/local-k3d/storekeeper.toml"]),
        // The VPS example reads Git and /etc/storekeeper/charts: the repository's copies here.
        (
            "prod",
            &[
                "--config",
                "examples/vps-k3s/storekeeper.toml",
                "--stores",
                "stores.d",
                "--charts",
                "charts",
            ],
        ),
    ];
    let mut files = Vec::new();
    for major in [3u8, 4] {
        let helm = testbed::tools::helm(major);
        for (label, flags) in configs {
            for store in &stores {
                let mut extra = flags.to_vec();
                extra.extend(["--helm", helm.to_str().expect("utf-8")]);
                let out = render(&machine, &envs, store, &extra);
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{store} {label} helm {major}: {}",
                    show(&out)
                );
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(text.contains("the chart's `lookup` found nothing"), "{text}");
                assert!(
                    text.contains("#   existingSecret: storekeeper-credentials"),
                    "{text}"
                );
                assert!(
                    text.contains(&format!("release {store}, namespace store-{store}")),
                    "{text}"
                );
                if label == "local" {
                    assert!(text.contains("values-local.yaml"), "{text}");
                }
                let file = out_dir.path().join(format!("{store}-{label}-helm{major}.yaml"));
                std::fs::write(&file, out.stdout).expect("write render");
                files.push(file);
            }
        }
    }
    let out = validate(&files);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    for f in &files {
        let line = report
            .lines()
            .find(|l| l.starts_with(&f.display().to_string()))
            .unwrap_or_else(|| panic!("{} not validated:\n{report}", f.display()));
        assert!(
            line.contains("valid (strict)") && !line.contains(": 0 valid"),
            "{line}"
        );
    }

    // The validator is not a rubber stamp: a misspelt field fails it.
    let text = std::fs::read_to_string(&files[0]).expect("read render");
    assert!(
        text.contains("  replicas: "),
        "a Deployment or StatefulSet in {text}"
    );
    let broken = out_dir.path().join("broken.yaml");
    std::fs::write(&broken, text.replacen("  replicas: ", "  replicaz: ", 1)).expect("write");
    let out = validate(&[broken]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("replicaz"),
        "{}",
        show(&out)
    );
}

#[test]
fn render_redacts_secret_values_and_reports_bad_or_unknown_stores() {
    let machine = Machine::new(&[], &[]);
    let (_helm_env, envs) = helm_envs();
    let dir = tempfile::tempdir().expect("tempdir");
    let stores = dir.path().join("stores.d");
    std::fs::create_dir_all(&stores).expect("mkdir");
    std::fs::write(
        stores.join("shop.toml"),
        "engine = \"woocommerce\"\n[values.wordpress]\nsmtpPassword = \"hunter2-literal\"\n",
    )
    .expect("store");
    std::fs::write(
        stores.join("bad.toml"),
        "engine = \"woocommerce\"\nplna = \"small\"\n",
    )
    .expect("store");
    let helm = testbed::tools::helm(4);
    let flags = [
        "--stores",
        stores.to_str().expect("utf-8"),
        "--helm",
        helm.to_str().expect("utf-8"),
    ];
    let out = render(&machine, &envs, "shop", &flags);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("hunter2-literal"), "{text}");
    assert!(text.contains("#     smtpPassword: (redacted)"), "{text}");

    // A store file's path works as well as its name.
    let path = stores.join("shop.toml");
    let out = render(&machine, &envs, path.to_str().expect("utf-8"), &flags[2..]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    let out = render(&machine, &envs, "bad", &flags);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("unknown field `plna`") && err.contains("did you mean `plan`?"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{}", show(&out));

    let out = render(
        &machine,
        &envs,
        "shop",
        &[flags[0], flags[1], "--helm", "/nonexistent/helm"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("Next step: install helm 3 or 4, or pass --helm FILE"),
        "{}",
        show(&out)
    );

    let out = render(&machine, &envs, "nope", &flags);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("no store named \"nope\" in the configured source; its stores: bad, shop"),
        "{}",
        show(&out)
    );
}
