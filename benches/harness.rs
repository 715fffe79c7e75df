//! The benchmark harness: drives the REAL `storekeeper` binary (target/release/storekeeper, built
//! by `scripts/bench`) against the test API server running in this process, with generated store
//! files, the tiny test chart and the real helm 4 behind a counting wrapper script. Prints one
//! table and writes it, with the machine described, into BENCHMARKS.md (between the
//! `bench:start` / `bench:end` markers, so the hand-written analysis around it stays).
//!
//! Measured (issue 8): an idle cycle at N stores (helm processes, API requests, daemon CPU, wall
//! time); converging M new stores at max_concurrent 1, 3 and 10 against a sequential
//! `helm upgrade --install` loop (what Helmfile does); the daemon's RSS after converging N stores;
//! reaction time (file written → first helm process; commit + webhook → first helm process).
//! The plan computation itself is `benches/plan.rs` (criterion); its estimates are read back from
//! `target/criterion` when present.
//!
//! Knobs (environment): BENCH_STORES (default 1000), BENCH_NEW (200), BENCH_TRIALS (20),
//! BENCH_IDLE_TRIALS (5), BENCH_WRITE (1: update BENCHMARKS.md; 0: only print), STOREKEEPER_BIN.
//! Everything listens on 127.0.0.1 only. Nothing here asserts a timing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use testbed::TestApi;
use testbed::tools::HelmEnv;

type Res<T> = Result<T, String>;

fn main() {
    // `cargo bench` passes `--bench`; a filter argument other than ours means "not me".
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if args.iter().any(|a| !"harness".contains(a.as_str())) {
        return;
    }
    if let Err(e) = run() {
        eprintln!("bench harness failed: {e}");
        std::process::exit(1);
    }
}

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn set_exec(path: &Path) -> Res<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())
}

fn copy_dir(from: &Path, to: &Path) -> Res<()> {
    std::fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(from).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn store_body(i: usize) -> String {
    let engine = if i.is_multiple_of(2) {
        "woocommerce"
    } else {
        "medusa"
    };
    format!("engine = \"{engine}\"\nplan = \"small\"\n\n[shop]\ntitle = \"Bench Store {i}\"\n")
}

// --- the test bed: API server, helm environment, charts, counting wrapper ----------------------

/// One test API server with its helm environment, charts and a helm wrapper that appends
/// `<unix time with ns> <args>` per invocation to `log`.
struct Bed {
    api: TestApi,
    helm: HelmEnv,
    dir: tempfile::TempDir,
    charts: PathBuf,
    wrapper: PathBuf,
    log: PathBuf,
}

impl Bed {
    fn new() -> Res<Bed> {
        let api = TestApi::start();
        let helm = HelmEnv::new(&api, 4);
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let charts = dir.path().join("charts");
        for chart in ["woocommerce-store", "medusa-store"] {
            copy_dir(&root().join("tests/fixtures/tiny-chart"), &charts.join(chart))?;
        }
        if knob("BENCH_LEADER", 0) == 1 {
            api.insert(
                "/api/v1/namespaces",
                serde_json::json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "storekeeper" } }),
            );
        }
        let log = dir.path().join("helm.log");
        let wrapper = dir.path().join("helm");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"$(date +%s.%N) $*\" >> '{}'\nexec '{}' \"$@\"\n",
                log.display(),
                testbed::tools::helm(4).display()
            ),
        )
        .map_err(|e| e.to_string())?;
        set_exec(&wrapper)?;
        Ok(Bed {
            api,
            helm,
            dir,
            charts,
            wrapper,
            log,
        })
    }

    /// Every helm invocation so far: (unix time, arguments).
    fn helm_calls(&self) -> Vec<(f64, String)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (ts, args) = l.split_once(' ')?;
                Some((ts.parse().ok()?, args.to_string()))
            })
            .collect()
    }

    fn helm_count(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Writes storekeeper.toml for this bed.
    fn config(&self, name: &str, source: &str, max_concurrent: usize, interval: &str) -> Res<PathBuf> {
        let path = self.dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "{source}\n[cluster]\nkubeconfig = '{}'\nbase_domain = 'bench.local'\n\
                 [helm]\nbinary = '{}'\ncharts_dir = '{}'\ntimeout = '5m'\nmax_concurrent = {max_concurrent}\n\
                 [reconcile]\ninterval = '{interval}'\nresync_interval = '1h'\nmax_deletions = 1\ndeletion_grace = '0s'\n{}",
                self.api.kubeconfig().display(),
                self.wrapper.display(),
                self.charts.display(),
                // BENCH_LEADER=1: with leader election on (one replica, so it always leads).
                if knob("BENCH_LEADER", 0) == 1 {
                    "[leader_election]\nenabled = true\nlease_duration = '1h'\nrenew_every = '30m'\n"
                } else {
                    ""
                },
            ),
        )
        .map_err(|e| e.to_string())?;
        Ok(path)
    }

    fn storekeeper(&self, bin: &Path, config: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .arg("--config")
            .arg(config)
            .current_dir(self.dir.path())
            .envs(self.helm.envs())
            .env("STOREKEEPER_LOG", "info");
        cmd
    }

    fn stores_dir(&self, name: &str, range: std::ops::Range<usize>, prefix: &str) -> Res<PathBuf> {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for i in range {
            std::fs::write(dir.join(format!("{prefix}{i:04}.toml")), store_body(i))
                .map_err(|e| e.to_string())?;
        }
        Ok(dir)
    }
}

// --- a running daemon ---------------------------------------------------------------------------

struct Daemon {
    child: Child,
    addr: String,
    started: Instant,
}

impl Daemon {
    fn start(bed: &Bed, bin: &Path, config: &Path) -> Res<Daemon> {
        let started = Instant::now();
        let mut child = bed
            .storekeeper(bin, config, &["run", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = mpsc::channel();
        let verbose = knob("BENCH_VERBOSE", 0) == 1;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("addr=").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
                if verbose || line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("  daemon: {line}");
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| "the daemon did not report its HTTP address".to_string())?;
        Ok(Daemon { child, addr, started })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn metrics(&self) -> String {
        http(&self.addr, "GET", "/metrics", &[], b"").1
    }

    /// Completed reconcile cycles (every result) and the duration histogram's sum.
    fn cycles(&self) -> (f64, f64) {
        let m = self.metrics();
        let cycles = m
            .lines()
            .filter(|l| l.starts_with("storekeeper_reconcile_cycles_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        let sum = m
            .lines()
            .find_map(|l| l.strip_prefix("storekeeper_reconcile_duration_seconds_sum "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        (cycles, sum)
    }

    fn ready(&self) -> usize {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix("storekeeper_stores{phase=\"Ready\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as usize
    }

    /// Waits until more than `after` cycles completed.
    fn wait_cycles(&self, after: f64, limit: Duration) -> Res<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.cycles().0 > after {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("no cycle completed within {limit:?}"))
    }

    fn stop(mut self) -> Res<()> {
        self.signal_term()?;
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("daemon exited with {status}"))
        }
    }

    fn signal_term(&self) -> Res<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl Drop for Daemon {
    /// A daemon left running after a failed phase is stopped, never orphaned.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.signal_term();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// (user + system) CPU time of a process, in clock ticks, from /proc/<pid>/stat.
fn cpu_ticks(pid: u32) -> Res<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').ok_or("bad stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).and_then(|v| v.parse().ok()).ok_or("utime")?;
    let stime: u64 = f.get(12).and_then(|v| v.parse().ok()).ok_or("stime")?;
    Ok(utime + stime)
}

/// CPU time (user + system, seconds) of this process's waited-for children so far: cutime and
/// cstime, fields 16 and 17 of /proc/self/stat. A child's figure includes its own waited-for
/// children, so a `storekeeper apply` counts with every helm process it ran.
fn children_cpu(tick: f64) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(13)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / tick
}

fn clk_tck() -> f64 {
    sh("getconf", &["CLK_TCK"]).parse::<f64>().unwrap_or(100.0)
}

/// VmHWM and VmRSS of a process, in KiB.
fn memory(pid: u32) -> Res<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let get = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((get("VmHWM:"), get("VmRSS:")))
}

fn http(addr: &str, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    req.push_str("\r\n");
    let _ = s.write_all(req.as_bytes());
    let _ = s.write_all(body);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

fn git(dir: &Path, args: &[&str]) -> Res<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=Bench",
            "-c",
            "user.email=bench@example.com",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .map_err(|e| format!("git: {e}"))?;
    if !out.status.success() {
        return Err(format!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn signature(secret: &[u8], body: &[u8]) -> Res<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|e| e.to_string())?;
    mac.update(body);
    Ok(format!("sha256={}", hex::encode(mac.finalize().into_bytes())))
}

fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    // Nearest rank.
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        f64::NAN
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Waits until a helm invocation at or after `t0` (unix seconds) appears; returns its time.
fn first_helm_after(bed: &Bed, t0: f64, limit: Duration) -> Res<(f64, String)> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some((ts, args)) = bed.helm_calls().into_iter().find(|(ts, _)| *ts >= t0) {
            return Ok((ts, args));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(format!("no helm process within {limit:?}"))
}

// --- the measurements -----------------------------------------------------------------------------

#[derive(Default)]
struct Results {
    rows: Vec<[String; 5]>,
    notes: Vec<String>,
}

impl Results {
    fn row(&mut self, item: &str, what: &str, value: String, target: &str, status: &str) {
        println!("  {item} {what}: {value}");
        self.rows
            .push([item.into(), what.into(), value, target.into(), status.into()]);
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

/// (1) The criterion estimates of benches/plan.rs, if it ran.
fn plan_estimates(r: &mut Results) {
    for n in ["1000", "10000"] {
        let path = target_dir().join(format!("criterion/plan/{n}/new/estimates.json"));
        let mean_ns = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v["mean"]["point_estimate"].as_f64());
        let value = match mean_ns {
            Some(ns) => format!("{:.3} ms (criterion mean)", ns / 1e6),
            None => "not run (cargo bench --bench plan)".into(),
        };
        r.row(
            "1",
            &format!("plan::plan, {n} stores (90% unchanged, 5% changed, 3% new, 2% orphaned)"),
            value,
            "—",
            "",
        );
    }
}

/// (3) 200 new stores: the sequential helm loop, then `storekeeper apply` at 1, 3 and 10.
fn convergence(bin: &Path, m: usize, r: &mut Results) -> Res<()> {
    println!("(3) converging {m} new stores");
    // Baseline: what Helmfile (and a shell loop) does: one `helm upgrade --install` per store,
    // one after the other, through the same wrapper and with the same values storekeeper would pass.
    let bed = Bed::new()?;
    let defaults = storekeeper::spec::SpecDefaults {
        base_domain: "bench.local".into(),
        policy: Default::default(),
    };
    let values_dir = bed.dir.path().join("values");
    std::fs::create_dir_all(&values_dir).map_err(|e| e.to_string())?;
    let mut jobs = Vec::new();
    for i in 0..m {
        let name = format!("b{i:04}");
        let path = PathBuf::from(format!("{name}.toml"));
        let spec = storekeeper::spec::parse_bytes(&path, store_body(i).as_bytes(), &defaults)
            .map_err(|e| e.to_string())?;
        let values = storekeeper::values::values_for(&spec);
        let file = values_dir.join(format!("{name}.json"));
        std::fs::write(&file, values.to_string()).map_err(|e| e.to_string())?;
        jobs.push((name, spec.engine.chart().to_string(), file));
    }
    let tick = clk_tck();
    let cpu0 = children_cpu(tick);
    let start = Instant::now();
    for (name, chart, values) in &jobs {
        let status = Command::new(&bed.wrapper)
            .envs(bed.helm.envs())
            .args(["upgrade", "--install", name])
            .arg(bed.charts.join(chart))
            .args([
                "-n",
                &format!("store-{name}"),
                "--create-namespace",
                "--wait",
                "--timeout",
                "300s",
                "-f",
            ])
            .arg(values)
            .arg("--rollback-on-failure")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("baseline helm upgrade --install {name} failed"));
        }
    }
    let baseline = start.elapsed().as_secs_f64();
    let baseline_cpu = children_cpu(tick) - cpu0;
    let helm_n = bed.helm_count();
    r.row(
        "3",
        &format!("baseline: sequential `helm upgrade --install` ×{m} (Helmfile-style)"),
        format!(
            "{baseline:.1} s ({helm_n} helm processes, {} API requests, {:.0} ms/store; \
             CPU {baseline_cpu:.1} s = {:.0} ms/helm process)",
            bed.api.requests().len(),
            baseline * 1000.0 / m as f64,
            baseline_cpu * 1000.0 / helm_n.max(1) as f64
        ),
        "—",
        "",
    );
    drop(bed);

    for conc in [1usize, 3, 10] {
        let bed = Bed::new()?;
        let stores = bed.stores_dir("stores.d", 0..m, &format!("c{conc}-"))?;
        let config = bed.config(
            "storekeeper.toml",
            &format!("[source]\ndirectory = '{}'", stores.display()),
            conc,
            "1h",
        )?;
        let cpu0 = children_cpu(tick);
        let start = Instant::now();
        let out = bed
            .storekeeper(bin, &config, &["apply"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| e.to_string())?;
        let secs = start.elapsed().as_secs_f64();
        let cpu = children_cpu(tick) - cpu0;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(5).collect();
            return Err(format!("storekeeper apply (concurrency {conc}) failed: {tail:?}"));
        }
        let helm_n = bed.helm_count();
        let requests = bed.api.requests().len();
        let ratio = secs / baseline;
        let (target, status) = if conc == 10 {
            ("≤ 0.3 × baseline", met(ratio <= 0.3))
        } else {
            ("—", "")
        };
        r.row(
            "3",
            &format!("`storekeeper apply`, {m} new stores, max_concurrent {conc}"),
            format!(
                "{secs:.1} s = {ratio:.2} × baseline ({helm_n} helm processes, {requests} API requests; \
                 CPU of apply + its helm processes {cpu:.1} s)"
            ),
            target,
            status,
        );
    }
    Ok(())
}

/// (2), (4), (5 directory) on one daemon converging N stores; then (5 Git) on a second daemon
/// reading the same N stores from a Git remote, against the same (converged) API server.
fn daemon_phases(bin: &Path, n: usize, trials: usize, idle_trials: usize, r: &mut Results) -> Res<()> {
    let bed = Bed::new()?;
    let stores = bed.stores_dir("stores.d", 0..n, "s")?;
    // A long interval: idle cycles are triggered by rewriting a file with identical bytes, and
    // reaction trials can only be started by the file watcher.
    let config = bed.config(
        "storekeeper.toml",
        &format!("[source]\ndirectory = '{}'", stores.display()),
        10,
        "1h",
    )?;
    println!("(4) converging {n} stores with the daemon (max_concurrent 10)");
    let d = Daemon::start(&bed, bin, &config)?;
    let cpu0 = cpu_ticks(d.pid())?;
    d.wait_cycles(0.0, Duration::from_secs(600))?;
    let converge = d.started.elapsed().as_secs_f64();
    let cpu_converge = cpu_ticks(d.pid())?.saturating_sub(cpu0);
    let ready = d.ready();
    let (hwm_converged, _) = memory(d.pid())?;
    let tick = clk_tck();
    r.row(
        "3",
        &format!("daemon converging {n} new stores from start, max_concurrent 10"),
        format!(
            "{converge:.1} s, {ready} Ready, {} helm processes, daemon CPU {:.1} s",
            bed.helm_count(),
            cpu_converge as f64 / tick
        ),
        "—",
        "",
    );
    if ready != n {
        return Err(format!(
            "only {ready} of {n} stores are Ready after the first cycle"
        ));
    }

    // (2) Idle cycles: identical bytes rewritten → watcher → one cycle with nothing to do.
    println!("(2) {idle_trials} idle cycles at {n} stores");
    std::thread::sleep(Duration::from_secs(1));
    let poke = stores.join("s0000.toml");
    // Each trial is a window: from just before the write to 1.5 s after the cycle's first API
    // request. One cycle is expected in it; every figure is divided by the cycles counted, and
    // the count itself is reported (a loop that never sleeps shows up here).
    let (mut cpu_ms, mut wall_ms, mut helm_n, mut reqs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut counted, mut idle_share) = (Vec::new(), Vec::new());
    let mut breakdown: BTreeMap<String, f64> = BTreeMap::new();
    for _ in 0..idle_trials {
        let (c0, s0) = d.cycles();
        let h0 = bed.helm_count();
        bed.api.reset_counters();
        let w0 = Instant::now();
        let t0 = cpu_ticks(d.pid())?;
        std::fs::write(&poke, store_body(0)).map_err(|e| e.to_string())?;
        // The cycle starts after the 200 ms debounce with a LIST of namespaces; give it time to
        // finish without touching the daemon (a /metrics scrape would cost it CPU).
        let start = Instant::now();
        while !bed.api.requests().iter().any(|q| q.path == "/api/v1/namespaces") {
            if start.elapsed() > Duration::from_secs(30) {
                return Err("the idle cycle did not start".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(1500));
        let t1 = cpu_ticks(d.pid())?;
        let window = w0.elapsed().as_secs_f64();
        let requests = bed.api.requests();
        let (c1, s1) = d.cycles();
        let cycles = (c1 - c0).max(1.0);
        counted.push(c1 - c0);
        let cpu = (t1 - t0) as f64 * 1000.0 / tick;
        idle_share.push(cpu / 10.0 / window);
        cpu_ms.push(cpu / cycles);
        wall_ms.push((s1 - s0) * 1000.0 / cycles);
        helm_n.push((bed.helm_count() - h0) as f64 / cycles);
        reqs.push(requests.len() as f64 / cycles);
        for q in requests {
            let coll = if q.path.starts_with("/api/v1/namespaces/") {
                "/api/v1/namespaces/{name}…"
            } else {
                q.path.as_str()
            };
            *breakdown.entry(format!("{} {coll}", q.method)).or_default() += 1.0 / cycles;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let max = |xs: &[f64]| xs.iter().cloned().fold(0.0, f64::max);
    let per: Vec<String> = breakdown
        .iter()
        .map(|(k, v)| format!("{k} ×{:.1}", v / idle_trials as f64))
        .collect();
    let spins = max(&counted) > 1.5;
    r.row(
        "2",
        &format!("idle: cycles completed in a ~1.7 s window after one file event, {n} stores"),
        format!(
            "{:.0} mean, {:.0} max; daemon CPU in the window {:.0} % of one core",
            mean(&counted),
            max(&counted),
            mean(&idle_share)
        ),
        "1",
        met(!spins),
    );
    r.row(
        "2",
        &format!("idle cycle at {n} stores: helm processes started"),
        format!("{:.0} per cycle (max over {idle_trials} windows)", max(&helm_n)),
        "0",
        met(max(&helm_n) == 0.0),
    );
    r.row(
        "2",
        &format!("idle cycle at {n} stores: API requests"),
        format!("{:.1} per cycle ({})", mean(&reqs), per.join(", ")),
        "—",
        "",
    );
    let cpu = mean(&cpu_ms);
    r.row(
        "2",
        &format!("idle cycle at {n} stores: daemon CPU (user+sys, /proc/<pid>/stat delta)"),
        format!(
            "{cpu:.1} ms mean, {:.1} ms max per cycle (tick = {:.0} ms{})",
            max(&cpu_ms),
            1000.0 / tick,
            if spins {
                "; window CPU ÷ cycles counted"
            } else {
                ""
            }
        ),
        "< 50 ms",
        met(cpu < 50.0),
    );
    r.row(
        "2",
        &format!("idle cycle at {n} stores: wall time (reconcile_duration_seconds)"),
        format!("{:.1} ms mean, {:.1} ms max", mean(&wall_ms), max(&wall_ms)),
        "—",
        "",
    );

    // (5) Directory reaction: a new store file → the first helm process.
    println!("(5) {trials} reaction trials, watched directory");
    let mut dir_reaction = Vec::new();
    for t in 0..trials {
        let (c0, _) = d.cycles();
        std::thread::sleep(Duration::from_millis(300));
        let t0 = unix_now();
        std::fs::write(stores.join(format!("r{t:04}.toml")), store_body(t)).map_err(|e| e.to_string())?;
        let (ts, _) = first_helm_after(&bed, t0, Duration::from_secs(60))?;
        dir_reaction.push(ts - t0);
        d.wait_cycles(c0, Duration::from_secs(120))?;
    }
    let p50 = percentile(&dir_reaction, 50.0);
    r.row(
        "5",
        &format!("reaction, watched directory (file written → first helm process), {n} stores"),
        format!(
            "p50 {:.0} ms, p95 {:.0} ms ({trials} trials)",
            p50 * 1000.0,
            percentile(&dir_reaction, 95.0) * 1000.0
        ),
        "p50 ≤ 1 s",
        met(p50 <= 1.0),
    );
    let (hwm, rss) = memory(d.pid())?;
    r.row(
        "4",
        &format!("daemon RSS peak (VmHWM) after converging {n} stores"),
        format!(
            "{:.1} MiB (at convergence: {:.1} MiB)",
            hwm as f64 / 1024.0,
            hwm_converged as f64 / 1024.0
        ),
        "≤ 40 MiB",
        met(hwm as f64 / 1024.0 <= 40.0),
    );
    r.row(
        "4",
        &format!(
            "daemon RSS steady (VmRSS after {} idle + {trials} one-store cycles)",
            idle_trials
        ),
        format!("{:.1} MiB", rss as f64 / 1024.0),
        "≤ 40 MiB",
        met(rss as f64 / 1024.0 <= 40.0),
    );
    d.stop()?;

    // (5) Git: the same stores (plus the reaction stores) in a bare remote, file://, a long poll
    // interval so only the webhook triggers a fetch. Same API server: every store is converged.
    println!("(5) Git source: restart against {n} converged stores, then {trials} webhook trials");
    let remote = bed.dir.path().join("remote.git");
    let work = bed.dir.path().join("work");
    git(
        bed.dir.path(),
        &["init", "-q", "--bare", "-b", "main", &remote.to_string_lossy()],
    )?;
    std::fs::create_dir_all(work.join("stores.d")).map_err(|e| e.to_string())?;
    git(&work, &["init", "-q", "-b", "main"])?;
    git(&work, &["remote", "add", "origin", &remote.to_string_lossy()])?;
    copy_dir(&stores, &work.join("stores.d"))?;
    git(&work, &["add", "-A"])?;
    git(&work, &["commit", "-q", "-m", "stores"])?;
    git(&work, &["push", "-q", "origin", "HEAD:main"])?;
    let secret = bed.dir.path().join("webhook-secret");
    std::fs::write(&secret, "bench-secret\n").map_err(|e| e.to_string())?;
    let state = bed.dir.path().join("git-state");
    let git_config = bed.config(
        "storekeeper-git.toml",
        &format!(
            "[source.git]\nurl = 'file://{}'\nbranch = 'main'\nsubpath = 'stores.d'\npoll_interval = '1h'\n\
             state_dir = '{}'\nwebhook_secret_file = '{}'\n",
            remote.display(),
            state.display(),
            secret.display()
        ),
        10,
        "1h",
    )?;
    let h0 = bed.helm_count();
    let d = Daemon::start(&bed, bin, &git_config)?;
    d.wait_cycles(0.0, Duration::from_secs(600))?;
    let restart = d.started.elapsed().as_secs_f64();
    let status_calls = bed
        .helm_calls()
        .iter()
        .skip(h0)
        .filter(|(_, a)| a.starts_with("status"))
        .count();
    r.row(
        "2",
        &format!(
            "first cycle after a restart with {} converged stores (resync: release state of every store)",
            n + trials
        ),
        format!(
            "{restart:.1} s, {} helm processes ({status_calls} `helm status`)",
            bed.helm_count() - h0
        ),
        "—",
        "",
    );
    let body = br#"{"ref":"refs/heads/main"}"#;
    let sig = signature(b"bench-secret", body)?;
    let (mut total, mut hook) = (Vec::new(), Vec::new());
    let mut last_post: Option<Instant> = None;
    for t in 0..trials {
        let (c0, _) = d.cycles();
        // The webhook allows a burst of 10, then one delivery per 2 s.
        if let Some(last) = last_post
            && t >= 9
        {
            let wait = Duration::from_millis(2100).saturating_sub(last.elapsed());
            std::thread::sleep(wait);
        }
        std::thread::sleep(Duration::from_millis(300));
        let t0 = unix_now();
        let file = format!("stores.d/g{t:04}.toml");
        std::fs::write(work.join(&file), store_body(t)).map_err(|e| e.to_string())?;
        git(&work, &["add", &file])?;
        git(&work, &["commit", "-q", "-m", "store"])?;
        git(&work, &["push", "-q", "origin", "HEAD:main"])?;
        let t_hook = unix_now();
        let headers = [
            ("X-Hub-Signature-256", sig.clone()),
            ("X-GitHub-Delivery", format!("bench-{t}-{}", t_hook)),
            ("Content-Type", "application/json".into()),
        ];
        last_post = Some(Instant::now());
        let (code, _) = http(&d.addr, "POST", "/hooks/git", &headers, body);
        if code != 202 {
            return Err(format!("webhook answered {code}"));
        }
        let (ts, _) = first_helm_after(&bed, t_hook, Duration::from_secs(60))?;
        total.push(ts - t0);
        hook.push(ts - t_hook);
        d.wait_cycles(c0, Duration::from_secs(120))?;
    }
    let p50 = percentile(&total, 50.0);
    r.row(
        "5",
        &format!("reaction, Git (commit + push + webhook → first helm process), {} stores", n + trials),
        format!(
            "p50 {:.0} ms, p95 {:.0} ms; of which webhook → helm p50 {:.0} ms, p95 {:.0} ms ({trials} trials)",
            p50 * 1000.0,
            percentile(&total, 95.0) * 1000.0,
            percentile(&hook, 50.0) * 1000.0,
            percentile(&hook, 95.0) * 1000.0
        ),
        "p50 ≤ 1 s",
        met(p50 <= 1.0),
    );
    d.stop()?;
    Ok(())
}

fn machine() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or("unknown".into(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    vec![
        ("date".into(), sh("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])),
        ("cpu".into(), format!("{model} — nproc {nproc}")),
        ("memory".into(), mem),
        ("kernel".into(), sh("uname", &["-sr"])),
        (
            "helm".into(),
            sh(
                &testbed::tools::helm(4).to_string_lossy(),
                &["version", "--short"],
            ),
        ),
        ("rustc".into(), sh("rustc", &["--version"])),
        ("load average".into(), loadavg()),
    ]
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn run() -> Res<()> {
    let n = knob("BENCH_STORES", 1000);
    let m = knob("BENCH_NEW", 200);
    let trials = knob("BENCH_TRIALS", 20);
    let idle_trials = knob("BENCH_IDLE_TRIALS", 5);
    let bin = std::env::var_os("STOREKEEPER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release/storekeeper"));
    if !bin.is_file() {
        return Err(format!(
            "{} not found: run `cargo build --release` first (scripts/bench does)",
            bin.display()
        ));
    }
    let started = Instant::now();
    let mut machine = machine();
    println!(
        "storekeeper bench harness: {} (stores {n}, new {m}, trials {trials})",
        bin.display()
    );
    let mut r = Results::default();
    plan_estimates(&mut r);
    convergence(&bin, m, &mut r)?;
    daemon_phases(&bin, n, trials, idle_trials, &mut r)?;
    machine.push(("load average at the end".into(), loadavg()));
    let wall = started.elapsed().as_secs_f64();

    let mut out = String::new();
    let _ = writeln!(out, "Machine:\n");
    for (k, v) in &machine {
        let _ = writeln!(out, "- {k}: {v}");
    }
    let _ = writeln!(
        out,
        "- harness wall time: {wall:.0} s (stores {n}, new {m}, reaction trials {trials}, idle cycles {idle_trials})\n"
    );
    let _ = writeln!(out, "| # | measurement | value | target | status |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for row in &r.rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    for note in &r.notes {
        let _ = writeln!(out, "\n{note}");
    }
    println!("\n{out}");
    if knob("BENCH_WRITE", 1) == 1 {
        write_benchmarks_md(&out)?;
        println!("written to BENCHMARKS.md");
    }
    Ok(())
}

const START: &str = "<!-- bench:start -->";
const END: &str = "<!-- bench:end -->";

/// Replaces the text between the markers in BENCHMARKS.md (or appends the block).
fn write_benchmarks_md(block: &str) -> Res<()> {
    let path = root().join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n\n".into());
    let fresh = format!("{START}\n{block}{END}");
    let new = match (old.find(START), old.find(END)) {
        (Some(a), Some(b)) if a < b => format!("{}{fresh}{}", &old[..a], &old[b + END.len()..]),
        _ => format!("{old}\n{fresh}\n"),
    };
    std::fs::write(&path, new).map_err(|e| e.to_string())
}
