//! Criterion benchmark of the source read: what a daemon cycle pays to learn that nothing changed,
//! and what a change costs, for a directory and a Git repository of 1,000 and 10,000 store files.
//!
//! Directory (`DirSource::read`), files older than the racy window (as on an idle host):
//! - `dir/idle_watched`: no watcher events, no full re-stat due — the idle cycle's read;
//! - `dir/full_restat`: the safety-net re-stat (a listing and one `lstat` per file);
//! - `dir/one_edit_watched`: one file edited (untimed) and named by the watcher, then the read —
//!   the directory event → snapshot path;
//! - `dir/cold`: `dir::read`, what every cycle cost before the cache.
//!
//! Git (`GitSource::sync` against a `file://` remote, repository already cloned):
//! - `git/unchanged`: a poll or webhook that finds the same commit (a fetch and a ref lookup);
//! - `git/one_changed`: one store file changed in a new commit (pushed untimed), then the sync —
//!   the webhook → snapshot path, warm (`cached`) and after a restart (`cold`: a new `GitSource`
//!   on the same repository, so every blob is parsed).
//!
//! Run: `cargo bench --bench source` (add `-- dir/` or `-- git/` to pick a group).

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use storekeeper::source::dir::{self, DirSource};
use storekeeper::source::git::GitSource;
use storekeeper::source::watch::Changes;
use storekeeper::spec::SpecDefaults;

#[allow(dead_code)]
#[path = "../tests/support/git.rs"]
mod git;

const SIZES: [usize; 2] = [1_000, 10_000];
/// Longer than the directory cache's racy window.
const AGE: Duration = Duration::from_millis(3100);

fn defaults() -> SpecDefaults {
    SpecDefaults {
        base_domain: "bench.local".into(),
        policy: Default::default(),
    }
}

fn body(i: usize) -> String {
    if i.is_multiple_of(2) {
        format!("engine = \"woocommerce\"\nplan = \"small\"\n[shop]\ntitle = \"Shop {i}\"\n")
    } else {
        format!("engine = \"medusa\"\nplan = \"medium\"\n# store {i}\n")
    }
}

fn write_stores(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for i in 0..n {
        std::fs::write(dir.join(format!("s{i:05}.toml")), body(i)).expect("write");
    }
}

fn named(name: &str) -> Changes {
    Changes {
        names: [std::ffi::OsString::from(name)].into(),
        everything: false,
    }
}

fn directory(c: &mut Criterion) {
    let mut g = c.benchmark_group("dir");
    g.sample_size(20);
    for n in SIZES {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("stores.d");
        write_stores(&dir, n);
        std::thread::sleep(AGE);
        let mut source = DirSource::new(dir.clone());
        // The first read caches; the second clears what was still racy then.
        for _ in 0..2 {
            source.read(&defaults(), &Changes::everything()).expect("read");
        }
        g.bench_with_input(BenchmarkId::new("idle_watched", n), &n, |b, _| {
            b.iter(|| black_box(source.read(&defaults(), &Changes::default()).expect("read")))
        });
        g.bench_with_input(BenchmarkId::new("full_restat", n), &n, |b, _| {
            b.iter(|| black_box(source.read(&defaults(), &Changes::everything()).expect("read")))
        });
        let edited = dir.join("s00042.toml");
        let mut round = 0usize;
        g.bench_with_input(BenchmarkId::new("one_edit_watched", n), &n, |b, _| {
            b.iter_batched(
                || {
                    round += 1;
                    std::fs::write(&edited, body(round)).expect("edit");
                },
                |()| black_box(source.read(&defaults(), &named("s00042.toml")).expect("read")),
                BatchSize::PerIteration,
            )
        });
        g.bench_with_input(BenchmarkId::new("cold", n), &n, |b, _| {
            b.iter(|| black_box(dir::read(&dir, &defaults()).expect("read")))
        });
    }
    g.finish();
}

fn repository(c: &mut Criterion) {
    let mut g = c.benchmark_group("git");
    g.sample_size(20);
    for n in SIZES {
        let remote = git::Remote::new();
        write_stores(&remote.work.join("stores.d"), n);
        remote.commit(&[]);
        let state = tempfile::tempdir().expect("state");
        let settings = git::git_settings(remote.url(), state.path());
        let mut warm = GitSource::new(settings.clone());
        warm.sync(&defaults()).expect("clone");
        g.bench_with_input(BenchmarkId::new("unchanged", n), &n, |b, _| {
            b.iter(|| black_box(warm.sync(&defaults()).expect("sync")))
        });
        if n > 1_000 {
            continue;
        }
        let mut round = 0usize;
        let mut push_one = || {
            round += 1;
            remote.commit(&[("stores.d/s00042.toml", Some(&body(round)))]);
        };
        g.bench_with_input(BenchmarkId::new("one_changed/cached", n), &n, |b, _| {
            b.iter_batched(
                &mut push_one,
                |()| black_box(warm.sync(&defaults()).expect("sync")),
                BatchSize::PerIteration,
            )
        });
        g.bench_with_input(BenchmarkId::new("one_changed/cold", n), &n, |b, _| {
            b.iter_batched(
                || {
                    push_one();
                    GitSource::new(settings.clone())
                },
                |mut cold| black_box(cold.sync(&defaults()).expect("sync")),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, directory, repository);
criterion_main!(benches);
