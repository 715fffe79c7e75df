//! The namespace watch cache against the test API server (real HTTP, real watches with
//! resourceVersions, 410 after a compaction): after every write of the daemon's own, a cached
//! observation equals a fresh LIST at once (read-your-writes); after writes by others, dropped
//! connections and re-lists, it equals a fresh LIST as soon as the watch has delivered them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use storekeeper::cluster::{
    self, ANN_HASH, Annotations, Cluster, ClusterOps, MANAGED_BY, MANAGER, Observed, STORE_LABEL,
};
use storekeeper::config::ClusterSettings;
use storekeeper::metrics::Metrics;
use testbed::TestApi;
use tokio::sync::mpsc;

async fn connect(api: &TestApi) -> Cluster {
    let settings = ClusterSettings {
        kubeconfig: Some(api.kubeconfig().to_path_buf()),
        context: None,
        namespace_prefix: "store-".into(),
        base_domain: "test.local".into(),
    };
    Cluster::new(cluster::client(&settings).await.expect("client").0)
}

fn labels(store: &str) -> std::collections::BTreeMap<String, String> {
    [
        (MANAGED_BY.to_string(), MANAGER.to_string()),
        (STORE_LABEL.to_string(), store.to_string()),
    ]
    .into()
}

fn observations(m: &Metrics, source: &str) -> u64 {
    m.cluster_observations.with_label_values(&[source]).get()
}

/// Observes through the cache until it equals a fresh LIST, or panics after `limit`.
async fn converges(cached: &Cluster, fresh: &Cluster, limit: Duration, what: &str) -> Observed {
    let start = Instant::now();
    loop {
        let (a, b) = (
            cached.observe().await.expect("cached"),
            fresh.observe().await.expect("list"),
        );
        if a == b {
            return a;
        }
        assert!(
            start.elapsed() < limit,
            "{what}: the cache never caught up\ncache: {a:?}\nlist: {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the cache can answer again after a restart (an event or an equal LIST shows the
/// watch live), or panics after `limit`.
async fn usable_again(cached: &Cluster, limit: Duration, what: &str) {
    let start = Instant::now();
    while cached.changes().is_none() {
        assert!(start.elapsed() < limit, "{what}: the cache never recovered");
        let _ = cached.observe().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A namespace written by someone else: foreign, or one of ours with an edited annotation.
fn others_namespace(rng: &mut StdRng) -> serde_json::Value {
    let i = rng.random_range(0..8);
    if rng.random_bool(0.5) {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("team-{i}"),
               "labels": {"team": format!("t{}", rng.random_range(0..100))}}})
    } else {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("store-s{i}"),
               "labels": labels(&format!("s{i}")),
               "annotations": {ANN_HASH: format!("edited-{}", rng.random_range(0..100))}}})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_equals_a_fresh_list_through_writes_restarts_and_compaction() {
    let api = TestApi::start();
    // Events arrive well after the writes' responses: read-your-writes must wait for them.
    api.set_watch_lag(Duration::from_millis(60));
    let cached = connect(&api).await;
    let fresh = connect(&api).await;
    let metrics = Arc::new(Metrics::new());
    let (wake, mut woken) = mpsc::channel(1);
    cached.watch_namespaces(wake, Arc::clone(&metrics));
    usable_again(&cached, Duration::from_secs(10), "first sync").await;
    converges(&cached, &fresh, Duration::from_secs(10), "first sync").await;

    let mut rng = StdRng::seed_from_u64(18);
    let (mut own_reads, mut restarts) = (0, 0);
    for step in 0..200 {
        let i = rng.random_range(0..8);
        let (ns, store) = (format!("store-s{i}"), format!("s{i}"));
        match rng.random_range(0..40) {
            0..=17 => {
                // Ours: create (or re-label), then annotate like an apply; then the plan reads.
                let have = fresh.observe().await.expect("list");
                let mine = have
                    .stores
                    .values()
                    .find(|o| o.namespace == ns)
                    .map(|o| o.labels.clone());
                let foreign_owner = have.foreign.contains(&ns);
                if !foreign_owner {
                    let _ = cached.ensure_namespace(&ns, &labels(&store), mine.as_ref()).await;
                    let ann: Annotations = [(ANN_HASH, Some(format!("h{step}")))].into();
                    cached.annotate(&ns, &ann).await.expect("annotate");
                    let (a, b) = (
                        cached.observe().await.expect("cached"),
                        fresh.observe().await.expect("list"),
                    );
                    assert_eq!(a, b, "step {step}: right after our own write");
                    own_reads += 1;
                }
            }
            18..=21 => {
                let _ = cached.delete_namespace(&ns, Duration::from_secs(5)).await;
                let (a, b) = (
                    cached.observe().await.expect("cached"),
                    fresh.observe().await.expect("list"),
                );
                assert_eq!(a, b, "step {step}: right after our own delete");
            }
            22..=33 => api.insert("/api/v1/namespaces", others_namespace(&mut rng)),
            34..=37 => {
                let victim = format!("/api/v1/namespaces/team-{i}");
                api.remove(&victim);
            }
            38 => {
                // A dropped connection: the watch resumes from its last resourceVersion.
                api.refuse_for(Duration::from_millis(100));
                tokio::time::sleep(Duration::from_millis(200)).await;
                restarts += 1;
                usable_again(&cached, Duration::from_secs(20), &format!("step {step}")).await;
            }
            _ => {
                // A compaction while the watch is away: it resumes into 410 and lists again.
                api.insert("/api/v1/namespaces", others_namespace(&mut rng));
                api.refuse_for(Duration::from_millis(100));
                api.insert("/api/v1/namespaces", others_namespace(&mut rng));
                api.compact();
                tokio::time::sleep(Duration::from_millis(200)).await;
                restarts += 1;
                usable_again(&cached, Duration::from_secs(20), &format!("step {step}")).await;
            }
        }
        if step % 10 == 9 {
            converges(&cached, &fresh, Duration::from_secs(10), &format!("step {step}")).await;
        }
    }
    let observed = converges(&cached, &fresh, Duration::from_secs(10), "the end").await;
    assert!(
        own_reads > 40 && restarts >= 2 && !observed.stores.is_empty(),
        "the sequence exercised the cache: {own_reads} own reads, {restarts} restarts"
    );
    let counts: Vec<(&str, u64)> = [
        "cache",
        "list_not_synced",
        "list_behind",
        "list_incomparable",
        "list_stopped",
    ]
    .iter()
    .map(|s| (*s, observations(&metrics, s)))
    .collect();
    assert!(
        observations(&metrics, "cache") > 100,
        "most reads came from the cache: {counts:?}"
    );
    assert!(
        observations(&metrics, "list_not_synced") > 0,
        "restarts made some reads LIST"
    );
    assert_eq!(
        observations(&metrics, "list_behind"),
        0,
        "our own writes always arrived within the wait"
    );

    // Someone else's change wakes the planner; the counter the daemon skips plans by moves.
    while woken.try_recv().is_ok() {}
    let before = cached.changes().expect("live");
    api.insert(
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "late-team"}}),
    );
    tokio::time::timeout(Duration::from_secs(5), woken.recv())
        .await
        .expect("woken")
        .expect("open");
    assert!(cached.changes().expect("live") > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_cache_makes_no_request_and_recovers_after_the_server_restarts() {
    let api = TestApi::start();
    api.insert(
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "store-a", "labels": labels("a")}}),
    );
    let cached = connect(&api).await;
    let fresh = connect(&api).await;
    let metrics = Arc::new(Metrics::new());
    let (wake, _woken) = mpsc::channel(1);
    cached.watch_namespaces(wake, Arc::clone(&metrics));
    usable_again(&cached, Duration::from_secs(10), "first sync").await;
    converges(&cached, &fresh, Duration::from_secs(10), "first sync").await;
    api.reset_counters();
    for _ in 0..50 {
        cached.observe().await.expect("cached");
    }
    assert_eq!(api.requests(), vec![], "fifty observations, no request");

    // The server goes away and comes back quiet: an equal LIST restores the cache.
    api.refuse_for(Duration::from_millis(200));
    tokio::time::sleep(Duration::from_millis(500)).await;
    converges(&cached, &fresh, Duration::from_secs(10), "after the restart").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while cached.changes().is_none() {
        assert!(Instant::now() < deadline, "the cache never became usable again");
        let _ = cached.observe().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    api.reset_counters();
    cached.observe().await.expect("cached");
    assert_eq!(api.requests(), vec![]);
}
