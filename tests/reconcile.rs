//! The reconciler core end to end: the real `storekeeper` binary and the real helm (3 and 4)
//! against the test API server.

mod support;

use std::time::Duration;

use support::{Env, Opts, show, signal, wait_for};

const SHOP: &str = "engine = \"woocommerce\"\n[shop]\ntitle = \"Shop\"\n";

fn three_stores(env: &Env) {
    env.write_store("alpha", SHOP);
    env.write_store("beta", "engine = \"woocommerce\"\nplan = \"medium\"\n");
    env.write_store("gamma", "engine = \"medusa\"\n");
}

fn apply_ok(env: &Env) -> String {
    let out = env.run(&["apply"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        show(&out),
        env.api.log_tail(30)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn apply_converges_and_is_idle_after(major: u8) {
    let env = Env::new(major);
    three_stores(&env);
    apply_ok(&env);
    for store in ["alpha", "beta", "gamma"] {
        let ns = format!("store-{store}");
        let labels = &env.namespace(&ns).expect("namespace")["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/managed-by"], "storekeeper");
        assert_eq!(labels["storekeeper.dev/store"], store);
        assert_eq!(env.release_status(store).as_deref(), Some("deployed"), "{store}");
        assert_eq!(env.phase(&ns).as_deref(), Some("Ready"), "{store}");
        assert!(env.annotation(&ns, "storekeeper.dev/spec-hash").is_some());
        assert!(
            env.annotation(&ns, "storekeeper.dev/revision")
                .is_some_and(|r| r.starts_with("dir:"))
        );
        assert!(
            env.api
                .get(&format!(
                    "/api/v1/namespaces/{ns}/secrets/storekeeper-credentials"
                ))
                .is_some()
        );
    }
    let listed = env.helm_json(&["list", "-A"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");

    // Nothing changed: no helm process, no API write.
    env.clear_helm_log();
    env.api.reset_counters();
    let out = apply_ok(&env);
    assert!(
        env.helm_calls().iter().all(|c| c.starts_with("version")),
        "{:?}",
        env.helm_calls()
    );
    assert_eq!(
        env.helm_calls().len(),
        1,
        "only `helm version` to detect the major version"
    );
    assert_eq!(env.api.write_count(), 0, "{}", env.api.log_tail(20));
    assert!(out.contains("0 change(s) applied"), "{out}");
}

fn plan_shows_diff_and_apply_upgrades_only_that_store(major: u8) {
    let env = Env::new(major);
    three_stores(&env);
    apply_ok(&env);
    let secret_before = env
        .api
        .get("/api/v1/namespaces/store-alpha/secrets/storekeeper-credentials");
    env.write_store(
        "alpha",
        "engine = \"woocommerce\"\n[shop]\ntitle = \"Renamed Shop\"\n",
    );
    let out = env.run(&["plan"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        text.contains("~ alpha") && text.contains("spec changed"),
        "{text}"
    );
    assert!(
        text.contains("-      \"title\": \"Shop\"") || text.contains("-    \"title\": \"Shop\""),
        "{text}"
    );
    assert!(text.contains("\"title\": \"Renamed Shop\""), "{text}");
    assert!(text.contains("= beta") && text.contains("= gamma"), "{text}");

    env.clear_helm_log();
    apply_ok(&env);
    let upgrades: Vec<String> = env
        .helm_calls()
        .into_iter()
        .filter(|c| c.starts_with("upgrade"))
        .collect();
    assert_eq!(upgrades.len(), 1, "{upgrades:?}");
    assert!(
        upgrades[0].starts_with("upgrade --install alpha "),
        "{upgrades:?}"
    );
    let cm = env
        .api
        .get("/api/v1/namespaces/store-alpha/configmaps/alpha-store")
        .expect("configmap");
    assert_eq!(cm["data"]["title"], "Renamed Shop");
    // Credentials are generated once and kept across upgrades.
    let secret_after = env
        .api
        .get("/api/v1/namespaces/store-alpha/secrets/storekeeper-credentials");
    assert_eq!(
        secret_before.map(|s| s["data"].clone()),
        secret_after.map(|s| s["data"].clone())
    );
    let out = env.run(&["plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

/// A plan change says what it does to the volumes: they never shrink, and grow only when the
/// chart may expand them.
fn plan_says_what_a_plan_change_does_to_storage(major: u8) {
    let env = Env::new(major);
    three_stores(&env);
    apply_ok(&env);
    env.write_store("beta", "engine = \"woocommerce\"\nplan = \"small\"\n");
    env.write_store(
        "alpha",
        "engine = \"woocommerce\"\nplan = \"large\"\n[shop]\ntitle = \"Shop\"\n",
    );
    let out = env.run(&["plan"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("storage: app volume stays 10Gi: volumes never shrink (the plan asks for 5Gi)"),
        "{text}"
    );
    assert!(
        text.contains("storage: app volume grows 5Gi -> 20Gi only with persistence.expandVolumes"),
        "{text}"
    );
}

fn deletion_rules(major: u8) {
    let env = Env::new(major);
    three_stores(&env);
    env.write_store("safe", "engine = \"woocommerce\"\nprotect = true\n");
    apply_ok(&env);

    // An unparsable file: Invalid, release untouched.
    env.write_store("beta", "engine = \"woocommerce\"\nplan = \n");
    env.clear_helm_log();
    let out = apply_ok(&env);
    assert!(out.contains("beta") && out.contains("Invalid"), "{out}");
    assert_eq!(env.release_status("beta").as_deref(), Some("deployed"));
    assert!(
        env.helm_calls().iter().all(|c| !c.contains("beta")),
        "{:?}",
        env.helm_calls()
    );

    // Directory emptied while stores exist: nothing deleted, Blocked.
    for s in ["alpha", "beta", "gamma", "safe"] {
        env.remove_store(s);
    }
    let out = apply_ok(&env);
    assert!(out.contains("empty_snapshot"), "{out}");
    for s in ["alpha", "beta", "gamma", "safe"] {
        assert!(
            env.namespace(&format!("store-{s}")).is_some(),
            "{s} must survive an empty snapshot"
        );
    }

    // Three files gone (one store remains) with max_deletions = 1: the breaker holds all three
    // (mass_deletion), as many plans as it takes; the protected store is never deleted.
    env.write_store("keep", SHOP);
    for _ in 0..2 {
        let out = apply_ok(&env);
        assert!(out.contains("mass_deletion"), "{out}");
        assert!(out.contains("safe") && out.contains("Protected"), "{out}");
        for s in ["alpha", "beta", "gamma"] {
            assert!(
                env.namespace(&format!("store-{s}")).is_some(),
                "{s} held back\n{out}"
            );
        }
    }
    // Two come back: one deletion is under the limit and proceeds.
    env.write_store("alpha", SHOP);
    env.write_store("beta", "engine = \"woocommerce\"\nplan = \"medium\"\n");
    let out = apply_ok(&env);
    assert!(env.namespace("store-gamma").is_none(), "{out}");
    assert_eq!(env.release_status("gamma"), None);
    for s in ["alpha", "beta", "keep", "safe"] {
        assert!(env.namespace(&format!("store-{s}")).is_some(), "{s}\n{out}");
    }
    assert_eq!(env.release_status("safe").as_deref(), Some("deployed"));
}

fn conflict_is_reported_and_never_touched(major: u8) {
    let env = Env::new(major);
    env.api.insert(
        "/api/v1/namespaces",
        serde_json::json!({"metadata": {"name": "store-x", "labels": {"owner": "someone"}}}),
    );
    env.write_store("x", SHOP);
    env.api.reset_counters();
    let out = env.run(&["apply"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("x") && text.contains("Conflict"), "{}", show(&out));
    assert_eq!(env.api.write_count(), 0, "{}", env.api.log_tail(20));
    let ns = env.namespace("store-x").expect("still there");
    assert_eq!(ns["metadata"]["labels"]["owner"], "someone");
    assert!(ns["metadata"]["labels"].get("storekeeper.dev/store").is_none());
    // A plan shows it too, without changes.
    let out = env.run(&["plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

fn never_ready_fails_and_first_install_leaves_nothing(major: u8) {
    let env = Env::with(
        major,
        Opts {
            helm_timeout: "4s",
            ..Opts::default()
        },
    );
    env.write_store("stuck", "engine = \"woocommerce\"\n[values]\nneverReady = true\n");
    let out = env.run(&["apply"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text.contains("FAILED") && text.contains("timed out"),
        "{}",
        show(&out)
    );
    assert_eq!(env.release_status("stuck"), None, "rolled back: no release left");
    assert!(
        env.namespace("store-stuck").is_none(),
        "a failed first install leaves no namespace"
    );
}

fn failed_upgrade_of_a_ready_store_rolls_back(major: u8) {
    let env = Env::with(
        major,
        Opts {
            helm_timeout: "4s",
            ..Opts::default()
        },
    );
    env.write_store("shop", SHOP);
    apply_ok(&env);
    env.write_store(
        "shop",
        "engine = \"woocommerce\"\n[shop]\ntitle = \"Broken\"\n[values]\nneverReady = true\n",
    );
    let out = env.run(&["apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(
        env.release_status("shop").as_deref(),
        Some("deployed"),
        "rolled back to the last good revision"
    );
    let cm = env
        .api
        .get("/api/v1/namespaces/store-shop/configmaps/shop-store")
        .expect("configmap");
    assert_eq!(
        cm["data"]["title"], "Shop",
        "the store keeps running its last good spec"
    );
    assert_eq!(env.phase("store-shop").as_deref(), Some("Failed"));
}

/// The daemon and its helm are SIGKILLed mid-upgrade, as a crash or OOM kill would: the release
/// is left `pending-upgrade` and the namespace says Provisioning. The next cycle recovers it.
fn pending_upgrade_is_recovered(major: u8) {
    let env = Env::with(
        major,
        Opts {
            helm_timeout: "3s",
            ..Opts::default()
        },
    );
    env.write_store("shop", SHOP);
    apply_ok(&env);
    env.write_store("shop", "engine = \"woocommerce\"\n[values]\nneverReady = true\n");
    let mut daemon = env.spawn(&["apply"]);
    assert!(
        wait_for(Duration::from_secs(20), || env.release_status("shop").as_deref()
            == Some("pending-upgrade")),
        "helm did not reach pending-upgrade"
    );
    signal(&daemon, "KILL");
    let _ = daemon.wait();
    // helm runs in its own process group, so it survived the daemon: kill it as well.
    let pattern = format!("upgrade --install shop .*{}", env.api.kubeconfig().display());
    let _ = std::process::Command::new("pkill")
        .args(["-KILL", "-f", &pattern])
        .status();
    std::thread::sleep(Duration::from_secs(4)); // older than the helm timeout
    assert_eq!(env.release_status("shop").as_deref(), Some("pending-upgrade"));
    assert_eq!(env.phase("store-shop").as_deref(), Some("Provisioning"));

    env.write_store("shop", "engine = \"woocommerce\"\n[shop]\ntitle = \"Again\"\n");
    let out = env.run(&["apply"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("recover (Rollback)"),
        "{}",
        show(&out)
    );
    assert_eq!(
        env.release_status("shop").as_deref(),
        Some("deployed"),
        "{}",
        show(&out)
    );
    apply_ok(&env);
    let cm = env
        .api
        .get("/api/v1/namespaces/store-shop/configmaps/shop-store")
        .expect("configmap");
    assert_eq!(cm["data"]["title"], "Again", "rolled forward to the desired spec");
    assert_eq!(env.phase("store-shop").as_deref(), Some("Ready"));
}

/// A release someone else left pending is invisible to a normal cycle (the namespace says Ready)
/// but found by a resync.
fn resync_finds_a_foreign_stuck_release(major: u8) {
    let env = Env::with(
        major,
        Opts {
            helm_timeout: "3s",
            ..Opts::default()
        },
    );
    env.write_store("shop", SHOP);
    apply_ok(&env);
    env.leave_pending_upgrade("shop");
    std::thread::sleep(Duration::from_secs(4));
    let out = env.run(&["apply", "--resync"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("recover (Rollback)"),
        "{}",
        show(&out)
    );
    assert_eq!(env.release_status("shop").as_deref(), Some("deployed"));
}

fn sigterm_lets_helm_finish(major: u8) {
    let env = Env::new(major);
    env.write_store("shop", SHOP);
    apply_ok(&env);
    env.write_store(
        "shop",
        "engine = \"woocommerce\"\n[shop]\ntitle = \"During shutdown\"\n",
    );
    // Slow the API down so the upgrade is surely in flight when the signal comes.
    env.api.set_delay(Duration::from_millis(150));
    env.clear_helm_log();
    let mut child = env.spawn(&["run"]);
    assert!(
        wait_for(Duration::from_secs(30), || env
            .helm_calls()
            .iter()
            .any(|c| c.starts_with("upgrade"))),
        "the daemon never started the upgrade"
    );
    signal(&child, "TERM");
    let status = child.wait().expect("wait");
    env.api.set_delay(Duration::ZERO);
    assert_eq!(status.code(), Some(0));
    assert_eq!(env.release_status("shop").as_deref(), Some("deployed"));
    let cm = env
        .api
        .get("/api/v1/namespaces/store-shop/configmaps/shop-store")
        .expect("configmap");
    assert_eq!(cm["data"]["title"], "During shutdown");
}

/// A resync of many stores reads release state with one `helm list`, and still finds a stuck one.
fn resync_of_many_stores_is_one_helm_list(major: u8) {
    let env = Env::with(
        major,
        Opts {
            helm_timeout: "3s",
            ..Opts::default()
        },
    );
    for s in ["a", "b", "c", "shop"] {
        env.write_store(s, SHOP);
    }
    apply_ok(&env);
    env.leave_pending_upgrade("shop");
    std::thread::sleep(Duration::from_secs(4));
    env.clear_helm_log();
    let out = env.run(&["apply", "--resync"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("recover (Rollback)"),
        "{}",
        show(&out)
    );
    let calls = env.helm_calls();
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("list -A")).count(),
        1,
        "{calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("status")).count(),
        0,
        "{calls:?}"
    );
    assert_eq!(env.release_status("shop").as_deref(), Some("deployed"));
}

/// In the daemon, a store that keeps failing is retried with backoff, not on every cycle.
fn failing_store_is_retried_with_backoff(major: u8) {
    let env = Env::with(
        major,
        Opts {
            helm_timeout: "2s",
            ..Opts::default()
        },
    );
    env.write_store("good", SHOP);
    env.write_store("stuck", "engine = \"woocommerce\"\n[values]\nneverReady = true\n");
    let mut child = env.spawn(&["run"]);
    // The cycle interval is 500 ms; the first backoff is 8–12 s.
    std::thread::sleep(Duration::from_secs(7));
    signal(&child, "TERM");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    let attempts = env
        .helm_calls()
        .iter()
        .filter(|c| c.starts_with("upgrade --install stuck"))
        .count();
    assert_eq!(attempts, 1, "{:?}", env.helm_calls());
    assert_eq!(
        env.release_status("good").as_deref(),
        Some("deployed"),
        "one failing store does not block others"
    );
}

support::both_helms!(
    plan_says_what_a_plan_change_does_to_storage,
    apply_converges_and_is_idle_after,
    plan_shows_diff_and_apply_upgrades_only_that_store,
    deletion_rules,
    conflict_is_reported_and_never_touched,
    never_ready_fails_and_first_install_leaves_nothing,
    failed_upgrade_of_a_ready_store_rolls_back,
    pending_upgrade_is_recovered,
    resync_finds_a_foreign_stuck_release,
    resync_of_many_stores_is_one_helm_list,
    sigterm_lets_helm_finish,
    failing_store_is_retried_with_backoff,
);
