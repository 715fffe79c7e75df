//! Backups on the Kubernetes side, end to end: the real `storekeeper` binary with the real helm 3
//! and helm 4 against the test API server, whose Job controller makes a Job's pods and status
//! (a backup Job fails when its template says its container exits non-zero; see testbed
//! `jobs`). The tiny chart renders a backup CronJob when `backup.enabled`.
//!
//! A deleted store is backed up first and uninstalled only after the Job succeeded; a failing
//! Job blocks the deletion with its reason until a backup succeeds; `storekeeper backup` makes
//! the Job `kubectl create job --from=cronjob/...` makes; `storekeeper backups` lists snapshots
//! with the real restic; the daemon shows the last backup and counts failures.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::daemon::{Daemon, sample};
use support::{Env, Opts, show, wait_for};

/// Backups on, with a local repository under `root` (the CLI's restic reads it; the pods'
/// path is the same on the test API server, where nothing runs).
fn backup_env(major: u8, root: &Path) -> Env {
    backup_env_with(major, root, "20s")
}

fn backup_env_with(major: u8, root: &Path, final_timeout: &str) -> Env {
    let extra = format!(
        "[backup]\nrepository = '{}'\nsecret = 'restic-creds'\nsecret_namespace = 'storekeeper'\n\
         final_timeout = '{final_timeout}'\nschedule = '15 2 * * *'\n",
        root.join("repo").display()
    );
    let env = Env::with(
        major,
        Opts {
            extra: Box::leak(extra.into_boxed_str()),
            ..Opts::default()
        },
    );
    // A snapshot with no store file at all deletes nothing (the empty-snapshot guard): a
    // suspended store that is never installed keeps the source non-empty (another engine, so
    // it is no possible rename of the store under test).
    env.write_store("keep", "engine = \"medusa\"\nsuspend = true\n");
    env.api
        .insert("/api/v1/namespaces", json!({"metadata": {"name": "storekeeper"}}));
    env.api.insert(
        "/api/v1/namespaces/storekeeper/secrets",
        json!({"metadata": {"name": "restic-creds"},
               "stringData": {"RESTIC_PASSWORD": "correct horse battery staple"}}),
    );
    env
}

fn apply(env: &Env) -> std::process::Output {
    env.run(&["apply"])
}

fn apply_ok(env: &Env) -> String {
    let out = apply(env);
    assert!(out.status.success(), "{}\n{}", show(&out), env.api.log_tail(30));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The index of the first request matching, in the request log.
fn first(reqs: &[testbed::Request], method: &str, path_contains: &str) -> Option<usize> {
    reqs.iter()
        .position(|r| r.method == method && r.path.contains(path_contains))
}

fn status_annotation(env: &Env, ns: &str) -> Value {
    let text = env.annotation(ns, "storekeeper.dev/status").unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Install: the CronJob with the store's repository and schedule, the Secret copied, the final
/// backup recorded as required, the revision tag of this apply. Then the file goes: a backup Job
/// from the CronJob is created and waited for, and the uninstall comes after it.
fn deleting_a_store_backs_it_up_first_then_uninstalls(major: u8) {
    let root = tempfile::tempdir().expect("tempdir");
    let env = backup_env(major, root.path());
    env.write_store("shop", "engine = \"woocommerce\"\n");
    apply_ok(&env);
    let cj = env
        .api
        .get("/apis/batch/v1/namespaces/store-shop/cronjobs/shop-backup")
        .expect("the backup CronJob");
    assert_eq!(cj["spec"]["schedule"], "15 2 * * *");
    let container = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let repo = format!("{}/shop", root.path().join("repo").display());
    assert!(
        container["env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["value"] == repo.as_str())),
        "{container:#}"
    );
    let copy = env
        .api
        .get("/api/v1/namespaces/store-shop/secrets/restic-creds")
        .expect("the Secret is copied");
    let source = env
        .api
        .get("/api/v1/namespaces/storekeeper/secrets/restic-creds")
        .expect("source");
    assert_eq!(copy["data"], source["data"]);
    assert_eq!(
        env.annotation("store-shop", "storekeeper.dev/final-backup")
            .as_deref(),
        Some("required")
    );
    let cm = env
        .api
        .get("/api/v1/namespaces/store-shop/configmaps/shop-store")
        .expect("configmap");
    let revision = env
        .annotation("store-shop", "storekeeper.dev/revision")
        .expect("revision");
    assert_eq!(
        cm["data"]["backupRevision"],
        revision.as_str(),
        "the tag is the apply's revision"
    );

    env.remove_store("shop");
    env.api.reset_counters();
    let logs = apply_ok(&env);
    assert!(env.namespace("store-shop").is_none(), "deleted");
    let reqs = env.api.requests();
    let get_cj = first(&reqs, "GET", "/namespaces/store-shop/cronjobs/shop-backup").expect("CronJob read");
    let post_job = first(&reqs, "POST", "/apis/batch/v1/namespaces/store-shop/jobs").expect("Job created");
    // The wait: a list-then-watch of the one Job (here it has finished by the list).
    let watch = reqs
        .iter()
        .position(|r| {
            r.method == "GET"
                && r.path.ends_with("/namespaces/store-shop/jobs")
                && r.query
                    .contains("fieldSelector=metadata.name%3Dshop-backup-final-")
        })
        .expect("the Job is waited for");
    let pods = first(&reqs, "GET", "/namespaces/store-shop/pods").expect("its pod read");
    // helm's first write of the uninstall (helm 3 marks the release `uninstalling` first).
    let uninstall = [
        first(&reqs, "PUT", "/secrets/sh.helm.release.v1.shop."),
        first(&reqs, "DELETE", "/namespaces/store-shop/"),
    ]
    .into_iter()
    .flatten()
    .min()
    .expect("the uninstall");
    assert!(
        get_cj < post_job && post_job < watch && watch < pods && pods < uninstall,
        "order: {get_cj} {post_job} {watch} {pods} {uninstall}\n{}",
        env.api.log_tail(60)
    );
    assert!(logs.contains("Final backup saved"), "{logs}");
    assert!(
        logs.contains(&format!("snapshot=\"{}\"", sha256_hex("shop"))),
        "{logs}"
    );
}

/// The backup Job fails: the store is Failed with the reason and code, its release and
/// namespace stay; once a backup succeeds (the CronJob fixed), the deletion goes on.
fn a_failing_backup_blocks_the_deletion_with_its_reason(major: u8) {
    let root = tempfile::tempdir().expect("tempdir");
    let env = backup_env(major, root.path());
    env.write_store("shop", "engine = \"woocommerce\"\n[values]\nbackupExitCode = 5\n");
    apply_ok(&env);
    env.remove_store("shop");
    let out = apply(&env);
    assert_eq!(out.status.code(), Some(1), "a failed store: {}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("final backup: backup Job shop-backup-final-")
            && stdout.contains("failed: repository_locked"),
        "{stdout}"
    );
    assert!(stdout.contains("container restic exited 5"), "{stdout}");
    assert!(env.namespace("store-shop").is_some(), "nothing deleted");
    assert_eq!(env.release_status("shop").as_deref(), Some("deployed"));
    let st = status_annotation(&env, "store-shop");
    assert_eq!(
        (st["phase"].as_str(), st["code"].as_str()),
        (Some("Failed"), Some("final_backup_failed")),
        "{st:#}"
    );
    let jobs = env.api.list("/apis/batch/v1/namespaces/store-shop/jobs");
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0]["status"]["conditions"][1]["reason"],
        "BackoffLimitExceeded"
    );

    // Fixed in the cluster (what an operator would do for a repository that was down): the
    // next try backs up and deletes.
    let path = "/apis/batch/v1/namespaces/store-shop/cronjobs";
    let mut cj = env.api.get(&format!("{path}/shop-backup")).expect("cronjob");
    let annotations = &mut cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"];
    annotations["testbed.storekeeper.dev/exit-code"] = json!("0");
    annotations["testbed.storekeeper.dev/termination-message"] = json!("result=ok\nreason=ok\nexit_code=0\n");
    env.api.insert(path, cj);
    apply_ok(&env);
    assert!(
        env.namespace("store-shop").is_none(),
        "deleted after the backup succeeded"
    );
}

/// `storekeeper backup` creates the Job kubectl would (`create job --from=cronjob/...`), waits
/// and prints the snapshot; a store with `final = false` is deleted without a Job.
fn on_demand_backups_are_kubectl_s_job_and_final_false_skips_the_last(major: u8) {
    let root = tempfile::tempdir().expect("tempdir");
    let env = backup_env(major, root.path());
    env.write_store("shop", "engine = \"woocommerce\"\n[backup]\nfinal = false\n");
    apply_ok(&env);
    let out = env.run(&["backup", "shop"]);
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "snapshot {} saved by Job shop-backup-manual-",
            sha256_hex("shop")
        )),
        "{stdout}"
    );
    let ours = env.api.list("/apis/batch/v1/namespaces/store-shop/jobs");
    assert_eq!(ours.len(), 1);
    let kubectl = Command::new(testbed::tools::kubectl())
        .args(["--kubeconfig"])
        .arg(env.api.kubeconfig())
        .args([
            "-n",
            "store-shop",
            "create",
            "job",
            "by-kubectl",
            "--from=cronjob/shop-backup",
        ])
        .args(["--dry-run=client", "-o", "json"])
        .output()
        .expect("kubectl");
    assert!(
        kubectl.status.success(),
        "{}",
        String::from_utf8_lossy(&kubectl.stderr)
    );
    let theirs: Value = serde_json::from_slice(&kubectl.stdout).expect("json");
    let mine = &ours[0];
    assert_eq!(
        mine["metadata"]["ownerReferences"],
        theirs["metadata"]["ownerReferences"]
    );
    assert_eq!(mine["metadata"]["annotations"], theirs["metadata"]["annotations"]);
    let mut labels = mine["metadata"]["labels"].clone();
    assert_eq!(labels["storekeeper.dev/backup"], "manual");
    labels.as_object_mut().map(|l| l.remove("storekeeper.dev/backup"));
    assert_eq!(labels, theirs["metadata"]["labels"]);
    let template = |j: &Value| j["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    assert_eq!(template(mine), template(&theirs));

    // A failing on-demand backup says why and exits 1.
    let path = "/apis/batch/v1/namespaces/store-shop/cronjobs";
    let mut cj = env.api.get(&format!("{path}/shop-backup")).expect("cronjob");
    cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"] = json!({
        "testbed.storekeeper.dev/exit-code": "6",
        "testbed.storekeeper.dev/termination-message": "result=failed\nreason=wrong_password\nexit_code=6\n"});
    env.api.insert(path, cj);
    let out = env.run(&["backup", "shop"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("failed: wrong_password"),
        "{}",
        show(&out)
    );

    env.remove_store("shop");
    env.api.reset_counters();
    let logs = apply_ok(&env);
    assert!(env.namespace("store-shop").is_none());
    assert!(
        first(&env.api.requests(), "POST", "/jobs").is_none(),
        "no final backup Job"
    );
    assert!(
        logs.contains("Deleting without a final backup: final = false"),
        "{logs}"
    );
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// `storekeeper backups` with the real restic on $PATH: the repository is the store's, the
/// password comes from the Secret (through the API), and it is printed nowhere.
fn snapshots_are_listed_with_restic_and_the_password_stays_secret(major: u8) {
    let root = tempfile::tempdir().expect("tempdir");
    let env = backup_env(major, root.path());
    let restic = testbed::tools::restic();
    let repo = root.path().join("repo").join("shop");
    let data = root.path().join("db");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("database.sql"), "-- Dump completed\n").expect("write");
    let run = |args: &[&str]| {
        let out = Command::new(&restic)
            .args(args)
            .env("RESTIC_REPOSITORY", &repo)
            .env("RESTIC_PASSWORD", "correct horse battery staple")
            .env("RESTIC_CACHE_DIR", root.path().join("cache"))
            .current_dir(root.path())
            .output()
            .expect("restic");
        assert!(
            out.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["init"]);
    run(&[
        "backup",
        "--host",
        "shop",
        "--tag",
        "storekeeper",
        "--tag",
        "store=shop",
        "--tag",
        "revision=dir:abc",
        "db",
    ]);
    run(&["backup", "--host", "other", "--tag", "store=other", "db"]);
    let path = format!(
        "{}:{}",
        restic
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = env
        .storekeeper(&["backups", "shop", "--output", "json"])
        .env("PATH", path)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", show(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["total"], 1, "only the store's own snapshots: {doc:#}");
    assert_eq!(doc["snapshots"][0]["revision"], "dir:abc");
    assert_eq!(doc["snapshots"][0]["id"].as_str().map(str::len), Some(64));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("correct horse"), "{all}");
}

/// The daemon shows the last backup in /stores and the metrics, counts a failed one, and
/// removes the store's series with its namespace.
fn the_daemon_shows_the_last_backup_and_counts_failures(major: u8) {
    let root = tempfile::tempdir().expect("tempdir");
    let env = backup_env(major, root.path());
    env.write_store("shop", "engine = \"woocommerce\"\n");
    let d = Daemon::start(&env, &[]);
    assert!(d.wait_ready("shop", Duration::from_secs(60)), "{}", d.logs());
    let out = env.run(&["backup", "shop"]);
    assert!(out.status.success(), "{}", show(&out));
    let last = || -> Value {
        let (_, body) = d.get("/stores/shop");
        serde_json::from_str::<Value>(&body)
            .map(|v| v["last_backup"].clone())
            .unwrap_or(Value::Null)
    };
    assert!(
        wait_for(Duration::from_secs(10), || last()["result"] == "ok"),
        "{:#}\n{}",
        last(),
        d.logs()
    );
    assert!(
        last()["job"]
            .as_str()
            .is_some_and(|j| j.starts_with("shop-backup-manual-"))
    );
    let series = r#"storekeeper_backup_last_success_timestamp_seconds{store="shop"}"#;
    assert!(
        sample(&d.metrics(), series).is_some_and(|t| t > 1.7e9),
        "{}",
        d.metrics()
    );

    let path = "/apis/batch/v1/namespaces/store-shop/cronjobs";
    let mut cj = env.api.get(&format!("{path}/shop-backup")).expect("cronjob");
    cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"]["testbed.storekeeper.dev/exit-code"] =
        json!("1");
    env.api.insert(path, cj);
    let out = env.run(&["backup", "shop"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let failures = r#"storekeeper_backup_failures_total{store="shop"}"#;
    assert!(
        wait_for(Duration::from_secs(10), || sample(&d.metrics(), failures)
            == Some(1.0)),
        "{}",
        d.metrics()
    );
    assert_eq!(last()["result"], "BackoffLimitExceeded");
    // Told like every failure: a `BackupFailed` Event on the store's namespace (the same
    // event goes to the `backup_failed` notifications) and a log line, phase untouched.
    let backup_failed_events = || {
        env.api
            .list("/apis/events.k8s.io/v1/namespaces/store-shop/events")
            .into_iter()
            .filter(|e| e["reason"] == "BackupFailed")
            .count()
    };
    assert!(
        wait_for(Duration::from_secs(10), || backup_failed_events() == 1),
        "{}",
        d.logs()
    );
    assert!(d.logs().contains("Backup failed"), "{}", d.logs());
    assert_eq!(
        serde_json::from_str::<Value>(&d.get("/stores/shop").1).expect("json")["phase"],
        "Ready"
    );
    assert!(
        last()["last_success"].is_string(),
        "the success is still shown: {:#}",
        last()
    );
    let (_, page) = d.get("/readyz");
    assert!(page.contains("ready"), "readiness unaffected: {page}");

    env.remove_store("shop");
    // The next final backup is the fixed one; then the store and its series go.
    let mut cj = env.api.get(&format!("{path}/shop-backup")).expect("cronjob");
    cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"]["testbed.storekeeper.dev/exit-code"] =
        json!("0");
    env.api.insert(path, cj);
    assert!(
        wait_for(Duration::from_secs(30), || env.namespace("store-shop").is_none()),
        "{}",
        d.logs()
    );
    assert!(
        wait_for(Duration::from_secs(10), || !d
            .metrics()
            .contains(r#"store="shop""#)),
        "{}",
        d.metrics()
    );
    d.stop();
}

/// A backup Job that never finishes: the deletion waits on a watch of it for `final_timeout`,
/// then fails (`final_backup_timeout`) with nothing deleted. And without restic, `backups`
/// lists through a Job made from the CronJob (its container's output, here the template's).
fn a_hanging_backup_times_out_and_listing_works_without_restic(major: u8) {
    let root = tempfile::tempdir().expect("tempdir");
    let env = backup_env_with(major, root.path(), "2s");
    env.write_store("shop", "engine = \"woocommerce\"\n");
    apply_ok(&env);
    let path = "/apis/batch/v1/namespaces/store-shop/cronjobs";
    let mut cj = env.api.get(&format!("{path}/shop-backup")).expect("cronjob");
    cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"] = json!({
        "testbed.storekeeper.dev/termination-message":
            "count=2\n3f2a9c1b 2026-11-22T03:30:02+00:00 dir:abc\n0aa1bb2c 2026-11-21T03:30:02+00:00 -\n"});
    env.api.insert(path, cj.clone());
    let out = env
        .storekeeper(&["backups", "shop", "--in-cluster"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("3f2a9c1b") && stdout.contains("dir:abc") && stdout.contains("0aa1bb2c"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 snapshot(s) of shop") && stdout.contains("a Job in store-shop"),
        "{stdout}"
    );
    let jobs = env
        .api
        .list("/apis/batch/v1/namespaces/store-shop/jobs?labelSelector=storekeeper.dev/backup=list");
    assert_eq!(jobs.len(), 1);
    let pod = &jobs[0]["spec"]["template"]["spec"];
    assert!(
        pod.get("initContainers").is_none() && pod.get("affinity").is_none(),
        "{pod:#}"
    );

    cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"] =
        json!({"testbed.storekeeper.dev/never-ready": "true"});
    env.api.insert(path, cj);
    env.remove_store("shop");
    env.api.reset_counters();
    let out = apply(&env);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("did not finish within 2s"),
        "{}",
        show(&out)
    );
    let watched = env
        .api
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/namespaces/store-shop/jobs") && r.query.contains("watch=true"));
    assert!(watched, "the wait is a watch:\n{}", env.api.log_tail(30));
    let st = status_annotation(&env, "store-shop");
    assert_eq!(st["code"], "final_backup_timeout", "{st:#}");
    assert_eq!(env.release_status("shop").as_deref(), Some("deployed"));
}

support::both_helms!(
    a_hanging_backup_times_out_and_listing_works_without_restic,
    deleting_a_store_backs_it_up_first_then_uninstalls,
    a_failing_backup_blocks_the_deletion_with_its_reason,
    on_demand_backups_are_kubectl_s_job_and_final_false_skips_the_last,
    snapshots_are_listed_with_restic_and_the_password_stays_secret,
    the_daemon_shows_the_last_backup_and_counts_failures,
);
