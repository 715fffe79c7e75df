//! Prometheus metrics. One struct owns every handle and registers into an explicit registry, so
//! tests can read it and nothing is global. Labels are bounded: error codes are `&'static str`,
//! and per-store series exist only on gauges whose series are removed with the store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Instant;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::spec::StoreName;
use crate::status::{Phase, StoreStatus};

/// Every storekeeper metric family (besides the standard `process_*` ones). The README's metric
/// list is tested against this, and this against what the registry exposes.
pub const NAMES: &[&str] = &[
    "storekeeper_backup_failures_total",
    "storekeeper_backup_last_success_timestamp_seconds",
    "storekeeper_build_info",
    "storekeeper_cluster_observations_total",
    "storekeeper_deletion_deadline_timestamp_seconds",
    "storekeeper_deletions_blocked_total",
    "storekeeper_deletions_total",
    "storekeeper_helm_operation_duration_seconds",
    "storekeeper_helm_operations_total",
    "storekeeper_kube_events_total",
    "storekeeper_leader",
    "storekeeper_notifications_total",
    "storekeeper_operations_in_flight",
    "storekeeper_owner_stores",
    "storekeeper_queue_depth",
    "storekeeper_reconcile_cycles_total",
    "storekeeper_reconcile_duration_seconds",
    "storekeeper_reconcile_errors_total",
    "storekeeper_source_errors_total",
    "storekeeper_source_last_success_timestamp_seconds",
    "storekeeper_spec_errors",
    "storekeeper_store_info",
    "storekeeper_stores",
    "storekeeper_up",
    "storekeeper_webhook_requests_total",
];

/// Owns every metric handle.
pub struct Metrics {
    pub registry: Registry,
    build_info: IntGaugeVec,
    stores: IntGaugeVec,
    store_info: IntGaugeVec,
    pub reconcile_cycles: IntCounterVec,
    pub reconcile_duration: Histogram,
    pub helm_operations: IntCounterVec,
    pub helm_duration: HistogramVec,
    pub source_last_success: Gauge,
    pub source_errors: IntCounterVec,
    spec_errors: IntGaugeVec,
    pub deletions_blocked: IntCounterVec,
    pub deletions: IntCounterVec,
    deletion_deadline: GaugeVec,
    owner_stores: IntGaugeVec,
    /// `storekeeper_notifications_total{target,result}` (the notifier counts).
    pub notify: crate::notify::NotifyMetrics,
    /// `storekeeper_kube_events_total{result}` (the Events worker counts).
    pub events: crate::events::EventMetrics,
    pub webhook_requests: IntCounterVec,
    pub up: IntGauge,
    pub leader: IntGauge,
    pub queue_depth: IntGauge,
    pub operations_in_flight: IntGauge,
    pub reconcile_errors: IntCounterVec,
    pub cluster_observations: IntCounterVec,
    /// Per store, set by `backup::monitor` (series removed with the store's last backup Job).
    pub backup_last_success: GaugeVec,
    pub backup_failures: IntCounterVec,
    /// Stores whose spec-error series is exported, so it can be removed once fixed.
    spec_errors_exported: Mutex<BTreeSet<StoreName>>,
}

/// Each family's help text, by name (the README's metric table says more).
const HELP: &[(&str, &str)] = &[
    (
        "storekeeper_backup_last_success_timestamp_seconds",
        "Unix time of each store's last successful backup Job.",
    ),
    (
        "storekeeper_backup_failures_total",
        "Failed backup Jobs per store, counted as they fail.",
    ),
    ("storekeeper_build_info", "Build information; always 1."),
    ("storekeeper_stores", "Stores by phase."),
    (
        "storekeeper_store_info",
        "One series per store with its engine, phase and source revision; always 1.",
    ),
    (
        "storekeeper_reconcile_cycles_total",
        "Plans by result (unchanged: nothing changed since the last plan, none made).",
    ),
    (
        "storekeeper_cluster_observations_total",
        "Observations of the cluster's namespaces, by source (the watch cache, or a LIST and why).",
    ),
    (
        "storekeeper_reconcile_duration_seconds",
        "How long one plan took (observe, plan, queue).",
    ),
    (
        "storekeeper_reconcile_errors_total",
        "Failed store operations, by bounded error code.",
    ),
    (
        "storekeeper_helm_operations_total",
        "helm child processes by operation and result.",
    ),
    (
        "storekeeper_helm_operation_duration_seconds",
        "Duration of helm child processes.",
    ),
    (
        "storekeeper_source_last_success_timestamp_seconds",
        "Unix time of the last successful read of the source.",
    ),
    (
        "storekeeper_source_errors_total",
        "Failed reads of the source by kind.",
    ),
    (
        "storekeeper_spec_errors",
        "Errors in a store file; the series exists while the file is invalid.",
    ),
    (
        "storekeeper_deletions_blocked_total",
        "Deletions refused by a guard, by reason.",
    ),
    (
        "storekeeper_deletions_total",
        "Store deletions carried out, by result.",
    ),
    (
        "storekeeper_webhook_requests_total",
        "Webhook deliveries by result.",
    ),
    ("storekeeper_up", "1 while the daemon loop runs."),
    (
        "storekeeper_leader",
        "1 while this daemon acts (holds the lease, or no election).",
    ),
    (
        "storekeeper_queue_depth",
        "Stores with work queued that has not started (retries waiting included).",
    ),
    (
        "storekeeper_operations_in_flight",
        "Store operations running now (at most helm.max_concurrent).",
    ),
    (
        "storekeeper_owner_stores",
        "Stores per owner (owners come from store files).",
    ),
];

/// Buckets for operation and plan durations, from 50 ms to 10 min.
const BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Builds metric families into one registry. The definitions are static, so the unit tests
/// rule out every error (an invalid name, a duplicate).
struct Reg(Registry);

impl Reg {
    fn opts(name: &str) -> Opts {
        let help = HELP.iter().find(|(n, _)| *n == name).map_or(name, |(_, h)| h);
        Opts::new(name, help)
    }
    fn add<T: prometheus::core::Collector + Clone + 'static>(&self, c: T) -> prometheus::Result<T> {
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }
    fn gauge(&self, name: &str) -> prometheus::Result<IntGauge> {
        self.add(IntGauge::with_opts(Self::opts(name))?)
    }
    fn gauges(&self, name: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
        self.add(IntGaugeVec::new(Self::opts(name), labels)?)
    }
    fn counters(&self, name: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
        self.add(IntCounterVec::new(Self::opts(name), labels)?)
    }
    fn histogram(&self, name: &str) -> prometheus::Result<Histogram> {
        let opts = HistogramOpts::from(Self::opts(name)).buckets(BUCKETS.to_vec());
        self.add(Histogram::with_opts(opts)?)
    }
    fn histograms(&self, name: &str, labels: &[&str]) -> prometheus::Result<HistogramVec> {
        let opts = HistogramOpts::from(Self::opts(name)).buckets(BUCKETS.to_vec());
        self.add(HistogramVec::new(opts, labels)?)
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = match Metrics::build(Reg(Registry::new())) {
            Ok(m) => m,
            Err(e) => unreachable!("metric definitions are static and valid: {e}"),
        };
        #[cfg(target_os = "linux")]
        {
            let _ = m.registry.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ));
        }
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for p in Phase::ALL {
            m.stores.with_label_values(&[p.as_str()]).set(0);
        }
        m
    }

    fn build(r: Reg) -> prometheus::Result<Metrics> {
        Ok(Metrics {
            build_info: r.gauges("storekeeper_build_info", &["version"])?,
            stores: r.gauges("storekeeper_stores", &["phase"])?,
            store_info: r.gauges(
                "storekeeper_store_info",
                &["store", "engine", "phase", "revision"],
            )?,
            reconcile_cycles: r.counters("storekeeper_reconcile_cycles_total", &["result"])?,
            reconcile_duration: r.histogram("storekeeper_reconcile_duration_seconds")?,
            reconcile_errors: r.counters("storekeeper_reconcile_errors_total", &["code"])?,
            helm_operations: r.counters("storekeeper_helm_operations_total", &["operation", "result"])?,
            helm_duration: r.histograms("storekeeper_helm_operation_duration_seconds", &["operation"])?,
            source_last_success: r.add(Gauge::with_opts(Reg::opts(
                "storekeeper_source_last_success_timestamp_seconds",
            ))?)?,
            source_errors: r.counters("storekeeper_source_errors_total", &["kind"])?,
            spec_errors: r.gauges("storekeeper_spec_errors", &["store"])?,
            deletions_blocked: r.counters("storekeeper_deletions_blocked_total", &["guard"])?,
            deletions: r.counters("storekeeper_deletions_total", &["reason"])?,
            deletion_deadline: r.add(GaugeVec::new(
                Reg::opts("storekeeper_deletion_deadline_timestamp_seconds"),
                &["store"],
            )?)?,
            webhook_requests: r.counters("storekeeper_webhook_requests_total", &["result"])?,
            owner_stores: r.gauges("storekeeper_owner_stores", &["owner"])?,
            notify: crate::notify::NotifyMetrics::register(&r.0)?,
            events: crate::events::EventMetrics::register(&r.0)?,
            up: r.gauge("storekeeper_up")?,
            leader: r.gauge("storekeeper_leader")?,
            queue_depth: r.gauge("storekeeper_queue_depth")?,
            operations_in_flight: r.gauge("storekeeper_operations_in_flight")?,
            cluster_observations: r.counters("storekeeper_cluster_observations_total", &["source"])?,
            backup_last_success: r.add(GaugeVec::new(
                Reg::opts("storekeeper_backup_last_success_timestamp_seconds"),
                &["store"],
            )?)?,
            backup_failures: r.counters("storekeeper_backup_failures_total", &["store"])?,
            registry: r.0,
            spec_errors_exported: Mutex::default(),
        })
    }

    /// Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Follows one store's transition: the phase counts move by one, and the store's info
    /// series is replaced (or removed with the store). Called only by the recorder.
    pub fn store_changed(&self, store: &StoreName, old: Option<&StoreStatus>, new: Option<&StoreStatus>) {
        let labels = |s: &StoreStatus| {
            [
                s.engine.unwrap_or("unknown").to_string(),
                s.phase.as_str().to_string(),
                s.revision.clone().unwrap_or_default(),
            ]
        };
        self.deadline_changed(store, old, new);
        self.owner_changed(old, new);
        let (before, after) = (old.map(labels), new.map(labels));
        if before == after {
            return;
        }
        if let Some(l) = &before {
            self.stores.with_label_values(&[l[1].as_str()]).dec();
            let _ = self
                .store_info
                .remove_label_values(&[store.as_str(), &l[0], &l[1], &l[2]]);
        }
        if let Some(l) = &after {
            self.stores.with_label_values(&[l[1].as_str()]).inc();
            self.store_info
                .with_label_values(&[store.as_str(), &l[0], &l[1], &l[2]])
                .set(1);
        }
    }

    /// One series per owner with stores; it goes with the owner's last store.
    fn owner_changed(&self, old: Option<&StoreStatus>, new: Option<&StoreStatus>) {
        let (before, after) = (
            old.and_then(|s| s.owner.as_deref()),
            new.and_then(|s| s.owner.as_deref()),
        );
        if before == after {
            return;
        }
        if let Some(o) = before {
            let g = self.owner_stores.with_label_values(&[o]);
            g.dec();
            if g.get() <= 0 {
                let _ = self.owner_stores.remove_label_values(&[o]);
            }
        }
        if let Some(o) = after {
            self.owner_stores.with_label_values(&[o]).inc();
        }
    }

    /// The deletion deadline series exists while the store is PendingDeletion.
    fn deadline_changed(&self, store: &StoreName, old: Option<&StoreStatus>, new: Option<&StoreStatus>) {
        let deadline = |s: Option<&StoreStatus>| {
            s.filter(|s| s.phase == Phase::PendingDeletion)
                .and_then(|s| s.deletion_deadline)
        };
        match (deadline(old), deadline(new)) {
            (_, Some(at)) => self
                .deletion_deadline
                .with_label_values(&[store.as_str()])
                .set(at.as_millisecond() as f64 / 1000.0),
            (Some(_), None) => {
                let _ = self.deletion_deadline.remove_label_values(&[store.as_str()]);
            }
            (None, None) => {}
        }
    }

    /// Sets the spec-error gauge for invalid stores and removes it for the others.
    pub fn set_spec_errors(&self, errors: &BTreeMap<StoreName, usize>) {
        let Ok(mut exported) = self.spec_errors_exported.lock() else {
            return;
        };
        for name in exported.iter().filter(|n| !errors.contains_key(*n)) {
            let _ = self.spec_errors.remove_label_values(&[name.as_str()]);
        }
        for (name, n) in errors {
            self.spec_errors
                .with_label_values(&[name.as_str()])
                .set(*n as i64);
        }
        *exported = errors.keys().cloned().collect();
    }

    /// Records one helm child process.
    pub fn helm_operation(&self, operation: &'static str, result: &'static str, started: Instant) {
        self.helm_operations.with_label_values(&[operation, result]).inc();
        self.helm_duration
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Every metric name exposed (families), sorted.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self
            .registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        n.sort();
        n
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: Phase, rev: &str, engine: &'static str) -> StoreStatus {
        let mut s = StoreStatus::new(phase, "r");
        s.revision = Some(rev.to_string());
        s.engine = Some(engine);
        s
    }

    #[test]
    fn store_series_follow_the_stores() {
        let m = Metrics::new();
        let a = StoreName::new("a").unwrap_or_else(|e| panic!("{e}"));
        let b = StoreName::new("b").unwrap_or_else(|e| panic!("{e}"));
        let a1 = status(Phase::Ready, "r1", "woocommerce");
        let b1 = status(Phase::Failed, "r1", "medusa");
        m.store_changed(&a, None, Some(&a1));
        m.store_changed(&b, None, Some(&b1));
        let text = m.render();
        assert!(
            text.contains(
                r#"storekeeper_store_info{engine="woocommerce",phase="Ready",revision="r1",store="a"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"storekeeper_stores{phase="Failed"} 1"#), "{text}");
        m.store_changed(&b, Some(&b1), None);
        m.store_changed(&a, Some(&a1), Some(&status(Phase::Ready, "r2", "woocommerce")));
        let text = m.render();
        assert!(!text.contains(r#"store="b""#), "{text}");
        assert!(!text.contains(r#"revision="r1""#), "old series removed: {text}");
        assert!(text.contains(r#"storekeeper_stores{phase="Failed"} 0"#), "{text}");
        assert!(text.contains(r#"storekeeper_stores{phase="Ready"} 1"#), "{text}");
    }

    #[test]
    fn a_deletion_deadline_series_lives_while_the_store_is_pending_deletion() {
        let m = Metrics::new();
        let a = StoreName::new("a").unwrap_or_else(|e| panic!("{e}"));
        let ready = status(Phase::Ready, "r", "woocommerce");
        let mut pending = status(Phase::PendingDeletion, "r", "woocommerce");
        pending.deletion_deadline = Some(jiff::Timestamp::from_second(1_800_000_000).unwrap_or_default());
        m.store_changed(&a, None, Some(&ready));
        m.store_changed(&a, Some(&ready), Some(&pending));
        let text = m.render();
        assert!(
            text.contains(r#"storekeeper_deletion_deadline_timestamp_seconds{store="a"} 1800000000"#),
            "{text}"
        );
        assert!(
            text.contains(r#"storekeeper_stores{phase="PendingDeletion"} 1"#),
            "{text}"
        );
        m.store_changed(&a, Some(&pending), Some(&ready));
        assert!(
            !m.render()
                .contains("storekeeper_deletion_deadline_timestamp_seconds{")
        );
    }

    #[test]
    fn owner_series_count_stores_and_go_with_the_last_one() {
        let m = Metrics::new();
        let owned = |owner: &str| {
            let mut s = status(Phase::Ready, "r", "woocommerce");
            s.owner = Some(owner.into());
            s
        };
        let (a, b) = (
            StoreName::new("a").unwrap_or_else(|e| panic!("{e}")),
            StoreName::new("b").unwrap_or_else(|e| panic!("{e}")),
        );
        m.store_changed(&a, None, Some(&owned("acme")));
        m.store_changed(&b, None, Some(&owned("acme")));
        assert!(m.render().contains(r#"storekeeper_owner_stores{owner="acme"} 2"#));
        m.store_changed(&a, Some(&owned("acme")), Some(&owned("bob")));
        let text = m.render();
        assert!(
            text.contains(r#"storekeeper_owner_stores{owner="acme"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"storekeeper_owner_stores{owner="bob"} 1"#),
            "{text}"
        );
        m.store_changed(&b, Some(&owned("acme")), None);
        assert!(!m.render().contains(r#"owner="acme""#));
    }

    #[test]
    fn spec_error_series_vanish_when_fixed() {
        let m = Metrics::new();
        let a = StoreName::new("a").unwrap_or_else(|e| panic!("{e}"));
        m.set_spec_errors(&[(a.clone(), 3)].into());
        assert!(m.render().contains(r#"storekeeper_spec_errors{store="a"} 3"#));
        m.set_spec_errors(&BTreeMap::new());
        assert!(!m.render().contains("storekeeper_spec_errors{"));
    }

    #[test]
    fn names_list_every_family_the_registry_exposes() {
        let m = Metrics::new();
        let a = StoreName::new("a").unwrap_or_else(|e| panic!("{e}"));
        m.store_changed(&a, None, Some(&status(Phase::Ready, "r", "medusa")));
        let mut owned = status(Phase::Ready, "r", "medusa");
        owned.owner = Some("acme".into());
        m.store_changed(&a, None, Some(&owned));
        let mut pending = status(Phase::PendingDeletion, "r", "medusa");
        pending.deletion_deadline = Some(jiff::Timestamp::UNIX_EPOCH);
        m.store_changed(&a, None, Some(&pending));
        m.reconcile_errors.with_label_values(&["helm_timeout"]).inc();
        m.notify.get("ops", "sent");
        m.set_spec_errors(&[(a, 1)].into());
        m.reconcile_cycles.with_label_values(&["ok"]).inc();
        m.reconcile_duration.observe(0.1);
        m.helm_operation("upgrade", "ok", Instant::now());
        m.source_last_success.set(1.0);
        m.source_errors.with_label_values(&["x"]).inc();
        m.deletions_blocked.with_label_values(&["x"]).inc();
        m.deletions.with_label_values(&["ok"]).inc();
        m.webhook_requests.with_label_values(&["ok"]).inc();
        m.cluster_observations.with_label_values(&["cache"]).inc();
        m.backup_last_success.with_label_values(&["a"]).set(1.0);
        m.backup_failures.with_label_values(&["a"]).inc();
        let ours: Vec<String> = m
            .names()
            .into_iter()
            .filter(|n| n.starts_with("storekeeper_"))
            .collect();
        assert_eq!(ours, NAMES);
    }

    #[test]
    fn build_info_and_process_metrics_are_exposed() {
        let m = Metrics::new();
        let text = m.render();
        assert!(text.contains(&format!(
            "storekeeper_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(
            m.names().iter().any(|n| n == "process_resident_memory_bytes"),
            "{:?}",
            m.names()
        );
    }
}
