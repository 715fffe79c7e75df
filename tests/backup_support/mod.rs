//! Harness of tests/backup_roundtrip.rs: the tools scripts/test-tools installs, real database
//! servers (servers.rs), the charts' backup/restore scripts run the way their containers run
//! them, and exact comparisons of database contents and file trees.
#![allow(dead_code)] // not every helper is used by every test

pub mod seed;
pub mod servers;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Copies `file` into `dir` (made 0755), readable and executable by everyone; returns the copy.
fn copy_into(file: &Path, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let to = dir.join(file.file_name().expect("a file name"));
    std::fs::copy(file, &to).expect("copy");
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).expect("chmod copy");
    to
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binaries scripts/test-tools installs; panics with a hint when one is missing.
pub struct Tools {
    pub restic: PathBuf,
    pub busybox: PathBuf,
    pub pg_bin: PathBuf,
    pub mariadbd: PathBuf,
    pub mariadb_install_db: PathBuf,
    pub mariadb: PathBuf,
}

fn need(path: PathBuf) -> PathBuf {
    assert!(
        path.is_file(),
        "{} not found: run scripts/test-tools",
        path.display()
    );
    path
}

impl Tools {
    pub fn find() -> Tools {
        let restic = std::env::var_os("STOREKEEPER_TEST_RESTIC")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join(".tools/restic"));
        // The newest PostgreSQL major installed (Debian keeps each under its own directory).
        let pg_bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .max()
            .map(|v| PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")))
            .unwrap_or_default();
        need(pg_bin.join("initdb"));
        Tools {
            restic: need(restic),
            busybox: need(PathBuf::from("/bin/busybox")),
            pg_bin,
            mariadbd: need(PathBuf::from("/usr/sbin/mariadbd")),
            mariadb_install_db: need(PathBuf::from("/usr/bin/mariadb-install-db")),
            mariadb: need(PathBuf::from("/usr/bin/mariadb")),
        }
    }
}

/// Where a step runs, as in its container: `Database` has the database clients but no restic
/// (the MariaDB/postgres images); `Restic` has only restic and busybox's applets under busybox
/// `sh` (the Alpine restic image), so a step that needs anything else fails here as it would
/// there; `Everything` is for `backup.sh all`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Image {
    Database,
    Restic,
    Everything,
}

/// One test's scratch space: a temp dir, a busybox applet dir and a restic repository.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub tools: Tools,
    applets: PathBuf,
}

/// What a script run did: exit code, output and its RESULT_FILE (key=value lines).
pub struct Run {
    pub code: Option<i32>,
    pub output: String,
    pub result: BTreeMap<String, String>,
}

impl Run {
    pub fn get(&self, key: &str) -> &str {
        self.result.get(key).map(String::as_str).unwrap_or("")
    }
}

impl Scratch {
    pub fn new() -> Scratch {
        let mut tools = Tools::find();
        let dir = tempfile::tempdir().expect("tempdir");
        // Traversable, for the servers and scripts that run as other users.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // The scripts and restic run from copies in here: the checkout (and `.tools`) may sit
        // under a directory other users cannot enter (a `mktemp -d` clone is 0700).
        tools.restic = copy_into(&tools.restic, &dir.path().join("bin"));
        for chart in ["woocommerce-store", "medusa-store"] {
            let files = root().join("charts").join(chart).join("files");
            let to = dir.path().join("charts").join(chart).join("files");
            for entry in std::fs::read_dir(&files).expect("chart files").flatten() {
                copy_into(&entry.path(), &to);
            }
        }
        let applets = dir.path().join("busybox-applets");
        std::fs::create_dir_all(&applets).expect("mkdir applets");
        let list = Command::new(&tools.busybox)
            .arg("--list")
            .output()
            .expect("busybox --list");
        for name in String::from_utf8_lossy(&list.stdout).lines() {
            std::os::unix::fs::symlink(&tools.busybox, applets.join(name)).expect("applet symlink");
        }
        std::os::unix::fs::symlink(&tools.restic, applets.join("restic")).expect("restic symlink");
        Scratch { dir, tools, applets }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(&p).expect("mkdir in scratch");
        p
    }

    /// Runs `charts/<chart>/files/<script> <step>` with exactly `env` (plus PATH, HOME, TZ and a
    /// RESULT_FILE) in the given image's tool set.
    pub fn run(&self, chart: &str, script: &str, step: &str, image: Image, env: &[(&str, String)]) -> Run {
        self.run_as(chart, script, step, image, env, None)
    }

    /// `run` as another uid/gid (the containers run unprivileged); HOME, the restic cache and the
    /// result file are handed to that user.
    pub fn run_as(
        &self,
        chart: &str,
        script: &str,
        step: &str,
        image: Image,
        env: &[(&str, String)],
        user: Option<(u32, u32)>,
    ) -> Run {
        let private = self.path(&format!("as-{}", user.map_or(0, |u| u.0)));
        for dir in ["home", "restic-cache"] {
            std::fs::create_dir_all(private.join(dir)).expect("mkdir");
        }
        if let Some((uid, gid)) = user {
            chown_tree(&private, uid, gid);
        }
        let file = self
            .dir
            .path()
            .join("charts")
            .join(chart)
            .join("files")
            .join(script);
        let system = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        let restic_dir = self
            .tools
            .restic
            .parent()
            .expect("restic dir")
            .display()
            .to_string();
        let (shell, path) = match image {
            Image::Database => (
                PathBuf::from("/bin/sh"),
                format!("{}:{system}", self.tools.pg_bin.display()),
            ),
            Image::Restic => (self.applets.join("sh"), self.applets.display().to_string()),
            Image::Everything => (
                PathBuf::from("/bin/sh"),
                format!("{}:{restic_dir}:{system}", self.tools.pg_bin.display()),
            ),
        };
        let result_file = private.join("result");
        let _ = std::fs::remove_file(&result_file);
        let mut cmd = Command::new(shell);
        cmd.arg(&file)
            .arg(step)
            .env_clear()
            .env("PATH", path)
            .env("HOME", private.join("home"))
            .env("TZ", "UTC")
            .env("RESULT_FILE", &result_file)
            .env("RESTIC_CACHE_DIR", private.join("restic-cache"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        if let Some((uid, gid)) = user {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        let out = cmd.output().expect("run script");
        let result = std::fs::read_to_string(&result_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        Run {
            code: out.status.code(),
            output: show(&out),
            result,
        }
    }
}

/// chown -R (the scratch dir's tree is ours).
pub fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).expect("chown");
    if std::fs::symlink_metadata(path).expect("lstat").is_dir() {
        for entry in std::fs::read_dir(path).expect("read_dir") {
            chown_tree(&entry.expect("entry").path(), uid, gid);
        }
    }
}

/// restic itself on a repository (for assertions about what it holds).
pub fn restic(tools: &Tools, repo: &Path, password: &str, args: &[&str]) -> String {
    let out = Command::new(&tools.restic)
        .args(args)
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", password)
        .env("RESTIC_CACHE_DIR", repo.with_extension("cache"))
        .env("TZ", "UTC")
        .output()
        .expect("run restic");
    assert!(out.status.success(), "restic {args:?}\n{}", show(&out));
    String::from_utf8(out.stdout).expect("utf-8 from restic")
}

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Noise {
        Noise(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 24) as u8).collect()
    }
}

/// One entry of a file tree: kind, permission bits and content (or link target).
#[derive(Debug, PartialEq)]
pub enum Entry {
    Dir(u32),
    File(u32, Vec<u8>),
    Link(PathBuf),
}

/// Every entry under `dir` by relative path, skipping the top-level names in `skip`.
pub fn tree(dir: &Path, skip: &[&str]) -> BTreeMap<PathBuf, Entry> {
    fn walk(base: &Path, dir: &Path, skip: &[&str], out: &mut BTreeMap<PathBuf, Entry>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            let rel = path.strip_prefix(base).expect("relative").to_path_buf();
            if skip.iter().any(|s| rel == Path::new(s)) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                out.insert(rel, Entry::Link(std::fs::read_link(&path).expect("readlink")));
            } else if meta.is_dir() {
                out.insert(rel, Entry::Dir(mode));
                walk(base, &path, skip, out);
            } else {
                out.insert(rel, Entry::File(mode, std::fs::read(&path).expect("read file")));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, skip, &mut out);
    out
}

/// Asserts two trees are equal, naming the first difference (contents are not printed).
pub fn assert_same_tree(want: &BTreeMap<PathBuf, Entry>, got: &BTreeMap<PathBuf, Entry>) {
    for (path, entry) in want {
        match got.get(path) {
            None => panic!("{} missing after restore", path.display()),
            Some(g) if g != entry => panic!("{} differs after restore", path.display()),
            Some(_) => {}
        }
    }
    if let Some(extra) = got.keys().find(|p| !want.contains_key(*p)) {
        panic!("{} exists after restore but not in the original", extra.display());
    }
}

/// A store's files: nested uploads with binary content, an empty file, an empty directory, odd
/// names and a symlink. Returns the total bytes written.
pub fn seed_files(dir: &Path, noise: &mut Noise, binary_bytes: usize) -> usize {
    let mut total = 0;
    let mut write = |rel: &str, data: Vec<u8>, mode: u32| {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        total += data.len();
        std::fs::write(&path, data).expect("write seed file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    let mut left = binary_bytes;
    let mut i = 0;
    while left > 0 {
        let n = left.min(64 * 1024 + (noise.next() % (192 * 1024)) as usize);
        write(
            &format!("uploads/2026/0{}/image-{i}.jpg", 1 + i % 3),
            noise.bytes(n),
            0o644,
        );
        left -= n;
        i += 1;
    }
    write(
        "uploads/2026/01/ünïcødé name with spaces.png",
        noise.bytes(4096),
        0o644,
    );
    write("uploads/empty.txt", Vec::new(), 0o600);
    write(
        "plugins/shop-helper/shop-helper.php",
        b"<?php\n// helper\n".to_vec(),
        0o644,
    );
    write(
        "plugins/shop-helper/run.sh",
        b"#!/bin/sh\necho hi\n".to_vec(),
        0o755,
    );
    std::fs::create_dir_all(dir.join("uploads/2026/12")).expect("empty dir");
    std::os::unix::fs::symlink("2026/01", dir.join("uploads/latest")).expect("symlink");
    total
}

/// Every table of a MariaDB database but the restore marker: its definition (with the
/// AUTO_INCREMENT counter) and all its rows in primary-key order, as the client prints them in
/// batch mode (escaped, so the text is unambiguous).
pub fn mariadb_contents(
    tools: &Tools,
    db: &servers::MariaDb,
    database: &str,
) -> BTreeMap<String, (String, Vec<u8>)> {
    let tables = db.sql(tools, database, "SHOW TABLES");
    let mut out = BTreeMap::new();
    for table in tables.lines().filter(|t| *t != "storekeeper_restore") {
        let create = db.sql(tools, database, &format!("SHOW CREATE TABLE `{table}`"));
        let rows = db.sql_bytes(tools, database, &format!("SELECT * FROM `{table}` ORDER BY 1"));
        out.insert(table.to_string(), (create, rows));
    }
    assert!(
        out.len() >= 5,
        "expected the seeded tables in {database}, found {:?}",
        out.keys()
    );
    out
}

/// A PostgreSQL database's schema (pg_dump --schema-only, without the restore marker) and every
/// table's rows (COPY text format, primary-key order) and every sequence's position.
pub fn postgres_contents(tools: &Tools, pg: &servers::Postgres, database: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let schema = pg.dump(
        tools,
        database,
        &["--schema-only", "--exclude-table=storekeeper_restore"],
    );
    // pg_dump 15.14+ brackets its output with a random \restrict key.
    let schema: Vec<&str> = schema
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect();
    out.insert("schema".to_string(), schema.join("\n"));
    let tables = pg.sql(
        database,
        "SELECT relname, relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE nspname = 'public' AND relkind IN ('r', 'S') AND relname <> 'storekeeper_restore' ORDER BY 1",
    );
    for line in tables.lines() {
        let (name, kind) = line.split_once('|').expect("name|kind");
        let query = if kind == "S" {
            format!("SELECT last_value, is_called FROM \"{name}\"")
        } else {
            format!("COPY (SELECT * FROM \"{name}\" ORDER BY 1) TO STDOUT")
        };
        out.insert(name.to_string(), pg.sql(database, &query));
    }
    assert!(
        out.len() >= 8,
        "expected the seeded tables in {database}, found {:?}",
        out.keys()
    );
    out
}

/// Asserts two table maps are equal, naming the first table that differs.
pub fn assert_same_tables<V: PartialEq>(want: &BTreeMap<String, V>, got: &BTreeMap<String, V>) {
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "the set of tables differs"
    );
    for (table, contents) in want {
        assert!(got[table] == *contents, "table {table} differs after restore");
    }
}
