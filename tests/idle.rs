//! An idle daemon costs nothing (issue 18): after the first sync it observes the namespaces
//! through a watch, so an idle cycle makes no API request and skips the plan; a namespace changed
//! or deleted by someone else reaches the next plan through that watch; and the plan that follows
//! an operation sees what the operation wrote, so no store is ever upgraded twice.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::daemon::{Daemon, sample};
use support::{Env, Opts, both_helms, wait_for};

const SHOP: &str = "engine = \"woocommerce\"\n";
const MEDUSA: &str = "engine = \"medusa\"\n";

fn upgrades(env: &Env, store: &str) -> usize {
    let prefix = format!("upgrade --install {store} ");
    env.helm_calls().iter().filter(|c| c.starts_with(&prefix)).count()
}

/// LISTs of namespaces (not the watch, which is one long request).
fn namespace_lists(env: &Env) -> usize {
    env.api
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v1/namespaces" && !r.query.contains("watch="))
        .count()
}

fn metric(d: &Daemon, series: &str) -> f64 {
    sample(&d.metrics(), series).unwrap_or(0.0)
}

/// Waits until no plan has been made for `quiet` (only skipped cycles), or panics.
fn settle(d: &Daemon, quiet: Duration) {
    let ok = r#"storekeeper_reconcile_cycles_total{result="ok"}"#;
    let start = Instant::now();
    let mut last = (metric(d, ok), Instant::now());
    while last.1.elapsed() < quiet {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the daemon never went idle"
        );
        std::thread::sleep(Duration::from_millis(100));
        let now = metric(d, ok);
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
}

fn an_idle_daemon_makes_no_request_and_sees_what_others_change(major: u8) {
    let env = Env::with(
        major,
        Opts {
            interval: "300ms",
            ..Opts::default()
        },
    );
    for s in ["alpha", "beta", "gamma"] {
        env.write_store(s, SHOP);
    }
    let d = Daemon::start(&env, &[]);
    for s in ["alpha", "beta", "gamma"] {
        assert!(d.wait_ready(s, Duration::from_secs(60)), "{}", d.logs());
    }
    settle(&d, Duration::from_secs(1));

    let unchanged = r#"storekeeper_reconcile_cycles_total{result="unchanged"}"#;
    let skipped_before = metric(&d, unchanged);
    env.api.reset_counters();
    std::thread::sleep(Duration::from_secs(3));
    let requests = env.api.requests();
    let skipped = metric(&d, unchanged) - skipped_before;
    assert!(requests.is_empty(), "an idle daemon made requests: {requests:?}");
    assert!(
        skipped >= 5.0,
        "the loop kept its 300 ms interval: {skipped} idle cycles in 3 s"
    );

    // Someone else deletes beta's namespace: the watch tells the next plan, which creates it
    // again; no LIST is needed to notice.
    assert!(env.api.remove("/api/v1/namespaces/store-beta"));
    assert!(
        wait_for(Duration::from_secs(30), || upgrades(&env, "beta") == 2
            && d.get("/stores/beta").1.contains("\"Ready\"")),
        "beta was not recreated:\n{}",
        d.logs()
    );
    assert!(env.namespace("store-beta").is_some());

    // Someone else edits alpha's applied spec hash: the next plan sees a changed spec and upgrades.
    let mut ns: Value = env.namespace("store-alpha").expect("alpha");
    ns["metadata"]["annotations"]["storekeeper.dev/spec-hash"] = "edited-by-hand".into();
    env.api.insert("/api/v1/namespaces", ns);
    assert!(
        wait_for(Duration::from_secs(30), || upgrades(&env, "alpha") == 2),
        "alpha was not upgraded after its hash was edited:\n{}",
        d.logs()
    );
    assert!(d.wait_ready("alpha", Duration::from_secs(30)));
    assert_eq!(namespace_lists(&env), 0, "{:?}", env.api.requests());
    assert_eq!(upgrades(&env, "gamma"), 1, "gamma was left alone");
    let m = d.metrics();
    assert!(
        sample(&m, r#"storekeeper_cluster_observations_total{source="cache"}"#) >= Some(2.0),
        "{m}"
    );
    d.stop();
}

fn converging_stores_are_never_upgraded_twice(major: u8) {
    let env = Env::with(
        major,
        Opts {
            interval: "200ms",
            max_concurrent: 3,
            ..Opts::default()
        },
    );
    // A watch that lags well behind the writes, as a loaded API server's can: the plan that
    // follows each operation must wait for the operation's own writes, not plan from before them.
    env.api.set_watch_lag(Duration::from_millis(400));
    let stores: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
    for (i, s) in stores.iter().enumerate() {
        env.write_store(s, if i % 2 == 0 { SHOP } else { MEDUSA });
    }
    let d = Daemon::start(&env, &[]);
    for s in &stores {
        assert!(d.wait_ready(s, Duration::from_secs(120)), "{}", d.logs());
    }
    settle(&d, Duration::from_secs(2));
    for s in &stores {
        assert_eq!(upgrades(&env, s), 1, "{s}: {:?}", env.helm_calls());
    }
    // Two edits: one more upgrade each, and only for them.
    env.write_store("s0", "engine = \"woocommerce\"\nplan = \"medium\"\n");
    env.write_store("s1", "engine = \"medusa\"\nplan = \"medium\"\n");
    assert!(wait_for(Duration::from_secs(60), || upgrades(&env, "s0") == 2
        && upgrades(&env, "s1") == 2));
    for s in ["s0", "s1"] {
        assert!(d.wait_ready(s, Duration::from_secs(60)), "{}", d.logs());
    }
    settle(&d, Duration::from_secs(2));
    for (i, s) in stores.iter().enumerate() {
        let want = if i < 2 { 2 } else { 1 };
        assert_eq!(upgrades(&env, s), want, "{s}: {:?}", env.helm_calls());
    }
    let m = d.metrics();
    assert_eq!(
        sample(
            &m,
            r#"storekeeper_cluster_observations_total{source="list_behind"}"#
        ),
        None,
        "our own writes always arrived in time: {m}"
    );
    d.stop();
}

both_helms!(
    an_idle_daemon_makes_no_request_and_sees_what_others_change,
    converging_stores_are_never_upgraded_twice,
);
