//! Test-only: a stateful Kubernetes API server double that the real helm 3, helm 4, kubectl and
//! kube-rs talk to over HTTP, plus helpers to run helm against it.
//!
//! The server is honest rather than scripted: real HTTP and JSON, protobuf request bodies where
//! client-go sends them, real label selectors, resourceVersions and watches, server-side apply
//! with field ownership, and an emulation of the controllers that make objects ready. Each
//! [`TestApi`] runs on its own thread and tokio runtime, so sync `#[test]`s and async tests can
//! both use it.
//!
//! Deliberate simplifications: deleting a namespace removes it and its contents at once (no
//! `Terminating` phase); controllers act synchronously on each write, so objects are ready (or,
//! with [`NEVER_READY_ANNOTATION`], never ready) as soon as they are stored; no
//! schema validation (`fieldValidation` is accepted and ignored). Update rules the charts must
//! live with are enforced as the real server does (immutable Job templates, StatefulSet specs,
//! PVC shrink and expansion: see `validation`), and so are the Event rules (`event_rules`;
//! `events.k8s.io/v1` and core `v1` Events are separate collections here, one on a real server).

mod controllers;
mod event_rules;
mod http;
mod jobs;
mod kinds;
mod kubeconfig;
mod patch;
mod protobuf;
mod selector;
mod store;
pub mod tools;
/// Writes a kubeconfig for a server URL, as [`TestApi`] does for its own (e.g. for an address
/// a server will be started on later).
pub use kubeconfig::write as write_kubeconfig;
mod validation;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};

use crate::http::{Shared, lock, parse_query, parse_route};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::ns_opt;

/// Marks an object that the controller emulation must never make ready (Deployment never
/// Available, Job never completes, PVC stays Pending...). Value `"true"`.
pub const NEVER_READY_ANNOTATION: &str = "testbed.storekeeper.dev/never-ready";
/// On a Job's pod template: the exit code of its main container (non-zero fails the Job) and
/// what that container writes to its termination message (see `jobs`).
pub use jobs::{EXIT_CODE_ANNOTATION, MESSAGE_ANNOTATION};

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
}

/// Commands from the test thread to the server thread.
enum Control {
    Refuse(Duration, std::sync::mpsc::Sender<()>),
}

/// A running test API server. Dropping it stops the server; if the thread is panicking (a test
/// failed), the tail of the request log is printed first.
pub struct TestApi {
    shared: Arc<Shared>,
    url: String,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    control: Option<mpsc::UnboundedSender<Control>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Binds with SO_REUSEADDR so `refuse_for` can re-bind the same port right away.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl TestApi {
    /// Starts a server on `127.0.0.1:0` and writes its kubeconfig into a fresh tempdir.
    pub fn start() -> TestApi {
        TestApi::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).expect("start the test server")
    }

    /// Starts a server listening on `addr` (port 0: any free port), e.g. on the address a
    /// client was told about before the server existed, and writes its kubeconfig into a fresh
    /// tempdir. Fails as a real server would when the address cannot be bound (in use, not
    /// local).
    pub fn start_on(addr: SocketAddr) -> std::io::Result<TestApi> {
        let shared = Arc::new(Shared::default());
        // A real API server always has these (Events about cluster-scoped objects go to
        // `default`).
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = serde_json::json!({"metadata": {"name": ns}});
            let _ = lock(&shared.store).create(&kinds::KINDS[0], None, obj, "kube-apiserver");
        }
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let server_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("testbed-api".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => return drop(addr_tx.send(Err(e))),
                };
                rt.block_on(async move {
                    let bound = bind(addr).and_then(|l| Ok((l.local_addr()?, l)));
                    let (addr, listener) = match bound {
                        Ok(b) => b,
                        Err(e) => return drop(addr_tx.send(Err(e))),
                    };
                    let _ = addr_tx.send(Ok(addr));
                    serve(server_shared, listener, addr, control_rx).await;
                });
            })?;
        let addr = match addr_rx.recv() {
            Ok(r) => r?,
            Err(_) => return Err(std::io::Error::other("the test server thread died")),
        };
        let url = format!("http://{addr}");
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        kubeconfig::write(&kubeconfig, &url)?;
        Ok(TestApi {
            shared,
            url,
            kubeconfig,
            _dir: dir,
            control: Some(control_tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The kubeconfig file: cluster `server` = [`TestApi::url`], context `testbed` (current),
    /// empty user.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Every request seen so far (since the last [`TestApi::reset_counters`]), in order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.log).clone()
    }

    /// Requests that were writes (anything but GET/HEAD).
    pub fn write_count(&self) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.method != "GET" && r.method != "HEAD")
            .count()
    }

    /// Clears the request log.
    pub fn reset_counters(&self) {
        lock(&self.shared.log).clear();
    }

    /// The stored object at an API path, e.g. `/api/v1/namespaces/store-a`.
    pub fn get(&self, path: &str) -> Option<Value> {
        let r = parse_route(path)?;
        let name = r.name.as_deref()?;
        lock(&self.shared.store)
            .get(r.kind, r.ns.as_deref().unwrap_or_default(), name)
            .cloned()
    }

    /// The objects at a collection path, e.g. `/api/v1/namespaces`; a `?labelSelector=` /
    /// `?fieldSelector=` query filters. Panics on an unknown path or a bad selector.
    pub fn list(&self, path: &str) -> Vec<Value> {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let q = parse_query(query);
        let r = parse_route(path).unwrap_or_else(|| panic!("not a collection path: {path}"));
        let labels = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))
            .unwrap_or_else(|e| panic!("{e}"));
        let fields = FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str))
            .unwrap_or_else(|e| panic!("{e}"));
        lock(&self.shared.store).list(r.kind, r.ns.as_deref(), &labels, &fields)
    }

    /// Seeds (or replaces) an object through the same code as a create/update, so it gets a
    /// uid, resourceVersion, defaults and status, and watches see it. `path` is the collection
    /// path. Panics if the server would reject the object.
    pub fn insert(&self, path: &str, obj: Value) {
        let r = parse_route(path).unwrap_or_else(|| panic!("not a collection path: {path}"));
        let mut store = lock(&self.shared.store);
        let ns =
            r.ns.as_deref()
                .or(obj["metadata"]["namespace"].as_str())
                .unwrap_or_default()
                .to_string();
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let result = match store.get(r.kind, &ns, name).cloned() {
            Some(_) => {
                let mut obj = obj.clone();
                obj["metadata"]["resourceVersion"] = Value::Null;
                store.update(r.kind, ns_opt(r.kind, &ns), name, obj, "testbed", false)
            }
            None => store.create(r.kind, ns_opt(r.kind, &ns), obj.clone(), "testbed"),
        };
        if let Err(e) = result {
            panic!("testbed insert at {path} rejected: {} {}", e.code, e.message);
        }
    }

    /// Deletes the object at `path` (with its dependents; a namespace with its contents) and
    /// emits the watch DELETED events. `false` if there was nothing there.
    pub fn remove(&self, path: &str) -> bool {
        let Some(r) = parse_route(path) else { return false };
        let Some(name) = r.name.as_deref() else {
            return false;
        };
        lock(&self.shared.store)
            .delete(r.kind, r.ns.as_deref().unwrap_or_default(), name, false)
            .is_ok()
    }

    /// Compacts the event history (see `Store::compact`): watches resuming from before now get
    /// `410 Expired` and must list again.
    pub fn compact(&self) {
        lock(&self.shared.store).compact();
    }

    /// The next `n` requests whose method is `method` (case-insensitive; `""` = any) and whose
    /// path contains `path_contains` (or, with a trailing `$`, ends with it) get a 500 `Status`.
    pub fn fail_next(&self, n: usize, method: &str, path_contains: &str) {
        lock(&self.shared.faults)
            .fail
            .push((n, method.to_string(), path_contains.to_string()));
    }

    /// Delays every response by `d` (`Duration::ZERO` turns it off).
    pub fn set_delay(&self, d: Duration) {
        lock(&self.shared.faults).delay = d;
    }

    /// Makes watches opened from now on deliver each event `d` after the write that caused it,
    /// as a loaded API server's watch cache lags behind its writes (`Duration::ZERO`: at once).
    pub fn set_watch_lag(&self, d: Duration) {
        lock(&self.shared.faults).watch_lag = d;
    }

    /// Closes the listener and every open connection (watches included) for `d`, then listens
    /// on the same port again. Returns once the listener is closed.
    pub fn refuse_for(&self, d: Duration) {
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(c) = &self.control
            && c.send(Control::Refuse(d, tx)).is_ok()
        {
            let _ = rx.recv();
        }
    }

    /// The last `n` requests, one per line, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let log = lock(&self.shared.log);
        let skip = log.len().saturating_sub(n);
        log.iter()
            .skip(skip)
            .map(|r| format!("{} {}?{}\n", r.method, r.path, r.query))
            .collect()
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- testbed {}: last requests ---\n{}",
                self.url,
                self.log_tail(40)
            );
        }
        // Closing the control channel stops the accept loop; the runtime then drops every task.
        self.control.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The accept loop. Each connection is served until it closes or a `refuse_for` epoch ends it.
async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    addr: SocketAddr,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let (epoch_tx, epoch_rx) = watch::channel(0u64);
    let mut listener = Some(listener);
    loop {
        let accept = async {
            match &listener {
                Some(l) => l.accept().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            cmd = control.recv() => match cmd {
                None => return,
                Some(Control::Refuse(d, ack)) => {
                    listener = None;
                    epoch_tx.send_modify(|e| *e += 1);
                    let _ = ack.send(());
                    tokio::time::sleep(d).await;
                    for _ in 0..100 {
                        match bind(addr) {
                            Ok(l) => { listener = Some(l); break; }
                            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                    }
                }
            },
            accepted = accept => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                let mut epoch = epoch_rx.clone();
                epoch.mark_unchanged();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| http::handle(shared.clone(), req));
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = epoch.changed() => {}
                    }
                });
            }
        }
    }
}
