use std::sync::Arc;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::monitor::{BackupMonitor, summarize};
use super::*;
use crate::metrics::Metrics;

fn name(s: &str) -> StoreName {
    StoreName::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
}

fn cronjob() -> CronJob {
    from_json(json!({
        "metadata": {"name": "shop-backup", "namespace": "store-shop", "uid": "cj-uid",
                     "labels": {"helm.sh/chart": "woocommerce-store-0.4.0"}},
        "spec": {"schedule": "30 3 * * *", "jobTemplate": {
            "metadata": {"labels": {"app.kubernetes.io/component": "backup", "storekeeper.dev/store": "shop"},
                         "annotations": {"a": "b"}},
            "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "restic", "image": "restic"}]}}}}}
    }))
}

/// The shape `kubectl create job x --from=cronjob/shop-backup` gives (checked against kubectl
/// in tests/backups.rs), plus storekeeper's purpose label.
#[test]
fn a_job_from_the_cronjob_is_what_kubectl_makes() {
    let job = job_from_cronjob(&cronjob(), "shop-backup-final-x", Purpose::Final).expect("job");
    let v = serde_json::to_value(&job).unwrap_or_default();
    assert_eq!(v["metadata"]["name"], "shop-backup-final-x");
    assert_eq!(v["metadata"]["namespace"], "store-shop");
    assert_eq!(
        v["metadata"]["labels"],
        json!({"app.kubernetes.io/component": "backup", "storekeeper.dev/store": "shop", "storekeeper.dev/backup": "final"})
    );
    assert_eq!(
        v["metadata"]["annotations"],
        json!({"a": "b", "cronjob.kubernetes.io/instantiate": "manual"})
    );
    assert_eq!(
        v["metadata"]["ownerReferences"],
        json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": "shop-backup", "uid": "cj-uid", "controller": true}])
    );
    assert_eq!(v["spec"]["backoffLimit"], 1);
    assert_eq!(v["spec"]["template"]["spec"]["containers"][0]["name"], "restic");
}

#[test]
fn job_names_fit_the_job_name_label() {
    let long = format!("{}-backup", "a".repeat(40));
    for purpose in [Purpose::Final, Purpose::Manual] {
        let n = job_name(&long, purpose);
        assert!(n.len() <= 63 && n.starts_with(&long) && !n.ends_with('-'), "{n}");
    }
}

#[test]
fn script_results_keep_only_bounded_words_and_ids() {
    let id = "0123456789abcdef".repeat(4);
    let r = ScriptResult::parse(&format!("result=ok\nreason=ok\nexit_code=0\nsnapshot={id}\n"));
    assert_eq!(
        r,
        ScriptResult {
            result: Some("ok".into()),
            reason: Some("ok".into()),
            exit_code: Some(0),
            snapshot: Some(id)
        }
    );
    let r = ScriptResult::parse("result=failed\nreason=<script>alert(1)</script>\nsnapshot=xyz\n");
    assert_eq!((r.reason, r.snapshot), (None, None));
}

fn job(name: &str, store: &str, cond: Option<(&str, &str, &str)>) -> Job {
    let conditions: Vec<serde_json::Value> = cond
        .map(|(t, reason, at)| json!({"type": t, "status": "True", "reason": reason, "lastTransitionTime": at}))
        .into_iter()
        .collect();
    from_json(json!({
        "metadata": {"name": name, "namespace": format!("store-{store}"), "uid": format!("uid-{name}"),
                     "labels": {"app.kubernetes.io/component": "backup", "storekeeper.dev/store": store}},
        "status": {"conditions": conditions}
    }))
}

fn pod(containers: serde_json::Value) -> Pod {
    from_json(json!({"metadata": {"name": "p"}, "status": {"containerStatuses": containers}}))
}

#[test]
fn the_outcome_comes_from_the_job_and_its_pods_termination_message() {
    let id = "ab".repeat(32);
    let ok = job(
        "j",
        "shop",
        Some(("Complete", "CompletionsReached", "2026-11-22T03:31:00Z")),
    );
    let msg = format!("result=ok\nreason=ok\nexit_code=0\nsnapshot={id}\n");
    let p = pod(
        json!([{"name": "restic", "image": "r", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "message": msg}}}]),
    );
    let o = outcome(&ok, Some(&p));
    assert!(
        o.succeeded && o.reason == "ok" && o.snapshot.as_deref() == Some(id.as_str()),
        "{o:?}"
    );
    let failed = job(
        "j",
        "shop",
        Some(("Failed", "BackoffLimitExceeded", "2026-11-22T03:31:00Z")),
    );
    let p = pod(
        json!([{"name": "restic", "image": "r", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 5, "reason": "Error",
            "message": "result=failed\nreason=repository_locked\nexit_code=5\n"}}}]),
    );
    let o = outcome(&failed, Some(&p));
    assert!(!o.succeeded, "{o:?}");
    assert_eq!(o.reason, "repository_locked");
    assert_eq!(o.detail.as_deref(), Some("container restic exited 5, Error"));
    // No pod (deadline hit while Pending): the Job's own reason.
    let late = job(
        "j",
        "shop",
        Some(("Failed", "DeadlineExceeded", "2026-11-22T04:31:00Z")),
    );
    assert_eq!(outcome(&late, None).reason, "DeadlineExceeded");
}

#[test]
fn final_policy_follows_the_settings_and_the_store_file() {
    use crate::spec::backup::StoreBackup;
    let d = crate::spec::SpecDefaults {
        base_domain: "example.com".into(),
        policy: Default::default(),
    };
    let spec = |extra: &str| {
        let src = format!("engine = \"woocommerce\"\n{extra}");
        crate::spec::parse_bytes(std::path::Path::new("shop.toml"), src.as_bytes(), &d)
            .unwrap_or_else(|e| panic!("{e:?}"))
    };
    let settings =
        crate::config::Settings::parse(std::path::Path::new("c"), "[backup]\nrepository = \"/r\"\n")
            .unwrap_or_else(|e| panic!("{e:?}"))
            .backup
            .expect("backup");
    let on = Some(&*settings);
    assert_eq!(FinalPolicy::of(&spec(""), on), FinalPolicy::Required);
    assert_eq!(FinalPolicy::of(&spec(""), None), FinalPolicy::Disabled);
    assert_eq!(
        FinalPolicy::of(&spec("[backup]\nfinal = false\n"), on),
        FinalPolicy::OptedOut
    );
    assert_eq!(
        FinalPolicy::of(&spec("[backup]\nenabled = false\n"), on),
        FinalPolicy::Disabled
    );
    assert_eq!(spec("").backup, StoreBackup::inherit());
    for p in [
        FinalPolicy::Required,
        FinalPolicy::OptedOut,
        FinalPolicy::Disabled,
    ] {
        assert_eq!(FinalPolicy::parse(Some(p.as_str())), p);
    }
    assert_eq!(FinalPolicy::parse(Some("yes")), FinalPolicy::Unknown);
}

fn series(m: &Metrics, name: &str) -> Vec<String> {
    m.render()
        .lines()
        .filter(|l| l.starts_with(name))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_monitor_shows_the_last_backup_counts_new_failures_once_and_forgets_gone_stores() {
    let metrics = Arc::new(Metrics::new());
    let m = BackupMonitor::new(Arc::clone(&metrics));
    // History from before the daemon started: shown, not counted, not notified.
    m.reset(&[
        job(
            "a-1",
            "a",
            Some(("Complete", "CompletionsReached", "2020-01-01T03:31:00Z")),
        ),
        job(
            "a-2",
            "a",
            Some(("Failed", "BackoffLimitExceeded", "2020-01-02T03:31:00Z")),
        ),
        job("b-1", "b", None),
    ]);
    let a = m.last(&name("a")).expect("a has backups");
    assert_eq!(
        (a.result.as_str(), a.job.as_str()),
        ("BackoffLimitExceeded", "a-2")
    );
    assert_eq!(
        a.last_success.map(|t| t.to_string()).as_deref(),
        Some("2020-01-01T03:31:00Z")
    );
    assert_eq!(m.last(&name("b")), None, "nothing finished yet");
    assert!(m.take_failures().is_empty());
    assert_eq!(
        series(&metrics, "storekeeper_backup_last_success_timestamp_seconds{"),
        [r#"storekeeper_backup_last_success_timestamp_seconds{store="a"} 1577849460"#]
    );
    // A new failure: counted once, even when seen again after a re-list.
    let now = jiff::Timestamp::now().to_string();
    let failed = job("b-2", "b", Some(("Failed", "DeadlineExceeded", &now)));
    m.apply(&failed);
    m.reset(std::slice::from_ref(&failed));
    let f = m.take_failures();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (f[0].store.as_str(), f[0].job.as_str(), f[0].reason.as_str()),
        ("b", "b-2", "DeadlineExceeded")
    );
    assert_eq!(f[0].namespace, "store-b");
    let e = f[0].event("Ready");
    assert_eq!(
        (e.kind, e.code, e.store.as_str()),
        (crate::notify::EventKind::BackupFailed, Some("backup_failed"), "b")
    );
    assert_eq!(e.reason, "backup Job b-2 failed: DeadlineExceeded");
    assert!(
        metrics
            .render()
            .contains(r#"storekeeper_backup_failures_total{store="b"} 1"#),
        "{}",
        metrics.render()
    );
    assert!(m.last(&name("a")).is_none(), "a's Jobs are gone from the list");
    assert!(series(&metrics, "storekeeper_backup_last_success_timestamp_seconds{").is_empty());
    // The store's last Job goes (namespace deleted): its series go too.
    m.delete(&failed);
    assert!(m.all().is_empty());
    assert!(series(&metrics, "storekeeper_backup_failures_total{").is_empty());
}

#[test]
fn listing_jobs_and_jobs_of_no_store_are_not_backups() {
    let mut listing = job(
        "x-list-1",
        "a",
        Some(("Complete", "CompletionsReached", "2026-01-01T00:00:00Z")),
    );
    if let Some(l) = listing.metadata.labels.as_mut() {
        l.insert(PURPOSE_LABEL.into(), snapshots::LIST_PURPOSE.into());
    }
    let mut foreign = job(
        "y",
        "a",
        Some(("Complete", "CompletionsReached", "2026-01-01T00:00:00Z")),
    );
    if let Some(l) = foreign.metadata.labels.as_mut() {
        l.insert(STORE_LABEL.into(), "Not A Store".into());
    }
    assert!(summarize(&[listing, foreign]).is_empty());
}
