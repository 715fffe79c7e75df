//! Notifications against real HTTP receivers on 127.0.0.1: one that records what it gets (the
//! documented webhook JSON, a valid HMAC, Slack and Discord shapes), one that is down, one that
//! answers 500, and one that is slow (the caller's `send` must not wait for it).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry};
use serde_json::{Value, json};
use sha2::Sha256;
use storekeeper::config::Settings;
use storekeeper::notify::{EventKind, Notifier, NotifierTasks, NotifyMetrics, StoreEvent};
use tokio::net::TcpListener;

/// One request as a receiver saw it.
#[derive(Debug, Clone)]
struct Seen {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// A receiver that answers every request with `status` after `delay`, recording each one.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    async fn start(status: u16, delay: Duration) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let log = Arc::clone(&log);
                        async move {
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect();
                            let body = req.into_body().collect().await.map(|b| b.to_bytes().to_vec());
                            log.lock().expect("lock").push(Seen {
                                headers,
                                body: body.unwrap_or_default(),
                            });
                            tokio::time::sleep(delay).await;
                            let mut r = Response::new(Full::new(Bytes::from_static(b"ok")));
                            *r.status_mut() = StatusCode::from_u16(status).expect("status");
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}/hook/SECRETPATH", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Seen> {
        let start = Instant::now();
        while self.seen().len() < n && start.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.seen()
    }
}

/// An address where nothing listens: bound, then closed (connection refused).
async fn dead_address() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr")
}

fn start(toml: &str) -> (Notifier, NotifierTasks, NotifyMetrics, Registry) {
    let settings = Settings::parse(Path::new("storekeeper.toml"), toml)
        .unwrap_or_else(|e| panic!("config: {:?}", e.diagnostics));
    let registry = Registry::new();
    let metrics = NotifyMetrics::register(&registry).expect("register");
    let (n, tasks) = Notifier::start(&settings.notify, &metrics).expect("start");
    (n, tasks, metrics, registry)
}

fn event(kind: EventKind, phase: &'static str, reason: &str) -> StoreEvent {
    let mut ev = StoreEvent::new(kind, "chai-corner", "store-chai-corner", phase, reason);
    ev.engine = Some("woocommerce");
    ev.revision = Some("git:3f2a9c1".into());
    ev.url = Some("http://chai-corner.localtest.me".into());
    ev.at = "2026-11-22T14:00:00Z".parse().expect("timestamp");
    ev
}

fn metric_text(registry: &Registry) -> String {
    let mut buf = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("encode");
    String::from_utf8(buf).expect("utf-8")
}

#[tokio::test]
async fn a_webhook_gets_ready_and_failed_events_as_documented_and_signed() {
    let rx = Receiver::start(200, Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("hmac");
    std::fs::write(&secret, "s3cret-key\n").expect("write secret");
    let (n, tasks, metrics, _) = start(&format!(
        "[[notify]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{}\"\nsecret_file = \"{}\"\n\
         events = [\"ready\", \"failed\"]\n",
        rx.url(),
        secret.display()
    ));
    n.send(&event(EventKind::Installing, "Provisioning", "installing")); // filtered out
    n.send(&event(EventKind::Ready, "Ready", "deployed"));
    let mut failed = event(EventKind::Failed, "Failed", "upgrade failed: helm timed out");
    failed.code = Some("helm_timeout");
    n.send(&failed);
    let seen = rx.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    let ready = seen[0].json();
    let id = ready["id"].as_str().expect("id").to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(
        ready,
        json!({
            "version": 1, "id": id, "event": "ready", "severity": "info",
            "store": "chai-corner", "namespace": "store-chai-corner", "engine": "woocommerce",
            "phase": "Ready", "reason": "deployed", "code": null, "revision": "git:3f2a9c1",
            "url": "http://chai-corner.localtest.me", "at": "2026-11-22T14:00:00Z",
        })
    );
    let f = seen[1].json();
    assert_eq!(
        (f["event"].clone(), f["severity"].clone()),
        (json!("failed"), json!("warning"))
    );
    assert_eq!(
        (f["code"].clone(), f["phase"].clone()),
        (json!("helm_timeout"), json!("Failed"))
    );
    for s in &seen {
        assert_eq!(s.header("content-type"), Some("application/json"));
        assert_eq!(s.header("x-storekeeper-event"), s.json()["event"].as_str());
        assert_eq!(s.header("x-storekeeper-delivery"), s.json()["id"].as_str());
        // The receiver's check: HMAC-SHA256 of the raw body with the file's key (newline trimmed).
        let sig = s.header("x-storekeeper-signature-256").expect("signature header");
        let hex = sig.strip_prefix("sha256=").expect("sha256= prefix");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret-key").expect("key");
        mac.update(&s.body);
        mac.verify_slice(&hex::decode(hex).expect("hex"))
            .expect("the HMAC verifies");
    }
    assert_eq!(metrics.get("hook", "sent"), 2);
    drop(n);
    assert_eq!(
        tasks.finish(Duration::from_secs(5)).await,
        0,
        "workers end with the notifier"
    );
}

#[tokio::test]
async fn slack_and_discord_receivers_get_their_shapes() {
    let slack = Receiver::start(200, Duration::ZERO).await;
    let discord = Receiver::start(204, Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url_file = dir.path().join("slack-url");
    std::fs::write(&url_file, format!("{}\n", slack.url())).expect("write url");
    let (n, _tasks, metrics, _) = start(&format!(
        "[[notify]]\nname = \"slack\"\ntype = \"slack\"\nurl_file = \"{}\"\n\
         [[notify]]\nname = \"discord\"\ntype = \"discord\"\nurl = \"{}\"\n",
        url_file.display(),
        discord.url()
    ));
    let mut ev = event(EventKind::Failed, "Failed", "<!channel> @everyone failed");
    ev.code = Some("helm_timeout");
    n.send(&ev);
    let s = slack.wait_for(1, Duration::from_secs(10)).await;
    let d = discord.wait_for(1, Duration::from_secs(10)).await;
    let s = s.first().expect("slack got one").json();
    assert_eq!(
        s["text"],
        "*<http://chai-corner.localtest.me|chai-corner>*: failed — &lt;!channel&gt; @everyone failed"
    );
    assert_eq!(s["attachments"][0]["color"], "#d92d20");
    assert_eq!(
        s["attachments"][0]["fields"][0],
        json!({"title": "Phase", "value": "Failed", "short": true})
    );
    let d = d.first().expect("discord got one").json();
    assert_eq!(d["allowed_mentions"], json!({"parse": []}));
    assert_eq!(d["embeds"][0]["title"], "chai-corner: failed");
    assert_eq!(d["embeds"][0]["timestamp"], "2026-11-22T14:00:00Z");
    assert_eq!(d["embeds"][0]["color"], 0xd92d20);
    // The worker counts after the receiver answered: give it a moment.
    let counted = || (metrics.get("slack", "sent"), metrics.get("discord", "sent"));
    for _ in 0..100 {
        if counted() == (1, 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counted(), (1, 1));
}

#[tokio::test]
async fn a_receiver_that_is_down_is_retried_then_given_up_and_counted() {
    let addr = dead_address().await;
    let (n, _tasks, metrics, registry) = start(&format!(
        "[[notify]]\nname = \"down\"\ntype = \"webhook\"\nurl = \"http://{addr}/\"\n\
         max_attempts = 3\nbackoff = \"10ms\"\n"
    ));
    n.send(&event(EventKind::Failed, "Failed", "x"));
    let start = Instant::now();
    while metrics.get("down", "failed") == 0 && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        (metrics.get("down", "retry"), metrics.get("down", "failed")),
        (2, 1)
    );
    let text = metric_text(&registry);
    assert!(
        text.contains(r#"storekeeper_notifications_total{result="failed",target="down"} 1"#),
        "{text}"
    );
    assert!(!text.contains("SECRETPATH"));
}

#[tokio::test]
async fn a_500_is_retried_and_a_full_queue_drops() {
    let rx = Receiver::start(500, Duration::ZERO).await;
    let (n, _tasks, metrics, _) = start(&format!(
        "[[notify]]\nname = \"flaky\"\ntype = \"webhook\"\nurl = \"{}\"\nmax_attempts = 3\n\
         backoff = \"10ms\"\nqueue_size = 2\n",
        rx.url()
    ));
    // One in flight, two queued, the rest dropped at once.
    for _ in 0..10 {
        n.send(&event(EventKind::Failed, "Failed", "x"));
    }
    let dropped = metrics.get("flaky", "dropped");
    assert!((7..=8).contains(&dropped), "dropped {dropped}");
    let delivered = 10 - dropped;
    let seen = rx.wait_for(3 * delivered as usize, Duration::from_secs(10)).await;
    assert_eq!(
        seen.len(),
        3 * delivered as usize,
        "every accepted event tried 3 times"
    );
    let ids: std::collections::BTreeSet<_> =
        seen.iter().map(|s| s.json()["id"].clone().to_string()).collect();
    assert_eq!(
        ids.len(),
        delivered as usize,
        "retries resend the same delivery id"
    );
    let start = Instant::now();
    while metrics.get("flaky", "failed") < delivered && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(metrics.get("flaky", "failed"), delivered);
    assert_eq!(metrics.get("flaky", "retry"), 2 * delivered);
}

/// The caller never waits on a slow receiver: N sends to a receiver that takes 2 s per request
/// (with a 300 ms client timeout) return at once. The figure is printed, not asserted.
#[tokio::test]
async fn sending_to_a_slow_receiver_does_not_wait() {
    let rx = Receiver::start(200, Duration::from_secs(2)).await;
    let (n, _tasks, metrics, _) = start(&format!(
        "[[notify]]\nname = \"slow\"\ntype = \"webhook\"\nurl = \"{}\"\ntimeout = \"300ms\"\n\
         max_attempts = 2\nbackoff = \"10ms\"\nqueue_size = 10000\n",
        rx.url()
    ));
    const N: u32 = 1000;
    let ev = event(EventKind::Failed, "Failed", "x");
    let start = Instant::now();
    for _ in 0..N {
        n.send(&ev);
    }
    let took = start.elapsed();
    eprintln!(
        "notify: {N} sends to a slow receiver took {:?} ({:?} per send)",
        took,
        took / N
    );
    // The first delivery times out and is retried: the worker, not the caller, waited.
    let wait = Instant::now();
    while metrics.get("slow", "retry") == 0 && wait.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(metrics.get("slow", "retry") >= 1);
    assert_eq!(metrics.get("slow", "dropped"), 0);
}
