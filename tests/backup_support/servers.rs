//! Real MariaDB and PostgreSQL servers for one test: started on a free loopback port in the test's
//! temp directory, as the packages' unprivileged system users when the tests run as root (Debian
//! installs `mysql` and `postgres`), stopped when dropped. Nothing system-wide is touched.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{Tools, show};

/// uid/gid to run a server (or a script) as: the system user `name` when we are root, else
/// ourselves (`None`).
pub fn server_user(name: &str) -> Option<(u32, u32)> {
    let euid = std::fs::metadata("/proc/self").expect("stat /proc/self").uid();
    if euid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let line = passwd
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .unwrap_or_else(|| panic!("no system user {name}: run scripts/test-tools"));
    let fields: Vec<&str> = line.split(':').collect();
    let id = |i: usize| fields[i].parse::<u32>().expect("numeric id in /etc/passwd");
    Some((id(2), id(3)))
}

/// A directory the server user owns (the temp dir above it is made traversable).
fn server_dir(parent: &Path, name: &str, user: Option<(u32, u32)>) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).expect("create server dir");
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown server dir");
    }
    dir
}

/// `program` to be run as `user` (when given).
fn as_user(program: impl AsRef<std::ffi::OsStr>, user: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(program);
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what}\n{}", show(&out));
    out
}

/// Polls `ready` until it holds; panics with `log` when the server died or time ran out.
fn wait_ready(child: &mut Child, log: &Path, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if ready() {
            return true;
        }
        if child.try_wait().expect("poll server").is_some() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("already in use") {
                return false; // another test took the port meanwhile: the caller retries
            }
            panic!("server exited during start-up:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "server not ready after 60s:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

pub struct MariaDb {
    child: Child,
    pub port: u16,
    socket: PathBuf,
}

impl MariaDb {
    pub fn start(tools: &Tools, scratch: &Path) -> MariaDb {
        let user = server_user("mysql");
        let dir = server_dir(scratch, "mariadb", user);
        let data = dir.join("data");
        run_ok(
            as_user(&tools.mariadb_install_db, user)
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
                .stdout(Stdio::null()),
            "mariadb-install-db",
        );
        for _ in 0..3 {
            let port = free_port();
            let socket = dir.join("mysqld.sock");
            let log = dir.join("error.log");
            // The official image's defaults: utf8mb4 everywhere.
            let mut child = as_user(&tools.mariadbd, user)
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
                .arg(format!("--log-error={}", log.display()))
                .arg(format!("--port={port}"))
                .args([
                    "--bind-address=127.0.0.1",
                    "--skip-name-resolve",
                    "--innodb-buffer-pool-size=64M",
                ])
                .args([
                    "--character-set-server=utf8mb4",
                    "--collation-server=utf8mb4_unicode_ci",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start mariadbd");
            let probe = |socket: &Path| {
                Command::new(&tools.mariadb)
                    .args(["--no-defaults", "-uroot"])
                    .arg(format!("--socket={}", socket.display()))
                    .args(["-e", "SELECT 1"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            if wait_ready(&mut child, &log, || probe(&socket)) {
                return MariaDb { child, port, socket };
            }
            let _ = child.wait();
        }
        panic!("mariadbd: no free port after 3 tries");
    }

    /// Runs SQL as root over the socket; returns the tab-separated output (UTF-8).
    pub fn sql(&self, tools: &Tools, database: &str, sql: &str) -> String {
        String::from_utf8(self.sql_bytes(tools, database, sql)).unwrap_or_else(|_| panic!("not UTF-8: {sql}"))
    }

    /// Like `sql`, for output that may hold binary data.
    pub fn sql_bytes(&self, tools: &Tools, database: &str, sql: &str) -> Vec<u8> {
        let mut cmd = Command::new(&tools.mariadb);
        cmd.args(["--no-defaults", "-uroot", "--batch", "--skip-column-names"])
            .arg(format!("--socket={}", self.socket.display()))
            .arg("--default-character-set=utf8mb4");
        if !database.is_empty() {
            cmd.arg(format!("--database={database}"));
        }
        run_ok(
            cmd.args(["-e", sql]),
            &format!("mariadb: {}", &sql[..sql.len().min(200)]),
        )
        .stdout
    }

    /// Runs a SQL file as root (large seeds).
    pub fn sql_file(&self, tools: &Tools, database: &str, file: &Path) {
        let input = std::fs::File::open(file).expect("open seed file");
        run_ok(
            Command::new(&tools.mariadb)
                .args(["--no-defaults", "-uroot", "--default-character-set=utf8mb4"])
                .arg(format!("--socket={}", self.socket.display()))
                .arg(format!("--database={database}"))
                .stdin(input),
            "mariadb < seed",
        );
    }

    /// An application database and a user with all privileges on it (as the official image's
    /// MARIADB_DATABASE/MARIADB_USER create).
    pub fn create_app(&self, tools: &Tools, database: &str, user: &str, password: &str) {
        self.sql(
            tools,
            "",
            &format!(
                "CREATE DATABASE IF NOT EXISTS `{database}`; \
                 CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}'; \
                 GRANT ALL ON `{database}`.* TO '{user}'@'%';"
            ),
        );
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Postgres {
    child: Child,
    pub port: u16,
    socket_dir: PathBuf,
    psql: PathBuf,
}

impl Postgres {
    pub fn start(tools: &Tools, scratch: &Path) -> Postgres {
        let user = server_user("postgres");
        let dir = server_dir(scratch, "postgres", user);
        let data = dir.join("data");
        run_ok(
            as_user(tools.pg_bin.join("initdb"), user)
                .args([
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--no-sync",
                ])
                .args(["-E", "UTF8", "--locale=C.UTF-8", "-D"])
                .arg(&data)
                .stdout(Stdio::null()),
            "initdb",
        );
        for _ in 0..3 {
            let port = free_port();
            let log = dir.join("postgres.log");
            let log_file = std::fs::File::create(&log).expect("create postgres log");
            if let Some((uid, gid)) = user {
                std::os::unix::fs::chown(&log, Some(uid), Some(gid)).expect("chown postgres log");
            }
            let mut child = as_user(tools.pg_bin.join("postgres"), user)
                .arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(&dir)
                .args([
                    "-p",
                    &port.to_string(),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                ])
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .expect("start postgres");
            let psql = tools.pg_bin.join("psql");
            let probe = || {
                Command::new(&psql)
                    .args(["-X", "-h"])
                    .arg(&dir)
                    .args([
                        "-p",
                        &port.to_string(),
                        "-U",
                        "postgres",
                        "-d",
                        "postgres",
                        "-c",
                        "SELECT 1",
                    ])
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            if wait_ready(&mut child, &log, probe) {
                return Postgres {
                    child,
                    port,
                    socket_dir: dir,
                    psql,
                };
            }
            let _ = child.wait();
        }
        panic!("postgres: no free port after 3 tries");
    }

    /// Runs SQL as the superuser over the socket; returns psql's unaligned, header-less output.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        let out = run_ok(
            Command::new(&self.psql)
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-h"])
                .arg(&self.socket_dir)
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    database,
                    "-c",
                    sql,
                ]),
            &format!("psql: {}", &sql[..sql.len().min(200)]),
        );
        String::from_utf8(out.stdout).expect("utf-8 from psql")
    }

    /// Like `sql`, with the SQL from a file (large seeds).
    pub fn sql_file(&self, database: &str, file: &Path) {
        run_ok(
            Command::new(&self.psql)
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-h"])
                .arg(&self.socket_dir)
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    database,
                    "-f",
                ])
                .arg(file),
            "psql -f seed",
        );
    }

    /// A role with a password and a database it owns (as the official image's POSTGRES_USER/DB).
    pub fn create_app(&self, database: &str, user: &str, password: &str) {
        self.sql(
            "postgres",
            &format!("CREATE ROLE {user} LOGIN PASSWORD '{password}'"),
        );
        self.sql("postgres", &format!("CREATE DATABASE {database} OWNER {user}"));
    }

    /// pg_dump of one database (as the superuser), for comparisons.
    pub fn dump(&self, tools: &Tools, database: &str, args: &[&str]) -> String {
        let out = run_ok(
            Command::new(tools.pg_bin.join("pg_dump"))
                .arg("-h")
                .arg(&self.socket_dir)
                .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", database])
                .args(args),
            "pg_dump for comparison",
        );
        String::from_utf8(out.stdout).expect("utf-8 from pg_dump")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown, the postmaster takes its backends down with it.
        let _ = Command::new("kill")
            .arg("-QUIT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
