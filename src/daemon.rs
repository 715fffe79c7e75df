//! The daemon behind `storekeeper run`: read the source, plan, execute, wait for a trigger or
//! the interval, repeat — with the HTTP server, readiness, metrics and systemd notifications.
//!
//! An unreadable source keeps the last good snapshot in force (never "no stores"). The first
//! cycle and every `resync_interval` read release state for every store to heal drift.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::config::{Settings, SourceSettings};
use crate::metrics::Metrics;
use crate::reconcile::Reconciler;
use crate::sdnotify::{self, Notifier};
use crate::server::{self, AppState, Health};
use crate::source::{self, Snapshot};
use crate::spec::{SpecDefaults, StoreName};
use crate::status::Phase;

/// Reads the configured directory source.
pub fn read_source(settings: &Settings) -> anyhow::Result<Snapshot> {
    let defaults = SpecDefaults {
        base_domain: settings.cluster.base_domain.clone(),
    };
    match &settings.source {
        SourceSettings::Directory { path } => Ok(source::dir::read(path, &defaults)?),
        SourceSettings::Git(_) => anyhow::bail!("Git sources are not implemented yet; use source.directory"),
    }
}

/// Handles the daemon's pieces share.
pub struct Daemon {
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Wakes the loop early (file watcher, webhook).
    pub trigger: (mpsc::Sender<()>, mpsc::Receiver<()>),
}

/// How long a source may go unread before readiness says stale.
fn stale_after(settings: &Settings) -> Duration {
    let interval = match &settings.source {
        SourceSettings::Directory { .. } => settings.reconcile.interval,
        SourceSettings::Git(g) => g.poll_interval,
    };
    (interval * 3).max(Duration::from_secs(60))
}

/// Runs until `shutdown` turns true; in-flight operations finish before it returns.
/// `bound` receives the HTTP server's address once it listens.
pub async fn run(
    settings: Settings,
    shutdown: watch::Receiver<bool>,
    bound: oneshot::Sender<SocketAddr>,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    // The loop must tick at least once per cycle; a cycle may run helm operations back to back.
    let alive_after = settings.helm.timeout * 2 + settings.reconcile.interval * 2 + Duration::from_secs(60);
    let health = Arc::new(Health::new(stale_after(&settings), alive_after));
    let (tx, rx) = mpsc::channel(1);
    let daemon = Daemon {
        settings,
        metrics,
        health,
        trigger: (tx, rx),
    };
    daemon.run(shutdown, bound).await
}

impl Daemon {
    pub async fn run(
        self,
        mut shutdown: watch::Receiver<bool>,
        bound: oneshot::Sender<SocketAddr>,
    ) -> anyhow::Result<()> {
        let Daemon {
            settings,
            metrics,
            health,
            trigger: (_trigger_tx, mut trigger_rx),
        } = self;
        let notifier = Notifier::from_env();
        let statuses = Arc::new(Mutex::new(BTreeMap::new()));
        let source_revision = Arc::new(Mutex::new(None));
        let state = AppState {
            metrics: Arc::clone(&metrics),
            health: Arc::clone(&health),
            statuses: Arc::clone(&statuses),
            source_revision: Arc::clone(&source_revision),
            webhook: None,
        };
        // The server outlives the loop's drain (so /readyz can say "shutting down"); it stops
        // when the loop has finished.
        let (server_stop, server_stop_rx) = watch::channel(false);
        let server = tokio::spawn(server::serve(settings.http.listen, state, server_stop_rx, bound));
        // Readiness turns false the moment shutdown begins, while in-flight work drains.
        let drain_watch = {
            let (health, mut shutdown) = (Arc::clone(&health), shutdown.clone());
            tokio::spawn(async move {
                while !*shutdown.borrow() {
                    if shutdown.changed().await.is_err() {
                        break;
                    }
                }
                health.shutting_down();
            })
        };
        let watchdog = spawn_watchdog(notifier.clone(), Arc::clone(&health), shutdown.clone());

        let interval = settings.reconcile.interval;
        let resync_interval = settings.reconcile.resync_interval;
        let mut rec = Reconciler::connect(settings, Arc::clone(&metrics)).await?;
        rec.status = statuses;
        let rec = Arc::new(rec);
        info!(helm_major = rec.helm.major(), "storekeeper started");
        metrics.up.set(1);
        let mut last_good: Option<Snapshot> = None;
        let mut last_resync: Option<Instant> = None;
        let mut announced_ready = false;
        let mut last_summary = String::new();
        while !*shutdown.borrow() {
            health.heartbeat();
            let started = Instant::now();
            match read_source(&rec.settings) {
                Ok(s) => {
                    health.source_succeeded();
                    metrics.source_last_success.set(unix_now());
                    if let Ok(mut r) = source_revision.lock() {
                        *r = Some(s.revision.clone());
                    }
                    last_good = Some(s);
                }
                Err(e) => {
                    let kind = e
                        .downcast_ref::<source::SourceError>()
                        .map_or("other", source::SourceError::kind);
                    metrics.source_errors.with_label_values(&[kind]).inc();
                    warn!(error = %e, "cannot read the source; keeping the last good snapshot");
                }
            }
            if let Some(snapshot) = &last_good {
                metrics.set_spec_errors(
                    &snapshot
                        .stores
                        .iter()
                        .filter_map(|(n, r)| r.as_ref().err().map(|e| (n.clone(), e.diagnostics.len())))
                        .collect(),
                );
                let resync = last_resync.is_none_or(|t| t.elapsed() >= resync_interval);
                match rec.plan(snapshot, resync).await {
                    Ok(planned) => {
                        health.cluster_succeeded();
                        if resync {
                            last_resync = Some(Instant::now());
                        }
                        let outcomes = rec.execute(planned, &shutdown).await;
                        let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
                        for o in outcomes.iter().filter(|o| o.step.action.is_change()) {
                            match &o.result {
                                Ok(()) => info!(store = %o.step.store, action = o.step.action.code(), "Done"),
                                Err(e) => {
                                    warn!(store = %o.step.store, action = o.step.action.code(), error = %e, "Failed")
                                }
                            }
                        }
                        let result = if failed == 0 { "ok" } else { "partial" };
                        metrics.reconcile_cycles.with_label_values(&[result]).inc();
                    }
                    Err(e) => {
                        metrics.reconcile_cycles.with_label_values(&["error"]).inc();
                        warn!(error = %e, code = e.code(), "cannot plan this cycle");
                    }
                }
                metrics
                    .reconcile_duration
                    .observe(started.elapsed().as_secs_f64());
                publish_store_metrics(&rec, &metrics);
                let summary = summary(&rec);
                if let Some(n) = &notifier {
                    let sent = if !announced_ready && health.ready().is_ok() {
                        announced_ready = true;
                        n.ready(&summary)
                    } else if summary != last_summary {
                        n.status(&summary)
                    } else {
                        Ok(())
                    };
                    if let Err(e) = sent {
                        warn!(error = %e, "cannot notify systemd");
                    }
                }
                last_summary = summary;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = trigger_rx.recv() => {}
                _ = shutdown.changed() => {}
            }
        }
        health.shutting_down();
        metrics.up.set(0);
        if let Some(n) = &notifier
            && let Err(e) = n.stopping()
        {
            warn!(error = %e, "cannot notify systemd");
        }
        watchdog.abort();
        drain_watch.abort();
        let _ = server_stop.send(true);
        match server.await {
            Ok(Err(e)) => warn!(error = %e, "HTTP server failed"),
            Err(e) => warn!(error = %e, "HTTP server task failed"),
            Ok(Ok(())) => {}
        }
        info!("storekeeper stopped");
        Ok(())
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn publish_store_metrics(rec: &Reconciler, metrics: &Metrics) {
    let statuses = rec.statuses();
    let view: BTreeMap<StoreName, _> = statuses
        .into_iter()
        .map(|(n, s)| {
            let e = s.engine.unwrap_or("unknown");
            (n, (s, e))
        })
        .collect();
    metrics.set_stores(&view);
}

/// A one-line summary for systemd's STATUS=.
fn summary(rec: &Reconciler) -> String {
    let statuses = rec.statuses();
    let count = |p: Phase| statuses.values().filter(|s| s.phase == p).count();
    format!(
        "{} stores: {} ready, {} failed, {} provisioning, {} blocked, {} invalid",
        statuses.len(),
        count(Phase::Ready),
        count(Phase::Failed),
        count(Phase::Provisioning) + count(Phase::Pending),
        count(Phase::Blocked),
        count(Phase::Invalid)
    )
}

/// Pings the systemd watchdog while the loop keeps ticking; a wedged loop stops the pings.
fn spawn_watchdog(
    notifier: Option<Notifier>,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
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
