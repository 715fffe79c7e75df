//! The cluster-facing subcommands: `plan`, `apply`, `run`, `status`; and `render`, which needs
//! none.

use std::process::ExitCode;
use std::sync::Arc;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use tokio::sync::watch;
use tracing::warn;

use storekeeper::cluster::{ANN_APPROVED, Approval, ClusterOps};
use storekeeper::config::{Settings, SourceSettings};
use storekeeper::daemon;
use storekeeper::metrics::Metrics;
use storekeeper::plan::{Action, Guard, Skip, Step};
use storekeeper::reconcile::{self, Planner};
use storekeeper::record::{Recorder, Statuses};
use storekeeper::runner::Runner;

/// `storekeeper plan`: exit 0 no changes, 2 changes pending, 1 error.
pub async fn plan(settings: Settings, json_out: bool) -> anyhow::Result<ExitCode> {
    let snapshot = daemon::read_source(&settings)?;
    let (cluster, helm) = daemon::connect_once(&settings, &Arc::default()).await?;
    let planner = Planner::new(settings, cluster, Arc::clone(&helm));
    let planned = planner.plan(&snapshot, false, &BTreeSet::new(), 0).await?;
    let mut rows = Vec::new();
    for work in &planned.works {
        let mut diff = None;
        if let (Action::Upgrade | Action::Recover(_), Some(new), Some(o)) =
            (work.step.action, reconcile::desired_values(work), &work.observed)
        {
            let old = match helm.get_values(work.step.store.as_str(), &o.namespace).await {
                Ok(v) => v,
                Err(e) => {
                    warn!(store = %work.step.store, error = %e, "cannot read deployed values");
                    json!({})
                }
            };
            let mut text = reconcile::values_diff(&old, &new);
            // What a plan change does to the volumes (they never shrink; growing needs
            // persistence.expandVolumes and an expandable StorageClass).
            for change in storekeeper::values::volume_changes(&old, &new) {
                text.push_str(&format!("storage: {change}\n"));
            }
            diff = Some(text);
        }
        rows.push((&work.step, diff));
    }
    let changes = rows.iter().filter(|(s, _)| s.action.is_change()).count();
    if json_out {
        let steps: Vec<_> = rows
            .iter()
            .map(|(s, diff)| {
                let guard = match s.action {
                    Action::Skip(Skip::Guarded(g)) => Some(g.code()),
                    Action::Skip(Skip::QuotaExceeded) => Some("quota_exceeded"),
                    _ => None,
                };
                json!({"store": s.store, "action": s.action, "reason": s.reason, "guard": guard,
                       "hint": s.hint, "deadline": s.deadline.map(|t| t.to_string()), "diff": diff})
            })
            .collect();
        let doc = json!({"revision": &*planned.revision, "changes": changes, "steps": steps});
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_plan(&planned.revision, &rows);
    }
    Ok(if changes == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn print_plan(revision: &str, rows: &[(&Step, Option<String>)]) {
    println!("Plan for revision {revision}:");
    for (s, diff) in rows {
        let sign = match s.action {
            Action::Create => "+",
            Action::Upgrade | Action::Recover(_) => "~",
            Action::Delete | Action::ScheduleDeletion => "-",
            Action::CancelDeletion => "~",
            Action::HoldDeletion => "!",
            Action::Noop => "=",
            Action::Skip(Skip::Invalid | Skip::Conflict | Skip::Guarded(_) | Skip::QuotaExceeded) => "!",
            Action::Skip(_) => " ",
        };
        println!(
            "  {sign} {:<24} {:<28} {}",
            s.store.as_str(),
            s.action.to_string(),
            s.reason
        );
        if let Some(h) = &s.hint {
            println!("      to approve: {h}");
        }
        for line in diff.iter().flat_map(|d| d.lines()) {
            println!("      {line}");
        }
    }
    let count = |f: fn(Action) -> bool| rows.iter().filter(|(s, _)| f(s.action)).count();
    println!(
        "{} to create, {} to upgrade or recover, {} to delete, {} to schedule for deletion, {} unchanged, {} skipped ({} deletion(s) blocked).",
        count(|a| a == Action::Create),
        count(|a| matches!(a, Action::Upgrade | Action::Recover(_) | Action::CancelDeletion)),
        count(|a| a == Action::Delete),
        count(|a| a == Action::ScheduleDeletion),
        count(|a| a == Action::Noop),
        count(|a| matches!(a, Action::Skip(_))),
        count(|a| matches!(a, Action::Skip(Skip::Guarded(_)))),
    );
}

/// `storekeeper apply`: one plan carried out through the runner, a summary, exit 1 when any
/// store failed. Failed stores are not retried (that is the daemon's job).
pub async fn apply(settings: Settings, resync: bool) -> anyhow::Result<ExitCode> {
    let snapshot = daemon::read_source(&settings)?;
    let metrics = Arc::new(Metrics::new());
    let (cluster, helm) = daemon::connect_once(&settings, &metrics).await?;
    let recorder = Arc::new(Recorder::new(
        Arc::clone(&cluster),
        Arc::clone(&metrics),
        Statuses::default(),
    ));
    let runner = Arc::new(Runner::new(
        daemon::executor(&settings, &cluster, &helm, &recorder, &metrics),
        settings.helm.max_concurrent.get(),
        None,
    ));
    let planner = Planner::new(settings, cluster, helm);
    let planned = planner
        .plan(&snapshot, resync, &BTreeSet::new(), runner.epoch())
        .await?;
    let steps: Vec<Step> = planned.works.iter().map(|w| w.step.clone()).collect();
    runner.submit(planned).await;
    let (_stop, stop_rx) = watch::channel(false);
    let (_leading, leading_rx) = watch::channel(true);
    Arc::clone(&runner).run(stop_rx, leading_rx, true).await;
    let ops: BTreeMap<_, _> = recorder
        .operations()
        .into_iter()
        .map(|o| (o.store.clone(), o))
        .collect();
    let (mut failed, mut changed) = (0, 0);
    for step in &steps {
        let result = match ops.get(&step.store) {
            Some(o) if o.result != "ok" => {
                failed += 1;
                format!("FAILED: {}", o.message)
            }
            Some(_) => {
                changed += 1;
                "ok".to_string()
            }
            None => "ok".to_string(),
        };
        println!(
            "{:<24} {:<28} {result}",
            step.store.as_str(),
            step.action.to_string()
        );
    }
    println!(
        "{changed} change(s) applied, {failed} failed, {} store(s) in total.",
        steps.len()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `storekeeper approve-deletion`: plans (as `plan` does), then writes an approval on each
/// named store whose deletion is held back or pending, or with `all_blocked` on every store the
/// breaker or the rename guard holds back. Stores with a file, and deletions no approval can
/// unblock (protected, prune off, terminating), are refused with the reason.
pub async fn approve_deletion(
    settings: Settings,
    stores: &[String],
    all_blocked: bool,
    by: Option<String>,
) -> anyhow::Result<ExitCode> {
    if stores.is_empty() && !all_blocked {
        anyhow::bail!("name the stores to approve, or pass --all-blocked");
    }
    let snapshot = daemon::read_source(&settings)?;
    let by = by.unwrap_or_else(|| approver(&settings));
    let (cluster, helm) = daemon::connect_once(&settings, &Arc::default()).await?;
    let planner = Planner::new(settings, Arc::clone(&cluster), helm);
    let planned = planner.plan(&snapshot, false, &BTreeSet::new(), 0).await?;
    let mut wanted: BTreeSet<String> = stores.iter().cloned().collect();
    if all_blocked {
        let held = planned.works.iter().filter(|w| {
            matches!(
                w.step.action,
                Action::Skip(Skip::Guarded(Guard::MassDeletion | Guard::PossibleRename))
                    | Action::HoldDeletion
            )
        });
        wanted.extend(held.map(|w| w.step.store.to_string()));
    }
    let approval = Approval {
        at: jiff::Timestamp::now(),
        revision: planned.revision.to_string(),
        by,
    };
    let mut failed = 0;
    for name in &wanted {
        let work = planned.works.iter().find(|w| w.step.store.as_str() == name);
        match approvable(work) {
            Err(why) => {
                failed += 1;
                eprintln!("error: cannot approve the deletion of {name}: {why}");
            }
            Ok(namespace) => {
                let text = serde_json::to_string(&approval)?;
                let ann = [(ANN_APPROVED, Some(text))].into();
                cluster.annotate(namespace, &ann).await?;
                println!(
                    "approved: {name} (namespace {namespace}) by {} at {}, revision {}; the daemon deletes it next",
                    approval.by, approval.at, approval.revision
                );
            }
        }
    }
    if wanted.is_empty() {
        println!("no deletion is held back");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Whether an approval can unblock this store's deletion; its namespace when it can.
fn approvable(work: Option<&storekeeper::runner::Work>) -> Result<&str, String> {
    let Some(work) = work else {
        return Err("no such store in the cluster".into());
    };
    match work.step.action {
        Action::Skip(Skip::Guarded(Guard::PruneDisabled)) => {
            Err("reconcile.prune = false deletes nothing".into())
        }
        Action::Skip(Skip::Protected) => Err("it is protected (protect = true when last applied)".into()),
        Action::Skip(Skip::Terminating) => Err("its namespace is already being deleted".into()),
        Action::Skip(Skip::Guarded(_) | Skip::PendingDeletion)
        | Action::ScheduleDeletion
        | Action::HoldDeletion => Ok(work.namespace.as_str()),
        Action::Delete => Err("it is being deleted already".into()),
        _ => Err(format!(
            "its store file exists ({}); approvals are for stores whose file is gone",
            work.step.reason
        )),
    }
}

/// Who approves: the kubeconfig user of the current (or configured) context, else `$USER`.
pub(crate) fn approver(settings: &Settings) -> String {
    let kubeconfig = match &settings.cluster.kubeconfig {
        Some(p) => kube::config::Kubeconfig::read_from(p).ok(),
        None => kube::config::Kubeconfig::read().ok(),
    };
    let user = kubeconfig.and_then(|k| {
        let context = settings.cluster.context.clone().or(k.current_context.clone())?;
        let ctx = k.contexts.iter().find(|c| c.name == context)?;
        ctx.context.as_ref()?.user.clone()
    });
    user.or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into())
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

/// `storekeeper status`: a table (or JSON) of every store; with `watch`, again every 2 s until
/// interrupted.
pub async fn status(
    settings: Settings,
    url: Option<String>,
    from_cluster: bool,
    json_out: bool,
    watch: bool,
) -> anyhow::Result<ExitCode> {
    loop {
        let doc = status_doc(&settings, url.clone(), from_cluster).await?;
        if watch {
            print!("\x1b[2J\x1b[H");
        }
        if json_out {
            println!("{}", serde_json::to_string_pretty(&doc)?);
        } else {
            print_status(&doc);
        }
        if !watch {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

async fn status_doc(
    settings: &Settings,
    url: Option<String>,
    from_cluster: bool,
) -> anyhow::Result<serde_json::Value> {
    if !from_cluster {
        let base = url.unwrap_or_else(|| format!("http://{}", settings.http.listen));
        return Ok(serde_json::from_str(&crate::verbs::request(
            settings, &base, "GET", "/stores",
        )?)?);
    }
    let (client, _) = storekeeper::cluster::client(&settings.cluster).await?;
    let last_backups = last_backups(&client).await;
    let observed = storekeeper::cluster::Cluster::new(client).observe().await?;
    let stores: Vec<_> = observed
        .stores
        .iter()
        .map(|(name, o)| {
            let st = o.status.as_ref();
            json!({
                "name": name,
                "phase": st.map(|s| s.phase.as_str()),
                "reason": st.map(|s| &s.reason),
                "last_transition": st.map(|s| s.since.to_string()),
                "last_error": st.and_then(|s| s.error.as_ref()),
                "revision": o.revision,
                "protected": o.protected,
                "owner": o.owner,
                "created": o.created.map(|t| t.to_string()),
                "deletion_deadline": o.pending_deletion.as_ref().map(|m| m.deadline.to_string()),
                "last_backup": last_backups.get(name),
            })
        })
        .collect();
    Ok(json!({ "stores": stores }))
}

fn print_status(doc: &serde_json::Value) {
    println!(
        "{:<24} {:<16} {:<12} {:<40} {:<8} {:<22} {:<30} REASON",
        "STORE", "PHASE", "OWNER", "URL", "AGE", "REVISION", "LAST BACKUP"
    );
    let now = jiff::Timestamp::now();
    for s in doc["stores"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let text = |k: &str| s[k].as_str().unwrap_or("-").to_string();
        let age = s["created"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map_or("-".to_string(), |t| storekeeper::page::age(t, now));
        let mut reason = text("reason");
        if let Some(d) = s["deletion_deadline"].as_str() {
            reason = format!("{reason} (deleted at {d})");
        }
        println!(
            "{:<24} {:<16} {:<12} {:<40} {:<8} {:<22} {:<30} {reason}",
            text("name"),
            text("phase"),
            text("owner"),
            text("url"),
            age,
            text("revision"),
            backup_cell(&s["last_backup"]),
        );
    }
}

/// `storekeeper render <store>`: exit 0 rendered, 1 error (an invalid store file prints its
/// diagnostics). Needs helm and the charts, no cluster.
pub async fn render(mut settings: Settings, store: &str) -> anyhow::Result<ExitCode> {
    use storekeeper::render::{self, RenderError};
    let path = std::path::Path::new(store);
    let name = match (path.extension(), path.file_stem(), path.parent()) {
        // A store file's path: its directory is the source (so host clashes still count).
        (Some(ext), Some(stem), Some(dir)) if ext == "toml" && path.is_file() => {
            let dir = if dir.as_os_str().is_empty() {
                ".".as_ref()
            } else {
                dir
            };
            settings.source = SourceSettings::Directory {
                path: dir.to_path_buf(),
            };
            stem.to_string_lossy().into_owned()
        }
        _ => store.to_string(),
    };
    let snapshot = daemon::read_source(&settings)?;
    // No kubeconfig or context: `helm template` must not depend on a cluster.
    let helm = storekeeper::helm::Helm::detect(&settings.helm.binary, None, None, settings.helm.timeout)
        .await
        .map_err(|e| {
            // The message only: it already carries its cause.
            anyhow::anyhow!(
                "{e}. Next step: install helm 3 or 4, or pass --helm FILE (`scripts/test-tools \
                 --helm-only` puts a pinned helm 4 in .tools/helm4)"
            )
        })?;
    match render::render(&settings, &snapshot, &name, &helm).await {
        Ok(r) => {
            print!("{}", r.text(helm.major()));
            Ok(ExitCode::SUCCESS)
        }
        Err(RenderError::Invalid(e)) => {
            for d in &e.diagnostics {
                eprintln!("{d}");
            }
            eprintln!("error: {}", RenderError::Invalid(e));
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

/// `2026-11-22T03:31:00Z ok`, or `-` for a store without finished backups.
fn backup_cell(last: &serde_json::Value) -> String {
    match (last["at"].as_str(), last["result"].as_str()) {
        (Some(at), Some(result)) => format!("{at} {result}"),
        _ => "-".into(),
    }
}

/// The last backup of every store, from one LIST of the backup Jobs (for `--from-cluster`);
/// empty, with a warning, when they cannot be listed.
async fn last_backups(
    client: &kube::Client,
) -> BTreeMap<storekeeper::spec::StoreName, storekeeper::backup::monitor::LastBackup> {
    use storekeeper::backup::monitor;
    let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> = kube::Api::all(client.clone());
    match jobs
        .list(&kube::api::ListParams::default().labels(&monitor::selector()))
        .await
    {
        Ok(list) => monitor::summarize(&list.items),
        Err(e) => {
            warn!(error = %e, "cannot list the backup Jobs; no last backups shown");
            BTreeMap::new()
        }
    }
}

/// `storekeeper backup <store>`: a backup Job from the store's CronJob, waited for (at most
/// `backup.final_timeout`). Exit 0 when a snapshot was saved, 1 otherwise.
pub async fn backup(settings: Settings, store: &str) -> anyhow::Result<ExitCode> {
    use storekeeper::backup::{BackupError, Backups, Purpose};
    let name = storekeeper::spec::StoreName::new(store).map_err(anyhow::Error::msg)?;
    let (client, _) = storekeeper::cluster::client(&settings.cluster).await?;
    let namespace = settings.cluster.namespace_for(&name);
    let backups = Backups::kube(client, settings.backup.clone());
    // Fresh credentials when storekeeper.toml names them; the namespace's copy otherwise.
    if let Err(e) = backups.prepare(&namespace, settings.backup.is_some()).await {
        warn!(store = %name, error = %e, "cannot refresh the backup Secret; using the namespace's copy");
    }
    let started = std::time::Instant::now();
    match backups.run(&namespace, &name, Purpose::Manual).await {
        Ok(o) => {
            println!(
                "backup of {name}: snapshot {} saved by Job {} in {}s",
                o.snapshot.as_deref().unwrap_or("(not reported)"),
                o.job,
                started.elapsed().as_secs()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(BackupError::NoCronJob(cronjob)) => {
            eprintln!(
                "error: store {name} has no backup CronJob {cronjob} in namespace {namespace}: backups are \
                 off for it (they need [backup] in storekeeper.toml, and the store file must not set \
                 `[backup] enabled = false`)"
            );
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("error: backup of {name} failed: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `storekeeper backups <store>`: the store's snapshots, newest first. With restic on `$PATH`
/// (unless `in_cluster`), the CLI runs it; otherwise a listing Job does, in the store's
/// namespace or, for a store that is gone, in the namespace of one that has backups.
pub async fn backups(
    settings: Settings,
    store: &str,
    in_cluster: bool,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    use storekeeper::backup::snapshots;
    let b = settings
        .backup
        .clone()
        .ok_or(storekeeper::backup::BackupError::NotConfigured)?;
    let name = storekeeper::spec::StoreName::new(store).map_err(anyhow::Error::msg)?;
    let (client, _) = storekeeper::cluster::client(&settings.cluster).await?;
    let (list, total, via) = match snapshots::find_restic().filter(|_| !in_cluster) {
        Some(restic) => {
            let list = snapshots::with_restic(&restic, &client, &b, &name).await?;
            let n = list.len();
            (list, n, format!("restic ({})", restic.display()))
        }
        None => listing_job(&settings, &client, &b, &name).await?,
    };
    let repository = b.repository_for(&name);
    if json_out {
        let items: Vec<_> = list
            .iter()
            .map(|s| json!({"id": s.id, "time": s.time, "revision": s.revision}))
            .collect();
        let doc = json!({"store": name, "repository": repository, "total": total, "snapshots": items});
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<66} {:<27} REVISION", "SNAPSHOT", "TIME");
    for s in &list {
        println!(
            "{:<66} {:<27} {}",
            s.id,
            s.time,
            s.revision.as_deref().unwrap_or("-")
        );
    }
    println!("{total} snapshot(s) of {name} in {repository}, listed by {via}");
    if total > list.len() {
        println!(
            "showing the newest {} of {total} (a Job's result is at most 4 KiB): install restic for all",
            list.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The listing through a Job: from the store's own CronJob, else any store's with backups.
async fn listing_job(
    settings: &Settings,
    client: &kube::Client,
    b: &storekeeper::config::BackupSettings,
    name: &storekeeper::spec::StoreName,
) -> anyhow::Result<(Vec<storekeeper::backup::snapshots::SnapshotInfo>, usize, String)> {
    use storekeeper::backup::snapshots::{self, ListError};
    let observed = storekeeper::cluster::Cluster::new(client.clone())
        .observe()
        .await?;
    let mut runners: Vec<&storekeeper::spec::StoreName> =
        observed.stores.keys().filter(|s| *s != name).collect();
    if observed.stores.contains_key(name) {
        runners.insert(0, name);
    }
    for runner in runners {
        let namespace = settings.cluster.namespace_for(runner);
        match snapshots::with_job(client, &namespace, runner, name, b).await {
            Err(ListError::NoCronJob) => continue,
            Err(e) => return Err(e.into()),
            Ok((list, total)) => return Ok((list, total, format!("a Job in {namespace}"))),
        }
    }
    Err(ListError::NoCronJob.into())
}
