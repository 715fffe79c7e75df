//! The HTTP side (hyper): the status page `/` (and its `/page.css`), `/metrics`, `/healthz`,
//! `/readyz`, `/stores`, `/stores/{name}`, and `POST /hooks/git`. Only GET/HEAD where nothing is
//! written; headers must arrive within a few seconds; request bodies are bounded.
//!
//! Access: with `[http] token_file` set, `/`, `/stores` and `/stores/{name}` (and any operator
//! route added later, such as `POST /reconcile`) need `Authorization: Bearer <token>`, or HTTP
//! Basic with the token as the password (so a browser can log in); whatever address the server
//! listens on. Without it they are open, and listening beyond loopback logs a warning.
//! `/metrics`, `/healthz`, `/readyz` and `/page.css` stay open (probes and Prometheus; nothing
//! store-specific), and `/hooks/git` has its own signature check.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::metrics::Metrics;
use crate::page::{self, OperationRow, PageView, SourceView, StoreRow};
use crate::record::{Operation, OperationLog};
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
    /// The last finished operations (the page, `/stores/{name}/operations`).
    pub operations: OperationLog,
    /// When the last plan was made (so `storekeeper reconcile` knows its request was planned).
    pub planned_at: Arc<Mutex<Option<jiff::Timestamp>>>,
    /// `POST /reconcile`: plan and run now, the named stores first.
    pub reconcile: Option<ReconcileHandler>,
    /// The last backup of each store (`crate::backup::monitor`), read only.
    pub backups: Option<Arc<crate::backup::monitor::BackupMonitor>>,
}

impl AppState {
    fn last_backup(&self, store: &StoreName) -> Option<crate::backup::monitor::LastBackup> {
        self.backups.as_ref()?.last(store)
    }
}

/// Asks the daemon to fetch, plan (with release state) and run now; the stores named lose
/// their backoff. Returns at once; the caller watches `/stores`.
pub type ReconcileHandler = Arc<dyn Fn(Vec<StoreName>) + Send + Sync>;

/// Produces the status page's data on each request to `/`.
pub type PageSource = Arc<dyn Fn() -> PageView + Send + Sync>;

/// The status page and access control, alongside [`AppState`].
#[derive(Clone, Default)]
pub struct PageOptions {
    /// `None`: the page is built from [`AppState`] alone (phases, reasons, errors, revisions).
    pub view: Option<PageSource>,
    /// `None`: the operator routes are open.
    pub token: Option<Arc<AccessToken>>,
}

/// Why the token file cannot be used. Not retryable: fix the file.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the HTTP token file {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP token in {} must be 16–4096 bytes of printable ASCII", path.display())]
    Weak { path: std::path::PathBuf },
}

/// The bearer token of the operator routes. Compared in constant time, through SHA-256 so the
/// comparison does not depend on the length either.
pub struct AccessToken {
    digest: [u8; 32],
}

impl AccessToken {
    /// Reads the token file; trailing whitespace (the newline `echo` adds) is not part of it.
    pub fn load(path: &std::path::Path) -> Result<AccessToken, TokenError> {
        let raw = std::fs::read(path).map_err(|source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let token = raw.trim_ascii_end();
        if !(16..=4096).contains(&token.len()) || !token.iter().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Weak {
                path: path.to_path_buf(),
            });
        }
        Ok(AccessToken::new(token))
    }

    pub fn new(token: &[u8]) -> AccessToken {
        use sha2::Digest;
        AccessToken {
            digest: sha2::Sha256::digest(token).into(),
        }
    }

    fn matches(&self, candidate: &[u8]) -> bool {
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let d: [u8; 32] = sha2::Sha256::digest(candidate).into();
        d.ct_eq(&self.digest).into()
    }

    /// Whether an `Authorization` header value carries the token (Bearer, or Basic with any
    /// user name and the token as password).
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        use base64::Engine;
        let Some(value) = authorization.map(str::trim) else {
            return false;
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return self.matches(rest.as_bytes());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) else {
                return false;
            };
            let password = decoded.splitn(2, |b| *b == b':').nth(1).unwrap_or_default();
            return self.matches(password);
        }
        false
    }
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
/// The status page is built from `state` alone and the operator routes are open; see
/// [`serve_with`].
pub async fn serve(
    listen: SocketAddr,
    state: AppState,
    shutdown: watch::Receiver<bool>,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
) -> std::io::Result<()> {
    serve_with(listen, state, PageOptions::default(), shutdown, bound).await
}

/// [`serve`] with a status page source and an access token.
pub async fn serve_with(
    listen: SocketAddr,
    state: AppState,
    page: PageOptions,
    mut shutdown: watch::Receiver<bool>,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    if page.token.is_none() && !addr.ip().is_loopback() {
        warn!(listen = %addr, "the status page and /stores are open to the network: set [http] token_file");
    }
    let _ = bound.send(addr);
    let shared = Arc::new((state, page));
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
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, Arc::clone(&shared)));
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

/// Routes that show store data or act on stores: behind the token when one is set.
pub fn is_operator_route(path: &str) -> bool {
    path == "/" || path == "/stores" || path.starts_with("/stores/") || path == "/reconcile"
}

/// Whether the request may use an operator route.
pub fn authorized(page: &PageOptions, headers: &hyper::HeaderMap) -> bool {
    page.token.as_ref().is_none_or(|t| {
        t.allows(
            headers
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )
    })
}

fn unauthorized() -> Resp {
    let mut r = respond(StatusCode::UNAUTHORIZED, "text/plain", "a token is required\n");
    for challenge in [
        r#"Basic realm="storekeeper", charset="UTF-8""#,
        r#"Bearer realm="storekeeper""#,
    ] {
        r.headers_mut().append(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    r
}

/// Headers on every response: no sniffing, no referrer, no framing, and (unless the page set
/// its own) a policy that allows nothing to load.
fn secure(mut r: Resp) -> Resp {
    let h = r.headers_mut();
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.entry(hyper::header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        ));
    r
}

async fn handle(req: Request<Incoming>, shared: Arc<(AppState, PageOptions)>) -> Result<Resp, Infallible> {
    let (state, page) = (&shared.0, &shared.1);
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let resp = match (method.clone(), path.as_str()) {
        (_, p) if is_operator_route(p) && !authorized(page, req.headers()) => unauthorized(),
        (Method::POST, "/hooks/git") => webhook(req, state).await,
        (Method::POST, "/reconcile") => reconcile(req.uri().query(), state),
        (Method::GET | Method::HEAD, "/") => status_page(state, page),
        (Method::GET | Method::HEAD, p) => get(p, state),
        (_, "/hooks/git" | "/reconcile") => method_not_allowed("POST"),
        _ => method_not_allowed("GET, HEAD"),
    };
    let resp = secure(resp);
    Ok(if method == Method::HEAD {
        strip_body(resp)
    } else {
        resp
    })
}

/// `POST /reconcile?store=a&store=b`: asks for a plan now. 202 with the time of the request.
fn reconcile(query: Option<&str>, state: &AppState) -> Resp {
    let Some(handler) = &state.reconcile else {
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not reconciling (not connected yet)\n",
        );
    };
    let mut stores = Vec::new();
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        match pair.strip_prefix("store=").map(StoreName::new) {
            Some(Ok(name)) => stores.push(name),
            _ => {
                return json_resp(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": format!("bad parameter `{pair}`: want store=<name>")}),
                );
            }
        }
    }
    let at = jiff::Timestamp::now();
    handler(stores.clone());
    json_resp(
        StatusCode::ACCEPTED,
        &json!({"requested_at": at.to_string(), "stores": stores}),
    )
}

fn status_page(state: &AppState, page: &PageOptions) -> Resp {
    let view = match &page.view {
        Some(f) => f(),
        None => view_of(state),
    };
    let mut r = respond(StatusCode::OK, "text/html; charset=utf-8", page::render(&view));
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(page::CSP),
    );
    h.insert(hyper::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The page from what [`AppState`] knows: every store's status and the last operations.
pub fn view_of(state: &AppState) -> PageView {
    let statuses = state.statuses.lock().map(|s| s.clone()).unwrap_or_default();
    let stores = statuses.iter().map(|(name, s)| row_of(name, s, state)).collect();
    let operations = state
        .operations
        .lock()
        .map(|ops| {
            ops.iter()
                .rev()
                .take(page::MAX_OPERATIONS)
                .map(operation_row)
                .collect()
        })
        .unwrap_or_default();
    let now = jiff::Timestamp::now();
    let last_success = state.health.source_age().and_then(|a| {
        jiff::SignedDuration::try_from(a)
            .ok()
            .and_then(|a| now.checked_sub(a).ok())
    });
    PageView {
        generated_at: now,
        refresh: Duration::from_secs(10),
        ready: state.health.ready().is_ok(),
        not_ready_reason: state.health.ready().err(),
        source: SourceView {
            revision: state.source_revision.lock().ok().and_then(|r| r.clone()),
            last_success,
            stale: state.health.is_stale(),
        },
        stores,
        operations,
    }
}

fn row_of(name: &StoreName, s: &StoreStatus, state: &AppState) -> StoreRow {
    let mut row = StoreRow::new(name.as_str(), s.phase, s.reason.clone());
    row.title = s.title.clone();
    row.engine = s.engine.map(str::to_string);
    row.url = s.url.clone();
    row.owner = s.owner.clone();
    row.revision = s.revision.clone();
    row.created = s.created;
    row.last_transition = Some(s.last_transition);
    row.last_error = s.last_error.clone();
    row.next_attempt = s.next_attempt.or(s.deletion_deadline);
    row.last_backup = state.last_backup(name).and_then(|b| b.last_success);
    row
}

fn operation_row(o: &Operation) -> OperationRow {
    OperationRow {
        at: o.finished,
        store: o.store.to_string(),
        action: o.action.to_string(),
        result: o.result.to_string(),
        duration: o.finished.duration_since(o.started).try_into().ok(),
        message: o.message.clone(),
    }
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
        "/page.css" => {
            let mut r = respond(StatusCode::OK, "text/css; charset=utf-8", page::STYLESHEET);
            r.headers_mut().insert(
                hyper::header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=300"),
            );
            r
        }
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
        p if p.starts_with("/stores/") && p.ends_with("/operations") => store_operations(p, state),
        p => match p.strip_prefix("/stores/").and_then(|n| StoreName::new(n).ok()) {
            Some(name) => {
                let statuses = state
                    .statuses
                    .lock()
                    .map(|s| s.get(&name).cloned())
                    .unwrap_or_default();
                match statuses {
                    Some(s) => json_resp(StatusCode::OK, &store_json(&name, &s, state)),
                    None => json_resp(StatusCode::NOT_FOUND, &json!({"error": "no such store"})),
                }
            }
            None => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        },
    }
}

/// `GET /stores/{name}/operations`: the store's recent operations, oldest first.
fn store_operations(path: &str, state: &AppState) -> Resp {
    let name = path
        .strip_prefix("/stores/")
        .and_then(|p| p.strip_suffix("/operations"))
        .and_then(|n| StoreName::new(n).ok());
    let Some(name) = name else {
        return respond(StatusCode::NOT_FOUND, "text/plain", "not found\n");
    };
    let ops: Vec<Operation> = state
        .operations
        .lock()
        .map(|ops| ops.iter().filter(|o| o.store == name).cloned().collect())
        .unwrap_or_default();
    json_resp(StatusCode::OK, &json!({"store": name, "operations": ops}))
}

fn store_json(name: &StoreName, s: &StoreStatus, state: &AppState) -> serde_json::Value {
    json!({
        "last_backup": state.last_backup(name),
        "name": name,
        "engine": s.engine,
        "phase": s.phase.as_str(),
        "reason": s.reason,
        "last_transition": s.last_transition.to_string(),
        "last_error": s.last_error,
        "error_code": s.error_code,
        "next_attempt": s.next_attempt.map(|t| t.to_string()),
        "deletion_deadline": s.deletion_deadline.map(|t| t.to_string()),
        "hint": s.hint,
        "owner": s.owner,
        "url": s.url,
        "created": s.created.map(|t| t.to_string()),
        "revision": s.revision,
    })
}

/// The `/stores` document (also what `storekeeper status` prints).
pub fn stores_doc(state: &AppState) -> serde_json::Value {
    let statuses = state.statuses.lock().map(|s| s.clone()).unwrap_or_default();
    let stores: Vec<_> = statuses.iter().map(|(n, s)| store_json(n, s, state)).collect();
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
        "planned_at": state.planned_at.lock().ok().and_then(|t| t.map(|t| t.to_string())),
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
