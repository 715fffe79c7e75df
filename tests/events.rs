//! Kubernetes Events through `storekeeper::events` against the test API server: a store's
//! create, upgrade, failure (twice: one Event with a series) and delete are written as
//! `events.k8s.io/v1` Events that pass the API server's Event validation, and read back over
//! HTTP with the real field names.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use prometheus::Registry;
use serde_json::{Value, json};
use storekeeper::events::{CONTROLLER, EventMetrics, EventSink, KubeEvents};
use storekeeper::notify::{EventKind, StoreEvent};
use testbed::TestApi;

async fn client(api: &TestApi) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(api.kubeconfig()).expect("read the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig to config");
    kube::Client::try_from(config).expect("build a client")
}

fn ev(kind: EventKind, phase: &'static str, reason: &str, second: i64) -> StoreEvent {
    let mut e = StoreEvent::new(kind, "shop", "store-shop", phase, reason);
    e.at = jiff::Timestamp::from_second(1_800_000_000 + second).expect("timestamp");
    e
}

#[tokio::test]
async fn a_stores_story_is_written_as_events_and_read_back() {
    let api = TestApi::start();
    for ns in ["default", "store-shop"] {
        api.insert("/api/v1/namespaces", json!({ "metadata": { "name": ns } }));
    }
    let client = client(&api).await;
    let metrics = EventMetrics::register(&Registry::new()).expect("register");
    let (events, task) = KubeEvents::start(client.clone(), "storekeeper-0", &metrics);
    let mut failed = ev(EventKind::Failed, "Failed", "upgrade failed: helm timed out", 5);
    failed.code = Some("helm_timeout");
    let mut failed_again = failed.clone();
    failed_again.at = jiff::Timestamp::from_second(1_800_000_009).expect("timestamp");
    let story = [
        ev(EventKind::Installing, "Provisioning", "install", 1),
        ev(EventKind::Created, "Ready", "deployed", 2),
        ev(EventKind::Upgrading, "Provisioning", "spec changed", 3),
        ev(EventKind::Upgraded, "Ready", "deployed", 4),
        failed,
        failed_again,
        ev(EventKind::Deleting, "Deleting", "store file removed", 10),
    ];
    for e in &story {
        events.emit(e);
    }
    // The namespace goes with the store; the last event is filed under `default`.
    let deleted = ev(EventKind::Deleted, "Deleting", "uninstalled", 11);
    let wait = std::time::Instant::now();
    while metrics.get("created") + metrics.get("patched") < 7 && wait.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(api.remove("/api/v1/namespaces/store-shop"));
    events.emit(&deleted);
    drop(events);
    assert!(task.finish(Duration::from_secs(10)).await, "the queue drains");
    assert_eq!(
        (
            metrics.get("created"),
            metrics.get("patched"),
            metrics.get("error")
        ),
        (7, 1, 0),
        "{}",
        api.log_tail(20)
    );

    // Read back over HTTP through a typed client: events.k8s.io/v1 in `default`.
    let listed = Api::<Event>::namespaced(client, "default")
        .list(&Default::default())
        .await
        .expect("list events");
    let last = listed.items.first().expect("the deleted event");
    assert_eq!(last.reason.as_deref(), Some("Deleted"));
    assert_eq!(
        last.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("store-shop")
    );
    assert_eq!(last.regarding.as_ref().and_then(|r| r.namespace.clone()), None);
}

/// The same story, as the raw JSON the server stored (before the namespace was removed).
#[tokio::test]
async fn events_carry_the_real_field_names_and_a_series() {
    let api = TestApi::start();
    api.insert(
        "/api/v1/namespaces",
        json!({ "metadata": { "name": "store-shop" } }),
    );
    let metrics = EventMetrics::register(&Registry::new()).expect("register");
    let (events, task) = KubeEvents::start(client(&api).await, "storekeeper-0", &metrics);
    let mut failed = ev(EventKind::Failed, "Failed", "upgrade failed: helm timed out", 5);
    failed.code = Some("helm_timeout");
    events.emit(&ev(EventKind::Created, "Ready", "deployed", 1));
    events.emit(&failed);
    failed.at = jiff::Timestamp::from_second(1_800_000_009).expect("timestamp");
    events.emit(&failed);
    drop(events);
    assert!(task.finish(Duration::from_secs(10)).await);
    let mut stored = api.list("/apis/events.k8s.io/v1/namespaces/store-shop/events");
    stored.sort_by_key(|e| e["eventTime"].as_str().unwrap_or_default().to_string());
    assert_eq!(stored.len(), 2, "{stored:#?}");
    let (created, failure) = (&stored[0], &stored[1]);
    assert_eq!(created["apiVersion"], "events.k8s.io/v1");
    assert_eq!(
        (&created["reason"], &created["action"], &created["type"]),
        (&json!("Created"), &json!("Install"), &json!("Normal"))
    );
    assert_eq!(created["reportingController"], CONTROLLER);
    assert_eq!(created["reportingInstance"], "storekeeper-0");
    assert_eq!(
        created["regarding"],
        json!({"apiVersion": "v1", "kind": "Namespace", "name": "store-shop", "namespace": "store-shop"})
    );
    assert_eq!(created["series"], Value::Null);
    assert_eq!(failure["type"], "Warning");
    assert_eq!(failure["note"], "helm_timeout: upgrade failed: helm timed out");
    assert_eq!(failure["series"]["count"], 2);
    assert!(
        failure["series"]["lastObservedTime"]
            .as_str()
            .is_some_and(|t| t.starts_with("2027-01-15T08:00:09")),
        "{failure:#}"
    );
    let writes: Vec<String> = api
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        writes,
        [
            "POST /apis/events.k8s.io/v1/namespaces/store-shop/events".to_string(),
            "POST /apis/events.k8s.io/v1/namespaces/store-shop/events".to_string(),
            format!(
                "PATCH /apis/events.k8s.io/v1/namespaces/store-shop/events/{}",
                failure["metadata"]["name"].as_str().unwrap_or_default()
            ),
        ]
    );
}
