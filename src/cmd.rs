//! The cluster-facing subcommands: `plan`, `apply`, `run`.

use std::process::ExitCode;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::watch;
use tracing::warn;

use storekeeper::config::Settings;
use storekeeper::daemon;
use storekeeper::plan::{Action, Skip};
use storekeeper::reconcile::{Reconciler, values_diff};
use storekeeper::values;

/// `storekeeper plan`: exit 0 no changes, 2 changes pending, 1 error.
pub async fn plan(settings: Settings, json_out: bool) -> anyhow::Result<ExitCode> {
    let snapshot = daemon::read_source(&settings)?;
    let rec = Reconciler::connect(settings).await?;
    let planned = rec.plan(&snapshot, false).await?;
    let mut rows = Vec::new();
    for step in &planned.steps {
        let mut diff = None;
        if matches!(step.action, Action::Upgrade | Action::Recover(_))
            && let (Some(Ok((desired, generated))), Some(o)) = (
                planned.desired.get(&step.store),
                planned.observed.get(&step.store),
            )
        {
            let mut new = planned
                .charts
                .get(desired.spec.engine.as_str())
                .map(|c| c.extra.clone())
                .unwrap_or_else(|| json!({}));
            values::merge(&mut new, generated);
            let old = match rec.helm.get_values(step.store.as_str(), &o.namespace).await {
                Ok(v) => v,
                Err(e) => {
                    warn!(store = %step.store, error = %e, "cannot read deployed values");
                    json!({})
                }
            };
            diff = Some(values_diff(&old, &new));
        }
        rows.push((step, diff));
    }
    let changes = planned.steps.iter().filter(|s| s.action.is_change()).count();
    if json_out {
        let steps: Vec<_> = rows
            .iter()
            .map(|(s, diff)| json!({"store": s.store, "action": s.action, "reason": s.reason, "diff": diff}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"revision": planned.revision, "changes": changes, "steps": steps})
            )?
        );
    } else {
        println!("Plan for revision {}:", planned.revision);
        for (s, diff) in &rows {
            let sign = match s.action {
                Action::Create => "+",
                Action::Upgrade | Action::Recover(_) => "~",
                Action::Delete => "-",
                Action::Noop => "=",
                Action::Skip(Skip::Invalid | Skip::Conflict | Skip::Guarded(_)) => "!",
                Action::Skip(_) => " ",
            };
            println!(
                "  {sign} {:<24} {:<28} {}",
                s.store.as_str(),
                s.action.to_string(),
                s.reason
            );
            if let Some(d) = diff {
                for line in d.lines() {
                    println!("      {line}");
                }
            }
        }
        let count = |f: fn(Action) -> bool| planned.steps.iter().filter(|s| f(s.action)).count();
        println!(
            "{} to create, {} to upgrade or recover, {} to delete, {} unchanged, {} skipped.",
            count(|a| a == Action::Create),
            count(|a| matches!(a, Action::Upgrade | Action::Recover(_))),
            count(|a| a == Action::Delete),
            count(|a| a == Action::Noop),
            count(|a| matches!(a, Action::Skip(_))),
        );
    }
    Ok(if changes == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// `storekeeper apply`: one cycle, a summary, exit 1 when any store failed.
pub async fn apply(settings: Settings, resync: bool) -> anyhow::Result<ExitCode> {
    let snapshot = daemon::read_source(&settings)?;
    let rec = Arc::new(Reconciler::connect(settings).await?);
    let planned = rec.plan(&snapshot, resync).await?;
    let (_tx, rx) = watch::channel(false);
    let outcomes = rec.execute(planned, &rx).await;
    let mut failed = 0;
    for o in &outcomes {
        let result = match &o.result {
            Ok(()) => "ok".to_string(),
            Err(e) => {
                failed += 1;
                format!("FAILED: {e}")
            }
        };
        println!(
            "{:<24} {:<28} {}",
            o.step.store.as_str(),
            o.step.action.to_string(),
            result
        );
    }
    let changed = outcomes
        .iter()
        .filter(|o| o.step.action.is_change() && o.result.is_ok())
        .count();
    println!(
        "{changed} change(s) applied, {failed} failed, {} store(s) in total.",
        outcomes.len()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `storekeeper run`: the daemon, with graceful shutdown on the first SIGTERM/SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<ExitCode> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            return;
        };
        let Ok(mut int) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) else {
            return;
        };
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::info!("Shutdown requested: finishing in-flight operations (a second signal aborts)");
        let _ = tx.send(true);
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::warn!("Second signal: aborting");
        std::process::exit(130);
    });
    daemon::run(settings, rx).await?;
    Ok(ExitCode::SUCCESS)
}
