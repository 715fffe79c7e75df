//! Day two with the REAL store charts: `storekeeper apply` upgrades stores on the test API server,
//! which refuses what kube-apiserver refuses (a changed Job `spec.template`, a PVC shrink, growth
//! without an expandable StorageClass), with helm 3 and helm 4. Every input of the setup Job's pod
//! template is changed in turn and each upgrade must succeed with a new Job; a plan change
//! small -> medium -> small must succeed and keep the volumes.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use support::{Env, Opts, show};

/// An environment whose charts directory holds copies of the real store charts (copies, so a test
/// can bump a chart's version), installed with the local-cluster values.
fn real_charts(major: u8) -> Env {
    let env = Env::with(
        major,
        Opts {
            helm_timeout: "120s",
            // imagePullSecrets is a guard-rail key: allowed only by naming it.
            extra: "[policy]\nvalues_allowed = [\"*\", \"image.repository\", \"image.tag\", \"imagePullSecrets\"]\n",
            ..Opts::default()
        },
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for chart in ["woocommerce-store", "medusa-store"] {
        let target = env.dir.path().join("charts").join(chart);
        std::fs::remove_dir_all(&target).expect("remove the tiny chart copy");
        copy_dir(&root.join("charts").join(chart), &target);
    }
    let config = std::fs::read_to_string(&env.config).expect("config");
    let config = config.replace("[reconcile]", "values_files = ['values-local.yaml']\n[reconcile]");
    std::fs::write(&env.config, config).expect("write config");
    env
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read chart dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// One `storekeeper apply`, which must succeed; `what` names the step in the failure message.
fn apply(env: &Env, what: &str) {
    let out = env.run(&["apply"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}:\n{}\n{}",
        show(&out),
        env.api.log_tail(30)
    );
}

/// The names of the setup Jobs in a store's namespace.
fn setup_jobs(env: &Env, store: &str) -> Vec<String> {
    env.api
        .list(&format!(
            "/apis/batch/v1/namespaces/store-{store}/jobs?labelSelector=app.kubernetes.io/component=setup"
        ))
        .iter()
        .filter_map(|j| j["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

fn the_setup_job(env: &Env, store: &str) -> String {
    let jobs = setup_jobs(env, store);
    assert_eq!(jobs.len(), 1, "{store}: one setup Job, got {jobs:?}");
    jobs[0].clone()
}

const WOO: &str = "shop";
const MEDUSA: &str = "bikes";

fn store_file(engine: &str, plan: &str, values: &str) -> String {
    format!("engine = \"{engine}\"\nplan = \"{plan}\"\n{values}")
}

/// Each step adds one change to the raw `values` of both stores (or bumps both charts' version)
/// and the next apply must upgrade both, each with a new setup Job.
fn pod_template_inputs_rename_the_setup_job(major: u8) {
    let env = real_charts(major);
    let woo_steps = [
        (
            "wordpress.configExtra",
            "[values.wordpress]\nconfigExtra = \"define('WP_POST_REVISIONS', 5);\"\n",
        ),
        (
            "wordpress.extraEnv",
            "[[values.wordpress.extraEnv]]\nname = \"SHOP_MODE\"\nvalue = \"b2c\"\n",
        ),
        ("mariadb.database", "[values.mariadb]\ndatabase = \"shop\"\n"),
        ("mariadb.user", "user = \"shop\"\n"),
        (
            "imagePullSecrets",
            "[[values.imagePullSecrets]]\nname = \"regcred\"\n",
        ),
    ];
    let medusa_steps = [
        (
            "helperResources",
            "[values.helperResources.requests]\ncpu = \"60m\"\nmemory = \"64Mi\"\n",
        ),
        (
            "server.extraEnv",
            "[[values.server.extraEnv]]\nname = \"SHOP_MODE\"\nvalue = \"b2c\"\n",
        ),
        ("server.port", "[values.server]\nport = 9001\n"),
        ("postgres.database", "[values.postgres]\ndatabase = \"shop\"\n"),
        ("postgres.user", "user = \"shop\"\n"),
        (
            "imagePullSecrets",
            "[[values.imagePullSecrets]]\nname = \"regcred\"\n",
        ),
    ];
    env.write_store(WOO, &store_file("woocommerce", "small", ""));
    env.write_store(MEDUSA, &store_file("medusa", "small", ""));
    apply(&env, "first install");
    let mut jobs = (the_setup_job(&env, WOO), the_setup_job(&env, MEDUSA));

    let (mut woo_values, mut medusa_values) = (String::new(), String::new());
    for (step, (input, toml)) in medusa_steps.into_iter().enumerate() {
        let mut changed = Vec::new();
        if let Some((input, toml)) = woo_steps.get(step) {
            woo_values.push_str(toml);
            changed.push(*input);
            env.write_store(WOO, &store_file("woocommerce", "small", &woo_values));
        }
        medusa_values.push_str(toml);
        changed.push(input);
        env.write_store(MEDUSA, &store_file("medusa", "small", &medusa_values));
        let what = format!("helm {major}: upgrade changing {changed:?}");
        apply(&env, &what);
        let now = (the_setup_job(&env, WOO), the_setup_job(&env, MEDUSA));
        if step < woo_steps.len() {
            assert_ne!(now.0, jobs.0, "{what}: the WooCommerce setup Job kept its name");
        }
        assert_ne!(now.1, jobs.1, "{what}: the Medusa setup Job kept its name");
        jobs = now;
    }

    // The chart version reaches the pod template through the helm.sh/chart label.
    for chart in ["woocommerce-store", "medusa-store"] {
        let path = env.dir.path().join("charts").join(chart).join("Chart.yaml");
        let text = std::fs::read_to_string(&path).expect("Chart.yaml");
        let bumped: String = text
            .lines()
            .map(|l| {
                if l.starts_with("version:") {
                    "version: 99.0.0".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&path, bumped + "\n").expect("bump the chart version");
    }
    apply(&env, &format!("helm {major}: upgrade to a new chart version"));
    let now = (the_setup_job(&env, WOO), the_setup_job(&env, MEDUSA));
    assert_ne!(
        now.0, jobs.0,
        "chart version: the WooCommerce setup Job kept its name"
    );
    assert_ne!(now.1, jobs.1, "chart version: the Medusa setup Job kept its name");
    for store in [WOO, MEDUSA] {
        assert_eq!(env.release_status(store).as_deref(), Some("deployed"), "{store}");
        assert_eq!(
            env.phase(&format!("store-{store}")).as_deref(),
            Some("Ready"),
            "{store}"
        );
    }
}

fn pvc_sizes(env: &Env, store: &str) -> Vec<(String, String)> {
    let mut sizes: Vec<(String, String)> = env
        .api
        .list(&format!(
            "/api/v1/namespaces/store-{store}/persistentvolumeclaims"
        ))
        .iter()
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let size = p["spec"]["resources"]["requests"]["storage"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (name, size)
        })
        .collect();
    sizes.sort();
    sizes
}

fn quota_storage(env: &Env, store: &str) -> Value {
    let quotas = env
        .api
        .list(&format!("/api/v1/namespaces/store-{store}/resourcequotas"));
    quotas
        .first()
        .map(|q| q["spec"]["hard"]["requests.storage"].clone())
        .unwrap_or(Value::Null)
}

/// small -> medium -> small for both engines, on a cluster whose default StorageClass can expand:
/// stores without `persistence.expandVolumes` keep 5Gi; stores with it grow to 10Gi and then keep
/// 10Gi (a claim never shrinks). The quota follows the plan either way.
fn plan_change_keeps_the_volumes(major: u8) {
    let env = real_charts(major);
    env.api.insert(
        "/apis/storage.k8s.io/v1/storageclasses",
        json!({"metadata": {"name": "longhorn",
                            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
               "provisioner": "driver.longhorn.io", "allowVolumeExpansion": true}),
    );
    let grow = "[values.persistence]\nexpandVolumes = true\n";
    let stores = [
        ("shop", "woocommerce", ""),
        ("bikes", "medusa", ""),
        ("shop-grows", "woocommerce", grow),
        ("bikes-grow", "medusa", grow),
    ];
    for (plan, quota, kept, grown) in [
        ("small", "10Gi", "5Gi", "5Gi"),
        ("medium", "20Gi", "5Gi", "10Gi"),
        ("small", "10Gi", "5Gi", "10Gi"),
    ] {
        for (name, engine, values) in stores {
            env.write_store(name, &store_file(engine, plan, values));
        }
        apply(&env, &format!("helm {major}: plan {plan}"));
        for (name, _, values) in stores {
            let want = if values.is_empty() { kept } else { grown };
            let sizes = pvc_sizes(&env, name);
            assert_eq!(sizes.len(), 2, "{name} at {plan}: {sizes:?}");
            for (pvc, size) in &sizes {
                assert_eq!(size, want, "{name} at {plan}: {pvc}");
            }
            assert_eq!(quota_storage(&env, name), json!(quota), "{name} at {plan}: quota");
            assert_eq!(
                env.release_status(name).as_deref(),
                Some("deployed"),
                "{name} at {plan}"
            );
        }
    }
}

macro_rules! both_helms {
    ($($name:ident),* $(,)?) => {
        mod helm3 { $( #[test] fn $name() { super::$name(3) } )* }
        mod helm4 { $( #[test] fn $name() { super::$name(4) } )* }
    };
}

both_helms!(
    pod_template_inputs_rename_the_setup_job,
    plan_change_keeps_the_volumes,
);
