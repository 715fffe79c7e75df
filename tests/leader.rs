//! Leader election against the test API server: two `Leader`s (each its own kube client, as two
//! processes would have) compete for one `coordination.k8s.io/v1` Lease. Short durations (a 2 s
//! lease) keep the failover tests quick. A failing test prints the Lease it saw, and `TestApi`'s
//! drop prints the tail of the request log.

mod support;

use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use storekeeper::leader::{Leader, LeaderConfig};
use testbed::TestApi;
use tokio::sync::watch;

const NS: &str = "storekeeper";
const LEASE: &str = "storekeeper-leader";
const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/storekeeper/leases/storekeeper-leader";

async fn client(api: &TestApi) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(api.kubeconfig()).expect("read the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig to config");
    kube::Client::try_from(config).expect("build a client")
}

fn start() -> TestApi {
    let api = TestApi::start();
    api.insert("/api/v1/namespaces", json!({ "metadata": { "name": NS } }));
    api
}

fn config(identity: &str) -> LeaderConfig {
    LeaderConfig {
        namespace: NS.into(),
        name: LEASE.into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(2),
        renew_every: Duration::from_millis(300),
    }
}

async fn candidate(api: &TestApi, identity: &str) -> Leader {
    Leader::new(client(api).await, config(identity))
}

fn lease(api: &TestApi) -> Value {
    api.get(LEASE_PATH).unwrap_or(Value::Null)
}

fn holder(api: &TestApi) -> Option<String> {
    lease(api)["spec"]["holderIdentity"].as_str().map(str::to_string)
}

/// Polls `rx` until it shows `want` or `limit` passes; returns how long that took.
async fn wait_for_state(rx: &mut watch::Receiver<bool>, want: bool, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    tokio::time::timeout(limit, rx.wait_for(|v| *v == want))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|_| start.elapsed())
}

#[tokio::test]
async fn only_one_leads() {
    let api = start();
    let (a, b) = (candidate(&api, "a").await, candidate(&api, "b").await);
    assert!(a.try_acquire_or_renew().await.expect("a"), "a creates the lease");
    assert!(
        !b.try_acquire_or_renew().await.expect("b"),
        "b follows a live lease"
    );
    for _ in 0..3 {
        assert!(a.try_acquire_or_renew().await.expect("a renews"));
        assert!(!b.try_acquire_or_renew().await.expect("b"));
    }
    let l = lease(&api);
    assert_eq!(l["spec"]["holderIdentity"], "a", "{l:#}");
    assert_eq!(l["spec"]["leaseDurationSeconds"], 2, "{l:#}");
    assert_eq!(l["spec"]["leaseTransitions"], 0, "{l:#}");
    assert!(
        l["spec"]["acquireTime"].is_string() && l["spec"]["renewTime"].is_string(),
        "{l:#}"
    );
    assert_ne!(
        l["spec"]["acquireTime"], l["spec"]["renewTime"],
        "renewals move renewTime only: {l:#}"
    );
}

#[tokio::test]
async fn the_other_takes_over_once_the_lease_expires() {
    let api = start();
    let (a, b) = (candidate(&api, "a").await, candidate(&api, "b").await);
    assert!(a.try_acquire_or_renew().await.expect("a"));
    let stopped = Instant::now();
    // a stops renewing (it crashed). b must wait out the 2 s lease, and not much longer.
    loop {
        if b.try_acquire_or_renew().await.expect("b") {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "b never took over: {:#}",
            lease(&api)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited = stopped.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "took over a live lease after {waited:?}"
    );
    let l = lease(&api);
    assert_eq!(l["spec"]["holderIdentity"], "b", "{l:#}");
    assert_eq!(l["spec"]["leaseTransitions"], 1, "{l:#}");
    // a comes back: it is not the leader any more.
    assert!(!a.try_acquire_or_renew().await.expect("a"));
}

#[tokio::test]
async fn release_hands_over_immediately() {
    let api = start();
    let (a, b) = (candidate(&api, "a").await, candidate(&api, "b").await);
    assert!(a.try_acquire_or_renew().await.expect("a"));
    assert!(!b.try_acquire_or_renew().await.expect("b"));
    // Releasing a lease we don't hold changes nothing.
    b.release().await.expect("b release is a no-op");
    assert_eq!(holder(&api).as_deref(), Some("a"));
    a.release().await.expect("a releases");
    assert_eq!(holder(&api), None, "{:#}", lease(&api));
    assert!(
        b.try_acquire_or_renew().await.expect("b"),
        "b takes a released lease at once"
    );
    assert_eq!(holder(&api).as_deref(), Some("b"));
}

/// Both candidates read the same state before either writes (every response is delayed), so
/// both write with the same resourceVersion (or both create): the server must refuse one.
#[tokio::test]
async fn a_conflict_race_yields_exactly_one_leader() {
    let api = start();
    let (a, b) = (candidate(&api, "a").await, candidate(&api, "b").await);
    api.set_delay(Duration::from_millis(150));
    // Round 1: no lease yet, both create.
    let (ra, rb) = tokio::join!(a.try_acquire_or_renew(), b.try_acquire_or_renew());
    let (ra, rb) = (ra.expect("a"), rb.expect("b"));
    assert!(ra ^ rb, "exactly one leader: a={ra} b={rb}");
    let posts = api.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 2, "both tried to create:\n{}", api.log_tail(10));
    // Round 2: the lease is released, both take it with the same resourceVersion.
    api.set_delay(Duration::ZERO);
    let winner = if ra { &a } else { &b };
    winner.release().await.expect("release");
    api.reset_counters();
    api.set_delay(Duration::from_millis(150));
    let (ra, rb) = tokio::join!(a.try_acquire_or_renew(), b.try_acquire_or_renew());
    let (ra, rb) = (ra.expect("a"), rb.expect("b"));
    assert!(ra ^ rb, "exactly one leader: a={ra} b={rb}");
    let puts = api.requests().iter().filter(|r| r.method == "PUT").count();
    assert_eq!(puts, 2, "both tried to take it:\n{}", api.log_tail(10));
    let want = if ra { "a" } else { "b" };
    assert_eq!(holder(&api).as_deref(), Some(want));
}

/// The renew loops: one leader at a time; a clean shutdown releases at once; a leader that
/// cannot reach the API steps down within the lease duration.
#[tokio::test]
async fn renew_loops_fail_over() {
    let api = start();
    let (stop_a, stop_a_rx) = watch::channel(false);
    let (stop_b, stop_b_rx) = watch::channel(false);
    let mut a = candidate(&api, "a").await.spawn(stop_a_rx);
    wait_for_state(&mut a, true, Duration::from_secs(5))
        .await
        .expect("a leads when alone");
    let mut b = candidate(&api, "b").await.spawn(stop_b_rx);
    // b stays a standby while a renews, well past a lease duration.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(*a.borrow() && !*b.borrow(), "a={} b={}", *a.borrow(), *b.borrow());
    assert_eq!(holder(&api).as_deref(), Some("a"));

    // Clean shutdown of a: it releases, b takes over within a retry period (not a lease).
    let _ = stop_a.send(true);
    let took = wait_for_state(&mut b, true, Duration::from_secs(5))
        .await
        .expect("b takes over after a releases");
    assert!(took < Duration::from_millis(1500), "handover took {took:?}");
    assert!(!*a.borrow(), "a no longer leads");
    assert_eq!(holder(&api).as_deref(), Some("b"));
    // a's loop has ended: its sender is gone.
    tokio::time::timeout(Duration::from_secs(2), async {
        while a.changed().await.is_ok() {}
    })
    .await
    .expect("a's loop ends and drops its sender");

    // The API goes away: b cannot renew and must step down by the end of its lease.
    api.refuse_for(Duration::from_secs(4));
    let stepped = wait_for_state(&mut b, false, Duration::from_secs(4))
        .await
        .expect("b steps down without the API");
    assert!(
        stepped <= Duration::from_millis(2300),
        "stepped down after {stepped:?}"
    );
    // The API is back: b (alone) leads again.
    wait_for_state(&mut b, true, Duration::from_secs(8))
        .await
        .expect("b leads again once the API is back");
    let _ = stop_b.send(true);
    tokio::time::timeout(Duration::from_secs(3), b.wait_for(|v| !*v))
        .await
        .ok();
}

/// The RBAC in `charts/storekeeper` (and docs/rbac.md) is enough: the real daemon applies,
/// upgrades and prunes stores from the real store charts with helm 3 and helm 4, and a `Leader`
/// takes, renews and releases its Lease; every request the test API server saw maps to a
/// (group, resource, verb) that the rendered ClusterRole or Role grants. Rules nobody used are
/// printed (some, like `watch`, depend on the helm version).
mod rbac {
    use std::collections::BTreeSet;
    use std::path::Path;
    use std::process::Command;

    use serde_json::Value;

    use super::*;

    use crate::support;

    /// (API group, resource, verb, resource name if the rule is limited to names).
    type Perm = (String, String, String);

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    type Rule = (
        BTreeSet<String>,
        BTreeSet<String>,
        BTreeSet<String>,
        Vec<String>,
        bool,
    );

    /// The ClusterRole and Role rules in a stream of YAML documents.
    fn rules_in(text: &str) -> Vec<Rule> {
        let mut rules = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(text) {
            let v: Value = serde::Deserialize::deserialize(doc).expect("yaml");
            let namespaced = match v["kind"].as_str() {
                Some("ClusterRole") => false,
                Some("Role") => true,
                _ => continue,
            };
            for r in v["rules"].as_array().expect("rules") {
                let set = |k: &str| -> BTreeSet<String> {
                    r[k].as_array()
                        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
                        .unwrap_or_default()
                };
                let names = set("resourceNames").into_iter().collect();
                rules.push((
                    set("apiGroups"),
                    set("resources"),
                    set("verbs"),
                    names,
                    namespaced,
                ));
            }
        }
        rules
    }

    /// The ClusterRole and Role rules as rendered with leader election on.
    fn granted() -> Vec<Rule> {
        let out = Command::new(testbed::tools::helm(4))
            .args(["template", "sk"])
            .arg(root().join("charts/storekeeper"))
            .args(["-n", NS, "--set", "leaderElection.enabled=true"])
            .args(["--set", &format!("leaderElection.leaseName={LEASE}")])
            .args(["--show-only", "templates/rbac.yaml"])
            .output()
            .expect("run helm template");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        rules_in(&String::from_utf8(out.stdout).expect("utf-8"))
    }

    /// docs/rbac.md shows the same rules as the chart (the YAML block for the systemd case).
    #[test]
    fn docs_rbac_matches_the_chart() {
        let doc = std::fs::read_to_string(root().join("docs/rbac.md")).expect("docs/rbac.md");
        let yaml = doc
            .split("```yaml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a yaml block in docs/rbac.md");
        assert_eq!(
            rules_in(yaml),
            granted(),
            "docs/rbac.md and charts/storekeeper disagree"
        );
    }

    /// A request as an RBAC check: (group, resource, verb), its namespace and name. `None` for
    /// non-resource URLs (discovery, /version, /openapi), which every authenticated user may GET.
    fn permission(method: &str, path: &str, query: &str) -> Option<(Perm, Option<String>, Option<String>)> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, rest) = match parts.as_slice() {
            ["api", "v1", rest @ ..] => (String::new(), rest),
            ["apis", g, _v, rest @ ..] => (g.to_string(), rest),
            _ => return None,
        };
        let (ns, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
            _ => (None, rest),
        };
        let (resource, name) = match rest {
            [] => return None,
            [r] => (r.to_string(), None),
            [r, n, ..] => (r.to_string(), Some(n.to_string())),
        };
        let watch = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
        let verb = match (method, name.is_some()) {
            ("GET", _) if watch => "watch",
            ("GET", true) => "get",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => return None,
        };
        Some(((group, resource, verb.to_string()), ns, name))
    }

    fn exercise_daemon(major: u8, used: &mut Vec<(Perm, Option<String>, Option<String>)>) {
        let env = support::Env::with(
            major,
            support::Opts {
                helm_timeout: "60s",
                // Backups on: the Secret copy, the final backup of the prune, the CLI verbs.
                extra: "[backup]\nrepository = \"/repository\"\nfinal_timeout = \"30s\"\n",
                ..support::Opts::default()
            },
        );
        env.api
            .insert("/api/v1/namespaces", json!({ "metadata": { "name": NS } }));
        env.api.insert(
            &format!("/api/v1/namespaces/{NS}/secrets"),
            json!({ "metadata": { "name": "storekeeper-backup" }, "stringData": { "RESTIC_PASSWORD": "p" } }),
        );
        // The real store charts instead of the harness's tiny one.
        let config = std::fs::read_to_string(&env.config).expect("read config");
        let tiny = env.dir.path().join("charts").display().to_string();
        let config = config.replace(&tiny, &root().join("charts").display().to_string());
        std::fs::write(&env.config, config).expect("write config");
        let bikes = std::fs::read_to_string(root().join("stores.d/city-bikes.toml")).expect("example store");
        env.write_store("corner-shop", "engine = \"woocommerce\"\n");
        env.write_store("city-bikes", &bikes);
        let apply = |what: &str| {
            let out = env.run(&["apply"]);
            assert!(
                out.status.success(),
                "helm {major}, {what}: {}",
                support::show(&out)
            );
        };
        apply("install");
        assert_eq!(env.release_status("corner-shop").as_deref(), Some("deployed"));
        env.write_store("corner-shop", "engine = \"woocommerce\"\nplan = \"medium\"\n");
        apply("upgrade");
        // The backup verbs: a backup Job, a listing Job, the last backups of every store.
        let out = env.run(&["backup", "corner-shop"]);
        assert!(
            out.status.success(),
            "helm {major}, backup: {}",
            support::show(&out)
        );
        let _ = env.run(&["backups", "corner-shop", "--in-cluster"]);
        let out = env.run(&["status", "--from-cluster"]);
        assert!(
            out.status.success(),
            "helm {major}, status: {}",
            support::show(&out)
        );
        env.remove_store("city-bikes");
        apply("prune");
        assert!(env.namespace("store-city-bikes").is_none(), "pruned");
        let out = env.run(&["apply", "--resync"]);
        assert!(
            out.status.success(),
            "helm {major}, resync: {}",
            support::show(&out)
        );
        // The daemon's own reads: the namespace watch its plans observe through.
        let daemon = support::daemon::Daemon::start(&env, &[]);
        assert!(
            daemon.wait_ready("corner-shop", std::time::Duration::from_secs(60)),
            "helm {major}, daemon: {}",
            daemon.logs()
        );
        daemon.stop();
        used.extend(
            env.api
                .requests()
                .iter()
                .filter_map(|r| permission(&r.method, &r.path, &r.query)),
        );
    }

    /// Every request `storekeeper::events` makes: a create, a repeat (patch of the series) and
    /// the final `Deleted` event in `default`. Until the reconciler emits Events itself, this
    /// drives the module directly.
    async fn exercise_events() -> Vec<(Perm, Option<String>, Option<String>)> {
        use storekeeper::events::{EventMetrics, EventSink, KubeEvents};
        use storekeeper::notify::{EventKind, StoreEvent};

        let api = TestApi::start();
        for ns in ["default", "store-shop"] {
            api.insert("/api/v1/namespaces", json!({ "metadata": { "name": ns } }));
        }
        let metrics = EventMetrics::register(&prometheus::Registry::new()).expect("register");
        let (events, task) = KubeEvents::start(client(&api).await, "test", &metrics);
        let failed = StoreEvent::new(EventKind::Failed, "shop", "store-shop", "Failed", "boom");
        events.emit(&failed);
        events.emit(&failed);
        events.emit(&StoreEvent::new(
            EventKind::Deleted,
            "shop",
            "store-shop",
            "Deleting",
            "gone",
        ));
        drop(events);
        assert!(task.finish(Duration::from_secs(10)).await);
        assert_eq!((metrics.get("created"), metrics.get("patched")), (2, 1));
        api.requests()
            .iter()
            .filter_map(|r| permission(&r.method, &r.path, &r.query))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rbac_grants_every_request_storekeeper_and_helm_make() {
        let mut used = Vec::new();
        tokio::task::spawn_blocking(|| {
            let mut used = Vec::new();
            exercise_daemon(3, &mut used);
            exercise_daemon(4, &mut used);
            used
        })
        .await
        .map(|u| used.extend(u))
        .expect("daemon runs");
        // The election, in its own namespace.
        let api = start();
        let leader = candidate(&api, "a").await;
        assert!(leader.try_acquire_or_renew().await.expect("create"));
        assert!(leader.try_acquire_or_renew().await.expect("renew"));
        leader.release().await.expect("release");
        used.extend(
            api.requests()
                .iter()
                .filter_map(|r| permission(&r.method, &r.path, &r.query)),
        );
        used.extend(exercise_events().await);

        let rules = granted();
        let allows = |(g, r, v): &Perm, ns: &Option<String>, name: &Option<String>| {
            rules.iter().any(|(gs, rs, vs, names, namespaced)| {
                gs.contains(g)
                    && rs.contains(r)
                    && vs.contains(v)
                    && (!namespaced || ns.as_deref() == Some(NS))
                    && (names.is_empty() || name.as_ref().is_some_and(|n| names.contains(n)))
            })
        };
        let denied: BTreeSet<String> = used
            .iter()
            .filter(|(p, ns, name)| !allows(p, ns, name))
            .map(|((g, r, v), ns, name)| format!("{v} {g}/{r} ns={ns:?} name={name:?}"))
            .collect();
        assert!(
            denied.is_empty(),
            "not granted by charts/storekeeper RBAC:\n{denied:#?}"
        );
        let seen: BTreeSet<&Perm> = used.iter().map(|(p, _, _)| p).collect();
        let unused: Vec<String> = rules
            .iter()
            .flat_map(|(gs, rs, vs, _, _)| {
                gs.iter().flat_map(move |g| {
                    rs.iter()
                        .flat_map(move |r| vs.iter().map(move |v| (g.clone(), r.clone(), v.clone())))
                })
            })
            .filter(|p| !seen.contains(p))
            .map(|(g, r, v)| format!("{v} {g}/{r}"))
            .collect();
        eprintln!("granted but not used in this run: {unused:?}");
        eprintln!("used: {seen:?}");
    }
}

/// Two real `storekeeper run` processes with leader election on, against one test API server:
/// only the leader runs helm; SIGKILLing it (no release) lets the standby take over once the
/// 2 s lease expires, and the standby converges a store added after the kill.
///
/// Ignored until `src/daemon.rs` wires `crate::leader` and the config accepts the
/// `[leader_election]` section the chart renders (keys below; identity from `$POD_NAME`).
#[test]
fn two_daemons_one_leader_and_failover() {
    use support::daemon::Daemon;
    use support::{Env, Opts, signal, wait_for};

    let env = Env::with(
        3,
        Opts {
            extra: "[leader_election]\nenabled = true\nnamespace = 'storekeeper'\n\
                    lease_name = 'storekeeper-leader'\nlease_duration = '2s'\nrenew_every = '300ms'\n",
            ..Opts::default()
        },
    );
    env.api
        .insert("/api/v1/namespaces", json!({ "metadata": { "name": NS } }));
    env.write_store("shop", "engine = \"woocommerce\"\n");
    let current = || holder(&env.api);
    let a = Daemon::start(&env, &[("POD_NAME", "a".to_string())]);
    assert!(
        wait_for(Duration::from_secs(30), || env.release_status("shop").as_deref()
            == Some("deployed")),
        "the first daemon converges alone:\n{}",
        a.logs()
    );
    assert_eq!(current().as_deref(), Some("a"));
    let b = Daemon::start(&env, &[("POD_NAME", "b".to_string())]);
    // A change while both run: only a acts on it.
    env.clear_helm_log();
    env.write_store("shop", "engine = \"woocommerce\"\nplan = \"medium\"\n");
    assert!(
        wait_for(Duration::from_secs(30), || env
            .helm_calls()
            .iter()
            .any(|c| c.starts_with("upgrade"))),
        "the leader upgrades:\n{}",
        a.logs()
    );
    std::thread::sleep(Duration::from_secs(3));
    let upgrades = env
        .helm_calls()
        .iter()
        .filter(|c| c.starts_with("upgrade"))
        .count();
    assert_eq!(upgrades, 1, "one upgrade, by one daemon: {:?}", env.helm_calls());
    assert!(
        !b.logs().contains("Running helm upgrade"),
        "the standby acted:\n{}",
        b.logs()
    );
    assert_eq!(current().as_deref(), Some("a"));

    // The leader dies without releasing: b takes over after the lease expires and converges.
    signal(&a.child, "KILL");
    env.write_store("second", "engine = \"woocommerce\"\n");
    assert!(
        wait_for(Duration::from_secs(30), || current().as_deref() == Some("b")),
        "b takes the lease: {:#}",
        lease(&env.api)
    );
    assert!(
        wait_for(Duration::from_secs(30), || env
            .release_status("second")
            .as_deref()
            == Some("deployed")),
        "b converges:\n{}",
        b.logs()
    );
    let logs = b.stop();
    assert!(logs.contains("Became leader"), "{logs}");
    // A clean stop released the lease.
    assert_eq!(holder(&env.api), None, "{:#}", lease(&env.api));
}
