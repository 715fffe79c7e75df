//! The HTTP side (hyper): `/metrics`, `/healthz`, `/readyz`, `/stores`, `/stores/{name}`, and
//! `POST /hooks/git`. Only GET/HEAD where nothing is written; headers must arrive within a few
//! seconds; request bodies are bounded.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::metrics::Metrics;
use crate::spec::StoreName;
use crate::status::StoreStatus;

/// Liveness and readiness, earned rather than assumed.
pub struct Health {
    source_ok: AtomicBool,
    cluster_ok: AtomicBool,
    /// Why the cluster is not reachable yet (shown by `/readyz` until the first success).
    cluster_error: Mutex<Option<String>>,
    shutting_down: AtomicBool,
    last_source_success: Mutex<Option<Instant>>,
    last_heartbeat: Mutex<Instant>,
    /// Readiness turns false when the source has not been read successfully for this long.
    pub stale_after: Duration,
    /// Liveness turns false when the loop has not ticked for this long.
    pub alive_after: Duration,
}

impl Health {
    pub fn new(stale_after: Duration, alive_after: Duration) -> Self {
        Health {
            source_ok: AtomicBool::new(false),
            cluster_ok: AtomicBool::new(false),
            cluster_error: Mutex::new(None),
            shutting_down: AtomicBool::new(false),
            last_source_success: Mutex::new(None),
            last_heartbeat: Mutex::new(Instant::now()),
            stale_after,
            alive_after,
        }
    }

    pub fn source_succeeded(&self) {
        self.source_ok.store(true, Ordering::SeqCst);
        if let Ok(mut t) = self.last_source_success.lock() {
            *t = Some(Instant::now());
        }
    }

    pub fn cluster_succeeded(&self) {
        self.cluster_ok.store(true, Ordering::SeqCst);
        if let Ok(mut e) = self.cluster_error.lock() {
            *e = None;
        }
    }

    /// The cluster could not be reached or listed; until the first success, `/readyz` says why.
    pub fn cluster_failed(&self, why: String) {
        if let Ok(mut e) = self.cluster_error.lock() {
            *e = Some(why);
        }
    }

    pub fn shutting_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn heartbeat(&self) {
        if let Ok(mut t) = self.last_heartbeat.lock() {
            *t = Instant::now();
        }
    }

    /// Seconds since the last successful source read, if any.
    pub fn source_age(&self) -> Option<Duration> {
        self.last_source_success
            .lock()
            .ok()
            .and_then(|t| t.map(|t| t.elapsed()))
    }

    pub fn is_stale(&self) -> bool {
        self.source_age().is_some_and(|a| a > self.stale_after)
    }

    /// Ready: first source read and first cluster list done, the source is fresh, no shutdown.
    pub fn ready(&self) -> Result<(), String> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err("shutting down".into());
        }
        if !self.source_ok.load(Ordering::SeqCst) {
            return Err("source not read yet".into());
        }
        if !self.cluster_ok.load(Ordering::SeqCst) {
            let why = self.cluster_error.lock().ok().and_then(|e| e.clone());
            return Err(match why {
                Some(why) => format!("cluster not reachable yet: {why}"),
                None => "cluster not listed yet".into(),
            });
        }
        if self.is_stale() {
            return Err("source is stale".into());
        }
        Ok(())
    }

    pub fn alive(&self) -> bool {
        self.last_heartbeat
            .lock()
            .map(|t| t.elapsed() <= self.alive_after)
            .unwrap_or(false)
    }
}

/// Verifies and acts on a webhook delivery; returns the bounded result label, and Err for 4xx.
pub type WebhookHandler =
    Arc<dyn Fn(&[(String, String)], &[u8]) -> Result<&'static str, WebhookReject> + Send + Sync>;

/// Why a delivery was refused: the status code and the metric label.
#[derive(Debug, Clone, Copy)]
pub struct WebhookReject {
    pub status: u16,
    pub code: &'static str,
}

/// What the server shows.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub statuses: Arc<Mutex<BTreeMap<StoreName, StoreStatus>>>,
    pub source_revision: Arc<Mutex<Option<String>>>,
    pub webhook: Option<WebhookHandler>,
}

/// Largest request body accepted (webhooks); everything else takes none.
pub const MAX_BODY: usize = 1024 * 1024;

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json_resp(status: StatusCode, v: &serde_json::Value) -> Resp {
    respond(
        status,
        "application/json",
        serde_json::to_vec_pretty(v).unwrap_or_default(),
    )
}

/// Binds and serves until `shutdown` turns true. Returns the bound address through `bound`.
pub async fn serve(
    listen: SocketAddr,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let _ = bound.send(listener.local_addr()?);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => {
                if *shutdown.borrow() { return Ok(()); }
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, state.clone()));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

async fn handle(req: Request<Incoming>, state: AppState) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let resp = match (method.clone(), path.as_str()) {
        (Method::POST, "/hooks/git") => webhook(req, &state).await,
        (Method::GET | Method::HEAD, p) => get(p, &state),
        (_, "/hooks/git") => method_not_allowed("POST"),
        _ => method_not_allowed("GET, HEAD"),
    };
    Ok(if method == Method::HEAD {
        strip_body(resp)
    } else {
        resp
    })
}

fn strip_body(resp: Resp) -> Resp {
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, Full::new(Bytes::new()))
}

fn method_not_allowed(allow: &str) -> Resp {
    let mut r = respond(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain",
        "method not allowed\n",
    );
    if let Ok(v) = allow.parse() {
        r.headers_mut().insert(hyper::header::ALLOW, v);
    }
    r
}

fn get(path: &str, state: &AppState) -> Resp {
    match path {
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state.metrics.render(),
        ),
        "/healthz" => {
            if state.health.alive() {
                respond(StatusCode::OK, "text/plain", "ok\n")
            } else {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "reconcile loop is not ticking\n",
                )
            }
        }
        "/readyz" => match state.health.ready() {
            Ok(()) => respond(StatusCode::OK, "text/plain", "ready\n"),
            Err(why) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        },
        "/stores" => json_resp(StatusCode::OK, &stores_doc(state)),
        p => match p.strip_prefix("/stores/").and_then(|n| StoreName::new(n).ok()) {
            Some(name) => {
                let statuses = state
                    .statuses
                    .lock()
                    .map(|s| s.get(&name).cloned())
                    .unwrap_or_default();
                match statuses {
                    Some(s) => json_resp(StatusCode::OK, &store_json(&name, &s)),
                    None => json_resp(StatusCode::NOT_FOUND, &json!({"error": "no such store"})),
                }
            }
            None => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        },
    }
}

fn store_json(name: &StoreName, s: &StoreStatus) -> serde_json::Value {
    json!({
        "name": name,
        "engine": s.engine,
        "phase": s.phase.as_str(),
        "reason": s.reason,
        "last_transition": s.last_transition.to_string(),
        "last_error": s.last_error,
        "error_code": s.error_code,
        "next_attempt": s.next_attempt.map(|t| t.to_string()),
        "revision": s.revision,
    })
}

/// The `/stores` document (also what `storekeeper status` prints).
pub fn stores_doc(state: &AppState) -> serde_json::Value {
    let statuses = state.statuses.lock().map(|s| s.clone()).unwrap_or_default();
    let stores: Vec<_> = statuses.iter().map(|(n, s)| store_json(n, s)).collect();
    let age = state.health.source_age().map(|a| a.as_secs_f64());
    let last_success = age.and_then(|a| {
        SystemTime::now()
            .checked_sub(Duration::from_secs_f64(a))
            .map(|t| {
                jiff::Timestamp::try_from(t)
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            })
    });
    json!({
        "source": {
            "revision": state.source_revision.lock().ok().and_then(|r| r.clone()),
            "last_success": last_success,
            "stale": state.health.is_stale(),
        },
        "ready": state.health.ready().is_ok(),
        "stores": stores,
    })
}

async fn webhook(req: Request<Incoming>, state: &AppState) -> Resp {
    let Some(handler) = state.webhook.clone() else {
        return respond(StatusCode::NOT_FOUND, "text/plain", "no webhook configured\n");
    };
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let count = |result: &str| state.metrics.webhook_requests.with_label_values(&[result]).inc();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            count("body_too_large");
            return respond(StatusCode::PAYLOAD_TOO_LARGE, "text/plain", "body too large\n");
        }
    };
    match handler(&headers, &body) {
        Ok(result) => {
            count(result);
            respond(StatusCode::ACCEPTED, "text/plain", "fetch scheduled\n")
        }
        Err(reject) => {
            count(reject.code);
            let status = StatusCode::from_u16(reject.status).unwrap_or(StatusCode::BAD_REQUEST);
            respond(status, "text/plain", format!("{}\n", reject.code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_is_earned_and_lost() {
        let h = Health::new(Duration::from_millis(50), Duration::from_secs(60));
        let err = |s: &str| Err(s.to_string());
        assert_eq!(h.ready(), err("source not read yet"));
        h.source_succeeded();
        assert_eq!(h.ready(), err("cluster not listed yet"));
        h.cluster_failed("connection refused".into());
        assert_eq!(h.ready(), err("cluster not reachable yet: connection refused"));
        h.cluster_succeeded();
        assert_eq!(h.ready(), Ok(()));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(h.ready(), err("source is stale"));
        h.source_succeeded();
        assert_eq!(h.ready(), Ok(()));
        h.shutting_down();
        assert_eq!(h.ready(), err("shutting down"));
    }

    #[test]
    fn liveness_follows_the_heartbeat() {
        let h = Health::new(Duration::from_secs(60), Duration::from_millis(30));
        assert!(h.alive());
        std::thread::sleep(Duration::from_millis(50));
        assert!(!h.alive());
        h.heartbeat();
        assert!(h.alive());
    }
}
