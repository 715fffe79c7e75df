//! Criterion benchmark of the pure planner, `storekeeper::plan::plan`, at 1k and 10k stores.
//!
//! The mix mirrors a busy fleet on an ordinary cycle: 90 % unchanged (hash equal, status Ready),
//! 5 % changed (hash differs, release state read), 3 % new (no namespace yet), 2 % orphaned (the
//! file is gone; deletions capped by `max_deletions`). Inputs are built once, outside the timed
//! loop; only `plan::plan` is measured.

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use storekeeper::cluster::ObservedStore;
use storekeeper::helm::{ReleaseInfo, ReleaseStatus};
use storekeeper::plan::{self, Desired, Limits};
use storekeeper::spec::{self, SpecDefaults, SpecError, StoreName};
use storekeeper::status::StatusAnnotation;

fn ready() -> Option<StatusAnnotation> {
    StatusAnnotation::parse(r#"{"phase":"Ready","reason":"deployed","since":"2026-11-22T14:00:00Z"}"#)
}

struct Inputs {
    desired: BTreeMap<StoreName, Result<Desired, SpecError>>,
    observed: BTreeMap<StoreName, ObservedStore>,
    releases: BTreeMap<StoreName, Option<ReleaseInfo>>,
    limits: Limits,
}

fn build(n: usize) -> Inputs {
    let defaults = SpecDefaults {
        base_domain: "bench.local".into(),
        policy: Default::default(),
    };
    let mut desired = BTreeMap::new();
    let mut observed = BTreeMap::new();
    let mut releases = BTreeMap::new();
    for i in 0..n {
        let name = format!("s{i:05}");
        let store = StoreName::new(&name).expect("valid name");
        let kind = i % 100; // 0..90 unchanged, 90..95 changed, 95..98 new, 98..100 orphaned
        let body = if i.is_multiple_of(2) {
            "engine = \"woocommerce\"\nplan = \"small\"\n[shop]\ntitle = \"Bench\"\n"
        } else {
            "engine = \"medusa\"\nplan = \"medium\"\n"
        };
        let path = format!("/stores.d/{name}.toml");
        let spec = spec::parse_bytes(Path::new(&path), body.as_bytes(), &defaults).expect("valid store");
        let hash = format!("{:064x}", i);
        if kind < 98 {
            desired.insert(
                store.clone(),
                Ok(Desired {
                    identity: storekeeper::values::identity_hash(&spec, "bench.local"),
                    url: format!("http://{}/", spec.host),
                    spec: spec.into(),
                    hash: hash.clone(),
                }),
            );
        }
        if !(95..98).contains(&kind) {
            let applied = if (90..95).contains(&kind) {
                format!("{:064x}", i + 1)
            } else {
                hash
            };
            observed.insert(
                store.clone(),
                ObservedStore {
                    namespace: format!("store-{name}"),
                    labels: [
                        (
                            "app.kubernetes.io/managed-by".to_string(),
                            "storekeeper".to_string(),
                        ),
                        ("storekeeper.dev/store".to_string(), name.clone()),
                    ]
                    .into(),
                    applied_hash: Some(applied),
                    revision: Some("dir:0123456789ab".into()),
                    protected: false,
                    ever_ready: true,
                    status: ready(),
                    ..ObservedStore::default()
                },
            );
        }
        if (90..95).contains(&kind) {
            releases.insert(
                store,
                Some(ReleaseInfo {
                    status: ReleaseStatus::Deployed,
                    revision: 3,
                    last_deployed: None,
                }),
            );
        }
    }
    Inputs {
        desired,
        observed,
        releases,
        limits: Limits {
            prune: true,
            max_deletions: 5,
            helm_timeout: Duration::from_secs(300),
            deletion_grace: Duration::ZERO,
            caps: Default::default(),
        },
    }
}

fn bench_plan(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan");
    for n in [1_000usize, 10_000] {
        let inputs = build(n);
        let now = jiff::Timestamp::now();
        group.bench_with_input(BenchmarkId::from_parameter(n), &inputs, |b, inp| {
            b.iter(|| {
                let steps = plan::plan(&plan::Input {
                    desired: &inp.desired,
                    unnamed_files: false,
                    observed: &inp.observed,
                    conflicts: &BTreeSet::new(),
                    releases: &inp.releases,
                    limits: &inp.limits,
                    revision: "dir:0123456789ab",
                    first_seen: &BTreeMap::new(),
                    now,
                });
                black_box(steps)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_plan
}
criterion_main!(benches);
