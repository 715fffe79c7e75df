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
        identity: crate::values::identity_hash(&spec, "example.com"),
        url: format!("http://{}/", spec.host),
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
    first_seen: BTreeMap<StoreName, jiff::Timestamp>,
    limits: Limits,
    unnamed: bool,
    now: jiff::Timestamp,
}

impl World {
    fn clone_with_approval(&self, n: &str) -> World {
        World {
            desired: self.desired.clone(),
            observed: self.observed.clone(),
            releases: self.releases.clone(),
            conflicts: self.conflicts.clone(),
            first_seen: self.first_seen.clone(),
            limits: self.limits.clone(),
            unnamed: self.unnamed,
            now: self.now,
        }
        .approve(n)
    }

    fn new() -> Self {
        World {
            desired: BTreeMap::new(),
            observed: BTreeMap::new(),
            releases: BTreeMap::new(),
            conflicts: BTreeSet::new(),
            first_seen: BTreeMap::new(),
            limits: Limits {
                prune: true,
                max_deletions: 1,
                helm_timeout: Duration::from_secs(300),
                deletion_grace: Duration::ZERO,
                caps: Caps::default(),
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
            revision: "rev-7",
            first_seen: &self.first_seen,
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

fn guarded(g: Guard) -> Action {
    Action::Skip(Skip::Guarded(g))
}

impl World {
    fn step(&self, n: &str) -> Step {
        self.plan()
            .into_iter()
            .find(|s| s.store.as_str() == n)
            .unwrap_or_else(|| panic!("no step for {n}"))
    }
    fn approve(mut self, n: &str) -> Self {
        if let Some(o) = self.observed.get_mut(&name(n)) {
            o.approval = Some(crate::cluster::Approval {
                at: self.now,
                revision: "rev-7".into(),
                by: "ops".into(),
            });
        }
        self
    }
    fn marked(mut self, n: &str, deadline_in_s: i64) -> Self {
        let deadline = self.now + jiff::SignedDuration::from_secs(deadline_in_s);
        if let Some(o) = self.observed.get_mut(&name(n)) {
            o.pending_deletion = Some(crate::cluster::DeletionMark {
                since: self.now - jiff::SignedDuration::from_secs(60),
                deadline,
                revision: "rev-6".into(),
            });
        }
        self
    }
}

#[test]
fn deletions_under_the_limit_proceed_and_over_it_none_does() {
    let w = World::new()
        .want("keep", "")
        .have("keep", Some("hash-keep"))
        .have("x", Some("h"));
    assert_eq!(w.actions(), [a("keep", Action::Noop), a("x", Action::Delete)]);
    let w = w.have("y", Some("h")).have("z", Some("h"));
    assert_eq!(
        w.actions(),
        [
            a("keep", Action::Noop),
            a("x", guarded(Guard::MassDeletion)),
            a("y", guarded(Guard::MassDeletion)),
            a("z", guarded(Guard::MassDeletion)),
        ]
    );
    let x = w.step("x");
    assert!(
        x.reason.contains("revision rev-7") && x.reason.contains("3 stores"),
        "{}",
        x.reason
    );
    assert_eq!(x.hint.as_deref(), Some("storekeeper approve-deletion x y z"));
    // The count is over every store whose file is gone, not per plan: the same plan again
    // still deletes none.
    assert!(w.plan().iter().all(|s| s.action != Action::Delete));
    let mut w = w;
    w.limits.max_deletions = 3;
    assert_eq!(w.plan().iter().filter(|s| s.action == Action::Delete).count(), 3);
}

#[test]
fn approved_stores_are_deleted_and_do_not_count_toward_the_limit() {
    let w = World::new()
        .want("keep", "")
        .have("keep", Some("hash-keep"))
        .have("a", Some("h"))
        .have("b", Some("h"))
        .have("c", Some("h"))
        .have("d", Some("h"))
        .approve("a")
        .approve("b");
    assert_eq!(
        w.actions(),
        [
            a("a", Action::Delete),
            a("b", Action::Delete),
            a("c", guarded(Guard::MassDeletion)),
            a("d", guarded(Guard::MassDeletion)),
            a("keep", Action::Noop),
        ]
    );
    assert!(
        w.step("a").reason.contains("approved by ops"),
        "{}",
        w.step("a").reason
    );
    assert_eq!(
        w.step("c").hint.as_deref(),
        Some("storekeeper approve-deletion c d")
    );
}

#[test]
fn the_grace_period_marks_waits_and_then_deletes() {
    let mut w = World::new()
        .want("keep", "")
        .have("keep", Some("hash-keep"))
        .have("x", Some("h"));
    w.limits.deletion_grace = Duration::from_secs(3600);
    let s = w.step("x");
    assert_eq!(s.action, Action::ScheduleDeletion);
    assert_eq!(s.deadline, Some(w.now + jiff::SignedDuration::from_secs(3600)));
    let w = w.marked("x", 600);
    let s = w.step("x");
    assert_eq!(s.action, Action::Skip(Skip::PendingDeletion));
    assert_eq!(s.deadline, Some(w.now + jiff::SignedDuration::from_secs(600)));
    assert!(
        s.reason.contains("rev-6"),
        "the revision that removed the file: {}",
        s.reason
    );
    let w = w.marked("x", -1);
    let s = w.step("x");
    assert_eq!(s.action, Action::Delete);
    assert!(
        s.reason.contains("grace period ended") && s.reason.contains("rev-6"),
        "{}",
        s.reason
    );
    // An approval skips the rest of the wait.
    let w = w.marked("x", 600).approve("x");
    assert_eq!(w.step("x").action, Action::Delete);
}

#[test]
fn a_file_that_comes_back_cancels_its_deletion_and_its_approval() {
    let mut w = World::new()
        .want("x", "")
        .have("x", Some("hash-x"))
        .marked("x", 600)
        .want("y", "")
        .have("y", Some("hash-y"))
        .approve("y")
        .broken("z")
        .have("z", Some("h"))
        .marked("z", 600);
    w.limits.deletion_grace = Duration::from_secs(3600);
    assert_eq!(
        w.actions(),
        [
            a("x", Action::CancelDeletion),
            a("y", Action::CancelDeletion),
            a("z", Action::CancelDeletion)
        ]
    );
    assert!(w.step("y").reason.contains("approval"), "{}", w.step("y").reason);
}

#[test]
fn a_new_store_with_the_same_spec_blocks_the_old_ones_deletion_as_a_rename() {
    let mut w = World::new()
        .want("keep", "")
        .have("keep", Some("hash-keep"))
        .want("my-shop", "[shop]\ncurrency = \"EUR\"\n")
        .have("shop", Some("h"));
    let old_identity = mk_desired("shop", "[shop]\ncurrency = \"EUR\"\n").identity;
    if let Some(o) = w.observed.get_mut(&name("shop")) {
        o.identity = Some(old_identity);
    }
    // Not one change: my-shop was there before shop's file went.
    w.first_seen
        .insert(name("my-shop"), w.now - jiff::SignedDuration::from_secs(60));
    w.first_seen.insert(name("shop"), w.now);
    w.limits.max_deletions = 10;
    assert_eq!(w.step("shop").action, Action::Delete);
    // One change: both first seen in the same plan.
    w.first_seen.insert(name("my-shop"), w.now);
    w.limits.max_deletions = 10;
    // First the hold is recorded, and the new store waits for it.
    assert_eq!(
        w.actions(),
        [
            a("keep", Action::Noop),
            a("my-shop", Action::Skip(Skip::Deferred)),
            a("shop", Action::HoldDeletion),
        ]
    );
    let s = w.step("shop");
    assert!(
        s.reason.contains("Names are identity") && s.reason.contains("my-shop.toml"),
        "{}",
        s.reason
    );
    assert_eq!(s.hint.as_deref(), Some("storekeeper approve-deletion shop"));
    assert_eq!(s.related, Some(name("my-shop")));
    // Then the hold keeps the old store, also once the new one exists.
    if let Some(o) = w.observed.get_mut(&name("shop")) {
        o.hold = Some(crate::cluster::DeletionHold {
            guard: "possible_rename".into(),
            with: "my-shop".into(),
            revision: "rev-7".into(),
            since: w.now,
        });
    }
    let w = w.have("my-shop", Some("hash-my-shop"));
    assert_eq!(w.step("my-shop").action, Action::Noop);
    assert_eq!(w.step("shop").action, guarded(Guard::PossibleRename));
    assert_eq!(w.clone_with_approval("shop").step("shop").action, Action::Delete);
    // Another spec is no rename; neither is a store that already exists.
    let mut other = World::new()
        .want("keep", "")
        .have("keep", Some("hash-keep"))
        .want("my-shop", "[shop]\ncurrency = \"GBP\"\n")
        .have("shop", Some("h"));
    if let Some(o) = other.observed.get_mut(&name("shop")) {
        o.identity = Some(mk_desired("shop", "[shop]\ncurrency = \"EUR\"\n").identity);
    }
    assert_eq!(other.step("shop").action, Action::Delete);
}

#[test]
fn the_identity_ignores_only_name_derived_fields() {
    let id = |n: &str, extra: &str| mk_desired(n, extra).identity;
    assert_eq!(
        id("shop", ""),
        id("my-shop", ""),
        "default host, title and e-mail follow the name"
    );
    assert_eq!(
        id("shop", "host = \"shop.example.org\"\n"),
        id("my-shop", "host = \"shop.example.org\"\n"),
        "an explicit host is the same host"
    );
    assert_ne!(id("shop", "plan = \"medium\"\n"), id("my-shop", ""));
    assert_ne!(id("shop", "[shop]\ntitle = \"Mine\"\n"), id("my-shop", ""));
}

#[test]
fn the_guards_apply_in_their_order() {
    let base = || {
        World::new()
            .want("keep", "")
            .have("keep", Some("hash-keep"))
            .have("x", Some("h"))
    };
    let set = |w: &mut World, f: &dyn Fn(&mut ObservedStore)| {
        if let Some(o) = w.observed.get_mut(&name("x")) {
            f(o)
        }
    };
    // 1. terminating before protected.
    let mut w = base();
    set(&mut w, &|o| {
        o.terminating = true;
        o.protected = true;
    });
    assert_eq!(w.step("x").action, Action::Skip(Skip::Terminating));
    // 2. protected before prune off, and no approval unprotects.
    let mut w = base().approve("x");
    set(&mut w, &|o| o.protected = true);
    w.limits.prune = false;
    assert_eq!(w.step("x").action, Action::Skip(Skip::Protected));
    // 3. prune off beats an approval.
    let mut w = base().approve("x");
    w.limits.prune = false;
    assert_eq!(w.step("x").action, guarded(Guard::PruneDisabled));
    // 4. an approval passes the empty-snapshot, unnamed-file, rename and mass guards.
    let mut w = World::new()
        .have("x", Some("h"))
        .have("y", Some("h"))
        .approve("x");
    w.unnamed = true;
    assert_eq!(w.step("x").action, Action::Delete);
    // 5. empty snapshot before unnamed files.
    assert_eq!(w.step("y").action, guarded(Guard::EmptySnapshot));
    // 6. unnamed files before a rename.
    let mut w = base().want("x2", "");
    w.unnamed = true;
    set(&mut w, &|o| o.identity = Some(mk_desired("x", "").identity));
    let now = w.now;
    w.first_seen.insert(name("x"), now);
    w.first_seen.insert(name("x2"), now);
    assert_eq!(w.step("x").action, guarded(Guard::UnnamedFiles));
    // 7. a rename is held on its own and does not count toward the breaker.
    w.unnamed = false;
    let w = w.have("z", Some("h"));
    assert_eq!(w.step("x").action, Action::HoldDeletion);
    assert_eq!(
        w.step("z").action,
        Action::Delete,
        "one other deletion is under the limit"
    );
    // 8. the breaker before the grace period.
    let mut w = base().have("y", Some("h"));
    w.limits.deletion_grace = Duration::from_secs(60);
    assert_eq!(w.step("x").action, guarded(Guard::MassDeletion));
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

fn owned(mut w: World, n: &str, owner: &str) -> World {
    w = w.want(n, &format!("owner = \"{owner}\"\n"));
    w
}

fn existing(mut w: World, n: &str, owner: &str, created_s_ago: i64) -> World {
    w = owned(w, n, owner).have(n, Some(&format!("hash-{n}")));
    let now = w.now;
    if let Some(o) = w.observed.get_mut(&name(n)) {
        o.owner = Some(owner.into());
        o.created = Some(now - jiff::SignedDuration::from_secs(created_s_ago));
    }
    w
}

#[test]
fn caps_hold_back_new_stores_only_and_name_the_owner_and_the_limit() {
    let mut w = existing(World::new(), "a1", "acme", 7200);
    w = existing(w, "a2", "acme", 7200);
    w = owned(w, "a3", "acme");
    w = owned(w, "b1", "bob");
    w.limits.caps.max_stores_per_owner = Some(2);
    assert_eq!(
        w.actions(),
        [
            a("a1", Action::Noop),
            a("a2", Action::Noop),
            a("a3", Action::Skip(Skip::QuotaExceeded)),
            a("b1", Action::Create),
        ]
    );
    let s = w.step("a3");
    assert!(
        s.reason.contains("owner acme") && s.reason.contains("max_stores_per_owner = 2"),
        "{}",
        s.reason
    );
    // An existing store over a lowered cap is never touched.
    w.limits.caps.max_stores_per_owner = Some(1);
    assert_eq!(w.step("a1").action, Action::Noop);
    assert_eq!(w.step("a2").action, Action::Noop);
    // The global cap: the oldest new store first, then by name.
    let mut w = existing(World::new(), "x", "acme", 7200);
    w = owned(w, "new-b", "bob");
    w = owned(w, "new-a", "bob");
    w = owned(w, "new-c", "bob");
    w.limits.caps.max_stores = Some(3);
    let older = w.now - jiff::SignedDuration::from_secs(30);
    w.first_seen.insert(name("new-c"), older);
    assert_eq!(w.step("new-c").action, Action::Create, "seen first");
    assert_eq!(w.step("new-a").action, Action::Create, "then by name");
    let s = w.step("new-b");
    assert_eq!(s.action, Action::Skip(Skip::QuotaExceeded));
    assert!(s.reason.contains("max_stores = 3"), "{}", s.reason);
}

#[test]
fn the_creation_rate_delays_the_excess_and_says_when_each_starts() {
    let mut w = existing(World::new(), "old1", "o", 3000);
    w = existing(w, "old2", "o", 1800);
    for n in ["n1", "n2", "n3"] {
        w = owned(w, n, "o");
    }
    w.limits.caps.max_creations_per_hour = Some(2);
    let hour = jiff::SignedDuration::from_secs(3600);
    let (s1, s2, s3) = (w.step("n1"), w.step("n2"), w.step("n3"));
    assert!(
        [&s1, &s2, &s3]
            .iter()
            .all(|s| s.action == Action::Skip(Skip::QuotaExceeded)),
        "two creations in the last hour already"
    );
    let created = |ago: i64| w.now - jiff::SignedDuration::from_secs(ago);
    assert_eq!(s1.not_before, Some(created(3000) + hour), "when old1 ages out");
    assert_eq!(s2.not_before, Some(created(1800) + hour), "when old2 ages out");
    assert_eq!(s3.not_before, None, "after the first two: later");
    assert!(s1.reason.contains("max_creations_per_hour = 2"), "{}", s1.reason);
    // An hour after old1: one slot.
    w.now += jiff::SignedDuration::from_secs(700);
    assert_eq!(w.step("n1").action, Action::Create);
    assert_eq!(w.step("n2").action, Action::Skip(Skip::QuotaExceeded));
}
