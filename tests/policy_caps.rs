//! Operator policy caps end to end: the real `storekeeper run` and the real helm 3 and helm 4
//! against the test API server. A new store over a cap is Blocked (quota_exceeded) and nothing
//! is installed for it; it is created as soon as there is room; existing stores are never
//! touched.

mod support;

use std::time::Duration;

use support::daemon::Daemon;
use support::{Env, Opts, wait_for};

fn owned(owner: &str) -> String {
    format!("engine = \"woocommerce\"\nowner = \"{owner}\"\n")
}

fn env_with(major: u8, policy: &'static str) -> Env {
    Env::with(
        major,
        Opts {
            extra: policy,
            max_deletions: 5,
            ..Opts::default()
        },
    )
}

/// An owner at `max_stores_per_owner` adds a store: it is Blocked, nothing is installed; once
/// one of the owner's stores is deleted, the blocked store is created. Another owner is not
/// held back.
fn the_per_owner_cap_holds_a_new_store_until_there_is_room(major: u8) {
    let env = env_with(major, "[policy]\nmax_stores_per_owner = 2\n");
    env.write_store("a1", &owned("acme"));
    env.write_store("a2", &owned("acme"));
    let d = Daemon::start(&env, &[]);
    assert!(d.wait_ready("a1", Duration::from_secs(30)) && d.wait_ready("a2", Duration::from_secs(30)));
    env.write_store("a3", &owned("acme"));
    env.write_store("b1", &owned("bob"));
    assert!(
        d.wait_ready("b1", Duration::from_secs(30)),
        "another owner goes through"
    );
    assert!(
        wait_for(Duration::from_secs(10), || d.phase("a3") == "Blocked"),
        "{}",
        d.store("a3")
    );
    let a3 = d.store("a3");
    let reason = a3["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("owner acme") && reason.contains("max_stores_per_owner = 2"),
        "{a3}"
    );
    assert_eq!(a3["owner"], "acme");
    std::thread::sleep(Duration::from_secs(2));
    assert!(!env.helm_started("a3"), "{:?}", env.helm_calls());
    assert!(env.namespace("store-a3").is_none());
    let m = d.metrics();
    assert!(m.contains(r#"storekeeper_owner_stores{owner="acme"} 3"#), "{m}");

    env.remove_store("a1");
    assert!(
        wait_for(Duration::from_secs(30), || env.namespace("store-a1").is_none()),
        "{}",
        d.logs()
    );
    assert!(
        d.wait_ready("a3", Duration::from_secs(30)),
        "created once there is room:\n{}",
        d.logs()
    );
    assert_eq!(env.release_status("a2").as_deref(), Some("deployed"));
    d.stop();
}

/// The global cap behaves the same way; the oldest new store goes first.
fn the_global_cap_holds_new_stores_until_there_is_room(major: u8) {
    let env = env_with(major, "[policy]\nmax_stores = 2\n");
    env.write_store("one", &owned("o"));
    env.write_store("two", &owned("o"));
    let d = Daemon::start(&env, &[]);
    assert!(d.wait_ready("one", Duration::from_secs(30)) && d.wait_ready("two", Duration::from_secs(30)));
    env.write_store("three", &owned("o"));
    assert!(wait_for(Duration::from_secs(10), || d.phase("three") == "Blocked"));
    std::thread::sleep(Duration::from_millis(1500));
    env.write_store("four", &owned("o"));
    assert!(wait_for(Duration::from_secs(10), || d.phase("four") == "Blocked"));
    let three = d.store("three");
    assert!(
        three["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("max_stores = 2"),
        "{three}"
    );
    assert!(!env.helm_started("three") && !env.helm_started("four"));

    env.remove_store("one");
    assert!(
        d.wait_ready("three", Duration::from_secs(30)),
        "the older one first:\n{}",
        d.logs()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.phase("four"), "Blocked");
    assert!(!env.helm_started("four"));
    d.stop();
}

/// `max_creations_per_hour` delays the excess creations; `/stores` says when each will start.
fn the_creation_rate_delays_the_excess_and_says_when(major: u8) {
    let env = env_with(major, "[policy]\nmax_creations_per_hour = 2\n");
    for s in ["r1", "r2", "r3", "r4"] {
        env.write_store(s, &owned("o"));
    }
    let d = Daemon::start(&env, &[]);
    assert!(d.wait_ready("r1", Duration::from_secs(30)) && d.wait_ready("r2", Duration::from_secs(30)));
    assert!(wait_for(Duration::from_secs(10), || d.phase("r3") == "Blocked"
        && d.phase("r4") == "Blocked"));
    let r3 = d.store("r3");
    let created = |ns: &str| -> Option<jiff::Timestamp> {
        env.namespace(ns)?["metadata"]["creationTimestamp"]
            .as_str()?
            .parse()
            .ok()
    };
    let first = created("store-r1")
        .into_iter()
        .chain(created("store-r2"))
        .min()
        .expect("created");
    let next: jiff::Timestamp = r3["next_attempt"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("next_attempt");
    assert_eq!(next, first + jiff::SignedDuration::from_secs(3600), "{r3}");
    assert!(
        r3["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("max_creations_per_hour = 2"),
        "{r3}"
    );
    assert!(d.store("r4")["next_attempt"].is_string(), "{}", d.store("r4"));
    assert!(!env.helm_started("r3") && !env.helm_started("r4"));
    d.stop();
}

support::both_helms!(
    the_per_owner_cap_holds_a_new_store_until_there_is_room,
    the_global_cap_holds_new_stores_until_there_is_room,
    the_creation_rate_delays_the_excess_and_says_when,
);
