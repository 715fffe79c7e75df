//! The status page served by `server::serve_with` with a fixture view (until the daemon fills it):
//! loaded in Debian's headless Chromium through playwright-core (tests/browser/page.mjs), and
//! its headers and token rule checked over plain HTTP.
//!
//! Needs `/usr/bin/chromium` and `tests/browser/node_modules` (`scripts/test-tools` installs
//! both). The screenshot lands in `target/tmp/status-page.png` (the path is printed).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use storekeeper::metrics::Metrics;
use storekeeper::page::{OperationRow, PageView};
use storekeeper::server::{self, AccessToken, AppState, Health, PageOptions};
use storekeeper::spec::StoreName;
use storekeeper::status::{Phase, StoreStatus};
use tokio::sync::{oneshot, watch};

const HOSTILE_TITLE: &str = "<script>alert(1)</script>";
const HOSTILE_REASON: &str = "\"><img src=x onerror=alert(1)>";

/// (name, engine, phase, reason, title, url)
type Fixture = (
    &'static str,
    &'static str,
    Phase,
    &'static str,
    &'static str,
    Option<&'static str>,
);

const STORES: [Fixture; 3] = [
    (
        "chai-corner",
        "woocommerce",
        Phase::Ready,
        "deployed",
        "Chai Corner",
        Some("http://chai-corner.localtest.me/"),
    ),
    (
        "city-bikes",
        "medusa",
        Phase::Provisioning,
        "installing",
        "City Bikes",
        Some("https://city-bikes.localtest.me/"),
    ),
    (
        "evil-shop",
        "woocommerce",
        Phase::Failed,
        HOSTILE_REASON,
        HOSTILE_TITLE,
        None,
    ),
];

fn state() -> AppState {
    let health = Arc::new(Health::new(Duration::from_secs(60), Duration::from_secs(60)));
    health.source_succeeded();
    health.cluster_succeeded();
    let mut statuses = BTreeMap::new();
    for (name, engine, phase, reason, _, _) in STORES {
        let mut s = StoreStatus::new(phase, reason);
        s.revision = Some("git:3f2a9c1".into());
        s.engine = Some(engine);
        if phase == Phase::Failed {
            s.last_error = Some("helm timed out waiting for the store's resources".into());
        }
        statuses.insert(StoreName::new(name).expect("name"), s);
    }
    AppState {
        metrics: Arc::new(Metrics::new()),
        health,
        statuses: Arc::new(Mutex::new(statuses)),
        source_revision: Arc::new(Mutex::new(Some("git:3f2a9c1".into()))),
        webhook: None,
        operations: Default::default(),
        planned_at: Default::default(),
        reconcile: None,
        backups: None,
    }
}

/// The page the daemon will produce: AppState's view plus what only the daemon knows.
fn fixture_view(state: AppState) -> server::PageSource {
    Arc::new(move || {
        let mut view: PageView = server::view_of(&state);
        let now = view.generated_at;
        for row in &mut view.stores {
            let Some(f) = STORES.iter().find(|f| f.0 == row.name) else {
                continue;
            };
            row.title = Some(f.4.to_string());
            row.url = f.5.map(str::to_string);
            row.owner = Some("ops@example.com".into());
            row.created = now.checked_sub(jiff::SignedDuration::from_hours(75)).ok();
            if row.phase == Phase::Failed {
                row.next_attempt = now.checked_add(jiff::SignedDuration::from_secs(40)).ok();
            }
        }
        view.operations = vec![OperationRow {
            at: now,
            store: "chai-corner".into(),
            action: "upgrade".into(),
            result: "ok".into(),
            duration: Some(Duration::from_millis(4200)),
            message: "deployed".into(),
        }];
        view
    })
}

/// Serves on 127.0.0.1:0 until the returned sender is dropped.
async fn serve(page: PageOptions) -> (SocketAddr, watch::Sender<bool>) {
    let (stop, stop_rx) = watch::channel(false);
    let (bound, addr) = oneshot::channel();
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    tokio::spawn(server::serve_with(listen, state(), page, stop_rx, bound));
    (addr.await.expect("the server binds"), stop)
}

#[tokio::test]
async fn the_page_in_a_real_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tests/browser/page.mjs");
    assert!(
        Path::new("/usr/bin/chromium").exists()
            && root.join("tests/browser/node_modules/playwright-core").exists(),
        "Chromium or playwright-core is missing: run scripts/test-tools"
    );
    let (addr, _stop) = serve(PageOptions {
        view: Some(fixture_view(state())),
        token: None,
    })
    .await;
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let expected = json!({ "stores": STORES.iter().map(|(name, _, phase, reason, title, url)| json!({
        "name": name, "phase": phase.as_str(), "url": url, "title": title, "reason": reason,
    })).collect::<Vec<_>>() });
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .arg(format!("http://{addr}/"))
        .arg(&shot)
        .arg(expected.to_string())
        .current_dir(root.join("tests/browser"))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("the browser test finishes within 60 s")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser checks failed:\n{stdout}");
    assert!(stdout.contains("ok - no request to any other origin"), "{stdout}");
    assert!(shot.exists(), "screenshot at {}", shot.display());
    eprintln!("screenshot artifact: {}", shot.display());
}

type TestClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn get(client: &TestClient, url: &str, auth: Option<&str>) -> (u16, hyper::HeaderMap, String) {
    let mut req = hyper::Request::get(url);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::new())).expect("request"))
        .await
        .expect("response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn a_token_protects_the_page_and_stores_but_not_probes_or_metrics() {
    use base64::Engine;
    let token = "0123456789abcdef-token";
    let (addr, _stop) = serve(PageOptions {
        view: None,
        token: Some(Arc::new(AccessToken::new(token.as_bytes()))),
    })
    .await;
    let client: TestClient = Client::builder(TokioExecutor::new()).build_http();
    let url = |p: &str| format!("http://{addr}{p}");
    for path in ["/", "/stores", "/stores/chai-corner"] {
        let (status, headers, _) = get(&client, &url(path), None).await;
        assert_eq!(status, 401, "{path} without a token");
        let challenges: Vec<_> = headers.get_all("www-authenticate").iter().collect();
        assert_eq!(challenges.len(), 2, "{path}: {challenges:?}");
        let (status, _, _) = get(&client, &url(path), Some("Bearer wrong-token-wrong-token")).await;
        assert_eq!(status, 401, "{path} with a wrong token");
        let (status, _, _) = get(&client, &url(path), Some(&format!("Bearer {token}"))).await;
        assert_eq!(status, 200, "{path} with the token");
    }
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("anyone:{token}"));
    let (status, headers, body) = get(&client, &url("/"), Some(&format!("Basic {basic}"))).await;
    assert_eq!(status, 200, "a browser's Basic login with the token as password");
    assert_eq!(headers["content-security-policy"], storekeeper::page::CSP);
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        body.contains("evil-shop") && body.contains("&lt;img src=x"),
        "the page from AppState alone"
    );
    assert!(!body.contains(HOSTILE_REASON));
    for path in ["/metrics", "/healthz", "/readyz", "/page.css"] {
        let (status, headers, _) = get(&client, &url(path), None).await;
        assert_eq!(status, 200, "{path} stays open");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
}

#[test]
fn the_token_file_is_read_and_weak_tokens_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    std::fs::write(&path, "a-long-enough-token-value\n").expect("write");
    let t = AccessToken::load(&path).expect("a good token");
    assert!(t.allows(Some("Bearer a-long-enough-token-value")));
    assert!(!t.allows(Some("Bearer a-long-enough-token-valu")) && !t.allows(None));
    std::fs::write(&path, "short\n").expect("write");
    let e = AccessToken::load(&path).err().expect("a weak token");
    assert!(e.to_string().contains("16–4096"), "{e}");
    assert!(
        !e.to_string().contains("short"),
        "the message never shows the token"
    );
}
