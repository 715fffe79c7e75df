//! Every example store in `stores.d/` installed with the real store charts (local values) by the
//! real `storekeeper apply`, with helm 3 and helm 4, against the test API server — then the
//! namespace guard rails the charts promise are checked on what the server holds.

mod support;

use std::path::PathBuf;

use support::{Env, Opts, show};

fn install_examples(major: u8) {
    let env = Env::with(
        major,
        Opts {
            helm_timeout: "120s",
            ..Opts::default()
        },
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(root.join("stores.d")).expect("stores.d") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), env.stores.join(entry.file_name())).expect("copy store");
    }
    // The real charts, with the local-cluster values, instead of the tiny test chart.
    let config = std::fs::read_to_string(&env.config).expect("config");
    let charts = root.join("charts");
    let config = config
        .replace(
            &format!("charts_dir = '{}'", env.dir.path().join("charts").display()),
            &format!("charts_dir = '{}'", charts.display()),
        )
        .replace("[reconcile]", "values_files = ['values-local.yaml']\n[reconcile]");
    std::fs::write(&env.config, config).expect("write config");

    let out = env.run(&["apply"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        show(&out),
        env.api.log_tail(40)
    );
    for (store, host) in [
        ("chai-corner", "chai-corner.localtest.me"),
        ("corner-shop", "corner-shop.test.local"),
        ("city-bikes", "city-bikes.test.local"),
    ] {
        let ns = format!("store-{store}");
        assert_eq!(env.release_status(store).as_deref(), Some("deployed"), "{store}");
        assert_eq!(env.phase(&ns).as_deref(), Some("Ready"), "{store}");
        let list = |path: &str| env.api.list(&format!("/{path}").replace("{ns}", &ns));
        assert_eq!(
            list("api/v1/namespaces/{ns}/resourcequotas").len(),
            1,
            "{store}: ResourceQuota"
        );
        assert_eq!(
            list("api/v1/namespaces/{ns}/limitranges").len(),
            1,
            "{store}: LimitRange"
        );
        let policies = list("apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies");
        let default_deny = policies.iter().any(|p| {
            p["spec"]["podSelector"]
                .as_object()
                .is_some_and(|o| o.is_empty() || o.get("matchLabels").is_none())
                && p["spec"]["policyTypes"].as_array().is_some_and(|t| t.len() == 2)
                && p["spec"]
                    .get("ingress")
                    .is_none_or(|i| i.as_array().is_some_and(Vec::is_empty))
        });
        assert!(
            default_deny,
            "{store}: a default-deny NetworkPolicy: {policies:#?}"
        );
        let ingresses = list("apis/networking.k8s.io/v1/namespaces/{ns}/ingresses");
        assert!(
            ingresses.iter().any(|i| i["spec"]["rules"][0]["host"] == host),
            "{store}: an Ingress at {host}: {ingresses:#?}"
        );
        // The only Secrets are the daemon's credentials and helm's release records.
        for secret in list("api/v1/namespaces/{ns}/secrets") {
            let name = secret["metadata"]["name"].as_str().unwrap_or_default();
            assert!(
                name == "storekeeper-credentials" || name.starts_with("sh.helm.release.v1."),
                "{store}: unexpected Secret {name}"
            );
        }
    }
    // Idempotent: a second apply changes nothing.
    env.clear_helm_log();
    let out = env.run(&["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        env.helm_calls().iter().all(|c| c.starts_with("version")),
        "{:?}",
        env.helm_calls()
    );
}

#[test]
fn helm3_installs_every_example_store() {
    install_examples(3);
}

#[test]
fn helm4_installs_every_example_store() {
    install_examples(4);
}
