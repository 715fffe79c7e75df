//! The operator's view through a real daemon on the test API server with the real helm 3 and
//! helm 4: Kubernetes Events for every action and outcome, notifications that never hold back
//! reconciling, the status page in headless Chromium, and the everyday verbs through the real
//! binary (`suspend`, `resume`, `reconcile`, `logs`, `status` with its columns, `--watch` and the
//! access token).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::daemon::Daemon;
use support::{Env, Opts, show, wait_for};

const SHOP: &str = "engine = \"woocommerce\"\n";
const HANGS: &str = "engine = \"woocommerce\"\n[values]\nneverReady = true\n";

/// Every Event the test API server holds, in any namespace.
fn events(env: &Env) -> Vec<Value> {
    // `default` holds the events of stores whose namespace is gone.
    let mut names = vec!["default".to_string()];
    for ns in env.api.list("/api/v1/namespaces") {
        names.push(ns["metadata"]["name"].as_str().unwrap_or_default().to_string());
    }
    names
        .iter()
        .flat_map(|n| {
            env.api
                .list(&format!("/apis/events.k8s.io/v1/namespaces/{n}/events"))
        })
        .collect()
}

fn has_event(env: &Env, namespace: &str, reason: &str) -> bool {
    events(env).iter().any(|e| {
        e["reason"] == reason
            && (e["regarding"]["name"] == namespace
                || e["note"].as_str().is_some_and(|n| n.contains(namespace)))
    })
}

/// Events for create, upgrade, failure and delete appear on the test API server.
fn every_action_and_outcome_is_a_kubernetes_event(major: u8) {
    let env = Env::with(
        major,
        Opts {
            helm_timeout: "3s",
            ..Opts::default()
        },
    );
    env.write_store("keep", SHOP);
    env.write_store("shop", SHOP);
    let d = Daemon::start(&env, &[]);
    assert!(d.wait_ready("shop", Duration::from_secs(30)), "{}", d.logs());
    assert!(
        wait_for(Duration::from_secs(10), || has_event(
            &env,
            "store-shop",
            "Created"
        )),
        "{:#?}",
        events(&env)
    );
    assert!(has_event(&env, "store-shop", "Installing"));
    env.write_store("shop", "engine = \"woocommerce\"\n[shop]\ntitle = \"New\"\n");
    assert!(
        wait_for(Duration::from_secs(20), || has_event(
            &env,
            "store-shop",
            "Upgraded"
        )),
        "{:#?}",
        events(&env)
    );
    env.write_store("broken", HANGS);
    assert!(
        wait_for(Duration::from_secs(30), || d.phase("broken") == "Failed"),
        "{}",
        d.logs()
    );
    let failed = |e: &Value| e["reason"] == "Failed" && e["type"] == "Warning";
    assert!(
        wait_for(Duration::from_secs(10), || events(&env).iter().any(failed)),
        "{:#?}",
        events(&env)
    );
    env.remove_store("shop");
    assert!(
        wait_for(Duration::from_secs(30), || env.namespace("store-shop").is_none()),
        "{}",
        d.logs()
    );
    assert!(
        wait_for(Duration::from_secs(10), || events(&env)
            .iter()
            .any(|e| e["reason"] == "Deleted")),
        "{:#?}",
        events(&env)
    );
    d.stop();
}

/// A webhook receiver on a real socket: records request bodies and answers after `delay`.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start(delay: Duration) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&bodies);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || serve_one(stream, &sink, delay));
            }
        });
        Receiver { url, bodies }
    }

    fn events(&self) -> Vec<Value> {
        self.bodies.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

fn serve_one(stream: std::net::TcpStream, sink: &Mutex<Vec<Value>>, delay: Duration) {
    let mut reader = BufReader::new(stream);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_ok()
        && let Ok(v) = serde_json::from_slice(&body)
        && let Ok(mut s) = sink.lock()
    {
        s.push(v);
    }
    std::thread::sleep(delay);
    let mut stream = reader.into_inner();
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

/// A receiver that takes 5 s per notification does not slow stores down: each becomes Ready
/// while the receiver still works through its queue, and the receiver does get the events.
fn a_slow_notification_receiver_never_holds_back_reconciling(major: u8) {
    let slow = Receiver::start(Duration::from_secs(5));
    let extra: &'static str = Box::leak(
        format!(
            "[[notify]]\nname = \"slow\"\ntype = \"webhook\"\nurl = \"{}\"\ntimeout = \"30s\"\n",
            slow.url
        )
        .into_boxed_str(),
    );
    let env = Env::with(
        major,
        Opts {
            extra,
            ..Opts::default()
        },
    );
    let started = Instant::now();
    for s in ["n1", "n2", "n3"] {
        env.write_store(s, SHOP);
    }
    let d = Daemon::start(&env, &[]);
    for s in ["n1", "n2", "n3"] {
        assert!(d.wait_ready(s, Duration::from_secs(30)), "{}", d.logs());
    }
    let ready_after = started.elapsed();
    let delivered = slow.events().len();
    eprintln!(
        "3 stores Ready after {ready_after:?}; the 5 s-per-event receiver had {delivered} event(s) by then"
    );
    assert!(
        delivered < 6,
        "reconciling waited for the receiver ({delivered} events delivered)"
    );
    assert!(
        wait_for(Duration::from_secs(60), || slow
            .events()
            .iter()
            .any(|e| e["event"] == "created" && e["store"] == "n3")),
        "{:?}",
        slow.events()
    );
    let ev = slow
        .events()
        .into_iter()
        .find(|e| e["event"] == "created")
        .unwrap_or_default();
    assert_eq!(ev["phase"], "Ready", "{ev}");
    assert!(
        ev["url"].as_str().is_some_and(|u| u.starts_with("http://")),
        "{ev}"
    );
    d.stop();
}

/// The status page of a daemon on the test API server, in Debian's headless Chromium: rows for
/// stores in three phases with working links, a hostile title rendered as text, a screenshot,
/// and no request to any other origin.
fn the_status_page_of_a_live_daemon_in_headless_chromium(major: u8) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        Path::new("/usr/bin/chromium").exists()
            && root.join("tests/browser/node_modules/playwright-core").exists(),
        "Chromium or playwright-core is missing: run scripts/test-tools"
    );
    let env = Env::with(
        major,
        Opts {
            helm_timeout: "2s",
            ..Opts::default()
        },
    );
    env.write_store(
        "chai-corner",
        "engine = \"woocommerce\"\n[shop]\ntitle = \"Chai Corner\"\n",
    );
    env.write_store("evil-shop", "engine = \"woocommerce\"\n[shop]\ntitle = \"<script>alert(1)</script>\"\n[values]\nneverReady = true\n");
    // A namespace someone else owns: the store is Blocked (conflict), never adopted.
    env.api.insert(
        "/api/v1/namespaces",
        json!({"metadata": {"name": "store-odd", "labels": {"team": "x"}}}),
    );
    env.write_store("odd", SHOP);
    let d = Daemon::start(&env, &[]);
    assert!(
        d.wait_ready("chai-corner", Duration::from_secs(30)),
        "{}",
        d.logs()
    );
    assert!(
        wait_for(Duration::from_secs(30), || d.phase("evil-shop") == "Failed"),
        "{}",
        d.logs()
    );
    assert!(wait_for(Duration::from_secs(10), || d.phase("odd") == "Blocked"));
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("status-page-daemon-helm{major}.png"));
    let expected = json!({"stores": [
        {"name": "chai-corner", "phase": "Ready", "url": "http://chai-corner.test.local/", "title": "Chai Corner"},
        {"name": "evil-shop", "phase": "Failed", "url": "http://evil-shop.test.local/", "title": "<script>alert(1)</script>"},
        {"name": "odd", "phase": "Blocked", "url": "http://odd.test.local/"},
    ]});
    let out = std::process::Command::new("node")
        .arg(root.join("tests/browser/page.mjs"))
        .arg(format!("http://{}/", d.addr))
        .arg(&shot)
        .arg(expected.to_string())
        .current_dir(root.join("tests/browser"))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser checks failed:\n{stdout}");
    assert!(stdout.contains("ok - no request to any other origin"), "{stdout}");
    eprintln!("screenshot artifact: {}", shot.display());
    d.stop();
}

/// `suspend` overrides the file (a change is not applied), `resume` lifts it (the change is);
/// the file's own `suspend = true` still wins over `resume`.
fn suspend_and_resume_through_the_binary(major: u8) {
    let env = Env::new(major);
    env.write_store("keep", SHOP);
    env.write_store("shop", SHOP);
    let d = Daemon::start(&env, &[]);
    assert!(d.wait_ready("shop", Duration::from_secs(30)));
    let out = env.run(&["suspend", "shop", "--by", "oncall"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    env.write_store("shop", "engine = \"woocommerce\"\n[shop]\ntitle = \"Changed\"\n");
    assert!(
        wait_for(Duration::from_secs(10), || d.phase("shop") == "Suspended"),
        "{}",
        d.store("shop")
    );
    let reason = d.store("shop")["reason"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("oncall") && reason.contains("overrides the store file"),
        "{reason}"
    );
    env.clear_helm_log();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !env.helm_calls()
            .iter()
            .any(|c| c.starts_with("upgrade --install shop ")),
        "{:?}",
        env.helm_calls()
    );

    let out = env.run(&["resume", "shop"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        wait_for(Duration::from_secs(20), || env
            .helm_calls()
            .iter()
            .any(|c| c.starts_with("upgrade --install shop "))),
        "resumed: the change is applied"
    );
    assert!(d.wait_ready("shop", Duration::from_secs(20)));
    env.write_store("shop", "engine = \"woocommerce\"\nsuspend = true\n");
    let out = env.run(&["resume", "shop"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("stays suspended"),
        "{}",
        show(&out)
    );
    assert!(wait_for(Duration::from_secs(10), || d.phase("shop") == "Suspended"));
    d.stop();
}

/// `reconcile` retries a failed store now (not at its backoff), waits, and prints the outcome;
/// `logs` shows the store's operations; `status` shows URL, owner and age, and `--watch` keeps
/// printing.
fn reconcile_logs_and_status_through_the_binary(major: u8) {
    let env = Env::new(major);
    env.write_store("keep", SHOP);
    let d = Daemon::start(&env, &[]);
    assert!(d.wait_ready("keep", Duration::from_secs(30)));
    env.api.fail_next(1, "POST", "/api/v1/namespaces$");
    env.write_store("flaky", "engine = \"woocommerce\"\nowner = \"acme\"\n");
    assert!(
        wait_for(Duration::from_secs(10), || d.phase("flaky") == "Failed"),
        "{}",
        d.store("flaky")
    );
    let url = format!("http://{}", d.addr);
    let asked = Instant::now();
    let out = env.run(&["reconcile", "flaky", "--url", &url]);
    let took = asked.elapsed();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(text.contains("flaky") && text.contains("Ready"), "{text}");
    eprintln!("reconcile took {took:?} (the backoff would have waited about 10 s)");

    let out = env.run(&["logs", "flaky", "--url", &url]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("namespace_create") && text.contains(" ok "),
        "{}",
        show(&out)
    );

    let out = env.run(&["status", "--url", &url]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.starts_with("STORE") && text.contains("URL") && text.contains("AGE") && text.contains("OWNER"),
        "{text}"
    );
    assert!(
        text.contains("http://flaky.test.local/") && text.contains("acme"),
        "{text}"
    );
    let mut watch = env
        .storekeeper(&["status", "--url", &url, "--watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(4500));
    support::signal(&watch, "INT");
    let mut screens = String::new();
    let _ = watch.stdout.take().map(|mut o| o.read_to_string(&mut screens));
    let _ = watch.wait();
    assert!(screens.matches("STORE ").count() >= 2, "refreshed: {screens}");
    d.stop();
}

/// With `[http] token_file`, the operator routes need the token: the CLI sends it from the
/// same file; without it the daemon answers 401.
fn the_cli_sends_the_access_token(major: u8) {
    let dir = tempfile::tempdir().expect("tmp");
    let token = dir.path().join("token");
    std::fs::write(&token, "an-operator-token-0123456789\n").expect("write");
    let extra: &'static str = Box::leak(format!("token_file = '{}'\n", token.display()).into_boxed_str());
    let env = Env::with(
        major,
        Opts {
            extra,
            ..Opts::default()
        },
    );
    env.write_store("shop", SHOP);
    let d = Daemon::start(&env, &[]);
    assert_eq!(d.get("/stores").0, 401);
    let url = format!("http://{}", d.addr);
    assert!(wait_for(Duration::from_secs(30), || {
        String::from_utf8_lossy(&env.run(&["status", "--url", &url]).stdout).contains("Ready")
    }));
    d.stop();
}

support::both_helms!(
    every_action_and_outcome_is_a_kubernetes_event,
    a_slow_notification_receiver_never_holds_back_reconciling,
    the_status_page_of_a_live_daemon_in_headless_chromium,
    suspend_and_resume_through_the_binary,
    reconcile_logs_and_status_through_the_binary,
    the_cli_sends_the_access_token,
);
