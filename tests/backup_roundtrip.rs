//! The store charts' backup and restore scripts (charts/*/files/backup.sh, restore.sh), run for
//! real: a MariaDB and a PostgreSQL server on loopback in a temp directory, restic 0.18 on a local
//! repository, each step in the tool set of the container that runs it (the restic steps under
//! busybox with nothing but restic). Store-shaped data is backed up, everything is dropped, and
//! the restore must give back every table row for row and every file byte for byte.
//!
//! Needs the tools scripts/test-tools installs (MariaDB, PostgreSQL, busybox, restic).

mod backup_support;

use std::path::{Path, PathBuf};

use backup_support::servers::{MariaDb, Postgres};
use backup_support::{
    Image, Noise, Run, Scratch, assert_same_tables, assert_same_tree, mariadb_contents, postgres_contents,
    restic, seed, seed_files, tree,
};

const WOO: &str = "woocommerce-store";
const MEDUSA: &str = "medusa-store";
const REPO_PASSWORD: &str = "repository-password-for-tests";

type Env = Vec<(&'static str, String)>;

fn set(env: &mut Env, key: &'static str, value: impl Into<String>) {
    env.retain(|(k, _)| *k != key);
    env.push((key, value.into()));
}

/// The restic half of every step's environment.
/// The store's volume is `backup/files` in the scratch dir: the backup reads it there (the
/// CronJob mounts it at $BACKUP_ROOT/files) and the round trips restore into it (FILES_DIR).
fn restic_env(s: &Scratch, store: &str, url: &str) -> Env {
    vec![
        ("STORE_NAME", store.to_string()),
        ("STORE_URL", url.to_string()),
        ("SOURCE_REVISION", "3f2c1a9".to_string()),
        (
            "RESTIC_REPOSITORY",
            s.dir.path().join("repo").display().to_string(),
        ),
        ("RESTIC_PASSWORD", REPO_PASSWORD.to_string()),
        ("BACKUP_ROOT", s.path("backup").display().to_string()),
        (
            "RESTORE_WORK",
            s.path(&format!("restore-{store}")).display().to_string(),
        ),
        ("KEEP_DAILY", "7".to_string()),
        ("KEEP_WEEKLY", "4".to_string()),
        ("KEEP_MONTHLY", "6".to_string()),
        ("RESTIC_LOCK_WAIT", "5s".to_string()),
        ("WAIT_SECONDS", "20".to_string()),
    ]
}

fn woo_env(s: &Scratch, db: &MariaDb, database: &str, store: &str, url: &str, files: &Path) -> Env {
    let mut env = restic_env(s, store, url);
    env.extend([
        ("DB_HOST", "127.0.0.1".to_string()),
        ("DB_PORT", db.port.to_string()),
        ("DB_NAME", database.to_string()),
        ("DB_USER", "wp".to_string()),
        ("DB_PASSWORD", "wp 'secret\" pass".to_string()),
        ("FILES_DIR", files.display().to_string()),
    ]);
    env
}

fn medusa_env(s: &Scratch, pg: &Postgres, database: &str, store: &str, url: &str, files: &Path) -> Env {
    let mut env = restic_env(s, store, url);
    env.extend([
        ("PGHOST", "127.0.0.1".to_string()),
        ("PGPORT", pg.port.to_string()),
        ("PGDATABASE", database.to_string()),
        ("PGUSER", "medusa".to_string()),
        ("PGPASSWORD", "medusa-secret".to_string()),
        ("FILES_DIR", files.display().to_string()),
    ]);
    env
}

fn step(s: &Scratch, chart: &str, script: &str, step: &str, image: Image, env: &Env) -> Run {
    let run = s.run(chart, script, step, image, env);
    assert_eq!(run.code, Some(0), "{chart} {script} {step}\n{}", run.output);
    run
}

/// The CronJob's two containers: the dump where the database is, the upload in the restic image.
/// Returns the snapshot id.
fn backup(s: &Scratch, chart: &str, env: &Env) -> String {
    step(s, chart, "backup.sh", "dump", Image::Database, env);
    let upload = step(s, chart, "backup.sh", "upload", Image::Restic, env);
    assert_eq!(upload.get("result"), "ok", "{}", upload.output);
    let snapshot = upload.get("snapshot").to_string();
    assert_eq!(snapshot.len(), 64, "{}", upload.output);
    snapshot
}

/// The restore Job's containers in order; returns the last (finish) run.
fn restore(s: &Scratch, chart: &str, env: &Env) -> Run {
    step(s, chart, "restore.sh", "check", Image::Database, env);
    step(s, chart, "restore.sh", "fetch", Image::Restic, env);
    step(s, chart, "restore.sh", "load", Image::Database, env);
    step(s, chart, "restore.sh", "rewrite", Image::Database, env);
    step(s, chart, "restore.sh", "finish", Image::Database, env)
}

fn seed_woo(s: &Scratch, db: &MariaDb, database: &str, url: &str, orders: usize, noise: &mut Noise) {
    let file = s.dir.path().join(format!("{database}.sql"));
    std::fs::write(&file, seed::woocommerce(url, orders, noise)).expect("write seed");
    db.sql_file(&s.tools, database, &file);
}

fn seed_medusa(s: &Scratch, pg: &Postgres, database: &str, url: &str, orders: usize, noise: &mut Noise) {
    let file = s.dir.path().join(format!("{database}.sql"));
    std::fs::write(&file, seed::medusa(url, orders, noise)).expect("write seed");
    // Created as the application role, as Medusa's migrations create them.
    let sql = format!(
        "SET ROLE medusa;\n{}",
        std::fs::read_to_string(&file).expect("read seed")
    );
    std::fs::write(&file, sql).expect("write seed");
    pg.sql_file(database, &file);
}

/// What the official WordPress image copies into a new volume: the restore must replace it.
fn wordpress_defaults(dir: &Path) {
    std::fs::create_dir_all(dir.join("themes/twentytwentyfive")).expect("mkdir");
    std::fs::write(dir.join("index.php"), "<?php // Silence is golden.\n").expect("write");
    std::fs::write(dir.join("themes/twentytwentyfive/style.css"), "/* default */\n").expect("write");
}

fn woo_marker(s: &Scratch, db: &MariaDb, database: &str, key: &str) -> String {
    let q = format!("SELECT v FROM storekeeper_restore WHERE k = '{key}'");
    db.sql(&s.tools, database, &q).trim_end().to_string()
}

#[test]
fn woocommerce_round_trip_gives_back_every_row_and_byte_and_restores_only_once() {
    let s = Scratch::new();
    let db = MariaDb::start(&s.tools, s.dir.path());
    db.create_app(&s.tools, "wordpress", "wp", "wp \\'secret\" pass");
    let url = "http://corner-shop.test";
    let mut noise = Noise::new(14);
    seed_woo(&s, &db, "wordpress", url, 300, &mut noise);
    let content = s.path("backup/files");
    seed_files(&content, &mut noise, 3 << 20);
    let (tables, files) = (mariadb_contents(&s.tools, &db, "wordpress"), tree(&content, &[]));
    let env = woo_env(&s, &db, "wordpress", "corner-shop", url, &content);
    let snapshot = backup(&s, WOO, &env);

    // Drop everything: a new, empty database and a volume with only WordPress's defaults.
    db.sql(&s.tools, "", "DROP DATABASE wordpress; CREATE DATABASE wordpress");
    std::fs::remove_dir_all(&content).expect("wipe wp-content");
    wordpress_defaults(&content);

    // A database that holds a store is never restored over.
    db.sql(
        &s.tools,
        "wordpress",
        "CREATE TABLE wp_options (option_name text); INSERT INTO wp_options VALUES ('live')",
    );
    let refused = s.run(WOO, "restore.sh", "check", Image::Database, &env);
    assert_eq!(refused.code, Some(4), "{}", refused.output);
    assert_eq!(refused.get("reason"), "target_not_empty");
    assert!(
        refused.output.contains("refusing to restore over a live store"),
        "{}",
        refused.output
    );
    assert_eq!(
        db.sql(&s.tools, "wordpress", "SELECT * FROM wp_options"),
        "live\n"
    );
    assert_eq!(
        db.sql(&s.tools, "wordpress", "SHOW TABLES"),
        "wp_options\n",
        "a refused restore writes nothing"
    );
    db.sql(&s.tools, "wordpress", "DROP TABLE wp_options");

    let finish = restore(&s, WOO, &env);
    assert_eq!(
        (finish.get("result"), finish.get("snapshot")),
        ("restored", snapshot.as_str())
    );
    assert_same_tables(&tables, &mariadb_contents(&s.tools, &db, "wordpress"));
    assert_same_tree(&files, &tree(&content, &[]));
    assert_eq!(woo_marker(&s, &db, "wordpress", "state"), "done");
    assert_eq!(woo_marker(&s, &db, "wordpress", "snapshot"), snapshot);
    assert_eq!(woo_marker(&s, &db, "wordpress", "source_store"), "corner-shop");

    // An upgrade runs the restore again: it is a no-op, and an order taken since survives.
    db.sql(
        &s.tools,
        "wordpress",
        "INSERT INTO wp_wc_orders (id, status) VALUES (99999, 'wc-processing')",
    );
    let check = step(&s, WOO, "restore.sh", "check", Image::Database, &env);
    assert_eq!(
        (check.get("result"), check.get("reason")),
        ("skipped", "already_restored")
    );
    let again = restore(&s, WOO, &env);
    assert!(again.output.contains("nothing to finish"), "{}", again.output);
    assert_eq!(
        db.sql(
            &s.tools,
            "wordpress",
            "SELECT status FROM wp_wc_orders WHERE id = 99999"
        ),
        "wc-processing\n"
    );
    assert_same_tree(&files, &tree(&content, &[]));
}

/// A `wp` stand-in (the wordpress:cli image is not installable here): records its arguments.
fn fake_wp(s: &Scratch) -> (PathBuf, PathBuf) {
    let bin = s.path("fake-bin");
    let log = s.dir.path().join("wp.log");
    let script = format!(
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >>'{}'\necho '--' >>'{}'\n",
        log.display(),
        log.display()
    );
    std::fs::write(bin.join("wp"), script).expect("write fake wp");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("wp"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (bin, log)
}

#[test]
fn woocommerce_clone_into_another_store_rewrites_the_url_with_wp_search_replace() {
    let s = Scratch::new();
    let db = MariaDb::start(&s.tools, s.dir.path());
    db.create_app(&s.tools, "wordpress", "wp", "wp \\'secret\" pass");
    db.create_app(&s.tools, "staging", "wp", "wp \\'secret\" pass");
    let url = "http://corner-shop.test";
    let mut noise = Noise::new(41);
    seed_woo(&s, &db, "wordpress", url, 40, &mut noise);
    let content = s.path("backup/files");
    seed_files(&content, &mut noise, 256 << 10);
    let source = woo_env(&s, &db, "wordpress", "corner-shop", url, &content);
    let snapshot = backup(&s, WOO, &source);

    // The clone: another store, database and volume; the snapshot named by a short id.
    let staging = s.path("staging-html/wp-content");
    wordpress_defaults(&staging);
    std::fs::write(s.path("staging-html").join("wp-config.php"), "<?php\n").expect("wp-config");
    let mut env = woo_env(
        &s,
        &db,
        "staging",
        "corner-shop-staging",
        "https://staging.corner-shop.test",
        &staging,
    );
    set(&mut env, "RESTORE_FROM_STORE", "corner-shop");
    set(&mut env, "RESTORE_SNAPSHOT", &snapshot[..8]);
    set(&mut env, "WP_PATH", s.path("staging-html").display().to_string());
    step(&s, WOO, "restore.sh", "check", Image::Database, &env);
    step(&s, WOO, "restore.sh", "fetch", Image::Restic, &env);
    step(&s, WOO, "restore.sh", "load", Image::Database, &env);
    let (bin, log) = fake_wp(&s);
    let mut rewrite_env = env.clone();
    set(
        &mut rewrite_env,
        "PATH",
        format!("{}:/usr/bin:/bin", bin.display()),
    );
    step(&s, WOO, "restore.sh", "rewrite", Image::Database, &rewrite_env);
    let finish = step(&s, WOO, "restore.sh", "finish", Image::Database, &env);

    assert_eq!(finish.get("snapshot"), snapshot);
    let calls = std::fs::read_to_string(&log).expect("wp was called");
    let expected = |from: &str| {
        format!(
            "--path={}\n--no-color\nsearch-replace\n{from}\nhttps://staging.corner-shop.test\n--all-tables-with-prefix\n\
             --skip-columns=guid\n--skip-plugins\n--skip-themes\n--report-changed-only\n--\n",
            s.dir.path().join("staging-html").display()
        )
    };
    assert_eq!(calls, expected(url) + &expected("https://corner-shop.test"));
    assert_same_tables(
        &mariadb_contents(&s.tools, &db, "wordpress"),
        &mariadb_contents(&s.tools, &db, "staging"),
    );
    assert_same_tree(&tree(&content, &[]), &tree(&staging, &[]));
    assert_eq!(woo_marker(&s, &db, "staging", "source_store"), "corner-shop");
    assert_eq!(woo_marker(&s, &db, "staging", "source_url"), url);
    assert_eq!(
        woo_marker(&s, &db, "staging", "target_url"),
        "https://staging.corner-shop.test"
    );
}

fn lost_and_found(dir: &Path, content: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir.join("lost+found")).expect("mkdir lost+found");
    std::fs::write(dir.join("lost+found/#1234"), content).expect("write");
    std::fs::set_permissions(dir.join("lost+found"), std::fs::Permissions::from_mode(0o700)).expect("chmod");
}

#[test]
fn medusa_round_trip_gives_back_every_row_and_byte_and_a_clone_gets_its_own_urls() {
    let s = Scratch::new();
    let pg = Postgres::start(&s.tools, s.dir.path());
    pg.create_app("medusa", "medusa", "medusa-secret");
    let url = "https://city-bikes.test";
    let mut noise = Noise::new(7);
    seed_medusa(&s, &pg, "medusa", url, 300, &mut noise);
    let uploads = s.path("backup/files");
    seed_files(&uploads, &mut noise, 2 << 20);
    lost_and_found(&uploads, "source volume");
    let (tables, files) = (
        postgres_contents(&s.tools, &pg, "medusa"),
        tree(&uploads, &["lost+found"]),
    );
    let env = medusa_env(&s, &pg, "medusa", "city-bikes", url, &uploads);
    let snapshot = backup(&s, MEDUSA, &env);
    let listed = restic(
        &s.tools,
        &s.dir.path().join("repo"),
        REPO_PASSWORD,
        &["ls", &snapshot],
    );
    assert!(
        !listed.contains("lost+found"),
        "a volume's lost+found is not backed up:\n{listed}"
    );

    // Drop everything; the new volume has a lost+found of its own, which must stay untouched.
    pg.sql("postgres", "DROP DATABASE medusa");
    pg.sql("postgres", "CREATE DATABASE medusa OWNER medusa");
    std::fs::remove_dir_all(&uploads).expect("wipe uploads");
    std::fs::create_dir_all(&uploads).expect("mkdir uploads");
    lost_and_found(&uploads, "target volume");
    let finish = restore(&s, MEDUSA, &env);
    assert_eq!(
        (finish.get("result"), finish.get("snapshot")),
        ("restored", snapshot.as_str())
    );
    assert_same_tables(&tables, &postgres_contents(&s.tools, &pg, "medusa"));
    assert_same_tree(&files, &tree(&uploads, &["lost+found"]));
    assert_eq!(
        std::fs::read_to_string(uploads.join("lost+found/#1234")).expect("kept"),
        "target volume"
    );

    // A clone for staging: its own database and URL; every stored URL follows, nothing else moves.
    pg.sql("postgres", "CREATE DATABASE staging OWNER medusa");
    let staging = s.path("staging-uploads");
    let mut clone = medusa_env(
        &s,
        &pg,
        "staging",
        "city-bikes-staging",
        "http://staging.city-bikes.test",
        &staging,
    );
    set(&mut clone, "RESTORE_FROM_STORE", "city-bikes");
    let finish = restore(&s, MEDUSA, &clone);
    assert_eq!(finish.get("snapshot"), snapshot);
    let rewritten: std::collections::BTreeMap<String, String> = tables
        .iter()
        .map(|(t, rows)| (t.clone(), rows.replace(url, "http://staging.city-bikes.test")))
        .collect();
    assert!(
        rewritten["image"] != tables["image"],
        "the seed holds URLs to rewrite"
    );
    assert_same_tables(&rewritten, &postgres_contents(&s.tools, &pg, "staging"));
    assert_same_tree(&files, &tree(&staging, &[]));
    let marker = pg.sql(
        "staging",
        "SELECT key || '=' || value FROM storekeeper_restore ORDER BY key",
    );
    assert!(
        marker.contains("source_store=city-bikes\n") && marker.contains("state=done\n"),
        "{marker}"
    );
}

/// Restic's snapshots of the repository, as "YYYY-MM-DD HH:MM" in UTC, oldest first.
fn snapshot_times(s: &Scratch) -> Vec<String> {
    let json = restic(
        &s.tools,
        &s.dir.path().join("repo"),
        REPO_PASSWORD,
        &["snapshots", "--json"],
    );
    let list: Vec<serde_json::Value> = serde_json::from_str(&json).expect("restic snapshots --json");
    let mut times: Vec<String> = list
        .iter()
        .map(|snap| {
            let time = snap["time"].as_str().expect("time");
            format!("{} {}", &time[..10], &time[11..16])
        })
        .collect();
    times.sort();
    times
}

#[test]
fn retention_after_backups_on_simulated_days_keeps_exactly_the_configured_snapshots() {
    let s = Scratch::new();
    let pg = Postgres::start(&s.tools, s.dir.path());
    pg.create_app("medusa", "medusa", "medusa-secret");
    seed_medusa(
        &s,
        &pg,
        "medusa",
        "https://city-bikes.test",
        10,
        &mut Noise::new(3),
    );
    let uploads = s.path("backup/files");
    std::fs::write(uploads.join("logo.png"), Noise::new(5).bytes(2048)).expect("write");
    let mut env = medusa_env(
        &s,
        &pg,
        "medusa",
        "city-bikes",
        "https://city-bikes.test",
        &uploads,
    );
    for (key, value) in [("KEEP_DAILY", "2"), ("KEEP_WEEKLY", "2"), ("KEEP_MONTHLY", "2")] {
        set(&mut env, key, value);
    }
    step(&s, MEDUSA, "backup.sh", "dump", Image::Database, &env);
    // Thursday 2026-02-26 is in ISO week 9 (from Monday 02-23), 02-20 in week 8.
    let days = [
        "2026-01-10 03:00",
        "2026-01-28 03:00",
        "2026-02-11 03:00",
        "2026-02-20 03:00",
        "2026-02-24 03:00",
        "2026-02-25 03:00",
        "2026-02-26 03:00",
        "2026-02-26 15:00",
    ];
    for day in days {
        set(&mut env, "BACKUP_TIME", format!("{day}:00"));
        step(&s, MEDUSA, "backup.sh", "upload", Image::Restic, &env);
    }
    // daily 2: the last of 02-26 and of 02-25; weekly 2: the last of week 9 (02-26 15:00) and of
    // week 8 (02-20); monthly 2: the last of February (02-26 15:00) and of January (01-28).
    assert_eq!(
        snapshot_times(&s),
        [
            "2026-01-28 03:00",
            "2026-02-20 03:00",
            "2026-02-25 03:00",
            "2026-02-26 15:00"
        ]
    );
}

#[test]
fn failing_backups_and_restores_exit_non_zero_with_a_clear_reason() {
    let s = Scratch::new();
    let pg = Postgres::start(&s.tools, s.dir.path());
    pg.create_app("medusa", "medusa", "medusa-secret");
    seed_medusa(
        &s,
        &pg,
        "medusa",
        "https://city-bikes.test",
        5,
        &mut Noise::new(9),
    );
    let uploads = s.path("backup/files");
    let env = medusa_env(
        &s,
        &pg,
        "medusa",
        "city-bikes",
        "https://city-bikes.test",
        &uploads,
    );
    let fails = |env: &Env, script: &str, which: &str, image: Image, code: i32, reason: &str, says: &str| {
        let run = s.run(MEDUSA, script, which, image, env);
        assert_eq!(
            (run.code, run.get("reason")),
            (Some(code), reason),
            "{}",
            run.output
        );
        assert!(run.output.contains(says), "expected {says:?} in:\n{}", run.output);
    };

    let mut bad = env.clone();
    set(&mut bad, "PGPASSWORD", "wrong");
    fails(
        &bad,
        "backup.sh",
        "dump",
        Image::Database,
        1,
        "dump_failed",
        "password authentication failed",
    );
    assert!(
        !s.dir.path().join("backup/db/storekeeper.meta").exists(),
        "no dump is left behind"
    );
    fails(
        &env,
        "backup.sh",
        "upload",
        Image::Restic,
        1,
        "dump_missing",
        "did the dump step run?",
    );
    set(&mut bad, "STORE_NAME", "Corner Shop; rm -rf /");
    fails(
        &bad,
        "backup.sh",
        "dump",
        Image::Database,
        2,
        "invalid_input",
        "STORE_NAME is invalid",
    );

    backup(&s, MEDUSA, &env);
    let config = std::fs::read(s.dir.path().join("repo/config")).expect("repository config");
    // Unreachable: restic would retry for 15 minutes; the probe gives up after RESTIC_PROBE_TIMEOUT.
    let mut bad = env.clone();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    set(
        &mut bad,
        "RESTIC_REPOSITORY",
        format!("rest:http://127.0.0.1:{closed}/city-bikes"),
    );
    set(&mut bad, "RESTIC_PROBE_TIMEOUT", "3");
    fails(
        &bad,
        "backup.sh",
        "upload",
        Image::Restic,
        8,
        "repository_unreachable",
        "did not answer within 3s",
    );
    // A wrong password is reported as such and never answered with an init.
    let mut bad = env.clone();
    set(&mut bad, "RESTIC_PASSWORD", "not-the-password");
    fails(
        &bad,
        "backup.sh",
        "upload",
        Image::Restic,
        6,
        "wrong_password",
        "wrong password",
    );
    assert_eq!(
        std::fs::read(s.dir.path().join("repo/config")).expect("config"),
        config
    );

    // Restores: no repository (none is created), no such snapshot.
    let mut bad = env.clone();
    set(
        &mut bad,
        "RESTIC_REPOSITORY",
        s.dir.path().join("no-repo").display().to_string(),
    );
    std::fs::write(s.path("restore-city-bikes").join("decision"), "fresh\n").expect("decision");
    std::fs::write(s.path("restore-city-bikes").join("source_store"), "city-bikes\n").expect("source");
    fails(
        &bad,
        "restore.sh",
        "fetch",
        Image::Restic,
        7,
        "repository_missing",
        "there is no repository",
    );
    assert!(
        !s.dir.path().join("no-repo").exists(),
        "a restore never initialises a repository"
    );
    let mut bad = env.clone();
    set(&mut bad, "RESTORE_SNAPSHOT", "0123abcd");
    fails(
        &bad,
        "restore.sh",
        "fetch",
        Image::Restic,
        7,
        "snapshot_missing",
        "no snapshot 0123abcd",
    );
}

#[test]
fn a_locked_repository_keeps_the_new_snapshot_and_reports_that_retention_waited_in_vain() {
    let s = Scratch::new();
    let pg = Postgres::start(&s.tools, s.dir.path());
    pg.create_app("medusa", "medusa", "medusa-secret");
    seed_medusa(
        &s,
        &pg,
        "medusa",
        "https://city-bikes.test",
        5,
        &mut Noise::new(11),
    );
    let uploads = s.path("backup/files");
    let env = medusa_env(
        &s,
        &pg,
        "medusa",
        "city-bikes",
        "https://city-bikes.test",
        &uploads,
    );
    backup(&s, MEDUSA, &env);

    // Another restic (on this host, alive) holds a shared lock while it reads stdin: backups may
    // run beside it, `forget --prune` needs the repository to itself.
    let repo = s.dir.path().join("repo");
    let mut holder = std::process::Command::new(&s.tools.restic)
        .args(["backup", "--stdin", "--stdin-filename", "held", "--host", "other"])
        .env("RESTIC_REPOSITORY", &repo)
        .env("RESTIC_PASSWORD", REPO_PASSWORD)
        .env("RESTIC_CACHE_DIR", s.path("holder-cache"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the lock holder");
    let locks = repo.join("locks");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_dir(&locks).map(|d| d.count()).unwrap_or(0) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the holder never locked the repository"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut env2 = env.clone();
    set(&mut env2, "RESTIC_LOCK_WAIT", "2s");
    let run = s.run(MEDUSA, "backup.sh", "upload", Image::Restic, &env2);
    drop(holder.stdin.take());
    let _ = holder.wait();
    assert_eq!(
        (run.code, run.get("reason")),
        (Some(9), "repository_locked"),
        "{}",
        run.output
    );
    assert!(
        run.output.contains("is saved, but applying retention failed"),
        "{}",
        run.output
    );
    let saved = run.get("snapshot");
    let listed = restic(
        &s.tools,
        &repo,
        REPO_PASSWORD,
        &["snapshots", "--json", "--host", "city-bikes"],
    );
    assert!(
        listed.contains(saved),
        "the snapshot of the locked run is in the repository"
    );
    // The lock is gone with its holder: the next backup applies retention again.
    backup(&s, MEDUSA, &env);
}

#[test]
fn an_unreadable_file_gives_an_incomplete_snapshot_and_no_retention() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    // The upload step on its own, as the restic container's unprivileged uid (33 in the chart).
    let user = backup_support::servers::server_user("nobody");
    let root = s.path("backup");
    let meta = "format=1\nengine=medusa\nstore=city-bikes\nurl=https://city-bikes.test\nrevision=x\n\
                dump=database.pgdump\nfiles=yes\ncreated=2026-02-01T00:00:00Z\n";
    std::fs::write(s.path("backup/db").join("storekeeper.meta"), meta).expect("meta");
    std::fs::write(root.join("db/database.pgdump"), Noise::new(1).bytes(4096)).expect("dump");
    std::fs::write(s.path("backup/files").join("logo.png"), Noise::new(2).bytes(4096)).expect("file");
    let mut env = restic_env(&s, "city-bikes", "https://city-bikes.test");
    for (key, value) in [("KEEP_DAILY", "1"), ("KEEP_WEEKLY", "0"), ("KEEP_MONTHLY", "0")] {
        set(&mut env, key, value);
    }
    let repo = s.path("repo");
    if let Some((uid, gid)) = user {
        backup_support::chown_tree(&root, uid, gid);
        backup_support::chown_tree(&repo, uid, gid);
    }
    let upload = |env: &Env| s.run_as(MEDUSA, "backup.sh", "upload", Image::Restic, env, user);
    for time in ["2026-02-01 01:00:00", "2026-02-01 02:00:00"] {
        set(&mut env, "BACKUP_TIME", time);
        let run = upload(&env);
        assert_eq!(run.code, Some(0), "{}", run.output);
    }
    // keep_daily 1 kept one of the two snapshots of that day.
    assert_eq!(snapshot_times(&s), ["2026-02-01 02:00"]);

    let secret = root.join("files/orders-export.csv");
    std::fs::write(&secret, "unreadable").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    set(&mut env, "BACKUP_TIME", "2026-02-01 03:00:00");
    let run = upload(&env);
    assert_eq!(
        (run.code, run.get("result")),
        (Some(3), "incomplete"),
        "{}",
        run.output
    );
    assert!(
        run.output.contains("orders-export.csv"),
        "the unreadable file is named:\n{}",
        run.output
    );
    assert_eq!(run.get("snapshot").len(), 64, "{}", run.output);
    // The incomplete snapshot is kept, and retention did not run: the complete one is still there.
    assert_eq!(snapshot_times(&s), ["2026-02-01 02:00", "2026-02-01 03:00"]);
}

#[test]
fn both_charts_ship_the_same_backup_library() {
    let lib = |chart: &str| {
        std::fs::read(
            backup_support::root()
                .join("charts")
                .join(chart)
                .join("files/backup-lib.sh"),
        )
    };
    assert!(
        lib(WOO).expect("woocommerce backup-lib.sh") == lib(MEDUSA).expect("medusa backup-lib.sh"),
        "charts/*/files/backup-lib.sh must stay identical: copy one over the other"
    );
}
