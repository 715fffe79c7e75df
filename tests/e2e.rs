//! End to end on a REAL cluster: a store from a temporary Git repository, Ready, a cash-on-delivery
//! order through the WooCommerce Store API; then day two: a WP-Cron event run by the chart's
//! CronJob, an upgrade (the setup Job runs again under a new name), a plan change small -> medium
//! -> small (the volumes keep their size on k3s local-path); backups: the store backed up on
//! demand, deleted (after its final backup), restored into a new store where the order is found,
//! under the new store's URL; optionally a Medusa store built from the example image; finally the
//! stores deleted with their namespaces and PVCs.
//!
//! Runs only when `STOREKEEPER_E2E_KUBECONFIG` points at a test cluster (`scripts/e2e-k3d` makes
//! one and runs this; see the README); otherwise it prints why it was skipped and passes.
//! Optional: `STOREKEEPER_E2E_INGRESS` (default `127.0.0.1:80`), `STOREKEEPER_E2E_HELM` (default:
//! helm 4 from `.tools`), `STOREKEEPER_E2E_MEDUSA_IMAGE` (`repo:tag` of an image built from
//! examples/medusa, already in the cluster) with `STOREKEEPER_E2E_MEDUSA_BUILD` (its image id).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::git::Remote;
use support::wait_for;

const STORE: &str = r#"engine = "woocommerce"
plan = "PLAN"
[shop]
title = "TITLE"
currency = "INR"
country = "IN"
state = "KA"
cash_on_delivery = true
sample_products = true
[[shop.taxes]]
name = "GST"
rate = 18
"#;

/// A tiny HTTP/1.1 client to the ingress with a Host header (no DNS needed).
fn http(
    ingress: &str,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(ingress).expect("connect to the ingress");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    (
        code,
        headers,
        if chunked { dechunk(rest) } else { rest.to_string() },
    )
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// kubectl and PHP in the store's WordPress pod, against the test cluster.
struct Cluster {
    kubeconfig: PathBuf,
}

impl Cluster {
    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new(testbed::tools::kubectl())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("kubectl")
    }

    /// `kubectl get -o json`, or Null.
    fn get(&self, args: &[&str]) -> Value {
        let mut all = vec!["get", "-o", "json"];
        all.extend_from_slice(args);
        serde_json::from_slice(&self.kubectl(&all).stdout).unwrap_or(Value::Null)
    }

    /// Runs PHP with WordPress loaded in the store's WordPress pod (the image has no wp-cli).
    fn php(&self, store: &str, code: &str) -> String {
        let ns = format!("store-{store}");
        let deploy = format!("deploy/{store}-wordpress");
        let php = format!("define('WP_USE_THEMES', false); require '/var/www/html/wp-load.php'; {code}");
        let out = self.kubectl(&[
            "-n",
            &ns,
            "exec",
            &deploy,
            "-c",
            "wordpress",
            "--",
            "php",
            "-r",
            &php,
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn setup_job(&self, store: &str) -> Option<String> {
        let ns = format!("store-{store}");
        let jobs = self.get(&["jobs", "-n", &ns, "-l", "app.kubernetes.io/component=setup"]);
        jobs["items"].as_array()?.first()?["metadata"]["name"]
            .as_str()
            .map(str::to_string)
    }

    fn pvc_sizes(&self, ns: &str) -> Vec<String> {
        let pvcs = self.get(&["pvc", "-n", ns]);
        pvcs["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| {
                        p["spec"]["resources"]["requests"]["storage"]
                            .as_str()
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn woocommerce_file(plan: &str, title: &str) -> String {
    STORE.replace("PLAN", plan).replace("TITLE", title)
}

/// Cart, checkout, and the order confirmed inside WooCommerce (HPOS-aware, through PHP); the
/// order's id.
fn place_a_cash_on_delivery_order(cluster: &Cluster, ingress: &str, name: &str) -> i64 {
    let host = format!("{name}.localtest.me");
    // The setup job finishes after the release is deployed: wait for the Store API to list products.
    let started = Instant::now();
    let product = loop {
        let (code, _, body) = http(ingress, &host, "GET", "/wp-json/wc/store/v1/products", &[], None);
        let products: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if code == 200
            && let Some(id) = products
                .as_array()
                .and_then(|a| a.iter().find(|p| p["is_purchasable"] == true))
                .map(|p| p["id"].clone())
        {
            break id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15 * 60),
            "no purchasable product: {code} {body}"
        );
        std::thread::sleep(Duration::from_secs(10));
    };
    let (_, headers, _) = http(ingress, &host, "GET", "/wp-json/wc/store/v1/cart", &[], None);
    let token = headers
        .iter()
        .find(|(k, _)| k == "cart-token")
        .map(|(_, v)| v.clone())
        .expect("Cart-Token header");
    let auth = [("Cart-Token", token.as_str())];
    let item = json!({"id": product, "quantity": 1});
    let (code, _, body) = http(
        ingress,
        &host,
        "POST",
        "/wp-json/wc/store/v1/cart/add-item",
        &auth,
        Some(&item),
    );
    assert!(code == 200 || code == 201, "add-item: {code} {body}");
    let address = json!({"first_name": "Asha", "last_name": "Rao", "address_1": "12 MG Road", "city": "Bengaluru",
        "state": "KA", "postcode": "560001", "country": "IN", "phone": "9999999999"});
    let mut billing = address.clone();
    billing["email"] = json!("asha@example.com");
    let checkout = json!({"billing_address": billing, "shipping_address": address, "payment_method": "cod"});
    let (code, _, body) = http(
        ingress,
        &host,
        "POST",
        "/wp-json/wc/store/v1/checkout",
        &auth,
        Some(&checkout),
    );
    let order: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(code, 200, "checkout: {body}");
    assert_eq!(order["status"], "processing", "{body}");
    assert_eq!(order["payment_result"]["payment_status"], "success", "{body}");
    let order_id = order["order_id"].as_i64().expect("order_id");
    let found = cluster.php(
        name,
        &format!("$o = wc_get_order({order_id}); echo $o ? $o->get_status() . ' ' . $o->get_payment_method() : 'missing';"),
    );
    assert_eq!(found, "processing cod");
    order_id
}

/// Backups on the real cluster: the store is backed up on demand, its file goes (it is deleted
/// only after its final backup), and a new store restored from its latest snapshot has the order,
/// under the new store's URL (`wp search-replace`), and a restore marker.
fn backup_delete_and_restore_keeps_the_order(
    cluster: &Cluster,
    remote: &Remote,
    config: &std::path::Path,
    name: &str,
    order_id: i64,
    ready: &dyn Fn(&str) -> bool,
) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_storekeeper"))
        .args(["backup", name, "--config"])
        .arg(config)
        .output()
        .expect("storekeeper backup");
    assert!(
        out.status.success(),
        "backup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(printed.contains("snapshot "), "{printed}");
    remote.commit(&[(&format!("stores.d/{name}.toml"), None)]);
    let ns = format!("store-{name}");
    assert!(
        wait_for(Duration::from_secs(30 * 60), || !cluster
            .kubectl(&["get", "namespace", &ns])
            .status
            .success()),
        "the store whose file went was never deleted (its final backup?)"
    );
    let restored = format!("{name}-r");
    // A top-level key, so before the template's first table.
    let file = format!(
        "restore_from = {{ store = \"{name}\", snapshot = \"latest\" }}\n{}",
        woocommerce_file("small", "E2E Shop Restored")
    );
    remote.commit(&[(&format!("stores.d/{restored}.toml"), Some(&file))]);
    assert!(
        wait_for(Duration::from_secs(30 * 60), || ready(&restored)),
        "the restored store never became Ready"
    );
    let found = cluster.php(
        &restored,
        &format!("$o = wc_get_order({order_id}); echo $o ? $o->get_status() . ' ' . $o->get_payment_method() : 'missing';"),
    );
    assert_eq!(found, "processing cod", "the order is in the restored store");
    // The stored option, not get_option() (wp-config's WP_SITEURL would mask it).
    let siteurl = "global $wpdb; echo $wpdb->get_var(\"SELECT option_value FROM {$wpdb->options} WHERE option_name = 'siteurl'\");";
    assert_eq!(
        cluster.php(&restored, siteurl),
        format!("http://{restored}.localtest.me"),
        "the URL was rewritten"
    );
    let marker = cluster.php(
        &restored,
        "global $wpdb; echo $wpdb->get_var(\"SELECT v FROM storekeeper_restore WHERE k = 'state'\");",
    );
    assert_eq!(marker, "done");
    restored
}

/// WP-Cron's loopback is off; an event due now runs when the chart's CronJob runs.
fn wp_cron_runs_due_events(cluster: &Cluster, name: &str) {
    assert_eq!(cluster.php(name, "echo DISABLE_WP_CRON ? 'off' : 'on';"), "off");
    let scheduled = cluster.php(
        name,
        "wp_schedule_single_event(time() - 60, 'storekeeper_e2e_ping'); echo wp_next_scheduled('storekeeper_e2e_ping') ? 'due' : 'none';",
    );
    assert_eq!(scheduled, "due");
    let ns = format!("store-{name}");
    let cronjob = format!("cronjob/{name}-cron");
    let run = cluster.kubectl(&["-n", &ns, "create", "job", "e2e-cron", "--from", &cronjob]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let done = cluster.kubectl(&[
        "-n",
        &ns,
        "wait",
        "--for=condition=complete",
        "job/e2e-cron",
        "--timeout=300s",
    ]);
    assert!(
        done.status.success(),
        "the cron Job did not complete: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let left = cluster.php(
        name,
        "echo wp_next_scheduled('storekeeper_e2e_ping') ? 'still due' : 'ran';",
    );
    assert_eq!(
        left, "ran",
        "wp cron event run --due-now did not run the due event"
    );
}

/// A changed store file is an upgrade: the setup Job runs again under a new name.
fn upgrade_runs_the_setup_again(cluster: &Cluster, remote: &Remote, name: &str) {
    let before = cluster.setup_job(name).expect("a setup Job");
    remote.commit(&[(
        &format!("stores.d/{name}.toml"),
        Some(&woocommerce_file("small", "E2E Shop Two")),
    )]);
    assert!(
        wait_for(Duration::from_secs(15 * 60), || cluster
            .php(name, "echo get_option('blogname');")
            == "E2E Shop Two"),
        "the upgrade never reached WordPress"
    );
    let after = cluster.setup_job(name).expect("a setup Job");
    assert_ne!(before, after, "the setup Job kept its name across an upgrade");
}

/// small -> medium -> small: the quota follows the plan, the volumes keep their size (k3s
/// local-path cannot expand, and a claim never shrinks), every upgrade succeeds.
fn plan_change_keeps_the_volumes(cluster: &Cluster, remote: &Remote, name: &str, ready: &dyn Fn() -> bool) {
    let ns = format!("store-{name}");
    let quota =
        || cluster.get(&["resourcequota", "-n", &ns])["items"][0]["spec"]["hard"]["requests.storage"].clone();
    let sizes = cluster.pvc_sizes(&ns);
    for (plan, want) in [("medium", "20Gi"), ("small", "10Gi")] {
        remote.commit(&[(
            &format!("stores.d/{name}.toml"),
            Some(&woocommerce_file(plan, "E2E Shop Two")),
        )]);
        assert!(
            wait_for(Duration::from_secs(15 * 60), || quota() == json!(want) && ready()),
            "plan {plan}: quota {} and not Ready",
            quota()
        );
        assert_eq!(
            cluster.pvc_sizes(&ns),
            sizes,
            "plan {plan}: the volumes changed size"
        );
    }
}

/// The Medusa store built from examples/medusa: migrated (marker) and serving /health.
fn medusa_store_serves(cluster: &Cluster, ingress: &str, name: &str) {
    let host = format!("{name}.localtest.me");
    assert!(
        wait_for(Duration::from_secs(15 * 60), || {
            let (code, _, body) = http(ingress, &host, "GET", "/health", &[], None);
            code == 200 && body.trim() == "OK"
        }),
        "the Medusa server never answered /health"
    );
    let ns = format!("store-{name}");
    let sts = format!("statefulset/{name}-postgres");
    let out = cluster.kubectl(&[
        "-n",
        &ns,
        "exec",
        &sts,
        "--",
        "psql",
        "-U",
        "medusa",
        "-d",
        "medusa",
        "-tAc",
        "SELECT value FROM storekeeper_setup WHERE key = 'setup_version'",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "2",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn medusa_file(image: &str, build: &str) -> String {
    let (repository, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    format!(
        "engine = \"medusa\"\n[shop]\ntitle = \"E2E Bikes\"\ncurrency = \"EUR\"\ncountry = \"DE\"\n\
         [values.image]\nrepository = \"{repository}\"\ntag = \"{tag}\"\nbuildId = \"{build}\"\npullPolicy = \"Never\"\n\
         [values.ingress.tls]\nenabled = false\n"
    )
}

#[test]
fn stores_take_orders_upgrade_and_change_plan_on_a_real_cluster() {
    let Some(kubeconfig) = std::env::var_os("STOREKEEPER_E2E_KUBECONFIG") else {
        eprintln!(
            "SKIPPED: real-cluster end-to-end suite — set STOREKEEPER_E2E_KUBECONFIG to a test cluster, or run scripts/e2e-k3d (README: \"End-to-end on k3d\")"
        );
        return;
    };
    let ingress = std::env::var("STOREKEEPER_E2E_INGRESS").unwrap_or_else(|_| "127.0.0.1:80".into());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let helm = std::env::var_os("STOREKEEPER_E2E_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| testbed::tools::helm(4));
    let cluster = Cluster {
        kubeconfig: PathBuf::from(&kubeconfig),
    };
    let name = format!("e2e-{}", std::process::id());
    let medusa = std::env::var("STOREKEEPER_E2E_MEDUSA_IMAGE").ok().map(|image| {
        let build = std::env::var("STOREKEEPER_E2E_MEDUSA_BUILD").unwrap_or_default();
        (format!("{name}-bikes"), medusa_file(&image, &build))
    });

    let remote = Remote::new();
    let shop_file = format!("stores.d/{name}.toml");
    let shop = woocommerce_file("small", "E2E Shop");
    // A suspended store that is never installed: a source with no store file at all deletes
    // nothing (the empty-snapshot guard), and the suite deletes every store it made.
    let keeper = (
        format!("stores.d/{name}-keep.toml"),
        Some("engine = \"woocommerce\"\nsuspend = true\n[shop]\ntitle = \"Keeper\"\n".to_string()),
    );
    let mut files = vec![(shop_file.clone(), Some(shop)), keeper.clone()];
    if let Some((bikes, body)) = &medusa {
        files.push((format!("stores.d/{bikes}.toml"), Some(body.clone())));
    }
    let refs: Vec<(&str, Option<&str>)> = files.iter().map(|(p, b)| (p.as_str(), b.as_deref())).collect();
    remote.commit(&refs);
    let state = tempfile::tempdir().expect("state");
    let config = state.path().join("storekeeper.toml");
    // Backups into a local repository on the node: the node's /tmp (world-writable, so the
    // backup pods' unprivileged users can create the store repositories), mounted in every
    // backup and restore pod by an operator values file; no repository egress rule needed.
    let backup_values = state.path().join("values-e2e-backup.yaml");
    std::fs::write(
        &backup_values,
        "backup:\n  repositoryVolume: {hostPath: {path: /tmp, type: Directory}}\n  repositoryMountPath: /repository\n  networkPolicy: {repositoryPorts: []}\n",
    )
    .expect("values");
    let _ = cluster.kubectl(&["create", "namespace", "storekeeper"]);
    let password = format!(
        "--from-literal=RESTIC_PASSWORD=e2e-{}-{}",
        std::process::id(),
        name.len()
    );
    let _ = cluster.kubectl(&[
        "-n",
        "storekeeper",
        "delete",
        "secret",
        "storekeeper-backup",
        "--ignore-not-found",
    ]);
    let made = cluster.kubectl(&[
        "-n",
        "storekeeper",
        "create",
        "secret",
        "generic",
        "storekeeper-backup",
        &password,
    ]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    std::fs::write(
        &config,
        format!(
            "[source.git]\nurl = '{}'\nbranch = 'main'\npoll_interval = '5s'\nstate_dir = '{}'\n\
             [cluster]\nkubeconfig = '{}'\nbase_domain = 'localtest.me'\n\
             [helm]\nbinary = '{}'\ncharts_dir = '{}'\nvalues_files = ['values-local.yaml', '{}']\ntimeout = '15m'\n\
             [reconcile]\ninterval = '5s'\ndeletion_grace = '0s'\nmax_deletions = 5\n[http]\nlisten = '127.0.0.1:0'\n\
             [backup]\nrepository = '/repository/storekeeper-{name}'\n",
            remote.url(),
            state.path().join("git").display(),
            PathBuf::from(&kubeconfig).display(),
            helm.display(),
            root.join("charts").display(),
            backup_values.display(),
        ),
    )
    .expect("config");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_storekeeper"))
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start storekeeper");
    let status = |n: &str| {
        Command::new(env!("CARGO_BIN_EXE_storekeeper"))
            .args(["status", "--from-cluster", "--output", "json", "--config"])
            .arg(&config)
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
            .and_then(|v| {
                v["stores"]
                    .as_array()?
                    .iter()
                    .find(|s| s["name"] == n)
                    .map(|s| s["phase"].clone())
            })
    };
    let ready = |n: &str| status(n) == Some(json!("Ready"));
    assert!(
        wait_for(Duration::from_secs(20 * 60), || ready(&name)),
        "store never became Ready"
    );

    let order = place_a_cash_on_delivery_order(&cluster, &ingress, &name);
    wp_cron_runs_due_events(&cluster, &name);
    upgrade_runs_the_setup_again(&cluster, &remote, &name);
    plan_change_keeps_the_volumes(&cluster, &remote, &name, &|| ready(&name));
    let restored =
        backup_delete_and_restore_keeps_the_order(&cluster, &remote, &config, &name, order, &ready);
    if let Some((bikes, _)) = &medusa {
        assert!(
            wait_for(Duration::from_secs(20 * 60), || ready(bikes)),
            "the Medusa store never became Ready"
        );
        medusa_store_serves(&cluster, &ingress, bikes);
    }

    // Delete the stores: their files go from Git (the keeper stays); the namespaces and their
    // PVCs go with them, each after its final backup.
    let restored_file = format!("stores.d/{restored}.toml");
    let mut gone: Vec<(&str, Option<&str>)> = files
        .iter()
        .filter(|(p, _)| *p != keeper.0 && *p != shop_file)
        .map(|(p, _)| (p.as_str(), None))
        .collect();
    gone.push((restored_file.as_str(), None));
    remote.commit(&gone);
    let mut stores = vec![restored.clone()];
    stores.extend(medusa.iter().map(|(b, _)| b.clone()));
    for store in &stores {
        let ns = format!("store-{store}");
        assert!(
            wait_for(Duration::from_secs(10 * 60), || !cluster
                .kubectl(&["get", "namespace", &ns])
                .status
                .success()),
            "namespace {ns} still exists"
        );
        let pvcs = cluster.get(&["pvc", "-A"]);
        assert!(
            !pvcs["items"]
                .as_array()
                .is_some_and(|a| a.iter().any(|p| p["metadata"]["namespace"] == ns.as_str())),
            "PVCs of {ns} remain"
        );
    }
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
}
