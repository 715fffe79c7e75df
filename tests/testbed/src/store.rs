//! The object store: every object by (kind, namespace, name), one global resourceVersion counter,
//! an event history (so a watch can resume from a resourceVersion) and the fan-out to open
//! watches. The write operations here carry the API semantics (create/update/apply/delete with
//! their errors) and call the controller emulation, so the HTTP layer and the test-side
//! `TestApi::insert`/`remove` behave exactly alike.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::Instant;

use crate::controllers;
use crate::kinds::{KINDS, Kind};
use crate::patch;
use crate::selector::{FieldSelector, LabelSelector};
use crate::validation;

/// An API error, rendered by the HTTP layer as a `Status` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `Status.details` when the real server sends more than the resource's name (causes of an
    /// Invalid, the resource of an admission Forbidden); `None` lets the HTTP layer fill it in.
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn not_found(kind: &Kind, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(kind)),
        )
    }
}

/// `deployments.apps`, `secrets`: how the real server names a resource in messages.
fn qualified(kind: &Kind) -> String {
    if kind.group.is_empty() {
        kind.plural.to_string()
    } else {
        format!("{}.{}", kind.plural, kind.group)
    }
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Identity of a stored object: kind index, namespace ("" when cluster-scoped), name.
type Key = (usize, String, String);

/// One change, kept for watches that resume from a resourceVersion.
struct Event {
    rv: u64,
    kind: usize,
    ns: String,
    etype: &'static str,
    old: Option<Value>,
    obj: Value,
}

/// One watch event line and when the server produced it (a watch may deliver it later; see
/// `TestApi::set_watch_lag`).
pub type Line = (Instant, String);

/// An open watch; its receiver is the body of a streaming HTTP response.
struct Watcher {
    kind: usize,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    tx: UnboundedSender<Line>,
}

impl Watcher {
    fn matches(&self, ns: &str, obj: &Value) -> bool {
        self.ns.as_deref().is_none_or(|n| n == ns) && self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The event line this watcher should see, if any. Like the real server, an object that
    /// moves out of the selector is reported as DELETED and one that moves in as ADDED.
    fn line_for(&self, ev: &Event) -> Option<String> {
        if ev.kind != self.kind {
            return None;
        }
        let now = self.matches(&ev.ns, &ev.obj);
        let before = ev.old.as_ref().is_some_and(|o| self.matches(&ev.ns, o));
        let etype = match (ev.etype, before, now) {
            ("DELETED", _, true) => "DELETED",
            ("MODIFIED", true, true) => "MODIFIED",
            ("MODIFIED", true, false) => "DELETED",
            (_, _, true) => "ADDED",
            _ => return None,
        };
        Some(event_line(etype, &ev.obj))
    }
}

fn event_line(etype: &str, obj: &Value) -> String {
    let mut line = json!({"type": etype, "object": obj}).to_string();
    line.push('\n');
    line
}

/// Where a new watch starts.
pub enum WatchStart {
    /// Synthetic ADDED events for the current state; with `bookmark`, then a BOOKMARK annotated
    /// `k8s.io/initial-events-end` (`sendInitialEvents=true`).
    Current { bookmark: bool },
    /// Every event after this resourceVersion.
    After(u64),
}

/// Events kept for resuming watches; older ones answer 410 Gone like a compacted etcd.
const HISTORY_LIMIT: usize = 20_000;

pub struct Store {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    history: Vec<Event>,
    /// resourceVersion of the oldest event still in `history`, minus one.
    history_floor: u64,
    watchers: Vec<Watcher>,
    uid_seed: u64,
    next_ip: u32,
}

impl Default for Store {
    fn default() -> Store {
        Store::new()
    }
}

/// RFC 3339 UTC timestamp, second precision, as Kubernetes writes them.
pub fn now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant), valid for the Unix era.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or_default()
}

/// The object without metadata and status: what `generation` tracks.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

impl Store {
    pub fn new() -> Store {
        let uid_seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64 ^ d.as_secs())
            .unwrap_or_default();
        Store {
            objects: BTreeMap::new(),
            rv: 0,
            history: Vec::new(),
            history_floor: 0,
            watchers: Vec::new(),
            uid_seed,
            next_ip: 0,
        }
    }

    /// A copy of the objects without watches or history, for dry runs.
    pub fn scratch(&self) -> Store {
        Store {
            objects: self.objects.clone(),
            rv: self.rv,
            history: Vec::new(),
            history_floor: self.rv,
            watchers: Vec::new(),
            uid_seed: self.uid_seed,
            next_ip: self.next_ip,
        }
    }

    /// The current (latest) resourceVersion, as lists report it.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// The next free ClusterIP in 10.96.0.0/16.
    pub fn allocate_ip(&mut self) -> String {
        self.next_ip += 1;
        format!("10.96.{}.{}", (self.next_ip >> 8) & 0xff, self.next_ip & 0xff)
    }

    fn new_uid(&mut self) -> String {
        let n = self.rv + 1;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (self.uid_seed >> 32) as u32,
            (self.uid_seed >> 16) as u16,
            self.uid_seed & 0xfff,
            (n >> 48) & 0xfff,
            n & 0xffff_ffff_ffff
        )
    }

    pub fn get(&self, kind: &Kind, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(kind.id(), ns.to_string(), name.to_string()))
    }

    /// Objects of a kind, in one namespace or all, filtered by selectors; sorted by namespace
    /// and name.
    pub fn list(
        &self,
        kind: &Kind,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((k, n, _), _)| *k == kind.id() && ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v)
            .filter(|v| labels.matches(v) && fields.matches(v))
            .cloned()
            .collect()
    }

    /// Stores `obj` with a fresh resourceVersion and tells the watches.
    fn commit(&mut self, kind: &Kind, mut obj: Value) -> Value {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let key = (
            kind.id(),
            meta_str(&obj, "namespace").to_string(),
            meta_str(&obj, "name").to_string(),
        );
        let old = self.objects.insert(key.clone(), obj.clone());
        let etype = if old.is_some() { "MODIFIED" } else { "ADDED" };
        self.record(kind.id(), key.1, etype, old, obj.clone());
        obj
    }

    fn record(&mut self, kind: usize, ns: String, etype: &'static str, old: Option<Value>, obj: Value) {
        let ev = Event {
            rv: self.rv,
            kind,
            ns,
            etype,
            old,
            obj,
        };
        self.watchers.retain(|w| match w.line_for(&ev) {
            Some(line) => w.tx.send((Instant::now(), line)).is_ok(),
            None => !w.tx.is_closed(),
        });
        self.history.push(ev);
        if self.history.len() > HISTORY_LIMIT {
            let cut = HISTORY_LIMIT / 2;
            self.history_floor = self.history[cut - 1].rv;
            self.history.drain(..cut);
        }
    }

    /// Opens a watch. The receiver already holds the initial or replayed events.
    pub fn watch(
        &mut self,
        kind: &Kind,
        ns: Option<&str>,
        labels: LabelSelector,
        fields: FieldSelector,
        start: WatchStart,
    ) -> Result<UnboundedReceiver<Line>> {
        let (tx, rx) = unbounded_channel();
        let w = Watcher {
            kind: kind.id(),
            ns: ns.map(str::to_string),
            labels,
            fields,
            tx,
        };
        match start {
            WatchStart::Current { bookmark } => {
                for obj in self.list(kind, ns, &w.labels, &w.fields) {
                    let _ = w.tx.send((Instant::now(), event_line("ADDED", &obj)));
                }
                if bookmark {
                    let mark = json!({
                        "kind": kind.kind, "apiVersion": kind.api_version(),
                        "metadata": {"resourceVersion": self.rv.to_string(),
                                     "annotations": {"k8s.io/initial-events-end": "true"}},
                    });
                    let _ = w.tx.send((Instant::now(), event_line("BOOKMARK", &mark)));
                }
            }
            WatchStart::After(rv) => {
                if rv < self.history_floor {
                    // As the real server's watch cache does (`newErrWatcher`): once the request
                    // is accepted, a compacted version is an ERROR event in a 200 stream, which
                    // then ends — not an HTTP 410. Clients re-list on it.
                    let status = json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": format!("too old resource version: {rv} ({})", self.history_floor),
                        "reason": "Expired", "code": 410,
                    });
                    let _ = w.tx.send((Instant::now(), event_line("ERROR", &status)));
                    return Ok(rx);
                }
                for ev in self.history.iter().filter(|e| e.rv > rv) {
                    if let Some(line) = w.line_for(ev) {
                        let _ = w.tx.send((Instant::now(), line));
                    }
                }
            }
        }
        self.watchers.push(w);
        Ok(rx)
    }

    /// Forgets the event history, as an etcd compaction does: a watch that resumes from an
    /// older resourceVersion gets `410 Expired`.
    pub fn compact(&mut self) {
        self.history.clear();
        self.history_floor = self.rv;
    }

    /// Checks that the object's namespace exists (namespaced kinds) and fills the namespace in.
    fn place(&self, kind: &Kind, ns: Option<&str>, obj: &mut Value) -> Result<()> {
        if !obj.is_object() || !obj["metadata"].is_object() {
            return Err(ApiError::bad_request("object has no metadata"));
        }
        if !kind.namespaced {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("namespace");
            }
            return Ok(());
        }
        let ns = ns
            .map(str::to_string)
            .or_else(|| obj["metadata"]["namespace"].as_str().map(str::to_string))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::bad_request("namespace is required"))?;
        if let Some(body_ns) = obj["metadata"]["namespace"].as_str()
            && !body_ns.is_empty()
            && body_ns != ns
        {
            return Err(ApiError::bad_request(format!(
                "the namespace of the object ({body_ns}) does not match the namespace on the request ({ns})"
            )));
        }
        let namespaces = &KINDS[0];
        if self.get(namespaces, "", &ns).is_none() {
            return Err(ApiError::not_found(namespaces, &ns));
        }
        obj["metadata"]["namespace"] = json!(ns);
        Ok(())
    }

    /// Sets `apiVersion`/`kind` and rejects a body of another kind.
    fn check_type(kind: &Kind, obj: &mut Value) -> Result<()> {
        for (field, want) in [("apiVersion", kind.api_version()), ("kind", kind.kind.into())] {
            match obj.get(field).and_then(Value::as_str) {
                Some(got) if got != want => {
                    return Err(ApiError::bad_request(format!(
                        "{field} {got:?} does not match the resource ({want})"
                    )));
                }
                _ => obj[field] = json!(want),
            }
        }
        Ok(())
    }

    /// POST: creates an object; 409 AlreadyExists if the name is taken.
    pub fn create(&mut self, kind: &Kind, ns: Option<&str>, obj: Value, manager: &str) -> Result<Value> {
        self.create_owned(kind, ns, obj, Some(manager))
    }

    /// Like [`Store::create`]; `manager: None` keeps the body's managedFields (an apply-create).
    fn create_owned(
        &mut self,
        kind: &Kind,
        ns: Option<&str>,
        mut obj: Value,
        manager: Option<&str>,
    ) -> Result<Value> {
        Self::check_type(kind, &mut obj)?;
        self.place(kind, ns, &mut obj)?;
        crate::event_rules::on_create(kind, &obj)?;
        let mut name = meta_str(&obj, "name").to_string();
        if name.is_empty() {
            let prefix = meta_str(&obj, "generateName");
            if prefix.is_empty() {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "metadata.name or generateName is required",
                ));
            }
            name = format!("{prefix}{:05x}", (self.rv + 1) & 0xfffff);
            obj["metadata"]["name"] = json!(name);
        }
        let ns = meta_str(&obj, "namespace").to_string();
        if self.get(kind, &ns, &name).is_some() {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", qualified(kind)),
            ));
        }
        let now = now();
        if let Some(manager) = manager {
            patch::record_update(None, &mut obj, manager, &kind.api_version(), &now);
        }
        let uid = self.new_uid();
        let meta = &mut obj["metadata"];
        meta["uid"] = json!(uid);
        meta["creationTimestamp"] = json!(now);
        meta["generation"] = json!(1);
        if let Some(m) = meta.as_object_mut() {
            m.remove("resourceVersion");
            m.remove("deletionTimestamp");
        }
        Ok(self.write(kind, None, obj))
    }

    /// PUT: replaces an object. A stale `metadata.resourceVersion` is a 409 Conflict; an empty
    /// one means "unconditional". A write to the `status` subresource only changes status.
    pub fn update(
        &mut self,
        kind: &Kind,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        manager: &str,
        status_only: bool,
    ) -> Result<Value> {
        Self::check_type(kind, &mut obj)?;
        self.place(kind, ns, &mut obj)?;
        let body_name = meta_str(&obj, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let ns = meta_str(&obj, "namespace").to_string();
        let old = self
            .get(kind, &ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind, name))?;
        let sent_rv = meta_str(&obj, "resourceVersion");
        if !sent_rv.is_empty() && sent_rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    qualified(kind)
                ),
            ));
        }
        if status_only {
            let mut new = old.clone();
            new["status"] = obj["status"].clone();
            return Ok(self.replace(kind, &old, new, Some(manager)));
        }
        obj["metadata"]["name"] = json!(name);
        if let Some(status) = old.get("status") {
            obj["status"] = status.clone();
        }
        self.replace_checked(kind, &old, obj, Some(manager))
    }

    /// Stores `new` in place of `old` (a patch result or an update body), keeping the
    /// server-owned metadata and bumping `generation` when the spec changed. `manager`, when
    /// given, takes ownership of the fields it changed; `None` means the caller (an apply) has
    /// already recorded ownership.
    pub fn replace(&mut self, kind: &Kind, old: &Value, new: Value, manager: Option<&str>) -> Value {
        let new = self.prepare_replace(kind, old, new, manager);
        self.write(kind, Some(old), new)
    }

    /// [`Store::replace`] for a client's write: the result is defaulted, then checked against
    /// the real server's update rules (immutable fields, PVC resizing; see `validation`) and
    /// refused with its `Status` if it breaks one. Nothing is stored then.
    pub fn replace_checked(
        &mut self,
        kind: &Kind,
        old: &Value,
        new: Value,
        manager: Option<&str>,
    ) -> Result<Value> {
        let mut new = self.prepare_replace(kind, old, new, manager);
        controllers::admit(self, kind, Some(old), &mut new);
        validation::check_update(self, kind, old, &new)?;
        Ok(self.write(kind, Some(old), new))
    }

    /// Server-owned metadata from `old`, the new `generation`, the writer's field ownership.
    fn prepare_replace(&mut self, kind: &Kind, old: &Value, mut new: Value, manager: Option<&str>) -> Value {
        for field in ["uid", "creationTimestamp", "namespace", "name"] {
            match old["metadata"].get(field) {
                Some(v) => new["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        new["metadata"]["generation"] = if spec_part(old) != spec_part(&new) {
            json!(generation + 1)
        } else {
            json!(generation)
        };
        if let Some(manager) = manager {
            patch::record_update(Some(old), &mut new, manager, &kind.api_version(), &now());
        }
        new
    }

    /// Server-side apply: creates the object if missing (`true` = created), else merges with
    /// field ownership; 409 Conflict on fields other managers own unless forced.
    pub fn apply(
        &mut self,
        kind: &Kind,
        ns: Option<&str>,
        name: &str,
        mut applied: Value,
        manager: &str,
        force: patch::Force,
    ) -> Result<(Value, bool)> {
        Self::check_type(kind, &mut applied)?;
        self.place(kind, ns, &mut applied)?;
        let body_name = meta_str(&applied, "name");
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the applied object ({body_name:?}) does not match the URL ({name})"
            )));
        }
        let ns = meta_str(&applied, "namespace").to_string();
        let api_version = kind.api_version();
        match self.get(kind, &ns, name).cloned() {
            None => {
                let skeleton = json!({"metadata": {}});
                let mut obj =
                    patch::server_side_apply(&skeleton, &applied, manager, force, &api_version, &now())
                        .map_err(|m| ApiError::new(409, "Conflict", m))?;
                obj["metadata"]["name"] = json!(name);
                if kind.namespaced {
                    obj["metadata"]["namespace"] = json!(ns);
                }
                let created = self.create_owned(kind, ns_opt(kind, &ns), obj, None)?;
                Ok((created, true))
            }
            Some(old) => {
                let new = patch::server_side_apply(&old, &applied, manager, force, &api_version, &now())
                    .map_err(|m| ApiError::new(409, "Conflict", m))?;
                Ok((self.replace_checked(kind, &old, new, None)?, false))
            }
        }
    }

    /// Runs admission (defaults, statuses) and the after-write controllers, then commits.
    fn write(&mut self, kind: &Kind, old: Option<&Value>, mut obj: Value) -> Value {
        controllers::admit(self, kind, old, &mut obj);
        let stored = self.commit(kind, obj);
        controllers::after_write(self, kind, &stored);
        stored
    }

    /// DELETE: removes the object, then its dependents (objects whose ownerReferences name its
    /// uid; with `orphan`, their ownerReferences are dropped instead) and, for a namespace,
    /// everything in it. Namespaces go at once, without a Terminating phase.
    pub fn delete(&mut self, kind: &Kind, ns: &str, name: &str, orphan: bool) -> Result<Value> {
        let key = (kind.id(), ns.to_string(), name.to_string());
        let mut obj = self
            .objects
            .remove(&key)
            .ok_or_else(|| ApiError::not_found(kind, name))?;
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(kind.id(), ns.to_string(), "DELETED", None, obj.clone());

        if kind.id() == 0 {
            let inside: Vec<Key> = self
                .objects
                .keys()
                .filter(|(_, n, _)| n == name)
                .cloned()
                .collect();
            for (k, n, nm) in inside {
                let _ = self.delete(&KINDS[k], &n, &nm, false);
            }
        }
        let uid = meta_str(&obj, "uid").to_string();
        let owned_by = |v: &Value| {
            v["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid.as_str()))
        };
        let dependents: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, v)| owned_by(v))
            .map(|(k, _)| k.clone())
            .collect();
        for (k, n, nm) in dependents {
            if orphan {
                if let Some(old) = self.objects.get(&(k, n.clone(), nm.clone())).cloned() {
                    let mut new = old.clone();
                    if let Some(refs) = new["metadata"]["ownerReferences"].as_array_mut() {
                        refs.retain(|r| r["uid"] != uid.as_str());
                    }
                    self.replace(&KINDS[k], &old, new, None);
                }
            } else {
                let _ = self.delete(&KINDS[k], &n, &nm, false);
            }
        }
        Ok(obj)
    }
}

/// `Some(ns)` for namespaced kinds, `None` for cluster-scoped ones.
pub fn ns_opt<'a>(kind: &Kind, ns: &'a str) -> Option<&'a str> {
    kind.namespaced.then_some(ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::by_plural;

    fn kind(group: &str, plural: &str) -> &'static Kind {
        by_plural(group, "v1", plural).expect("known kind")
    }

    fn store_with_ns(name: &str) -> Store {
        let mut s = Store::new();
        s.create(
            kind("", "namespaces"),
            None,
            json!({"metadata": {"name": name}}),
            "t",
        )
        .expect("create namespace");
        s
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = now();
        assert_eq!(t.len(), 20);
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T');
    }

    #[test]
    fn create_assigns_metadata_and_conflicts_on_duplicates() {
        let mut s = store_with_ns("a");
        let cm = json!({"metadata": {"name": "c"}, "data": {"k": "v"}});
        let obj = s
            .create(kind("", "configmaps"), Some("a"), cm.clone(), "t")
            .expect("create");
        assert_eq!(obj["kind"], "ConfigMap");
        assert_eq!(obj["metadata"]["namespace"], "a");
        assert!(obj["metadata"]["uid"].is_string());
        assert_eq!(obj["metadata"]["resourceVersion"], "2");
        let err = s.create(kind("", "configmaps"), Some("a"), cm, "t").unwrap_err();
        assert_eq!((err.code, err.reason), (409, "AlreadyExists"));
        let err = s
            .create(
                kind("", "configmaps"),
                Some("nope"),
                json!({"metadata": {"name": "c"}}),
                "t",
            )
            .unwrap_err();
        assert_eq!(err.code, 404);
    }

    #[test]
    fn stale_update_conflicts() {
        let mut s = store_with_ns("a");
        let cms = kind("", "configmaps");
        let v1 = s
            .create(cms, Some("a"), json!({"metadata": {"name": "c"}}), "t")
            .expect("create");
        let mut v2 = v1.clone();
        v2["data"] = json!({"k": "1"});
        s.update(cms, Some("a"), "c", v2, "t", false).expect("update");
        let mut stale = v1.clone();
        stale["data"] = json!({"k": "2"});
        let err = s.update(cms, Some("a"), "c", stale, "t", false).unwrap_err();
        assert_eq!((err.code, err.reason), (409, "Conflict"));
    }

    #[test]
    fn generation_tracks_spec_changes_only() {
        let mut s = store_with_ns("a");
        let cms = kind("", "configmaps");
        let v1 = s
            .create(cms, Some("a"), json!({"metadata": {"name": "c"}}), "t")
            .expect("create");
        let mut v2 = v1.clone();
        v2["metadata"]["labels"] = json!({"x": "y"});
        let v2 = s.update(cms, Some("a"), "c", v2, "t", false).expect("update");
        assert_eq!(v2["metadata"]["generation"], 1);
        let mut v3 = v2.clone();
        v3["data"] = json!({"k": "v"});
        let v3 = s.update(cms, Some("a"), "c", v3, "t", false).expect("update");
        assert_eq!(v3["metadata"]["generation"], 2);
    }

    #[test]
    fn delete_cascades_to_dependents_and_namespace_contents() {
        let mut s = store_with_ns("a");
        let cms = kind("", "configmaps");
        let owner = s
            .create(cms, Some("a"), json!({"metadata": {"name": "owner"}}), "t")
            .expect("create");
        let uid = owner["metadata"]["uid"].clone();
        let dep = json!({"metadata": {"name": "dep", "ownerReferences": [{"uid": uid, "kind": "ConfigMap", "name": "owner", "apiVersion": "v1"}]}});
        s.create(cms, Some("a"), dep, "t").expect("create");
        s.delete(cms, "a", "owner", false).expect("delete");
        assert!(s.get(cms, "a", "dep").is_none());

        s.create(cms, Some("a"), json!({"metadata": {"name": "x"}}), "t")
            .expect("create");
        s.delete(kind("", "namespaces"), "", "a", false)
            .expect("delete ns");
        assert!(s.get(cms, "a", "x").is_none());
    }

    #[test]
    fn watch_with_initial_events_ends_them_with_a_bookmark() {
        let mut s = store_with_ns("a");
        let nss = kind("", "namespaces");
        let mut rx = s
            .watch(
                nss,
                None,
                LabelSelector::default(),
                FieldSelector::default(),
                WatchStart::Current { bookmark: true },
            )
            .expect("watch");
        let lines: Vec<Value> = std::iter::from_fn(|| rx.try_recv().ok().map(|(_, l)| l))
            .map(|l| serde_json::from_str(&l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["type"], "ADDED");
        assert_eq!(lines[1]["type"], "BOOKMARK");
        let mark = &lines[1]["object"]["metadata"];
        assert_eq!(mark["annotations"]["k8s.io/initial-events-end"], "true");
        assert_eq!(mark["resourceVersion"], s.resource_version().to_string());
    }

    #[test]
    fn a_watch_from_a_compacted_version_gets_an_expired_event() {
        let mut s = store_with_ns("a");
        let nss = kind("", "namespaces");
        let old = s.resource_version();
        s.create(nss, None, json!({"metadata": {"name": "b"}}), "t")
            .expect("create");
        s.compact();
        let mut rx = s
            .watch(
                nss,
                None,
                LabelSelector::default(),
                FieldSelector::default(),
                WatchStart::After(old),
            )
            .expect("a watch is accepted");
        let line: Value = serde_json::from_str(&rx.try_recv().expect("one event").1).expect("json");
        assert_eq!(line["type"], "ERROR");
        assert_eq!(line["object"]["code"], 410);
        assert!(
            matches!(
                rx.try_recv(),
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected)
            ),
            "nothing follows: the stream ends"
        );
        let current = s.resource_version();
        assert!(
            s.watch(
                nss,
                None,
                LabelSelector::default(),
                FieldSelector::default(),
                WatchStart::After(current),
            )
            .is_ok()
        );
    }

    #[test]
    fn watch_replays_from_resource_version_and_follows_selectors() {
        let mut s = store_with_ns("a");
        let cms = kind("", "configmaps");
        let start = s.resource_version();
        let sel = LabelSelector::parse("app=web").expect("selector");
        let mut rx = s
            .watch(
                cms,
                Some("a"),
                sel,
                FieldSelector::default(),
                WatchStart::After(start),
            )
            .expect("watch");
        let v = s
            .create(
                cms,
                Some("a"),
                json!({"metadata": {"name": "c", "labels": {"app": "web"}}}),
                "t",
            )
            .expect("create");
        let mut moved = v.clone();
        moved["metadata"]["labels"] = json!({"app": "db"});
        s.update(cms, Some("a"), "c", moved, "t", false).expect("update");
        let types: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok().map(|(_, l)| l))
            .map(|l| serde_json::from_str::<Value>(&l).expect("json")["type"].to_string())
            .collect();
        assert_eq!(types, vec!["\"ADDED\"", "\"DELETED\""]);
    }
}
