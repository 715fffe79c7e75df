//! The harness's test bed: the test API server with its helm environment, the tiny chart as both
//! store charts, a helm wrapper that logs each invocation, and a running `storekeeper` daemon with
//! its metrics, CPU and memory read from /proc.

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

pub type Res<T> = Result<T, String>;

pub fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn set_exec(path: &Path) -> Res<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())
}

pub fn copy_dir(from: &Path, to: &Path) -> Res<()> {
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

pub fn store_body(i: usize) -> String {
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
pub struct Bed {
    pub api: TestApi,
    pub helm: HelmEnv,
    pub dir: tempfile::TempDir,
    pub charts: PathBuf,
    pub wrapper: PathBuf,
    pub log: PathBuf,
    /// With [`Bed::with_cpu_log`]: a directory with one `times` output per helm process.
    pub cpu_log: Option<PathBuf>,
}

impl Bed {
    pub fn new() -> Res<Bed> {
        Bed::build(false)
    }

    /// A bed whose helm wrapper also records each helm process's CPU time (`times` after helm
    /// exits, in a shell that stays its parent): for the convergence floor.
    pub fn with_cpu_log() -> Res<Bed> {
        Bed::build(true)
    }

    fn build(cpu: bool) -> Res<Bed> {
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
        let real = testbed::tools::helm(4);
        let cpu_log = cpu.then(|| dir.path().join("helm-cpu"));
        if let Some(c) = &cpu_log {
            std::fs::create_dir_all(c).map_err(|e| e.to_string())?;
        }
        // `times` must run in the wrapper's own shell (not a pipe's subshell): its second line
        // is the CPU of the shell's children, i.e. this helm process.
        let run = match &cpu_log {
            Some(c) => format!(
                "'{}' \"$@\"\nrc=$?\ntimes > '{}'/$$\nexit $rc\n",
                real.display(),
                c.display()
            ),
            None => format!("exec '{}' \"$@\"\n", real.display()),
        };
        // Each wrapper's PID (helm's, after exec), so that helm processes a killed daemon left
        // behind are ended when the bed is dropped.
        let pids = dir.path().join("helm.pids");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"$(date +%s.%N) $*\" >> '{}'\necho $$ >> '{}'\n{run}",
                log.display(),
                pids.display()
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
            cpu_log,
        })
    }

    /// CPU seconds (user + system) so far of the helm processes (the children line of each
    /// `times` output, `0m0.140s 0m0.030s`) and of the wrapper shells around them (its first
    /// line): the wrapper is the harness's, not storekeeper's.
    pub fn helm_cpu(&self) -> (f64, f64) {
        let Some(dir) = &self.cpu_log else {
            return (0.0, 0.0);
        };
        let secs = |t: &str| -> f64 {
            let t = t.trim_end_matches('s');
            let (m, s) = t.split_once('m').unwrap_or(("0", t));
            m.parse::<f64>().unwrap_or(0.0) * 60.0 + s.parse::<f64>().unwrap_or(0.0)
        };
        let line = |l: Option<&str>| l.map_or(0.0, |l| l.split_whitespace().map(secs).sum::<f64>());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return (0.0, 0.0);
        };
        entries
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .fold((0.0, 0.0), |(h, w), t| {
                let mut lines = t.lines();
                let shell = line(lines.next());
                (h + line(lines.next()), w + shell)
            })
    }

    /// Every helm invocation so far: (unix time, arguments).
    pub fn helm_calls(&self) -> Vec<(f64, String)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (ts, args) = l.split_once(' ')?;
                Some((ts.parse().ok()?, args.to_string()))
            })
            .collect()
    }

    pub fn helm_count(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Writes storekeeper.toml for this bed.
    pub fn config(&self, name: &str, source: &str, max_concurrent: usize, interval: &str) -> Res<PathBuf> {
        self.config_with(name, source, max_concurrent, interval, "")
    }

    /// [`Bed::config`] with extra `[reconcile]` lines.
    pub fn config_with(
        &self,
        name: &str,
        source: &str,
        max_concurrent: usize,
        interval: &str,
        reconcile: &str,
    ) -> Res<PathBuf> {
        let path = self.dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "{source}\n[cluster]\nkubeconfig = '{}'\nbase_domain = 'bench.local'\n\
                 [helm]\nbinary = '{}'\ncharts_dir = '{}'\ntimeout = '5m'\nmax_concurrent = {max_concurrent}\n\
                 [reconcile]\ninterval = '{interval}'\nresync_interval = '1h'\nmax_deletions = 1\ndeletion_grace = '0s'\n{reconcile}\n{}",
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

    pub fn storekeeper(&self, bin: &Path, config: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .arg("--config")
            .arg(config)
            .current_dir(self.dir.path())
            .envs(self.helm.envs())
            .env("STOREKEEPER_LOG", "info");
        cmd
    }

    pub fn stores_dir(&self, name: &str, range: std::ops::Range<usize>, prefix: &str) -> Res<PathBuf> {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for i in range {
            std::fs::write(dir.join(format!("{prefix}{i:04}.toml")), store_body(i))
                .map_err(|e| e.to_string())?;
        }
        Ok(dir)
    }
}

impl Drop for Bed {
    /// helm processes still running (a daemon aborted with installs hanging leaves them behind)
    /// are ended, by the PIDs their wrappers recorded, if they are still helm.
    fn drop(&mut self) {
        let pids = std::fs::read_to_string(self.dir.path().join("helm.pids")).unwrap_or_default();
        for pid in pids.split_whitespace() {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*self.charts.to_string_lossy()) {
                let _ = Command::new("kill").args(["-TERM", pid]).status();
            }
        }
    }
}

// --- a running daemon ---------------------------------------------------------------------------

pub struct Daemon {
    pub child: Child,
    pub addr: String,
    pub started: Instant,
}

impl Daemon {
    /// Starts `storekeeper run`. BENCH_WRAP (e.g. `heaptrack -o /tmp/sk`) runs it under a
    /// profiler instead; CPU and memory figures then describe the profiler's process.
    pub fn start(bed: &Bed, bin: &Path, config: &Path) -> Res<Daemon> {
        let started = Instant::now();
        let mut cmd = bed.storekeeper(bin, config, &["run", "--listen", "127.0.0.1:0"]);
        if let Ok(wrap) = std::env::var("BENCH_WRAP") {
            let mut words = wrap.split_whitespace();
            let program = words.next().ok_or("BENCH_WRAP is empty")?;
            let mut wrapped = Command::new(program);
            wrapped.args(words).arg(bin).args(cmd.get_args());
            wrapped
                .current_dir(bed.dir.path())
                .envs(bed.helm.envs())
                .env("STOREKEEPER_LOG", "info");
            cmd = wrapped;
        }
        let mut child = cmd
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn metrics(&self) -> String {
        http(&self.addr, "GET", "/metrics", &[], b"").1
    }

    /// One series' value by its full name with labels; 0 when absent.
    pub fn series(&self, series: &str) -> f64 {
        series_value(&self.metrics(), series)
    }

    /// Plans made (`ok` + `error`), wake-ups that found nothing changed (`unchanged`), and the
    /// plans' summed duration (`reconcile_duration_seconds_sum`).
    pub fn plans(&self) -> (f64, f64, f64) {
        let m = self.metrics();
        let c = |r: &str| {
            series_value(
                &m,
                &format!("storekeeper_reconcile_cycles_total{{result=\"{r}\"}}"),
            )
        };
        let sum = series_value(&m, "storekeeper_reconcile_duration_seconds_sum");
        (c("ok") + c("error"), c("unchanged"), sum)
    }

    pub fn ready(&self) -> usize {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix("storekeeper_stores{phase=\"Ready\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as usize
    }

    /// Waits until more than `after` plans were made.
    pub fn wait_plans(&self, after: f64, limit: Duration) -> Res<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.plans().0 > after {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("no plan completed within {limit:?}"))
    }

    /// Waits until `n` stores are Ready and no operation is queued or running.
    pub fn wait_converged(&self, n: usize, limit: Duration) -> Res<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            let m = self.metrics();
            let busy = series_value(&m, "storekeeper_queue_depth")
                + series_value(&m, "storekeeper_operations_in_flight");
            if busy == 0.0 && series_value(&m, "storekeeper_stores{phase=\"Ready\"}") as usize >= n {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!("{} of {n} stores Ready after {limit:?}", self.ready()))
    }

    /// Two SIGTERMs: the second aborts what is in flight (a phase that leaves installs hanging).
    pub fn abort(mut self) -> Res<()> {
        self.signal_term()?;
        std::thread::sleep(Duration::from_millis(500));
        self.signal_term()?;
        self.child.wait().map_err(|e| e.to_string())?;
        Ok(())
    }

    pub fn stop(mut self) -> Res<()> {
        if std::env::var_os("BENCH_WRAP").is_some() {
            // Under a profiler: SIGKILL the daemon (the profiler's child) so that what is still
            // allocated is recorded as the live heap at the end ("leaked"), then let it finish.
            let pid = self.child.id();
            let children =
                std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            for c in children.split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", c]).status();
            }
            let _ = self.child.wait();
            return Ok(());
        }
        self.signal_term()?;
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("daemon exited with {status}"))
        }
    }

    pub fn signal_term(&self) -> Res<()> {
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

/// One series' value in Prometheus text; 0 when absent.
pub fn series_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// (user + system) CPU time of a process, in clock ticks, from /proc/<pid>/stat.
pub fn cpu_ticks(pid: u32) -> Res<u64> {
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
pub fn children_cpu(tick: f64) -> f64 {
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

pub fn clk_tck() -> f64 {
    sh("getconf", &["CLK_TCK"]).parse::<f64>().unwrap_or(100.0)
}

/// Busy CPU time of the whole machine so far (every process, ours and others'), in seconds:
/// the `cpu` line of /proc/stat without idle and iowait.
pub fn machine_busy(tick: f64) -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| f.get(*i)).sum();
    busy as f64 / tick
}

/// VmHWM and VmRSS of a process, in KiB.
pub fn memory(pid: u32) -> Res<(u64, u64)> {
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

pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
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

pub fn git(dir: &Path, args: &[&str]) -> Res<String> {
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

pub fn signature(secret: &[u8], body: &[u8]) -> Res<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|e| e.to_string())?;
    mac.update(body);
    Ok(format!("sha256={}", hex::encode(mac.finalize().into_bytes())))
}

pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    // Nearest rank.
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        f64::NAN
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}
