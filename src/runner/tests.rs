//! The runner with fake cluster and helm operations under paused time: every path in
//! milliseconds, no helm binary.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::*;
use crate::backup::fake::FakeBackups;
use crate::backup::{BackupOps, Backups};
use crate::cluster::{Annotations, ClusterError, ObservedStore};
use crate::helm::{HelmError, InstallRequest, ListedRelease, ReleaseInfo};
use crate::plan::{Action, Desired, Recovery, Step};
use crate::record::Statuses;
use crate::spec::{Engine, SpecDefaults, StoreName};
use crate::status::Phase;
use crate::values::HashInputs;

fn name(s: &str) -> StoreName {
    StoreName::new(s).unwrap_or_else(|e| panic!("{e}"))
}

/// A cluster that keeps a call log and fails the calls it is told to.
#[derive(Default)]
struct FakeCluster {
    calls: Mutex<Vec<String>>,
    /// Call kind (`namespace`, `credentials`, `annotate`, `delete`) → failures left.
    fail: Mutex<BTreeMap<&'static str, usize>>,
}

impl FakeCluster {
    fn call(&self, kind: &'static str, ns: &str) -> Result<(), ClusterError> {
        if let Ok(mut c) = self.calls.lock() {
            c.push(format!("{kind} {ns}"));
        }
        let mut fail = self.fail.lock().unwrap_or_else(|p| p.into_inner());
        match fail.get_mut(kind) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Err(ClusterError::NotGone(
                    format!("injected {kind} failure"),
                    Duration::ZERO,
                ))
            }
            _ => Ok(()),
        }
    }
}

impl ClusterOps for FakeCluster {
    async fn observe(&self) -> Result<crate::cluster::Observed, ClusterError> {
        Ok(crate::cluster::Observed::default())
    }
    async fn ensure_namespace(
        &self,
        name: &str,
        _: &BTreeMap<String, String>,
        _: Option<&BTreeMap<String, String>>,
    ) -> Result<(), ClusterError> {
        self.call("namespace", name)
    }
    async fn ensure_credentials(&self, ns: &str, _: Engine) -> Result<(), ClusterError> {
        self.call("credentials", ns)
    }
    async fn annotate(&self, ns: &str, _: &Annotations) -> Result<(), ClusterError> {
        self.call("annotate", ns)
    }
    async fn delete_namespace(&self, ns: &str, _: Duration) -> Result<(), ClusterError> {
        self.call("delete", ns)
    }
}

/// helm that takes as long as told per release, and fails as told.
#[derive(Default)]
struct FakeHelm {
    /// (operation, release, when it started) for every call.
    started: Mutex<Vec<(&'static str, String, Instant)>>,
    duration: Mutex<BTreeMap<String, Duration>>,
    /// Operation → failures left.
    fail: Mutex<BTreeMap<&'static str, usize>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

impl FakeHelm {
    async fn op(&self, op: &'static str, release: &str) -> Result<(), HelmError> {
        if let Ok(mut s) = self.started.lock() {
            s.push((op, release.to_string(), Instant::now()));
        }
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let d = self.duration.lock().ok().and_then(|d| d.get(release).copied());
        tokio::time::sleep(d.unwrap_or(Duration::from_secs(1))).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        let mut fail = self.fail.lock().unwrap_or_else(|p| p.into_inner());
        match fail.get_mut(op) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Err(HelmError::Timeout {
                    stderr: "timed out waiting for the condition".into(),
                })
            }
            _ => Ok(()),
        }
    }

    fn calls(&self, op: &str, release: &str) -> usize {
        self.started
            .lock()
            .map(|s| s.iter().filter(|(o, r, _)| *o == op && r == release).count())
            .unwrap_or(0)
    }

    fn started_at(&self, release: &str) -> Vec<Instant> {
        self.started
            .lock()
            .map(|s| s.iter().filter(|(_, r, _)| r == release).map(|c| c.2).collect())
            .unwrap_or_default()
    }
}

impl HelmOps for FakeHelm {
    async fn upgrade_install(&self, req: &InstallRequest) -> Result<(), HelmError> {
        self.op("upgrade", &req.release).await
    }
    async fn rollback(&self, release: &str, _: &str) -> Result<(), HelmError> {
        self.op("rollback", release).await
    }
    async fn uninstall(&self, release: &str, _: &str) -> Result<(), HelmError> {
        self.op("uninstall", release).await
    }
    async fn status(&self, _: &str, _: &str) -> Result<Option<ReleaseInfo>, HelmError> {
        Ok(None)
    }
    async fn list_all(&self) -> Result<Vec<ListedRelease>, HelmError> {
        Ok(Vec::new())
    }
}

struct Bed {
    cluster: Arc<FakeCluster>,
    backups: Arc<FakeBackups>,
    helm: Arc<FakeHelm>,
    metrics: Arc<Metrics>,
    runner: Arc<Runner<FakeCluster, FakeHelm>>,
    replans: mpsc::Receiver<()>,
    stop: watch::Sender<bool>,
    leading: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn bed(max_concurrent: usize) -> Bed {
    bed_with(max_concurrent, None)
}

/// A bed whose executor has these backup settings (`None`: no `[backup]`).
fn bed_with(max_concurrent: usize, settings: Option<Arc<crate::config::BackupSettings>>) -> Bed {
    let cluster = Arc::new(FakeCluster::default());
    let backups = Arc::new(FakeBackups::default());
    let helm = Arc::new(FakeHelm::default());
    let metrics = Arc::new(Metrics::new());
    let recorder = Arc::new(Recorder::new(
        Arc::clone(&cluster),
        Arc::clone(&metrics),
        Statuses::default(),
    ));
    let (tx, replans) = mpsc::channel(16);
    let executor = Executor {
        cluster: Arc::clone(&cluster),
        helm: Arc::clone(&helm),
        recorder,
        metrics: Arc::clone(&metrics),
        delete_timeout: Duration::from_secs(60),
        backups: Backups::new(Arc::clone(&backups) as Arc<dyn BackupOps>, settings),
    };
    let runner = Arc::new(Runner::new(executor, max_concurrent, Some(tx)));
    let (stop, stop_rx) = watch::channel(false);
    let (leading, leading_rx) = watch::channel(true);
    let task = tokio::spawn(Arc::clone(&runner).run(stop_rx, leading_rx, false));
    Bed {
        cluster,
        backups,
        helm,
        metrics,
        runner,
        replans,
        stop,
        leading,
        task,
    }
}

fn desired(store: &str, title: &str) -> Desired {
    let src = format!("engine = \"woocommerce\"\n[shop]\ntitle = \"{title}\"\n");
    let d = SpecDefaults {
        base_domain: "example.com".into(),
        policy: Default::default(),
    };
    let spec = crate::spec::parse_bytes(Path::new(&format!("{store}.toml")), src.as_bytes(), &d)
        .unwrap_or_else(|e| panic!("{e:?}"));
    Desired {
        spec: spec.into(),
        hash: format!("hash-{title}"),
        identity: format!("identity-{store}"),
        url: format!("http://{store}.example.com/"),
    }
}

fn chart() -> Arc<ChartInputs> {
    Arc::new(ChartInputs {
        chart: "charts/woocommerce-store".into(),
        hash: HashInputs::default(),
        values_files: Vec::new(),
        extra: serde_json::json!({}),
        backup: None,
    })
}

/// Work for one store: `title` stands for its desired state.
fn work(store: &str, action: Action, title: &str) -> Work {
    let observed = (action != Action::Create).then(|| ObservedStore {
        namespace: format!("store-{store}"),
        ever_ready: true,
        ..ObservedStore::default()
    });
    Work {
        step: Step::new(name(store), action, format!("{} {title}", action.code())),
        namespace: format!("store-{store}"),
        revision: Arc::from("rev-1"),
        desired: (action != Action::Delete).then(|| desired(store, title)),
        observed,
        chart: Some(chart()),
    }
}

async fn submit(b: &Bed, works: Vec<Work>) {
    let epoch = b.runner.epoch();
    b.runner
        .submit(Planned {
            revision: Arc::from("rev-1"),
            works,
            epoch,
        })
        .await;
}

fn status(b: &Bed, store: &str) -> crate::status::StoreStatus {
    b.runner
        .recorder()
        .get(&name(store))
        .unwrap_or_else(|| panic!("{store} has a status"))
}

/// Lets every task run until all of them wait on (paused) time.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_queued_twice_runs_once_with_the_newest_state() {
    let b = bed(1);
    b.helm
        .duration
        .lock()
        .map(|mut d| d.insert("busy".into(), Duration::from_secs(30)))
        .ok();
    submit(&b, vec![work("busy", Action::Upgrade, "b")]).await;
    settle().await;
    // "a" waits behind "busy" (cap 1): queued twice, it runs once, with the newer state.
    submit(&b, vec![work("a", Action::Upgrade, "old")]).await;
    submit(&b, vec![work("a", Action::Upgrade, "new")]).await;
    assert_eq!(status(&b, "a").phase, Phase::Pending);
    assert_eq!(b.metrics.queue_depth.get(), 1);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(b.helm.calls("upgrade", "a"), 1);
    let s = status(&b, "a");
    assert_eq!((s.phase, s.reason.as_str()), (Phase::Ready, "deployed"));
    assert!(
        b.runner
            .recorder()
            .operations()
            .iter()
            .any(|o| o.store == name("a") && o.result == "ok"),
        "the newest work ran"
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_in_flight_is_held_and_the_plan_after_it_decides() {
    let mut b = bed(3);
    b.helm
        .duration
        .lock()
        .map(|mut d| d.insert("a".into(), Duration::from_secs(60)))
        .ok();
    submit(&b, vec![work("a", Action::Create, "v1")]).await;
    settle().await;
    assert_eq!(status(&b, "a").phase, Phase::Provisioning);
    let stale_epoch = b.runner.epoch();
    // While it runs, newer plans for "a" are held: no second helm process.
    submit(&b, vec![work("a", Action::Upgrade, "v2")]).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(b.helm.calls("upgrade", "a"), 1);
    assert_eq!(status(&b, "a").phase, Phase::Provisioning, "the phase stays live");
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert!(
        b.replans.try_recv().is_ok(),
        "the end of an operation asks for a plan"
    );
    // A plan whose observations predate the end is ignored for "a"...
    b.runner
        .submit(Planned {
            revision: Arc::from("r"),
            works: vec![work("a", Action::Upgrade, "stale")],
            epoch: stale_epoch,
        })
        .await;
    settle().await;
    assert_eq!(b.helm.calls("upgrade", "a"), 1);
    // ...and the fresh one runs the newest desired state.
    submit(&b, vec![work("a", Action::Upgrade, "v3")]).await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(b.helm.calls("upgrade", "a"), 2);
    assert_eq!(status(&b, "a").phase, Phase::Ready);
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_cap_holds_and_a_slow_store_delays_no_other() {
    let b = bed(2);
    b.helm
        .duration
        .lock()
        .map(|mut d| d.insert("slow".into(), Duration::from_secs(300)))
        .ok();
    submit(&b, vec![work("slow", Action::Create, "s")]).await;
    settle().await;
    let t0 = Instant::now();
    let others: Vec<Work> = (0..5)
        .map(|i| work(&format!("s{i}"), Action::Create, "x"))
        .collect();
    submit(&b, others).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        b.helm.max_running.load(Ordering::SeqCst),
        2,
        "never more than max_concurrent"
    );
    for i in 0..5 {
        let store = format!("s{i}");
        assert_eq!(
            status(&b, &store).phase,
            Phase::Ready,
            "{store} is not held back by slow"
        );
    }
    let first = b.helm.started_at("s0");
    assert_eq!(first.first().map(|t| t.duration_since(t0)), Some(Duration::ZERO));
    assert_eq!(status(&b, "slow").phase, Phase::Provisioning);
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_retried_on_the_backoff_schedule_and_shows_next_attempt() {
    let b = bed(1);
    b.helm.fail.lock().map(|mut f| f.insert("upgrade", 3)).ok();
    let t0 = Instant::now();
    submit(&b, vec![work("a", Action::Upgrade, "v1")]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = status(&b, "a");
    assert_eq!((s.phase, s.error_code), (Phase::Failed, Some("helm_timeout")));
    assert!(
        s.last_error.as_deref().is_some_and(|e| e.contains("timed out")),
        "{s:?}"
    );
    let next = s.next_attempt.expect("next_attempt is shown");
    let ahead = next.duration_since(jiff::Timestamp::now()).as_secs_f64();
    assert!(
        (6.0..=13.0).contains(&ahead),
        "first retry in about 10 s: {ahead}"
    );
    assert_eq!(
        b.metrics
            .reconcile_errors
            .with_label_values(&["helm_timeout"])
            .get(),
        1
    );
    // Plans keep coming (every interval): none of them is an attempt or a new error.
    for _ in 0..4 {
        submit(&b, vec![work("a", Action::Upgrade, "v1")]).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(status(&b, "a").phase, Phase::Failed);
    }
    assert_eq!(b.helm.calls("upgrade", "a"), 1);
    // Each plan re-offers the work; it starts at its retry time, and waits longer each time.
    for _ in 0..60 {
        if status(&b, "a").phase == Phase::Ready {
            break;
        }
        submit(&b, vec![work("a", Action::Upgrade, "v1")]).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let starts: Vec<f64> = b
        .helm
        .started_at("a")
        .iter()
        .map(|t| t.duration_since(t0).as_secs_f64())
        .collect();
    assert_eq!(starts.len(), 4, "{starts:?}");
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!((8.0..=15.0).contains(&gaps[0]), "{gaps:?}");
    assert!((16.0..=27.0).contains(&gaps[1]), "{gaps:?}");
    assert!((32.0..=51.0).contains(&gaps[2]), "{gaps:?}");
    assert_eq!(status(&b, "a").phase, Phase::Ready, "the fourth try succeeds");
    assert_eq!(status(&b, "a").last_error, None, "success clears the error");
}

#[tokio::test(start_paused = true)]
async fn a_changed_desired_state_is_not_held_back_by_an_old_failure() {
    let b = bed(1);
    b.helm.fail.lock().map(|mut f| f.insert("upgrade", 1)).ok();
    submit(&b, vec![work("a", Action::Upgrade, "broken")]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(status(&b, "a").phase, Phase::Failed);
    submit(&b, vec![work("a", Action::Upgrade, "fixed")]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.helm.calls("upgrade", "a"), 2, "the fix runs at once");
    assert_eq!(status(&b, "a").phase, Phase::Ready);
}

/// Every failure class ends Failed with last_error, a bounded code counted in
/// `reconcile_errors_total`, and next_attempt; another store is unaffected.
#[tokio::test(start_paused = true)]
async fn every_failure_class_is_failed_with_a_code_and_a_retry() {
    let cases: [(&str, Action, &str, &str); 7] = [
        ("namespace", Action::Create, "cluster", "namespace_create"),
        ("credentials", Action::Create, "cluster", "credentials"),
        ("annotate", Action::Upgrade, "cluster", "annotate"),
        ("delete", Action::Delete, "cluster", "namespace_delete"),
        (
            "rollback",
            Action::Recover(Recovery::Rollback),
            "helm",
            "helm_timeout",
        ),
        ("uninstall", Action::Delete, "helm", "helm_timeout"),
        ("upgrade", Action::Create, "helm", "helm_timeout"),
    ];
    for (fault, action, side, code) in cases {
        let b = bed(2);
        if side == "cluster" {
            b.cluster.fail.lock().map(|mut f| f.insert(fault, 1)).ok();
        } else {
            b.helm.fail.lock().map(|mut f| f.insert(fault, 1)).ok();
        }
        submit(
            &b,
            vec![work("bad", action, "v"), work("good", Action::Create, "v")],
        )
        .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let s = status(&b, "bad");
        assert_eq!(s.phase, Phase::Failed, "{fault}: {s:?}");
        assert_eq!(s.error_code, Some(code), "{fault}");
        assert!(
            s.last_error.is_some() && s.next_attempt.is_some(),
            "{fault}: {s:?}"
        );
        assert_eq!(
            b.metrics.reconcile_errors.with_label_values(&[code]).get(),
            1,
            "{fault}"
        );
        assert_eq!(
            status(&b, "good").phase,
            Phase::Ready,
            "{fault}: good is unaffected"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_in_flight_finish_and_starts_nothing_queued() {
    let b = bed(1);
    b.helm
        .duration
        .lock()
        .map(|mut d| d.insert("a".into(), Duration::from_secs(60)))
        .ok();
    submit(
        &b,
        vec![work("a", Action::Create, "v"), work("b", Action::Create, "v")],
    )
    .await;
    settle().await;
    let _ = b.stop.send(true);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!b.task.is_finished(), "waits for a's helm");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(b.task.is_finished(), "and returns once it is done");
    assert_eq!(b.helm.calls("upgrade", "a"), 1);
    assert_eq!(b.helm.calls("upgrade", "b"), 0, "queued work does not start");
    assert_eq!(
        status(&b, "a").phase,
        Phase::Ready,
        "a's outcome is still recorded"
    );
}

#[tokio::test(start_paused = true)]
async fn a_deposed_daemon_starts_nothing_and_in_flight_work_finishes() {
    let b = bed(1);
    b.helm
        .duration
        .lock()
        .map(|mut d| d.insert("a".into(), Duration::from_secs(60)))
        .ok();
    submit(
        &b,
        vec![work("a", Action::Create, "v"), work("b", Action::Create, "v")],
    )
    .await;
    settle().await;
    let _ = b.leading.send(false);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(status(&b, "a").phase, Phase::Ready);
    assert_eq!(b.helm.calls("upgrade", "b"), 0, "not the leader: b never starts");
    submit(&b, vec![work("c", Action::Create, "v")]).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(b.helm.calls("upgrade", "c"), 0);
    // Leading again: the next plan's work runs.
    let _ = b.leading.send(true);
    submit(&b, vec![work("b", Action::Create, "v")]).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(b.helm.calls("upgrade", "b"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_dead_election_starts_nothing_and_does_not_spin() {
    let b = bed(1);
    let Bed {
        leading,
        stop,
        task,
        runner,
        helm,
        ..
    } = b;
    drop(leading);
    settle().await;
    let epoch = runner.epoch();
    runner
        .submit(Planned {
            revision: Arc::from("r"),
            works: vec![work("a", Action::Create, "v")],
            epoch,
        })
        .await;
    // A spinning loop would never let paused time reach this deadline.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(helm.calls("upgrade", "a"), 0);
    let _ = stop.send(true);
    assert!(tokio::time::timeout(Duration::from_secs(5), task).await.is_ok());
}

/// Every deleting path passes the one guard at the point of no return, and is counted by path.
#[tokio::test(start_paused = true)]
async fn every_deleting_path_passes_the_guard_and_is_counted() {
    let b = bed(5);
    let counted = |reason: &str| b.metrics.deletions.with_label_values(&[reason]).get();
    let refused = |guard: &str| b.metrics.deletions_blocked.with_label_values(&[guard]).get();
    b.helm.fail.lock().map(|mut f| f.insert("upgrade", 1)).ok();
    let mut reinstall = work("r", Action::Recover(Recovery::Reinstall), "v");
    if let Some(o) = reinstall.observed.as_mut() {
        o.ever_ready = false;
    }
    let was_ready = work("w", Action::Recover(Recovery::Reinstall), "v");
    let mut protected = work("p", Action::Delete, "v");
    if let Some(o) = protected.observed.as_mut() {
        o.protected = true;
    }
    // "c" is a first install whose helm fails: its fresh namespace is removed.
    let works = vec![
        work("c", Action::Create, "v"),
        reinstall,
        was_ready,
        protected,
        work("d", Action::Delete, "v"),
    ];
    submit(&b, works).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(counted("first_install_cleanup"), 1);
    assert_eq!(counted("reinstall"), 1);
    assert_eq!(counted("prune"), 1);
    assert_eq!(
        refused("ever_ready"),
        1,
        "a store that was Ready is never reinstalled"
    );
    assert_eq!(refused("protected"), 1);
    assert_eq!(b.helm.calls("uninstall", "w"), 0);
    assert_eq!(b.helm.calls("uninstall", "p"), 0);
    for store in ["w", "p"] {
        let s = status(&b, store);
        assert_eq!(
            (s.phase, s.error_code),
            (Phase::Failed, Some("deletion_refused")),
            "{store}"
        );
    }
    assert!(b.runner.recorder().get(&name("d")).is_none(), "d is gone");
}

/// A deletion of a store whose namespace records this final-backup policy.
fn deletion(store: &str, policy: Option<&str>) -> Work {
    let mut w = work(store, Action::Delete, "gone");
    if let Some(o) = w.observed.as_mut() {
        o.final_backup = policy.map(str::to_string);
    }
    w
}

/// When helm started uninstalling `release`, if it did.
fn uninstalled_at(b: &Bed, release: &str) -> Option<Instant> {
    let s = b.helm.started.lock().ok()?;
    s.iter()
        .find(|(op, r, _)| *op == "uninstall" && r == release)
        .map(|c| c.2)
}

#[tokio::test(start_paused = true)]
async fn a_deletion_waits_for_its_final_backup_and_uninstalls_only_after_it() {
    let b = bed(2);
    b.backups.with_cronjob("store-a");
    *b.backups.duration.lock().unwrap_or_else(|p| p.into_inner()) = Some(Duration::from_secs(120));
    submit(&b, vec![deletion("a", Some("required"))]).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        status(&b, "a").phase,
        Phase::Deleting,
        "deleting while the backup runs"
    );
    assert_eq!(
        b.helm.calls("uninstall", "a"),
        0,
        "nothing is uninstalled before the backup ends"
    );
    assert_eq!(b.backups.calls("start store-a a-backup").len(), 1);
    tokio::time::sleep(Duration::from_secs(70)).await;
    let done = b.backups.calls("done store-a");
    assert_eq!(done.len(), 1, "{:?}", b.backups.calls(""));
    let uninstall = uninstalled_at(&b, "a").expect("uninstalled after the backup");
    assert!(
        uninstall >= done[0].1,
        "uninstall started before the backup finished"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(b.runner.recorder().get(&name("a")).is_none(), "deleted");
    assert_eq!(b.metrics.deletions.with_label_values(&["prune"]).get(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_final_backup_blocks_the_deletion_until_a_retry_succeeds() {
    let b = bed(1);
    b.backups.with_cronjob("store-a");
    *b.backups.failures.lock().unwrap_or_else(|p| p.into_inner()) = 1;
    submit(&b, vec![deletion("a", Some("required"))]).await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    let s = status(&b, "a");
    assert_eq!(
        (s.phase, s.error_code),
        (Phase::Failed, Some("final_backup_failed"))
    );
    let err = s.last_error.clone().unwrap_or_default();
    assert!(
        err.contains("a-backup-final-1 failed: dump_failed") && err.contains("container dump exited 1"),
        "{err}"
    );
    assert!(s.next_attempt.is_some(), "retried like any failure: {s:?}");
    assert_eq!(b.helm.calls("uninstall", "a"), 0, "nothing uninstalled");
    let deleted = b
        .cluster
        .calls
        .lock()
        .map(|c| c.iter().any(|c| c.starts_with("delete")))
        .unwrap_or(true);
    assert!(!deleted, "no namespace deleted");
    // The retry (offered again by the next plans) makes a new Job; it succeeds, then the
    // store goes.
    for _ in 0..30 {
        if b.runner.recorder().get(&name("a")).is_none() {
            break;
        }
        submit(&b, vec![deletion("a", Some("required"))]).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert_eq!(
        b.backups.calls("start store-a").len(),
        2,
        "{:?}",
        b.backups.calls("")
    );
    assert_eq!(b.helm.calls("uninstall", "a"), 1);
    assert!(
        b.runner.recorder().get(&name("a")).is_none(),
        "deleted after the retry"
    );
}

#[tokio::test(start_paused = true)]
async fn stores_without_backups_go_without_one_but_a_missing_cronjob_that_was_there_blocks() {
    let b = bed(3);
    b.backups.with_cronjob("store-opted");
    submit(
        &b,
        vec![
            deletion("opted", Some("opted-out")),
            deletion("off", Some("disabled")),
            deletion("old", None),
            deletion("lost", Some("required")),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    for store in ["opted", "off", "old"] {
        assert!(b.runner.recorder().get(&name(store)).is_none(), "{store} deleted");
        assert_eq!(b.helm.calls("uninstall", store), 1, "{store}");
    }
    assert!(
        b.backups.calls("start store-opted").is_empty(),
        "final = false: no Job"
    );
    assert!(
        b.backups.calls("start store-off").is_empty(),
        "backups off: no Job"
    );
    assert_eq!(
        b.backups.calls("start store-old").len(),
        1,
        "looked for a CronJob, found none"
    );
    let s = status(&b, "lost");
    assert_eq!(
        (s.phase, s.error_code),
        (Phase::Failed, Some("final_backup_failed"))
    );
    assert!(
        s.last_error
            .unwrap_or_default()
            .contains("backup CronJob lost-backup is missing")
    );
    assert_eq!(b.helm.calls("uninstall", "lost"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_final_backup_that_outlasts_its_timeout_fails_the_deletion() {
    let settings = crate::config::BackupSettings {
        repository: "/repository".into(),
        backend: crate::config::Backend::Local,
        secret: crate::config::SecretRef {
            name: "storekeeper-backup".into(),
            namespace: "storekeeper".into(),
        },
        schedule: "@daily".into(),
        retention: crate::config::Retention {
            keep_daily: 1,
            keep_weekly: 0,
            keep_monthly: 0,
        },
        final_timeout: Duration::from_secs(30),
    };
    let b = bed_with(1, Some(Arc::new(settings)));
    b.backups.with_cronjob("store-a");
    *b.backups.duration.lock().unwrap_or_else(|p| p.into_inner()) = Some(Duration::from_secs(600));
    submit(&b, vec![deletion("a", Some("required"))]).await;
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(status(&b, "a").phase, Phase::Deleting);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = status(&b, "a");
    assert_eq!(
        (s.phase, s.error_code),
        (Phase::Failed, Some("final_backup_timeout"))
    );
    assert_eq!(
        b.backups.calls("copy store-a").len(),
        1,
        "the Secret is refreshed first"
    );
    assert_eq!(b.helm.calls("uninstall", "a"), 0);
}
