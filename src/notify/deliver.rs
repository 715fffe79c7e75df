//! Background delivery: one bounded queue and one worker task per target. [`Notifier::send`]
//! only `try_send`s, so the caller never waits; a full queue drops the event and counts it.
//! The worker posts each event in order, retrying timeouts, connection errors, 408, 429 and 5xx
//! with exponential backoff and jitter until `max_attempts`, then gives it up.
//!
//! Logs name the target, never its URL: a Slack or Discord URL is a credential.

use std::collections::BTreeSet;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::config::{NotifySettings, UrlSource, check_url};
use super::{EventKind, StoreEvent, TargetType, payload};

/// The `result` label values of `storekeeper_notifications_total`: delivered (2xx); one failed
/// attempt that will be retried; given up after `max_attempts`; refused by the receiver (a 4xx
/// other than 408/429, not retried); dropped because the target's queue was full.
pub const RESULTS: [&str; 5] = ["sent", "retry", "failed", "rejected", "dropped"];

/// The metric's name, for `metrics::NAMES` and the README table.
pub const METRIC: &str = "storekeeper_notifications_total";

/// The longest wait between two attempts (the doubling stops here).
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A receiver's `Retry-After` is honoured up to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Response bodies are read (so the connection can be reused) up to this, then dropped.
const MAX_RESPONSE: usize = 64 * 1024;
/// `url_file` / `secret_file` larger than this are refused.
const MAX_SECRET_FILE: u64 = 16 * 1024;

/// Why the notifier could not start. Not retryable: the config or a file is wrong.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notify `{name}`: cannot read {}: {source}", path.display())]
    ReadFile {
        name: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The message never contains the file's content.
    #[error("notify `{name}`: {}: {why}", path.display())]
    BadFile {
        name: String,
        path: std::path::PathBuf,
        why: &'static str,
    },
    #[error("notify `{name}`: {why}")]
    BadUrl { name: String, why: &'static str },
    #[error("notifications: cannot set up TLS: {0}")]
    Tls(String),
}

/// `wait(base · 2^(attempt-1))` capped at 60 s, with "equal jitter": half of it fixed, half
/// random (`jitter` in 0..1), so many daemons retrying one receiver spread out but none retries
/// at once. `attempt` is the attempt that just failed, from 1.
pub fn backoff_delay(base: Duration, attempt: u32, jitter: f64) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    exp / 2 + exp.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

/// The counter `storekeeper_notifications_total{target,result}`, registered once per registry.
#[derive(Clone)]
pub struct NotifyMetrics {
    notifications: IntCounterVec,
}

impl NotifyMetrics {
    /// Registers the counter; fails if the registry has it already.
    pub fn register(registry: &Registry) -> Result<NotifyMetrics, prometheus::Error> {
        let notifications = IntCounterVec::new(
            Opts::new(METRIC, "Notifications by target and result."),
            &["target", "result"],
        )?;
        registry.register(Box::new(notifications.clone()))?;
        Ok(NotifyMetrics { notifications })
    }

    fn count(&self, target: &str, result: &'static str) {
        self.notifications.with_label_values(&[target, result]).inc();
    }

    /// The current count for one target and result (tests, the status page).
    pub fn get(&self, target: &str, result: &str) -> u64 {
        self.notifications.with_label_values(&[target, result]).get()
    }
}

struct Queue {
    name: Arc<str>,
    events: BTreeSet<EventKind>,
    tx: mpsc::Sender<StoreEvent>,
}

/// Hands events to the targets' queues. Cheap to clone; the workers stop once every clone is
/// dropped and their queues are empty.
#[derive(Clone)]
pub struct Notifier {
    queues: Arc<[Queue]>,
    metrics: Option<NotifyMetrics>,
}

/// The worker tasks, so their end (or death) is noticed rather than detached.
pub struct NotifierTasks {
    set: JoinSet<()>,
}

impl NotifierTasks {
    /// Waits for the workers to finish their queues (after every [`Notifier`] clone is dropped)
    /// for at most `grace`, then aborts the rest. Returns how many were aborted.
    pub async fn finish(mut self, grace: Duration) -> usize {
        let drained = tokio::time::timeout(grace, async {
            while let Some(r) = self.set.join_next().await {
                if let Err(e) = r {
                    warn!(error = %e, "a notification worker died");
                }
            }
        })
        .await;
        if drained.is_ok() {
            return 0;
        }
        let left = self.set.len();
        self.set.abort_all();
        left
    }

    /// Waits for the first worker to end; an end while the notifier is alive means it died.
    pub async fn join_next(&mut self) -> Option<Result<(), tokio::task::JoinError>> {
        self.set.join_next().await
    }
}

impl Notifier {
    /// A notifier with no targets: `send` does nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            queues: Arc::from(Vec::new()),
            metrics: None,
        }
    }

    /// Reads each target's `url_file` and `secret_file`, and spawns one worker per target on the
    /// current tokio runtime.
    pub fn start(
        settings: &[NotifySettings],
        metrics: &NotifyMetrics,
    ) -> Result<(Notifier, NotifierTasks), NotifyError> {
        let mut set = JoinSet::new();
        if settings.is_empty() {
            return Ok((Notifier::disabled(), NotifierTasks { set }));
        }
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .try_with_platform_verifier()
            .map_err(|e| NotifyError::Tls(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .build();
        let client: HttpClient = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        let mut queues = Vec::with_capacity(settings.len());
        for s in settings {
            let worker = Worker::new(s, Arc::new(client.clone()), metrics.clone())?;
            let (tx, rx) = mpsc::channel(s.queue_size.get());
            for result in RESULTS {
                metrics.notifications.with_label_values(&[&s.name, result]);
            }
            queues.push(Queue {
                name: Arc::clone(&worker.name),
                events: s.events.clone(),
                tx,
            });
            set.spawn(worker.run(rx));
        }
        let notifier = Notifier {
            queues: Arc::from(queues),
            metrics: Some(metrics.clone()),
        };
        Ok((notifier, NotifierTasks { set }))
    }

    /// Queues the event for every target whose filter has its kind. Never blocks or awaits:
    /// a full queue drops the event for that target (`result="dropped"`).
    pub fn send(&self, ev: &StoreEvent) {
        for q in self.queues.iter().filter(|q| q.events.contains(&ev.kind)) {
            if let Err(e) = q.tx.try_send(ev.clone()) {
                if let Some(m) = &self.metrics {
                    m.count(&q.name, "dropped");
                }
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => "queue full",
                    mpsc::error::TrySendError::Closed(_) => "worker stopped",
                };
                warn!(target = %q.name, store = %ev.store, event = ev.kind.as_str(), why, "Notification dropped");
            }
        }
    }
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;
type BoxFuture<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What one POST came to: the status and a `Retry-After`, or why no response arrived.
type PostResult = Result<(StatusCode, Option<Duration>), String>;

/// Sends one request; a trait so the retry schedule can be tested without a network.
trait Transport: Send + Sync + 'static {
    fn post(&self, req: Request<Full<Bytes>>) -> BoxFuture<'_, PostResult>;
}

impl Transport for HttpClient {
    fn post(&self, req: Request<Full<Bytes>>) -> BoxFuture<'_, PostResult> {
        Box::pin(async move {
            let resp = self.request(req).await.map_err(|e| error_chain(&e))?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(MAX_RETRY_AFTER.as_secs_f64())));
            // Read (a bounded amount of) the body so the connection goes back to the pool.
            let _ = Limited::new(resp.into_body(), MAX_RESPONSE).collect().await;
            Ok((status, retry_after))
        })
    }
}

/// The error and its sources, `: `-joined. hyper's errors name no URL.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

enum Outcome {
    Sent,
    Rejected(StatusCode),
    Retry { why: String, after: Option<Duration> },
}

struct Worker {
    name: Arc<str>,
    target: TargetType,
    uri: Uri,
    secret: Option<Vec<u8>>,
    timeout: Duration,
    max_attempts: u32,
    backoff: Duration,
    transport: Arc<dyn Transport>,
    metrics: NotifyMetrics,
}

/// A small file holding a secret, trailing whitespace (the newline `echo` adds) trimmed.
fn read_secret(name: &str, path: &Path) -> Result<Vec<u8>, NotifyError> {
    let read_err = |source| NotifyError::ReadFile {
        name: name.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let bad = |why| NotifyError::BadFile {
        name: name.to_string(),
        path: path.to_path_buf(),
        why,
    };
    if std::fs::metadata(path).map_err(read_err)?.len() > MAX_SECRET_FILE {
        return Err(bad("larger than 16 KiB"));
    }
    let mut bytes = std::fs::read(path).map_err(read_err)?;
    while bytes.last().is_some_and(u8::is_ascii_whitespace) {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(bad("is empty"));
    }
    Ok(bytes)
}

impl Worker {
    fn new(
        s: &NotifySettings,
        transport: Arc<dyn Transport>,
        metrics: NotifyMetrics,
    ) -> Result<Worker, NotifyError> {
        let uri = match &s.url {
            UrlSource::Inline(u) => check_url(u),
            UrlSource::File(p) => {
                let raw = read_secret(&s.name, p)?;
                let text = String::from_utf8(raw).map_err(|_| NotifyError::BadFile {
                    name: s.name.clone(),
                    path: p.clone(),
                    why: "is not UTF-8",
                })?;
                check_url(&text)
            }
        }
        .map_err(|why| NotifyError::BadUrl {
            name: s.name.clone(),
            why,
        })?;
        let secret = match &s.secret_file {
            Some(p) => Some(read_secret(&s.name, p)?),
            None => None,
        };
        Ok(Worker {
            name: Arc::from(s.name.as_str()),
            target: s.target,
            uri,
            secret,
            timeout: s.timeout,
            max_attempts: s.max_attempts.get(),
            backoff: s.backoff,
            transport,
            metrics,
        })
    }

    async fn run(self, mut rx: mpsc::Receiver<StoreEvent>) {
        while let Some(ev) = rx.recv().await {
            self.deliver(&ev).await;
        }
    }

    /// Every attempt for one event; counts exactly one final result (and each retry).
    async fn deliver(&self, ev: &StoreEvent) {
        let id = format!("{:032x}", rand::random::<u128>());
        let body = Bytes::from(payload::render(self.target, ev, &id));
        let (name, event) = (&*self.name, ev.kind.as_str());
        for attempt in 1..=self.max_attempts {
            match self.attempt(&body, ev.kind, &id).await {
                Outcome::Sent => {
                    self.metrics.count(name, "sent");
                    debug!(target = name, store = %ev.store, event, attempt, "Notification sent");
                    return;
                }
                Outcome::Rejected(status) => {
                    self.metrics.count(name, "rejected");
                    warn!(target = name, store = %ev.store, event, status = status.as_u16(), "Notification refused by the receiver; not retried");
                    return;
                }
                Outcome::Retry { why, after } if attempt < self.max_attempts => {
                    self.metrics.count(name, "retry");
                    let delay = backoff_delay(self.backoff, attempt, rand::random::<f64>())
                        .max(after.unwrap_or_default());
                    debug!(target = name, store = %ev.store, event, attempt, error = %why, delay_ms = delay.as_millis() as u64, "Notification failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Outcome::Retry { why, .. } => {
                    self.metrics.count(name, "failed");
                    warn!(target = name, store = %ev.store, event, attempts = attempt, error = %why, "Notification given up");
                }
            }
        }
    }

    async fn attempt(&self, body: &Bytes, kind: EventKind, id: &str) -> Outcome {
        let mut req = Request::post(self.uri.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("storekeeper/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-storekeeper-event", kind.as_str())
            .header("x-storekeeper-delivery", id);
        if let Some(secret) = &self.secret {
            req = req.header("x-storekeeper-signature-256", payload::sign(secret, body));
        }
        let req = match req.body(Full::new(body.clone())) {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    why: e.to_string(),
                    after: None,
                };
            }
        };
        match tokio::time::timeout(self.timeout, self.transport.post(req)).await {
            Err(_) => Outcome::Retry {
                why: format!("no response within {:?}", self.timeout),
                after: None,
            },
            Ok(Err(why)) => Outcome::Retry { why, after: None },
            Ok(Ok((status, _))) if status.is_success() => Outcome::Sent,
            Ok(Ok((status, after)))
                if status.is_server_error()
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::REQUEST_TIMEOUT =>
            {
                Outcome::Retry {
                    why: format!("HTTP {}", status.as_u16()),
                    after,
                }
            }
            Ok(Ok((status, _))) => Outcome::Rejected(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Answers each POST with the next status of a script and records when it came.
    struct Scripted {
        statuses: Mutex<Vec<u16>>,
        at: Mutex<Vec<tokio::time::Instant>>,
    }

    impl Transport for Scripted {
        fn post(&self, _req: Request<Full<Bytes>>) -> BoxFuture<'_, PostResult> {
            Box::pin(async move {
                if let Ok(mut at) = self.at.lock() {
                    at.push(tokio::time::Instant::now());
                }
                let code = self.statuses.lock().ok().and_then(|mut s| s.pop()).unwrap_or(500);
                Ok((StatusCode::from_u16(code).unwrap_or(StatusCode::OK), None))
            })
        }
    }

    fn worker(transport: Arc<Scripted>, attempts: u32) -> (Worker, NotifyMetrics) {
        let metrics = NotifyMetrics::register(&Registry::new()).expect("register");
        let w = Worker {
            name: Arc::from("t"),
            target: TargetType::Webhook,
            uri: Uri::from_static("http://127.0.0.1:9/"),
            secret: None,
            timeout: Duration::from_secs(5),
            max_attempts: attempts,
            backoff: Duration::from_secs(1),
            transport,
            metrics: metrics.clone(),
        };
        (w, metrics)
    }

    fn event() -> StoreEvent {
        StoreEvent::new(EventKind::Failed, "s", "store-s", "Failed", "r")
    }

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let base = Duration::from_secs(1);
        assert_eq!(backoff_delay(base, 1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff_delay(base, 1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff_delay(base, 3, 0.0), Duration::from_secs(2));
        assert_eq!(backoff_delay(base, 30, 1.0), MAX_BACKOFF);
        assert_eq!(backoff_delay(base, u32::MAX, 0.0), MAX_BACKOFF / 2);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_follow_the_backoff_schedule_then_give_up() {
        let t = Arc::new(Scripted {
            statuses: Mutex::new(vec![]),
            at: Mutex::new(vec![]),
        });
        let (w, m) = worker(Arc::clone(&t), 4);
        w.deliver(&event()).await;
        let at = t.at.lock().map(|a| a.clone()).unwrap_or_default();
        assert_eq!(at.len(), 4, "max_attempts posts");
        for (i, pair) in at.windows(2).enumerate() {
            let gap = pair[1] - pair[0];
            let full = Duration::from_secs(1 << i);
            assert!(
                gap >= full / 2 && gap <= full,
                "gap {i}: {gap:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
        assert_eq!(
            (m.get("t", "retry"), m.get("t", "failed"), m.get("t", "sent")),
            (3, 1, 0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_after_errors_stops_retrying_and_4xx_is_final() {
        // Popped from the end: 503, 502, then 200.
        let t = Arc::new(Scripted {
            statuses: Mutex::new(vec![200, 502, 503]),
            at: Mutex::new(vec![]),
        });
        let (w, m) = worker(Arc::clone(&t), 5);
        w.deliver(&event()).await;
        assert_eq!((m.get("t", "retry"), m.get("t", "sent")), (2, 1));
        *t.statuses.lock().expect("lock") = vec![404];
        w.deliver(&event()).await;
        assert_eq!(m.get("t", "rejected"), 1);
        assert_eq!(
            t.at.lock().map(|a| a.len()).unwrap_or(0),
            4,
            "a 404 is not retried"
        );
    }
}
