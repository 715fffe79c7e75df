//! Deletion safety end to end: the real `storekeeper run` and `approve-deletion` with the real
//! helm 3 and helm 4 against the test API server. A commit that drops many store files deletes
//! none until each is approved; a rename deletes nothing; a removed file waits out its grace
//! period, and coming back in time changes nothing.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::daemon::{Daemon, sample};
use support::git::Remote;
use support::{Env, Opts, show, wait_for};

const SHOP: &str = "engine = \"woocommerce\"\n";

fn helm_writes(env: &Env) -> Vec<String> {
    env.helm_calls()
        .into_iter()
        .filter(|c| c.starts_with("upgrade") || c.starts_with("uninstall") || c.starts_with("rollback"))
        .collect()
}

fn release_revision(env: &Env, store: &str) -> Option<u64> {
    let out = env
        .helm
        .command()
        .args(["status", store, "-n", &format!("store-{store}"), "-o", "json"])
        .output()
        .ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["version"].as_u64()
}

fn git_env(major: u8, remote: &Remote, extra: &'static str) -> Env {
    let state = tempfile::tempdir().expect("state").keep();
    let source = format!(
        "[source.git]\nurl = '{}'\nbranch = 'main'\nsubpath = 'stores.d'\npoll_interval = '500ms'\nstate_dir = '{}'\n",
        remote.url(),
        state.display()
    );
    Env::with(
        major,
        Opts {
            source: Some(source),
            extra,
            ..Opts::default()
        },
    )
}

const SIX: [&str; 6] = ["keep", "a", "b", "c", "d", "e"];

/// 6 stores, then one commit removes 5 files: after 3 intervals none is deleted and all 5 are
/// Blocked (mass_deletion); approving 2 deletes exactly those 2; restoring the other 3 files
/// clears the block with no helm call.
fn a_commit_that_drops_five_stores_deletes_none_until_approved(major: u8) {
    let remote = Remote::new();
    let files: Vec<(String, Option<&str>)> = SIX
        .iter()
        .map(|s| (format!("stores.d/{s}.toml"), Some(SHOP)))
        .collect();
    let as_refs = |f: &[(String, Option<&str>)]| -> Vec<(String, Option<String>)> {
        f.iter()
            .map(|(p, c)| (p.clone(), c.map(str::to_string)))
            .collect()
    };
    commit(&remote, &as_refs(&files));
    let env = git_env(major, &remote, "");
    let d = Daemon::start(&env, &[]);
    for s in SIX {
        assert!(d.wait_ready(s, Duration::from_secs(60)), "{s}\n{}", d.logs());
    }
    let gone: Vec<(String, Option<String>)> = SIX[1..]
        .iter()
        .map(|s| (format!("stores.d/{s}.toml"), None))
        .collect();
    let revision = commit(&remote, &gone);
    assert!(
        wait_for(Duration::from_secs(20), || SIX[1..]
            .iter()
            .all(|s| d.phase(s) == "Blocked")),
        "{}",
        d.get("/stores").1
    );
    env.clear_helm_log();
    std::thread::sleep(Duration::from_millis(1600)); // three intervals of 500 ms
    assert!(helm_writes(&env).is_empty(), "{:?}", helm_writes(&env));
    for s in SIX {
        assert!(env.namespace(&format!("store-{s}")).is_some(), "{s} must survive");
    }
    let a = d.store("a");
    let reason = a["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&revision[..12]) && reason.contains("5 stores"),
        "{a}"
    );
    assert_eq!(a["hint"], "storekeeper approve-deletion a b c d e", "{a}");
    let m = d.metrics();
    assert_eq!(
        sample(
            &m,
            r#"storekeeper_deletions_blocked_total{guard="mass_deletion"}"#
        ),
        Some(5.0),
        "{m}"
    );

    // `plan` shows the blocked deletions and the exact command.
    let plan = env.run(&["plan", "--output", "json"]);
    let doc: Value = serde_json::from_slice(&plan.stdout).unwrap_or(Value::Null);
    let blocked: Vec<&Value> = doc["steps"]
        .as_array()
        .map(|s| s.iter().filter(|s| s["guard"] == "mass_deletion").collect())
        .unwrap_or_default();
    assert_eq!(blocked.len(), 5, "{}", show(&plan));
    assert!(
        blocked
            .iter()
            .all(|s| s["hint"] == "storekeeper approve-deletion a b c d e"),
        "{doc}"
    );

    let out = env.run(&["approve-deletion", "a", "b", "--by", "ops@example.com"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let approval = env
        .annotation("store-a", "storekeeper.dev/deletion-approved")
        .expect("approval");
    assert!(
        approval.contains("ops@example.com") && approval.contains(&revision),
        "{approval}"
    );
    assert!(
        wait_for(Duration::from_secs(30), || env.namespace("store-a").is_none()
            && env.namespace("store-b").is_none()),
        "{}",
        d.logs()
    );
    std::thread::sleep(Duration::from_secs(1));
    for s in ["keep", "c", "d", "e"] {
        assert!(env.namespace(&format!("store-{s}")).is_some(), "{s} must survive");
    }
    assert_eq!(
        sample(&d.metrics(), r#"storekeeper_deletions_total{reason="prune"}"#),
        Some(2.0)
    );
    assert!(
        d.logs().contains(&format!("revision={revision}")),
        "deletions are logged with their revision"
    );

    env.clear_helm_log();
    let back: Vec<(String, Option<String>)> = ["c", "d", "e"]
        .iter()
        .map(|s| (format!("stores.d/{s}.toml"), Some(SHOP.to_string())))
        .collect();
    commit(&remote, &back);
    assert!(
        wait_for(Duration::from_secs(20), || ["c", "d", "e"]
            .iter()
            .all(|s| d.phase(s) == "Ready")),
        "{}",
        d.get("/stores").1
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        helm_writes(&env).is_empty(),
        "no helm call: {:?}",
        helm_writes(&env)
    );
    d.stop();
}

fn commit(remote: &Remote, files: &[(String, Option<String>)]) -> String {
    let refs: Vec<(&str, Option<&str>)> = files.iter().map(|(p, c)| (p.as_str(), c.as_deref())).collect();
    remote.commit(&refs)
}

/// A rename `a.toml` → `b.toml`: b is created, a is Blocked (possible_rename), and a's release
/// and namespace are untouched.
fn a_rename_creates_the_new_store_and_keeps_the_old_one(major: u8) {
    let env = Env::with(
        major,
        Opts {
            max_deletions: 5,
            ..Opts::default()
        },
    );
    let spec = "engine = \"woocommerce\"\n[shop]\ncurrency = \"EUR\"\n";
    env.write_store("keep", SHOP);
    env.write_store("a", spec);
    let d = Daemon::start(&env, &[]);
    assert!(d.wait_ready("a", Duration::from_secs(30)), "{}", d.logs());
    let revision = release_revision(&env, "a");
    std::fs::rename(env.stores.join("a.toml"), env.stores.join("b.toml")).expect("rename");
    assert!(d.wait_ready("b", Duration::from_secs(30)), "{}", d.logs());
    assert!(
        wait_for(Duration::from_secs(10), || d.phase("a") == "Blocked"),
        "{}",
        d.store("a")
    );
    let a = d.store("a");
    let reason = a["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("Names are identity") && reason.contains("b.toml"),
        "{a}"
    );
    assert_eq!(a["hint"], "storekeeper approve-deletion a");
    std::thread::sleep(Duration::from_secs(2));
    assert!(env.namespace("store-a").is_some());
    assert_eq!(release_revision(&env, "a"), revision, "a's release is untouched");
    assert!(
        !env.helm_calls().iter().any(|c| c.starts_with("uninstall a ")),
        "{:?}",
        env.helm_calls()
    );
    let m = d.metrics();
    assert_eq!(
        sample(
            &m,
            r#"storekeeper_deletions_blocked_total{guard="possible_rename"}"#
        ),
        Some(1.0),
        "{m}"
    );
    d.stop();
}

/// With `deletion_grace = "5s"`: a removed file makes the store PendingDeletion (deadline in
/// `/stores`, `status` and the metrics); the file back within the grace period leaves the release
/// revision unchanged; left out, the store is deleted after the deadline.
fn a_removed_file_waits_out_the_grace_period(major: u8) {
    let env = Env::with(
        major,
        Opts {
            deletion_grace: "5s",
            ..Opts::default()
        },
    );
    env.write_store("keep", SHOP);
    env.write_store("x", SHOP);
    let d = Daemon::start(&env, &[]);
    assert!(d.wait_ready("x", Duration::from_secs(30)), "{}", d.logs());
    let revision = release_revision(&env, "x");

    env.remove_store("x");
    assert!(
        wait_for(Duration::from_secs(10), || d.phase("x") == "PendingDeletion"),
        "{}",
        d.store("x")
    );
    let x = d.store("x");
    assert!(x["deletion_deadline"].is_string(), "{x}");
    // The phase is recorded as the operation starts; the mark follows a moment later.
    assert!(wait_for(Duration::from_secs(5), || {
        env.annotation("store-x", "storekeeper.dev/pending-deletion")
            .is_some()
    }));
    assert!(
        sample(
            &d.metrics(),
            r#"storekeeper_deletion_deadline_timestamp_seconds{store="x"}"#
        )
        .is_some()
    );
    let status = env.run(&["status", "--url", &format!("http://{}", d.addr)]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("PendingDeletion") && text.contains("deleted at"),
        "{text}"
    );
    env.write_store("x", SHOP);
    assert!(
        wait_for(Duration::from_secs(10), || d.phase("x") == "Ready"),
        "{}",
        d.store("x")
    );
    assert!(
        env.annotation("store-x", "storekeeper.dev/pending-deletion")
            .is_none()
    );
    std::thread::sleep(Duration::from_secs(6)); // past the old deadline
    assert!(env.namespace("store-x").is_some());
    assert_eq!(
        release_revision(&env, "x"),
        revision,
        "nothing happened to the store"
    );

    env.remove_store("x");
    let removed = Instant::now();
    assert!(wait_for(Duration::from_secs(10), || d.phase("x") == "PendingDeletion"));
    assert!(
        wait_for(Duration::from_secs(30), || env.namespace("store-x").is_none()),
        "{}",
        d.logs()
    );
    let waited = removed.elapsed();
    assert!(
        waited >= Duration::from_secs(5),
        "deleted only after the deadline: {waited:?}"
    );
    assert!(env.namespace("store-keep").is_some());
    d.stop();
}

support::both_helms!(
    a_commit_that_drops_five_stores_deletes_none_until_approved,
    a_rename_creates_the_new_store_and_keeps_the_old_one,
    a_removed_file_waits_out_the_grace_period,
);
