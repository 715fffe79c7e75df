//! The daemon loop behind `storekeeper run`: read the source, plan, execute, wait, repeat.
//!
//! An unreadable source keeps the last good snapshot in force (never "no stores"). The first
//! cycle and every `resync_interval` read release state for every store to heal drift.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{Settings, SourceSettings};
use crate::reconcile::Reconciler;
use crate::source::{self, Snapshot};
use crate::spec::SpecDefaults;

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

/// Runs until `shutdown` turns true; in-flight operations finish before it returns.
pub async fn run(settings: Settings, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let interval = settings.reconcile.interval;
    let resync_interval = settings.reconcile.resync_interval;
    let rec = Arc::new(Reconciler::connect(settings).await?);
    info!(helm_major = rec.helm.major(), "storekeeper started");
    let mut last_good: Option<Snapshot> = None;
    let mut last_resync: Option<Instant> = None;
    while !*shutdown.borrow() {
        match read_source(&rec.settings) {
            Ok(s) => last_good = Some(s),
            Err(e) => warn!(error = %e, "cannot read the source; keeping the last good snapshot"),
        }
        if let Some(snapshot) = &last_good {
            let resync = last_resync.is_none_or(|t| t.elapsed() >= resync_interval);
            match rec.plan(snapshot, resync).await {
                Ok(planned) => {
                    if resync {
                        last_resync = Some(Instant::now());
                    }
                    let outcomes = rec.execute(planned, &shutdown).await;
                    for o in outcomes.iter().filter(|o| o.step.action.is_change()) {
                        match &o.result {
                            Ok(()) => info!(store = %o.step.store, action = o.step.action.code(), "Done"),
                            Err(e) => {
                                warn!(store = %o.step.store, action = o.step.action.code(), error = %e, "Failed")
                            }
                        }
                    }
                }
                Err(e) => warn!(error = %e, code = e.code(), "cannot plan this cycle"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
    }
    info!("storekeeper stopped");
    Ok(())
}
