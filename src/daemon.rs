//! The daemon behind `storekeeper run`: wiring. The planning loop reads the source, observes
//! the cluster and hands the plan to the runner; it wakes on a file event, a webhook, SIGHUP,
//! the interval, or the end of an operation, and never waits on helm. The runner starts each
//! store's work on its own (see [`crate::runner`]).
//!
//! An unreadable source keeps the last good snapshot in force (never "no stores"). The first
//! plan and every `resync_interval` read release state for every store to heal drift.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::backup::monitor::BackupMonitor;
use crate::cluster::{self, Cluster};
use crate::config::{Settings, SourceSettings};
use crate::events::{EventsTask, KubeEvents};
use crate::execute::Executor;
use crate::helm::Helm;
use crate::leader::{Leader, LeaderConfig};
use crate::metrics::Metrics;
use crate::notify::NotifierTasks;
use crate::plan::Step;
use crate::reconcile::Planner;
use crate::record::{OperationLog, Outlets, Recorder, Statuses};
use crate::runner::Runner;
use crate::sdnotify::{self, Notifier};
use crate::server::{self, AppState, Health, WebhookHandler, WebhookReject};
use crate::source::live::{Poll, Source};
use crate::source::webhook::{RateLimiter, ReplayGuard, WebhookError};
use crate::source::{self, Snapshot};
use crate::spec::StoreName;
use crate::status::Phase;

/// A step that waits for a release in progress: its next decision depends on time.
const IN_PROGRESS: crate::plan::Action = crate::plan::Action::Skip(crate::plan::Skip::InProgress);

/// The runner and planner the daemon and the one-shot commands use.
pub type LiveRunner = Runner<Cluster, Helm>;
pub type LivePlanner = Planner<Cluster, Helm>;

/// Reads the configured source once (for `plan` and `apply`).
pub fn read_source(settings: &Settings) -> anyhow::Result<Snapshot> {
    Ok(source::live::read_once(settings)?)
}

/// Re-reads the daemon config on SIGHUP: the signals, and how to load (file + flag overrides).
pub struct Reload {
    pub signals: mpsc::Receiver<()>,
    pub load: Box<dyn Fn() -> anyhow::Result<Settings> + Send>,
}

/// How long a source may go unread before readiness says stale: three missed reads.
fn stale_after(settings: &Settings) -> Duration {
    let interval = match &settings.source {
        SourceSettings::Directory { .. } => settings.reconcile.interval,
        SourceSettings::Git(g) => g.poll_interval.max(settings.reconcile.interval),
    };
    interval * 3
}

/// The planning loop ticks at least every interval and never waits on helm; a Git fetch has
/// its own timeout. Past this, `/healthz` fails.
fn alive_after(settings: &Settings) -> Duration {
    settings.reconcile.interval * 3 + Duration::from_secs(120)
}

/// Connects to the cluster: the helm binary first (a wrong binary is a config error and fatal),
/// then the API client, retried with backoff (1 s doubling to 30 s) until the API server answers
/// or shutdown begins. Each attempt is logged and its reason shown by `/readyz`; each also
/// counts as a heartbeat, so `/healthz` stays alive however long the cluster takes to appear.
/// `None`: shutdown came first.
pub async fn connect(
    settings: &Settings,
    metrics: &Arc<Metrics>,
    health: &Health,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<Option<(Arc<Cluster>, Arc<Helm>)>> {
    let helm = detect_helm(settings, metrics).await?;
    let mut delay = Duration::from_secs(1);
    for attempt in 1u32.. {
        health.heartbeat();
        match cluster::client(&settings.cluster).await {
            Ok((client, target)) => {
                info!(attempt, cluster = %target, "connected to the cluster");
                return Ok(Some((Arc::new(Cluster::new(client)), Arc::new(helm))));
            }
            Err(e) => {
                health.cluster_failed(e.to_string());
                warn!(attempt, error = %e, retry_in_s = delay.as_secs(), "cannot connect to the cluster; retrying");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|s| *s) => return Ok(None),
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
    Ok(None)
}

/// The configured helm binary, its major version detected, counted in `metrics`.
async fn detect_helm(settings: &Settings, metrics: &Arc<Metrics>) -> anyhow::Result<Helm> {
    let helm = Helm::detect(
        &settings.helm.binary,
        settings.cluster.kubeconfig.as_deref(),
        settings.cluster.context.as_deref(),
        settings.helm.timeout,
    )
    .await?;
    Ok(helm.with_metrics(Arc::clone(metrics)))
}

/// Connects once, for the one-shot commands (`plan`, `apply`): no retry, the error (the same
/// one the daemon shows) is the answer.
pub async fn connect_once(
    settings: &Settings,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(Arc<Cluster>, Arc<Helm>)> {
    let helm = detect_helm(settings, metrics).await?;
    let (client, _) = cluster::client(&settings.cluster).await?;
    Ok((Arc::new(Cluster::new(client)), Arc::new(helm)))
}

/// Builds the executor for a connection.
pub fn executor(
    settings: &Settings,
    cluster: &Arc<Cluster>,
    helm: &Arc<Helm>,
    recorder: &Arc<Recorder<Cluster>>,
    metrics: &Arc<Metrics>,
) -> Executor<Cluster, Helm> {
    Executor {
        cluster: Arc::clone(cluster),
        helm: Arc::clone(helm),
        recorder: Arc::clone(recorder),
        metrics: Arc::clone(metrics),
        delete_timeout: settings.helm.timeout,
        backups: crate::backup::Backups::kube(cluster.client(), settings.backup.clone()),
    }
}

/// What the daemon's parts share: the metrics, readiness, every store's status and the last
/// operations (which the HTTP server shows), the last plan's time, and reconcile requests.
#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    statuses: Statuses,
    operations: OperationLog,
    planned_at: Arc<Mutex<Option<jiff::Timestamp>>>,
    requests: Arc<Requests>,
    /// The last backup of every store (fed by `backup::monitor`'s watch once connected).
    backups: Arc<BackupMonitor>,
}

/// What `POST /reconcile` asked for, taken by the next plan: `Some(empty)` means every store.
#[derive(Default)]
struct Requests(Mutex<Option<Vec<StoreName>>>);

impl Requests {
    fn ask(&self, stores: Vec<StoreName>) {
        let mut pending = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match pending.as_mut() {
            Some(all) if all.is_empty() => {}
            Some(named) if !stores.is_empty() => named.extend(stores),
            _ => *pending = Some(stores),
        }
    }

    fn take(&self) -> Option<Vec<StoreName>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Runs until `shutdown` turns true; in-flight operations finish before it returns.
/// `bound` receives the HTTP server's address once it listens.
pub async fn run(
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
    bound: oneshot::Sender<SocketAddr>,
    reload: Option<Reload>,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let shared = Shared {
        backups: Arc::new(BackupMonitor::new(Arc::clone(&metrics))),
        metrics,
        health: Arc::new(Health::new(stale_after(&settings), alive_after(&settings))),
        statuses: Statuses::default(),
        operations: OperationLog::default(),
        planned_at: Arc::default(),
        requests: Arc::default(),
    };
    // Two wake-up paths: file events and webhooks wake the source reader; a new snapshot and
    // the end of an operation wake the planner.
    let (plan_tx, plan_rx) = mpsc::channel(1);
    let reader = SourceReader {
        metrics: Arc::clone(&shared.metrics),
        health: Arc::clone(&shared.health),
        source_revision: Arc::default(),
        snapshots: Arc::new(watch::channel(None).0),
        plan: plan_tx.clone(),
    };
    let (source, wake) = reader.open(&settings);
    let (server, server_stop) = start_server(&settings, &shared, &reader, &source, &wake, bound)?;
    let side = SideTasks::spawn(&shared.health, &shutdown, server_stop);
    // The source is read from the start, so /stores and /readyz tell about it while the
    // cluster is still out of reach.
    let source_task = reader.spawn(&settings, source, wake, shutdown.clone());
    shared.metrics.up.set(1);
    let result = match connect(&settings, &shared.metrics, &shared.health, &mut shutdown).await? {
        None => Ok(()),
        Some(conn) => {
            let backup_jobs = crate::backup::monitor::spawn(conn.0.client(), Arc::clone(&shared.backups));
            let lp = Loop::new(
                settings,
                conn,
                &shared,
                reader,
                source_task,
                plan_tx,
                side.notifier.clone(),
            )?;
            let alerts = lp.spawn_backup_alerts(Arc::clone(&shared.backups));
            let outcome = lp.run(shutdown, plan_rx, reload, server).await;
            backup_jobs.abort();
            alerts.abort();
            outcome
        }
    };
    shared.health.shutting_down();
    shared.metrics.up.set(0);
    side.stop();
    info!("storekeeper stopped");
    result
}

/// Starts the outlets every outcome is told to: the `[[notify]]` targets and Kubernetes Events.
fn start_outlets(
    settings: &Settings,
    cluster: &Cluster,
    metrics: &Metrics,
) -> anyhow::Result<(Outlets, (NotifierTasks, EventsTask))> {
    let (notifier, notify_tasks) = crate::notify::Notifier::start(&settings.notify, &metrics.notify)?;
    let (instance, _) = crate::leader::instance_name();
    let (events, events_task) = KubeEvents::start(cluster.client(), &instance, &metrics.events);
    let outlets: Outlets = vec![Arc::new(notifier), Arc::new(events)];
    Ok((outlets, (notify_tasks, events_task)))
}

/// Waits a little for the notification and Event workers to send what is queued.
async fn finish_outlets(outlets: Option<(NotifierTasks, EventsTask)>) {
    let Some((notify, events)) = outlets else {
        return;
    };
    let grace = Duration::from_secs(5);
    let aborted = notify.finish(grace).await;
    if aborted > 0 || !events.finish(grace).await {
        warn!("notifications or Kubernetes Events still queued at shutdown were dropped");
    }
}

/// Spawns the HTTP server (the status page behind `[http] token_file` when set). It outlives
/// the drain, so `/readyz` can say "shutting down"; it stops last.
fn start_server(
    settings: &Settings,
    shared: &Shared,
    reader: &SourceReader,
    source: &Source,
    wake: &Wake,
    bound: oneshot::Sender<SocketAddr>,
) -> anyhow::Result<(JoinHandle<std::io::Result<()>>, watch::Sender<bool>)> {
    let (requests, fetch, source_wake, plan) = (
        Arc::clone(&shared.requests),
        source.fetch_flag(),
        wake.tx.clone(),
        reader.plan.clone(),
    );
    let reconcile: server::ReconcileHandler = Arc::new(move |stores| {
        requests.ask(stores);
        if let Some(f) = &fetch {
            f.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let _ = source_wake.try_send(());
        let _ = plan.try_send(());
    });
    let state = AppState {
        metrics: Arc::clone(&shared.metrics),
        health: Arc::clone(&shared.health),
        statuses: Arc::clone(&shared.statuses),
        source_revision: Arc::clone(&reader.source_revision),
        webhook: webhook_handler(settings, source, wake.tx.clone())?,
        operations: Arc::clone(&shared.operations),
        planned_at: Arc::clone(&shared.planned_at),
        reconcile: Some(reconcile),
        backups: Some(Arc::clone(&shared.backups)),
    };
    let token = match &settings.http.token_file {
        Some(path) => Some(Arc::new(server::AccessToken::load(path)?)),
        None => None,
    };
    let page = server::PageOptions { view: None, token };
    let (stop, stop_rx) = watch::channel(false);
    let handle = tokio::spawn(server::serve_with(
        settings.http.listen,
        state,
        page,
        stop_rx,
        bound,
    ));
    Ok((handle, stop))
}

/// The daemon's helpers beside the loop: readiness off at the first signal, the systemd
/// watchdog, and the HTTP server's stop switch (the server stops last).
struct SideTasks {
    notifier: Option<Notifier>,
    drain_watch: JoinHandle<()>,
    watchdog: JoinHandle<()>,
    server_stop: watch::Sender<bool>,
}

impl SideTasks {
    fn spawn(
        health: &Arc<Health>,
        shutdown: &watch::Receiver<bool>,
        server_stop: watch::Sender<bool>,
    ) -> SideTasks {
        let notifier = Notifier::from_env();
        SideTasks {
            drain_watch: spawn_drain_watch(Arc::clone(health), shutdown.clone()),
            watchdog: spawn_watchdog(notifier.clone(), Arc::clone(health), shutdown.clone()),
            notifier,
            server_stop,
        }
    }

    fn stop(self) {
        if let Some(n) = &self.notifier
            && let Err(e) = n.stopping()
        {
            warn!(error = %e, "cannot notify systemd");
        }
        self.watchdog.abort();
        self.drain_watch.abort();
        let _ = self.server_stop.send(true);
    }
}

/// The planning loop and everything it owns.
struct Loop {
    settings: Settings,
    planner: LivePlanner,
    cluster: Arc<Cluster>,
    helm: Arc<Helm>,
    runner: Arc<LiveRunner>,
    recorder: Arc<Recorder<Cluster>>,
    reader: SourceReader,
    source_task: JoinHandle<()>,
    /// The last good snapshot, published by the source reader.
    snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    notifier: Option<Notifier>,
    shared: Shared,
    /// The notification and Event workers, finished after the drain.
    outlets: Option<(NotifierTasks, EventsTask)>,
    last_resync: Option<Instant>,
    /// What the last successful plan was made from; see [`Basis`].
    last_plan: Option<Basis>,
    announced_ready: bool,
    last_summary: String,
}

/// Everything a plan depends on, to skip the next plan when none of it moved: the snapshot (by
/// pointer), the namespaces (changes by others, from the watch cache), the operations that ended
/// (the runner's epoch). Release state is read only for stores that changed or are not Ready; a
/// plan that waits on a release in progress (or a resync) depends on time too, so it is never
/// skipped; nor is one past the first time a step named (a grace deadline, the creation rate
/// cap's start time), since by then its answer changes. Retries need no plan: the runner starts
/// them when due.
struct Basis {
    snapshot: Arc<Snapshot>,
    cluster: Option<u64>,
    epoch: u64,
    timeless: bool,
    /// The earliest deadline or start time of the plan's steps still ahead when it was made.
    until: Option<jiff::Timestamp>,
}

impl Basis {
    fn new<'a>(
        snapshot: &Arc<Snapshot>,
        cluster: Option<u64>,
        epoch: u64,
        steps: impl IntoIterator<Item = &'a Step>,
    ) -> Basis {
        // Only times still ahead: one that has passed already shaped this plan.
        let now = jiff::Timestamp::now();
        let (mut timeless, mut until) = (true, None::<jiff::Timestamp>);
        for s in steps {
            timeless &= s.action != IN_PROGRESS;
            for t in [s.deadline, s.not_before].into_iter().flatten() {
                if t > now && until.is_none_or(|u| t < u) {
                    until = Some(t);
                }
            }
        }
        Basis {
            snapshot: Arc::clone(snapshot),
            cluster,
            epoch,
            timeless,
            until,
        }
    }

    fn holds(&self, snapshot: &Arc<Snapshot>, cluster: Option<u64>, epoch: u64) -> bool {
        self.timeless
            && self.until.is_none_or(|u| jiff::Timestamp::now() < u)
            && cluster.is_some()
            && self.cluster == cluster
            && self.epoch == epoch
            && Arc::ptr_eq(&self.snapshot, snapshot)
    }
}

/// Why the loop ended early: a part of the daemon that must not die did.
fn fatal(what: &str) -> anyhow::Error {
    error!("{what}; stopping after in-flight operations finish");
    anyhow::anyhow!("{what}")
}

impl Loop {
    fn new(
        settings: Settings,
        (cluster, helm): (Arc<Cluster>, Arc<Helm>),
        shared: &Shared,
        reader: SourceReader,
        source_task: JoinHandle<()>,
        plan: mpsc::Sender<()>,
        notifier: Option<Notifier>,
    ) -> anyhow::Result<Loop> {
        let metrics = Arc::clone(&shared.metrics);
        let (outlets, tasks) = start_outlets(&settings, &cluster, &metrics)?;
        let recorder = Recorder::new(
            Arc::clone(&cluster),
            Arc::clone(&metrics),
            Arc::clone(&shared.statuses),
        )
        .with(Arc::clone(&shared.operations), outlets);
        let recorder = Arc::new(recorder);
        let exec = executor(&settings, &cluster, &helm, &recorder, &metrics);
        // Namespaces changed by others wake the planner like a finished operation does.
        cluster.watch_namespaces(plan.clone(), Arc::clone(&metrics));
        let runner = Arc::new(Runner::new(exec, settings.helm.max_concurrent.get(), Some(plan)));
        Ok(Loop {
            planner: Planner::new(settings.clone(), Arc::clone(&cluster), Arc::clone(&helm)),
            snapshots: reader.snapshots.subscribe(),
            health: Arc::clone(&shared.health),
            settings,
            cluster,
            helm,
            runner,
            recorder,
            reader,
            source_task,
            metrics,
            notifier,
            shared: shared.clone(),
            outlets: Some(tasks),
            last_resync: None,
            last_plan: None,
            announced_ready: false,
            last_summary: String::new(),
        })
    }

    async fn run(
        mut self,
        mut shutdown: watch::Receiver<bool>,
        mut trigger_rx: mpsc::Receiver<()>,
        mut reload: Option<Reload>,
        mut server: JoinHandle<std::io::Result<()>>,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (drained_tx, mut leading) = self.start_leader();
        let runner = tokio::spawn(Arc::clone(&self.runner).run(stop_rx, leading.clone(), false));
        info!(helm_major = self.helm.major(), "storekeeper started");
        let mut outcome = Ok(());
        while !*shutdown.borrow() {
            let leader = *leading.borrow();
            self.tick(leader).await;
            let reload_signal = async {
                match reload.as_mut() {
                    Some(r) => r.signals.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(self.nap()) => {}
                _ = trigger_rx.recv() => {}
                r = leading.changed() => if r.is_err() {
                    outcome = Err(fatal("leader election task ended"));
                    break;
                },
                _ = shutdown.changed() => {}
                r = &mut server => {
                    outcome = Err(fatal(&server_failure(&self.settings, r)));
                    break;
                }
                Some(()) = reload_signal => {
                    if let Some(r) = &reload {
                        self.reload(&r.load, &shutdown);
                    }
                }
            }
            // Collapse a burst of wake-ups into the one plan that follows.
            while trigger_rx.try_recv().is_ok() {}
        }
        self.health.shutting_down();
        self.source_task.abort();
        let _ = stop_tx.send(true);
        if let Err(e) = runner.await {
            warn!(error = %e, "runner task failed");
        }
        // Only now, with helm drained, may the lease go (a standby must not start early).
        let _ = drained_tx.send(true);
        let released = async { while leading.changed().await.is_ok() {} };
        let _ = tokio::time::timeout(Duration::from_secs(5), released).await;
        // Dropping the loop drops the runner and the recorder, and with them every outlet
        // sender: the workers then send what is queued, briefly.
        let outlets = self.outlets.take();
        drop(self);
        finish_outlets(outlets).await;
        outcome
    }

    /// Tells every failed backup the monitor sees to the outlets (notifications, Events), with
    /// the store's phase at that moment, until aborted. It holds the recorder weakly: once the
    /// loop is gone, the outlets' senders must close so their workers finish.
    fn spawn_backup_alerts(&self, monitor: Arc<BackupMonitor>) -> JoinHandle<()> {
        let recorder = Arc::downgrade(&self.recorder);
        tokio::spawn(async move {
            loop {
                monitor.failed().await;
                let Some(recorder) = recorder.upgrade() else {
                    return;
                };
                for failure in monitor.take_failures() {
                    recorder.backup_failed(&failure);
                }
            }
        })
    }

    /// How long to sleep before the next tick: the interval, or less when a step's deadline or
    /// start time comes sooner (a grace period ends on time, not up to an interval late).
    fn nap(&self) -> Duration {
        let interval = self.settings.reconcile.interval;
        let Some(until) = self.last_plan.as_ref().and_then(|b| b.until) else {
            return interval;
        };
        let left = until.duration_since(jiff::Timestamp::now());
        Duration::try_from(left).map_or(Duration::ZERO, |d| d.min(interval))
    }

    /// Starts leader election, or a channel that always says "leader". Returns the sender that
    /// tells the election the daemon has drained, and the leadership watch.
    fn start_leader(&self) -> (watch::Sender<bool>, watch::Receiver<bool>) {
        let (drained_tx, drained_rx) = watch::channel(false);
        let leading = match &self.settings.leader_election {
            Some(l) => {
                let config = LeaderConfig::from_settings(l);
                info!(identity = %config.identity, lease = %config.name, "leader election on");
                Leader::new(self.cluster.client(), config).spawn(drained_rx)
            }
            None => always_leader(drained_rx),
        };
        (drained_tx, leading)
    }

    /// One pass: as the leader, observe, plan from the last good snapshot and queue.
    async fn tick(&mut self, leader: bool) {
        self.health.heartbeat();
        self.metrics.leader.set(i64::from(leader));
        if !leader {
            // A standby stays ready: it reads the source and would take over at once.
            self.health.cluster_succeeded();
            self.last_plan = None;
            return;
        }
        let Some(snapshot) = self.snapshots.borrow_and_update().clone() else {
            return;
        };
        let started = Instant::now();
        let asked = self.shared.requests.take();
        if let Some(stores) = &asked {
            info!(stores = stores.len(), "Reconcile requested");
            self.runner.retry_now(stores);
        }
        let resync = asked.is_some()
            || self
                .last_resync
                .is_none_or(|t| t.elapsed() >= self.settings.reconcile.resync_interval);
        let (cluster, epoch) = (self.cluster.changes(), self.runner.epoch());
        if !resync && self.unchanged(&snapshot, cluster, epoch) {
            return;
        }
        let running = self.runner.running();
        self.last_plan = None;
        match self.planner.plan(&snapshot, resync, &running, epoch).await {
            Ok(planned) => {
                self.health.cluster_succeeded();
                if resync {
                    self.last_resync = Some(Instant::now());
                }
                let steps = planned.works.iter().map(|w| &w.step);
                self.last_plan = Some(Basis::new(&snapshot, cluster, epoch, steps));
                let gone = self.gone(&planned);
                self.runner.submit(planned).await;
                self.runner.forget(&gone).await;
                if let Ok(mut t) = self.shared.planned_at.lock() {
                    *t = Some(jiff::Timestamp::now());
                }
                self.metrics.reconcile_cycles.with_label_values(&["ok"]).inc();
            }
            Err(e) => {
                self.health.cluster_failed(e.to_string());
                self.metrics.reconcile_cycles.with_label_values(&["error"]).inc();
                warn!(error = %e, code = e.code(), "cannot plan; nothing changes until the next try");
            }
        }
        self.metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        self.notify_systemd();
        // A plan's transient structures (O(stores)) are gone now; give their pages back.
        crate::alloc::release();
    }

    /// Whether nothing the last plan depended on moved (see [`Basis`]); if so, the wake-up is
    /// counted and no plan is made.
    fn unchanged(&mut self, snapshot: &Arc<Snapshot>, cluster: Option<u64>, epoch: u64) -> bool {
        let holds = self
            .last_plan
            .as_ref()
            .is_some_and(|b| b.holds(snapshot, cluster, epoch));
        if holds {
            // The watch is live (else `cluster` is None), so the cluster is reachable.
            self.health.cluster_succeeded();
            self.metrics
                .reconcile_cycles
                .with_label_values(&["unchanged"])
                .inc();
            self.notify_systemd();
        }
        holds
    }

    /// Stores with a status that the plan no longer mentions (gone from file and cluster).
    fn gone(&self, planned: &crate::runner::Planned) -> Vec<crate::spec::StoreName> {
        let named: std::collections::BTreeSet<&crate::spec::StoreName> =
            planned.works.iter().map(|w| &w.step.store).collect();
        let running = self.runner.running();
        self.recorder
            .names()
            .into_iter()
            .filter(|n| !named.contains(n) && !running.contains(n))
            .collect()
    }

    fn notify_systemd(&mut self) {
        let summary = summary(&self.recorder.phase_counts());
        if let Some(n) = &self.notifier {
            let sent = if !self.announced_ready && self.health.ready().is_ok() {
                self.announced_ready = true;
                n.ready(&summary)
            } else if summary != self.last_summary {
                n.status(&summary)
            } else {
                Ok(())
            };
            if let Err(e) = sent {
                warn!(error = %e, "cannot notify systemd");
            }
        }
        self.last_summary = summary;
    }

    /// SIGHUP: load the new config; operations started from now on use it. An invalid config
    /// is logged and counted, and the running one stays.
    fn reload(
        &mut self,
        load: &(dyn Fn() -> anyhow::Result<Settings> + Send),
        shutdown: &watch::Receiver<bool>,
    ) {
        let settings = match load() {
            Ok(s) => s,
            Err(e) => {
                self.metrics.source_errors.with_label_values(&["config"]).inc();
                warn!(error = %format!("{e:#}"), "invalid new config; keeping the running one");
                return;
            }
        };
        if settings.http.listen != self.settings.http.listen {
            warn!("http.listen changes take effect after a restart");
        }
        let (was, now) = (&self.settings.cluster, &settings.cluster);
        if (&was.kubeconfig, &was.context, &was.namespace_prefix)
            != (&now.kubeconfig, &now.context, &now.namespace_prefix)
            || settings.helm.binary != self.settings.helm.binary
        {
            warn!(
                "cluster.kubeconfig, cluster.context, cluster.namespace_prefix and helm.binary changes take effect after a restart"
            );
        }
        // The source is read again from scratch: its location or the parser's defaults (the
        // base domain) may have changed.
        // Until the new reader's first snapshot, nothing is planned (it replaces the old one
        // even when the files are unchanged).
        self.source_task.abort();
        self.reader.snapshots.send_replace(None);
        let (source, wake) = self.reader.open(&settings);
        self.source_task = self.reader.spawn(&settings, source, wake, shutdown.clone());
        self.runner.reconfigure(
            executor(
                &settings,
                &self.cluster,
                &self.helm,
                &self.recorder,
                &self.metrics,
            ),
            settings.helm.max_concurrent.get(),
        );
        self.planner = Planner::new(
            settings.clone(),
            Arc::clone(&self.cluster),
            Arc::clone(&self.helm),
        );
        self.settings = settings;
        self.last_resync = None;
        self.last_plan = None;
        info!("config reloaded");
    }
}

/// Wakes the source reader early.
struct Wake {
    tx: mpsc::Sender<()>,
    rx: mpsc::Receiver<()>,
}

/// Reads the source on its own schedule (the interval, a file event, a webhook), so neither a
/// slow plan makes the source look stale nor does a webhook's fetch wait for planning. Each new
/// snapshot is published and wakes the planner.
#[derive(Clone)]
struct SourceReader {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    source_revision: Arc<Mutex<Option<String>>>,
    snapshots: Arc<watch::Sender<Option<Arc<Snapshot>>>>,
    plan: mpsc::Sender<()>,
}

impl SourceReader {
    /// Opens the configured source, with the channel that wakes the reader (file events; the
    /// webhook gets the sender).
    fn open(&self, settings: &Settings) -> (Source, Wake) {
        let (tx, rx) = mpsc::channel(1);
        let (source, watch_error) = Source::open(settings, tx.clone());
        if let Some(e) = watch_error {
            self.metrics.source_errors.with_label_values(&[e.kind()]).inc();
            warn!(error = %e, "cannot watch the store directory; re-reading it every interval instead");
        }
        (source, Wake { tx, rx })
    }

    fn spawn(
        &self,
        settings: &Settings,
        mut source: Source,
        wake: Wake,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let me = self.clone();
        let (defaults, interval) = (settings.spec_defaults(), settings.reconcile.interval);
        let Wake { mut rx, .. } = wake;
        tokio::spawn(async move {
            while !*shutdown.borrow() {
                me.read(&mut source, &defaults).await;
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    _ = rx.recv() => {}
                    _ = shutdown.changed() => {}
                }
            }
        })
    }

    async fn read(&self, source: &mut Source, defaults: &crate::spec::SpecDefaults) {
        let snapshot = match source.poll(defaults).await {
            Poll::NotDue => return,
            Poll::Failed(e) => {
                self.metrics.source_errors.with_label_values(&[e.kind()]).inc();
                warn!(error = %e, "cannot read the source; keeping the last good snapshot");
                return;
            }
            Poll::Unchanged(s) => {
                self.succeeded();
                // The first read after a reopen publishes even an unchanged snapshot.
                if self.snapshots.borrow().is_some() {
                    return;
                }
                s
            }
            Poll::Changed(s) => {
                self.succeeded();
                s
            }
        };
        if let Ok(mut r) = self.source_revision.lock() {
            *r = Some(snapshot.revision.clone());
        }
        self.metrics.set_spec_errors(&spec_errors(&snapshot));
        self.snapshots.send_replace(Some(snapshot));
        let _ = self.plan.try_send(());
    }

    fn succeeded(&self) {
        self.health.source_succeeded();
        self.metrics.source_last_success.set(unix_now());
    }
}

fn server_failure(settings: &Settings, r: Result<std::io::Result<()>, tokio::task::JoinError>) -> String {
    let why = match r {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(())) => "stopped".to_string(),
        Err(e) => e.to_string(),
    };
    format!("HTTP server on {} failed: {why}", settings.http.listen)
}

/// Always the leader: the sender lives in a task until the daemon has drained, so `changed()`
/// does not fire before (a dropped sender would make it return at once).
fn always_leader(mut drained: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(true);
    tokio::spawn(async move {
        let _ = drained.wait_for(|d| *d).await;
        drop(tx);
    });
    rx
}

fn spec_errors(s: &Snapshot) -> BTreeMap<crate::spec::StoreName, usize> {
    s.stores
        .iter()
        .filter_map(|(n, r)| r.as_ref().err().map(|e| (n.clone(), e.diagnostics.len())))
        .collect()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A one-line summary for systemd's STATUS=.
fn summary(counts: &BTreeMap<Phase, usize>) -> String {
    let count = |p: Phase| counts.get(&p).copied().unwrap_or(0);
    format!(
        "{} stores: {} ready, {} failed, {} provisioning, {} blocked, {} invalid",
        counts.values().sum::<usize>(),
        count(Phase::Ready),
        count(Phase::Failed),
        count(Phase::Provisioning) + count(Phase::Pending),
        count(Phase::Blocked),
        count(Phase::Invalid)
    )
}

/// Readiness turns false the moment shutdown begins, while in-flight work drains.
fn spawn_drain_watch(health: Arc<Health>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let _ = shutdown.wait_for(|s| *s).await;
        health.shutting_down();
    })
}

/// Pings the systemd watchdog while the loop keeps ticking; a wedged loop stops the pings.
fn spawn_watchdog(
    notifier: Option<Notifier>,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (Some(n), Some(every)) = (notifier, sdnotify::watchdog_interval()) else {
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => {}
            }
            if health.alive()
                && let Err(e) = n.watchdog()
            {
                warn!(error = %e, "cannot ping the systemd watchdog");
            }
        }
    })
}

/// The `POST /hooks/git` handler: only for a Git source with a webhook secret. Verifies the
/// signature, limits the rate, refuses replays, then asks for a fetch and wakes the loop.
fn webhook_handler(
    settings: &Settings,
    source: &Source,
    trigger: mpsc::Sender<()>,
) -> anyhow::Result<Option<WebhookHandler>> {
    let (SourceSettings::Git(git), Some(flag)) = (&settings.source, source.fetch_flag()) else {
        return Ok(None);
    };
    let Some(secret_file) = &git.webhook_secret_file else {
        return Ok(None);
    };
    let secret = std::fs::read(secret_file)
        .map_err(|e| anyhow::anyhow!("cannot read webhook secret {}: {e}", secret_file.display()))?;
    let secret: Vec<u8> = secret.trim_ascii().to_vec();
    let limiter = Mutex::new(RateLimiter::new(10, 30));
    let replays = Mutex::new(ReplayGuard::new(1024));
    let internal = || WebhookReject {
        status: 500,
        code: "internal",
    };
    Ok(Some(Arc::new(
        move |headers: &[(String, String)], body: &[u8]| {
            source::webhook::verify(headers, body, &secret).map_err(reject)?;
            limiter
                .lock()
                .map_err(|_| internal())?
                .check(Instant::now())
                .map_err(reject)?;
            replays
                .lock()
                .map_err(|_| internal())?
                .check(headers)
                .map_err(reject)?;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = trigger.try_send(());
            Ok("accepted")
        },
    )))
}

fn reject(e: WebhookError) -> WebhookReject {
    let status = match e {
        WebhookError::BodyTooLarge => 413,
        WebhookError::RateLimited => 429,
        WebhookError::Replayed => 409,
        WebhookError::BadDeliveryId => 400,
        _ => 401,
    };
    WebhookReject {
        status,
        code: e.code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Skip};

    fn snapshot() -> Arc<Snapshot> {
        Arc::new(Snapshot {
            revision: "dir:x".into(),
            stores: BTreeMap::new(),
            unnamed: Vec::new(),
            files: BTreeMap::new(),
        })
    }

    #[test]
    fn a_plan_is_skipped_only_when_nothing_it_depended_on_moved() {
        let s = snapshot();
        let basis = |timeless| Basis {
            snapshot: Arc::clone(&s),
            cluster: Some(4),
            epoch: 7,
            timeless,
            until: None,
        };
        assert!(basis(true).holds(&s, Some(4), 7), "the same everything");
        let equal_but_new = snapshot();
        assert!(
            !basis(true).holds(&equal_but_new, Some(4), 7),
            "another snapshot, even an equal one"
        );
        assert!(!basis(true).holds(&s, Some(5), 7), "someone changed a namespace");
        assert!(
            !basis(true).holds(&s, None, 7),
            "no usable watch cache: always plan"
        );
        assert!(!basis(true).holds(&s, Some(4), 8), "an operation ended");
        assert!(!basis(false).holds(&s, Some(4), 7), "a release was in progress");
        let listed = Basis {
            cluster: None,
            ..basis(true)
        };
        assert!(
            !listed.holds(&s, None, 7),
            "a plan made from a LIST is never the basis for skipping"
        );
    }

    /// A grace deadline or a creation start time ahead makes the plan hold until then; one that
    /// has passed when the plan is made is not a reason to plan again and again.
    #[test]
    fn a_plan_holds_until_the_first_time_a_step_named() {
        let s = snapshot();
        let now = jiff::Timestamp::now();
        let secs = jiff::SignedDuration::from_secs;
        let name = crate::spec::StoreName::new("x").expect("name");
        let mut soon = Step::new(name.clone(), Action::ScheduleDeletion, "gone");
        soon.deadline = Some(now + secs(3600));
        let mut later = Step::new(name.clone(), Action::Skip(Skip::PendingDeletion), "cap");
        later.not_before = Some(now + secs(7200));
        let mut past = Step::new(name, Action::Delete, "due");
        past.deadline = Some(now - secs(5));

        let basis = Basis::new(&s, Some(1), 1, [&later, &soon, &past]);
        assert_eq!(basis.until, soon.deadline, "the earliest time still ahead");
        assert!(basis.holds(&s, Some(1), 1));
        let due = Basis {
            until: Some(now - secs(1)),
            ..Basis::new(&s, Some(1), 1, [])
        };
        assert!(!due.holds(&s, Some(1), 1), "the deadline has come: plan");
        let only_past = Basis::new(&s, Some(1), 1, [&past]);
        assert_eq!(only_past.until, None);
        assert!(only_past.holds(&s, Some(1), 1));
    }
}
