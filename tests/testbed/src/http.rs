//! HTTP routing: Kubernetes URL paths to store operations, request bodies (JSON or protobuf) in,
//! JSON out, errors as `Status` objects, watches as a chunked stream of newline-delimited JSON
//! events that stays open. Also the fault knobs (injected 500s, delays).

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Sleep;

use crate::Request;
use crate::kinds::{self, Kind, by_plural};
use crate::patch;
use crate::protobuf;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{ApiError, Line, Store, WatchStart};

/// Locks a mutex, ignoring poisoning: a panicking test must not take the server down with it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Injected failures: `(remaining, method, path substring)`; a delay for every response; and a
/// lag of watches behind writes (for watches opened from then on).
#[derive(Default)]
pub struct Faults {
    pub fail: Vec<(usize, String, String)>,
    pub delay: Duration,
    pub watch_lag: Duration,
}

impl Faults {
    /// Whether this request should get an injected 500 (consumes one from the first matching
    /// rule). An empty method matches every method.
    fn take(&mut self, method: &str, path: &str) -> bool {
        let hit = self.fail.iter_mut().find(|(n, m, p)| {
            *n > 0 && (m.is_empty() || m.eq_ignore_ascii_case(method)) && path_matches(path, p)
        });
        let Some(rule) = hit else { return false };
        rule.0 -= 1;
        self.fail.retain(|(n, _, _)| *n > 0);
        true
    }
}

/// `pattern` is a substring of the path, or with a trailing `$` the path's end.
fn path_matches(path: &str, pattern: &str) -> bool {
    match pattern.strip_suffix('$') {
        Some(end) => path.ends_with(end),
        None => path.contains(pattern),
    }
}

/// Everything the server threads share.
#[derive(Default)]
pub struct Shared {
    pub store: Mutex<Store>,
    pub log: Mutex<Vec<Request>>,
    pub faults: Mutex<Faults>,
    pub pages: Mutex<Pages>,
}

/// Paged LISTs (`limit` and `continue`), as the real server serves them: every page of one list
/// comes from the same snapshot (the first page's resourceVersion). The rest of a list waits here
/// under its continue token; the oldest lists are forgotten (their token then answers 410).
#[derive(Default)]
pub struct Pages {
    next: u64,
    lists: std::collections::VecDeque<(String, u64, Vec<Value>)>,
}

/// Lists whose remaining pages are kept.
const OPEN_LISTS: usize = 16;

impl Pages {
    /// The first `limit` items; the rest are kept under the returned token.
    fn first(&mut self, rv: u64, mut items: Vec<Value>, limit: usize) -> (Vec<Value>, Option<String>) {
        if limit == 0 || items.len() <= limit {
            return (items, None);
        }
        let rest = items.split_off(limit);
        self.next += 1;
        let token = format!("testbed-{}", self.next);
        self.lists.push_back((token.clone(), rv, rest));
        while self.lists.len() > OPEN_LISTS {
            self.lists.pop_front();
        }
        (items, Some(token))
    }

    /// The next page of a list, its resourceVersion and the next token.
    fn more(&mut self, token: &str, limit: usize) -> Result<(Vec<Value>, u64, Option<String>), ApiError> {
        let at = self
            .lists
            .iter()
            .position(|(t, _, _)| t == token)
            .ok_or_else(|| ApiError::new(410, "Expired", "the provided continue parameter is too old"))?;
        let (_, rv, rest) = self.lists.remove(at).unwrap_or_default();
        let (page, next) = self.first(rv, rest, limit);
        Ok((page, rv, next))
    }
}

/// A response body: complete, or a watch stream that ends at its deadline or when the server
/// drops the watch. A stream hands out each line no sooner than `lag` after the server made it.
pub enum Body {
    Full(Option<Bytes>),
    Stream {
        rx: UnboundedReceiver<Line>,
        deadline: Option<Pin<Box<Sleep>>>,
        lag: Duration,
        held: Option<Line>,
        wait: Option<Pin<Box<Sleep>>>,
    },
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream {
                rx,
                deadline,
                lag,
                held,
                wait,
            } => {
                if let Some(d) = deadline
                    && d.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(None);
                }
                if held.is_none() {
                    match rx.poll_recv(cx) {
                        Poll::Ready(Some(line)) => *held = Some(line),
                        Poll::Ready(None) => return Poll::Ready(None),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                let due = held.as_ref().map(|(at, _)| *at + *lag);
                if let Some(due) = due.filter(|d| *d > tokio::time::Instant::now()) {
                    let sleep = wait.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                    sleep.as_mut().reset(due);
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                Poll::Ready(held.take().map(|(_, l)| Ok(Frame::data(Bytes::from(l)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::Full(Some(Bytes::from(v.to_string()))));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// A `Status` object for an error, with `details` naming the resource when known.
fn status_response(e: &ApiError, route: Option<&Route>) -> Response<Body> {
    let mut status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": e.message, "reason": e.reason, "code": e.code,
    });
    if let Some(details) = &e.details {
        status["details"] = details.clone();
    } else if let Some(r) = route {
        status["details"] = json!({"name": r.name.clone().unwrap_or_default(),
                                   "group": r.kind.group, "kind": r.kind.plural});
    }
    json_response(e.code, &status)
}

/// Percent-decoding for query values (`+` is a space in form encoding).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// A resource URL: the kind, the namespace and name if present, a subresource (`status`), and
/// whether it came through the legacy `/watch/` prefix.
#[derive(Debug)]
pub struct Route {
    pub kind: &'static Kind,
    pub ns: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
    legacy_watch: bool,
}

/// Parses a resource path such as `/api/v1/namespaces/a/secrets/x` or `/apis/apps/v1/deployments`.
pub fn parse_route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, mut rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let legacy_watch = rest.first() == Some(&"watch");
    if legacy_watch {
        rest = &rest[1..];
    }
    let namespaced_route = match rest {
        ["namespaces", _, plural, ..] => by_plural(group, version, plural).is_some_and(|k| k.namespaced),
        _ => false,
    };
    let (ns, rest) = if namespaced_route {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    let kind = by_plural(group, version, plural)?;
    // A namespaced kind addressed by name needs its namespace.
    if kind.namespaced && ns.is_none() && name.is_some() {
        return None;
    }
    if name.as_deref() == Some("") {
        return None;
    }
    Some(Route {
        kind,
        ns,
        name,
        sub,
        legacy_watch,
    })
}

/// What came in, minus the parts routing doesn't need.
pub struct Req<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: HashMap<String, String>,
    pub content_type: &'a str,
    pub user_agent: &'a str,
    pub body: &'a [u8],
}

/// Serves one request.
pub async fn handle(
    shared: Arc<Shared>,
    req: hyper::Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    lock(&shared.log).push(Request {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
    });
    let (fail, delay) = {
        let mut f = lock(&shared.faults);
        (f.take(&method, &path), f.delay)
    };
    let header = |h: hyper::header::HeaderName| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let content_type = header(hyper::header::CONTENT_TYPE);
    let user_agent = header(hyper::header::USER_AGENT);
    // Always read the body (DELETE has one too): leaving it unread breaks keep-alive.
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let e = ApiError::bad_request(format!("reading the body: {e}"));
            return Ok(status_response(&e, None));
        }
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if fail {
        let e = ApiError::new(500, "InternalError", "injected failure (testbed fail_next)");
        return Ok(status_response(&e, None));
    }
    let incoming = Req {
        method: &method,
        path: &path,
        query: parse_query(&query),
        content_type: &content_type,
        user_agent: &user_agent,
        body: &body,
    };
    Ok(route(&shared, &incoming))
}

fn route(shared: &Shared, req: &Req<'_>) -> Response<Body> {
    let ok = |v: Value| json_response(200, &v);
    let not_found = || {
        let e = ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
        status_response(&e, None)
    };
    match req.path.trim_end_matches('/') {
        "/version" => {
            return ok(
                json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-testbed",
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc",
                "platform": "linux/amd64"}),
            );
        }
        "/healthz" | "/readyz" | "/livez" => {
            return Response::new(Body::Full(Some(Bytes::from_static(b"ok"))));
        }
        "/api" => return ok(kinds::api_versions()),
        "/apis" => return ok(kinds::api_group_list()),
        "/openapi/v3" => return ok(kinds::openapi_index()),
        p => {
            if let Some(gv) = p.strip_prefix("/openapi/v3/") {
                return kinds::openapi_group_version(gv).map_or_else(not_found, ok);
            }
            let segs: Vec<&str> = p.trim_matches('/').split('/').collect();
            let gv = match segs.as_slice() {
                ["api", v] => Some(("", *v)),
                ["apis", g, v] => Some((*g, *v)),
                _ => None,
            };
            if let Some((g, v)) = gv {
                return kinds::api_resource_list(g, v).map_or_else(not_found, ok);
            }
        }
    }
    let Some(route) = parse_route(req.path) else {
        return not_found();
    };
    match resource(shared, &route, req) {
        Ok(r) => r,
        Err(e) => status_response(&e, Some(&route)),
    }
}

/// The field manager: `?fieldManager=`, else the user agent up to its first `/`, as the real
/// server derives it.
fn manager(req: &Req<'_>) -> String {
    match req.query.get("fieldManager") {
        Some(m) if !m.is_empty() => m.clone(),
        _ => {
            let ua = req.user_agent.split('/').next().unwrap_or_default();
            if ua.is_empty() {
                "unknown".into()
            } else {
                ua.to_string()
            }
        }
    }
}

/// Decodes a create/update body: protobuf (Secret, ConfigMap, Namespace) or JSON.
fn decode_body(req: &Req<'_>) -> Result<Value, ApiError> {
    if req
        .content_type
        .starts_with("application/vnd.kubernetes.protobuf")
    {
        return protobuf::decode(req.body).map_err(|m| {
            if m.contains("not supported") {
                ApiError::new(415, "UnsupportedMediaType", m)
            } else {
                ApiError::bad_request(m)
            }
        });
    }
    if req.content_type.contains("yaml") && !req.content_type.contains("apply-patch") {
        return Err(ApiError::new(415, "UnsupportedMediaType", "send JSON"));
    }
    let v: Value = serde_json::from_slice(req.body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if !v.is_object() && !req.content_type.starts_with("application/json-patch") {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    Ok(v)
}

fn selectors(req: &Req<'_>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let q = |k: &str| req.query.get(k).map(String::as_str).unwrap_or_default();
    let labels = LabelSelector::parse(q("labelSelector")).map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(q("fieldSelector")).map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

fn resource(shared: &Shared, route: &Route, req: &Req<'_>) -> Result<Response<Body>, ApiError> {
    let kind = route.kind;
    let ns = route.ns.as_deref();
    let flag = |k: &str| req.query.get(k).is_some_and(|v| v == "true" || v == "1");
    let dry_run = req.query.contains_key("dryRun");
    let mut guard = lock(&shared.store);
    // A dry run works on a scratch copy (no watches), so nothing is kept or announced.
    let mut scratch;
    let store: &mut Store = if dry_run {
        scratch = guard.scratch();
        &mut scratch
    } else {
        &mut guard
    };
    let Some(name) = route.name.as_deref() else {
        return match req.method {
            "GET" if flag("watch") || route.legacy_watch => watch(store, route, req).map(|rx| {
                let deadline = req
                    .query
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse::<u64>().ok())
                    .map(|s| Box::pin(tokio::time::sleep(Duration::from_secs(s))));
                let lag = lock(&shared.faults).watch_lag;
                let mut r = Response::new(Body::Stream {
                    rx,
                    deadline,
                    lag,
                    held: None,
                    wait: None,
                });
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/json"),
                );
                r
            }),
            "GET" => {
                let limit = req
                    .query
                    .get("limit")
                    .and_then(|l| l.parse::<usize>().ok())
                    .unwrap_or(0);
                let mut pages = lock(&shared.pages);
                let (items, rv, next) = match req.query.get("continue").filter(|c| !c.is_empty()) {
                    Some(token) => pages.more(token, limit)?,
                    None => {
                        let (labels, fields) = selectors(req)?;
                        let rv = store.resource_version();
                        let (page, next) = pages.first(rv, store.list(kind, ns, &labels, &fields), limit);
                        (page, rv, next)
                    }
                };
                let mut list = list_json(kind, rv, items);
                if let Some(token) = next {
                    list["metadata"]["continue"] = Value::String(token);
                }
                Ok(json_response(200, &list))
            }
            "POST" if kind.namespaced == ns.is_some() => {
                let obj = decode_body(req)?;
                let created = store.create(kind, ns, obj, &manager(req))?;
                Ok(json_response(201, &created))
            }
            "DELETE" if kind.namespaced == ns.is_some() => {
                let (labels, fields) = selectors(req)?;
                let mut gone = Vec::new();
                for obj in store.list(kind, ns, &labels, &fields) {
                    let (n, nm) = (
                        obj["metadata"]["namespace"].as_str().unwrap_or_default(),
                        obj["metadata"]["name"].as_str().unwrap_or_default(),
                    );
                    if let Ok(o) = store.delete(kind, n, nm, false) {
                        gone.push(o);
                    }
                }
                Ok(json_response(
                    200,
                    &list_json(kind, store.resource_version(), gone),
                ))
            }
            _ => Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "method not allowed on a collection",
            )),
        };
    };
    let ns_key = ns.unwrap_or_default();
    let status_only = match route.sub.as_deref() {
        None => false,
        Some("status") => true,
        Some(other) => {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("subresource {other:?} is not served"),
            ));
        }
    };
    match req.method {
        "GET" => store
            .get(kind, ns_key, name)
            .map(|o| json_response(200, o))
            .ok_or_else(|| ApiError::not_found(kind, name)),
        "PUT" => {
            let obj = decode_body(req)?;
            let updated = store.update(kind, ns, name, obj, &manager(req), status_only)?;
            Ok(json_response(200, &updated))
        }
        "PATCH" => patch_object(store, route, name, req, status_only),
        "DELETE" => {
            let opts: Value = if req.body.is_empty() {
                json!({})
            } else {
                decode_body(req)?
            };
            let existing = store
                .get(kind, ns_key, name)
                .ok_or_else(|| ApiError::not_found(kind, name))?;
            for (field, pre) in [("uid", "uid"), ("resourceVersion", "resourceVersion")] {
                if let Some(want) = opts["preconditions"][pre].as_str()
                    && existing["metadata"][field] != want
                {
                    return Err(ApiError::new(
                        409,
                        "Conflict",
                        format!("precondition failed: {field}"),
                    ));
                }
            }
            let policy = opts["propagationPolicy"]
                .as_str()
                .or(req.query.get("propagationPolicy").map(String::as_str));
            let orphan = policy == Some("Orphan") || opts["orphanDependents"] == true;
            let gone = store.delete(kind, ns_key, name, orphan)?;
            Ok(json_response(200, &gone))
        }
        _ => Err(ApiError::new(405, "MethodNotAllowed", "method not allowed")),
    }
}

fn list_json(kind: &Kind, rv: u64, items: Vec<Value>) -> Value {
    json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(),
           "metadata": {"resourceVersion": rv.to_string()}, "items": items})
}

fn watch(store: &mut Store, route: &Route, req: &Req<'_>) -> Result<UnboundedReceiver<Line>, ApiError> {
    let (labels, fields) = selectors(req)?;
    let rv = req
        .query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or_default();
    let start = if req.query.get("sendInitialEvents").is_some_and(|v| v == "true") {
        WatchStart::Current { bookmark: true }
    } else if rv.is_empty() || rv == "0" {
        WatchStart::Current { bookmark: false }
    } else {
        let n = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
        WatchStart::After(n)
    };
    // With a name in a field selector this is how client-go watches one object.
    store.watch(route.kind, route.ns.as_deref(), labels, fields, start)
}

fn patch_object(
    store: &mut Store,
    route: &Route,
    name: &str,
    req: &Req<'_>,
    status_only: bool,
) -> Result<Response<Body>, ApiError> {
    let kind = route.kind;
    let ns = route.ns.as_deref();
    let body = decode_body(req)?;
    let ct = req.content_type.split(';').next().unwrap_or_default().trim();
    if ct == "application/apply-patch+yaml" {
        let force = if req.query.get("force").is_some_and(|f| f == "true") {
            patch::Force::Yes
        } else {
            patch::Force::No
        };
        let (obj, created) = store.apply(kind, ns, name, body, &manager(req), force)?;
        return Ok(json_response(if created { 201 } else { 200 }, &obj));
    }
    let old = store
        .get(kind, ns.unwrap_or_default(), name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(kind, name))?;
    let mut new = old.clone();
    match ct {
        "application/merge-patch+json" => patch::merge_patch(&mut new, &body),
        "application/strategic-merge-patch+json" => {
            // As on a real server: custom resources have no strategic-merge schema.
            if kind.group == "cert-manager.io" {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "strategic merge patch is not supported for custom resources",
                ));
            }
            patch::strategic_merge(&mut new, &body).map_err(ApiError::bad_request)?;
        }
        "application/json-patch+json" => {
            patch::json_patch(&mut new, &body).map_err(|m| ApiError::new(422, "Invalid", m))?
        }
        other => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("unsupported patch type {other:?}"),
            ));
        }
    }
    let sent_rv = new["metadata"]["resourceVersion"].clone();
    if sent_rv.is_string() && sent_rv != old["metadata"]["resourceVersion"] {
        return Err(ApiError::new(409, "Conflict", "the object has been modified"));
    }
    let stored = if status_only {
        let status = new["status"].take();
        new = old.clone();
        new["status"] = status;
        store.replace(kind, &old, new, Some(&manager(req)))
    } else {
        store.replace_checked(kind, &old, new, Some(&manager(req)))?
    };
    Ok(json_response(200, &stored))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_paged_list_is_one_snapshot_and_an_old_token_expires() {
        let mut pages = Pages::default();
        let items: Vec<Value> = (0..5).map(|i| json!({"n": i})).collect();
        let (first, token) = pages.first(7, items, 2);
        assert_eq!(first.len(), 2);
        let token = token.expect("more to come");
        let (second, rv, token) = pages.more(&token, 2).expect("page 2");
        assert_eq!((second[0]["n"].clone(), rv), (json!(2), 7));
        let (last, _, end) = pages.more(&token.expect("page 3"), 2).expect("page 3");
        assert_eq!((last.len(), end), (1, None));
        assert_eq!(
            pages.more("testbed-1", 2).map(|_| ()).map_err(|e| e.code),
            Err(410)
        );
        let (all, none) = pages.first(8, vec![json!(1)], 0);
        assert_eq!((all.len(), none), (1, None), "no limit: everything at once");
    }

    use super::*;

    #[test]
    fn routes() {
        let r = parse_route("/api/v1/namespaces/a/secrets/x").expect("route");
        assert_eq!(
            (r.kind.plural, r.ns.as_deref(), r.name.as_deref()),
            ("secrets", Some("a"), Some("x"))
        );
        let r = parse_route("/api/v1/namespaces/a").expect("route");
        assert_eq!(
            (r.kind.plural, r.ns, r.name.as_deref()),
            ("namespaces", None, Some("a"))
        );
        let r = parse_route("/api/v1/namespaces/a/status").expect("route");
        assert_eq!((r.kind.plural, r.sub.as_deref()), ("namespaces", Some("status")));
        let r = parse_route("/apis/apps/v1/deployments").expect("route");
        assert_eq!((r.kind.plural, r.ns, r.name), ("deployments", None, None));
        let r = parse_route("/apis/apps/v1/watch/namespaces/n/deployments").expect("route");
        assert!(r.legacy_watch);
        assert!(parse_route("/api/v1/secrets/x").is_none());
        assert!(parse_route("/apis/nope/v1/things").is_none());
    }

    #[test]
    fn query_decoding() {
        let q = parse_query("labelSelector=a%20in%20(x%2Cy),b%21%3Dc&watch=true&x");
        assert_eq!(q["labelSelector"], "a in (x,y),b!=c");
        assert_eq!(q["watch"], "true");
        assert_eq!(q["x"], "");
        assert_eq!(percent_decode("a+b%2"), "a b%2");
    }

    #[test]
    fn faults_consume() {
        let mut f = Faults::default();
        f.fail.push((2, "post".into(), "/secrets".into()));
        assert!(!f.take("GET", "/api/v1/namespaces/a/secrets"));
        assert!(f.take("POST", "/api/v1/namespaces/a/secrets"));
        assert!(f.take("POST", "/api/v1/namespaces/a/secrets"));
        assert!(!f.take("POST", "/api/v1/namespaces/a/secrets"));
        f.fail.push((1, "DELETE".into(), "/namespaces/a$".into()));
        assert!(
            !f.take("DELETE", "/api/v1/namespaces/a/configmaps/x"),
            "anchored at the end"
        );
        assert!(f.take("DELETE", "/api/v1/namespaces/a"));
    }
}
