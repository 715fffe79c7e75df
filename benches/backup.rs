//! What a backup costs in time, and a restore: the charts' real scripts (as their containers run
//! them) against a real MariaDB and a local restic repository, for a WooCommerce store with
//! BACKUP_BENCH_ORDERS orders (2,000) and uploads of several sizes. A final backup before a deletion is the `warm` case when
//! the store has had a scheduled backup before (the usual case) and the `cold` one when it has not.
//!
//!   cargo bench --bench backup         (BACKUP_BENCH_MB="10 100", BACKUP_BENCH_ORDERS=2000 by default)
//!
//! Needs the tools scripts/test-tools installs. The repository is on the local disk: with a remote
//! one, add the upload time of the new data (cold: all of it; warm: only what changed).

#[path = "../tests/backup_support/mod.rs"]
mod backup_support;

use std::time::Instant;

use backup_support::servers::MariaDb;
use backup_support::{Image, Noise, Scratch, seed, seed_files};

type Env = Vec<(&'static str, String)>;

fn env(s: &Scratch, db: &MariaDb) -> Env {
    vec![
        ("STORE_NAME", "bench-shop".to_string()),
        ("STORE_URL", "http://bench-shop.test".to_string()),
        (
            "RESTIC_REPOSITORY",
            s.dir.path().join("repo").display().to_string(),
        ),
        ("RESTIC_PASSWORD", "bench".to_string()),
        ("BACKUP_ROOT", s.path("backup").display().to_string()),
        ("RESTORE_WORK", s.path("restore").display().to_string()),
        ("FILES_DIR", s.path("backup/files").display().to_string()),
        ("KEEP_DAILY", "7".to_string()),
        ("DB_HOST", "127.0.0.1".to_string()),
        ("DB_PORT", db.port.to_string()),
        ("DB_NAME", "wordpress".to_string()),
        ("DB_USER", "wp".to_string()),
        ("DB_PASSWORD", "bench-password".to_string()),
    ]
}

/// Runs steps in order and returns the seconds they took together.
fn timed(s: &Scratch, script: &str, steps: &[(&str, Image)], env: &Env) -> f64 {
    let start = Instant::now();
    for (step, image) in steps {
        let run = s.run("woocommerce-store", script, step, *image, env);
        assert_eq!(run.code, Some(0), "{script} {step}\n{}", run.output);
    }
    start.elapsed().as_secs_f64()
}

const BACKUP: [(&str, Image); 2] = [("dump", Image::Database), ("upload", Image::Restic)];
const RESTORE: [(&str, Image); 5] = [
    ("check", Image::Database),
    ("fetch", Image::Restic),
    ("load", Image::Database),
    ("rewrite", Image::Database),
    ("finish", Image::Database),
];

fn one_size(mb: usize, orders: usize) -> String {
    let s = Scratch::new();
    let db = MariaDb::start(&s.tools, s.dir.path());
    db.create_app(&s.tools, "wordpress", "wp", "bench-password");
    let mut noise = Noise::new(mb as u64);
    let seed_file = s.dir.path().join("seed.sql");
    std::fs::write(
        &seed_file,
        seed::woocommerce("http://bench-shop.test", orders, &mut noise),
    )
    .expect("seed");
    db.sql_file(&s.tools, "wordpress", &seed_file);
    let files = s.path("backup/files");
    let bytes = seed_files(&files, &mut noise, mb << 20);
    let env = env(&s, &db);

    let cold = timed(&s, "backup.sh", &BACKUP, &env);
    // A day later: one more order and one more 1 MB upload.
    db.sql(
        &s.tools,
        "wordpress",
        "INSERT INTO wp_wc_orders (id, status) VALUES (999999, 'wc-processing')",
    );
    std::fs::write(files.join("uploads/2026/12/new.jpg"), noise.bytes(1 << 20)).expect("new upload");
    let warm = timed(&s, "backup.sh", &BACKUP, &env);
    let dump = std::fs::metadata(s.dir.path().join("backup/db/database.sql"))
        .expect("dump")
        .len();

    db.sql(&s.tools, "", "DROP DATABASE wordpress; CREATE DATABASE wordpress");
    std::fs::remove_dir_all(&files).expect("wipe");
    std::fs::create_dir_all(&files).expect("mkdir");
    let restore = timed(&s, "restore.sh", &RESTORE, &env);
    format!(
        "| {orders} orders ({:.1} MB dump) + {:.0} MB uploads | {cold:.1} s | {warm:.1} s | {restore:.1} s |",
        dump as f64 / 1e6,
        bytes as f64 / 1e6,
    )
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let sizes: Vec<usize> = std::env::var("BACKUP_BENCH_MB")
        .unwrap_or_else(|_| "10 100".to_string())
        .split_whitespace()
        .map(|v| v.parse().expect("BACKUP_BENCH_MB: sizes in MB"))
        .collect();
    let orders = std::env::var("BACKUP_BENCH_ORDERS")
        .map(|v| v.parse().expect("BACKUP_BENCH_ORDERS: a number"))
        .unwrap_or(2000);
    println!("| store | backup, cold (first) | backup, warm (incremental) | restore |");
    println!("|---|---|---|---|");
    for mb in sizes {
        println!("{}", one_size(mb, orders));
    }
}
