//! End to end on a REAL cluster: a store from a temporary Git repository, Ready, a cash-on-delivery
//! order through the WooCommerce Store API, then the store deleted with its namespace and PVCs.
//!
//! Runs only when `STOREKEEPER_E2E_KUBECONFIG` points at a test cluster (see the README: k3d with
//! `-p 80:80@loadbalancer`); otherwise it prints why it was skipped and passes. Optional:
//! `STOREKEEPER_E2E_INGRESS` (default `127.0.0.1:80`), `STOREKEEPER_E2E_HELM` (default: helm 4
//! from `.tools`).

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
[shop]
title = "E2E Shop"
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

#[test]
fn woocommerce_store_takes_a_cash_on_delivery_order_on_a_real_cluster() {
    let Some(kubeconfig) = std::env::var_os("STOREKEEPER_E2E_KUBECONFIG") else {
        eprintln!(
            "SKIPPED: real-cluster end-to-end suite — set STOREKEEPER_E2E_KUBECONFIG to a test cluster (README: \"End-to-end on k3d\")"
        );
        return;
    };
    let ingress = std::env::var("STOREKEEPER_E2E_INGRESS").unwrap_or_else(|_| "127.0.0.1:80".into());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let helm = std::env::var_os("STOREKEEPER_E2E_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| testbed::tools::helm(4));
    let name = format!("e2e-{}", std::process::id());
    let host = format!("{name}.localtest.me");

    let remote = Remote::new();
    remote.commit(&[(&format!("stores.d/{name}.toml"), Some(STORE))]);
    let state = tempfile::tempdir().expect("state");
    let config = state.path().join("storekeeper.toml");
    std::fs::write(
        &config,
        format!(
            "[source.git]\nurl = '{}'\nbranch = 'main'\npoll_interval = '5s'\nstate_dir = '{}'\n\
             [cluster]\nkubeconfig = '{}'\nbase_domain = 'localtest.me'\n\
             [helm]\nbinary = '{}'\ncharts_dir = '{}'\nvalues_files = ['values-local.yaml']\ntimeout = '15m'\n\
             [reconcile]\ninterval = '5s'\n[http]\nlisten = '127.0.0.1:0'\n",
            remote.url(),
            state.path().join("git").display(),
            PathBuf::from(&kubeconfig).display(),
            helm.display(),
            root.join("charts").display()
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
    assert!(
        wait_for(Duration::from_secs(20 * 60), || status(&name)
            == Some(json!("Ready"))),
        "store never became Ready"
    );

    // The setup job finishes after the release is deployed: wait for the Store API to list products.
    let started = Instant::now();
    let product = loop {
        let (code, _, body) = http(&ingress, &host, "GET", "/wp-json/wc/store/v1/products", &[], None);
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
    let (_, headers, _) = http(&ingress, &host, "GET", "/wp-json/wc/store/v1/cart", &[], None);
    let token = headers
        .iter()
        .find(|(k, _)| k == "cart-token")
        .map(|(_, v)| v.clone())
        .expect("Cart-Token header");
    let auth = [("Cart-Token", token.as_str())];
    let (code, _, body) = http(
        &ingress,
        &host,
        "POST",
        "/wp-json/wc/store/v1/cart/add-item",
        &auth,
        Some(&json!({"id": product, "quantity": 1})),
    );
    assert!(code == 200 || code == 201, "add-item: {code} {body}");
    let address = json!({"first_name": "Asha", "last_name": "Rao", "address_1": "12 MG Road", "city": "Bengaluru",
        "state": "KA", "postcode": "560001", "country": "IN", "phone": "9999999999"});
    let mut billing = address.clone();
    billing["email"] = json!("asha@example.com");
    let checkout = json!({"billing_address": billing, "shipping_address": address, "payment_method": "cod"});
    let (code, _, body) = http(
        &ingress,
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

    // Confirm the order inside WooCommerce, as `wp wc shop_order list` would (HPOS-aware):
    // the WordPress image has PHP but not wp-cli, so ask WooCommerce's own API in PHP.
    let order_id = order["order_id"].as_i64().expect("order_id");
    let php = format!(
        "require '/var/www/html/wp-load.php'; $o = wc_get_order({order_id}); echo $o ? $o->get_status() . ' ' . $o->get_payment_method() : 'missing';"
    );
    let ns_name = format!("store-{name}");
    let deploy = format!("deploy/{name}-wordpress");
    let out = Command::new(testbed::tools::kubectl())
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "-n",
            &ns_name,
            "exec",
            &deploy,
            "-c",
            "wordpress",
            "--",
            "php",
            "-r",
            &php,
        ])
        .output()
        .expect("kubectl exec");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "processing cod",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Delete the store: its file goes from Git; the namespace and its PVCs go with it.
    remote.commit(&[(&format!("stores.d/{name}.toml"), None)]);
    let kubectl = |args: &[&str]| {
        Command::new(testbed::tools::kubectl())
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .expect("kubectl")
    };
    let ns = format!("store-{name}");
    assert!(
        wait_for(Duration::from_secs(10 * 60), || !kubectl(&[
            "get",
            "namespace",
            &ns
        ])
        .status
        .success()),
        "namespace {ns} still exists"
    );
    let pvcs = kubectl(&["get", "pvc", "-A", "-o", "json"]);
    let pvcs: Value = serde_json::from_slice(&pvcs.stdout).unwrap_or(Value::Null);
    assert!(
        !pvcs["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p["metadata"]["namespace"] == ns.as_str())),
        "PVCs of {ns} remain"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
}
