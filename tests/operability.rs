//! Operating the daemon: real HTTP scraping of /metrics around reconciles, readiness across
//! start, first sync and shutdown, the /stores API, the systemd notify protocol over a real
//! NOTIFY_SOCKET, and credentials never leaking into logs, metrics, plans or the status API.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use support::daemon::{Daemon, request, sample};
use support::{Env, Opts, signal, wait_for};

const SHOP: &str = "engine = \"woocommerce\"\n";

#[test]
fn metrics_move_with_reconciles_and_store_series_die_with_the_store() {
    let env = Env::new(4);
    env.write_store("alpha", SHOP);
    let d = Daemon::start(&env, &[]);
    let ready = r#"storekeeper_stores{phase="Ready"}"#;
    assert!(
        wait_for(Duration::from_secs(30), || sample(&d.metrics(), ready)
            == Some(1.0)),
        "{}",
        d.metrics()
    );
    let m = d.metrics();
    assert_eq!(
        sample(
            &m,
            r#"storekeeper_helm_operations_total{operation="upgrade",result="ok"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert!(
        m.contains(r#"storekeeper_store_info{engine="woocommerce",phase="Ready",revision="dir:"#),
        "{m}"
    );
    assert!(
        sample(&m, r#"storekeeper_reconcile_cycles_total{result="ok"}"#).is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert!(
        sample(&m, "storekeeper_source_last_success_timestamp_seconds").is_some_and(|t| t > 1.7e9),
        "{m}"
    );
    assert!(m.contains(&format!(
        "storekeeper_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(m.contains("process_resident_memory_bytes"));

    env.write_store("beta", "engine = \"woocommerce\"\nplan = \n");
    env.write_store("gamma", SHOP);
    assert!(wait_for(Duration::from_secs(30), || sample(&d.metrics(), ready)
        == Some(2.0)));
    let m = d.metrics();
    assert_eq!(
        sample(
            &m,
            r#"storekeeper_helm_operations_total{operation="upgrade",result="ok"}"#
        ),
        Some(2.0),
        "{m}"
    );
    assert!(
        sample(&m, r#"storekeeper_spec_errors{store="beta"}"#).is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"storekeeper_stores{phase="Invalid"}"#),
        Some(1.0),
        "{m}"
    );

    env.remove_store("gamma");
    env.remove_store("beta");
    assert!(
        wait_for(Duration::from_secs(30), || !d
            .metrics()
            .contains(r#"store="gamma""#)),
        "{}",
        d.metrics()
    );
    let m = d.metrics();
    assert_eq!(
        sample(&m, r#"storekeeper_deletions_total{reason="prune"}"#),
        Some(1.0),
        "{m}"
    );
    assert!(!m.contains("storekeeper_spec_errors{"), "{m}");
    assert_eq!(sample(&m, ready), Some(1.0), "{m}");
    d.stop();
}

#[test]
fn readiness_goes_false_true_false_across_start_sync_and_shutdown() {
    let env = Env::new(4);
    env.write_store("alpha", SHOP);
    // A slow API keeps the first cycle long enough to observe "not ready".
    env.api.set_delay(Duration::from_millis(700));
    let d = Daemon::start(&env, &[]);
    let (code, body) = d.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert_eq!(d.get("/healthz").0, 200);
    env.api.set_delay(Duration::ZERO);
    assert!(wait_for(Duration::from_secs(30), || d.get("/readyz").0 == 200));

    // Shutdown during an upgrade: not ready while the helm operation drains.
    assert!(d.wait_ready("alpha", Duration::from_secs(30)));
    env.clear_helm_log();
    env.api.set_delay(Duration::from_millis(300));
    env.write_store("alpha", "engine = \"woocommerce\"\n[shop]\ntitle = \"Changed\"\n");
    assert!(wait_for(Duration::from_secs(30), || env
        .helm_calls()
        .iter()
        .any(|c| c.starts_with("upgrade"))));
    signal(&d.child, "TERM");
    // The signal reaches the daemon a moment after kill(2) returns: poll, while helm drains.
    let mut last = (0, String::new());
    let shutting_down = wait_for(Duration::from_secs(2), || {
        last = d.get("/readyz");
        last.0 == 503 && last.1.trim() == "not ready: shutting down"
    });
    assert!(shutting_down, "{last:?}");
    env.api.set_delay(Duration::ZERO);
    let mut d = d;
    assert_eq!(d.child.wait().expect("wait").code(), Some(0));
    assert_eq!(env.release_status("alpha").as_deref(), Some("deployed"));
}

#[test]
fn status_api_and_http_rules() {
    let env = Env::new(4);
    env.write_store("alpha", SHOP);
    let d = Daemon::start(&env, &[]);
    assert!(d.wait_ready("alpha", Duration::from_secs(30)));
    let (code, body) = d.get("/stores");
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(doc["stores"][0]["name"], "alpha");
    assert_eq!(doc["stores"][0]["phase"], "Ready");
    assert_eq!(doc["stores"][0]["engine"], "woocommerce");
    assert!(
        doc["source"]["revision"]
            .as_str()
            .is_some_and(|r| r.starts_with("dir:"))
    );
    assert_eq!(doc["source"]["stale"], false);
    let (code, body) = d.get("/stores/alpha");
    assert_eq!(code, 200, "{body}");
    assert_eq!(d.get("/stores/nope").0, 404);
    assert_eq!(d.get("/stores/..%2Fetc").0, 404);
    assert_eq!(d.get("/nothing").0, 404);
    assert_eq!(request(&d.addr, "POST", "/metrics").0, 405);
    assert_eq!(request(&d.addr, "DELETE", "/stores/alpha").0, 405);
    assert_eq!(request(&d.addr, "HEAD", "/metrics").0, 200);

    // `storekeeper status` against the running daemon, and from the cluster.
    let out = env.run(&["status", "--url", &format!("http://{}", d.addr)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("alpha") && text.contains("Ready"),
        "{text}"
    );
    let out = env.run(&["status", "--from-cluster", "--output", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["stores"][0]["phase"], "Ready");

    // A client that never finishes its headers is cut off.
    let mut slow = TcpStream::connect(&d.addr).expect("connect");
    let _ = slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
    let _ = slow.set_read_timeout(Some(Duration::from_secs(15)));
    let mut buf = Vec::new();
    let started = std::time::Instant::now();
    let _ = slow.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(14),
        "slow headers must be timed out"
    );
    d.stop();
}

#[test]
fn systemd_notify_protocol_over_a_real_socket() {
    let env = Env::with(4, Opts::default());
    env.write_store("alpha", SHOP);
    let sock_path = env.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let d = Daemon::start(
        &env,
        &[
            ("NOTIFY_SOCKET", sock_path.display().to_string()),
            ("WATCHDOG_USEC", "400000".to_string()),
        ],
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.iter().any(|m: &String| m.starts_with("READY=1")) {
        let n = sock.recv(&mut buf).expect("READY=1 within 30 s");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let ready = seen
        .iter()
        .find(|m| m.starts_with("READY=1"))
        .cloned()
        .unwrap_or_default();
    // READY=1 comes after the first plan (the install may still run); STATUS follows the store.
    assert!(ready.contains("STATUS=1 stores: "), "{ready}");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    while !seen.iter().any(|m| m.contains("STATUS=1 stores: 1 ready")) {
        let n = sock
            .recv(&mut buf)
            .expect("a STATUS with the store ready within 30 s");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    // The watchdog pings every WATCHDOG_USEC/2 while the loop ticks.
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let n = sock.recv(&mut buf).expect("a watchdog ping");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1"));
    d.stop();
    let mut stopping = false;
    while let Ok(n) = sock.recv(&mut buf) {
        if String::from_utf8_lossy(&buf[..n]).starts_with("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "STOPPING=1 on shutdown");
}

#[test]
fn generated_credentials_never_leak() {
    let env = Env::new(4);
    env.write_store("alpha", SHOP);
    let d = Daemon::start(&env, &[("STOREKEEPER_LOG", "debug".to_string())]);
    assert!(wait_for(Duration::from_secs(30), || d.get("/readyz").0 == 200));
    env.write_store("alpha", "engine = \"woocommerce\"\n[shop]\ntitle = \"Two\"\n");
    assert!(wait_for(Duration::from_secs(30), || env
        .helm_calls()
        .iter()
        .filter(|c| c.starts_with("upgrade"))
        .count()
        >= 2));
    let secret = env
        .api
        .get("/api/v1/namespaces/store-alpha/secrets/storekeeper-credentials")
        .expect("secret");
    let values: Vec<String> = secret["data"]
        .as_object()
        .expect("data")
        .values()
        .filter_map(|v| v.as_str())
        .map(|b64| {
            let out = std::process::Command::new("base64")
                .arg("-d")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    c.stdin.take().map(|mut i| i.write_all(b64.as_bytes()));
                    c.wait_with_output()
                });
            out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(values.len(), 11, "every woocommerce credential key");
    assert!(values.iter().all(|v| v.len() == 40));
    let metrics = d.metrics();
    let stores = d.get("/stores").1;
    let plan = env.run(&["plan", "--output", "json"]);
    let plan_text =
        String::from_utf8_lossy(&plan.stdout).into_owned() + &String::from_utf8_lossy(&plan.stderr);
    let logs = d.stop();
    for v in &values {
        for (what, text) in [
            ("metrics", &metrics),
            ("/stores", &stores),
            ("plan", &plan_text),
            ("logs", &logs),
        ] {
            assert!(
                !text.contains(v.as_str()),
                "a generated credential appears in {what}"
            );
        }
    }
    assert!(
        logs.contains("Running helm upgrade --install"),
        "debug logs were captured"
    );
}

#[test]
fn a_taken_listen_address_stops_the_daemon_instead_of_running_blind() {
    let env = Env::new(4);
    env.write_store("alpha", SHOP);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = env
        .storekeeper(&["run", "--listen", &addr])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", support::show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HTTP server on"),
        "{}",
        support::show(&out)
    );
}
