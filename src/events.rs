//! Kubernetes Events for store events: one `events.k8s.io/v1` Event in the store's namespace
//! per action and outcome, so `kubectl get events -n store-x` tells the store's story.
//!
//! Why not kube-runtime's `Recorder` as is: it awaits the API call on the caller's path, has no
//! rate limit, and folds every event with the same reason into one series keeping the *first*
//! note, so a second, different failure would show the first one's message. This module writes
//! the same objects (the same name scheme, reporting fields and series patch as `Recorder`) but
//! from a background task behind a bounded queue, with client-go's `EventCorrelator`
//! (`tools/record/events_cache.go`) in front, with its parameters:
//!
//! - **spam filter**: a token bucket per store (client-go: per source + object), burst 25,
//!   refilled at 1 event per 5 minutes; an event without a token is dropped
//!   (`result="rate_limited"`).
//! - **aggregation**: once 10 events with the same reason but different notes arrive within
//!   10 minutes, later ones become one event noted `(combined from similar events): <note>`.
//! - **deduplication**: an event identical to an earlier one (same store, type, reason and
//!   note) patches that Event's `series` (count, lastObservedTime) instead of creating one.
//! - caches bounded to 4096 entries (least recently used evicted); the queue holds 1000 events
//!   (client-go's `maxQueuedEvents`), and a full queue drops (`result="dropped"`).
//!
//! RBAC: `create` and `patch` on `events.k8s.io` `events` (charts/storekeeper, docs/rbac.md).

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::notify::{EventKind, Notifier, StoreEvent};

/// Where store events go. `emit` never blocks or awaits: implementations queue. The runner
/// holds its outlets as `Arc<dyn EventSink>`; tests use the `Mutex<Vec<StoreEvent>>` fake.
pub trait EventSink: Send + Sync {
    fn emit(&self, ev: &StoreEvent);
}

impl EventSink for Notifier {
    fn emit(&self, ev: &StoreEvent) {
        self.send(ev);
    }
}

/// The test fake: keeps every event.
impl EventSink for Mutex<Vec<StoreEvent>> {
    fn emit(&self, ev: &StoreEvent) {
        if let Ok(mut v) = self.lock() {
            v.push(ev.clone());
        }
    }
}

/// `reportingController` of every Event (a qualified name, as the API server requires).
pub const CONTROLLER: &str = "storekeeper.dev/storekeeper";

/// The `result` values of `storekeeper_kube_events_total`.
pub const RESULTS: [&str; 5] = ["created", "patched", "rate_limited", "dropped", "error"];

/// The metric's name, for `metrics::NAMES` and the README table.
pub const METRIC: &str = "storekeeper_kube_events_total";

const QUEUE: usize = 1000;
const CACHE_ENTRIES: usize = 4096;
const SPAM_BURST: f64 = 25.0;
const SPAM_REFILL: Duration = Duration::from_secs(300);
const AGGREGATE_MAX: usize = 10;
const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);
/// The API server's limit on `note`.
const NOTE_LIMIT: usize = 1024;
/// One create or patch may take this long before it is given up.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// `storekeeper_kube_events_total{result}`, registered once per registry.
#[derive(Clone)]
pub struct EventMetrics {
    events: IntCounterVec,
}

impl EventMetrics {
    pub fn register(registry: &Registry) -> Result<EventMetrics, prometheus::Error> {
        let events = IntCounterVec::new(Opts::new(METRIC, "Kubernetes Events by result."), &["result"])?;
        registry.register(Box::new(events.clone()))?;
        for r in RESULTS {
            events.with_label_values(&[r]);
        }
        Ok(EventMetrics { events })
    }

    fn count(&self, result: &'static str) {
        self.events.with_label_values(&[result]).inc();
    }

    pub fn get(&self, result: &str) -> u64 {
        self.events.with_label_values(&[result]).get()
    }
}

/// A map that keeps at most `cap` entries, evicting the least recently used.
struct Bounded<K, V> {
    map: HashMap<K, (V, u64)>,
    tick: u64,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    fn new(cap: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            tick: 0,
            cap,
        }
    }

    fn get_or_insert_with(&mut self, k: &K, make: impl FnOnce() -> V) -> &mut V {
        self.tick += 1;
        if !self.map.contains_key(k) && self.map.len() >= self.cap {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone());
            if let Some(o) = oldest {
                self.map.remove(&o);
            }
        }
        let tick = self.tick;
        let entry = self.map.entry(k.clone()).or_insert_with(|| (make(), tick));
        entry.1 = tick;
        &mut entry.0
    }
}

/// (namespace, reason, note or the aggregate marker): what makes two events "the same".
type SeriesKey = (String, &'static str, String);

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Aggregate {
    notes: HashSet<String>,
    last: Instant,
}

struct Series {
    /// The Event's name once created.
    name: Option<String>,
    count: i32,
}

/// What to do with one store event.
#[derive(Debug, PartialEq)]
enum Decision {
    Create {
        key: SeriesKey,
        note: String,
        count: i32,
    },
    Patch {
        key: SeriesKey,
        name: String,
        count: i32,
    },
    Skip,
}

/// client-go's correlation (aggregate, observe, then spam-filter), on an explicit clock.
struct Correlator {
    buckets: Bounded<String, Bucket>,
    aggregates: Bounded<(String, &'static str), Aggregate>,
    series: Bounded<SeriesKey, Series>,
}

/// The Event note: the code first when there is one, within the API server's 1024 bytes.
fn note_of(ev: &StoreEvent) -> String {
    let note = match ev.code {
        Some(code) if !ev.reason.starts_with(code) => format!("{code}: {}", ev.reason),
        _ => ev.reason.clone(),
    };
    truncate(note, NOTE_LIMIT)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

impl Correlator {
    fn new() -> Correlator {
        Correlator {
            buckets: Bounded::new(CACHE_ENTRIES),
            aggregates: Bounded::new(CACHE_ENTRIES),
            series: Bounded::new(CACHE_ENTRIES),
        }
    }

    fn correlate(&mut self, ev: &StoreEvent, now: Instant) -> Decision {
        let reason = ev.kind.reason();
        let mut note = note_of(ev);
        let agg = self
            .aggregates
            .get_or_insert_with(&(ev.namespace.clone(), reason), || Aggregate {
                notes: HashSet::new(),
                last: now,
            });
        if now.saturating_duration_since(agg.last) > AGGREGATE_WINDOW {
            agg.notes.clear();
        }
        agg.last = now;
        if agg.notes.len() < AGGREGATE_MAX {
            agg.notes.insert(note.clone());
        }
        let series_note = if agg.notes.len() >= AGGREGATE_MAX {
            note = truncate(format!("(combined from similar events): {note}"), NOTE_LIMIT);
            "\u{0}aggregate".to_string()
        } else {
            note.clone()
        };
        let key: SeriesKey = (ev.namespace.clone(), reason, series_note);
        let series = self
            .series
            .get_or_insert_with(&key, || Series { name: None, count: 0 });
        series.count = series.count.saturating_add(1);
        let (count, name) = (series.count, series.name.clone());
        if !self.take_token(&ev.namespace, now) {
            return Decision::Skip;
        }
        match name {
            Some(name) => Decision::Patch { key, name, count },
            None => Decision::Create { key, note, count },
        }
    }

    fn take_token(&mut self, namespace: &str, now: Instant) -> bool {
        let b = self
            .buckets
            .get_or_insert_with(&namespace.to_string(), || Bucket {
                tokens: SPAM_BURST,
                at: now,
            });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() / SPAM_REFILL.as_secs_f64();
        b.tokens = (b.tokens + refill).min(SPAM_BURST);
        b.at = now;
        if b.tokens < 1.0 {
            return false;
        }
        b.tokens -= 1.0;
        true
    }

    /// After a create: later identical events patch this Event.
    fn created(&mut self, key: &SeriesKey, name: String) {
        self.series
            .get_or_insert_with(key, || Series { name: None, count: 1 })
            .name = Some(name);
    }

    /// After a patch found the Event gone (expired): the next one creates afresh.
    fn forget(&mut self, key: &SeriesKey) {
        self.series
            .get_or_insert_with(key, || Series { name: None, count: 0 })
            .name = None;
    }
}

/// Queues store events for the Events worker. Cheap to clone.
#[derive(Clone)]
pub struct KubeEvents {
    tx: mpsc::Sender<StoreEvent>,
    metrics: EventMetrics,
}

impl EventSink for KubeEvents {
    fn emit(&self, ev: &StoreEvent) {
        if self.tx.try_send(ev.clone()).is_err() {
            self.metrics.count("dropped");
            debug!(store = %ev.store, "Kubernetes Event dropped: queue full");
        }
    }
}

/// The worker task; it ends once every [`KubeEvents`] clone is dropped and the queue is empty.
pub struct EventsTask {
    handle: tokio::task::JoinHandle<()>,
}

impl EventsTask {
    /// Waits up to `grace` for the queue to drain, then aborts; `false` if it had to abort.
    pub async fn finish(self, grace: Duration) -> bool {
        let abort = self.handle.abort_handle();
        match tokio::time::timeout(grace, self.handle).await {
            Ok(_) => true,
            Err(_) => {
                abort.abort();
                false
            }
        }
    }
}

impl KubeEvents {
    /// Spawns the worker on the current runtime. `instance` is `reportingInstance` (the pod
    /// name, or the host name; at most 128 characters are kept).
    pub fn start(client: kube::Client, instance: &str, metrics: &EventMetrics) -> (KubeEvents, EventsTask) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let worker = Worker {
            client,
            instance: truncate(instance.to_string(), 128),
            correlator: Correlator::new(),
            metrics: metrics.clone(),
        };
        let handle = tokio::spawn(worker.run(rx));
        (
            KubeEvents {
                tx,
                metrics: metrics.clone(),
            },
            EventsTask { handle },
        )
    }
}

struct Worker {
    client: kube::Client,
    instance: String,
    correlator: Correlator,
    metrics: EventMetrics,
}

/// Where an event is written, and the `regarding` namespace. The store is its namespace. A
/// Namespace is cluster-scoped, but the API server files an event about an object without a
/// namespace under `default`; naming the store's namespace in `regarding` keeps the store's
/// events in it. Once the store is `deleted` its namespace is gone (a terminating namespace
/// refuses new objects), so that last event goes to `default`, about the cluster-scoped
/// Namespace.
fn placement(ev: &StoreEvent) -> (&str, Option<String>) {
    if ev.kind == EventKind::Deleted || !ev.namespace_exists {
        ("default", None)
    } else {
        (&ev.namespace, Some(ev.namespace.clone()))
    }
}

/// The Event object for a first occurrence (`count` ≥ 2 when earlier ones were filtered).
fn new_event(ev: &StoreEvent, note: String, count: i32, instance: &str) -> Event {
    let (namespace, regarding_ns) = placement(ev);
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", ev.namespace, ev.at.as_nanosecond())),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        action: Some(ev.kind.action().into()),
        reason: Some(ev.kind.reason().into()),
        note: Some(note),
        type_: Some(if ev.kind.is_warning() { "Warning" } else { "Normal" }.into()),
        event_time: Some(MicroTime(ev.at)),
        reporting_controller: Some(CONTROLLER.into()),
        reporting_instance: Some(instance.into()),
        regarding: Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Namespace".into()),
            name: Some(ev.namespace.clone()),
            namespace: regarding_ns,
            ..ObjectReference::default()
        }),
        series: (count >= 2).then_some(EventSeries {
            count,
            last_observed_time: MicroTime(ev.at),
        }),
        ..Event::default()
    }
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<StoreEvent>) {
        while let Some(ev) = rx.recv().await {
            match self.correlator.correlate(&ev, Instant::now()) {
                Decision::Skip => {
                    self.metrics.count("rate_limited");
                    debug!(store = %ev.store, reason = ev.kind.reason(), "Kubernetes Event rate-limited");
                }
                Decision::Create { key, note, count } => self.create(&ev, key, note, count).await,
                Decision::Patch { key, name, count } => self.patch(&ev, key, name, count).await,
            }
        }
    }

    async fn create(&mut self, ev: &StoreEvent, key: SeriesKey, note: String, count: i32) {
        let api: Api<Event> = Api::namespaced(self.client.clone(), placement(ev).0);
        let event = new_event(ev, note, count, &self.instance);
        match tokio::time::timeout(API_TIMEOUT, api.create(&PostParams::default(), &event)).await {
            Ok(Ok(created)) => {
                self.metrics.count("created");
                self.correlator
                    .created(&key, created.metadata.name.unwrap_or_default());
            }
            Ok(Err(e)) => self.failed(ev, &e.to_string()),
            Err(_) => self.failed(ev, "timed out"),
        }
    }

    async fn patch(&mut self, ev: &StoreEvent, key: SeriesKey, name: String, count: i32) {
        let api: Api<Event> = Api::namespaced(self.client.clone(), placement(ev).0);
        let series = EventSeries {
            count,
            last_observed_time: MicroTime(ev.at),
        };
        let body = serde_json::json!({ "series": series });
        let (params, patch) = (PatchParams::default(), Patch::Merge(&body));
        let call = api.patch(&name, &params, &patch);
        match tokio::time::timeout(API_TIMEOUT, call).await {
            Ok(Ok(_)) => self.metrics.count("patched"),
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => {
                // Expired (the API server keeps Events for an hour): start a new one.
                self.correlator.forget(&key);
                self.create(ev, key, note_of(ev), 1).await;
            }
            Ok(Err(e)) => self.failed(ev, &e.to_string()),
            Err(_) => self.failed(ev, "timed out"),
        }
    }

    fn failed(&self, ev: &StoreEvent, error: &str) {
        self.metrics.count("error");
        warn!(store = %ev.store, reason = ev.kind.reason(), error, "Cannot write a Kubernetes Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, store: &str, reason: &str) -> StoreEvent {
        StoreEvent::new(kind, store, format!("store-{store}"), "Failed", reason)
    }

    #[test]
    fn identical_events_patch_one_series_and_different_notes_create() {
        let mut c = Correlator::new();
        let t = Instant::now();
        let first = c.correlate(&ev(EventKind::Failed, "a", "boom"), t);
        let Decision::Create { key, count: 1, .. } = first else {
            panic!("{first:?}")
        };
        c.created(&key, "store-a.1".into());
        assert_eq!(
            c.correlate(&ev(EventKind::Failed, "a", "boom"), t),
            Decision::Patch {
                key: key.clone(),
                name: "store-a.1".into(),
                count: 2
            }
        );
        assert!(matches!(
            c.correlate(&ev(EventKind::Failed, "a", "other"), t),
            Decision::Create { count: 1, .. }
        ));
        assert!(matches!(
            c.correlate(&ev(EventKind::Failed, "b", "boom"), t),
            Decision::Create { count: 1, .. }
        ));
    }

    #[test]
    fn a_store_may_burst_25_events_then_one_per_five_minutes() {
        let mut c = Correlator::new();
        let t = Instant::now();
        let sent = (0..40)
            .filter(|i| {
                c.correlate(&ev(EventKind::Upgraded, "a", &format!("n{}", i % 3)), t) != Decision::Skip
            })
            .count();
        assert_eq!(sent, 25);
        // Another store has its own bucket.
        assert_ne!(c.correlate(&ev(EventKind::Upgraded, "b", "x"), t), Decision::Skip);
        let later = t + Duration::from_secs(299);
        assert_eq!(
            c.correlate(&ev(EventKind::Upgraded, "a", "x"), later),
            Decision::Skip
        );
        let later = t + Duration::from_secs(301);
        assert_ne!(
            c.correlate(&ev(EventKind::Upgraded, "a", "x"), later),
            Decision::Skip
        );
        assert_eq!(
            c.correlate(&ev(EventKind::Upgraded, "a", "x"), later),
            Decision::Skip
        );
    }

    #[test]
    fn ten_different_notes_in_ten_minutes_are_combined() {
        let mut c = Correlator::new();
        let t = Instant::now();
        let mut notes = Vec::new();
        for i in 0..12 {
            if let Decision::Create { note, key, .. } =
                c.correlate(&ev(EventKind::Failed, "a", &format!("error {i}")), t)
            {
                notes.push(note);
                c.created(&key, format!("e{i}"));
            }
        }
        assert_eq!(
            notes.len(),
            10,
            "9 plain, then one combined that later ones patch: {notes:?}"
        );
        assert_eq!(notes[8], "error 8");
        assert_eq!(notes[9], "(combined from similar events): error 9");
        let after = t + AGGREGATE_WINDOW + Duration::from_secs(301 * 25);
        assert!(matches!(
            c.correlate(&ev(EventKind::Failed, "a", "fresh"), after),
            Decision::Create { ref note, .. } if note == "fresh"
        ));
    }

    #[test]
    fn notes_carry_the_code_and_fit_the_api_limit() {
        let mut e = ev(EventKind::Failed, "a", "helm timed out");
        e.code = Some("helm_timeout");
        assert_eq!(note_of(&e), "helm_timeout: helm timed out");
        let long = ev(EventKind::Failed, "a", &"é".repeat(1000));
        let n = note_of(&long);
        assert!(n.len() <= NOTE_LIMIT && n.ends_with('…'), "{}", n.len());
    }

    #[test]
    fn caches_stay_bounded() {
        let mut b: Bounded<u32, ()> = Bounded::new(3);
        for k in 0..10 {
            b.get_or_insert_with(&k, || ());
        }
        assert_eq!(b.map.len(), 3);
        assert!(b.map.contains_key(&9) && !b.map.contains_key(&0));
    }
}
