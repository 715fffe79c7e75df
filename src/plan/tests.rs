use std::path::Path;

use super::*;
use crate::diagnostic::Diagnostic;
use crate::spec::{SpecDefaults, parse_bytes};

fn name(s: &str) -> StoreName {
    StoreName::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn mk_desired(n: &str, extra: &str) -> Desired {
    let src = format!("engine = \"woocommerce\"\n{extra}");
    let d = SpecDefaults {
        base_domain: "example.com".into(),
        policy: Default::default(),
    };
    let spec =
        parse_bytes(Path::new(&format!("{n}.toml")), src.as_bytes(), &d).unwrap_or_else(|e| panic!("{e:?}"));
    Desired {
        spec: spec.into(),
        hash: format!("hash-{n}"),
    }
}

fn mk_observed(n: &str, hash: Option<&str>) -> ObservedStore {
    ObservedStore {
        namespace: format!("store-{n}"),
        applied_hash: hash.map(str::to_string),
        status: Some(crate::status::StatusAnnotation {
            phase: crate::status::Phase::Ready,
            reason: "deployed".into(),
            since: jiff::Timestamp::UNIX_EPOCH,
            revision: None,
            error: None,
            code: None,
        }),
        ever_ready: true,
        ..ObservedStore::default()
    }
}

fn invalid(n: &str) -> SpecError {
    SpecError {
        file: format!("{n}.toml"),
        diagnostics: vec![Diagnostic::whole_file(Path::new("x"), "bad".into())],
    }
}

fn release(status: &str, revision: u32, age_s: i64, now: jiff::Timestamp) -> Option<ReleaseInfo> {
    Some(ReleaseInfo {
        status: ReleaseStatus::parse(status),
        revision,
        last_deployed: Some(now - jiff::SignedDuration::from_secs(age_s)),
    })
}

struct World {
    desired: BTreeMap<StoreName, Result<Desired, SpecError>>,
    observed: BTreeMap<StoreName, ObservedStore>,
    releases: BTreeMap<StoreName, Option<ReleaseInfo>>,
    conflicts: BTreeSet<StoreName>,
    limits: Limits,
    unnamed: bool,
    now: jiff::Timestamp,
}

impl World {
    fn new() -> Self {
        World {
            desired: BTreeMap::new(),
            observed: BTreeMap::new(),
            releases: BTreeMap::new(),
            conflicts: BTreeSet::new(),
            limits: Limits {
                prune: true,
                max_deletions: 1,
                helm_timeout: Duration::from_secs(300),
            },
            unnamed: false,
            now: jiff::Timestamp::from_second(1_800_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        }
    }
    fn want(mut self, n: &str, extra: &str) -> Self {
        self.desired.insert(name(n), Ok(mk_desired(n, extra)));
        self
    }
    fn broken(mut self, n: &str) -> Self {
        self.desired.insert(name(n), Err(invalid(n)));
        self
    }
    fn have(mut self, n: &str, hash: Option<&str>) -> Self {
        self.observed.insert(name(n), mk_observed(n, hash));
        self
    }
    fn plan(&self) -> Vec<Step> {
        plan(&Input {
            desired: &self.desired,
            unnamed_files: self.unnamed,
            observed: &self.observed,
            conflicts: &self.conflicts,
            releases: &self.releases,
            limits: &self.limits,
            now: self.now,
        })
    }
    fn actions(&self) -> Vec<(String, Action)> {
        self.plan()
            .into_iter()
            .map(|s| (s.store.to_string(), s.action))
            .collect()
    }
}

fn a(n: &str, action: Action) -> (String, Action) {
    (n.to_string(), action)
}

#[test]
fn create_upgrade_noop() {
    let w = World::new()
        .want("new", "")
        .want("same", "")
        .have("same", Some("hash-same"))
        .want("changed", "")
        .have("changed", Some("old"));
    assert_eq!(
        w.actions(),
        [
            a("changed", Action::Upgrade),
            a("new", Action::Create),
            a("same", Action::Noop)
        ]
    );
}

#[test]
fn deleted_file_deletes_only_within_the_per_cycle_bound() {
    let w = World::new()
        .want("keep", "")
        .have("keep", Some("hash-keep"))
        .have("x", Some("h"))
        .have("y", Some("h"))
        .have("z", Some("h"));
    let g = Action::Skip(Skip::Guarded(Guard::TooManyDeletions));
    assert_eq!(
        w.actions(),
        [
            a("keep", Action::Noop),
            a("x", Action::Delete),
            a("y", g),
            a("z", g)
        ]
    );
    let mut w = w;
    w.limits.max_deletions = 3;
    assert_eq!(w.plan().iter().filter(|s| s.action == Action::Delete).count(), 3);
}

#[test]
fn invalid_file_leaves_the_store_alone() {
    let w = World::new().broken("shop").have("shop", Some("h"));
    assert_eq!(w.actions(), [a("shop", Action::Skip(Skip::Invalid))]);
    // Not even a deletion when every file is invalid.
    let w = World::new()
        .broken("a")
        .broken("b")
        .have("a", Some("h"))
        .have("b", Some("h"));
    assert!(w.plan().iter().all(|s| s.action == Action::Skip(Skip::Invalid)));
}

#[test]
fn empty_snapshot_never_deletes() {
    let mut w = World::new().have("a", Some("h")).have("b", Some("h"));
    w.limits.max_deletions = 100;
    let g = Action::Skip(Skip::Guarded(Guard::EmptySnapshot));
    assert_eq!(w.actions(), [a("a", g), a("b", g)]);
}

#[test]
fn unnamed_files_and_prune_off_block_deletions() {
    let mut w = World::new()
        .want("k", "")
        .have("k", Some("hash-k"))
        .have("gone", Some("h"));
    w.unnamed = true;
    assert_eq!(
        w.actions()[0],
        a("gone", Action::Skip(Skip::Guarded(Guard::UnnamedFiles)))
    );
    w.unnamed = false;
    w.limits.prune = false;
    assert_eq!(
        w.actions()[0],
        a("gone", Action::Skip(Skip::Guarded(Guard::PruneDisabled)))
    );
}

#[test]
fn protected_store_is_never_deleted() {
    let mut w = World::new()
        .want("k", "")
        .have("k", Some("hash-k"))
        .have("p", Some("h"));
    if let Some(o) = w.observed.get_mut(&name("p")) {
        o.protected = true;
    }
    w.limits.max_deletions = 100;
    assert_eq!(w.actions()[1], a("p", Action::Skip(Skip::Protected)));
}

#[test]
fn suspended_and_conflicting_stores_are_skipped() {
    let mut w = World::new()
        .want("s", "suspend = true\n")
        .have("s", Some("old"))
        .want("c", "");
    w.conflicts.insert(name("c"));
    assert_eq!(
        w.actions(),
        [
            a("c", Action::Skip(Skip::Conflict)),
            a("s", Action::Skip(Skip::Suspended))
        ]
    );
}

#[test]
fn a_terminating_namespace_is_deleting_and_never_created_into() {
    let mut w = World::new()
        .want("back", "")
        .have("back", None)
        .have("gone", Some("h"));
    for o in w.observed.values_mut() {
        o.terminating = true;
    }
    w.limits.max_deletions = 100;
    let d = mk_desired("back", "");
    assert!(
        !needs_release_state(Some(&d), w.observed.get(&name("back")), true),
        "no helm call for a namespace on its way out"
    );
    assert_eq!(
        w.actions(),
        [
            a("back", Action::Skip(Skip::Terminating)),
            a("gone", Action::Skip(Skip::Terminating))
        ]
    );
}

#[test]
fn stuck_and_failed_releases_are_recovered() {
    let mut w = World::new()
        .want("up", "")
        .have("up", Some("hash-up"))
        .want("fresh", "")
        .have("fresh", Some("hash-fresh"));
    w = w
        .want("inst", "")
        .have("inst", None)
        .want("fail", "")
        .have("fail", Some("hash-fail"));
    if let Some(o) = w.observed.get_mut(&name("inst")) {
        o.ever_ready = false;
    }
    let now = w.now;
    w.releases
        .insert(name("up"), release("pending-upgrade", 4, 3600, now));
    w.releases
        .insert(name("fresh"), release("pending-upgrade", 4, 10, now));
    w.releases
        .insert(name("inst"), release("pending-install", 1, 3600, now));
    w.releases.insert(name("fail"), release("failed", 2, 5, now));
    assert_eq!(
        w.actions(),
        [
            a("fail", Action::Recover(Recovery::RollForward)),
            a("fresh", Action::Skip(Skip::InProgress)),
            a("inst", Action::Recover(Recovery::Reinstall)),
            a("up", Action::Recover(Recovery::Rollback)),
        ]
    );
}

#[test]
fn an_ever_ready_store_is_never_reinstalled() {
    let mut w = World::new().want("r", "").have("r", Some("hash-r"));
    let now = w.now;
    w.releases
        .insert(name("r"), release("pending-install", 1, 3600, now));
    assert_eq!(w.actions(), [a("r", Action::Recover(Recovery::RollForward))]);
}

#[test]
fn missing_release_under_a_labelled_namespace_is_reinstalled_by_upgrade() {
    let mut w = World::new().want("m", "").have("m", Some("hash-m"));
    w.releases.insert(name("m"), None);
    assert_eq!(w.actions(), [a("m", Action::Upgrade)]);
}

#[test]
fn release_state_is_read_only_when_needed() {
    let d = mk_desired("a", "");
    let same = mk_observed("a", Some("hash-a"));
    assert!(
        !needs_release_state(Some(&d), Some(&same), false),
        "unchanged + Ready: no helm call"
    );
    assert!(needs_release_state(Some(&d), Some(&same), true), "resync");
    assert!(
        needs_release_state(Some(&d), Some(&mk_observed("a", Some("old"))), false),
        "changed"
    );
    let mut failed = same.clone();
    if let Some(st) = failed.status.as_mut() {
        st.phase = crate::status::Phase::Failed;
    }
    assert!(needs_release_state(Some(&d), Some(&failed), false), "not Ready");
    assert!(
        !needs_release_state(Some(&d), None, true),
        "new store: nothing to read"
    );
    assert!(
        !needs_release_state(None, Some(&same), true),
        "orphan: nothing to read"
    );
}

#[test]
fn every_name_gets_exactly_one_step() {
    let w = World::new()
        .want("a", "")
        .broken("b")
        .have("c", Some("h"))
        .want("d", "")
        .have("d", Some("x"));
    let names: Vec<String> = w.plan().into_iter().map(|s| s.store.to_string()).collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
}
