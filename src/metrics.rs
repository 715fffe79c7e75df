//! Prometheus metrics. One struct owns every handle and registers into an explicit registry, so
//! tests can read it and nothing is global. Labels are bounded: error codes are `&'static str`,
//! and per-store series exist only on gauges whose series are removed with the store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Instant;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::spec::StoreName;
use crate::status::{Phase, StoreStatus};

/// Every storekeeper metric family (besides the standard `process_*` ones). The README's metric
/// list is tested against this, and this against what the registry exposes.
pub const NAMES: &[&str] = &[
    "storekeeper_build_info",
    "storekeeper_deletions_blocked_total",
    "storekeeper_deletions_total",
    "storekeeper_helm_operation_duration_seconds",
    "storekeeper_helm_operations_total",
    "storekeeper_leader",
    "storekeeper_reconcile_cycles_total",
    "storekeeper_reconcile_duration_seconds",
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
    pub webhook_requests: IntCounterVec,
    pub up: IntGauge,
    pub leader: IntGauge,
    /// Per-store label sets currently exported, so they can be removed when a store goes.
    exported: Mutex<Exported>,
}

#[derive(Default)]
struct Exported {
    info: BTreeMap<StoreName, [String; 3]>,
    spec_errors: BTreeSet<StoreName>,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    // Registering a fresh collector into a fresh registry fails only on a duplicate name, which
    // the unit tests rule out; ignore rather than panic in a library.
    let _ = r.register(Box::new(c.clone()));
    c
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let gv = |n: &str, h: &str, l: &[&str]| IntGaugeVec::new(Opts::new(n, h), l);
        let cv = |n: &str, h: &str, l: &[&str]| IntCounterVec::new(Opts::new(n, h), l);
        let buckets = vec![
            0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
        ];
        let hv = |n: &str, h: &str, l: &[&str]| {
            HistogramVec::new(HistogramOpts::new(n, h).buckets(buckets.clone()), l)
        };
        let m = (|| -> prometheus::Result<Metrics> {
            Ok(Metrics {
                build_info: reg(
                    &r,
                    gv(
                        "storekeeper_build_info",
                        "Build information; always 1.",
                        &["version"],
                    )?,
                ),
                stores: reg(&r, gv("storekeeper_stores", "Stores by phase.", &["phase"])?),
                store_info: reg(
                    &r,
                    gv(
                        "storekeeper_store_info",
                        "One series per store with its engine, phase and source revision; always 1.",
                        &["store", "engine", "phase", "revision"],
                    )?,
                ),
                reconcile_cycles: reg(
                    &r,
                    cv(
                        "storekeeper_reconcile_cycles_total",
                        "Reconcile cycles by result.",
                        &["result"],
                    )?,
                ),
                reconcile_duration: reg(
                    &r,
                    Histogram::with_opts(
                        HistogramOpts::new(
                            "storekeeper_reconcile_duration_seconds",
                            "Duration of reconcile cycles.",
                        )
                        .buckets(buckets.clone()),
                    )?,
                ),
                helm_operations: reg(
                    &r,
                    cv(
                        "storekeeper_helm_operations_total",
                        "helm child processes by operation and result.",
                        &["operation", "result"],
                    )?,
                ),
                helm_duration: reg(
                    &r,
                    hv(
                        "storekeeper_helm_operation_duration_seconds",
                        "Duration of helm child processes.",
                        &["operation"],
                    )?,
                ),
                source_last_success: reg(
                    &r,
                    Gauge::with_opts(Opts::new(
                        "storekeeper_source_last_success_timestamp_seconds",
                        "Unix time of the last successful read of the source.",
                    ))?,
                ),
                source_errors: reg(
                    &r,
                    cv(
                        "storekeeper_source_errors_total",
                        "Failed reads of the source by kind.",
                        &["kind"],
                    )?,
                ),
                spec_errors: reg(
                    &r,
                    gv(
                        "storekeeper_spec_errors",
                        "Errors in a store file; the series exists while the file is invalid.",
                        &["store"],
                    )?,
                ),
                deletions_blocked: reg(
                    &r,
                    cv(
                        "storekeeper_deletions_blocked_total",
                        "Deletions refused by a guard, by reason.",
                        &["reason"],
                    )?,
                ),
                deletions: reg(
                    &r,
                    cv(
                        "storekeeper_deletions_total",
                        "Store deletions carried out, by result.",
                        &["result"],
                    )?,
                ),
                webhook_requests: reg(
                    &r,
                    cv(
                        "storekeeper_webhook_requests_total",
                        "Webhook deliveries by result.",
                        &["result"],
                    )?,
                ),
                up: reg(
                    &r,
                    IntGauge::new("storekeeper_up", "1 while the daemon loop runs.")?,
                ),
                leader: reg(
                    &r,
                    IntGauge::new(
                        "storekeeper_leader",
                        "1 while this daemon acts (holds the lease, or no election).",
                    )?,
                ),
                registry: r.clone(),
                exported: Mutex::default(),
            })
        })();
        let m = match m {
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

    /// Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Replaces the per-store gauges with the current statuses; series of gone stores vanish.
    pub fn set_stores(&self, statuses: &BTreeMap<StoreName, (StoreStatus, &'static str)>) {
        for p in Phase::ALL {
            let n = statuses.values().filter(|(s, _)| s.phase == p).count();
            self.stores.with_label_values(&[p.as_str()]).set(n as i64);
        }
        let Ok(mut exported) = self.exported.lock() else {
            return;
        };
        let mut next = BTreeMap::new();
        for (name, (status, engine)) in statuses {
            let labels = [
                engine.to_string(),
                status.phase.as_str().to_string(),
                status.revision.clone().unwrap_or_default(),
            ];
            next.insert(name.clone(), labels);
        }
        for (name, old) in &exported.info {
            if next.get(name) != Some(old) {
                let _ = self
                    .store_info
                    .remove_label_values(&[name.as_str(), &old[0], &old[1], &old[2]]);
            }
        }
        for (name, l) in &next {
            self.store_info
                .with_label_values(&[name.as_str(), &l[0], &l[1], &l[2]])
                .set(1);
        }
        exported.info = next;
    }

    /// Sets the spec-error gauge for invalid stores and removes it for the others.
    pub fn set_spec_errors(&self, errors: &BTreeMap<StoreName, usize>) {
        let Ok(mut exported) = self.exported.lock() else {
            return;
        };
        for name in exported.spec_errors.iter().filter(|n| !errors.contains_key(*n)) {
            let _ = self.spec_errors.remove_label_values(&[name.as_str()]);
        }
        for (name, n) in errors {
            self.spec_errors
                .with_label_values(&[name.as_str()])
                .set(*n as i64);
        }
        exported.spec_errors = errors.keys().cloned().collect();
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

    fn status(phase: Phase, rev: &str) -> StoreStatus {
        StoreStatus::new(phase, "r", Some(rev.to_string()))
    }

    #[test]
    fn store_series_follow_the_stores() {
        let m = Metrics::new();
        let a = StoreName::new("a").unwrap_or_else(|e| panic!("{e}"));
        let b = StoreName::new("b").unwrap_or_else(|e| panic!("{e}"));
        let mut s = BTreeMap::new();
        s.insert(a.clone(), (status(Phase::Ready, "r1"), "woocommerce"));
        s.insert(b.clone(), (status(Phase::Failed, "r1"), "medusa"));
        m.set_stores(&s);
        let text = m.render();
        assert!(
            text.contains(
                r#"storekeeper_store_info{engine="woocommerce",phase="Ready",revision="r1",store="a"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"storekeeper_stores{phase="Failed"} 1"#), "{text}");
        s.remove(&b);
        s.insert(a, (status(Phase::Ready, "r2"), "woocommerce"));
        m.set_stores(&s);
        let text = m.render();
        assert!(!text.contains(r#"store="b""#), "{text}");
        assert!(!text.contains(r#"revision="r1""#), "old series removed: {text}");
        assert!(text.contains(r#"storekeeper_stores{phase="Failed"} 0"#), "{text}");
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
        m.set_stores(&[(a.clone(), (status(Phase::Ready, "r"), "medusa"))].into());
        m.set_spec_errors(&[(a, 1)].into());
        m.reconcile_cycles.with_label_values(&["ok"]).inc();
        m.reconcile_duration.observe(0.1);
        m.helm_operation("upgrade", "ok", Instant::now());
        m.source_last_success.set(1.0);
        m.source_errors.with_label_values(&["x"]).inc();
        m.deletions_blocked.with_label_values(&["x"]).inc();
        m.deletions.with_label_values(&["ok"]).inc();
        m.webhook_requests.with_label_values(&["ok"]).inc();
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
