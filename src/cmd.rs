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
    let rec = Reconciler::connect(settings, Arc::default()).await?;
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
    let rec = Arc::new(Reconciler::connect(settings, Arc::default()).await?);
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
pub async fn run(
    settings: Settings,
    load: Box<dyn Fn() -> anyhow::Result<Settings> + Send>,
) -> anyhow::Result<ExitCode> {
    let (hup_tx, hup_rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: re-reading the config");
            let _ = hup_tx.try_send(());
        }
    });
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
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        if let Ok(addr) = bound_rx.await {
            tracing::info!(%addr, "HTTP server listening");
        }
    });
    daemon::run(
        settings,
        rx,
        bound_tx,
        Some(daemon::Reload {
            signals: hup_rx,
            load,
        }),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// `storekeeper status`: a table (or JSON) of every store.
pub async fn status(
    settings: Settings,
    url: Option<String>,
    from_cluster: bool,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let doc = if from_cluster {
        let client = storekeeper::cluster::client(&settings.cluster).await?;
        let cluster = storekeeper::cluster::Cluster::new(client, &settings.cluster.namespace_prefix);
        let observed = cluster.observe().await?;
        let stores: Vec<_> = observed
            .iter()
            .map(|(name, o)| {
                let st: serde_json::Value = o
                    .status
                    .as_deref()
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or_else(|| json!({}));
                json!({
                    "name": name,
                    "phase": st["phase"],
                    "reason": st["reason"],
                    "last_transition": st["since"],
                    "revision": o.revision,
                    "protected": o.protected,
                })
            })
            .collect();
        json!({ "stores": stores })
    } else {
        let base = url.unwrap_or_else(|| format!("http://{}", settings.http.listen));
        serde_json::from_str(&http_get(&base, "/stores")?)?
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<24} {:<13} {:<22} REASON", "STORE", "PHASE", "REVISION");
    for s in doc["stores"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let text = |k: &str| s[k].as_str().unwrap_or("-").to_string();
        println!(
            "{:<24} {:<13} {:<22} {}",
            text("name"),
            text("phase"),
            text("revision"),
            text("reason")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A minimal HTTP/1.1 GET over a plain TCP connection to the daemon (loopback, no TLS).
fn http_get(base: &str, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let authority = base
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("--url must start with http://"))?;
    let authority = authority.trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(authority).map_err(|e| {
        anyhow::anyhow!("cannot reach the daemon at {base}: {e} (is `storekeeper run` running?)")
    })?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.take(16 * 1024 * 1024).read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("malformed HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") {
        anyhow::bail!("daemon answered: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_string())
}
