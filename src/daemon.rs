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
use crate::leader::{self, Leader, LeaderConfig};
use crate::metrics::Metrics;
use crate::reconcile::Reconciler;
use crate::sdnotify::{self, Notifier};
use crate::server::{self, AppState, Health, WebhookHandler, WebhookReject};
use crate::source::live::Source;
use crate::source::webhook::{RateLimiter, ReplayGuard, WebhookError};
use crate::source::{self, Snapshot};
use crate::spec::StoreName;
use crate::status::Phase;

/// Reads the configured source once (for `plan` and `apply`).
pub fn read_source(settings: &Settings) -> anyhow::Result<Snapshot> {
    Ok(source::live::read_once(settings)?)
}

/// Re-reads the daemon config on SIGHUP: the signals, and how to load (file + flag overrides).
pub struct Reload {
    pub signals: mpsc::Receiver<()>,
    pub load: Box<dyn Fn() -> anyhow::Result<Settings> + Send>,
}

/// Handles the daemon's pieces share.
pub struct Daemon {
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Wakes the loop early (file watcher, webhook).
    pub trigger: (mpsc::Sender<()>, mpsc::Receiver<()>),
}

/// How long a source may go unread before readiness says stale: three missed reads.
fn stale_after(settings: &Settings) -> Duration {
    let interval = match &settings.source {
        SourceSettings::Directory { .. } => settings.reconcile.interval,
        SourceSettings::Git(g) => g.poll_interval.max(settings.reconcile.interval),
    };
    interval * 3
}

/// Runs until `shutdown` turns true; in-flight operations finish before it returns.
/// `bound` receives the HTTP server's address once it listens.
pub async fn run(
    settings: Settings,
    shutdown: watch::Receiver<bool>,
    bound: oneshot::Sender<SocketAddr>,
    reload: Option<Reload>,
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
    daemon.run(shutdown, bound, reload).await
}

impl Daemon {
    pub async fn run(
        self,
        mut shutdown: watch::Receiver<bool>,
        bound: oneshot::Sender<SocketAddr>,
        mut reload: Option<Reload>,
    ) -> anyhow::Result<()> {
        let Daemon {
            settings,
            metrics,
            health,
            trigger: (trigger_tx, mut trigger_rx),
        } = self;
        let (mut source, watch_error) = Source::open(&settings, trigger_tx.clone());
        if let Some(e) = watch_error {
            metrics.source_errors.with_label_values(&[e.kind()]).inc();
            warn!(error = %e, "cannot watch the store directory; re-reading it every interval instead");
        }
        let webhook = webhook_handler(&settings, &source, trigger_tx.clone())?;
        let notifier = Notifier::from_env();
        let statuses = Arc::new(Mutex::new(BTreeMap::new()));
        let source_revision = Arc::new(Mutex::new(None));
        let state = AppState {
            metrics: Arc::clone(&metrics),
            health: Arc::clone(&health),
            statuses: Arc::clone(&statuses),
            source_revision: Arc::clone(&source_revision),
            webhook,
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

        let mut rec = Reconciler::connect(settings, Arc::clone(&metrics)).await?;
        rec.status = Arc::clone(&statuses);
        let mut rec = Arc::new(rec);
        // With leader election, only the lease holder plans and acts; a standby keeps reading
        // the source and stays ready, so a rolling update never stalls on it.
        let (drained_tx, drained_rx) = watch::channel(false);
        let mut always_leader = None;
        let mut leading = match &rec.settings.leader_election {
            Some(l) => {
                let config = LeaderConfig {
                    namespace: l.namespace.clone(),
                    name: l.lease_name.clone(),
                    identity: std::env::var("POD_NAME").unwrap_or_else(|_| leader::default_identity()),
                    lease_duration: l.lease_duration,
                    renew_every: l.renew_every,
                };
                config.validate()?;
                info!(identity = %config.identity, lease = %config.name, "leader election on");
                let client = crate::cluster::client(&rec.settings.cluster).await?;
                // The lease is released only after in-flight helm work has drained.
                Leader::new(client, config).spawn(drained_rx)
            }
            None => {
                // Always the leader; the sender lives as long as the loop, so `changed()` never
                // fires (a dropped sender would make it return at once and spin the loop).
                let (tx, rx) = watch::channel(true);
                always_leader = Some(tx);
                rx
            }
        };
        info!(helm_major = rec.helm.major(), "storekeeper started");
        metrics.up.set(1);
        let mut last_good: Option<Snapshot> = None;
        let mut last_resync: Option<Instant> = None;
        let mut announced_ready = false;
        let mut last_summary = String::new();
        while !*shutdown.borrow() {
            // The HTTP server never returns on its own: if it did (e.g. the port is taken),
            // stop rather than run without health endpoints nobody would notice are gone.
            if server.is_finished() {
                let why = match server.await {
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(())) => "stopped".to_string(),
                    Err(e) => e.to_string(),
                };
                anyhow::bail!("HTTP server on {} failed: {why}", rec.settings.http.listen);
            }
            let (interval, resync_interval) = (
                rec.settings.reconcile.interval,
                rec.settings.reconcile.resync_interval,
            );
            health.heartbeat();
            let started = Instant::now();
            let leader = *leading.borrow();
            metrics.leader.set(i64::from(leader));
            let defaults = rec.settings.spec_defaults();
            match source.read(&defaults).await {
                None => {}
                Some(Ok(s)) => {
                    health.source_succeeded();
                    metrics.source_last_success.set(unix_now());
                    if let Ok(mut r) = source_revision.lock() {
                        *r = Some(s.revision.clone());
                    }
                    last_good = Some(s);
                }
                Some(Err(e)) => {
                    metrics.source_errors.with_label_values(&[e.kind()]).inc();
                    warn!(error = %e, "cannot read the source; keeping the last good snapshot");
                }
            }
            if !leader {
                health.cluster_succeeded();
            } else if let Some(snapshot) = &last_good {
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
            let reload_signal = async {
                match reload.as_mut() {
                    Some(r) => r.signals.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = trigger_rx.recv() => {}
                _ = leading.changed() => {}
                _ = shutdown.changed() => {}
                Some(()) = reload_signal => {
                    if let Some(r) = &reload {
                        match reconfigure(&r.load, &rec, &metrics).await {
                            Ok((new_rec, reopen)) => {
                                if reopen {
                                    let (s, e) = Source::open(&new_rec.settings, trigger_tx.clone());
                                    if let Some(e) = e {
                                        warn!(error = %e, "cannot watch the new store directory");
                                    }
                                    source = s;
                                    last_good = None;
                                }
                                rec = new_rec;
                                last_resync = None;
                                info!("config reloaded");
                            }
                            Err(e) => {
                                metrics.source_errors.with_label_values(&["config"]).inc();
                                warn!(error = %format!("{e:#}"), "invalid new config; keeping the running one");
                            }
                        }
                    }
                }
            }
        }
        health.shutting_down();
        metrics.up.set(0);
        if let Some(n) = &notifier
            && let Err(e) = n.stopping()
        {
            warn!(error = %e, "cannot notify systemd");
        }
        let _ = drained_tx.send(true);
        drop(always_leader);
        // Wait (briefly) for the election loop to release the lease so a standby takes over at
        // once; it drops its sender when done.
        let released = async { while leading.changed().await.is_ok() {} };
        let _ = tokio::time::timeout(Duration::from_secs(5), released).await;
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

/// Loads the new config and connects with it. Returns the new reconciler and whether the source
/// changed (so it must be reopened). The HTTP listen address needs a restart to change.
async fn reconfigure(
    load: &(dyn Fn() -> anyhow::Result<Settings> + Send),
    rec: &Arc<Reconciler>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(Arc<Reconciler>, bool)> {
    let settings = load()?;
    if settings.http.listen != rec.settings.http.listen {
        warn!("http.listen changes take effect after a restart");
    }
    let reopen = settings.source != rec.settings.source;
    let mut next = Reconciler::connect(settings, Arc::clone(metrics)).await?;
    next.status = Arc::clone(&rec.status);
    Ok((Arc::new(next), reopen))
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
    let reject = |e: WebhookError| {
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
    };
    Ok(Some(Arc::new(
        move |headers: &[(String, String)], body: &[u8]| {
            source::webhook::verify(headers, body, &secret).map_err(reject)?;
            limiter
                .lock()
                .map_err(|_| WebhookReject {
                    status: 500,
                    code: "internal",
                })?
                .check(Instant::now())
                .map_err(reject)?;
            replays
                .lock()
                .map_err(|_| WebhookReject {
                    status: 500,
                    code: "internal",
                })?
                .check(headers)
                .map_err(reject)?;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = trigger.try_send(());
            Ok("accepted")
        },
    )))
}
