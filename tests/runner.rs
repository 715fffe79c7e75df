//! The per-store runner end to end: the real `storekeeper run` and the real helm 3 and helm 4
//! against the test API server. A store whose install hangs never holds back another; every
//! failure class ends visible (Failed, last_error, a counted code, next_attempt); a deposed
//! leader starts nothing.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use support::daemon::{Daemon, sample};
use support::{Env, Opts, wait_for};

const SHOP: &str = "engine = \"woocommerce\"\n";
const HANGS: &str = "engine = \"woocommerce\"\n[values]\nneverReady = true\n";

/// While A's first install hangs in `--wait` (helm timeout 60 s), B's new file starts B's helm
/// within 2 s and C's removed file deletes C; A is Provisioning in `/stores` and the gauge all
/// along, then Failed with `last_error` once helm gives up.
fn a_hanging_install_holds_back_no_other_store(major: u8) {
    let env = Env::with(
        major,
        Opts {
            helm_timeout: "60s",
            interval: "2s",
            ..Opts::default()
        },
    );
    env.write_store("c", SHOP);
    let d = Daemon::start(&env, &[]);
    assert!(d.wait_ready("c", Duration::from_secs(30)), "{}", d.logs());
    env.write_store("a", HANGS);
    assert!(wait_for(Duration::from_secs(10), || env.helm_started("a")));
    let a_started = Instant::now();
    assert_eq!(d.phase("a"), "Provisioning");

    let written = Instant::now();
    env.write_store("b", SHOP);
    let mut b_started = None;
    while written.elapsed() < Duration::from_secs(10) {
        if env.helm_started("b") {
            b_started = Some(written.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let b_started = b_started.expect("B's helm started");
    eprintln!("B's helm started {b_started:?} after its file was written");
    assert!(b_started < Duration::from_secs(2), "B waited {b_started:?}");
    assert!(d.wait_ready("b", Duration::from_secs(20)), "{}", d.logs());

    env.remove_store("c");
    assert!(
        wait_for(Duration::from_secs(20), || env.namespace("store-c").is_none()),
        "C is deleted without waiting for A:\n{}",
        d.logs()
    );
    assert!(
        a_started.elapsed() < Duration::from_secs(55),
        "all of it while A still hangs"
    );
    for _ in 0..3 {
        assert_eq!(
            d.phase("a"),
            "Provisioning",
            "A stays Provisioning while helm waits"
        );
        let m = d.metrics();
        let provisioning = sample(&m, r#"storekeeper_stores{phase="Provisioning"}"#);
        assert!(provisioning >= Some(1.0), "the gauge shows A: {provisioning:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        wait_for(Duration::from_secs(90), || d.phase("a") == "Failed"),
        "A fails after the helm timeout:\n{}",
        d.logs()
    );
    let a = d.store("a");
    assert_eq!(a["error_code"], "helm_timeout", "{a}");
    assert!(a["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{a}");
    assert!(a["next_attempt"].is_string(), "{a}");
    let m = d.metrics();
    assert_eq!(
        sample(&m, r#"storekeeper_reconcile_errors_total{code="helm_timeout"}"#),
        Some(1.0),
        "{m}"
    );
    d.stop();
}

/// One failure, injected by the test API server or by helm, and what it must look like.
struct Fault {
    name: &'static str,
    /// Sets the stage up (stores already there), then injects the fault.
    arm: fn(&Env, &Daemon),
    /// The store that fails.
    store: &'static str,
    /// How its `last_error` begins: the stage that failed.
    error: &'static str,
}

fn fail_namespace_create(env: &Env, _: &Daemon) {
    // Namespace creations share one path: only x's, the next one, fails.
    env.api.fail_next(1, "POST", "/api/v1/namespaces$");
    env.write_store("x", SHOP);
}

fn fail_secret_create(env: &Env, _: &Daemon) {
    env.api.fail_next(3, "POST", "/namespaces/store-x/secrets$");
    env.write_store("x", SHOP);
}

fn fail_annotate(env: &Env, _: &Daemon) {
    env.api.fail_next(3, "PATCH", "/api/v1/namespaces/store-x$");
    env.write_store("x", SHOP);
}

fn fail_helm(env: &Env, _: &Daemon) {
    env.write_store("x", HANGS);
}

fn fail_namespace_delete(env: &Env, d: &Daemon) {
    // Another store stays, or the empty-snapshot guard would (rightly) refuse the deletion.
    env.write_store("keep", SHOP);
    env.write_store("x", SHOP);
    assert!(d.wait_ready("x", Duration::from_secs(20)), "{}", d.logs());
    env.api.fail_next(1000, "DELETE", "/api/v1/namespaces/store-x$");
    env.remove_store("x");
}

fn fail_rollback(env: &Env, d: &Daemon) {
    env.write_store("x", SHOP);
    assert!(d.wait_ready("x", Duration::from_secs(20)), "{}", d.logs());
    // A release left pending (as by a crash) is rolled back once older than the helm timeout,
    // when a change makes the plan look at it; every write of a release record then fails, so
    // the rollback does.
    env.leave_pending_upgrade("x");
    env.api.fail_next(1000, "POST", "/namespaces/store-x/secrets$");
    env.api
        .fail_next(1000, "PUT", "/namespaces/store-x/secrets/sh.helm.release");
    env.write_store("x", "engine = \"woocommerce\"\n[shop]\ntitle = \"Changed\"\n");
}

const FAULTS: &[Fault] = &[
    Fault {
        name: "namespace create 500",
        error: "creating the namespace",
        arm: fail_namespace_create,
        store: "x",
    },
    Fault {
        name: "Secret create 500",
        error: "creating the credentials Secret",
        arm: fail_secret_create,
        store: "x",
    },
    Fault {
        name: "annotate 500",
        error: "annotating the namespace",
        arm: fail_annotate,
        store: "x",
    },
    Fault {
        name: "helm fails",
        error: "helm upgrade --install",
        arm: fail_helm,
        store: "x",
    },
    Fault {
        name: "namespace delete fails",
        error: "deleting the namespace",
        arm: fail_namespace_delete,
        store: "x",
    },
    Fault {
        name: "rollback fails",
        error: "helm rollback",
        arm: fail_rollback,
        store: "x",
    },
];

/// Every failure class ends Failed with `last_error`, a code counted in
/// `storekeeper_reconcile_errors_total`, and `next_attempt`; a store created meanwhile is not
/// delayed by it.
fn every_failure_class_is_failed_visible_and_isolated(major: u8) {
    for fault in FAULTS {
        let env = Env::with(
            major,
            Opts {
                helm_timeout: "3s",
                ..Opts::default()
            },
        );
        let d = Daemon::start(&env, &[]);
        (fault.arm)(&env, &d);
        assert!(
            wait_for(Duration::from_secs(30), || d.phase(fault.store) == "Failed"),
            "{}: {} is Failed\n{}\n{}",
            fault.name,
            d.store(fault.store),
            d.logs(),
            env.api.log_tail(30)
        );
        let s = d.store(fault.store);
        let code = s["error_code"].as_str().unwrap_or_default().to_string();
        assert!(!code.is_empty(), "{}: {s}", fault.name);
        assert!(
            s["last_error"]
                .as_str()
                .is_some_and(|e| e.starts_with(fault.error)),
            "{}: {s}",
            fault.name
        );
        assert!(s["next_attempt"].is_string(), "{}: {s}", fault.name);
        let m = d.metrics();
        let counted = sample(
            &m,
            &format!(r#"storekeeper_reconcile_errors_total{{code="{code}"}}"#),
        );
        assert!(counted >= Some(1.0), "{}: {code} counted\n{m}", fault.name);
        // While x fails and waits for its retry, another store goes through at once.
        env.write_store("bystander", SHOP);
        assert!(
            d.wait_ready("bystander", Duration::from_secs(10)),
            "{}: the bystander is not delayed\n{}",
            fault.name,
            d.logs()
        );
        eprintln!("{}: Failed with code {code}", fault.name);
        d.stop();
    }
}

/// A second helm wrapper and config for another daemon on the same test API server, logging
/// its own helm calls.
fn second_daemon_config(env: &Env) -> (PathBuf, PathBuf) {
    let log = env.dir.path().join("helm-b.log");
    let wrapper = env.dir.path().join("helm-b");
    let real = testbed::tools::helm(env.major);
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        ),
    )
    .expect("write wrapper");
    let _ = std::process::Command::new("chmod")
        .args(["755"])
        .arg(&wrapper)
        .status();
    let config = std::fs::read_to_string(&env.config).expect("config");
    let first = env.dir.path().join("helm");
    let config = config.replace(&first.display().to_string(), &wrapper.display().to_string());
    let path = env.dir.path().join("storekeeper-b.toml");
    std::fs::write(&path, config).expect("write config");
    (path, log)
}

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/storekeeper/leases";

/// Leadership moves while A's install runs and B waits behind it (`max_concurrent = 1`): the
/// deposed daemon starts no helm for B, A's helm finishes, and the new leader converges B.
fn a_deposed_leader_starts_nothing_and_the_new_one_converges(major: u8) {
    let env = Env::with(
        major,
        Opts {
            helm_timeout: "8s",
            max_concurrent: 1,
            extra: "[leader_election]\nenabled = true\nnamespace = 'storekeeper'\n\
                    lease_name = 'storekeeper-leader'\nlease_duration = '2s'\nrenew_every = '300ms'\n",
            ..Opts::default()
        },
    );
    env.api.insert(
        "/api/v1/namespaces",
        json!({ "metadata": { "name": "storekeeper" } }),
    );
    let a_daemon = Daemon::start(&env, &[("POD_NAME", "one".to_string())]);
    env.write_store("a", HANGS);
    assert!(
        wait_for(Duration::from_secs(20), || env.helm_started("a")),
        "{}",
        a_daemon.logs()
    );
    env.write_store("b", SHOP);
    assert!(
        wait_for(Duration::from_secs(10), || a_daemon.phase("b") == "Pending"),
        "B is queued behind A: {}",
        a_daemon.store("b")
    );
    let (config, b_log) = second_daemon_config(&env);
    let b_daemon = Daemon::start_with_config(&env, &config, &[("POD_NAME", "two".to_string())]);
    // The lease moves to "two" (as when one's renewals stop reaching the API).
    let now = jiff::Timestamp::now().to_string();
    env.api.insert(
        LEASE,
        json!({"metadata": {"name": "storekeeper-leader", "namespace": "storekeeper"},
               "spec": {"holderIdentity": "two", "leaseDurationSeconds": 30,
                        "acquireTime": now, "renewTime": now, "leaseTransitions": 1}}),
    );
    assert!(
        wait_for(Duration::from_secs(10), || a_daemon
            .logs()
            .contains("Not the leader")),
        "{}",
        a_daemon.logs()
    );
    assert!(
        wait_for(Duration::from_secs(30), || {
            std::fs::read_to_string(&b_log)
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("upgrade --install b "))
        }),
        "the new leader converges B:\n{}",
        b_daemon.logs()
    );
    assert!(
        wait_for(Duration::from_secs(30), || env.release_status("b").as_deref()
            == Some("deployed")),
        "{}",
        b_daemon.logs()
    );
    // A's helm (started by one) ran to its end: it gave up after the helm timeout.
    assert!(
        wait_for(Duration::from_secs(30), || a_daemon.logs().contains("Failed")),
        "A's operation finished:\n{}",
        a_daemon.logs()
    );
    assert!(
        !env.helm_started("b"),
        "the deposed daemon started B: {:?}",
        env.helm_calls()
    );
    b_daemon.stop();
    a_daemon.stop();
}

support::both_helms!(
    a_hanging_install_holds_back_no_other_store,
    every_failure_class_is_failed_visible_and_isolated,
    a_deposed_leader_starts_nothing_and_the_new_one_converges,
);
